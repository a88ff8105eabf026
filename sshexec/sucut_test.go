package sshexec

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// fakeSuHost returns a client logged into an in-process SSH server on
// which su is not found (it ends on its own, with exit status 127) or,
// with cut, whose every command's channel closes without an exit status.
func fakeSuHost(t *testing.T, cut bool) *ssh.Client {
	t.Helper()
	srv, err := sshtest.NewServer(sshtest.ServerOptions{Password: "Logon-Pw-1", CutCommands: cut})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client, err := ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{User: "rotuser", Auth: []ssh.AuthMethod{ssh.Password("Logon-Pw-1")},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// TestSuDialogueCutBeforePrompt: su's channel closing without an exit
// status before su asked for the password is an unknown login (su may
// have failed its PAM authentication on the vanished terminal, which
// pam_faillock counts), so the engine counts it against the host's
// budget; su ending on its own before a prompt stays an escalation
// failure the budget does not see.
func TestSuDialogueCutBeforePrompt(t *testing.T) {
	for _, c := range []struct {
		name    string
		cut     bool
		want    error
		unknown bool
	}{
		{"su exits", false, ErrEscalation, false},
		{"channel cut", true, ErrSuCutOff, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &Reach{d: &Dialer{cfg: Config{StepTimeout: 5 * time.Second}}}
			s := &reachSession{r: r, client: fakeSuHost(t, c.cut), addr: "fake:22", logon: "rotuser", target: "root", pw: secret.New("Root-Pw-1")}
			_, err := s.suDialogue(context.Background(), suCommand("root", true, shellScript), "root", s.pw)
			var se *StepError
			if !errors.As(err, &se) || se.Step != StepSu || !errors.Is(err, c.want) {
				t.Fatalf("su: %v; want a step su error %v", err, c.want)
			}
			if c.unknown && strings.Contains(err.Error(), "password sent") {
				t.Fatalf("su: %v: says a password was sent", err)
			}
			if errors.Is(err, rotation.ErrLoginUnknown) != c.unknown || errors.Is(err, rotation.ErrAuthFailed) || errors.Is(err, rotation.ErrUnreachable) {
				t.Fatalf("su: %v: unknown login %v, want %v; never refused or unreachable", err, errors.Is(err, rotation.ErrLoginUnknown), c.unknown)
			}
		})
	}
}
