package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
)

// BenchmarkSharedEngine: 300 secrets (two hosts each) fall due at once and
// 1 or 3 instances serve them through the real engine (rotation.New) on
// one journal, as rotord run does on a shared journal: each instance takes
// a due secret's lease, claims the slot (store.DB.ClaimSlot), rotates it
// (engine.Rotate: settle, read, pre-flight, journal, change, verify, vault
// write, commit) and records the next due time; a slot another instance
// holds or served is left to it. The hosts and the vault are in-process
// fakes, so the journal is what is measured: rotations per second and
// database round trips per rotation (statements, BEGIN and COMMIT of every
// instance, losing claims included), on SQLite and PostgreSQL (a throwaway
// cluster with fsync off; SQLite syncs every commit). The table at the end
// puts them side by side.
func BenchmarkSharedEngine(b *testing.B) {
	const secrets, workers = 300, 4
	type row struct {
		name       string
		perSec, rt float64
	}
	var table []row
	for _, bk := range []backend{sqliteBackend, postgresBackend} {
		for _, instances := range []int{1, 3} {
			name := fmt.Sprintf("%s/instances=%d", bk.name, instances)
			var last row
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				first, loc := bk.mustOpen(b)
				key := mustKey(b)
				_ = first.Close()
				vault, hosts := newBenchVault(), newBenchHosts()
				names := make([]string, secrets)
				for i := range names {
					names[i] = fmt.Sprintf("secret-%03d", i)
					hs := []rotation.Host{{Name: fmt.Sprintf("h%03d-a", i)}, {Name: fmt.Sprintf("h%03d-b", i)}}
					pw := secret.New("Initial-Pw-" + names[i])
					vault.add(names[i], "root", pw, hs)
					for _, h := range hs {
						hosts.set(h.Name, "root", pw)
					}
				}
				var trips, rotations atomic.Int64
				dbs := make([]*store.DB, instances)
				engines := make([]*rotation.Engine, instances)
				for i := range dbs {
					db, err := bk.open(ctx, loc, store.NewKeyring(key))
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { _ = db.Close() })
					db.CountRoundTrips(&trips)
					dbs[i] = db
					cfg := rotation.DefaultConfig()
					cfg.Holder = fmt.Sprintf("instance-%d", i)
					cfg.Generator = rotation.GeneratorLocal
					cfg.LeaseTTL = time.Minute
					if engines[i], err = rotation.New(cfg, rotation.Deps{Vault: vault, Hosts: hosts, Store: db}); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					due := time.Now()
					for _, n := range names {
						if err := dbs[0].SetNextDue(ctx, n, due); err != nil {
							b.Fatal(err)
						}
					}
					trips.Store(0)
					b.StartTimer()
					var wg sync.WaitGroup
					for i := range dbs {
						work := make(chan string)
						for range workers {
							wg.Add(1)
							go func() {
								defer wg.Done()
								for name := range work {
									ok, err := engineSlot(ctx, dbs[i], engines[i], fmt.Sprintf("instance-%d", i), name)
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
							// Each instance walks the due secrets from its
							// own place, as their timers fire in any order.
							for k := range names {
								work <- names[(k+i*secrets/instances)%secrets]
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
				if w := vault.writes.Load(); w != int64(secrets*b.N) {
					b.Fatalf("%d vault writes for %d slots", w, secrets*b.N)
				}
				last = row{name: name, perSec: float64(rotations.Load()) / b.Elapsed().Seconds(),
					rt: float64(trips.Load()) / float64(secrets)}
				b.ReportMetric(last.perSec, "rotations/s")
				b.ReportMetric(last.rt, "roundtrips/rotation")
			})
			table = append(table, last)
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n%-22s %12s %20s\n", "journal/instances", "rotations/s", "round trips/rotation")
	for _, r := range table {
		fmt.Fprintf(&t, "%-22s %12.1f %20.1f\n", r.name, r.perSec, r.rt)
	}
	// A parent benchmark's log is not shown; the table goes with the results.
	fmt.Print(t.String())
}

// engineSlot is one instance's scheduled rotation of a due secret on a
// shared journal: the lease, the slot's claim, the engine's rotation and
// the next due time. It reports whether this instance rotated the slot.
func engineSlot(ctx context.Context, db *store.DB, e *rotation.Engine, holder, name string) (bool, error) {
	_, err := db.Acquire(ctx, name, holder, time.Minute)
	var held *rotation.LeaseHeldError
	if errors.As(err, &held) {
		return false, nil // another instance has it: the slot is its
	}
	if err != nil {
		return false, err
	}
	_, ok, err := db.ClaimSlot(ctx, name, holder, time.Now())
	if err != nil || !ok {
		if rerr := db.Release(ctx, name, holder); err == nil {
			err = rerr
		}
		return false, err
	}
	res := e.Rotate(ctx, rotation.SecretSpec{Name: name}, rotation.RotateOptions{Actor: "bench"})
	if res.Err != nil || res.State != rotation.StateCommitted {
		return false, fmt.Errorf("rotation of %s: %s: %v", name, res.State, res.Err)
	}
	return true, db.SetNextDue(ctx, name, time.Now().Add(time.Hour))
}

// benchVault is an in-process vault: secrets by id, writes counted.
type benchVault struct {
	mu      sync.Mutex
	byName  map[string]int
	secrets map[int]rotation.Secret
	writes  atomic.Int64
}

func newBenchVault() *benchVault {
	return &benchVault{byName: map[string]int{}, secrets: map[int]rotation.Secret{}}
}

func (v *benchVault) add(name, user string, pw secret.Value, hosts []rotation.Host) {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := len(v.secrets) + 1
	v.byName[strings.ToLower(name)] = id
	v.secrets[id] = rotation.Secret{ID: id, Name: name, Username: user, Password: pw, Hosts: hosts,
		PasswordSlug: "password", HostsField: "notes"}
}

func (v *benchVault) Resolve(_ context.Context, name string) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	id, ok := v.byName[strings.ToLower(name)]
	if !ok {
		return 0, rotation.ErrSecretNotFound
	}
	return id, nil
}

func (v *benchVault) Read(_ context.Context, id int, _ string) (rotation.Secret, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.secrets[id]
	if !ok {
		return rotation.Secret{}, rotation.ErrSecretNotFound
	}
	return s, nil
}

func (v *benchVault) Generate(context.Context, rotation.Secret) (secret.Value, error) {
	return benchPassword(), nil
}

func (v *benchVault) Write(_ context.Context, s rotation.Secret, pw secret.Value, _ string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	cur := v.secrets[s.ID]
	if !cur.Password.Equal(s.Password) {
		return rotation.ErrSecretChanged
	}
	cur.Password = pw
	v.secrets[s.ID] = cur
	v.writes.Add(1)
	return nil
}

func benchPassword() secret.Value {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return secret.New("Bn-" + hex.EncodeToString(b[:]) + "!")
}

// benchHosts are in-process hosts: a password per host and user.
type benchHosts struct {
	mu  sync.Mutex
	pws map[string]secret.Value // "host user"
}

func newBenchHosts() *benchHosts { return &benchHosts{pws: map[string]secret.Value{}} }

func (h *benchHosts) set(host, user string, pw secret.Value) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pws[host+" "+user] = pw
}

func (h *benchHosts) Login(_ context.Context, host rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur, ok := h.pws[host.Name+" "+user]; !ok || !cur.Equal(pw) {
		return nil, rotation.ErrAuthFailed
	}
	return &benchSession{hosts: h, key: host.Name + " " + user}, nil
}

type benchSession struct {
	hosts *benchHosts
	key   string
}

func (s *benchSession) Check(context.Context) error { return nil }

func (s *benchSession) ChangePassword(_ context.Context, old, pw secret.Value) rotation.Outcome {
	s.hosts.mu.Lock()
	defer s.hosts.mu.Unlock()
	if !s.hosts.pws[s.key].Equal(old) {
		return rotation.Outcome{Kind: rotation.OutcomeWrongCurrent}
	}
	s.hosts.pws[s.key] = pw
	return rotation.Outcome{Kind: rotation.OutcomeChanged}
}

func (s *benchSession) SetPassword(_ context.Context, user string, pw secret.Value) rotation.Outcome {
	s.hosts.set(strings.Fields(s.key)[0], user, pw)
	return rotation.Outcome{Kind: rotation.OutcomeChanged}
}

func (s *benchSession) Close() error { return nil }
