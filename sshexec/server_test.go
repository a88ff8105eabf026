package sshexec_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// These tests run against the in-process server: fast and without root.
// The same behaviours are tested against real sshd and passwd in rig_test.go.

const (
	user  = "rotuser"
	oldPw = "Initial-Pw-2024"
	newPw = "Rot-8q!Zx-2024-k"
)

func startServer(t *testing.T, opts sshtest.ServerOptions, cfg sshexec.Config) (*sshtest.Server, *sshexec.Dialer, rotation.Host, *bytes.Buffer) {
	t.Helper()
	opts.User, opts.Password = user, oldPw
	srv, err := sshtest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if cfg.KnownHosts == "" {
		cfg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(cfg.KnownHosts, []byte(srv.KnownHostsLine()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.StepTimeout == 0 {
		cfg.StepTimeout = 5 * time.Second
	}
	var logs bytes.Buffer
	d, err := sshexec.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	name, port := srv.Host()
	return srv, d, rotation.Host{Name: name, Port: port}, &logs
}

func noPasswords(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, pw := range []string{oldPw, newPw, "abc", "Wrong-Pw-31x"} {
			if strings.Contains(s, pw) {
				t.Errorf("a password leaked into %q", s)
			}
		}
	}
}

func TestServerChangePassword(t *testing.T) {
	for _, kbd := range []bool{false, true} {
		srv, d, h, logs := startServer(t, sshtest.ServerOptions{KbdInteractiveOnly: kbd}, sshexec.Config{})
		ctx := context.Background()
		s, err := d.Login(ctx, h, user, secret.New(oldPw))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
		o := s.ChangePassword(ctx, secret.New(oldPw), secret.New(newPw))
		if o.Kind != rotation.OutcomeChanged || srv.Password() != newPw {
			t.Fatalf("outcome %v", o)
		}
		if err := d.Verify(ctx, h, user, secret.New(newPw)); err != nil {
			t.Fatal(err)
		}
		err = d.Verify(ctx, h, user, secret.New(oldPw))
		if !errors.Is(err, rotation.ErrAuthFailed) {
			t.Fatalf("old password: %v", err)
		}
		noPasswords(t, o.Transcript, o.String(), err.Error(), logs.String())
	}
}

func TestServerOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		opts     sshtest.ServerOptions
		old, new string
		kind     rotation.OutcomeKind
		reason   string
	}{
		{"WrongCurrent", sshtest.ServerOptions{}, "Wrong-Pw-31x", newPw, rotation.OutcomeWrongCurrent, ""},
		{"Policy", sshtest.ServerOptions{}, oldPw, "abc", rotation.OutcomeRejected, "The password is shorter than 8 characters"},
		{"Stall", sshtest.ServerOptions{StallAfterCurrent: true}, oldPw, newPw, rotation.OutcomeTimeout, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, d, h, logs := startServer(t, tc.opts, sshexec.Config{StepTimeout: 300 * time.Millisecond})
			s, err := d.Login(context.Background(), h, user, secret.New(oldPw))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			o := s.ChangePassword(context.Background(), secret.New(tc.old), secret.New(tc.new))
			if o.Kind != tc.kind || o.Reason != tc.reason {
				t.Fatalf("outcome %v, want %v (%s)\ntranscript %q", o, tc.kind, tc.reason, o.Transcript)
			}
			if srv.Password() != oldPw {
				t.Fatal("the password changed")
			}
			noPasswords(t, o.Transcript, o.String(), logs.String())
		})
	}
}

func TestServerHostKey(t *testing.T) {
	other, err := sshtest.NewServer(sshtest.ServerOptions{Password: "x"})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	for _, tc := range []struct {
		name           string
		known, revoked bool
	}{{"Unknown", false, false}, {"Changed", true, false}, {"Revoked", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			var content string
			srv, err := sshtest.NewServer(sshtest.ServerOptions{User: user, Password: oldPw})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if tc.revoked {
				content = "@revoked " + srv.KnownHostsLine() + "\n"
			} else if tc.known {
				// Another server's key recorded for this address.
				content = knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, other.HostKey()) + "\n"
			}
			if err := os.WriteFile(kh, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := sshexec.New(sshexec.Config{KnownHosts: kh}, nil)
			if err != nil {
				t.Fatal(err)
			}
			name, port := srv.Host()
			_, err = d.Login(context.Background(), rotation.Host{Name: name, Port: port}, user, secret.New(oldPw))
			var hke *sshexec.HostKeyError
			if !errors.As(err, &hke) || hke.Known != tc.known || hke.Revoked != tc.revoked || !errors.Is(err, rotation.ErrHostKey) {
				t.Fatalf("err %v", err)
			}
			if n := srv.AuthAttempts(); n != 0 {
				t.Fatalf("the server saw %d authentication attempts", n)
			}
		})
	}
}

// A Dialer keeps what it learnt from known_hosts only while the file stays
// as it was: a key accepted a moment ago is refused once the file revokes
// it, or records another key for the host, and accepted again once the
// file approves it again.
func TestServerHostKeyFileChanges(t *testing.T) {
	other, err := sshtest.NewServer(sshtest.ServerOptions{Password: "x"})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	srv, _, h, _ := startServer(t, sshtest.ServerOptions{}, sshexec.Config{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	approve := srv.KnownHostsLine() + "\n"
	if err := os.WriteFile(kh, []byte(approve), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := sshexec.New(sshexec.Config{KnownHosts: kh}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, content string // content "" leaves the file as it is
		refused       bool
	}{
		{"Approved", "", false},
		{"ApprovedAgain", "", false},
		{"Revoked", "@revoked " + approve + approve, true},
		{"Replaced", knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, other.HostKey()) + "\n", true},
		{"ApprovedOnceMore", "# approved again\n" + approve, false}, // a size of its own: mtimes are coarse
	} {
		if tc.content != "" {
			if err := os.WriteFile(kh, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s, err := d.Login(context.Background(), h, user, secret.New(oldPw))
		if tc.refused {
			if !errors.Is(err, rotation.ErrHostKey) {
				t.Fatalf("%s: err %v, want a refused host key", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s.Close()
	}
	if n := srv.AuthAttempts(); n != 3 {
		t.Errorf("the server saw %d authentication attempts, want 3 (one per approved login)", n)
	}
}
