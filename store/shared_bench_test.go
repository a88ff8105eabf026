package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// BenchmarkSharedJournal: 300 secrets fall due at once and 1 or 3
// instances (stores of their own on one database) serve them, each with 4
// rotations at a time, as rotord run does on a shared journal: take the
// lease, claim the slot, journal the rotation through its states (two
// hosts), record the next due time, release; a lease another instance
// holds leaves the secret to it. Only the journal's side is
// measured (no host, no vault): rotations per second, and journal
// transactions per rotation — the store's calls, losing claims and lease
// conflicts of the other instances included. On SQLite and PostgreSQL
// (a throwaway cluster with fsync off; SQLite syncs every commit).
func BenchmarkSharedJournal(b *testing.B) {
	const secrets, workers = 300, 4
	for _, bk := range []backend{sqliteBackend, postgresBackend} {
		for _, instances := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/instances=%d", bk.name, instances), func(b *testing.B) {
				ctx := context.Background()
				first, loc := bk.mustOpen(b)
				key := mustKey(b)
				_ = first.Close()
				dbs := make([]*store.DB, instances)
				for i := range dbs {
					db, err := bk.open(ctx, loc, store.NewKeyring(key))
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { _ = db.Close() })
					dbs[i] = db
				}
				names := make([]string, secrets)
				for i := range names {
					names[i] = fmt.Sprintf("secret-%03d", i)
				}
				var rotations, calls atomic.Int64
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					due := time.Now()
					for _, n := range names {
						if err := dbs[0].SetNextDue(ctx, n, due); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					var wg sync.WaitGroup
					for i, db := range dbs {
						work := make(chan string)
						for w := range workers {
							wg.Add(1)
							go func() {
								defer wg.Done()
								holder := fmt.Sprintf("instance-%d/%d", i, w)
								for name := range work {
									n, ok, err := sharedRotation(ctx, db, name, holder)
									calls.Add(int64(n))
									if err != nil {
										b.Error(err)
									}
									if ok {
										rotations.Add(1)
									}
								}
							}()
						}
						wg.Add(1)
						go func() {
							defer wg.Done()
							for _, n := range names {
								work <- n
							}
							close(work)
						}()
					}
					wg.Wait()
				}
				b.StopTimer()
				if got := rotations.Load(); got != int64(secrets*b.N) {
					b.Fatalf("%d rotations for %d slots", got, secrets*b.N)
				}
				b.ReportMetric(float64(rotations.Load())/b.Elapsed().Seconds(), "rotations/s")
				b.ReportMetric(float64(calls.Load())/float64(rotations.Load()), "tx/rotation")
			})
		}
	}
}

// sharedRotation is the journal's side of one instance's scheduled
// rotation of a due secret; it returns the store calls made and whether
// this instance rotated the slot (another did, else).
func sharedRotation(ctx context.Context, db *store.DB, name, holder string) (calls int, rotated bool, err error) {
	const ttl = time.Minute
	calls++
	gen, err := db.Acquire(ctx, name, holder, ttl)
	var held *rotation.LeaseHeldError
	if errors.As(err, &held) {
		return calls, false, nil // another instance has it: the slot is its
	}
	if err != nil {
		return calls, false, err
	}
	defer func() {
		calls++
		if rerr := db.Release(ctx, name, holder); err == nil {
			err = rerr
		}
	}()
	calls++
	_, ok, err := db.ClaimSlot(ctx, name, holder, time.Now())
	if err != nil || !ok {
		return calls, false, err
	}
	r := sampleRotation(name)
	r.Hosts, r.Generation = r.Hosts[:2], gen
	calls++
	id, err := db.Begin(ctx, r)
	if err != nil {
		return calls, false, err
	}
	steps := []func() error{
		func() error { return db.SetState(ctx, id, gen, rotation.StateHostsChanging, "") },
	}
	for _, h := range r.Hosts {
		for _, st := range []rotation.HostState{rotation.HostChanging, rotation.HostChanged} {
			steps = append(steps, func() error { return db.SetHost(ctx, id, gen, rotation.HostRecord{Host: h.Host, State: st}) })
		}
	}
	steps = append(steps,
		func() error { return db.SetState(ctx, id, gen, rotation.StateCommitting, "") },
		func() error { return db.SetState(ctx, id, gen, rotation.StateCommitted, "") },
		func() error { return db.SetNextDue(ctx, name, time.Now().Add(time.Hour)) },
	)
	for _, step := range steps {
		calls++
		if err := step(); err != nil {
			return calls, false, err
		}
	}
	return calls, true, nil
}
