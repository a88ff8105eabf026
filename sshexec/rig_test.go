package sshexec

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

const (
	rigUser = "rotuser"
	rigPw   = "Initial-Pw-2024"
	rigRoot = "Root-Admin-Pw-7"
)

// leakWatch collects every text the package produced in a test, to prove
// no password is in any of them.
type leakWatch struct {
	mu    sync.Mutex
	log   bytes.Buffer
	texts []string
}

func (w *leakWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.Write(p)
}

func (w *leakWatch) add(xs ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range xs {
		switch v := x.(type) {
		case nil:
		case error:
			w.texts = append(w.texts, v.Error(), fmt.Sprintf("%+v %#v", v, v))
		case rotation.Outcome:
			w.texts = append(w.texts, v.String(), v.Transcript, v.Reason, fmt.Sprintf("%+v %#v", v, v))
		default:
			w.texts = append(w.texts, fmt.Sprint(v))
		}
	}
}

// check fails t if any collected text or log line holds one of pws.
func (w *leakWatch) check(t *testing.T, pws ...string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	all := append([]string{w.log.String()}, w.texts...)
	for _, s := range all {
		for _, pw := range pws {
			if pw != "" && strings.Contains(s, pw) {
				t.Errorf("a password leaked into %q", s)
			}
		}
	}
}

type rigEnv struct {
	rig   *sshtest.Rig
	d     *Dialer
	watch *leakWatch
}

func startRig(t *testing.T, cfg Config, specs ...sshtest.HostSpec) *rigEnv {
	t.Helper()
	var variants []sshtest.Variant
	for _, s := range specs {
		variants = append(variants, s.Variant)
	}
	sshtest.RequireRig(t, variants...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, sudoErr := os.Stat("/usr/bin/sudo")
	r, err := sshtest.StartRig(ctx, sshtest.RigOptions{Dir: t.TempDir(), Hosts: specs, User: rigUser, Password: rigPw, RootPassword: rigRoot, Sudo: sudoErr == nil})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	if cfg.KnownHosts == "" {
		cfg.KnownHosts = r.KnownHostsFile()
	}
	if cfg.StepTimeout == 0 {
		cfg.StepTimeout = 10 * time.Second
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	w := &leakWatch{}
	d, err := New(cfg, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return &rigEnv{rig: r, d: d, watch: w}
}

func (e *rigEnv) host(i int) rotation.Host {
	h := e.rig.Hosts()[i]
	return rotation.Host{Name: h.Name, Port: h.Port}
}

// waitAttempts waits until host i's sshd logged n authentication attempts.
func (e *rigEnv) waitAttempts(t *testing.T, i, n int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := e.rig.WaitAuthAttempts(ctx, i, n)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *rigEnv) shadow(t *testing.T, i int) string {
	t.Helper()
	l, err := e.rig.ShadowLine(i)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// logsIn reports whether pw logs in on host i, failing t on any error other
// than a refused password.
func (e *rigEnv) logsIn(t *testing.T, i int, pw string) bool {
	t.Helper()
	err := e.d.Verify(context.Background(), e.host(i), rigUser, secret.New(pw))
	e.watch.add(err)
	switch {
	case err == nil:
		return true
	case errors.Is(err, rotation.ErrAuthFailed):
		return false
	default:
		t.Fatalf("verify on host %d: %v", i, err)
		return false
	}
}

func (e *rigEnv) login(t *testing.T, i int, user, pw string) rotation.HostSession {
	t.Helper()
	s, err := e.d.Login(context.Background(), e.host(i), user, secret.New(pw))
	if err != nil {
		t.Fatalf("login host %d: %v", i, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRigChangePassword(t *testing.T) {
	e := startRig(t, Config{},
		sshtest.HostSpec{Variant: sshtest.Debian},
		sshtest.HostSpec{Variant: sshtest.BusyBox},
		sshtest.HostSpec{Variant: sshtest.PwQuality},
		sshtest.HostSpec{Variant: sshtest.Debian, KbdInteractiveOnly: true},
	)
	const newPw = "Rot-8q!Zx-2024-k"
	for i, h := range e.rig.Hosts() {
		t.Run(fmt.Sprintf("%s-%d", h.Variant, i), func(t *testing.T) {
			before := e.shadow(t, i)
			s := e.login(t, i, rigUser, rigPw)
			if err := s.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			o := s.ChangePassword(context.Background(), secret.New(rigPw), secret.New(newPw))
			e.watch.add(o)
			if o.Kind != rotation.OutcomeChanged {
				t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
			}
			if after := e.shadow(t, i); after == before {
				t.Fatalf("shadow line unchanged: %s", after)
			}
			if !e.logsIn(t, i, newPw) {
				t.Fatal("the new password does not log in")
			}
			if e.logsIn(t, i, rigPw) {
				t.Fatal("the old password still logs in")
			}
			// The lifeline is still usable after the change.
			if err := s.Check(context.Background()); err != nil {
				t.Fatalf("lifeline: %v", err)
			}
		})
	}
	e.watch.check(t, rigPw, newPw)
}

func TestRigWrongCurrentPassword(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian}, sshtest.HostSpec{Variant: sshtest.BusyBox})
	const wrong, newPw = "Wrong-Pw-31x", "Rot-8q!Zx-2024-k"
	for i, h := range e.rig.Hosts() {
		t.Run(h.Variant.String(), func(t *testing.T) {
			before := e.shadow(t, i)
			s := e.login(t, i, rigUser, rigPw)
			o := s.ChangePassword(context.Background(), secret.New(wrong), secret.New(newPw))
			e.watch.add(o)
			if o.Kind != rotation.OutcomeWrongCurrent {
				t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
			}
			if after := e.shadow(t, i); after != before {
				t.Fatalf("shadow changed")
			}
			if !e.logsIn(t, i, rigPw) {
				t.Fatal("the old password no longer logs in")
			}
		})
	}
	e.watch.check(t, rigPw, newPw, wrong)
}

func TestRigPolicyRejection(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.PwQuality}, sshtest.HostSpec{Variant: sshtest.BusyBox})
	tests := []struct {
		host   int
		newPw  string
		reason string
	}{
		{0, "password1", "The password fails the dictionary check - it is based on a dictionary word"},
		{0, "Abc-1", "The password is shorter than 8 characters"},
		{0, "Initial-Pw-2024", "The password is the same as the old one"},
		{1, "abc", "too short"},
	}
	for _, tc := range tests {
		t.Run(tc.reason, func(t *testing.T) {
			before := e.shadow(t, tc.host)
			s := e.login(t, tc.host, rigUser, rigPw)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			o := s.ChangePassword(ctx, secret.New(rigPw), secret.New(tc.newPw))
			e.watch.add(o)
			if o.Kind != rotation.OutcomeRejected || o.Reason != tc.reason {
				t.Fatalf("outcome %v, want rejected-by-policy (%s)\ntranscript %q", o, tc.reason, o.Transcript)
			}
			if after := e.shadow(t, tc.host); after != before {
				t.Fatalf("shadow changed")
			}
			if !e.logsIn(t, tc.host, rigPw) {
				t.Fatal("the old password no longer logs in")
			}
		})
	}
	e.watch.check(t, rigPw, "password1", "Abc-1")
}

func TestRigUnreachable(t *testing.T) {
	e := startRig(t, Config{ConnectTimeout: 2 * time.Second},
		sshtest.HostSpec{Variant: sshtest.Debian}, sshtest.HostSpec{Variant: sshtest.Debian})
	t.Run("Stopped", func(t *testing.T) {
		if err := e.rig.StopHost(0); err != nil {
			t.Fatal(err)
		}
		_, err := e.d.Login(context.Background(), e.host(0), rigUser, secret.New(rigPw))
		e.watch.add(err)
		if !errors.Is(err, rotation.ErrUnreachable) {
			t.Fatalf("err %v, want ErrUnreachable", err)
		}
		if err := e.rig.StartHost(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		if !e.logsIn(t, 0, rigPw) {
			t.Fatal("the restarted host refuses the password")
		}
	})
	t.Run("SilentDuringHandshake", func(t *testing.T) {
		if err := e.rig.PauseHost(1); err != nil {
			t.Fatal(err)
		}
		defer e.rig.ResumeHost(1)
		start := time.Now()
		_, err := e.d.Login(context.Background(), e.host(1), rigUser, secret.New(rigPw))
		e.watch.add(err)
		if !errors.Is(err, rotation.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want ErrUnreachable after the deadline", err)
		}
		if el := time.Since(start); el > 2*time.Second+time.Second {
			t.Fatalf("returned after %v, the connect timeout is 2s", el)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		if err := e.rig.PauseHost(1); err != nil {
			t.Fatal(err)
		}
		defer e.rig.ResumeHost(1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.d.Login(ctx, e.host(1), rigUser, secret.New(rigPw))
		if !errors.Is(err, context.Canceled) || !errors.Is(err, rotation.ErrUnreachable) {
			t.Fatalf("err %v", err)
		}
	})
	e.watch.check(t, rigPw)
}

func TestRigStallMidDialogue(t *testing.T) {
	const step = 1500 * time.Millisecond
	e := startRig(t, Config{StepTimeout: step}, sshtest.HostSpec{Variant: sshtest.Debian})
	before := e.shadow(t, 0)
	s := e.login(t, 0, rigUser, rigPw)
	// Stall the host right after the current password was answered.
	var procs []sshtest.Process
	testHookAnswered = func(string) {
		if err := e.rig.PauseHost(0); err != nil {
			t.Error(err)
		}
		var err error
		if procs, err = e.rig.Processes(0); err != nil {
			t.Error(err)
		}
		testHookAnswered = nil
	}
	t.Cleanup(func() { testHookAnswered = nil })
	start := time.Now()
	o := s.ChangePassword(context.Background(), secret.New(rigPw), secret.New("Rot-8q!Zx-2024-k"))
	el := time.Since(start)
	e.watch.add(o)
	if o.Kind != rotation.OutcomeTimeout || !errors.Is(o.Err, ErrStepTimeout) {
		t.Fatalf("outcome %v, want timeout", o)
	}
	if el > 3*step {
		t.Fatalf("timed out after %v, the step timeout is %v", el, step)
	}
	// While passwd waited, no process on the host had a password in its
	// command line or environment.
	var sawPasswd bool
	for _, p := range procs {
		text := strings.Join(p.Args, " ") + " " + strings.Join(p.Env, " ")
		if strings.Contains(text, "passwd") && p.Args[0] == "passwd" {
			sawPasswd = true
		}
		for _, pw := range []string{rigPw, "Rot-8q!Zx-2024-k"} {
			if strings.Contains(text, pw) {
				t.Errorf("process %d holds a password in its args or environment", p.Pid)
			}
		}
	}
	if !sawPasswd {
		t.Errorf("passwd was not running on the stalled host: %v", procs)
	}
	s.Close()
	if err := e.rig.ResumeHost(0); err != nil {
		t.Fatal(err)
	}
	if !e.logsIn(t, 0, rigPw) {
		t.Fatal("the old password no longer logs in")
	}
	if after := e.shadow(t, 0); after != before {
		t.Fatal("shadow changed")
	}
	e.watch.check(t, rigPw, "Rot-8q!Zx-2024-k")
}

func TestRigCancelMidDialogue(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian})
	before := e.shadow(t, 0)
	s := e.login(t, 0, rigUser, rigPw)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	testHookAnswered = func(string) { cancel() }
	t.Cleanup(func() { testHookAnswered = nil })
	o := s.ChangePassword(ctx, secret.New(rigPw), secret.New("Rot-8q!Zx-2024-k"))
	testHookAnswered = nil
	e.watch.add(o)
	if o.Kind != rotation.OutcomeUnexpected || !errors.Is(o.Err, context.Canceled) {
		t.Fatalf("outcome %v, want unexpected: context canceled", o)
	}
	if o.Known() {
		t.Fatal("a canceled dialogue claims to know the host's state")
	}
	s.Close()
	if !e.logsIn(t, 0, rigPw) {
		t.Fatal("the old password no longer logs in")
	}
	if e.shadow(t, 0) != before {
		t.Fatal("shadow changed")
	}
	e.watch.check(t, rigPw, "Rot-8q!Zx-2024-k")
}

func TestRigHostKeys(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian})
	h := e.host(0)
	addr := h.Addr(22)
	dir := t.TempDir()

	refused := func(t *testing.T, kh string, known bool) {
		t.Helper()
		d, err := New(Config{KnownHosts: kh, ConnectTimeout: 5 * time.Second}, slog.New(slog.NewTextHandler(e.watch, nil)))
		if err != nil {
			t.Fatal(err)
		}
		before := e.rig.AuthAttempts(0)
		_, err = d.Login(context.Background(), h, rigUser, secret.New(rigPw))
		e.watch.add(err)
		var hke *HostKeyError
		if !errors.Is(err, rotation.ErrHostKey) || !errors.As(err, &hke) {
			t.Fatalf("err %v, want a host key error", err)
		}
		if hke.Known != known {
			t.Fatalf("Known = %v, want %v", hke.Known, known)
		}
		want := map[string]bool{}
		for _, k := range []ssh.PublicKey{e.rig.HostKey(0)} {
			want[ssh.FingerprintSHA256(k)] = true
		}
		if hke.Host != knownhosts.Normalize(addr) || hke.Fingerprint == "" || hke.KeyType == "" {
			t.Fatalf("error names %q %q %q", hke.Host, hke.KeyType, hke.Fingerprint)
		}
		if known && !want[hke.Fingerprint] {
			t.Fatalf("fingerprint %s is not the host's ed25519 key", hke.Fingerprint)
		}
		msg := err.Error()
		for _, s := range []string{hke.Fingerprint, hke.KeyType, "rotord hostkeys scan " + addr, kh} {
			if !strings.Contains(msg, s) {
				t.Fatalf("message %q lacks %q", msg, s)
			}
		}
		// The connection closed before authentication: sshd saw no attempt.
		// A successful login afterwards shows the counter counts.
		if n := e.rig.AuthAttempts(0); n != before {
			t.Fatalf("sshd saw %d password attempts", n-before)
		}
		if !e.logsIn(t, 0, rigPw) {
			t.Fatal("control login failed")
		}
		if n := e.waitAttempts(t, 0, before+1); n != before+1 {
			t.Fatalf("sshd saw %d attempts besides the control login", n-before-1)
		}
	}
	t.Run("Unknown", func(t *testing.T) {
		kh := filepath.Join(dir, "empty")
		if err := os.WriteFile(kh, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, kh, false)
	})
	t.Run("Changed", func(t *testing.T) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		other, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		kh := filepath.Join(dir, "changed")
		line := knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(addr))}, other)
		if err := os.WriteFile(kh, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, kh, true)
	})
	t.Run("ChangedType", func(t *testing.T) {
		// known_hosts holds a key type the host does not offer.
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		other, err := ssh.NewPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		kh := filepath.Join(dir, "changed-type")
		if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, other)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := New(Config{KnownHosts: kh}, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := e.rig.AuthAttempts(0)
		_, err = d.Login(context.Background(), h, rigUser, secret.New(rigPw))
		e.watch.add(err)
		var hke *HostKeyError
		if !errors.As(err, &hke) || !hke.Known || !errors.Is(err, rotation.ErrHostKey) {
			t.Fatalf("err %v, want a changed host key", err)
		}
		if !strings.Contains(err.Error(), "ssh-ed25519") || !strings.Contains(err.Error(), "rotord hostkeys scan "+addr) {
			t.Fatalf("message %q does not say what the host offers and how to approve it", err)
		}
		if !e.logsIn(t, 0, rigPw) {
			t.Fatal("control login failed")
		}
		if n := e.waitAttempts(t, 0, before+1); n != before+1 {
			t.Fatalf("sshd saw %d attempts besides the control login", n-before-1)
		}
	})
	t.Run("OnlyKnownAlgorithms", func(t *testing.T) {
		// The host offers ECDSA, which x/crypto prefers, and ed25519, the
		// only key known_hosts holds: a client offering every algorithm is
		// refused, sshexec negotiates ed25519.
		cb, err := knownhosts.New(e.rig.KnownHostsFile())
		if err != nil {
			t.Fatal(err)
		}
		c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: rigUser, HostKeyCallback: cb, Timeout: 5 * time.Second})
		if err == nil {
			c.Close()
			t.Fatal("a client with default algorithms was not refused: the test proves nothing")
		}
		if !e.logsIn(t, 0, rigPw) {
			t.Fatal("sshexec did not log in")
		}
	})
	t.Run("ScanAndTrustOnFirstUse", func(t *testing.T) {
		keys, err := Scan(context.Background(), []string{addr}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, k := range keys {
			if k.Fingerprint == ssh.FingerprintSHA256(e.rig.HostKey(0)) {
				found = true
			}
		}
		if len(keys) != 2 || !found {
			t.Fatalf("scanned %d keys, ed25519 found %v", len(keys), found)
		}
		kh := filepath.Join(dir, "tofu")
		d, err := New(Config{KnownHosts: kh, TrustOnFirstUse: true}, slog.New(slog.NewTextHandler(e.watch, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Verify(context.Background(), h, rigUser, secret.New(rigPw)); err != nil {
			t.Fatal(err)
		}
		// Now known: a strict dialer over the same file logs in.
		strict, err := New(Config{KnownHosts: kh}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := strict.Verify(context.Background(), h, rigUser, secret.New(rigPw)); err != nil {
			t.Fatal(err)
		}
		// And a scanned key approved with AppendKnownHosts is enough too.
		kh2 := filepath.Join(dir, "scanned")
		if err := AppendKnownHosts(kh2, keys); err != nil {
			t.Fatal(err)
		}
		d2, err := New(Config{KnownHosts: kh2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := d2.Verify(context.Background(), h, rigUser, secret.New(rigPw)); err != nil {
			t.Fatal(err)
		}
	})
	e.watch.check(t, rigPw)
}

func TestRigAuthFailed(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian}, sshtest.HostSpec{Variant: sshtest.Debian, KbdInteractiveOnly: true})
	for i := range e.rig.Hosts() {
		before := e.rig.AuthAttempts(i)
		_, err := e.d.Login(context.Background(), e.host(i), rigUser, secret.New("Not-The-Pw-9"))
		e.watch.add(err)
		if !errors.Is(err, rotation.ErrAuthFailed) {
			t.Fatalf("host %d: err %v, want ErrAuthFailed", i, err)
		}
		// One refused password is one attempt, not one per method: a
		// lockout policy (pam_faillock) counts every attempt. A control
		// login after it is the second.
		e.waitAttempts(t, i, before+1)
		if !e.logsIn(t, i, rigPw) {
			t.Fatal("control login failed")
		}
		if n := e.waitAttempts(t, i, before+2) - before; n != 2 {
			t.Fatalf("host %d: sshd saw %d attempts, want 1 and the control login", i, n-1)
		}
	}
	e.watch.check(t, rigPw, "Not-The-Pw-9")
}

func TestRigSetPasswordAsRoot(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian}, sshtest.HostSpec{Variant: sshtest.BusyBox})
	const newPw = "Root-Set-Pw-1x"
	for i, h := range e.rig.Hosts() {
		t.Run(h.Variant.String(), func(t *testing.T) {
			// The account's own password is lost.
			if err := e.rig.SetPassword(i, "Lost-Pw-55z"); err != nil {
				t.Fatal(err)
			}
			s := e.login(t, i, "root", rigRoot)
			o := s.SetPassword(context.Background(), rigUser, secret.New(newPw))
			e.watch.add(o)
			if o.Kind != rotation.OutcomeChanged {
				t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
			}
			if !e.logsIn(t, i, newPw) {
				t.Fatal("the new password does not log in")
			}
		})
	}
	o := (&Session{}).SetPassword(context.Background(), "x; rm -rf /", secret.New(newPw))
	if o.Kind != rotation.OutcomeUnexpected || o.Err == nil {
		t.Fatalf("a bad user name was accepted: %v", o)
	}
	e.watch.check(t, rigRoot, newPw, "Lost-Pw-55z")
}

func TestRigSetPasswordThroughSudo(t *testing.T) {
	if _, err := os.Stat("/usr/bin/sudo"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sudo required under CI: %v", err)
		}
		t.Skipf("sudo unavailable: %v", err)
	}
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian}, sshtest.HostSpec{Variant: sshtest.Debian})
	const newPw = "Sudo-Set-Pw-2x"
	t.Run("OK", func(t *testing.T) {
		s := e.login(t, 0, rigUser, rigPw)
		o := s.SetPassword(context.Background(), rigUser, secret.New(newPw))
		e.watch.add(o)
		if o.Kind != rotation.OutcomeChanged {
			t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
		}
		if !e.logsIn(t, 0, newPw) {
			t.Fatal("the new password does not log in")
		}
	})
	t.Run("SudoRefusesLoginPassword", func(t *testing.T) {
		s := e.login(t, 1, rigUser, rigPw)
		// Changed behind the session's back: sudo no longer takes the
		// password the session logged in with.
		if err := e.rig.SetPassword(1, "Changed-Behind-4q"); err != nil {
			t.Fatal(err)
		}
		before := e.shadow(t, 1)
		o := s.SetPassword(context.Background(), rigUser, secret.New(newPw))
		e.watch.add(o)
		if o.Kind != rotation.OutcomeWrongCurrent {
			t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
		}
		if e.shadow(t, 1) != before {
			t.Fatal("shadow changed")
		}
	})
	e.watch.check(t, rigPw, newPw, "Changed-Behind-4q")
}
