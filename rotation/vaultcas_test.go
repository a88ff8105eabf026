package rotation_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
)

// TestHumanEditBetweenWriteAttemptsIsNotOverwritten: Secret Server applies
// the rotation's PUT but answers 503 (or the connection breaks); a human
// sets the password before the client's retry. The retry must not
// overwrite the edit: the rotation ends rolled back, every host holds the
// old password again, and Secret Server keeps the human's value.
func TestHumanEditBetweenWriteAttemptsIsNotOverwritten(t *testing.T) {
	const humanPw = "Set-By-A-Human-1"
	for _, tc := range []struct {
		name   string
		inject func(*sstest.Server)
	}{
		{"503AfterApplying", func(s *sstest.Server) {
			s.FailNextAfterApply(sstest.EndpointPutField, 1, 503, `{"message":"The service is unavailable."}`)
		}},
		{"ConnectionBrokeAfterApplying", func(s *sstest.Server) { s.DropNextAfterApply(sstest.EndpointPutField, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ss *ssVault
			waits := 0
			ss = newSSVault(t, "web01, web02", func(c *secretserver.Config) {
				// The client's wait before its retry: the human edits then.
				c.Sleep = func(ctx context.Context, d time.Duration) error {
					if waits++; waits == 1 {
						ss.srv.SetField(ss.id, "password", humanPw)
					}
					return ctx.Err()
				}
			})
			fleet := newDNSFleet(oldPw, "web01:22", "web02:22")
			journal := newMemJournal()
			e := newEngine(t, testConfig(func(c *rotation.Config) { c.RetryBase = time.Millisecond; c.Generator = rotation.GeneratorLocal }), rotation.Deps{Vault: ss.vault, Hosts: fleet, Store: journal})
			tc.inject(ss.srv)
			res := e.Rotate(context.Background(), rotation.SecretSpec{Name: "prod-root"}, rotation.RotateOptions{})
			if !errors.Is(res.Err, rotation.ErrSecretChanged) || res.State != rotation.StateRolledBack {
				t.Fatalf("rotate: %s: %v; want rolled-back with ErrSecretChanged", res.State, res.Err)
			}
			if waits != 1 {
				t.Errorf("the client waited %d times before retrying, want 1", waits)
			}
			if n := ss.srv.Calls(sstest.EndpointPutField); n != 1 {
				t.Errorf("password PUTs = %d, want 1 (none after the human's edit)", n)
			}
			if got := ss.srv.Field(ss.id, "password"); got != humanPw {
				t.Errorf("Secret Server holds %s, want the human's value", redact(got))
			}
			for _, ep := range []string{"web01:22", "web02:22"} {
				if got := fleet.pw(ep); got != oldPw {
					t.Errorf("%s holds %s, want the old password (reverted)", ep, redact(got))
				}
			}
		})
	}
}
