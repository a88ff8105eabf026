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
	c, err := secretserver.New(secretserver.Config{URL: srv.URL, Username: "svc", Password: secret.New("Svc-Pw-1!"),
		CAPEM: srv.CACertPEM(), MaxRetries: 1, RetryBaseDelay: time.Millisecond}, nil)
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
