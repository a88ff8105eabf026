package sshexec

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// BenchmarkHostKeyLookup measures what a login asks of known_hosts (the
// key types recorded for the host, then whether the presented key is one
// of them) on a fleet's file of 5,000 hashed lines, as ssh's
// HashKnownHosts writes them. Without the answers kept per file version
// each lookup costs an HMAC per line.
func BenchmarkHostKeyLookup(b *testing.B) {
	const lines = 5000
	var sb strings.Builder
	var key ssh.PublicKey
	for i := range lines {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			b.Fatal(err)
		}
		host := fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256)
		if i == lines/2 {
			key = k
		}
		sb.WriteString(knownhosts.Line([]string{knownhosts.HashHostname(host)}, k) + "\n")
	}
	path := filepath.Join(b.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	kh := &knownHosts{path: path}
	addr := fmt.Sprintf("10.%d.%d.%d:22", lines/2/65536, lines/2/256%256, lines/2%256)
	remote := fakeAddr(addr)
	if _, err := kh.current(); err != nil { // parsing the file is paid once per version
		b.Fatal(err)
	}
	for b.Loop() {
		algos, err := kh.algorithms(addr)
		if err != nil || len(algos) != 1 {
			b.Fatalf("algorithms %v, %v", algos, err)
		}
		if err := kh.check(addr, remote, key, nil); err != nil {
			b.Fatal(err)
		}
	}
}
