package secretserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
)

// Credential reads a logon account from a password secret, and from a
// Unix Account (SSH) secret its private key (a file field, fetched from
// its field endpoint) and passphrase.
func TestCredential(t *testing.T) {
	srv := sstest.New()
	defer srv.Close()
	srv.AddUser("svc", "", "Svc-Pw-1!")
	const keyPEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
	plain := srv.AddSecret(sstest.SecretSeed{Name: "ops", Username: "ops", Password: "Ops-Pw-1!", Notes: "web01"})
	tid := srv.AddUnixSSHTemplate("Unix Account (SSH)")
	keyed := srv.AddSecret(sstest.SecretSeed{Name: "ops-key", TemplateID: tid, Username: "ops", Password: "Sudo-Pw-2!",
		Fields: map[string]string{secretserver.SlugPrivateKey: keyPEM, secretserver.SlugPrivateKeyPassphrase: "Phrase-3"}})
	cfg := secretserver.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.CAPEM = srv.URL, "svc", secret.New("Svc-Pw-1!"), srv.CACertPEM()
	cfg.MaxRetries, cfg.RetryBaseDelay = 1, time.Millisecond
	c, err := secretserver.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cr, err := c.Credential(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Username != "ops" || cr.Password.Reveal() != "Ops-Pw-1!" || !cr.PrivateKey.IsZero() || !cr.Passphrase.IsZero() {
		t.Errorf("password secret read as user %q, password set %v, key set %v", cr.Username, !cr.Password.IsZero(), !cr.PrivateKey.IsZero())
	}
	cr, err = c.Credential(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Username != "ops" || cr.Password.Reveal() != "Sudo-Pw-2!" || cr.PrivateKey.Reveal() != keyPEM || cr.Passphrase.Reveal() != "Phrase-3" {
		t.Error("the Unix Account (SSH) secret's fields were not read as stored")
	}
	if n := srv.Calls(sstest.EndpointGetField); n != 1 {
		t.Errorf("%d field reads, want 1 (the key file)", n)
	}
}
