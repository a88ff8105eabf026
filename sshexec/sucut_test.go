package sshexec

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// suEnd is how a fake host ends su's channel before su asked anything.
type suEnd int

const (
	suExits suEnd = iota // su prints a message and exits 1, as su does on its own
	suCut                // the channel closes without an exit status: sshd or the connection died
)

// fakeSuHost serves one SSH connection whose every session ends as end
// says, and returns a client connected to it.
func fakeSuHost(t *testing.T, end suEnd) *ssh.Client {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			c.Close()
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				for r := range creqs {
					_ = r.Reply(r.Type == "pty-req" || r.Type == "exec", nil)
					if r.Type != "exec" {
						continue
					}
					if end == suExits {
						_, _ = ch.Write([]byte("su: user root does not exist or the user entry does not contain all the required fields\r\n"))
						_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
					}
					_ = ch.Close()
				}
			}()
		}
	}()
	client, err := ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{User: "rotuser", Auth: []ssh.AuthMethod{ssh.Password("x")},
		HostKeyCallback: ssh.FixedHostKey(signer.PublicKey()), Timeout: 5 * time.Second})
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
		end     suEnd
		want    error
		unknown bool
	}{
		{"su exits", suExits, ErrEscalation, false},
		{"channel cut", suCut, ErrSuCutOff, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &Reach{d: &Dialer{cfg: Config{StepTimeout: 5 * time.Second}}}
			s := &reachSession{r: r, client: fakeSuHost(t, c.end), addr: "fake:22", logon: "rotuser", target: "root", pw: secret.New("Root-Pw-1")}
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
