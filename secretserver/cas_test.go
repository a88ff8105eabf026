package secretserver_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
)

// sleeps records the waits a client asks for and runs a hook during each,
// in place of a timer: tests assert the wait requested, never sleep.
type sleeps struct {
	mu     sync.Mutex
	waits  []time.Duration
	during func(n int) // called during wait number n (1-based)
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	n, hook := len(s.waits), s.during
	s.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// TestWriteRetryIsCompareAndSwap: after a PUT whose outcome is unknown, the
// client reads the secret again before it repeats the PUT, and a human's
// edit made in between is never overwritten.
func TestWriteRetryIsCompareAndSwap(t *testing.T) {
	const (
		newPw   = "Rotated-Pw-7731!"
		humanPw = "Set-By-A-Human-1"
	)
	failures := []struct {
		name    string
		applied bool // the failed PUT took effect
		inject  func(srv *sstest.Server)
	}{
		{"503AfterApplying", true, func(srv *sstest.Server) {
			srv.FailNextAfterApply(sstest.EndpointPutField, 1, 503, `{"message":"The service is unavailable."}`)
		}},
		{"503NotApplied", false, func(srv *sstest.Server) {
			srv.FailNext(sstest.EndpointPutField, 1, 503, `{"message":"The service is unavailable."}`)
		}},
		{"ConnectionBrokeAfterApplying", true, func(srv *sstest.Server) {
			srv.DropNextAfterApply(sstest.EndpointPutField, 1)
		}},
		{"RateLimited", false, func(srv *sstest.Server) {
			srv.FailNext(sstest.EndpointPutField, 1, 429, `{"message":"Too many requests"}`)
		}},
	}
	edits := []struct {
		name  string
		slug  string
		value string
	}{
		{"Password", "password", humanPw},
		{"Username", "username", "admin"},
		{"Hosts", "notes", "web01, web09"},
	}
	for _, fl := range failures {
		for _, ed := range edits {
			t.Run(fl.name+"/HumanEdits"+ed.name, func(t *testing.T) {
				ctx := context.Background()
				f := newFixture(t)
				id := f.addRoot("web", "", "web01")
				sl := &sleeps{}
				c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.Sleep = sl.sleep })
				s, err := c.Read(ctx, id, "")
				if err != nil {
					t.Fatal(err)
				}
				fl.inject(f.srv)
				// The human edits the secret while the client waits to retry.
				sl.during = func(int) { f.srv.SetField(id, ed.slug, ed.value) }
				f.srv.ResetCalls()
				err = c.Write(ctx, s, secret.New(newPw), "")
				if fl.applied && ed.slug != "password" {
					// The password landed before the edit of another
					// field: nothing of the human's was overwritten.
					if err != nil || f.srv.Field(id, "password") != newPw {
						t.Fatalf("err = %v, want the write that landed to count", err)
					}
				} else if !errors.Is(err, rotation.ErrSecretChanged) {
					t.Fatalf("err = %v, want ErrSecretChanged", err)
				}
				if n := f.srv.Calls(sstest.EndpointPutField); n != 1 {
					t.Errorf("PUTs = %d, want 1 (none after the edit)", n)
				}
				if got := f.srv.Field(id, ed.slug); got != ed.value {
					t.Errorf("field %s holds %q, want the human's %q", ed.slug, got, ed.value)
				}
				f.leaks.err(err)
				f.leaks.check(t, newPw, rootPass, humanPw)
			})
		}
		t.Run(fl.name+"/NoEdit", func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			id := f.addRoot("web", "", "web01")
			sl := &sleeps{}
			c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) { c.Sleep = sl.sleep })
			s, err := c.Read(ctx, id, "")
			if err != nil {
				t.Fatal(err)
			}
			fl.inject(f.srv)
			f.srv.ResetCalls()
			if err := c.Write(ctx, s, secret.New(newPw), ""); err != nil {
				t.Fatalf("write: %v", err)
			}
			if got := f.srv.Field(id, "password"); got != newPw {
				t.Errorf("server holds %q", got)
			}
			// The check re-reads the secret; a PUT that landed is not repeated.
			wantPuts := 2
			if fl.applied {
				wantPuts = 1
			}
			if p, g := f.srv.Calls(sstest.EndpointPutField), f.srv.Calls(sstest.EndpointGetSecret); p != wantPuts || g != 1 {
				t.Errorf("PUTs %d secret GETs %d, want %d and 1", p, g, wantPuts)
			}
		})
	}
}

// TestWriteHonoursRetryAfter: a rate-limited or unavailable PUT is retried
// after the wait the server names (seconds or an HTTP date), capped by
// RetryMaxDelay, and not at all when the wait would outlast the deadline.
func TestWriteHonoursRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		deadline   time.Duration // 0: none
		want       []time.Duration
		wantErr    error
	}{
		{"Seconds429", 429, "7", 0, []time.Duration{7 * time.Second}, nil},
		{"Seconds503", 503, "3", 0, []time.Duration{3 * time.Second}, nil},
		{"HTTPDate", 429, now.Add(12 * time.Second).Format(http.TimeFormat), 0, []time.Duration{12 * time.Second}, nil},
		{"CappedByRetryMaxDelay", 429, "3600", 0, []time.Duration{20 * time.Second}, nil},
		{"BeyondTheDeadline", 429, "15", 10 * time.Second, nil, rotation.ErrVaultUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			f := newFixture(t)
			id := f.addRoot("web", "", "web01")
			sl := &sleeps{}
			c := f.client(t, secretserver.AuthOAuth2, func(c *secretserver.Config) {
				c.Sleep = sl.sleep
				c.Now = func() time.Time { return now }
				c.RetryMaxDelay = 20 * time.Second
				c.RetryBaseDelay = time.Millisecond
			})
			s, err := c.Read(ctx, id, "")
			if err != nil {
				t.Fatal(err)
			}
			f.srv.FailNextWithHeader(sstest.EndpointPutField, 1, tc.status, "", http.Header{"Retry-After": {tc.retryAfter}})
			err = c.Write(ctx, s, secret.New("Rotated-Pw-9902!"), "")
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			// A refusal is the server's rate limit, as it answered it.
			if ae := (*secretserver.APIError)(nil); tc.wantErr != nil && (!errors.As(err, &ae) || ae.Status != tc.status) {
				t.Fatalf("err = %v, want the server's %d", err, tc.status)
			}
			got := sl.got()
			if len(got) != len(tc.want) {
				t.Fatalf("waits %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("wait %d = %v, want %v", i+1, got[i], tc.want[i])
				}
			}
			wantPuts := 1 + len(tc.want)
			if n := f.srv.Calls(sstest.EndpointPutField); n != wantPuts {
				t.Errorf("PUTs = %d, want %d", n, wantPuts)
			}
		})
	}
}
