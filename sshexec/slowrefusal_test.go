package sshexec

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestRigSlowRefusalIsAnUnknownOutcome: a host whose PAM takes longer than
// the connect timeout to refuse a password. The password was sent, so the
// login's outcome is unknown (rotation.ErrLoginUnknown), never
// "unreachable" (which the engine retries), and exactly one refused
// password reached the host (its pam_faillock tally).
func TestRigSlowRefusalIsAnUnknownOutcome(t *testing.T) {
	const connect = time.Second
	e := startRig(t, Config{ConnectTimeout: connect}, sshtest.HostSpec{Variant: sshtest.Faillock, RefusalDelay: 4 * connect})
	ctx := context.Background()
	// The right password is not delayed: the host answers within the timeout.
	if err := e.d.Verify(ctx, e.host(0), rigUser, secret.New(rigPw)); err != nil {
		t.Fatalf("the password on the slow host: %v", err)
	}
	e.waitAttempts(t, 0, 1)
	_, err := e.d.Login(ctx, e.host(0), rigUser, secret.New("Wrong-Pw-77"))
	e.watch.add(err)
	if !errors.Is(err, rotation.ErrLoginUnknown) || errors.Is(err, rotation.ErrUnreachable) || errors.Is(err, rotation.ErrAuthFailed) {
		t.Fatalf("err %v; want ErrLoginUnknown, neither unreachable nor refused", err)
	}
	if got := e.waitAttempts(t, 0, 2); got != 2 {
		t.Fatalf("host logged %d attempts, want 2", got)
	}
	n, ferr := e.rig.FaillockCount(0, rigUser)
	if ferr != nil {
		t.Fatal(ferr)
	}
	if n != 1 || e.rig.RefusedLogins(0) != 1 {
		t.Fatalf("the host counted %d refusals (sshd %d), want 1", n, e.rig.RefusedLogins(0))
	}
	e.watch.check(t, rigPw, "Wrong-Pw-77")
}
