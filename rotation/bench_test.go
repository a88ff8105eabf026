package rotation_test

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// BenchmarkEngineOverhead measures rotord's own work per host in a
// rotation: the engine and the real SQLite journal (fsync per durable
// step), over in-memory hosts and vault that cost nothing. On a fleet the
// hosts' sshd and PAM dominate; this is what rotord adds on top.
func BenchmarkEngineOverhead(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("%dHosts", n), func(b *testing.B) {
			f := &fixture{vault: newFakeVault(), hosts: newFakeHosts()}
			for i := range n {
				name := fmt.Sprintf("h%02d", i)
				f.names = append(f.names, name)
				f.hosts.add(name, oldPw)
			}
			f.id = f.vault.add("prod-root", "root", oldPw, f.names...)
			key, err := store.NewKey([]byte("0123456789abcdef0123456789abcdef"))
			if err != nil {
				b.Fatal(err)
			}
			db, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "j.db"), store.NewKeyring(key))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			eng := newEngine(b, testConfig(func(c *rotation.Config) { c.Concurrency = 16; c.Generator = rotation.GeneratorLocal }), rotation.Deps{Vault: f.vault, Hosts: f.hosts, Store: db})
			var before, after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ResetTimer()
			for range b.N {
				if res := eng.Rotate(context.Background(), spec, rotation.RotateOptions{}); res.Err != nil {
					b.Fatal(res.Err)
				}
			}
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(b.N*n)
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n)/1000, "wall-ms/host")
			b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu-ms/host")
		})
	}
}
