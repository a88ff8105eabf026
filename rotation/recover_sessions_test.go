package rotation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// trackingHosts remembers every session it opened.
type trackingHosts struct {
	*fakeHosts
	mu       sync.Mutex
	sessions []*fakeSession
}

func (f *trackingHosts) Login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	s, err := f.fakeHosts.Login(ctx, h, user, pw)
	if err == nil {
		f.mu.Lock()
		f.sessions = append(f.sessions, s.(*fakeSession))
		f.mu.Unlock()
	}
	return s, err
}

func (f *trackingHosts) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fakeHosts.mu.Lock()
	defer f.fakeHosts.mu.Unlock()
	n := 0
	for _, s := range f.sessions {
		if !s.closed {
			n++
		}
	}
	return n
}

// Recovery that reverts hosts logs into them with the new password; those
// SSH connections must be closed when it is done, not kept for the life of
// the daemon (settle and Recover run in it again and again).
func TestRecoverClosesItsSessions(t *testing.T) {
	ctx := context.Background()
	const newPw = "New-Pw-123!abc"
	f := newFixture(t, 2, nil)
	hosts := &trackingHosts{fakeHosts: f.hosts}
	e := newEngine(t, testConfig(func(c *rotation.Config) {
		c.RetryBase = time.Millisecond
		c.Concurrency = 4
		c.Generator = rotation.GeneratorServer
	}), rotation.Deps{Vault: f.vault, Hosts: hosts, Store: f.journal})
	r := rotation.Rotation{Secret: "prod-root", SecretID: f.id, Username: "root", Kind: rotation.KindRotate,
		State: rotation.StateHostsChanging, Old: secret.New(oldPw), New: secret.New(newPw),
		Hosts: []rotation.HostRecord{
			{Host: rotation.Host{Name: "h00", Port: 22}, State: rotation.HostChanged},
			{Host: rotation.Host{Name: "h01", Port: 22}, State: rotation.HostPending},
		}}
	f.hosts.hosts["h00"].password = newPw
	if _, err := f.journal.Begin(ctx, r); err != nil {
		t.Fatal(err)
	}
	out := e.Recover(ctx, "test")
	if len(out) != 1 || out[0].State != rotation.StateRolledBack {
		t.Fatalf("recover: %+v", out)
	}
	f.assertAll(t, oldPw)
	if n := hosts.open(); n != 0 {
		t.Errorf("%d SSH sessions left open after recovery", n)
	}
}
