package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// escalationFails is a step of a path (su, sudo) failing before passwd
// ran, as sshexec's StepError reports it.
type escalationFails struct{}

func (escalationFails) Error() string        { return "host h00: step sudo (ops): not in sudoers" }
func (escalationFails) Is(target error) bool { return target == rotation.ErrBeforePasswd }

// pathChanger is a secret's own path to the fake fleet: it counts its
// logins and, with failEscalation, its sessions' passwd never runs.
type pathChanger struct {
	f              *fakeHosts
	failEscalation bool
	mu             sync.Mutex
	logins         int
}

func (p *pathChanger) Login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	p.mu.Lock()
	p.logins++
	p.mu.Unlock()
	s, err := p.f.Login(ctx, h, user, pw)
	if err != nil || !p.failEscalation {
		return s, err
	}
	return escalatingSession{s}, nil
}

type escalatingSession struct{ rotation.HostSession }

func (escalatingSession) ChangePassword(context.Context, secret.Value, secret.Value) rotation.Outcome {
	return rotation.Outcome{Kind: rotation.OutcomeUnexpected, Err: fmt.Errorf("passwd: %w", escalationFails{})}
}

// newPathFixture is newFixture whose engine reaches prod-root's hosts
// only through path (Deps.HostsFor), never through Deps.Hosts.
func newPathFixture(t *testing.T, n int, path *pathChanger, asked *[]string) *fixture {
	t.Helper()
	f := newFixture(t, n, nil)
	path.f = f.hosts
	cfg := testConfig(func(c *rotation.Config) {
		c.RetryBase, c.Concurrency, c.Generator, c.Settle = time.Millisecond, 4, rotation.GeneratorServer, time.Millisecond
	})
	f.engine = newEngine(t, cfg, rotation.Deps{
		Vault: f.vault, Hosts: refusingChanger{}, Store: f.journal,
		HostsFor: func(_ context.Context, s rotation.SecretSpec) (rotation.HostChanger, error) {
			*asked = append(*asked, s.Name)
			return path, nil
		},
	})
	return f
}

// refusingChanger fails any use of Deps.Hosts where the secret's path
// should have been used.
type refusingChanger struct{}

func (refusingChanger) Login(context.Context, rotation.Host, string, secret.Value) (rotation.HostSession, error) {
	return nil, errors.New("Deps.Hosts used instead of the secret's path")
}

// A secret with its own path is rotated and heartbeat-checked through it:
// the path is asked for once per run, and Deps.Hosts is never used.
func TestHostsForRotatesThroughTheSecretsPath(t *testing.T) {
	path := &pathChanger{}
	var asked []string
	f := newPathFixture(t, 3, path, &asked)
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.Err != nil || res.State != rotation.StateCommitted {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, f.vault.password(f.id))
	if len(asked) != 1 || asked[0] != spec.Name {
		t.Errorf("path asked for %v, want once for %s", asked, spec.Name)
	}
	if hb := f.engine.Heartbeat(context.Background(), spec); hb.Err != nil {
		t.Fatalf("heartbeat through the path: %v", hb.Err)
	}
	if len(asked) != 2 {
		t.Errorf("path asked for %d times after a rotation and a heartbeat, want 2", len(asked))
	}
}

// su or sudo failing before passwd ran: the host is journaled failed with
// ReasonEscalation, nothing changed, and no probe login follows (the
// lifeline and nothing else logged in).
func TestHostsForEscalationFailureIsNotProbed(t *testing.T) {
	path := &pathChanger{failEscalation: true}
	var asked []string
	f := newPathFixture(t, 1, path, &asked)
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.Err == nil || res.State != rotation.StateRolledBack {
		t.Fatalf("state %s err %v, want rolled back", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	r, err := f.journal.Get(context.Background(), res.RotationID)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Hosts[0].Reason; got != rotation.ReasonEscalation {
		t.Errorf("host reason %q, want %q (%s)", got, rotation.ReasonEscalation, r.Hosts[0].Error)
	}
	if path.logins != 1 {
		t.Errorf("%d logins through the path, want 1 (the pre-flight's lifeline, no probes)", path.logins)
	}
	if f.hosts.hosts["h00"].failedAuth != 0 {
		t.Errorf("%d refused logins, want 0", f.hosts.hosts["h00"].failedAuth)
	}
}

// A path that cannot be built (a logon secret that does not resolve)
// stops the rotation before any host is touched.
func TestHostsForErrorIsAPreflightFailure(t *testing.T) {
	f := newFixture(t, 1, nil)
	f.engine = newEngine(t, testConfig(func(*rotation.Config) {}), rotation.Deps{
		Vault: f.vault, Hosts: f.hosts, Store: f.journal,
		HostsFor: func(context.Context, rotation.SecretSpec) (rotation.HostChanger, error) {
			return nil, errors.New("logon secret \"ops-key\" not found")
		},
	})
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if !errors.Is(res.Err, rotation.ErrPreflight) || res.RotationID != 0 {
		t.Fatalf("err %v rotation %d, want a pre-flight failure with nothing journaled", res.Err, res.RotationID)
	}
	f.assertAll(t, oldPw)
	if f.hosts.logins != 0 {
		t.Errorf("%d logins, want none", f.hosts.logins)
	}
}

// Deps.Reconcile stands in for Config.Reconcile: the reconcile account it
// returns, through its own HostChanger, resets a host that cannot be
// reverted, within the budget of refused logins.
func TestDepsReconcileResetsTheHost(t *testing.T) {
	f := newFixture(t, 1, nil)
	f.hosts.admin = "admin"
	h := f.hosts.hosts["h00"]
	h.deny, h.blockAfterChange, h.remember = 3, true, true // and passwd refuses going back
	through := &pathChanger{f: f.hosts}
	asked := 0
	cfg := testConfig(func(c *rotation.Config) {
		c.RetryBase, c.Concurrency, c.Generator, c.Settle = time.Millisecond, 4, rotation.GeneratorServer, time.Millisecond
	})
	f.engine = newEngine(t, cfg, rotation.Deps{
		Vault: f.vault, Hosts: f.hosts, Store: f.journal,
		Reconcile: func(context.Context) (rotation.HostChanger, rotation.Account, error) {
			asked++
			return through, rotation.Account{User: "admin", Password: secret.New("Adm1n-pw!")}, nil
		},
	})
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	f.assertBudget(t)
	if res.State != rotation.StateRolledBack {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, oldPw)
	if asked == 0 || through.logins == 0 {
		t.Errorf("the reconcile account was asked for %d times and logged in %d times through its changer", asked, through.logins)
	}
}

// verifyingPath is a pathChanger that proves passwords itself
// (rotation.HostVerifier), counting its verifies.
type verifyingPath struct {
	pathChanger
	verifies int
}

func (p *verifyingPath) Verify(ctx context.Context, h rotation.Host, user string, pw secret.Value) error {
	p.mu.Lock()
	p.verifies++
	p.mu.Unlock()
	s, err := p.f.Login(ctx, h, user, pw)
	if err != nil {
		return err
	}
	return s.Close()
}

// A path that is a HostVerifier proves the new password with its Verify,
// not with a second login keeping a session; so does the heartbeat. The
// lifeline is the only login.
func TestHostVerifierProvesTheNewPassword(t *testing.T) {
	path := &verifyingPath{}
	var asked []string
	f := newPathFixture(t, 3, &path.pathChanger, &asked)
	f.engine = newEngine(t, testConfig(func(c *rotation.Config) {
		c.RetryBase, c.Concurrency, c.Generator, c.Settle = time.Millisecond, 4, rotation.GeneratorServer, time.Millisecond
	}), rotation.Deps{
		Vault: f.vault, Hosts: refusingChanger{}, Store: f.journal,
		HostsFor: func(context.Context, rotation.SecretSpec) (rotation.HostChanger, error) { return path, nil },
	})
	res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
	if res.Err != nil || res.State != rotation.StateCommitted {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	f.assertAll(t, f.vault.password(f.id))
	if path.logins != 3 || path.verifies != 3 {
		t.Errorf("%d logins and %d verifies for 3 hosts, want 3 lifelines and 3 verifies", path.logins, path.verifies)
	}
	if hb := f.engine.Heartbeat(context.Background(), spec); hb.Err != nil {
		t.Fatalf("heartbeat: %v", hb.Err)
	}
	if path.logins != 3 || path.verifies != 6 {
		t.Errorf("after the heartbeat %d logins and %d verifies, want 3 and 6", path.logins, path.verifies)
	}
}
