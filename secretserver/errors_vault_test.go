package secretserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
)

// A vault that keeps answering 503, or cannot be reached at all, is a
// transient condition the scheduler retries.
func TestVaultUnavailableIsTransient(t *testing.T) {
	srv := sstest.New()
	defer srv.Close()
	srv.AddUser("svc", "", "Svc-Pw-1!")
	id := srv.AddSecret(sstest.SecretSeed{Name: "web", Username: "root", Password: "x-Old-1!", Notes: "web01"})
	cfg := secretserver.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.CAPEM = srv.URL, "svc", secret.New("Svc-Pw-1!"), srv.CACertPEM()
	cfg.MaxRetries, cfg.RetryBaseDelay = 1, time.Millisecond
	c, err := secretserver.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.FailNext(sstest.EndpointGetSecret, 10, 503, `{"message":"busy"}`)
	_, err = c.Read(context.Background(), id, "")
	if !errors.Is(err, rotation.ErrVaultUnavailable) || !rotation.Transient(err) {
		t.Fatalf("503: %v", err)
	}
	addr := srv.Addr()
	srv.Close()
	_, err = c.Read(context.Background(), id, "")
	if !errors.Is(err, rotation.ErrVaultUnavailable) {
		t.Fatalf("%s closed: %v", addr, err)
	}
}
