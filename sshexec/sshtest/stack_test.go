package sshtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestRigVariantsCarryTheirOwnPasswordStack changes the password to a
// dictionary word on a Debian and a PwQuality host: whatever the machine's
// own /etc/pam.d says (Debian switches pwquality on when it is installed),
// the Debian host takes it and the PwQuality host refuses it.
func TestRigVariantsCarryTheirOwnPasswordStack(t *testing.T) {
	sshtest.RequireRig(t)
	const user, pw, weak = "rotuser", "Initial-Pw-2024", "password1"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := sshtest.StartRig(ctx, sshtest.RigOptions{
		Dir:      t.TempDir(),
		Hosts:    []sshtest.HostSpec{{Variant: sshtest.Debian}, {Variant: sshtest.PwQuality}},
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
	change := func(i int) rotation.Outcome {
		t.Helper()
		h := r.Hosts()[i]
		s, err := d.Login(ctx, rotation.Host{Name: h.Name, Port: h.Port}, user, secret.New(pw))
		if err != nil {
			t.Fatalf("login host %d: %v", i, err)
		}
		defer s.Close()
		return s.ChangePassword(ctx, secret.New(pw), secret.New(weak))
	}
	if o := change(0); o.Kind != rotation.OutcomeChanged {
		t.Errorf("Debian host refused %q: %v %q %v\n%s", weak, o.Kind, o.Reason, o.Err, o.Transcript)
	} else if err := d.Verify(ctx, rotation.Host{Name: r.Hosts()[0].Name, Port: r.Hosts()[0].Port}, user, secret.New(weak)); err != nil {
		t.Errorf("Debian host: the new password does not log in: %v", err)
	}
	if o := change(1); o.Kind != rotation.OutcomeRejected {
		t.Errorf("PwQuality host: want the policy's refusal, got %v %q %v\n%s", o.Kind, o.Reason, o.Err, o.Transcript)
	}
}
