package sshexec_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// The inspector tells a known key from an unknown one and from one that
// differs from known_hosts, and a host that does not answer from all of
// them, without any authentication attempt.
func TestHostKeyInspector(t *testing.T) {
	other, err := sshtest.NewServer(sshtest.ServerOptions{Password: "x"})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	srv, err := sshtest.NewServer(sshtest.ServerOptions{User: user, Password: oldPw})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr()
	for _, tc := range []struct {
		name, content string
		want          sshexec.HostKeyStatus
	}{
		{"Known", srv.KnownHostsLine() + "\n", sshexec.HostKeyKnown},
		{"Unknown", "", sshexec.HostKeyUnknown},
		{"Mismatch", knownhosts.Line([]string{knownhosts.Normalize(addr)}, other.HostKey()) + "\n", sshexec.HostKeyMismatch},
	} {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(kh, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		in := &sshexec.HostKeyInspector{KnownHosts: kh, Timeout: 5 * time.Second}
		got := in.Inspect(context.Background(), addr)
		if !got.Reachable || got.Status != tc.want || (got.Err == nil) != (tc.want == sshexec.HostKeyKnown) {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
	if n := srv.AuthAttempts(); n != 0 {
		t.Fatalf("the server saw %d authentication attempts", n)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	in := &sshexec.HostKeyInspector{KnownHosts: filepath.Join(t.TempDir(), "known_hosts"), Timeout: 5 * time.Second}
	if got := in.Inspect(context.Background(), down); got.Reachable || got.Status != "" || got.Err == nil {
		t.Fatalf("closed port: %+v", got)
	}
}
