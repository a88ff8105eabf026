package sshexec

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// benchRigRootEnv set to 1 gives the rig process's hosts root's password
// rigRoot (root may then log in itself, and be reached through su), and
// benchRigKeyEnv an authorized_keys line (a public key) for the test
// account.
const (
	benchRigRootEnv = "ROTORD_BENCH_RIG_ROOT"
	benchRigKeyEnv  = "ROTORD_BENCH_RIG_KEY"
)

// benchRigOptions are the rig process's options for n hosts.
func benchRigOptions(n int) (sshtest.RigOptions, error) {
	opts := sshtest.RigOptions{Hosts: make([]sshtest.HostSpec, n), User: rigUser, Password: rigPw}
	if os.Getenv(benchRigRootEnv) == "1" {
		opts.RootPassword = rigRoot
	}
	if line := os.Getenv(benchRigKeyEnv); line != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return opts, err
		}
		for i := range opts.Hosts {
			opts.Hosts[i].Reach = &sshtest.ReachSpec{AuthorizedKeys: []ssh.PublicKey{pub}}
		}
	}
	return opts, nil
}

// verifier is a Dialer or a Reach: both log in and verify.
type verifier interface {
	rotation.HostChanger
	Verify(ctx context.Context, h rotation.Host, user string, pw secret.Value) error
}

// machineBusy returns the CPU time every process on the machine has used
// since boot (/proc/stat: all but idle and iowait), or 0 where it cannot
// be read.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var ticks int64
	for i, f := range strings.Fields(line)[1:] {
		if v, err := strconv.ParseInt(f, 10, 64); err == nil && i != 3 && i != 4 {
			ticks += v
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// rotateRootVia is one host's rotation of root as the engine does it:
// the lifeline login and its check, passwd, the verifying login.
func rotateRootVia(v verifier, h rotation.Host, old, new string) error {
	ctx := context.Background()
	s, err := v.Login(ctx, h, "root", secret.New(old))
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		return err
	}
	if o := s.ChangePassword(ctx, secret.New(old), secret.New(new)); o.Kind != rotation.OutcomeChanged {
		return fmt.Errorf("outcome %v", o)
	}
	return v.Verify(ctx, h, "root", secret.New(new))
}

// BenchmarkRotateRootThroughSu50 rotates root on 50 real hosts at
// concurrency 16, directly (root logs in itself) and through su (the
// logon account logs in by password, su - root is the lifeline, su root
// verifies from a fresh session), on the same hosts in the same run, and
// reports the wall ratio, each one's client CPU per host, and the whole
// machine's CPU per host: the hosts' share bounds the wall (through su
// with a password logon, PAM hashes one password more per rotation).
func BenchmarkRotateRootThroughSu50(b *testing.B) {
	sshtest.RequireRig(b)
	sshtest.RequireReach(b)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		b.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		b.Fatal(err)
	}
	keyAuth, err := KeyLogon(pem.EncodeToMemory(block), secret.Value{})
	if err != nil {
		b.Fatal(err)
	}
	r := startRigProcess(b, benchHosts, benchRigRootEnv+"=1",
		benchRigKeyEnv+"="+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
	d, err := New(Config{KnownHosts: r.KnownHosts, StepTimeout: time.Minute, ConnectTimeout: time.Minute}, nil)
	if err != nil {
		b.Fatal(err)
	}
	type row struct {
		name string
		v    verifier
		wall time.Duration
		cpu  cpu           // this process's
		busy time.Duration // the machine's
	}
	rows := []row{{name: "direct", v: d}}
	for _, p := range []struct {
		name string
		auth LogonAuth
	}{{"su (password logon)", PasswordLogon(secret.New(rigPw))}, {"su (key logon)", keyAuth}} {
		reach, err := d.Through(Path{Logon: rigUser, Auth: p.auth, Escalation: EscalateSu})
		if err != nil {
			b.Fatal(err)
		}
		rows = append(rows, row{name: p.name, v: reach})
	}
	hosts := r.Hosts
	const other = "Root-Bench-9x!Q"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Every row moves each host's root away from rigRoot and back;
		// which row goes first rotates with the round, so that drift in
		// the machine's load does not always favour the same one.
		for k := range rows {
			row := &rows[(k+i)%len(rows)]
			for _, step := range [][2]string{{rigRoot, other}, {other, rigRoot}} {
				busy := machineBusy()
				w, c := fanOut(b, len(hosts), func(j int) error {
					return rotateRootVia(row.v, rotation.Host{Name: hosts[j].Name, Port: hosts[j].Port}, step[0], step[1])
				})
				row.wall, row.cpu, row.busy = row.wall+w, row.cpu.add(c), row.busy+machineBusy()-busy
			}
		}
	}
	b.StopTimer()
	n := float64(2 * b.N * len(hosts))
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	fmt.Printf("\nroot rotation on %d real hosts, concurrency %d, %d round(s) of 2 rotations; rig started in %v\n",
		len(hosts), benchConcurrency, b.N, r.Startup.Round(time.Millisecond))
	fmt.Printf("%-20s %10s %9s %26s %17s %10s\n", "", "wall", "hosts/s", "client CPU/host (user+sys)", "machine CPU/host", "wall ratio")
	for _, row := range rows {
		fmt.Printf("%-20s %10v %9.1f %11.2f ms (%.2f+%.2f) %14.1f ms %10.3f\n", row.name, row.wall.Round(time.Millisecond),
			n/row.wall.Seconds(), ms(row.cpu.total()), ms(row.cpu.user), ms(row.cpu.sys), ms(row.busy), float64(row.wall)/float64(rows[0].wall))
	}
	fmt.Println("goal: wall ratio su/direct <= 1.3 (machine CPU: every process's, the hosts' sshd, su and PAM included)")
	b.ReportMetric(float64(rows[1].wall)/float64(rows[0].wall), "su-pw-wall-ratio")
	b.ReportMetric(float64(rows[2].wall)/float64(rows[0].wall), "su-key-wall-ratio")
	b.ReportMetric(ms(rows[0].cpu.total()), "direct-client-cpu-ms/host")
	b.ReportMetric(ms(rows[1].cpu.total()), "su-pw-client-cpu-ms/host")
	b.ReportMetric(ms(rows[2].cpu.total()), "su-key-client-cpu-ms/host")
	b.ReportMetric(ms(rows[0].busy), "direct-machine-cpu-ms/host")
	b.ReportMetric(ms(rows[1].busy), "su-pw-machine-cpu-ms/host")
}
