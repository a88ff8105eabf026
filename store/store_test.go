package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// mustKey returns a new key, written to a file in dir.
func mustKey(tb testing.TB) store.Key {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "key")
	if err := store.WriteNewKey(path); err != nil {
		tb.Fatal(err)
	}
	k, err := store.LoadKey(path)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// mustOpen opens a fresh database in a temporary directory with a new key.
func mustOpen(tb testing.TB, opts ...store.Option) (*store.DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "rotord.db")
	db, err := store.Open(context.Background(), path, store.NewKeyring(mustKey(tb)), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db, path
}

func sampleRotation(name string) rotation.Rotation {
	return rotation.Rotation{
		Secret:   name,
		SecretID: 42,
		Username: "root",
		Kind:     rotation.KindRotate,
		Old:      secret.New("old-Pa55word!"),
		New:      secret.New("new-Pa55word?"),
		Hosts: []rotation.HostRecord{
			{Host: rotation.Host{Name: "web01"}},
			{Host: rotation.Host{Name: "web02", Port: 2222}},
			{Host: rotation.Host{Name: "2001:db8::1", Port: 22}},
		},
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	db, path := mustOpen(t)
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != store.LatestSchemaVersion() || v < 2 {
		t.Errorf("schema version %d, want %d", v, store.LatestSchemaVersion())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("database mode %#o, want 0600", perm)
	}
	if _, err := db.Begin(ctx, sampleRotation("web")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path + "-wal", path + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode %#o, want 0600", filepath.Base(f), perm)
		}
	}
	if _, err := store.Open(ctx, filepath.Join(t.TempDir(), "a?b.db"), nil); err == nil {
		t.Error("a path with '?' was accepted")
	}
	if _, err := store.Open(ctx, filepath.Join(t.TempDir(), "no", "such", "dir.db"), nil); err == nil {
		t.Error("a path in a missing directory was accepted")
	}
}

func TestJournal(t *testing.T) { eachBackend(t, testJournal) }

func testJournal(t *testing.T, b backend) {
	ctx := context.Background()
	clk := newClock()
	db, _ := b.mustOpen(t, store.WithNow(clk.Now))

	r := sampleRotation("prod-web-root")
	id, err := db.Begin(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id || got.Secret != r.Secret || got.SecretID != 42 || got.Username != "root" ||
		got.Kind != rotation.KindRotate || got.State != rotation.StatePending {
		t.Errorf("Get = %+v", got)
	}
	if !got.Old.Equal(r.Old) || !got.New.Equal(r.New) {
		t.Error("passwords do not round-trip")
	}
	if !got.Started.Equal(clk.Now()) || !got.Updated.Equal(clk.Now()) {
		t.Errorf("times %v %v, want %v", got.Started, got.Updated, clk.Now())
	}
	if len(got.Hosts) != 3 {
		t.Fatalf("hosts %+v", got.Hosts)
	}
	for i, h := range got.Hosts {
		if h.Host != r.Hosts[i].Host || h.State != rotation.HostPending {
			t.Errorf("host %d = %+v, want %+v pending", i, h, r.Hosts[i].Host)
		}
	}

	clk.Add(time.Minute)
	if err := db.SetState(ctx, id, 0, rotation.StateHostsChanging, ""); err != nil {
		t.Fatal(err)
	}
	h := rotation.HostRecord{Host: rotation.Host{Name: "web02", Port: 2222}, State: rotation.HostChanged, Attempts: 2, Error: "retried"}
	if err := db.SetHost(ctx, id, 0, h); err != nil {
		t.Fatal(err)
	}
	err = db.SetHost(ctx, id, 0, rotation.HostRecord{Host: rotation.Host{Name: "web09"}, State: rotation.HostChanged})
	if !errors.Is(err, rotation.ErrNotFound) {
		t.Errorf("SetHost of an unknown host: %v, want ErrNotFound", err)
	}
	fresh := secret.New("fresh-Pa55word#")
	if err := db.SetNew(ctx, id, 0, fresh); err != nil {
		t.Fatal(err)
	}
	unfinished, err := db.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unfinished) != 1 || unfinished[0].ID != id || !unfinished[0].New.Equal(fresh) || !unfinished[0].Old.Equal(r.Old) {
		t.Errorf("Unfinished = %+v", unfinished)
	}
	if unfinished[0].Hosts[1] != h {
		t.Errorf("host after SetHost = %+v, want %+v", unfinished[0].Hosts[1], h)
	}
	if !unfinished[0].Updated.Equal(clk.Now()) {
		t.Errorf("updated %v, want %v", unfinished[0].Updated, clk.Now())
	}

	if _, err := db.LastCommitted(ctx, r.Secret, 0); !errors.Is(err, rotation.ErrNotFound) {
		t.Errorf("LastCommitted before commit: %v, want ErrNotFound", err)
	}
	if err := db.SetState(ctx, id, 0, rotation.StateCommitted, ""); err != nil {
		t.Fatal(err)
	}
	last, err := db.LastCommitted(ctx, r.Secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	if last.ID != id || !last.New.Equal(fresh) {
		t.Errorf("LastCommitted = %d", last.ID)
	}
	if _, err := db.LastCommitted(ctx, r.Secret, id); !errors.Is(err, rotation.ErrNotFound) {
		t.Errorf("LastCommitted before id: %v, want ErrNotFound", err)
	}
	if u, err := db.Unfinished(ctx); err != nil || len(u) != 0 {
		t.Errorf("Unfinished after commit = %v, %v", u, err)
	}

	t.Run("ErrFinalState", func(t *testing.T) {
		if err := db.SetState(ctx, id, 0, rotation.StateRollingBack, ""); !errors.Is(err, store.ErrFinalState) {
			t.Errorf("SetState out of committed: %v", err)
		}
		if err := db.SetNew(ctx, id, 0, secret.New("x")); !errors.Is(err, store.ErrFinalState) {
			t.Errorf("SetNew on committed: %v", err)
		}
		if err := db.SetHost(ctx, id, 0, h); !errors.Is(err, store.ErrFinalState) {
			t.Errorf("SetHost on committed: %v", err)
		}
		if err := db.SetState(ctx, id, 0, rotation.StateCommitted, ""); err != nil {
			t.Errorf("repeated commit: %v", err)
		}
		got, err := db.Get(ctx, id)
		if err != nil || got.State != rotation.StateCommitted || !got.New.Equal(fresh) {
			t.Errorf("after refused changes: %v %v", got.State, err)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := db.Get(ctx, 999); !errors.Is(err, rotation.ErrNotFound) {
			t.Errorf("Get: %v", err)
		}
		if err := db.SetState(ctx, 999, 0, rotation.StateCommitted, ""); !errors.Is(err, rotation.ErrNotFound) {
			t.Errorf("SetState: %v", err)
		}
		if err := db.SetNew(ctx, 999, 0, secret.New("x")); !errors.Is(err, rotation.ErrNotFound) {
			t.Errorf("SetNew: %v", err)
		}
	})

	t.Run("NeedsReconcile", func(t *testing.T) {
		r2 := sampleRotation("prod-db-root")
		r2.Kind = rotation.KindRollback
		r2.RollbackOf = id
		id2, err := db.Begin(ctx, r2)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.SetState(ctx, id2, 0, rotation.StateNeedsReconcile, "web01 unreachable"); err != nil {
			t.Fatal(err)
		}
		nr, err := db.NeedsReconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nr) != 1 || nr[0].ID != id2 || nr[0].Error != "web01 unreachable" || nr[0].RollbackOf != id ||
			!nr[0].Old.Equal(r2.Old) || !nr[0].New.Equal(r2.New) {
			t.Errorf("NeedsReconcile = %+v", nr)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		for name, mutate := range map[string]func(*rotation.Rotation){
			"empty secret": func(r *rotation.Rotation) { r.Secret = "" },
			"bad kind":     func(r *rotation.Rotation) { r.Kind = "bogus" },
			"empty new":    func(r *rotation.Rotation) { r.New = secret.Value{} },
			"dup host":     func(r *rotation.Rotation) { r.Hosts = append(r.Hosts, r.Hosts[0]) },
			"rollback of":  func(r *rotation.Rotation) { r.Kind = rotation.KindRollback },
		} {
			r := sampleRotation("bad")
			mutate(&r)
			if _, err := db.Begin(ctx, r); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if err := db.SetState(ctx, id, 0, "bogus", ""); err == nil {
			t.Error("unknown state accepted")
		}
		hs, err := db.History(ctx, rotation.HistoryQuery{Secret: "bad"})
		if err != nil || len(hs) != 0 {
			t.Errorf("bad input left rotations: %v %v", hs, err)
		}
	})
}

func TestNoKey(t *testing.T) { eachBackend(t, testNoKey) }

func testNoKey(t *testing.T, b backend) {
	ctx := context.Background()
	_, path := b.mustOpen(t)
	db, err := b.open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Begin(ctx, sampleRotation("s")); !errors.Is(err, store.ErrNoKey) {
		t.Errorf("Begin without key: %v, want ErrNoKey", err)
	}
	if _, err := db.History(ctx, rotation.HistoryQuery{}); err != nil {
		t.Errorf("History without key: %v", err)
	}
}

func TestHistory(t *testing.T) { eachBackend(t, testHistory) }

func testHistory(t *testing.T, b backend) {
	ctx := context.Background()
	db, _ := b.mustOpen(t)
	var ids, webIDs []int64
	for i := range 7 {
		name := "db"
		if i%2 == 0 {
			name = "web"
		}
		id, err := db.Begin(ctx, sampleRotation(name))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if name == "web" {
			webIDs = append(webIDs, id)
		}
	}
	slices.Reverse(ids)
	slices.Reverse(webIDs)

	page := func(q rotation.HistoryQuery) []int64 {
		t.Helper()
		rs, err := db.History(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, r := range rs {
			if !r.Old.IsZero() || !r.New.IsZero() {
				t.Errorf("history of %d carries passwords", r.ID)
			}
			if len(r.Hosts) != 3 || r.Hosts[1].Host.Port != 2222 {
				t.Errorf("history of %d: hosts %+v", r.ID, r.Hosts)
			}
			if q.Secret != "" && r.Secret != q.Secret {
				t.Errorf("history of %q holds %q", q.Secret, r.Secret)
			}
			out = append(out, r.ID)
		}
		return out
	}
	if got := page(rotation.HistoryQuery{Limit: 3}); !slices.Equal(got, ids[:3]) {
		t.Errorf("first page %v, want %v", got, ids[:3])
	}
	if got := page(rotation.HistoryQuery{Limit: 3, BeforeID: ids[2]}); !slices.Equal(got, ids[3:6]) {
		t.Errorf("second page %v, want %v", got, ids[3:6])
	}
	if got := page(rotation.HistoryQuery{}); !slices.Equal(got, ids) {
		t.Errorf("default page %v, want %v", got, ids)
	}
	if got := page(rotation.HistoryQuery{Secret: "web", Limit: 2}); !slices.Equal(got, webIDs[:2]) {
		t.Errorf("web page %v, want %v", got, webIDs[:2])
	}
	if got := page(rotation.HistoryQuery{Secret: "web", BeforeID: webIDs[1]}); !slices.Equal(got, webIDs[2:]) {
		t.Errorf("web second page %v, want %v", got, webIDs[2:])
	}
	if got := page(rotation.HistoryQuery{Secret: "nope"}); len(got) != 0 {
		t.Errorf("unknown secret: %v", got)
	}
}

func TestAudit(t *testing.T) { eachBackend(t, testAudit) }

func testAudit(t *testing.T, b backend) {
	ctx := context.Background()
	clk := newClock()
	db, _ := b.mustOpen(t, store.WithNow(clk.Now))
	events := []rotation.Event{
		{Secret: "web", RotationID: 0, Actor: "scheduler", Action: "rotate", Detail: "3 hosts"},
		{Secret: "db", Actor: "cli:alice", Action: "rollback"},
		{Secret: "web", Actor: "cli:bob", Action: "heartbeat", Time: clk.Now().Add(time.Hour)},
	}
	for _, e := range events {
		if err := db.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.AuditLog(ctx, store.AuditQuery{Secret: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Action != "heartbeat" || got[1].Action != "rotate" || got[1].Detail != "3 hosts" {
		t.Fatalf("AuditLog(web) = %+v", got)
	}
	if !got[0].Time.Equal(clk.Now().Add(time.Hour)) || !got[1].Time.Equal(clk.Now()) {
		t.Errorf("times %v %v", got[0].Time, got[1].Time)
	}
	all, err := db.AuditLog(ctx, store.AuditQuery{BeforeID: got[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Actor != "cli:alice" {
		t.Errorf("AuditLog page = %+v", all)
	}
}

func TestScheduleState(t *testing.T) { eachBackend(t, testScheduleState) }

func testScheduleState(t *testing.T, b backend) {
	ctx := context.Background()
	db, _ := b.mustOpen(t)
	if _, ok, err := db.NextDue(ctx, "web"); ok || err != nil {
		t.Errorf("NextDue of unknown = %v, %v", ok, err)
	}
	if _, ok, err := db.SecretID(ctx, "web"); ok || err != nil {
		t.Errorf("SecretID of unknown = %v, %v", ok, err)
	}
	due := time.Date(2026, 4, 5, 3, 0, 0, 123, time.UTC)
	if err := db.SetNextDue(ctx, "web", due); err != nil {
		t.Fatal(err)
	}
	if err := db.SetSecretID(ctx, "web", 1234); err != nil {
		t.Fatal(err)
	}
	if err := db.SetSecretID(ctx, "web", 5678); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.NextDue(ctx, "web")
	if err != nil || !ok || !got.Equal(due) {
		t.Errorf("NextDue = %v, %v, %v; want %v", got, ok, err, due)
	}
	id, ok, err := db.SecretID(ctx, "web")
	if err != nil || !ok || id != 5678 {
		t.Errorf("SecretID = %v, %v, %v", id, ok, err)
	}
	// A rotation of a secret with schedule state keeps it.
	if _, err := db.Begin(ctx, sampleRotation("web")); err != nil {
		t.Fatal(err)
	}
	if id, ok, _ := db.SecretID(ctx, "web"); !ok || id != 5678 {
		t.Errorf("SecretID after Begin = %v, %v", id, ok)
	}
}
