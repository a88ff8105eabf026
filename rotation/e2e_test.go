package rotation_test

// End-to-end tests of the engine against the real parts: OpenSSH sshd hosts
// with real passwd programs (the sshtest rig), the Secret Server emulator
// over TLS, and the SQLite journal.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
	"github.com/rotord/rotord/store"
)

const (
	rigUser     = "rotuser"
	rigPassword = "Initial-Pw-2024"
	ssUser      = "svc-rotord"
	ssPassword  = "Svc-Pw-0ne!"
)

type lab struct {
	rig    *sshtest.Rig
	ss     *sstest.Server
	vault  *secretserver.Client
	hosts  *sshexec.Dialer
	db     *store.DB
	engine *rotation.Engine
	id     int
	spec   rotation.SecretSpec
	cfg    rotation.Config
}

// newLab starts one rig host per variant given, a Secret Server emulator
// holding one secret that lists them, and a journal; mod adjusts the
// engine's config; wrap, if set, wraps the vault the engine sees.
func newLab(t *testing.T, variants []sshtest.Variant, mod func(*rotation.Config), wrap func(rotation.Vault) rotation.Vault) *lab {
	t.Helper()
	sshtest.RequireRig(t, variants...)
	ctx := context.Background()
	specs := make([]sshtest.HostSpec, len(variants))
	for i, v := range variants {
		specs[i] = sshtest.HostSpec{Variant: v}
	}
	rig, err := sshtest.StartRig(ctx, sshtest.RigOptions{Hosts: specs, User: rigUser, Password: rigPassword})
	if err != nil {
		t.Fatalf("start rig: %v", err)
	}
	t.Cleanup(func() { _ = rig.Close() })
	ss := sstest.New()
	t.Cleanup(ss.Close)
	ss.AddUser(ssUser, "", ssPassword)
	var addrs []string
	for _, h := range rig.Hosts() {
		addrs = append(addrs, h.Addr())
	}
	id := ss.AddSecret(sstest.SecretSeed{Name: "prod-root", Folder: `\Prod\Linux`, Username: rigUser,
		Password: rigPassword, Notes: strings.Join(addrs, ", ")})
	vault, err := secretserver.New(secretserver.Config{URL: ss.URL, Username: ssUser, Password: secret.New(ssPassword),
		CAPEM: ss.CACertPEM(), RetryBaseDelay: time.Millisecond, MaxRetries: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := sshexec.DefaultConfig()
	sc.KnownHosts, sc.StepTimeout = rig.KnownHostsFile(), 10*time.Second
	hosts, err := sshexec.New(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := store.NewKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "rotord.db"), store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	l := &lab{rig: rig, ss: ss, vault: vault, hosts: hosts, db: db, id: id, spec: rotation.SecretSpec{Name: "prod-root"}}
	l.cfg = testConfig(func(c *rotation.Config) {
		c.Concurrency = 16
		c.RetryBase = 10 * time.Millisecond
		c.Length = 24
		c.Generator = rotation.GeneratorLocal
	})
	if mod != nil {
		mod(&l.cfg)
	}
	var v rotation.Vault = vault
	if wrap != nil {
		v = wrap(vault)
	}
	l.engine = newEngine(t, l.cfg, rotation.Deps{Vault: v, Hosts: hosts, Store: db})
	return l
}

// loginWorks reports whether pw logs into rig host i, by a fresh login.
func (l *lab) loginWorks(t *testing.T, i int, pw string) bool {
	t.Helper()
	h := l.rig.Hosts()[i]
	s, err := l.hosts.Login(context.Background(), rotation.Host{Name: h.Name, Port: h.Port}, rigUser, secret.New(pw))
	if err != nil {
		if !errors.Is(err, rotation.ErrAuthFailed) {
			t.Fatalf("host %d: login: %v", i, err)
		}
		return false
	}
	_ = s.Close()
	return true
}

// assertEverywhere checks that pw, and no other password tried, logs into
// every host, and that the vault holds pw.
func (l *lab) assertEverywhere(t *testing.T, pw string, not ...string) {
	t.Helper()
	for i := range l.rig.Hosts() {
		if !l.loginWorks(t, i, pw) {
			t.Errorf("host %d: the expected password does not log in", i)
		}
		for _, n := range not {
			if n != pw && l.loginWorks(t, i, n) {
				t.Errorf("host %d: a superseded password still logs in", i)
			}
		}
	}
	if got := l.ss.Field(l.id, "password"); got != pw {
		t.Errorf("Secret Server holds another password (len %d, want len %d)", len(got), len(pw))
	}
}

func (l *lab) shadow(t *testing.T) []string {
	t.Helper()
	var out []string
	for i := range l.rig.Hosts() {
		s, err := l.rig.ShadowLine(i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestE2ERotate(t *testing.T) {
	for _, n := range []int{1, 5, 50} {
		t.Run(fmt.Sprintf("%dHosts", n), func(t *testing.T) {
			variants := make([]sshtest.Variant, n)
			for i := range variants {
				variants[i] = []sshtest.Variant{sshtest.Debian, sshtest.BusyBox}[i%2]
			}
			l := newLab(t, variants, nil, nil)
			before := l.shadow(t)
			res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{Actor: "test"})
			if res.Err != nil || res.State != rotation.StateCommitted {
				t.Fatalf("rotate: %s: %v", res.State, res.Err)
			}
			newPw := l.ss.Field(l.id, "password")
			if newPw == rigPassword || len(newPw) != 24 {
				t.Fatalf("Secret Server holds no new password (len %d)", len(newPw))
			}
			l.assertEverywhere(t, newPw, rigPassword)
			after := l.shadow(t)
			for i := range before {
				if before[i] == after[i] {
					t.Errorf("host %d: shadow line unchanged", i)
				}
			}
			r, err := l.db.Get(context.Background(), res.RotationID)
			if err != nil {
				t.Fatal(err)
			}
			if r.State != rotation.StateCommitted || r.Old.Reveal() != rigPassword || r.New.Reveal() != newPw {
				t.Errorf("journal: %s; old and new not both kept", r.State)
			}
		})
	}
}

func TestE2EFailuresRevertEveryChangedHost(t *testing.T) {
	t.Run("UnreachableBeforeChange", func(t *testing.T) {
		l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.Debian}, nil, nil)
		if err := l.rig.StopHost(2); err != nil {
			t.Fatal(err)
		}
		before := l.shadow(t)[:2]
		res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrPreflight) || !errors.Is(res.Err, rotation.ErrUnreachable) || res.RotationID != 0 {
			t.Fatalf("rotate: %v", res.Err)
		}
		if !strings.Contains(res.Hosts[2].Outcome, "connection refused") || res.Hosts[2].State != rotation.HostFailed {
			t.Errorf("outcome does not name the unreachable host: %+v", res.Hosts[2])
		}
		if after := l.shadow(t)[:2]; after[0] != before[0] || after[1] != before[1] {
			t.Error("a host changed")
		}
		if l.ss.Field(l.id, "password") != rigPassword {
			t.Error("Secret Server changed")
		}
	})
	t.Run("PolicyRejects", func(t *testing.T) {
		// The vault's generator makes dictionary words: the pwquality host
		// refuses every one, the others would take them.
		weak := &weakVault{}
		l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.PwQuality, sshtest.BusyBox},
			func(c *rotation.Config) { c.Generator = rotation.GeneratorServer },
			func(v rotation.Vault) rotation.Vault { weak.Vault = v; weak.always = true; return weak })
		res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrRolledBack) || res.State != rotation.StateRolledBack {
			t.Fatalf("rotate: %s: %v", res.State, res.Err)
		}
		if !strings.Contains(res.Err.Error(), "dictionary") {
			t.Errorf("outcome lacks the policy's reason: %v", res.Err)
		}
		if res.Hosts[0].State != rotation.HostReverted || res.Hosts[1].State != rotation.HostFailed {
			t.Errorf("fates: %+v", res.Hosts)
		}
		l.assertEverywhere(t, rigPassword, weak.given()...)
	})
	t.Run("DiesMidFanOut", func(t *testing.T) {
		var l *lab
		var once sync.Once
		l = newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.Debian}, func(c *rotation.Config) {
			c.Concurrency = 1
			c.Progress = func(_ string, done, _, _ int) {
				if done == 1 { // the canary is changed; host 2 dies before its turn
					once.Do(func() {
						if err := l.rig.StopHost(2); err != nil {
							t.Error(err)
						}
					})
				}
			}
		}, nil)
		res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
		if res.Err == nil || res.State == rotation.StateCommitted {
			t.Fatalf("rotate: %s: %v", res.State, res.Err)
		}
		if l.ss.Field(l.id, "password") != rigPassword {
			t.Error("Secret Server changed")
		}
		for i := range 2 {
			if !l.loginWorks(t, i, rigPassword) {
				t.Errorf("host %d not reverted: %+v", i, res.Hosts[i])
			}
		}
		if res.Hosts[0].State != rotation.HostReverted {
			t.Errorf("host 0: %+v", res.Hosts[0])
		}
		if res.Hosts[2].State == rotation.HostChanged || res.Hosts[2].Outcome == "" {
			t.Errorf("host 2's fate is not named: %+v", res.Hosts[2])
		}
		// It comes back; recovery settles whatever is still open.
		if err := l.rig.StartHost(context.Background(), 2); err != nil {
			t.Fatal(err)
		}
		for _, r := range l.engine.Recover(context.Background(), "test") {
			if r.Err != nil {
				t.Fatalf("recover: %v", r.Err)
			}
		}
		l.assertEverywhere(t, rigPassword)
	})
	t.Run("VaultWriteFailsPersistently", func(t *testing.T) {
		l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.BusyBox}, nil, nil)
		l.ss.FailNext(sstest.EndpointPutField, 1000, 500, `{"errorCode":"API_InternalError","message":"database unavailable"}`)
		res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
		if res.State != rotation.StateRolledBack || !strings.Contains(res.Err.Error(), "database unavailable") {
			t.Fatalf("rotate: %s: %v", res.State, res.Err)
		}
		l.assertEverywhere(t, rigPassword)
	})
}

// weakVault hands out dictionary-word passwords from Generate: always, or
// only the first time.
type weakVault struct {
	rotation.Vault
	always bool
	mu     sync.Mutex
	n      int
	out    []string
}

func (w *weakVault) Generate(ctx context.Context, s rotation.Secret) (secret.Value, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if w.always || w.n == 1 {
		pw := fmt.Sprintf("password%d", w.n)
		w.out = append(w.out, pw)
		return secret.New(pw), nil
	}
	return w.Vault.Generate(ctx, s)
}

func (w *weakVault) given() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.out...)
}

func TestE2EPolicyRejectionGetsFreshPassword(t *testing.T) {
	weak := &weakVault{}
	l := newLab(t, []sshtest.Variant{sshtest.PwQuality, sshtest.Debian, sshtest.BusyBox},
		func(c *rotation.Config) { c.Generator = rotation.GeneratorServer },
		func(v rotation.Vault) rotation.Vault { weak.Vault = v; return weak })
	res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
	if res.Err != nil || res.State != rotation.StateCommitted {
		t.Fatalf("rotate: %s: %v", res.State, res.Err)
	}
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "dictionary") {
		t.Errorf("the rejection reason is not recorded: %q", res.Warnings)
	}
	newPw := l.ss.Field(l.id, "password")
	l.assertEverywhere(t, newPw, rigPassword, "password1")
}

func TestE2EPreflightStopsBeforeAnyChange(t *testing.T) {
	t.Run("WrongCurrentPassword", func(t *testing.T) {
		l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.Debian}, nil, nil)
		if err := l.rig.SetPassword(1, "Someone-Else-1"); err != nil {
			t.Fatal(err)
		}
		before := l.shadow(t)
		res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrPreflight) || !errors.Is(res.Err, rotation.ErrAuthFailed) {
			t.Fatalf("rotate: %v", res.Err)
		}
		if after := l.shadow(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
			t.Error("a host changed")
		}
	})
	t.Run("UnknownHostKey", func(t *testing.T) {
		l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.Debian}, nil, nil)
		// A known_hosts file that lacks host 1.
		kh := filepath.Join(t.TempDir(), "known_hosts")
		if err := knownHostsWithout(l.rig, kh, 1); err != nil {
			t.Fatal(err)
		}
		sc := sshexec.DefaultConfig()
		sc.KnownHosts = kh
		hosts, err := sshexec.New(sc, nil)
		if err != nil {
			t.Fatal(err)
		}
		eng := newEngine(t, l.cfg, rotation.Deps{Vault: l.vault, Hosts: hosts, Store: l.db})
		before := l.shadow(t)
		attempts := l.rig.AuthAttempts(1)
		res := eng.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrPreflight) || !errors.Is(res.Err, rotation.ErrHostKey) {
			t.Fatalf("rotate: %v", res.Err)
		}
		if strings.Join(l.shadow(t), "\n") != strings.Join(before, "\n") {
			t.Error("a host changed")
		}
		if got := l.rig.AuthAttempts(1); got != attempts {
			t.Errorf("the host with the unknown key saw %d password attempts", got-attempts)
		}
	})
}

func TestE2EHumanEditIsNotOverwritten(t *testing.T) {
	var l *lab
	reads := 0
	l = newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.BusyBox}, nil, func(v rotation.Vault) rotation.Vault {
		return &hookVault{Vault: v, beforeRead: func() {
			if reads++; reads == 2 { // the compare-and-swap re-read
				l.ss.SetField(l.id, "password", "Set-By-A-Human-1")
			}
		}}
	})
	res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
	if !errors.Is(res.Err, rotation.ErrSecretChanged) || res.State != rotation.StateRolledBack {
		t.Fatalf("rotate: %s: %v", res.State, res.Err)
	}
	if l.ss.Field(l.id, "password") != "Set-By-A-Human-1" {
		t.Error("the human's edit was overwritten")
	}
	for i := range l.rig.Hosts() {
		if !l.loginWorks(t, i, rigPassword) {
			t.Errorf("host %d not reverted", i)
		}
	}
}

type hookVault struct {
	rotation.Vault
	beforeRead func()
}

func (h *hookVault) Read(ctx context.Context, id int, field string) (rotation.Secret, error) {
	h.beforeRead()
	return h.Vault.Read(ctx, id, field)
}

func TestE2ERollbackTwice(t *testing.T) {
	l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.BusyBox}, nil, nil)
	ctx := context.Background()
	r1 := l.engine.Rotate(ctx, l.spec, rotation.RotateOptions{})
	p1 := l.ss.Field(l.id, "password")
	r2 := l.engine.Rotate(ctx, l.spec, rotation.RotateOptions{})
	p2 := l.ss.Field(l.id, "password")
	if r1.Err != nil || r2.Err != nil {
		t.Fatal(r1.Err, r2.Err)
	}
	if rb := l.engine.Rollback(ctx, l.spec, 0, "test"); rb.Err != nil || rb.State != rotation.StateCommitted {
		t.Fatalf("rollback: %s: %v", rb.State, rb.Err)
	}
	l.assertEverywhere(t, p1, p2)
	if rb := l.engine.Rollback(ctx, l.spec, r1.RotationID, "test"); rb.Err != nil {
		t.Fatalf("rollback to rotation %d: %v", r1.RotationID, rb.Err)
	}
	l.assertEverywhere(t, rigPassword, p1, p2)
}

func TestE2ETwoRotationsAtOnce(t *testing.T) {
	started := make(chan struct{})
	proceed := make(chan struct{})
	var once sync.Once
	l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.Debian}, func(c *rotation.Config) {
		c.Holder = "first/1/a"
		c.Progress = func(string, int, int, int) {
			once.Do(func() { close(started); <-proceed })
		}
	}, nil)
	second := newEngine(t, testConfig(func(c *rotation.Config) { c.Holder = "second/2/b" }), rotation.Deps{Vault: l.vault, Hosts: l.hosts, Store: l.db})
	firstDone := make(chan rotation.Result)
	go func() { firstDone <- l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{}) }()
	<-started
	res := second.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
	close(proceed)
	var held *rotation.LeaseHeldError
	if !errors.As(res.Err, &held) || held.Holder != "first/1/a" {
		t.Fatalf("second rotation: %v", res.Err)
	}
	if first := <-firstDone; first.Err != nil {
		t.Fatalf("first rotation: %v", first.Err)
	}
	l.assertEverywhere(t, l.ss.Field(l.id, "password"), rigPassword)
}

func TestE2EHeartbeatFindsDrift(t *testing.T) {
	l := newLab(t, []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.Debian}, nil, nil)
	if hb := l.engine.Heartbeat(context.Background(), l.spec); hb.Err != nil {
		t.Fatalf("heartbeat before drift: %v", hb.Err)
	}
	if err := l.rig.SetPassword(1, "Behind-Your-Back-1"); err != nil {
		t.Fatal(err)
	}
	before := l.shadow(t)
	hb := l.engine.Heartbeat(context.Background(), l.spec)
	if !errors.Is(hb.Err, rotation.ErrDrift) || hb.Hosts[1].Outcome == "ok" || hb.Hosts[0].Outcome != "ok" || hb.Hosts[2].Outcome != "ok" {
		t.Fatalf("heartbeat: %+v", hb)
	}
	if strings.Join(l.shadow(t), "\n") != strings.Join(before, "\n") {
		t.Error("heartbeat changed a host")
	}
}

func TestE2ERestrictedSecretIsCheckedOutAndIn(t *testing.T) {
	l := newLab(t, []sshtest.Variant{sshtest.Debian}, nil, nil)
	l.ss.RequireCheckout(l.id, true)
	l.ss.RequireComment(l.id, true)
	l.ss.SetAutoChange(l.id, true)
	res := l.engine.Rotate(context.Background(), l.spec, rotation.RotateOptions{})
	if res.Err != nil {
		t.Fatalf("rotate: %v", res.Err)
	}
	l.assertEverywhere(t, l.ss.Field(l.id, "password"), rigPassword)
	if by := l.ss.CheckedOutBy(l.id); by != "" {
		t.Errorf("left checked out by %q", by)
	}
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "auto-change") {
		t.Errorf("auto-change not reported: %q", res.Warnings)
	}
}

// A host whose policy refuses the old password when reverting (here
// pam_pwquality: the old password is a dictionary word) is reset through
// the privileged reconcile account; without one it is needs-reconcile and
// a later recover with the account configured settles it.
func TestE2ERevertRefusedUsesReconcileAccount(t *testing.T) {
	sshtest.RequireRig(t, sshtest.PwQuality)
	const weakOld = "password1"
	const rootPw = "Root-Pw-2024!"
	ctx := context.Background()
	for _, withAccount := range []bool{true, false} {
		t.Run(fmt.Sprint("account=", withAccount), func(t *testing.T) {
			rig, err := sshtest.StartRig(ctx, sshtest.RigOptions{Hosts: []sshtest.HostSpec{{Variant: sshtest.Debian}, {Variant: sshtest.PwQuality}},
				User: rigUser, Password: weakOld, RootPassword: rootPw})
			if err != nil {
				t.Fatal(err)
			}
			defer rig.Close()
			ss := sstest.New()
			defer ss.Close()
			ss.AddUser(ssUser, "", ssPassword)
			id := ss.AddSecret(sstest.SecretSeed{Name: "prod-root", Username: rigUser, Password: weakOld,
				Notes: rig.Hosts()[0].Addr() + "," + rig.Hosts()[1].Addr()})
			vault, _ := secretserver.New(secretserver.Config{URL: ss.URL, Username: ssUser, Password: secret.New(ssPassword),
				CAPEM: ss.CACertPEM(), RetryBaseDelay: time.Millisecond, MaxRetries: 1}, nil)
			sc := sshexec.DefaultConfig()
			sc.KnownHosts = rig.KnownHostsFile()
			hosts, _ := sshexec.New(sc, nil)
			key, _ := store.NewKey([]byte("0123456789abcdef0123456789abcdef"))
			db, err := store.Open(ctx, filepath.Join(t.TempDir(), "j.db"), store.NewKeyring(key))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			account := &rotation.Account{User: "root", Password: secret.New(rootPw)}
			cfg := testConfig(func(c *rotation.Config) { c.RetryBase = time.Millisecond; c.Generator = rotation.GeneratorLocal })
			if withAccount {
				cfg.Reconcile = account
			}
			eng := newEngine(t, cfg, rotation.Deps{Vault: vault, Hosts: hosts, Store: db})
			ss.FailNext(sstest.EndpointPutField, 1000, 500, `{"message":"down"}`)
			res := eng.Rotate(ctx, rotation.SecretSpec{Name: "prod-root"}, rotation.RotateOptions{})
			ss.FailNext(sstest.EndpointPutField, 0, 0, "")
			if withAccount {
				if res.State != rotation.StateRolledBack || !strings.Contains(res.Hosts[1].Outcome, "reconcile account") {
					t.Fatalf("rotate: %s %v %+v", res.State, res.Err, res.Hosts)
				}
			} else {
				if res.State != rotation.StateNeedsReconcile || res.Hosts[1].State != rotation.HostNeedsReconcile ||
					!strings.Contains(res.Hosts[1].Outcome, "refused by policy") {
					t.Fatalf("rotate: %s %v %+v", res.State, res.Err, res.Hosts)
				}
				cfg.Reconcile = account
				eng = newEngine(t, cfg, rotation.Deps{Vault: vault, Hosts: hosts, Store: db})
				out := eng.Recover(ctx, "test")
				if len(out) != 1 || out[0].Err != nil || out[0].State != rotation.StateRolledBack {
					t.Fatalf("recover: %+v", out)
				}
			}
			if got := ss.Field(id, "password"); got != weakOld {
				t.Error("Secret Server changed")
			}
			for i, h := range rig.Hosts() {
				s, err := hosts.Login(ctx, rotation.Host{Name: h.Name, Port: h.Port}, rigUser, secret.New(weakOld))
				if err != nil {
					t.Errorf("host %d does not take the old password: %v", i, err)
					continue
				}
				_ = s.Close()
			}
		})
	}
}

// No password appears in the engine's logs (at debug level), its results,
// or the journal's error texts — across a committed rotation, a policy
// rejection, a vault write that fails and is reverted, and a rollback.
func TestE2ENoSecretInLogsOrResults(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	weak := &weakVault{}
	l := newLab(t, []sshtest.Variant{sshtest.PwQuality, sshtest.Debian, sshtest.BusyBox},
		func(c *rotation.Config) { c.Generator = rotation.GeneratorServer },
		func(v rotation.Vault) rotation.Vault { weak.Vault = v; return weak })
	l.engine = newEngine(t, l.cfg, rotation.Deps{Vault: weak, Hosts: l.hosts, Store: l.db, Log: log})
	ctx := context.Background()
	var out []string
	seen := []string{rigPassword}
	note := func(res rotation.Result) {
		out = append(out, fmt.Sprintf("%v %+v %#v", res, res, res))
		if res.Err != nil {
			out = append(out, res.Err.Error())
		}
		seen = append(seen, l.ss.Field(l.id, "password"))
	}
	note(l.engine.Rotate(ctx, l.spec, rotation.RotateOptions{})) // "password1" rejected, then a fresh one
	l.ss.FailNext(sstest.EndpointPutField, 1000, 500, `{"message":"down"}`)
	failed := l.engine.Rotate(ctx, l.spec, rotation.RotateOptions{})
	l.ss.FailNext(sstest.EndpointPutField, 0, 0, "")
	note(failed)
	if r, err := l.db.Get(ctx, failed.RotationID); err == nil {
		seen = append(seen, r.New.Reveal()) // the password that was reverted
	}
	note(l.engine.Rollback(ctx, l.spec, 0, "test"))
	hist, err := l.db.History(ctx, rotation.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range hist {
		out = append(out, r.Error)
		for _, h := range r.Hosts {
			out = append(out, h.Error)
		}
	}
	seen = append(seen, weak.given()...)
	all := logs.String() + strings.Join(out, "\n")
	if !strings.Contains(all, "dictionary") || !strings.Contains(all, "down") {
		t.Fatal("the scan saw none of the failures it is meant to cover")
	}
	for _, pw := range seen {
		if pw != "" && strings.Contains(all, pw) {
			t.Errorf("a password (len %d) appears in logs, results or the journal", len(pw))
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
