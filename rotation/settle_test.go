package rotation_test

import (
	"context"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// A rotord killed in the middle of a host's passwd dialogue leaves that
// passwd running on the host, still hashing and writing the new password.
// A recovery started at once (systemd restarts the daemon within a second)
// must not probe the host before the change has landed: the new password
// would be refused, then the old one, both candidates spent on a change in
// flight — or worse, the old one accepted just before the new one lands,
// and the rotation rolled back while the host ends on the new password.
// Recovery waits Settle after the rotation's last journal write.
func TestRecoveryWaitsForACutOffDialogue(t *testing.T) {
	ctx := context.Background()
	const newPw = "New-Pw-123!abc"
	f := newFixture(t, 1, func(c *rotation.Config) { c.Settle = 300 * time.Millisecond })
	h := f.hosts.hosts["h00"]
	h.deny = 3
	cutOff := time.Now()
	f.hosts.mu.Lock()
	h.landing, h.landsAt = newPw, cutOff.Add(100*time.Millisecond)
	f.hosts.mu.Unlock()
	r := rotation.Rotation{Secret: "prod-root", SecretID: f.id, Username: "root", Kind: rotation.KindRotate,
		State: rotation.StateHostsChanging, Old: secret.New(oldPw), New: secret.New(newPw), Updated: cutOff,
		Hosts: []rotation.HostRecord{{Host: rotation.Host{Name: "h00"}, State: rotation.HostChanging}}}
	id, err := f.journal.Begin(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.journal.SetState(ctx, id, 0, rotation.StateHostsChanging, "")
	out := f.engine.Recover(ctx, "test")
	if len(out) != 1 || out[0].State != rotation.StateCommitted {
		t.Fatalf("recover: %+v", out)
	}
	if h.failedAuth != 0 {
		t.Errorf("recovery made %d refused logins probing a change in flight, want none", h.failedAuth)
	}
	f.assertAll(t, newPw)
}

// passwd's step timed out from rotord's side, but the host's passwd goes
// on and writes the new password moments later. Probing at once would find
// the old password, roll back, and leave the host on the new one while
// Secret Server keeps the old; the engine waits Settle, then probes.
func TestUnknownOutcomeWaitsBeforeProbing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 1, func(c *rotation.Config) { c.Settle = 300 * time.Millisecond })
	h := f.hosts.hosts["h00"]
	h.deny = 3
	h.landsLate = 100 * time.Millisecond
	res := f.engine.Rotate(ctx, spec, rotation.RotateOptions{})
	if res.State != rotation.StateCommitted {
		t.Fatalf("state %s err %v", res.State, res.Err)
	}
	if h.failedAuth != 0 {
		t.Errorf("%d refused logins probing a change in flight, want none", h.failedAuth)
	}
	f.assertAll(t, f.vault.password(f.id))
	if f.vault.password(f.id) == oldPw {
		t.Errorf("the vault kept the old password")
	}
}
