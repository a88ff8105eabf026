package rotation_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// renewFaults wraps the journal's leases: renew decides what each renewal
// (numbered from 1) answers.
type renewFaults struct {
	*memJournal
	mu    sync.Mutex
	calls int
	renew func(n int) error
}

func (l *renewFaults) Renew(ctx context.Context, name, holder string, ttl time.Duration) error {
	l.mu.Lock()
	l.calls++
	n := l.calls
	l.mu.Unlock()
	if err := l.renew(n); err != nil {
		return err
	}
	return l.memJournal.Renew(ctx, name, holder, ttl)
}

func (l *renewFaults) renewals() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// signalHandler closes lost when the engine logs that it lost its lease.
type signalHandler struct {
	once sync.Once
	lost chan struct{}
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelError && strings.HasPrefix(r.Message, "lease lost") {
		h.once.Do(func() { close(h.lost) })
	}
	return nil
}
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *signalHandler) WithGroup(string) slog.Handler      { return h }

// A rotation whose lease is lost in the middle of the fan-out starts no
// further host and puts back the hosts it changed: another process may
// hold the secret now. The lease is lost either because another holder
// took it, or because renewals kept failing and it would expire.
func TestLeaseLostMidFanOut(t *testing.T) {
	heldElsewhere := &rotation.LeaseHeldError{Secret: spec.Name, Holder: "other-host/4242/ab12"}
	for _, tc := range []struct {
		name  string
		renew func(n int) error
	}{
		{"TakenOver", func(int) error { return heldElsewhere }},
		{"RenewalKeepsFailing", func(int) error { return errors.New("database is locked") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 4, nil)
			leases := &renewFaults{memJournal: f.journal, renew: tc.renew}
			logs := &signalHandler{lost: make(chan struct{})}
			e := rotation.New(rotation.Config{RetryBase: time.Millisecond, Concurrency: 1, Generator: rotation.GeneratorServer,
				LeaseTTL: 300 * time.Millisecond}, f.vault, f.hosts, f.journal, leases, f.journal, slog.New(logs))
			// The canary h00 changes; h01 is in passwd when the lease goes.
			changed := map[string]bool{}
			var mu sync.Mutex
			for _, n := range f.names {
				f.hosts.hosts[n].onChange = func() {
					mu.Lock()
					changed[n] = true
					mu.Unlock()
					if n != "h01" {
						return
					}
					select {
					case <-logs.lost:
					case <-time.After(30 * time.Second):
						t.Error("the engine never gave its lease up") // a hang guard, not a speed target
					}
				}
			}
			res := e.Rotate(context.Background(), spec, rotation.RotateOptions{})
			if res.State != rotation.StateRolledBack || res.Err == nil || !strings.Contains(res.Err.Error(), "lease lost") {
				t.Fatalf("state %s err %v, want rolled back because the lease was lost", res.State, res.Err)
			}
			f.assertAll(t, oldPw)
			if changed["h02"] || changed["h03"] {
				t.Errorf("hosts started after the lease was lost: %v", changed)
			}
			if tc.name == "RenewalKeepsFailing" {
				// Renewals every TTL/3: giving up after the second failure
				// (or earlier, at half the TTL) is before the lease expires.
				if n := leases.renewals(); n > 2 {
					t.Errorf("%d renewals failed before the rotation gave up, want at most 2", n)
				}
			}
		})
	}
}
