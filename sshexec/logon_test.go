package sshexec

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// TestLogonKeyFile: a key file group or others may read or write is
// refused before it is read; 0600 and 0400 are loaded; a protected key
// needs its passphrase; no text shows the passphrase or the key.
func TestLogonKeyFile(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const phrase = "File-Phrase-31"
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(phrase))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_logon")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyFile(p, secret.New(phrase))
		if !errors.Is(err, ErrKeyFileMode) || !strings.Contains(err.Error(), p) {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		texts = append(texts, err.Error())
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		a, err := LoadKeyFile(p, secret.New(phrase))
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if a.KeyType() != ssh.KeyAlgoED25519 || a.String() != "key ssh-ed25519" {
			t.Fatalf("key type %q, %q", a.KeyType(), a)
		}
		texts = append(texts, a.String(), fmt.Sprintf("%v %+v %#v", a, a, a))
	}
	for _, pp := range []secret.Value{{}, secret.New("Wrong-31")} {
		_, err := LoadKeyFile(p, pp)
		if !errors.Is(err, ErrKeyPassphrase) {
			t.Fatalf("passphrase: %v", err)
		}
		texts = append(texts, err.Error())
	}
	for _, s := range texts {
		if strings.Contains(s, phrase) || strings.Contains(s, "PRIVATE KEY") {
			t.Fatalf("a credential in %q", s)
		}
	}
	if _, err := KeyLogon([]byte("not a key"), secret.Value{}); err == nil {
		t.Fatal("garbage accepted as a key")
	}
}

// TestThroughValidates: su and sudo need a logon account with a
// credential; a bad account name is refused; escalation none logs in as
// the target alone.
func TestThroughValidates(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{KnownHosts: kh}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pw := PasswordLogon(secret.New("Logon-Pw-1"))
	for _, p := range []Path{
		{Escalation: EscalateSu, Auth: pw},
		{Escalation: EscalateSudo, Auth: pw},
		{Logon: "ops", Escalation: EscalateSu},
		{Logon: "ops; reboot", Escalation: EscalateSu, Auth: pw},
		{Logon: "ops", Escalation: Escalation(9), Auth: pw},
	} {
		if _, err := d.Through(p); err == nil {
			t.Errorf("path %v accepted", p)
		}
	}
	r, err := d.Through(Path{Logon: "ops", Auth: pw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Login(context.Background(), rotation.Host{Name: "127.0.0.1", Port: 1}, "root", secret.New("x")); err == nil || errors.Is(err, rotation.ErrUnreachable) {
		t.Fatalf("none with another logon account: %v", err)
	}
	for s, want := range map[string]Escalation{"": EscalateNone, "none": EscalateNone, "su": EscalateSu, "sudo": EscalateSudo} {
		if got, err := ParseEscalation(s); err != nil || got != want || (s != "" && got.String() != s) {
			t.Errorf("ParseEscalation(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseEscalation("doas"); err == nil {
		t.Error("doas accepted")
	}
}
