package rotation_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// withAdmin configures the privileged reconcile account the fake fleet knows.
func withAdmin(c *rotation.Config) {
	c.Reconcile = &rotation.Account{User: "admin", Password: secret.New("Adm1n-pw!")}
}

// assertBudget fails the test if a host saw more refused logins than the
// budget allows (pam_faillock deny=3 locks at the third).
func (f *fixture) assertBudget(t *testing.T) {
	t.Helper()
	f.hosts.mu.Lock()
	defer f.hosts.mu.Unlock()
	for _, n := range f.names {
		if got := f.hosts.hosts[n].failedAuth; got > rotation.RefusalBudget {
			t.Errorf("host %s saw %d refused logins, want at most %d", n, got, rotation.RefusalBudget)
		}
	}
}

// unblock lifts the fake's ssh block and proves the old password logs in
// (the account is not locked by pam_faillock deny=3).
func (f *fixture) assertOldLogsIn(t *testing.T) {
	t.Helper()
	for _, n := range f.names {
		f.hosts.mu.Lock()
		f.hosts.hosts[n].sshBlocked = false
		f.hosts.mu.Unlock()
		s, err := f.hosts.Login(context.Background(), rotation.Host{Name: n}, "root", secret.New(oldPw))
		if err != nil {
			t.Errorf("host %s: the old password does not log in afterwards: %v", n, err)
			continue
		}
		_ = s.Close()
	}
}

// passwd reports success, then the host refuses every login (the new
// password, and the old one): the rotation must stay within two refused
// logins, put the old password back through the reconcile account, and
// leave the account unlocked.
func TestBudgetVerifyNewRefusedAfterPasswdChanged(t *testing.T) {
	f := newFixture(t, 1, withAdmin)
	f.hosts.admin = "admin"
	h := f.hosts.hosts["h00"]
	h.deny, h.blockAfterChange = 3, true
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	f.assertBudget(t)
	if res.State != rotation.StateRolledBack {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	f.assertOldLogsIn(t)
	r, err := f.journal.Get(context.Background(), res.RotationID)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Hosts[0].Refused.Count; got != 2 {
		t.Errorf("journal records %d refused logins, want 2", got)
	}
}

// Without a reconcile account, and with a host whose password history
// refuses the old password again, the host cannot be put back: it is left in
// needs-reconcile, named with the candidates it may hold, within budget.
func TestBudgetNoReconcileAccountNamesTheHost(t *testing.T) {
	f := newFixture(t, 2, nil)
	h := f.hosts.hosts["h01"]
	h.deny, h.blockAfterChange, h.remember = 3, true, true // and passwd refuses going back
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	f.assertBudget(t)
	if res.State != rotation.StateNeedsReconcile || !errors.Is(res.Err, rotation.ErrNeedsReconcile) {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	if !strings.Contains(res.Err.Error(), "h01:22: old or new") {
		t.Errorf("needs-reconcile error does not name the host in doubt and its candidates: %v", res.Err)
	}
	r, _ := f.journal.Get(context.Background(), res.RotationID)
	if !strings.Contains(r.Error, "h01:22: old or new") {
		t.Errorf("journal error does not name the host in doubt: %q", r.Error)
	}
	if f.hosts.pw("h00") != oldPw || f.vault.password(f.id) != oldPw {
		t.Error("the other host or the vault does not hold the old password")
	}
}

// passwd times out and every refused login answers late (an unknown
// outcome, reported as unreachable as well): the probe must not retry a
// password whose answer never came.
func TestBudgetUnknownOutcomeProbe(t *testing.T) {
	f := newFixture(t, 1, nil)
	h := f.hosts.hosts["h00"]
	h.deny, h.passwdTimeout, h.unknownRefusal = 3, true, true
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	f.assertBudget(t)
	if res.State != rotation.StateRolledBack {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	f.assertOldLogsIn(t)
}

// Recovery of a rotation whose host the journal already records as
// needs-reconcile, having refused both candidates: recovery sends neither
// again and resets the host through the reconcile account.
func TestBudgetRecoveryOfNeedsReconcileHost(t *testing.T) {
	for _, st := range []rotation.State{rotation.StateRollingBack, rotation.StateNeedsReconcile} {
		t.Run(string(st), func(t *testing.T) {
			ctx := context.Background()
			const newPw = "New-Pw-123!abc"
			f := newFixture(t, 1, withAdmin)
			f.hosts.admin = "admin"
			h := f.hosts.hosts["h00"]
			// The earlier run: passwd changed it, two logins were refused.
			h.password, h.sshBlocked, h.deny, h.failedAuth = newPw, true, 3, 2
			r := rotation.Rotation{Secret: "prod-root", SecretID: f.id, Username: "root", Kind: rotation.KindRotate,
				State: st, Old: secret.New(oldPw), New: secret.New(newPw),
				Hosts: []rotation.HostRecord{{Host: rotation.Host{Name: "h00"}, State: rotation.HostNeedsReconcile}}}
			id, _ := f.journal.Begin(ctx, r)
			_ = f.journal.SetState(ctx, id, 0, st, "")
			_ = f.journal.SetRefused(ctx, id, 0, r.Hosts[0].Host, rotation.Refusals{Old: true, New: true, Count: 2})
			out := f.engine.Recover(ctx, "test")
			f.assertBudget(t)
			if len(out) != 1 || out[0].State != rotation.StateRolledBack {
				t.Fatalf("recover: %+v", out)
			}
			f.assertAll(t, oldPw)
			f.assertOldLogsIn(t)
		})
	}
}

// Reconcile of a host that refused only the old password: the old one is
// not sent again; the new one logs in and passwd puts the old one back.
func TestBudgetReconcileSkipsRefusedCandidate(t *testing.T) {
	ctx := context.Background()
	const newPw = "New-Pw-123!abc"
	f := newFixture(t, 1, nil)
	h := f.hosts.hosts["h00"]
	h.password, h.deny, h.failedAuth = newPw, 3, 1 // the old password was refused once
	r := rotation.Rotation{Secret: "prod-root", SecretID: f.id, Username: "root", Kind: rotation.KindRotate,
		State: rotation.StateNeedsReconcile, Old: secret.New(oldPw), New: secret.New(newPw),
		Hosts: []rotation.HostRecord{{Host: rotation.Host{Name: "h00"}, State: rotation.HostNeedsReconcile}}}
	id, _ := f.journal.Begin(ctx, r)
	_ = f.journal.SetState(ctx, id, 0, rotation.StateNeedsReconcile, "")
	_ = f.journal.SetRefused(ctx, id, 0, r.Hosts[0].Host, rotation.Refusals{Old: true, Count: 1})
	out := f.engine.Recover(ctx, "test")
	if h.failedAuth != 1 {
		t.Errorf("reconcile made %d more refused logins, want none (the old password was refused before)", h.failedAuth-1)
	}
	if len(out) != 1 || out[0].State != rotation.StateRolledBack {
		t.Fatalf("recover: %+v", out)
	}
	f.assertAll(t, oldPw)
}

var errDiskFull = errors.New("database or disk is full")

// The journal fills up after the canary host was changed: no further host
// is started, the changed host is put back all the same (both passwords
// were durable before it was touched), the vault keeps the old password,
// and the result names the host the journal may still call changed.
func TestJournalFullRevertsChangedHosts(t *testing.T) {
	f := newFixture(t, 3, nil)
	// Writes: audit "started", state hosts-changing, h00 changing, h00 changed.
	f.journal.failAfter, f.journal.writeErr = 4, errDiskFull
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if f.journal.writes != 4 {
		t.Fatalf("journal took %d writes before filling up, want 4", f.journal.writes)
	}
	f.assertAll(t, oldPw)
	if res.Err == nil {
		t.Fatal("rotation reported success with a full journal")
	}
	if !strings.Contains(res.Err.Error(), "h00") || !strings.Contains(res.Err.Error(), "full") {
		t.Errorf("result does not name the host the journal may call changed, or the cause: %v", res.Err)
	}
	r, _ := f.journal.Get(context.Background(), res.RotationID)
	if r.Hosts[0].State != rotation.HostChanged {
		t.Errorf("journal: h00 %s; the test wants the journal to have filled after h00 changed", r.Hosts[0].State)
	}
	// Recovery, once the disk has room again, finds every host on the old password.
	f.journal.writeErr = nil
	out := f.engine.Recover(context.Background(), "test")
	if len(out) != 1 || out[0].State != rotation.StateRolledBack {
		t.Fatalf("recover: %+v", out)
	}
	f.assertAll(t, oldPw)
}

// A fenced journal (another process took the lease) stops all host and
// vault work at once: the canary host is not reverted by this process
// (the new holder recovers it) and the vault is not written.
func TestFencedJournalStopsHostAndVaultWork(t *testing.T) {
	t.Run("MidFanOut", func(t *testing.T) {
		f := newFixture(t, 3, nil)
		f.journal.failAfter, f.journal.writeErr = 4, rotation.ErrFenced
		res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrFenced) {
			t.Fatalf("err %v, want ErrFenced", res.Err)
		}
		if f.hosts.pw("h00") == oldPw {
			t.Error("h00 was reverted by a process that lost its lease")
		}
		if f.hosts.pw("h01") != oldPw || f.hosts.pw("h02") != oldPw {
			t.Error("a host was changed after the journal fenced the rotation off")
		}
		if !strings.Contains(res.Err.Error(), "h00:22: new") {
			t.Errorf("result does not name the host in doubt: %v", res.Err)
		}
		if f.vault.writes != 0 {
			t.Errorf("%d vault writes after the fence", f.vault.writes)
		}
	})
	t.Run("AtCommit", func(t *testing.T) {
		f := newFixture(t, 1, nil)
		// Writes: audit, hosts-changing, h00 changing, h00 changed; committing is fenced.
		f.journal.failAfter, f.journal.writeErr = 4, rotation.ErrFenced
		res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
		if !errors.Is(res.Err, rotation.ErrFenced) {
			t.Fatalf("err %v, want ErrFenced", res.Err)
		}
		if f.vault.writes != 0 || f.vault.password(f.id) != oldPw {
			t.Errorf("the vault was written (%d writes) after the fence", f.vault.writes)
		}
	})
}

// A manual rollback is a journaled change like a rotation: a journal that
// fills up after its canary host went back leaves every host and the vault
// on the password they held before the rollback.
func TestJournalFullDuringRollback(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, nil)
	if r := f.engine.Rotate(ctx, spec, rotation.RotateOptions{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	current := f.vault.password(f.id)
	f.journal.writes, f.journal.failAfter, f.journal.writeErr = 0, 4, errDiskFull
	res := f.engine.Rollback(ctx, spec, 0, "test")
	if f.journal.writes != 4 {
		t.Fatalf("journal took %d writes before filling up, want 4", f.journal.writes)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "h00") {
		t.Fatalf("rollback result does not name the host it touched: %v", res.Err)
	}
	f.assertAll(t, current)
}
