package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A real ed25519 host key and its fingerprint (ssh-keygen -lf).
const (
	testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	testHostFP  = "ssh-ed25519 SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU"
)

func TestHostkeysScan(t *testing.T) {
	ta := newTestApp(t, minimal, services4(&fakeEngine{}))
	var asked []string
	ta.adapters.scanHostKeys = func(_ context.Context, addr string, timeout time.Duration) ([]string, error) {
		asked = append(asked, addr)
		if timeout != 10*time.Second {
			t.Errorf("timeout %s, want ssh.connect_timeout", timeout)
		}
		if strings.HasPrefix(addr, "down") {
			return nil, errors.New("connection refused")
		}
		return []string{addr + " " + testHostKey}, nil
	}
	code := ta.run(context.Background(), "hostkeys", "scan", "web01", "[fe80::1]:2222", "down:22")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d: %s", code, exitPartial, ta.err)
	}
	if strings.Join(asked, " ") != "web01:22 [fe80::1]:2222 down:22" {
		t.Fatalf("scanned %v", asked)
	}
	wantOut := "web01:22 " + testHostKey + "\n[fe80::1]:2222 " + testHostKey + "\n"
	if ta.out.String() != wantOut {
		t.Fatalf("stdout %q", ta.out)
	}
	if !strings.Contains(ta.err.String(), "web01:22 "+testHostFP) || !strings.Contains(ta.err.String(), "down:22: connection refused") {
		t.Fatalf("stderr %q", ta.err)
	}
}
