package rotation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// The adapters below honour their context the way the real ones do: a
// gorm write, an SSH dial or an HTTP request with a done context fails.

type ctxJournal struct{ *memJournal }

func (j ctxJournal) SetState(ctx context.Context, id, gen int64, st rotation.State, errText string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return j.memJournal.SetState(ctx, id, gen, st, errText)
}

func (j ctxJournal) SetHost(ctx context.Context, id, gen int64, h rotation.HostRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return j.memJournal.SetHost(ctx, id, gen, h)
}

type ctxHosts struct{ *fakeHosts }

func (f ctxHosts) Login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial %s: %w (%w)", h, rotation.ErrUnreachable, err)
	}
	s, err := f.fakeHosts.Login(ctx, h, user, pw)
	if err != nil {
		return nil, err
	}
	return ctxSession{s}, nil
}

type ctxSession struct{ rotation.HostSession }

func (s ctxSession) ChangePassword(ctx context.Context, old, new secret.Value) rotation.Outcome {
	if err := ctx.Err(); err != nil {
		return rotation.Outcome{Kind: rotation.OutcomeTimeout, Err: err}
	}
	return s.HostSession.ChangePassword(ctx, old, new)
}

// hangingVault is a Secret Server that stops answering writes: each Write
// returns only when its context ends.
type hangingVault struct{ *fakeVault }

func (v hangingVault) Read(ctx context.Context, id int, field string) (rotation.Secret, error) {
	if err := ctx.Err(); err != nil {
		return rotation.Secret{}, fmt.Errorf("%w: %w", rotation.ErrVaultUnavailable, err)
	}
	return v.fakeVault.Read(ctx, id, field)
}

func (v hangingVault) Write(ctx context.Context, _ rotation.Secret, _ secret.Value, _ string) error {
	<-ctx.Done()
	return fmt.Errorf("%w: %w", rotation.ErrVaultUnavailable, ctx.Err())
}

// A rotation whose deadline passes while it commits (Secret Server stops
// answering; or the fan-out used most of the deadline) must still revert
// every host: the reverts may not run on the expired context, or the hosts
// keep a password Secret Server does not hold.
func TestDeadlineDoesNotCancelTheRevert(t *testing.T) {
	f := newFixture(t, 3, nil)
	j := ctxJournal{f.journal}
	e := newEngine(t, testConfig(func(c *rotation.Config) {
		c.RetryBase = time.Millisecond
		c.Concurrency = 4
		c.Generator = rotation.GeneratorServer
		c.SecretDeadline = 200 * time.Millisecond
	}), rotation.Deps{Vault: hangingVault{f.vault}, Hosts: ctxHosts{f.hosts}, Store: j})
	res := e.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.State != rotation.StateRolledBack {
		t.Errorf("state %s err %v, want rolled-back", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	r, err := f.journal.Get(context.Background(), res.RotationID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != rotation.StateRolledBack {
		t.Errorf("journal left in %s", r.State)
	}
}

// Once a host failed, no further host may be changed: with more hosts than
// SSH slots, the hosts waiting for a slot must not count as started.
func TestNoHostStartsAfterAFailure(t *testing.T) {
	f := newFixture(t, 8, func(c *rotation.Config) { c.Concurrency = 1; c.PolicyRetries = 0 })
	f.hosts.hosts["h02"].reject = func(string) string { return "BAD PASSWORD: it is too simplistic/systematic" }
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.State != rotation.StateRolledBack {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	touched := 0
	for _, h := range res.Hosts {
		if h.State == rotation.HostReverted {
			touched++
		}
	}
	// The canary and at most one host before h02's rejection (Concurrency 1).
	if touched > 2 {
		t.Errorf("%d hosts were changed and reverted after a failure: %+v", touched, res.Hosts)
	}
}

// manglingHosts is a fleet whose passwd, run as root, does not check the
// current password and stores the first new password mangled (as a
// terminal that eats a character would): neither password logs in after.
type manglingHosts struct {
	*fakeHosts
	mangled bool
}

func (f *manglingHosts) Login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	s, err := f.fakeHosts.Login(ctx, h, user, pw)
	if err != nil {
		return nil, err
	}
	return &manglingSession{HostSession: s, f: f, h: f.fakeHosts.hosts[h.Name]}, nil
}

type manglingSession struct {
	rotation.HostSession
	f *manglingHosts
	h *fakeHost
}

func (s *manglingSession) ChangePassword(_ context.Context, _, new secret.Value) rotation.Outcome {
	s.f.fakeHosts.mu.Lock()
	defer s.f.fakeHosts.mu.Unlock()
	s.h.password = new.Reveal()
	if !s.f.mangled {
		s.f.mangled = true
		s.h.password = new.Reveal()[1:]
	}
	return rotation.Outcome{Kind: rotation.OutcomeChanged}
}

// A new password that passwd accepted but that does not log in was refused
// once already: the probe must not try it again, or the host sees three
// refused logins (new, new, old) and pam_faillock's default deny=3 locks
// the account before the revert can verify the old password.
func TestRefusedNewPasswordIsNotTriedTwice(t *testing.T) {
	f := newFixture(t, 1, nil)
	e := newEngine(t, testConfig(func(c *rotation.Config) {
		c.RetryBase = time.Millisecond
		c.Concurrency = 4
		c.Generator = rotation.GeneratorServer
	}), rotation.Deps{Vault: f.vault, Hosts: &manglingHosts{fakeHosts: f.hosts}, Store: f.journal})
	res := e.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.State != rotation.StateRolledBack {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	if n := f.hosts.hosts["h00"].failedAuth; n > 2 {
		t.Errorf("%d refused logins on the host in one rotation, want at most 2", n)
	}
}
