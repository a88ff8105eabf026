package secretserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/store"
)

const (
	svcUser   = "svc-rotord"
	svcPass   = "Svc-Pass-9f3a!x"
	winDomain = "CORP"
	winUser   = "svc-win"
	winPass   = "Win-Pass-41c7#z"
	rootPass  = "Old-Root-Pw-77q!"
)

// leaks collects everything the client said (log lines, errors) so that a
// test can check that no password or token is among it.
type leaks struct {
	mu   sync.Mutex
	logs bytes.Buffer
	errs []string
}

func (l *leaks) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logs.Write(p)
}

func (l *leaks) err(err error) error {
	if err != nil {
		l.mu.Lock()
		l.errs = append(l.errs, err.Error(), fmt.Sprintf("%+v %#v", err, err))
		l.mu.Unlock()
	}
	return err
}

// check fails t if any of the secrets appears in the logs or errors.
func (l *leaks) check(t *testing.T, secrets ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	text := l.logs.String() + "\n" + strings.Join(l.errs, "\n")
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("secret %q... leaked into logs or errors", s[:min(4, len(s))])
		}
	}
}

type fixture struct {
	srv   *sstest.Server
	leaks *leaks
}

func newFixture(t testing.TB, opts ...sstest.Option) *fixture {
	srv := sstest.New(opts...)
	t.Cleanup(srv.Close)
	srv.AddUser(svcUser, "", svcPass)
	srv.AddUser(winUser, winDomain, winPass)
	return &fixture{srv: srv, leaks: &leaks{}}
}

func (f *fixture) client(t testing.TB, auth string, mod func(*secretserver.Config)) *secretserver.Client {
	t.Helper()
	cfg := secretserver.DefaultConfig()
	cfg.URL, cfg.Auth, cfg.Username, cfg.Password, cfg.CAPEM = f.srv.URL, auth, svcUser, secret.New(svcPass), f.srv.CACertPEM()
	cfg.Timeout, cfg.RetryBaseDelay, cfg.RetryMaxDelay = 10*time.Second, time.Millisecond, 5*time.Second
	if auth == secretserver.AuthNTLM {
		cfg.Username, cfg.Password, cfg.Domain = winUser, secret.New(winPass), winDomain
	}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewTextHandler(f.leaks, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := secretserver.New(cfg, log)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

func (f *fixture) addRoot(name, folder, notes string) int {
	return f.srv.AddSecret(sstest.SecretSeed{Name: name, Folder: folder, Username: "root", Password: rootPass, Notes: notes})
}

// rotateAPI does a rotation's worth of API work and returns the new password.
func rotateAPI(t *testing.T, c *secretserver.Client, name string) (rotation.Secret, secret.Value) {
	t.Helper()
	ctx := context.Background()
	id, err := c.Resolve(ctx, name)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	s, err := c.Read(ctx, id, "")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	pw, err := c.Generate(ctx, s)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if err := c.Write(ctx, s, pw, "rotation"); err != nil {
		t.Fatalf("write: %v", err)
	}
	return s, pw
}

func TestRotationAPI(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth string
		opts []sstest.Option
	}{
		{"OAuth2OnPremises", secretserver.AuthOAuth2, nil},
		{"OAuth2Cloud", secretserver.AuthOAuth2, []sstest.Option{sstest.WithBasePath("/")}},
		{"NTLM", secretserver.AuthNTLM, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts...)
			f.addRoot("web01 admin-old", `\Prod\Old`, "x")
			id := f.addRoot("web01 admin", `\Prod\Web`, "web01.example.com, web02:2222\n[2001:db8::1]:22; 10.0.0.5 web01.example.com")
			c := f.client(t, tc.auth, func(c *secretserver.Config) { c.URL += "/" })
			if err := f.leaks.err(c.Authenticate(context.Background())); err != nil {
				t.Fatalf("authenticate: %v", err)
			}
			f.srv.ResetCalls()

			s, pw := rotateAPI(t, c, "WEB01 ADMIN")

			if got := f.srv.Requests(); got > 5 {
				t.Errorf("rotation's worth of API work took %d HTTP requests after authentication, want <= 5", got)
			}
			if s.ID != id || s.Username != "root" || s.Password.Reveal() != rootPass || s.FolderPath != `\Prod\Web` {
				t.Errorf("read secret = id %d user %q folder %q, want id %d root \\Prod\\Web and the seeded password", s.ID, s.Username, s.FolderPath, id)
			}
			if s.PasswordSlug != "password" || s.PasswordFieldID != f.srv.PasswordFieldID(sstest.DefaultTemplateID) || s.TemplateID != sstest.DefaultTemplateID {
				t.Errorf("password field = %q/%d template %d", s.PasswordSlug, s.PasswordFieldID, s.TemplateID)
			}
			want := []rotation.Host{{Name: "web01.example.com"}, {Name: "web02", Port: 2222}, {Name: "2001:db8::1", Port: 22}, {Name: "10.0.0.5"}}
			if fmt.Sprint(s.Hosts) != fmt.Sprint(want) {
				t.Errorf("hosts = %v, want %v", s.Hosts, want)
			}
			if got := f.srv.Field(id, "password"); got != pw.Reveal() || got == rootPass || len(got) != 20 {
				t.Errorf("server holds a %d-char password, equal to generated: %v", len(got), got == pw.Reveal())
			}
			if tc.auth == secretserver.AuthNTLM && f.srv.NTLMHandshakes() != 0 {
				t.Errorf("NTLM handshakes after authentication = %d, want 0 (connection stays authenticated)", f.srv.NTLMHandshakes())
			}
			f.leaks.check(t, append(f.srv.Tokens(), svcPass, winPass, rootPass, pw.Reveal())...)
		})
	}
}

func TestWrongPassword(t *testing.T) {
	for _, auth := range []string{secretserver.AuthOAuth2, secretserver.AuthNTLM} {
		t.Run(auth, func(t *testing.T) {
			f := newFixture(t)
			id := f.addRoot("web", "", "web01")
			c := f.client(t, auth, func(c *secretserver.Config) { c.Password = secret.New("Wrong-Pass-000") })
			_, err := c.Read(context.Background(), id, "")
			f.leaks.err(err)
			if !errors.Is(err, rotation.ErrAuthFailed) {
				t.Fatalf("read with a wrong password: err = %v, want ErrAuthFailed", err)
			}
			if auth == secretserver.AuthOAuth2 {
				if n := f.srv.Calls(sstest.EndpointToken); n != 1 {
					t.Errorf("token calls = %d, want 1 (a refused grant is never retried)", n)
				}
				if !strings.Contains(err.Error(), "Login failed") {
					t.Errorf("error %q does not carry the server's message", err)
				}
			} else if n := f.srv.NTLMFailures(); n != 1 {
				t.Errorf("NTLM failures = %d, want 1", n)
			}
			f.leaks.check(t, "Wrong-Pass-000", svcPass, winPass, rootPass)
		})
	}
}

func TestHundredSecretsAuthenticateOnce(t *testing.T) {
	f := newFixture(t)
	for i := range 100 {
		f.addRoot(fmt.Sprintf("host%03d-root", i), `\Prod`, fmt.Sprintf("host%03d", i))
	}
	c := f.client(t, secretserver.AuthOAuth2, nil)
	ctx := context.Background()
	for i := range 100 {
		id, err := c.Resolve(ctx, fmt.Sprintf("host%03d-root", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.srv.Calls(sstest.EndpointToken); n != 1 {
		t.Errorf("token grants over 100 secrets = %d, want 1", n)
	}
}

func TestTokenExpiredMidRun(t *testing.T) {
	f := newFixture(t)
	id := f.addRoot("web", "", "web01")
	c := f.client(t, secretserver.AuthOAuth2, nil)
	ctx := context.Background()
	if _, err := c.Read(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	f.srv.ExpireTokens() // the server answers 403 "Authentication failed or expired token."
	s, err := c.Read(ctx, id, "")
	if err != nil {
		t.Fatalf("read after the token expired: %v", err)
	}
	if s.Username != "root" {
		t.Errorf("username = %q", s.Username)
	}
	if n := f.srv.Calls(sstest.EndpointRefresh); n != 1 {
		t.Errorf("refresh grants = %d, want 1", n)
	}
	if n := f.srv.Calls(sstest.EndpointGetSecret); n != 3 {
		t.Errorf("secret GETs = %d, want 3 (one refused and replayed)", n)
	}

	t.Run("RefreshRefused", func(t *testing.T) {
		f.srv.ResetCalls()
		f.srv.ExpireTokens()
		f.srv.RevokeRefreshTokens()
		if _, err := c.Read(ctx, id, ""); err != nil {
			t.Fatalf("read: %v", err)
		}
		if r, all := f.srv.Calls(sstest.EndpointRefresh), f.srv.Calls(sstest.EndpointToken); r != 1 || all != 2 {
			t.Errorf("grants: %d refresh of %d, want the refused refresh then a password grant", r, all)
		}
	})
	t.Run("Unauthorized401", func(t *testing.T) {
		f.srv.ResetCalls()
		f.srv.FailNext(sstest.EndpointGetSecret, 1, 401, `{"errorCode":"API_AuthenticationFailed","message":"Authentication failed or expired token"}`)
		if _, err := c.Read(ctx, id, ""); err != nil {
			t.Fatalf("read after a 401: %v", err)
		}
		if g, tk := f.srv.Calls(sstest.EndpointGetSecret), f.srv.Calls(sstest.EndpointToken); g != 2 || tk != 1 {
			t.Errorf("GETs %d grants %d, want 2 and 1", g, tk)
		}
	})
	t.Run("RefusedTwice", func(t *testing.T) {
		f.srv.ResetCalls()
		f.srv.FailNext(sstest.EndpointGetSecret, 5, 401, sstest.BodyNoAuth)
		_, err := c.Read(ctx, id, "")
		if !errors.Is(err, rotation.ErrAuthFailed) {
			t.Fatalf("err = %v, want ErrAuthFailed after one re-authentication", err)
		}
		if n := f.srv.Calls(sstest.EndpointGetSecret); n != 2 {
			t.Errorf("secret GETs = %d, want 2", n)
		}
	})
}

func TestConcurrentCallersShareOneGrant(t *testing.T) {
	f := newFixture(t)
	id := f.addRoot("web", "", "web01")
	c := f.client(t, secretserver.AuthOAuth2, nil)
	f.srv.SetLatency(sstest.EndpointToken, 50*time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := c.Read(context.Background(), id, "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.srv.Calls(sstest.EndpointToken); n != 1 {
		t.Errorf("grants = %d, want 1", n)
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	f := newFixture(t)
	id := f.addRoot("web", "", "web01")
	var mu sync.Mutex
	now := time.Now()
	c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) {
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	ctx := context.Background()
	if _, err := c.Read(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(19 * time.Minute) // of a 20-minute token
	mu.Unlock()
	if _, err := c.Read(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Calls(sstest.EndpointRefresh); n != 1 {
		t.Errorf("refresh grants = %d, want 1", n)
	}
	if n := f.srv.Calls(sstest.EndpointGetSecret); n != 2 {
		t.Errorf("secret GETs = %d, want 2 (no refused request)", n)
	}
}

func TestTransientFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("RateLimitedRetryAfter", func(t *testing.T) {
		f := newFixture(t)
		f.addRoot("web", "", "web01")
		sl := &sleeps{}
		c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.Sleep = sl.sleep })
		if err := c.Authenticate(ctx); err != nil {
			t.Fatal(err)
		}
		f.srv.FailNextWithHeader(sstest.EndpointSearch, 1, 429, `{"message":"Too many requests"}`, http.Header{"Retry-After": {"1"}})
		if _, err := c.Resolve(ctx, "web"); err != nil {
			t.Fatalf("resolve: %v", err)
		}
		if got := sl.got(); len(got) != 1 || got[0] != time.Second {
			t.Errorf("waits %v, want the server's Retry-After of 1s", got)
		}
		if n := f.srv.Calls(sstest.EndpointSearch); n != 2 {
			t.Errorf("search calls = %d, want 2", n)
		}
	})
	t.Run("ServiceUnavailableBurst", func(t *testing.T) {
		f := newFixture(t)
		id := f.addRoot("web", "", "web01")
		c := f.client(t, secretserver.AuthOAuth2, nil)
		f.srv.FailNext(sstest.EndpointToken, 2, 503, "<html><title>Service Unavailable</title></html>")
		f.srv.FailNext(sstest.EndpointGetSecret, 3, 503, "")
		if _, err := c.Read(ctx, id, ""); err != nil {
			t.Fatalf("read: %v", err)
		}
		if n := f.srv.Calls(sstest.EndpointGetSecret); n != 4 {
			t.Errorf("secret GETs = %d, want 4", n)
		}
	})
	t.Run("PersistentServerError", func(t *testing.T) {
		f := newFixture(t)
		id := f.addRoot("web", "", "web01")
		c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.MaxRetries = 3 })
		f.srv.FailNext(sstest.EndpointGetSecret, 100, 500, `{"errorCode":"API_DatabaseError","message":"database unavailable"}`)
		_, err := c.Read(ctx, id, "")
		if !errors.Is(err, secretserver.ErrServer) || !strings.Contains(err.Error(), "database unavailable") {
			t.Fatalf("err = %v, want ErrServer with the server's message", err)
		}
		var ae *secretserver.APIError
		if !errors.As(err, &ae) || ae.Status != 500 || ae.Code != "API_DatabaseError" {
			t.Errorf("APIError = %+v", ae)
		}
		if n := f.srv.Calls(sstest.EndpointGetSecret); n != 4 {
			t.Errorf("secret GETs = %d, want 4 (1 + MaxRetries)", n)
		}
	})
	t.Run("PutRetriedAfterCheck", func(t *testing.T) {
		f := newFixture(t)
		id := f.addRoot("web", "", "web01")
		c := f.client(t, secretserver.AuthOAuth2, nil)
		s, err := c.Read(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		f.srv.FailNext(sstest.EndpointPutField, 1, 502, "<html><title>502 Bad Gateway</title></html>")
		if err := c.Write(ctx, s, secret.New("New-Pw-123456!"), ""); err != nil {
			t.Fatalf("write: %v", err)
		}
		if got := f.srv.Field(id, "password"); got != "New-Pw-123456!" {
			t.Errorf("server holds %q", got)
		}
		if p, g, gs := f.srv.Calls(sstest.EndpointPutField), f.srv.Calls(sstest.EndpointGetField), f.srv.Calls(sstest.EndpointGetSecret); p != 2 || g != 1 || gs != 2 {
			t.Errorf("PUTs %d field GETs %d secret GETs %d, want 2, 1 and 2 (read, compare, replay, read back)", p, g, gs)
		}
	})
	t.Run("PutAppliedThenFailed", func(t *testing.T) {
		f := newFixture(t)
		id := f.addRoot("web", "", "web01")
		c := f.client(t, secretserver.AuthOAuth2, nil)
		s, err := c.Read(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		f.srv.FailNextAfterApply(sstest.EndpointPutField, 1, 504, "<html><title>504 Gateway Timeout</title></html>")
		if err := c.Write(ctx, s, secret.New("Applied-Pw-4242!"), ""); err != nil {
			t.Fatalf("write: %v", err)
		}
		if got := f.srv.Field(id, "password"); got != "Applied-Pw-4242!" {
			t.Errorf("server holds %q", got)
		}
		if p, g, gs := f.srv.Calls(sstest.EndpointPutField), f.srv.Calls(sstest.EndpointGetField), f.srv.Calls(sstest.EndpointGetSecret); p != 1 || g != 1 || gs != 2 {
			t.Errorf("PUTs %d field GETs %d secret GETs %d, want 1, 1 and 2 (the check found the write applied)", p, g, gs)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		f := newFixture(t)
		id := f.addRoot("web", "", "web01")
		c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.Timeout = time.Second; c.MaxRetries = 1 })
		if err := c.Authenticate(ctx); err != nil {
			t.Fatal(err)
		}
		f.srv.SetLatency(sstest.EndpointGetSecret, time.Minute)
		_, err := c.Read(ctx, id, "")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
		if n := f.srv.Calls(sstest.EndpointGetSecret); n != 2 {
			t.Errorf("secret GETs = %d, want 2 (a timeout is retried)", n)
		}
	})
	t.Run("ContextBoundsRetries", func(t *testing.T) {
		f := newFixture(t)
		id := f.addRoot("web", "", "web01")
		c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) {
			c.MaxRetries = 50
			c.RetryBaseDelay = 20 * time.Second
			c.RetryMaxDelay = time.Minute
		})
		if err := c.Authenticate(ctx); err != nil {
			t.Fatal(err)
		}
		f.srv.FailNext(sstest.EndpointGetSecret, 100, 503, "")
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.Read(cctx, id, "")
		if !errors.Is(err, secretserver.ErrServer) {
			t.Fatalf("err = %v, want the last server error", err)
		}
		if n := f.srv.Calls(sstest.EndpointGetSecret); n != 1 {
			t.Errorf("secret GETs = %d, want 1 (the backoff would outlast the context)", n)
		}
	})
}

func TestBadAnswers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	id := f.addRoot("web", "", "web01")
	c := f.client(t, secretserver.AuthOAuth2, nil)
	f.srv.FailNext(sstest.EndpointToken, 1, 200, "<html><head><title>Secret Server Login</title></head></html>")
	_, err := c.Read(ctx, id, "")
	if !errors.Is(err, secretserver.ErrBadResponse) {
		t.Fatalf("HTML token answer: err = %v, want ErrBadResponse", err)
	}
	f.srv.FailNext(sstest.EndpointGetSecret, 1, 200, `{"id": "garbage`)
	_, err = c.Read(ctx, id, "")
	if !errors.Is(err, secretserver.ErrBadResponse) {
		t.Fatalf("garbage JSON: err = %v, want ErrBadResponse", err)
	}
	f.srv.FailNext(sstest.EndpointGetSecret, 1, 403, `{"errorCode":"API_Forbidden","message":"Forbidden"}`)
	_, err = c.Read(ctx, id, "")
	if !errors.Is(err, rotation.ErrAccessDenied) || errors.Is(err, rotation.ErrAuthFailed) {
		t.Fatalf("plain 403: err = %v, want ErrAccessDenied", err)
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for i := range 10 {
		f.addRoot(fmt.Sprintf("db-root-%d", i), `\Prod\DB`, "db")
	}
	want := f.addRoot("db-root", `\Prod\DB`, "db")
	f.addRoot("Shared", `\Prod\A`, "a")
	f.addRoot("shared", `\Lab\B`, "b")
	c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.PageSize = 3 })

	t.Run("OK", func(t *testing.T) {
		f.srv.ResetCalls()
		id, err := c.Resolve(ctx, "DB-Root")
		if err != nil || id != want {
			t.Fatalf("resolve = %d, %v; want %d", id, err, want)
		}
		if n := f.srv.Calls(sstest.EndpointSearch); n != 4 {
			t.Errorf("search pages = %d, want 4 (11 results, 3 a page)", n)
		}
	})
	t.Run("ErrSecretNotFound", func(t *testing.T) {
		_, err := c.Resolve(ctx, "db-roo")
		if !errors.Is(err, rotation.ErrSecretNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrAmbiguousName", func(t *testing.T) {
		_, err := c.Resolve(ctx, "SHARED")
		if !errors.Is(err, rotation.ErrAmbiguousName) {
			t.Fatalf("err = %v", err)
		}
		for _, folder := range []string{`\Prod\A`, `\Lab\B`} {
			if !strings.Contains(err.Error(), folder) {
				t.Errorf("error %q does not name folder %s", err, folder)
			}
		}
	})
}

func TestRead(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := f.client(t, secretserver.AuthOAuth2, nil)
	t.Run("ErrAccessDenied", func(t *testing.T) {
		f.srv.ResetCalls()
		_, err := c.Read(ctx, 4242, "")
		if !errors.Is(err, rotation.ErrAccessDenied) {
			t.Fatalf("err = %v", err)
		}
		if n := f.srv.Calls(sstest.EndpointGetSecret); n != 1 {
			t.Errorf("GETs = %d, want 1 (access denied is not retried)", n)
		}
	})
	t.Run("ErrBadHosts", func(t *testing.T) {
		id := f.addRoot("bad", "", "web01, bad_host!, web02")
		_, err := c.Read(ctx, id, "")
		if !errors.Is(err, rotation.ErrBadHosts) || !strings.Contains(err.Error(), `"bad_host!"`) {
			t.Fatalf("err = %v, want ErrBadHosts naming the entry", err)
		}
		id = f.addRoot("empty", "", " ,\n ")
		if _, err := c.Read(ctx, id, ""); !errors.Is(err, rotation.ErrBadHosts) {
			t.Fatalf("empty hosts: err = %v", err)
		}
	})
	t.Run("HostsField", func(t *testing.T) {
		id := f.srv.AddSecret(sstest.SecretSeed{Name: "m", Username: "root", Password: "x", Machine: "db01:2200", Notes: "free text!"})
		s, err := c.Read(ctx, id, "machine")
		if err != nil || len(s.Hosts) != 1 || s.Hosts[0] != (rotation.Host{Name: "db01", Port: 2200}) {
			t.Fatalf("read = %v, %v", s.Hosts, err)
		}
	})
	t.Run("Flags", func(t *testing.T) {
		id := f.srv.AddSecret(sstest.SecretSeed{Name: "flags", Username: "root", Password: "x", Notes: "h", AutoChange: true, CommentRequired: true})
		s, err := c.Read(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		if !s.AutoChangeEnabled || !s.CommentRequired || s.CheckoutRequired {
			t.Errorf("flags = auto %v comment %v checkout %v", s.AutoChangeEnabled, s.CommentRequired, s.CheckoutRequired)
		}
	})
}

func TestRestrictedSecret(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	id := f.srv.AddSecret(sstest.SecretSeed{Name: "vault", Username: "root", Password: rootPass, Notes: "h1", CheckoutRequired: true, CommentRequired: true})
	c := f.client(t, secretserver.AuthOAuth2, nil)
	s, err := c.Read(ctx, id, "")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !s.CheckoutRequired || s.Password.Reveal() != rootPass {
		t.Fatalf("read a restricted secret: checkout %v", s.CheckoutRequired)
	}
	if by := f.srv.CheckedOutBy(id); by != "" {
		t.Fatalf("after read, checked out by %q", by)
	}
	if err := c.Write(ctx, s, secret.New("Restricted-New-1!"), "rotation 42"); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := f.srv.Field(id, "password"); got != "Restricted-New-1!" {
		t.Errorf("server holds %q", got)
	}
	if by := f.srv.CheckedOutBy(id); by != "" {
		t.Errorf("after write, checked out by %q", by)
	}
	t.Run("CheckedInAfterFailure", func(t *testing.T) {
		f.srv.FailNext(sstest.EndpointPutField, 1, 400, `{"errorCode":"API_ValidationFailed","message":"Password does not meet requirements"}`)
		err := c.Write(ctx, s, secret.New("Restricted-New-2!"), "rotation 43")
		if err == nil || !strings.Contains(err.Error(), "Password does not meet requirements") {
			t.Fatalf("err = %v", err)
		}
		if by := f.srv.CheckedOutBy(id); by != "" {
			t.Errorf("after a failed write, checked out by %q", by)
		}
		if got := f.srv.Field(id, "password"); got != "Restricted-New-1!" {
			t.Errorf("server holds %q", got)
		}
	})
	t.Run("ErrCheckedOutByOther", func(t *testing.T) {
		f.srv.CheckOutAs(id, "someone-else")
		err := c.Write(ctx, s, secret.New("Restricted-New-3!"), "")
		if !errors.Is(err, secretserver.ErrCheckedOutByOther) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestWriteVerifies(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	id := f.addRoot("web", "", "web01")
	c := f.client(t, secretserver.AuthOAuth2, nil)
	s, err := c.Read(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	f.srv.FailNext(sstest.EndpointGetField, 1, 200, `"Someone-Else-Pw"`)
	err = c.Write(ctx, s, secret.New("New-Pw-987654!"), "")
	if !errors.Is(err, secretserver.ErrVerifyFailed) {
		t.Fatalf("err = %v, want ErrVerifyFailed", err)
	}
}

func TestGenerateFollowsPolicy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	tid := f.srv.AddTemplate("Long Unix", sstest.PasswordPolicy{Length: 32, Upper: true, Digits: true})
	id := f.srv.AddSecret(sstest.SecretSeed{Name: "long", TemplateID: tid, Username: "root", Password: "x", Notes: "h"})
	c := f.client(t, secretserver.AuthOAuth2, nil)
	s, err := c.Read(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	pw, err := c.Generate(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	v := pw.Reveal()
	if len(v) != 32 || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" ||
		!strings.ContainsAny(v, "0123456789") || !strings.ContainsAny(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t.Errorf("generated a %d-char password outside the policy", len(v))
	}
}

func TestTokenCache(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	id := f.addRoot("web", "", "web01")
	path := filepath.Join(t.TempDir(), "token.cache")
	keyring := func(b byte) *store.Keyring {
		k, err := store.NewKey(bytes.Repeat([]byte{b}, store.KeySize))
		if err != nil {
			t.Fatal(err)
		}
		return store.NewKeyring(k)
	}
	key := keyring(1)
	withCache := func(k *store.Keyring) func(*secretserver.Config) {
		return func(c *secretserver.Config) { c.TokenCache = secretserver.NewTokenCache(path, k) }
	}
	if _, err := f.client(t, secretserver.AuthOAuth2, withCache(key)).Read(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("cache file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	for _, tok := range f.srv.Tokens() {
		if bytes.Contains(data, []byte(tok)) {
			t.Fatal("cache file holds a token in plain text")
		}
	}

	// A second process run reuses the token.
	c2 := f.client(t, secretserver.AuthOAuth2, withCache(key))
	if _, err := c2.Read(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Calls(sstest.EndpointToken); n != 1 {
		t.Errorf("grants = %d, want 1 (token reused from the cache)", n)
	}
	// Another key cannot read it: a fresh grant, no failure.
	if _, err := f.client(t, secretserver.AuthOAuth2, withCache(keyring(9))).Read(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Calls(sstest.EndpointToken); n != 2 {
		t.Errorf("grants = %d, want 2", n)
	}
	// A cached token the server expired is replaced.
	f.srv.ExpireTokens()
	if _, err := f.client(t, secretserver.AuthOAuth2, withCache(keyring(9))).Read(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if err := secretserver.ClearTokenCache(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Clear: %v", err)
	}
	if err := secretserver.ClearTokenCache(path); err != nil {
		t.Errorf("clearing a missing cache: %v", err)
	}
}

// TestNoSecretsLeak drives failures whose answers could carry secrets and
// checks that no password or token reaches an error or a log line.
func TestNoSecretsLeak(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	id := f.addRoot("web", `\Prod`, "web01")
	c := f.client(t, secretserver.AuthOAuth2, nil)
	const newPw = "Echoed-New-Pw-5521!"
	s, err := c.Read(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	// A server that echoes the value it refused.
	f.srv.FailNext(sstest.EndpointPutField, 1, 400, `{"errorCode":"API_ValidationFailed","message":"The value '`+newPw+`' is not valid"}`)
	err = f.leaks.err(c.Write(ctx, s, secret.New(newPw), ""))
	if err == nil || !strings.Contains(err.Error(), "<redacted>") {
		t.Errorf("err = %v, want the echoed value redacted", err)
	}
	// A server that echoes the old password in a persistent 500.
	f.srv.FailNext(sstest.EndpointPutField, 10, 500, `{"message":"boom `+rootPass+`"}`)
	if err := f.leaks.err(c.Write(ctx, s, secret.New(newPw), "")); !errors.Is(err, secretserver.ErrServer) {
		t.Errorf("err = %v, want ErrServer", err)
	}
	f.srv.ExpireTokens()
	f.srv.FailNext(sstest.EndpointToken, 1, 400, `{"error":"invalid_grant","error_description":"password `+svcPass+` refused"}`)
	_, err = c.Read(ctx, id, "")
	f.leaks.err(err)
	bad := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.Password = secret.New("Nope-Pw-0000") })
	_, err = bad.Resolve(ctx, "web")
	f.leaks.err(err)
	ntlm := f.client(t, secretserver.AuthNTLM, func(c *secretserver.Config) { c.Password = secret.New("Nope-Win-0000") })
	_, err = ntlm.Read(ctx, id, "")
	f.leaks.err(err)
	if _, err := c.Generate(ctx, s); err != nil {
		t.Fatal(err)
	}
	f.leaks.check(t, append(f.srv.Tokens(), svcPass, winPass, rootPass, newPw, "Nope-Pw-0000", "Nope-Win-0000", f.srv.Field(id, "password"))...)
	if len(f.leaks.errs) < 5 || f.leaks.logs.Len() == 0 {
		t.Fatalf("the test saw %d errors and %d bytes of logs; it checks nothing", len(f.leaks.errs), f.leaks.logs.Len())
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  secretserver.Config
	}{
		{"HTTP", secretserver.Config{URL: "http://ss.example/SecretServer", Username: "u", Password: secret.New("p")}},
		{"NoUser", secretserver.Config{URL: "https://ss.example/SecretServer", Password: secret.New("p")}},
		{"NoPassword", secretserver.Config{URL: "https://ss.example/SecretServer", Username: "u"}},
		{"BadAuth", secretserver.Config{URL: "https://ss.example/", Auth: "kerberos", Username: "u", Password: secret.New("p")}},
		{"CredentialsInURL", secretserver.Config{URL: "https://u:p@ss.example/", Username: "u", Password: secret.New("p")}},
		{"BadCA", secretserver.Config{URL: "https://ss.example/", Username: "u", Password: secret.New("p"), CAPEM: []byte("junk")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := secretserver.New(tc.cfg, nil); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestTLSVerified(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.CAPEM = nil; c.MaxRetries = 0 })
	err := c.Authenticate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted server certificate: err = %v", err)
	}
	if n := f.srv.Calls(sstest.EndpointToken); n != 0 {
		t.Errorf("the password grant reached an untrusted server %d times", n)
	}
}

func BenchmarkRotationAPI(b *testing.B) {
	for _, auth := range []string{secretserver.AuthOAuth2, secretserver.AuthNTLM} {
		b.Run(auth, func(b *testing.B) {
			f := newFixture(b)
			f.addRoot("web", "", "web01")
			c := f.client(b, auth, nil)
			ctx := context.Background()
			for b.Loop() {
				id, err := c.Resolve(ctx, "web")
				if err != nil {
					b.Fatal(err)
				}
				s, err := c.Read(ctx, id, "")
				if err != nil {
					b.Fatal(err)
				}
				pw, err := c.Generate(ctx, s)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Write(ctx, s, pw, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(f.srv.Requests())/float64(b.N), "requests/op")
		})
	}
}
