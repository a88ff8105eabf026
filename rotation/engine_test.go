package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

type fixture struct {
	vault   *fakeVault
	hosts   *fakeHosts
	journal *memJournal
	engine  *rotation.Engine
	id      int
	names   []string
}

const oldPw = "Old-Passw0rd!x"

func newFixture(t *testing.T, n int, mod func(*rotation.Config)) *fixture {
	t.Helper()
	f := &fixture{vault: newFakeVault(), hosts: newFakeHosts(), journal: newMemJournal()}
	for i := range n {
		name := fmt.Sprintf("h%02d", i)
		f.names = append(f.names, name)
		f.hosts.add(name, oldPw)
	}
	f.id = f.vault.add("prod-root", "root", oldPw, f.names...)
	cfg := testConfig(func(c *rotation.Config) {
		c.RetryBase = time.Millisecond
		c.Concurrency = 4
		c.Generator = rotation.GeneratorServer
		c.Settle = time.Millisecond
	})
	if mod != nil {
		mod(&cfg)
	}
	f.engine = newEngine(t, cfg, rotation.Deps{Vault: f.vault, Hosts: f.hosts, Store: f.journal})
	return f
}

var spec = rotation.SecretSpec{Name: "prod-root"}

func (f *fixture) assertAll(t *testing.T, want string) {
	t.Helper()
	for _, n := range f.names {
		if got := f.hosts.pw(n); got != want {
			t.Errorf("host %s holds %q, want %q", n, redact(got), redact(want))
		}
	}
	if got := f.vault.password(f.id); got != want {
		t.Errorf("vault holds %q, want %q", redact(got), redact(want))
	}
}

func redact(s string) string {
	if s == oldPw {
		return "<old>"
	}
	return "<other:" + fmt.Sprint(len(s)) + ">"
}

func TestRotateHappyPath(t *testing.T) {
	for _, n := range []int{1, 5, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t, n, nil)
			res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{Actor: "test"})
			if res.Err != nil || res.State != rotation.StateCommitted {
				t.Fatalf("Rotate: state %s err %v", res.State, res.Err)
			}
			newPw := f.vault.password(f.id)
			if newPw == oldPw {
				t.Fatal("vault still holds the old password")
			}
			f.assertAll(t, newPw)
			r, err := f.journal.Get(context.Background(), res.RotationID)
			if err != nil {
				t.Fatal(err)
			}
			if r.Old.Reveal() != oldPw || r.New.Reveal() != newPw || r.State != rotation.StateCommitted {
				t.Errorf("journal: state %s, old/new not both kept", r.State)
			}
			for _, h := range r.Hosts {
				if h.State != rotation.HostChanged {
					t.Errorf("journal host %s: %s", h.Host, h.State)
				}
			}
			// Two logins per host: the pre-flight (kept as the lifeline) and the verify.
			if f.hosts.logins != 2*n {
				t.Errorf("logins = %d, want %d", f.hosts.logins, 2*n)
			}
		})
	}
}

func TestPreflightStopsBeforeAnyChange(t *testing.T) {
	t.Run("Unreachable", func(t *testing.T) {
		f := newFixture(t, 3, nil)
		f.hosts.hosts["h01"].down = true
		res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrPreflight) || !errors.Is(res.Err, rotation.ErrUnreachable) || res.RotationID != 0 {
			t.Fatalf("err %v, id %d", res.Err, res.RotationID)
		}
		f.assertAll(t, oldPw)
	})
	t.Run("WrongCurrentPassword", func(t *testing.T) {
		f := newFixture(t, 3, nil)
		f.hosts.hosts["h02"].password = "someone-else-1"
		res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrAuthFailed) || res.RotationID != 0 {
			t.Fatalf("err %v", res.Err)
		}
		for _, n := range []string{"h00", "h01"} {
			if f.hosts.pw(n) != oldPw {
				t.Errorf("%s changed", n)
			}
		}
		if len(f.journal.rots) != 0 {
			t.Error("a failed pre-flight journaled a rotation")
		}
	})
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFixture(t, 3, nil)
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{DryRun: true})
	if res.Err != nil || res.RotationID != 0 {
		t.Fatalf("dry run: %v", res.Err)
	}
	f.assertAll(t, oldPw)
	if len(f.journal.rots) != 0 || len(f.journal.events) != 1 || f.journal.events[0].Action != "dry-run" {
		t.Fatalf("journal: %d rotations, events %+v", len(f.journal.rots), f.journal.events)
	}
}

func TestHostFailureRevertsEveryChangedHost(t *testing.T) {
	t.Run("PolicyAlwaysRejects", func(t *testing.T) {
		f := newFixture(t, 5, nil)
		f.hosts.hosts["h03"].reject = func(string) string { return "BAD PASSWORD: it is based on a dictionary word" }
		res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrRolledBack) || res.State != rotation.StateRolledBack {
			t.Fatalf("state %s err %v", res.State, res.Err)
		}
		f.assertAll(t, oldPw)
		if !strings.Contains(res.Err.Error(), "dictionary word") {
			t.Errorf("outcome does not carry the reason: %v", res.Err)
		}
		if f.vault.gen != 4 {
			t.Errorf("generated %d passwords, want 1 + 3 fresh ones", f.vault.gen)
		}
		// The journal records the rejection as its code, beside the words.
		r, err := f.journal.Get(context.Background(), res.RotationID)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range r.Hosts {
			if h.Host.Name == "h03" && h.Reason != rotation.ReasonRejected {
				t.Errorf("h03 journaled with reason %q (%s), want %q", h.Reason, h.Error, rotation.ReasonRejected)
			}
		}
	})
	t.Run("WrongCurrentIsNotRetried", func(t *testing.T) {
		// passwd refusing the current password is no policy rejection: no
		// fresh password is generated for it, and the journal says why.
		f := newFixture(t, 3, nil)
		h02 := f.hosts.hosts["h02"]
		h02.onChange = func() {
			f.hosts.mu.Lock()
			h02.password = "someone-else-9"
			f.hosts.mu.Unlock()
		}
		res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrRolledBack) {
			t.Fatalf("state %s err %v", res.State, res.Err)
		}
		for _, n := range []string{"h00", "h01"} {
			if f.hosts.pw(n) != oldPw {
				t.Errorf("%s not reverted", n)
			}
		}
		if f.vault.password(f.id) != oldPw {
			t.Error("the vault does not hold the old password")
		}
		if f.vault.gen != 1 {
			t.Errorf("generated %d passwords, want 1: a wrong current password is not retried", f.vault.gen)
		}
		r, err := f.journal.Get(context.Background(), res.RotationID)
		if err != nil {
			t.Fatal(err)
		}
		if h := r.Hosts[2]; h.Reason != rotation.ReasonWrongCurrent {
			t.Errorf("h02 journaled with reason %q (%s), want %q", h.Reason, h.Error, rotation.ReasonWrongCurrent)
		}
	})
	t.Run("DiesMidFanOut", func(t *testing.T) {
		f := newFixture(t, 5, nil)
		f.hosts.hosts["h02"].dieOnChange = true
		res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
		if res.State != rotation.StateNeedsReconcile || !errors.Is(res.Err, rotation.ErrNeedsReconcile) {
			t.Fatalf("state %s err %v", res.State, res.Err)
		}
		if f.vault.password(f.id) != oldPw {
			t.Error("vault changed")
		}
		for _, h := range res.Hosts {
			want := rotation.HostReverted
			switch h.Host.Name {
			case "h02":
				want = rotation.HostNeedsReconcile
			case "h00":
			default:
				if h.State == rotation.HostFailed {
					want = rotation.HostFailed // not started after h02 failed
				}
			}
			if h.State != want {
				t.Errorf("%s: %s (%s), want %s", h.Host, h.State, h.Outcome, want)
			}
			if h.Host.Name != "h02" && f.hosts.pw(h.Host.Name) != oldPw {
				t.Errorf("%s not reverted", h.Host)
			}
		}
		// The host comes back: recovery reconciles it to the vault's password.
		f.hosts.hosts["h02"].down = false
		f.hosts.hosts["h02"].dieOnChange = false
		out := f.engine.Recover(context.Background(), "test")
		if len(out) != 1 || out[0].Err != nil || out[0].State != rotation.StateRolledBack {
			t.Fatalf("recover: %+v", out)
		}
		f.assertAll(t, oldPw)
	})
}

func TestPolicyRejectionGetsFreshPassword(t *testing.T) {
	f := newFixture(t, 4, nil)
	first := true
	f.hosts.hosts["h00"].reject = func(pw string) string {
		if first {
			first = false
			return "BAD PASSWORD: The password is a palindrome"
		}
		return ""
	}
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.Err != nil || res.State != rotation.StateCommitted {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, f.vault.password(f.id))
	if f.vault.password(f.id) != "Gen-002-xY7!kQ" {
		t.Error("the committed password is not the fresh one")
	}
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "palindrome") {
		t.Errorf("rejection reason not recorded: %q", res.Warnings)
	}
	r, _ := f.journal.Get(context.Background(), res.RotationID)
	if r.New.Reveal() != "Gen-002-xY7!kQ" {
		t.Error("journal does not hold the fresh password")
	}
}

func TestVaultWriteFailsPersistently(t *testing.T) {
	f := newFixture(t, 3, nil)
	f.vault.failWrite = true
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.State != rotation.StateRolledBack || !strings.Contains(res.Err.Error(), "vault write failed") {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
}

func TestHumanEditIsNotOverwritten(t *testing.T) {
	f := newFixture(t, 3, nil)
	reads := 0
	f.vault.onRead = func() {
		reads++
		if reads == 2 { // the re-read before the write
			f.vault.setPassword(f.id, "Human-Set-1!")
		}
	}
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if !errors.Is(res.Err, rotation.ErrSecretChanged) || res.State != rotation.StateRolledBack {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	if f.vault.password(f.id) != "Human-Set-1!" {
		t.Error("the human's edit was overwritten")
	}
	for _, n := range f.names {
		if f.hosts.pw(n) != oldPw {
			t.Errorf("%s not reverted", n)
		}
	}
}

func TestLeaseHeld(t *testing.T) {
	f := newFixture(t, 1, nil)
	if _, err := f.journal.Acquire(context.Background(), "prod-root", "other-host/1/x", time.Minute); err != nil {
		t.Fatal(err)
	}
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	var held *rotation.LeaseHeldError
	if !errors.As(res.Err, &held) || held.Holder != "other-host/1/x" {
		t.Fatalf("err %v", res.Err)
	}
	f.assertAll(t, oldPw)
}

func TestRevertRefusedUsesReconcileAccount(t *testing.T) {
	for _, withAdmin := range []bool{false, true} {
		t.Run(fmt.Sprint("admin=", withAdmin), func(t *testing.T) {
			f := newFixture(t, 3, func(c *rotation.Config) {
				if withAdmin {
					c.Reconcile = &rotation.Account{User: "admin", Password: secret.New("Adm1n-pw!")}
				}
			})
			f.hosts.admin = "admin"
			f.hosts.hosts["h00"].history = []string{oldPw} // passwd refuses going back
			f.vault.failWrite = true
			res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
			if withAdmin {
				if res.State != rotation.StateRolledBack {
					t.Fatalf("state %s err %v", res.State, res.Err)
				}
				f.assertAll(t, oldPw)
				return
			}
			if res.State != rotation.StateNeedsReconcile || res.Hosts[0].State != rotation.HostNeedsReconcile {
				t.Fatalf("state %s hosts %+v", res.State, res.Hosts)
			}
			r, _ := f.journal.Get(context.Background(), res.RotationID)
			if r.Old.Reveal() != oldPw || r.New.IsZero() {
				t.Error("journal lost a candidate password")
			}
			// A later rotation is refused until it is reconciled.
			if again := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{}); !errors.Is(again.Err, rotation.ErrParked) {
				t.Fatalf("second rotate: %v", again.Err)
			}
		})
	}
}

func TestRollback(t *testing.T) {
	f := newFixture(t, 3, nil)
	ctx := context.Background()
	r1 := f.engine.Rotate(ctx, spec, rotation.RotateOptions{})
	p1 := f.vault.password(f.id)
	r2 := f.engine.Rotate(ctx, spec, rotation.RotateOptions{})
	if r1.Err != nil || r2.Err != nil {
		t.Fatal(r1.Err, r2.Err)
	}
	rb := f.engine.Rollback(ctx, spec, 0, "test")
	if rb.Err != nil || rb.Kind != rotation.KindRollback || rb.State != rotation.StateCommitted {
		t.Fatalf("rollback: %s %v", rb.State, rb.Err)
	}
	f.assertAll(t, p1)
	rb2 := f.engine.Rollback(ctx, spec, r1.RotationID, "test")
	if rb2.Err != nil {
		t.Fatalf("second rollback: %v", rb2.Err)
	}
	f.assertAll(t, oldPw)
	if got, _ := f.journal.Get(ctx, rb2.RotationID); got.RollbackOf != r1.RotationID {
		t.Errorf("rollback_of = %d", got.RollbackOf)
	}
}

func TestHeartbeatFindsDrift(t *testing.T) {
	f := newFixture(t, 3, nil)
	f.hosts.hosts["h01"].password = "changed-behind-our-back"
	hb := f.engine.Heartbeat(context.Background(), spec)
	if !errors.Is(hb.Err, rotation.ErrDrift) || hb.Hosts[1].Outcome == "ok" || hb.Hosts[0].Outcome != "ok" {
		t.Fatalf("heartbeat: %+v", hb)
	}
	if !strings.Contains(hb.Err.Error(), "h01") || strings.Contains(hb.Err.Error(), "h00") {
		t.Errorf("heartbeat error names the wrong hosts: %v", hb.Err)
	}
	if f.hosts.pw("h00") != oldPw || f.hosts.pw("h01") != "changed-behind-our-back" {
		t.Error("heartbeat changed something")
	}
}

func TestRecoverRollsForwardAndBack(t *testing.T) {
	ctx := context.Background()
	const newPw = "New-Pw-123!abc"
	cases := []struct {
		name      string
		state     rotation.State
		hosts     []rotation.HostState
		onHosts   []string
		vault     string
		wantState rotation.State
		want      string
	}{
		{"JournaledOnly", rotation.StatePending, []rotation.HostState{"pending", "pending"}, []string{oldPw, oldPw}, oldPw, rotation.StateRolledBack, oldPw},
		{"MidChange", rotation.StateHostsChanging, []rotation.HostState{"changed", "changing"}, []string{newPw, oldPw}, oldPw, rotation.StateRolledBack, oldPw},
		{"ChangingButApplied", rotation.StateHostsChanging, []rotation.HostState{"changed", "changing"}, []string{newPw, newPw}, oldPw, rotation.StateCommitted, newPw},
		{"BeforeVaultWrite", rotation.StateCommitting, []rotation.HostState{"changed", "changed"}, []string{newPw, newPw}, oldPw, rotation.StateCommitted, newPw},
		{"AfterVaultWrite", rotation.StateCommitting, []rotation.HostState{"changed", "changed"}, []string{newPw, newPw}, newPw, rotation.StateCommitted, newPw},
		{"MidRevert", rotation.StateRollingBack, []rotation.HostState{"reverted", "reverting"}, []string{oldPw, newPw}, oldPw, rotation.StateRolledBack, oldPw},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, 2, nil)
			r := rotation.Rotation{Secret: "prod-root", SecretID: f.id, Username: "root", Kind: rotation.KindRotate,
				State: c.state, Old: secret.New(oldPw), New: secret.New(newPw)}
			for i, st := range c.hosts {
				r.Hosts = append(r.Hosts, rotation.HostRecord{Host: rotation.Host{Name: f.names[i]}, State: st})
				f.hosts.hosts[f.names[i]].password = c.onHosts[i]
			}
			id, _ := f.journal.Begin(ctx, r)
			_ = f.journal.SetState(ctx, id, 0, c.state, "")
			f.vault.setPassword(f.id, c.vault)
			out := f.engine.Recover(ctx, "test")
			if len(out) != 1 || out[0].State != c.wantState {
				t.Fatalf("recover: %+v", out)
			}
			f.assertAll(t, c.want)
			if again := f.engine.Recover(ctx, "test"); len(again) != 0 {
				t.Errorf("second recover found work: %+v", again)
			}
		})
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		pw, err := rotation.GeneratePassword(24)
		if err != nil {
			t.Fatal(err)
		}
		s := pw.Reveal()
		if len(s) != 24 || seen[s] {
			t.Fatalf("bad or repeated password of length %d", len(s))
		}
		seen[s] = true
		var lo, up, di, sy bool
		for _, c := range s {
			switch {
			case c >= 'a' && c <= 'z':
				lo = true
			case c >= 'A' && c <= 'Z':
				up = true
			case c >= '0' && c <= '9':
				di = true
			case strings.ContainsRune("-_.,:;!%^*+=?~/", c):
				sy = true
			default:
				t.Fatalf("unexpected character %q", c)
			}
		}
		if !lo || !up || !di || !sy {
			t.Fatal("a character class is missing")
		}
	}
	if _, err := rotation.GeneratePassword(8); err == nil {
		t.Fatal("accepted a short length")
	}
}

func TestCancelMidFanOutRevertsOrFinishes(t *testing.T) {
	f := newFixture(t, 6, func(c *rotation.Config) { c.Concurrency = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	done := 0
	f.engine = newEngine(t, testConfig(func(c *rotation.Config) {
		c.RetryBase = time.Millisecond
		c.Concurrency = 1
		c.Generator = rotation.GeneratorServer
		c.Progress = func(_ string, d, total, failed int) {
			done = d
			if d == 2 {
				cancel() // SIGTERM arrives while hosts are changing
			}
		}
	}), rotation.Deps{Vault: f.vault, Hosts: f.hosts, Store: f.journal})
	res := f.engine.Rotate(ctx, spec, rotation.RotateOptions{})
	if res.State != rotation.StateRolledBack || !strings.Contains(res.Err.Error(), "interrupted") {
		t.Fatalf("state %s err %v (done %d)", res.State, res.Err, done)
	}
	f.assertAll(t, oldPw)
	r, _ := f.journal.Get(context.Background(), res.RotationID)
	if !r.State.Terminal() {
		t.Fatalf("journal left in %s", r.State)
	}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("pre-flight: %w", rotation.ErrUnreachable), true},
		{fmt.Errorf("write: %w", rotation.ErrVaultUnavailable), true},
		{fmt.Errorf("pre-flight: %w", errors.Join(rotation.ErrUnreachable, rotation.ErrAuthFailed)), false},
		{fmt.Errorf("pre-flight: %w", rotation.ErrHostKey), false},
		{rotation.ErrSecretChanged, false},
		{errors.New("BAD PASSWORD"), false},
	} {
		if got := rotation.Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// New takes the configuration as given: a zero is a zero (no fresh
// password after a policy rejection), and a setting no engine can run
// with is refused rather than replaced by a default.
func TestConfigTakenAsGiven(t *testing.T) {
	f := newFixture(t, 2, func(c *rotation.Config) { c.PolicyRetries = 0 })
	f.hosts.hosts["h01"].reject = func(string) string { return "BAD PASSWORD: too short" }
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if !errors.Is(res.Err, rotation.ErrRolledBack) {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	if f.vault.gen != 1 {
		t.Errorf("generated %d passwords with PolicyRetries 0, want 1", f.vault.gen)
	}
	for name, set := range map[string]func(*rotation.Config){
		"NegativeSettle":   func(c *rotation.Config) { c.Settle = -time.Second },
		"NegativeBackoff":  func(c *rotation.Config) { c.RetryBase = -time.Millisecond },
		"NegativeRetries":  func(c *rotation.Config) { c.PolicyRetries = -1 },
		"NoConcurrency":    func(c *rotation.Config) { c.Concurrency = 0 },
		"ZeroDeadline":     func(c *rotation.Config) { c.SecretDeadline = 0 },
		"UnknownGenerator": func(c *rotation.Config) { c.Generator = "dice" },
	} {
		if _, err := rotation.New(testConfig(set), rotation.Deps{Vault: f.vault, Hosts: f.hosts, Store: f.journal}); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}
