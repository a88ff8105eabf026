package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// stepClock is a rotation.Clock moved by hand; each timer armed is
// reported on armed, so a test knows when the daemon is idle.
type stepClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []stepWaiter
	armed   chan time.Duration
}

type stepWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, stepWaiter{at: c.now.Add(d), ch: ch})
	}
	c.mu.Unlock()
	c.armed <- d
	return ch
}

// Set moves the clock to t and fires the timers due by then.
func (c *stepClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

// sweepEngine reports each sweep of unfinished rotations and whether it
// could claim the secret.
type sweepEngine struct {
	*fakeEngine
	swept chan bool
}

func (e *sweepEngine) RecoverUnfinished(_ context.Context, _ string, claim func(string) (func(), bool)) []rotation.Result {
	release, ok := claim("web")
	if ok {
		release()
	}
	e.swept <- ok
	if !ok {
		return nil
	}
	return []rotation.Result{{Secret: "web", RotationID: 9, Kind: rotation.KindRotate, State: rotation.StateCommitted}}
}

// TestRunOnInjectedClock: the daemon's catch-up, exactly-once check and
// sweep of abandoned rotations run on its injected clock. web's due time
// passed while the daemon was down, but the journal holds a committed
// rotation started since (recovery finished it): no rotation, next slot
// due. Without sleeping, one lease_ttl later on the clock the daemon
// sweeps for rotations another process left unfinished.
func TestRunOnInjectedClock(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC) // a Wednesday
	body := strings.Replace(threeSecrets, "secrets:\n", "schedule: \"@daily\"\njitter: 0s\nmetrics:\n  listen: \"\"\nsecrets:\n", 1)
	body = strings.Replace(body, "  - name: mail\n  - name: db\n", "", 1)
	body = strings.Replace(body, "  - name: db\n  - name: mail\n", "", 1)
	e := &sweepEngine{fakeEngine: &fakeEngine{rotated: make(chan string, 10)}, swept: make(chan bool, 10)}
	svc := services4(e)
	state := &mapState{due: map[string]time.Time{"web": t0.Add(-time.Hour)}}
	svc.state = state
	svc.journal = &fakeJournal{rotations: []rotation.Rotation{
		{ID: 9, Secret: "web", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: t0.Add(-30 * time.Minute)},
	}}
	ta := newTestApp(t, body, svc)
	clk := &stepClock{now: t0, armed: make(chan time.Duration, 100)}
	ta.clock = clk
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- ta.run(ctx, "run", "--log-level", "debug") }()

	next := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for {
		if d := recv(t, clk.armed); d <= 0 {
			continue
		}
		state.mu.Lock()
		due := state.due["web"]
		state.mu.Unlock()
		if due.Equal(next) {
			break
		}
	}
	clk.Set(t0.Add(2 * time.Minute)) // rotation.lease_ttl's default
	if !recv(t, e.swept) {
		t.Fatal("the sweep could not claim web, which nothing rotates")
	}
	stop()
	if code := recv(t, done); code != exitOK {
		t.Fatalf("run exited %d: %s", code, ta.err)
	}
	if len(e.rotated) != 0 {
		t.Fatalf("web rotated again for a slot already served")
	}
	for _, want := range []string{"rotation already made for this slot; skipped", "recovered rotation"} {
		if !strings.Contains(ta.err.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, ta.err)
		}
	}
}
