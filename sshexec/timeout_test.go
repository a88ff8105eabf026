package sshexec_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec"
)

// TestSilentHostIsAConnectTimeout dials a listener that accepts and never
// speaks. The connection's own deadline and the connect timeout's context
// end at the same instant, and whichever the runtime notices first, the
// error must say the connect timeout passed: the engine and operators
// read context.DeadlineExceeded as "the host did not answer in time".
// Many short attempts make both orders happen.
func TestSilentHostIsAConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := sshexec.New(sshexec.Config{ConnectTimeout: 5 * time.Millisecond, KnownHosts: kh}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	h := rotation.Host{Name: "127.0.0.1", Port: p}
	for i := range 100 {
		_, err := d.Login(context.Background(), h, user, secret.New(oldPw))
		if !errors.Is(err, rotation.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("attempt %d: err %v, want ErrUnreachable and DeadlineExceeded", i, err)
		}
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	}
}
