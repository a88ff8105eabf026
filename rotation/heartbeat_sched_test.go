package rotation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

type hbCall struct {
	at     time.Time
	before rotation.HeartbeatState
	state  rotation.HeartbeatState
}

// TestHeartbeatSchedulerSlots: on the injected clock, a secret with a
// heartbeat schedule is checked at each slot (not at start), a secret with
// "off" never, the state before each check is the last one found, a check
// the rotation scheduler's claim refuses waits for the next slot, and a
// held lease records nothing.
func TestHeartbeatSchedulerSlots(t *testing.T) {
	clk := newFakeClock(t0)
	results := make(chan rotation.HeartbeatResult, 10)
	calls := make(chan hbCall, 10)
	claimOK := make(chan bool, 10)
	h, err := rotation.NewHeartbeatScheduler(rotation.HeartbeatSchedulerConfig{
		HeartbeatPlan: rotation.HeartbeatPlan{
			Secrets: []rotation.ScheduledSecret{
				{Spec: rotation.SecretSpec{Name: "web"}},
				{Spec: rotation.SecretSpec{Name: "db"}, Schedule: "off"},
			},
			DefaultSchedule: "@every 1m",
		},
		Check: func(_ context.Context, spec rotation.SecretSpec) rotation.HeartbeatResult {
			if spec.Name != "web" {
				t.Errorf("checked %q", spec.Name)
			}
			return <-results
		},
		Claim: func(string) (func(), bool) {
			if !<-claimOK {
				return nil, false
			}
			return func() {}, true
		},
		OnResult: func(_ rotation.SecretSpec, before rotation.HeartbeatState, r rotation.HeartbeatResult) {
			calls <- hbCall{at: clk.Now(), before: before, state: r.State()}
		},
		Clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if d := clk.idle(t); d != time.Minute {
		t.Fatalf("first sleep %s, want 1m (no check at start)", d)
	}
	drift := rotation.HeartbeatResult{Secret: "web", Err: fmt.Errorf("%w: refused by h1", rotation.ErrDrift)}
	steps := []struct {
		claim  bool
		result rotation.HeartbeatResult
		want   *hbCall
	}{
		{true, rotation.HeartbeatResult{Secret: "web"}, &hbCall{before: "", state: rotation.HeartbeatOK}},
		{true, drift, &hbCall{before: rotation.HeartbeatOK, state: rotation.HeartbeatDrift}},
		{false, rotation.HeartbeatResult{}, nil}, // being rotated: skipped
		{true, rotation.HeartbeatResult{Secret: "web", Err: &rotation.LeaseHeldError{Holder: "other"}}, nil},
		{true, rotation.HeartbeatResult{Secret: "web", Err: fmt.Errorf("%w: h1", rotation.ErrUnreachable)}, &hbCall{before: rotation.HeartbeatDrift, state: rotation.HeartbeatUnreachable}},
		{true, rotation.HeartbeatResult{Secret: "web"}, &hbCall{before: rotation.HeartbeatUnreachable, state: rotation.HeartbeatOK}},
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i+1) * time.Minute)
		claimOK <- s.claim
		if s.claim {
			results <- s.result
		}
		clk.Set(now)
		if d := clk.idle(t); d != time.Minute {
			t.Fatalf("step %d: sleeps %s after the check, want 1m", i, d)
		}
		if s.want == nil {
			select {
			case c := <-calls:
				t.Fatalf("step %d: recorded %+v, want nothing", i, c)
			default:
			}
			continue
		}
		var c hbCall
		select {
		case c = <-calls:
		case <-time.After(10 * time.Second): // a hang, not a timing assertion
			t.Fatalf("step %d: no result recorded", i)
		}
		s.want.at = now
		if c != *s.want {
			t.Fatalf("step %d: %+v, want %+v", i, c, *s.want)
		}
	}
}

func TestHeartbeatState(t *testing.T) {
	for _, c := range []struct {
		err  error
		want rotation.HeartbeatState
	}{
		{nil, rotation.HeartbeatOK},
		{fmt.Errorf("%w: x", rotation.ErrDrift), rotation.HeartbeatDrift},
		{rotation.ErrRefusedBefore, rotation.HeartbeatFailed}, // classified by Heartbeat into ErrDrift; alone it is not drift
		{fmt.Errorf("%w: x", rotation.ErrUnreachable), rotation.HeartbeatUnreachable},
		{fmt.Errorf("%w: x", rotation.ErrVaultUnavailable), rotation.HeartbeatUnreachable},
		{fmt.Errorf("%w: x", rotation.ErrHostKey), rotation.HeartbeatFailed},
	} {
		if got := (rotation.HeartbeatResult{Err: c.err}).State(); got != c.want {
			t.Errorf("State of %v = %s, want %s", c.err, got, c.want)
		}
	}
}
