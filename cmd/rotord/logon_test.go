package main

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec"
)

// The logon account's own password is never changed through its own
// path: a login for it is refused before any connection, as a step
// before passwd (nothing changed).
func TestLogonAccountIsNotRotatedThroughItself(t *testing.T) {
	dc := sshexec.DefaultConfig()
	dc.KnownHosts = t.TempDir() + "/known_hosts"
	if err := os.WriteFile(dc.KnownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := sshexec.New(dc, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Through(sshexec.Path{Logon: "ops", Auth: sshexec.PasswordLogon(secret.New("Ops-Pw-1!")), Escalation: sshexec.EscalateSu})
	if err != nil {
		t.Fatal(err)
	}
	// A host no connection could reach: the refusal comes first.
	_, err = notThroughItself{r}.Login(context.Background(), rotation.Host{Name: "192.0.2.1", Port: 22}, "ops", secret.New("x"))
	if !errors.Is(err, errLogonIsTarget) || !errors.Is(err, rotation.ErrBeforePasswd) {
		t.Fatalf("login of the logon account itself: %v", err)
	}
}
