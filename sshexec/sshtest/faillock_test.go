package sshtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestRigFaillockLocksAtTheThirdRefusal shows the Faillock variant is
// real: two refused passwords are counted and a good one resets the count;
// three in a row lock the account, so that even its password is refused.
// (pam_faillock asks PAM for a 2 s delay after each refusal.)
func TestRigFaillockLocksAtTheThirdRefusal(t *testing.T) {
	sshtest.RequireRig(t)
	const user, pw = "rotuser", "Initial-Pw-2024"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := sshtest.StartRig(ctx, sshtest.RigOptions{
		Dir:      t.TempDir(),
		Hosts:    []sshtest.HostSpec{{Variant: sshtest.Faillock}},
		User:     user,
		Password: pw,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	d, err := sshexec.New(sshexec.Config{KnownHosts: r.KnownHostsFile(), ConnectTimeout: 10 * time.Second, StepTimeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := rotation.Host{Name: r.Hosts()[0].Name, Port: r.Hosts()[0].Port}
	attempts := 0
	login := func(p string) error {
		t.Helper()
		err := d.Verify(ctx, h, user, secret.New(p))
		attempts++
		if _, werr := r.WaitAuthAttempts(ctx, 0, attempts); werr != nil {
			t.Fatal(werr)
		}
		return err
	}
	count := func() int {
		t.Helper()
		n, err := r.FaillockCount(0, user)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := 1; i <= sshtest.FaillockDeny-1; i++ {
		if err := login("Wrong-Pw-1"); !errors.Is(err, rotation.ErrAuthFailed) {
			t.Fatalf("wrong password %d: %v", i, err)
		}
		if n := count(); n != i {
			t.Fatalf("after %d refusals the tally holds %d", i, n)
		}
	}
	if err := login(pw); err != nil {
		t.Fatalf("the password, after %d refusals: %v", sshtest.FaillockDeny-1, err)
	}
	if n := count(); n != 0 {
		t.Fatalf("a good login left the tally at %d", n)
	}
	for i := 1; i <= sshtest.FaillockDeny; i++ {
		if err := login("Wrong-Pw-2"); !errors.Is(err, rotation.ErrAuthFailed) {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	if n := count(); n != sshtest.FaillockDeny {
		t.Fatalf("tally %d, want %d", n, sshtest.FaillockDeny)
	}
	if err := login(pw); !errors.Is(err, rotation.ErrAuthFailed) {
		t.Fatalf("the locked account logged in with its password: %v", err)
	}
	if got, want := r.RefusedLogins(0), 2*sshtest.FaillockDeny; got != want {
		t.Errorf("sshd logged %d refused logins, want %d", got, want)
	}
	if err := r.ResetFaillock(0, user); err != nil {
		t.Fatal(err)
	}
	if err := login(pw); err != nil {
		t.Fatalf("after a reset: %v", err)
	}
}
