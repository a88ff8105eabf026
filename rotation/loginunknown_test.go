package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// slowRefusalHosts is a fleet whose host slow takes longer to answer a
// login than the connect timeout: the password went out, the verdict
// never came. err is what its adapter returns for that.
type slowRefusalHosts struct {
	*fakeHosts
	slow string
	err  error

	mu     sync.Mutex
	logins int // logins sent to slow
}

func (s *slowRefusalHosts) Login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	if h.Name == s.slow {
		s.mu.Lock()
		s.logins++
		s.mu.Unlock()
		return nil, fmt.Errorf("login %s as %s: %w", h, user, s.err)
	}
	return s.fakeHosts.Login(ctx, h, user, pw)
}

// TestLoginUnknownIsNotRetried: a login whose password was sent but whose
// answer never came may have been refused; the engine must not send the
// password again (host_retries is for connections that never got that
// far), also when the adapter says the connection failed as well.
func TestLoginUnknownIsNotRetried(t *testing.T) {
	for name, err := range map[string]error{
		"Unknown":            rotation.ErrLoginUnknown,
		"UnknownAndTimedOut": fmt.Errorf("%w (%w: %w)", rotation.ErrLoginUnknown, rotation.ErrUnreachable, context.DeadlineExceeded),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 3, func(c *rotation.Config) { c.HostRetries = 5 })
			hosts := &slowRefusalHosts{fakeHosts: f.hosts, slow: "h01", err: err}
			f.engine = newEngine(t, testConfig(func(c *rotation.Config) {
				c.RetryBase = 1
				c.Concurrency = 4
				c.HostRetries = 5
				c.Generator = rotation.GeneratorServer
			}), rotation.Deps{Vault: f.vault, Hosts: hosts, Store: f.journal})
			res := f.engine.Rotate(context.Background(), spec, rotation.RotateOptions{})
			if res.Err == nil || !errors.Is(res.Err, rotation.ErrLoginUnknown) {
				t.Fatalf("rotate: %v; want the unknown login outcome", res.Err)
			}
			if hosts.logins != 1 {
				t.Fatalf("the password was sent %d times to the slow host, want once", hosts.logins)
			}
			f.assertAll(t, oldPw)
		})
	}
}
