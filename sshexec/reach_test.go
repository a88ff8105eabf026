package sshexec

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// testKey is a logon key: its private half as OpenSSH PEM bytes (under
// passphrase when set) and its public half for authorized_keys.
type testKey struct {
	name       string
	pem        []byte
	passphrase string
	pub        ssh.PublicKey
}

func makeKey(t *testing.T, name string, priv crypto.Signer, passphrase string) testKey {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKey{name: name, pem: pem.EncodeToMemory(block), passphrase: passphrase, pub: pub}
}

// logonKeys returns an ed25519, an ECDSA, an RSA and a passphrase-protected
// ed25519 key.
func logonKeys(t *testing.T) []testKey {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed2, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []testKey{
		makeKey(t, "ed25519", ed, ""),
		makeKey(t, "ecdsa", ec, ""),
		makeKey(t, "rsa", rk, ""),
		makeKey(t, "ed25519-passphrase", ed2, "Key-Phrase-77x"),
	}
}

func (k testKey) auth(t *testing.T) LogonAuth {
	t.Helper()
	a, err := KeyLogon(k.pem, secret.New(k.passphrase))
	if err != nil {
		t.Fatalf("key %s: %v", k.name, err)
	}
	return a
}

func (e *rigEnv) through(t *testing.T, p Path) *Reach {
	t.Helper()
	r, err := e.d.Through(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rootWorks reports whether pw is root's password on host i, from the
// host's shadow file (no login: nothing is counted).
func (e *rigEnv) rootWorks(t *testing.T, i int, pw string) bool {
	t.Helper()
	ok, err := e.rig.PasswordWorks(i, "root", pw)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func (e *rigEnv) rootShadow(t *testing.T, i int) string {
	t.Helper()
	l, err := e.rig.ShadowEntry(i, "root")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// noCredentialsOnHost fails t if a process on host i carries one of pws
// in its command line or environment.
func (e *rigEnv) noCredentialsOnHost(t *testing.T, i int, pws ...string) {
	t.Helper()
	ps, err := e.rig.Processes(i)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		for _, s := range append(append([]string(nil), p.Args...), p.Env...) {
			for _, pw := range pws {
				if pw != "" && strings.Contains(s, pw) {
					t.Errorf("host %d: process %d %q carries a credential", i, p.Pid, p.Args)
				}
			}
		}
	}
}

// rotateRoot changes root's password on host i along r from old to new
// as the engine does: the lifeline login with old, passwd, a fresh
// verifying login with new; the lifeline is closed only afterwards.
func (e *rigEnv) rotateRoot(t *testing.T, r *Reach, i int, old, new string, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	s, err := r.Login(ctx, e.host(i), "root", secret.New(old))
	e.watch.add(err)
	if err != nil {
		var se *StepError
		if errors.As(err, &se) {
			t.Logf("transcript %q", se.Transcript)
		}
		t.Fatalf("login along %v: %v", r.Path(), err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	e.noCredentialsOnHost(t, i, append([]string{old, new}, secrets...)...)
	o := s.ChangePassword(ctx, secret.New(old), secret.New(new))
	e.watch.add(o)
	if o.Kind != rotation.OutcomeChanged {
		t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
	}
	if err := r.Verify(ctx, e.host(i), "root", secret.New(new)); err != nil {
		e.watch.add(err)
		t.Fatalf("the new root password does not authenticate along %v: %v", r.Path(), err)
	}
	if !e.rootWorks(t, i, new) || e.rootWorks(t, i, old) {
		t.Fatal("the host's shadow does not hold the new root password alone")
	}
	// The lifeline still works after the change (a revert would use it).
	if err := s.Check(ctx); err != nil {
		t.Fatalf("the lifeline after the change: %v", err)
	}
}

// TestReachRootThroughSu: root, which may not log in over SSH, is rotated
// by a logon account through su on shadow-utils and BusyBox hosts: the
// new password authenticates root through su from a fresh session, the
// old one is no longer root's, and no password shows in a process's
// arguments or environment on the host, or in any text sshexec produced.
func TestReachRootThroughSu(t *testing.T) {
	sshtest.RequireReach(t)
	no := &sshtest.ReachSpec{PermitRootLogin: "no"}
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian, Reach: no}, sshtest.HostSpec{Variant: sshtest.BusyBox, Reach: no})
	const newPw, back, logonNew = "Root-Via-Su-4k", "Root-Back-Su-8m", "Logon-Set-Pw-6t"
	r := e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New(rigPw)), Escalation: EscalateSu})
	for i, h := range e.rig.Hosts() {
		t.Run(h.Variant.String(), func(t *testing.T) {
			err := e.d.Verify(context.Background(), e.host(i), "root", secret.New(rigRoot))
			if !errors.Is(err, rotation.ErrAuthFailed) {
				t.Fatalf("root logged in over SSH on a PermitRootLogin-no host: %v", err)
			}
			e.rotateRoot(t, r, i, rigRoot, newPw, rigPw)
			e.rotateRoot(t, r, i, newPw, back, rigPw)
			// Root's shell sets another account's password (reconcile's
			// SetPassword): here the logon account's own, last.
			s, err := r.Login(context.Background(), e.host(i), "root", secret.New(back))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			o := s.SetPassword(context.Background(), rigUser, secret.New(logonNew))
			e.watch.add(o)
			if o.Kind != rotation.OutcomeChanged {
				t.Fatalf("set password: %v\ntranscript %q", o, o.Transcript)
			}
			if ok, err := e.rig.PasswordWorks(i, rigUser, logonNew); err != nil || !ok {
				t.Fatalf("the logon account's new password is not in the host's shadow (%v)", err)
			}
			// sshd saw root's refused login, one logon per rotation (the
			// verifying su shares the lifeline's connection), the
			// SetPassword logon and this control login: nothing else.
			if !e.logsIn(t, i, logonNew) {
				t.Fatal("the control login failed")
			}
			if n := e.waitAttempts(t, i, 5); n != 5 {
				t.Fatalf("sshd saw %d authentications, want 5", n)
			}
		})
	}
	e.watch.check(t, rigRoot, newPw, back, rigPw, logonNew)
}

// TestReachRootThroughSudo: on keys-only hosts (no password logins at
// all) the logon account logs in by key and rotates root through sudo,
// answering sudo with its own password, also under `Defaults requiretty`,
// and without one where sudoers says NOPASSWD, and where sudoers allows
// the logon account nothing but rotord's passwd command; shadow-utils and
// BusyBox.
func TestReachRootThroughSudo(t *testing.T) {
	sshtest.RequireReach(t)
	keys := logonKeys(t)
	key := keys[0]
	spec := func(v sshtest.Variant, rule sshtest.SudoRule, tty bool) sshtest.HostSpec {
		return sshtest.HostSpec{Variant: v, Reach: &sshtest.ReachSpec{
			PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{key.pub},
			Sudo: rule, RequireTTY: tty,
		}}
	}
	e := startRig(t, Config{},
		spec(sshtest.Debian, sshtest.SudoPassword, false),
		spec(sshtest.BusyBox, sshtest.SudoPassword, false),
		spec(sshtest.Debian, sshtest.SudoPassword, true),
		spec(sshtest.BusyBox, sshtest.SudoNoPassword, true),
		spec(sshtest.Debian, sshtest.SudoPasswdOnly, false),
	)
	const newPw = "Root-Via-Sudo-5q"
	withPw := e.through(t, Path{Logon: rigUser, Auth: key.auth(t).WithPassword(secret.New(rigPw)), Escalation: EscalateSudo})
	noPw := e.through(t, Path{Logon: rigUser, Auth: key.auth(t), Escalation: EscalateSudo})
	for i, name := range []string{"debian", "busybox", "debian-requiretty", "busybox-nopasswd", "debian-passwd-only"} {
		t.Run(name, func(t *testing.T) {
			// Password logins are off: the logon password gets nowhere.
			pwLogon := e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New(rigPw)), Escalation: EscalateSudo})
			_, err := pwLogon.Login(context.Background(), e.host(i), "root", secret.New(rigRoot))
			e.watch.add(err)
			if !errors.Is(err, ErrLogonMethod) || errors.Is(err, rotation.ErrAuthFailed) {
				t.Fatalf("password logon on a keys-only host: %v", err)
			}
			r := withPw
			if strings.HasSuffix(name, "nopasswd") {
				r = noPw
			}
			e.rotateRoot(t, r, i, rigRoot, newPw, rigPw, key.passphrase)
		})
	}
	e.watch.check(t, rigRoot, newPw, rigPw)
}

// TestReachLogonKeys: the logon account logs in with each key type
// (ed25519, ECDSA, RSA with rsa-sha2 signatures, a passphrase-protected
// key) and with its password; a key file readable by others is refused
// before it is read, a 0600 one is loaded; a wrong passphrase is an error.
func TestReachLogonKeys(t *testing.T) {
	sshtest.RequireReach(t)
	keys := logonKeys(t)
	var pubs []ssh.PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.pub)
	}
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{PermitRootLogin: "no", AuthorizedKeys: pubs}})
	ctx := context.Background()
	for _, k := range keys {
		t.Run(k.name, func(t *testing.T) {
			r := e.through(t, Path{Logon: rigUser, Auth: k.auth(t), Escalation: EscalateSu})
			if err := r.Verify(ctx, e.host(0), "root", secret.New(rigRoot)); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("password", func(t *testing.T) {
		r := e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New(rigPw)), Escalation: EscalateSu})
		if err := r.Verify(ctx, e.host(0), "root", secret.New(rigRoot)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("file", func(t *testing.T) {
		k := keys[3]
		p := filepath.Join(t.TempDir(), "id_logon")
		if err := os.WriteFile(p, k.pem, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyFile(p, secret.New(k.passphrase))
		e.watch.add(err)
		if !errors.Is(err, ErrKeyFileMode) {
			t.Fatalf("a key file of mode 0644 was accepted: %v", err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = LoadKeyFile(p, secret.New("Wrong-Phrase-1"))
		e.watch.add(err)
		if !errors.Is(err, ErrKeyPassphrase) {
			t.Fatalf("wrong passphrase: %v", err)
		}
		_, err = LoadKeyFile(p, secret.Value{})
		e.watch.add(err)
		if !errors.Is(err, ErrKeyPassphrase) {
			t.Fatalf("missing passphrase: %v", err)
		}
		a, err := LoadKeyFile(p, secret.New(k.passphrase))
		if err != nil {
			t.Fatal(err)
		}
		e.watch.add(a, Path{Logon: rigUser, Auth: a}.String())
		r := e.through(t, Path{Logon: rigUser, Auth: a, Escalation: EscalateSu})
		if err := r.Verify(ctx, e.host(0), "root", secret.New(rigRoot)); err != nil {
			t.Fatal(err)
		}
	})
	// The target logs in itself by key (escalation none): su proves its
	// password, and passwd, asking the current one, changes it.
	t.Run("none by key", func(t *testing.T) {
		const newPw = "Self-By-Key-3w"
		r := e.through(t, Path{Auth: keys[0].auth(t), Escalation: EscalateNone})
		_, err := r.Login(ctx, e.host(0), rigUser, secret.New("Not-Its-Pw-5"))
		e.watch.add(err)
		if !errors.Is(err, rotation.ErrAuthFailed) {
			t.Fatalf("a wrong password through a key logon: %v", err)
		}
		s, err := r.Login(ctx, e.host(0), rigUser, secret.New(rigPw))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		o := s.ChangePassword(ctx, secret.New(rigPw), secret.New(newPw))
		e.watch.add(o)
		if o.Kind != rotation.OutcomeChanged {
			t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
		}
		if err := r.Verify(ctx, e.host(0), rigUser, secret.New(newPw)); err != nil {
			t.Fatal(err)
		}
		if ok, err := e.rig.PasswordWorks(0, rigUser, newPw); err != nil || !ok {
			t.Fatalf("the new password is not in the host's shadow (%v)", err)
		}
	})
	e.watch.check(t, rigRoot, rigPw, keys[3].passphrase, "Wrong-Phrase-1", "Not-Its-Pw-5", "Self-By-Key-3w")
}

// TestReachFailures: each way a path fails is a *StepError naming the
// host and the step, with its own reason; only su refusing the target's
// password is rotation.ErrAuthFailed; root's password is unchanged on
// every host; no credential shows.
func TestReachFailures(t *testing.T) {
	sshtest.RequireReach(t)
	keys := logonKeys(t)
	ed, stranger := keys[0], keys[1]
	keysOnly := func(rule sshtest.SudoRule, algos string) *sshtest.ReachSpec {
		return &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{ed.pub}, Sudo: rule, PubkeyAcceptedAlgorithms: algos}
	}
	wheelOnly := func(r *sshtest.ReachSpec) *sshtest.ReachSpec { r.Wheel = sshtest.WheelNotMember; return r }
	e := startRig(t, Config{},
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{PermitRootLogin: "no"}},                                                             // 0
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{PermitRootLogin: "no", Wheel: sshtest.WheelNotMember}},                              // 1
		sshtest.HostSpec{Variant: sshtest.BusyBox, Reach: &sshtest.ReachSpec{PermitRootLogin: "no", Wheel: sshtest.WheelMember}},                                // 2
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: keysOnly(sshtest.SudoNone, "")},                                                                        // 3
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: keysOnly(sshtest.SudoPassword, "")},                                                                    // 4
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: keysOnly(sshtest.SudoPassword, "rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256")},                       // 5
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{PermitRootLogin: "prohibit-password", RootAuthorizedKeys: []ssh.PublicKey{ed.pub}}}, // 6
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: keysOnly(sshtest.SudoOtherOnly, "")},                                                                   // 7
		sshtest.HostSpec{Variant: sshtest.Debian, Reach: wheelOnly(keysOnly(sshtest.SudoPassword, ""))},                                                         // 8
	)
	before := make([]string, len(e.rig.Hosts()))
	for i := range before {
		before[i] = e.rootShadow(t, i)
	}
	const wrongLogon, wrongRoot = "Wrong-Logon-Pw-3", "Wrong-Root-Pw-4"
	byPw := func(pw string, esc Escalation) Path {
		return Path{Logon: rigUser, Auth: PasswordLogon(secret.New(pw)), Escalation: esc}
	}
	byKey := func(k testKey, pw string, esc Escalation) Path {
		a := k.auth(t)
		if pw != "" {
			a = a.WithPassword(secret.New(pw))
		}
		return Path{Logon: rigUser, Auth: a, Escalation: esc}
	}
	for _, c := range []struct {
		name     string
		host     int
		path     Path
		rootPw   string
		step     Step
		reason   error
		authFail bool // the target's password was refused
	}{
		{"wrong logon password", 0, byPw(wrongLogon, EscalateSu), rigRoot, StepLogon, ErrLogonRefused, false},
		{"wrong target password for su", 0, byPw(rigPw, EscalateSu), wrongRoot, StepSu, ErrSuRefused, true},
		{"not in wheel", 1, byPw(rigPw, EscalateSu), rigRoot, StepSu, ErrSuDenied, false},
		{"wrong logon key", 4, byKey(stranger, rigPw, EscalateSudo), rigRoot, StepLogon, ErrLogonKeyRefused, false},
		{"key type refused by sshd", 5, byKey(ed, rigPw, EscalateSudo), rigRoot, StepLogon, ErrLogonKeyRefused, false},
		{"password logon on keys-only host", 4, byPw(rigPw, EscalateSudo), rigRoot, StepLogon, ErrLogonMethod, false},
		{"not in sudoers", 3, byKey(ed, rigPw, EscalateSudo), rigRoot, StepSudo, ErrNotInSudoers, false},
		// sudo accepts the password and would run id, not passwd: the
		// pre-flight asks sudo about the very passwd command.
		{"sudo allows other commands only", 7, byKey(ed, rigPw, EscalateSudo), rigRoot, StepSudo, ErrNotInSudoers, false},
		// sudo would run passwd, but su, which proves root's password,
		// is restricted to wheel: nothing can prove it, nothing changes.
		{"sudo allowed, su denied by pam_wheel", 8, byKey(ed, rigPw, EscalateSudo), rigRoot, StepSu, ErrSuDenied, false},
		{"wrong sudo password", 4, byKey(ed, wrongLogon, EscalateSudo), rigRoot, StepSudo, ErrSudoRefused, false},
		{"sudo needs a password the path lacks", 4, byKey(ed, "", EscalateSudo), rigRoot, StepSudo, ErrSudoPasswordRequired, false},
		{"root by key proves no password", 6, Path{Auth: ed.auth(t)}, rigRoot, StepSu, ErrSuNoPassword, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.through(t, c.path)
			s, err := r.Login(context.Background(), e.host(c.host), "root", secret.New(c.rootPw))
			e.watch.add(err)
			if err == nil {
				s.Close()
				t.Fatal("the path worked")
			}
			var se *StepError
			if !errors.As(err, &se) || se.Step != c.step || !errors.Is(err, c.reason) {
				t.Fatalf("got %v, want step %s: %v", err, c.step, c.reason)
			}
			if se.Host != e.rig.Hosts()[c.host].Addr() || !strings.Contains(err.Error(), se.Host) || !strings.Contains(err.Error(), string(c.step)) {
				t.Fatalf("the error does not name the host and step: %v", err)
			}
			if got := errors.Is(err, rotation.ErrAuthFailed); got != c.authFail {
				t.Fatalf("errors.Is(ErrAuthFailed) = %v for %v", got, err)
			}
			if rotation.Transient(err) {
				t.Fatalf("a refusal is transient: %v", err)
			}
			t.Log(err)
		})
	}
	// sudo refusing the logon password at passwd time (changed behind the
	// session's back) is an outcome with the typed step error: passwd
	// never ran.
	t.Run("sudo refuses at passwd", func(t *testing.T) {
		s, err := e.through(t, byKey(ed, rigPw, EscalateSudo)).Login(context.Background(), e.host(4), "root", secret.New(rigRoot))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := e.rig.SetPassword(4, "Changed-Behind-7"); err != nil {
			t.Fatal(err)
		}
		o := s.ChangePassword(context.Background(), secret.New(rigRoot), secret.New("Never-Set-Pw-2"))
		e.watch.add(o)
		var se *StepError
		if o.Kind != rotation.OutcomeUnexpected || !errors.As(o.Err, &se) || se.Step != StepSudo || !errors.Is(o.Err, ErrSudoRefused) {
			t.Fatalf("outcome %v", o)
		}
	})
	// The wheel member may su on its host.
	if err := e.through(t, byPw(rigPw, EscalateSu)).Verify(context.Background(), e.host(2), "root", secret.New(rigRoot)); err != nil {
		t.Fatalf("wheel member: %v", err)
	}
	for i := range before {
		if e.rootShadow(t, i) != before[i] {
			t.Errorf("host %d: root's shadow entry changed", i)
		}
	}
	e.watch.check(t, rigRoot, rigPw, wrongLogon, wrongRoot, "Changed-Behind-7", "Never-Set-Pw-2")
}

// TestReachFaillockBudget: on a pam_faillock host a refused target
// password costs su exactly one refusal in root's tally, and a refused
// sudo password one in the logon account's: nothing is sent twice.
func TestReachFaillockBudget(t *testing.T) {
	sshtest.RequireReach(t)
	keys := logonKeys(t)
	e := startRig(t, Config{},
		sshtest.HostSpec{Variant: sshtest.Faillock, Reach: &sshtest.ReachSpec{PermitRootLogin: "no"}},
		sshtest.HostSpec{Variant: sshtest.Faillock, Reach: &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{keys[0].pub}, Sudo: sshtest.SudoPassword}},
	)
	ctx := context.Background()
	count := func(i int, user string) int {
		t.Helper()
		n, err := e.rig.FaillockCount(i, user)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	su := e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New(rigPw)), Escalation: EscalateSu})
	_, err := su.Login(ctx, e.host(0), "root", secret.New("Wrong-Root-Pw-9"))
	if !errors.Is(err, ErrSuRefused) {
		t.Fatalf("su with a wrong password: %v", err)
	}
	if n := count(0, "root"); n != 1 {
		t.Fatalf("root's tally after one refused su: %d", n)
	}
	if n := count(0, rigUser); n != 0 {
		t.Fatalf("the logon account's tally: %d", n)
	}
	// A refused logon password is one refusal of the logon account's,
	// none of root's.
	_, err = e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New("Wrong-Logon-Pw-7")), Escalation: EscalateSu}).Login(ctx, e.host(0), "root", secret.New(rigRoot))
	if !errors.Is(err, ErrLogonRefused) {
		t.Fatalf("a wrong logon password: %v", err)
	}
	if n := count(0, rigUser); n != 1 {
		t.Fatalf("the logon account's tally after one refused logon: %d", n)
	}
	if n := count(0, "root"); n != 1 {
		t.Fatalf("root's tally after a refused logon: %d", n)
	}
	// A good su resets nothing of root's budget it did not spend.
	if err := su.Verify(ctx, e.host(0), "root", secret.New(rigRoot)); err != nil {
		t.Fatal(err)
	}
	sudo := e.through(t, Path{Logon: rigUser, Auth: keys[0].auth(t).WithPassword(secret.New("Wrong-Logon-Pw-8")), Escalation: EscalateSudo})
	deadline, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i := 1; i < sshtest.FaillockDeny; i++ {
		_, err = sudo.Login(deadline, e.host(1), "root", secret.New(rigRoot))
		if !errors.Is(err, ErrSudoRefused) {
			t.Fatalf("sudo with a wrong password: %v", err)
		}
		if n := count(1, rigUser); n != i {
			t.Fatalf("the logon account's tally after %d refused sudo passwords: %d", i, n)
		}
	}
	if n := count(1, "root"); n != 0 {
		t.Fatalf("root's tally after a sudo refusal: %d", n)
	}
}

// TestReachShellSurvivesRefusal: a policy refusal inside the kept su
// shell leaves the shell working (passwd is given up on, not the shell),
// so the lifeline can still change the password; and a host whose key is
// not known gets no credential at all.
func TestReachShellSurvivesRefusal(t *testing.T) {
	sshtest.RequireReach(t)
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.PwQuality, Reach: &sshtest.ReachSpec{PermitRootLogin: "no"}})
	ctx := context.Background()
	const newPw = "Qx7-Lifeline-Pw-2025"
	r := e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New(rigPw)), Escalation: EscalateSu})
	s, err := r.Login(ctx, e.host(0), rigUser, secret.New(rigPw))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := e.shadow(t, 0)
	o := s.ChangePassword(ctx, secret.New(rigPw), secret.New("abc"))
	e.watch.add(o)
	if o.Kind != rotation.OutcomeRejected {
		t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
	}
	if e.shadow(t, 0) != before {
		t.Fatal("a refused password changed the shadow entry")
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("the shell after a refusal: %v", err)
	}
	o = s.ChangePassword(ctx, secret.New(rigPw), secret.New(newPw))
	e.watch.add(o)
	if o.Kind != rotation.OutcomeChanged {
		t.Fatalf("outcome %v\ntranscript %q", o, o.Transcript)
	}
	if ok, err := e.rig.PasswordWorks(0, rigUser, newPw); err != nil || !ok {
		t.Fatalf("the new password is not in the host's shadow (%v)", err)
	}

	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.KnownHosts = kh
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	strict, err := d.Through(Path{Logon: rigUser, Auth: PasswordLogon(secret.New(newPw)), Escalation: EscalateSu})
	if err != nil {
		t.Fatal(err)
	}
	attempts := e.rig.AuthAttempts(0)
	_, err = strict.Login(ctx, e.host(0), "root", secret.New(rigRoot))
	var hke *HostKeyError
	if !errors.As(err, &hke) || !errors.Is(err, rotation.ErrHostKey) {
		t.Fatalf("unknown host key: %v", err)
	}
	if e.rig.AuthAttempts(0) != attempts {
		t.Fatal("a credential went to a host whose key is unknown")
	}
	e.watch.check(t, rigPw, newPw, "abc", rigRoot)
}

// TestReachSlowSuRefusal: su given the target's password and silent past
// the step timeout is ErrSuUnknown: rotation.ErrLoginUnknown (it may
// have been refused, so it counts and is not retried), never
// rotation.ErrUnreachable.
func TestReachSlowSuRefusal(t *testing.T) {
	sshtest.RequireReach(t)
	e := startRig(t, Config{StepTimeout: time.Second}, sshtest.HostSpec{Variant: sshtest.Debian, RefusalDelay: 4 * time.Second, Reach: &sshtest.ReachSpec{PermitRootLogin: "no"}})
	r := e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New(rigPw)), Escalation: EscalateSu})
	_, err := r.Login(context.Background(), e.host(0), "root", secret.New("Wrong-Slow-Pw-1"))
	e.watch.add(err)
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepSu || !errors.Is(err, ErrSuUnknown) || !errors.Is(err, rotation.ErrLoginUnknown) ||
		errors.Is(err, rotation.ErrUnreachable) || errors.Is(err, rotation.ErrAuthFailed) {
		t.Fatalf("a slow su refusal: %v", err)
	}
	e.watch.check(t, rigPw, "Wrong-Slow-Pw-1")
}

// TestReachSharedConnectionBroken: a login that would share a lifeline's
// logon connection which has died meanwhile (the host restarted) dials a
// fresh one; the dead lifeline reports itself unreachable.
func TestReachSharedConnectionBroken(t *testing.T) {
	sshtest.RequireReach(t)
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{PermitRootLogin: "no"}})
	ctx := context.Background()
	r := e.through(t, Path{Logon: rigUser, Auth: PasswordLogon(secret.New(rigPw)), Escalation: EscalateSu})
	s, err := r.Login(ctx, e.host(0), "root", secret.New(rigRoot))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := e.rig.StopHost(0); err != nil {
		t.Fatal(err)
	}
	if err := e.rig.StartHost(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, e.host(0), "root", secret.New(rigRoot)); err != nil {
		t.Fatalf("a login after the shared connection died: %v", err)
	}
	if err := s.Check(ctx); !errors.Is(err, rotation.ErrUnreachable) {
		t.Fatalf("the dead lifeline: %v", err)
	}
	if o := s.ChangePassword(ctx, secret.New(rigRoot), secret.New("Never-Pw-3")); o.Kind != rotation.OutcomeUnexpected || !errors.Is(o.Err, rotation.ErrUnreachable) || o.Transcript != "" {
		t.Fatalf("passwd on the dead lifeline: %v", o)
	}
	if !e.rootWorks(t, 0, rigRoot) {
		t.Fatal("root's password changed")
	}
}
