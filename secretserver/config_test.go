package secretserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
)

// New takes the values it is given: a zero MaxRetries is no retry (not
// the default's four), and a negative setting is refused.
func TestConfigZeroIsZero(t *testing.T) {
	f := newFixture(t)
	id := f.addRoot("web", "", "web01")
	c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.MaxRetries = 0 })
	f.srv.FailNext(sstest.EndpointGetSecret, 100, 503, `{"message":"busy"}`)
	if _, err := c.Read(context.Background(), id, ""); err == nil {
		t.Fatal("read succeeded against a failing server")
	}
	if n := f.srv.Calls(sstest.EndpointGetSecret); n != 1 {
		t.Fatalf("secret GETs = %d, want 1: MaxRetries 0 retries nothing", n)
	}

	for name, mod := range map[string]func(*secretserver.Config){
		"Timeout":        func(c *secretserver.Config) { c.Timeout = -time.Second },
		"MaxRetries":     func(c *secretserver.Config) { c.MaxRetries = -1 },
		"RetryBaseDelay": func(c *secretserver.Config) { c.RetryBaseDelay = -time.Second },
		"RetryMaxDelay":  func(c *secretserver.Config) { c.RetryMaxDelay = -time.Second },
		"PageSize":       func(c *secretserver.Config) { c.PageSize = -1 },
	} {
		cfg := secretserver.DefaultConfig()
		cfg.URL, cfg.Username, cfg.Password = "https://ss.example/SecretServer", "u", secret.New("p")
		mod(&cfg)
		if _, err := secretserver.New(cfg, nil); err == nil {
			t.Errorf("negative %s accepted", name)
		}
	}
}

// A zero page size leaves the page to the server: a name is still found
// among more secrets than one page of the server's holds.
func TestConfigZeroPageSize(t *testing.T) {
	f := newFixture(t)
	for i := range 30 {
		f.addRoot("web-"+string(rune('a'+i%26))+string(rune('a'+i/26)), "", "web01")
	}
	want := f.addRoot("web", "", "web01")
	c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.PageSize = 0 })
	id, err := c.Resolve(context.Background(), "web")
	if err != nil || id != want {
		t.Fatalf("resolve = %d, %v; want %d", id, err, want)
	}
}
