package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
)

func scrape(t *testing.T, m *metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	due := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	m := newMetrics()
	m.followSchedule(func(name string) (time.Time, bool) { return due, name == "web" })
	m.setSecrets([]rotation.SecretSpec{{Name: "web"}, {Name: "db"}})
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	m.observe(rotation.Result{Secret: "web", State: rotation.StateCommitted}, now.Add(-42*time.Second), now)
	m.observe(rotation.Result{Secret: "db", State: rotation.StateRolledBack, Err: errors.New("host down")}, now.Add(-3*time.Second), now)
	m.observe(rotation.Result{Secret: "db", Err: errors.New("ambiguous")}, now, now.Add(time.Minute))
	body := scrape(t, m)
	for _, want := range []string{
		`rotord_rotations_total{secret="web",state="committed"} 1`,
		`rotord_rotations_total{secret="db",state="rolled-back"} 1`,
		`rotord_rotations_total{secret="db",state="failed"} 1`,
		`rotord_last_success_timestamp_seconds{secret="web"} 1.7953416e+09`,
		`rotord_last_success_timestamp_seconds{secret="db"} 0`,
		`rotord_last_attempt_timestamp_seconds{secret="web"} 1.7953416e+09`,
		`rotord_last_attempt_timestamp_seconds{secret="db"} 1.79534166e+09`,
		`rotord_next_due_timestamp_seconds{secret="web"} 1.7959104e+09`,
		`rotord_rotation_duration_seconds_bucket{secret="web",le="30"} 0`,
		`rotord_rotation_duration_seconds_bucket{secret="web",le="60"} 1`,
		`rotord_rotation_duration_seconds_sum{secret="web"} 42`,
		`rotord_rotation_duration_seconds_count{secret="db"} 2`,
		`rotord_build_info{version="dev"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// secretSeries are the series every configured secret has from start.
func secretSeries(name string) []string {
	var out []string
	for _, st := range rotationStates {
		out = append(out, fmt.Sprintf(`rotord_rotations_total{secret=%q,state=%q} 0`, name, st))
	}
	for _, st := range heartbeatStates {
		out = append(out, fmt.Sprintf(`rotord_heartbeat_state{secret=%q,state=%q} 0`, name, st))
	}
	for _, m := range []string{"rotord_last_success_timestamp_seconds", "rotord_last_attempt_timestamp_seconds",
		"rotord_next_due_timestamp_seconds", "rotord_needs_reconcile", "rotord_parked", "rotord_rotation_duration_seconds_count"} {
		out = append(out, fmt.Sprintf(`%s{secret=%q} `, m, name))
	}
	return out
}

// Every configured secret has its series before anything happened to it,
// and a secret a reload removed has none left.
func TestMetricsSeriesFromStartFollowReloads(t *testing.T) {
	due := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	m := newMetrics()
	m.followSchedule(func(string) (time.Time, bool) { return due, true })
	m.setSecrets([]rotation.SecretSpec{{Name: "web"}, {Name: "db"}})
	body := scrape(t, m)
	for _, name := range []string{"web", "db"} {
		for _, want := range secretSeries(name) {
			if !strings.Contains(body, want) {
				t.Errorf("at start, metrics lack %s", want)
			}
		}
	}
	m.observe(rotation.Result{Secret: "db", State: rotation.StateCommitted}, due, due)
	m.heartbeat("db", alertDrift)
	m.setSecrets([]rotation.SecretSpec{{Name: "web"}, {Name: "mail"}})
	body = scrape(t, m)
	if strings.Contains(body, `secret="db"`) {
		t.Errorf("a removed secret keeps series:\n%s", grepLines(body, `secret="db"`))
	}
	for _, want := range append(secretSeries("web"), secretSeries("mail")...) {
		if !strings.Contains(body, want) {
			t.Errorf("after the reload, metrics lack %s", want)
		}
	}
}

func TestMetricsParkedAndHeartbeat(t *testing.T) {
	m := newMetrics()
	m.followSchedule(func(string) (time.Time, bool) { return time.Time{}, false })
	m.setSecrets([]rotation.SecretSpec{{Name: "web"}, {Name: "db"}})
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	m.observe(rotation.Result{Secret: "web", Err: fmt.Errorf("ssh: %w", rotation.ErrUnreachable)}, now, now)
	m.park("web")
	m.observe(rotation.Result{Secret: "db", Err: fmt.Errorf("%w: rotation 4 is needs-reconcile", rotation.ErrParked)}, now, now)
	m.heartbeatResult(rotation.HeartbeatResult{Secret: "web", Err: errors.Join(
		fmt.Errorf("web02: %w", rotation.ErrUnreachable), fmt.Errorf("web01: %w", rotation.ErrDrift))})
	m.heartbeatResult(rotation.HeartbeatResult{Secret: "db", Err: fmt.Errorf("db01: %w", rotation.ErrHostKey)})
	body := scrape(t, m)
	for _, want := range []string{
		`rotord_parked{secret="web"} 1`,
		`rotord_parked{secret="db"} 1`,
		`rotord_heartbeat_state{secret="web",state="drift"} 1`,
		`rotord_heartbeat_state{secret="web",state="unreachable"} 0`,
		`rotord_heartbeat_state{secret="db",state="unreachable"} 1`,
		`rotord_heartbeat_state{secret="db",state="ok"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The next slot's rotation unparks the secret; a heartbeat that passes
	// is ok again.
	m.observe(rotation.Result{Secret: "web", State: rotation.StateCommitted}, now, now.Add(time.Hour))
	m.heartbeat("web", heartbeatOK)
	body = scrape(t, m)
	for _, want := range []string{
		`rotord_parked{secret="web"} 0`,
		`rotord_heartbeat_state{secret="web",state="ok"} 1`,
		`rotord_heartbeat_state{secret="web",state="drift"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// reconcileJournal is a fakeJournal that also lists the rotations in
// needs-reconcile, as the store does.
type reconcileJournal struct{ fakeJournal }

func (j *reconcileJournal) NeedsReconcile(context.Context) ([]rotation.Rotation, error) {
	var out []rotation.Rotation
	for _, r := range j.rotations {
		if r.State == rotation.StateNeedsReconcile {
			out = append(out, r)
		}
	}
	return out, nil
}

// A scrape right after "rotord run" starts shows every configured secret's
// series, with what the journal knows (last success and attempt, a
// rotation in needs-reconcile); a reload that removes a secret removes its
// series.
func TestRunMetricsRightAfterStart(t *testing.T) {
	body := strings.Replace(threeSecrets, "secrets:\n", "schedule: \"@yearly\"\njitter: 0s\nmetrics:\n  listen: 127.0.0.1:0\nsecrets:\n", 1)
	body = strings.Replace(body, "  - name: db\n", "  - name: DB\n", 1)
	t0 := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	svc := services4(&fakeEngine{})
	// The journal keys secrets by their lower-case identity, newest first.
	svc.journal = &reconcileJournal{fakeJournal{rotations: []rotation.Rotation{
		{ID: 4, Secret: "db", Kind: rotation.KindRotate, State: rotation.StateNeedsReconcile, Started: t0.Add(2 * time.Hour), Updated: t0.Add(2*time.Hour + time.Minute)},
		{ID: 3, Secret: "web", Kind: rotation.KindRotate, State: rotation.StateRolledBack, Started: t0.Add(time.Hour), Updated: t0.Add(time.Hour + time.Minute)},
		{ID: 2, Secret: "web", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: t0, Updated: t0.Add(30 * time.Second)},
		{ID: 1, Secret: "db", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: t0.Add(-time.Hour), Updated: t0.Add(-time.Hour)},
	}}}
	ta := newTestApp(t, body, svc)
	reloaded := make(chan error, 1)
	ta.reloaded = reloaded
	metricsAddr := make(chan string, 1)
	ta.metricsAddr = metricsAddr
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- ta.run(ctx, "run") }()
	addr := recv(t, metricsAddr)

	got := httpScrape(t, addr)
	for _, name := range []string{"web", "DB", "mail"} {
		for _, want := range secretSeries(name) {
			if !strings.Contains(got, want) {
				t.Errorf("right after start, metrics lack %s", want)
			}
		}
	}
	for _, want := range []string{
		fmt.Sprintf(`rotord_last_success_timestamp_seconds{secret="web"} %g`, float64(t0.Add(30*time.Second).Unix())),
		fmt.Sprintf(`rotord_last_attempt_timestamp_seconds{secret="web"} %g`, float64(t0.Add(time.Hour+time.Minute).Unix())),
		fmt.Sprintf(`rotord_last_success_timestamp_seconds{secret="DB"} %g`, float64(t0.Add(-time.Hour).Unix())),
		`rotord_needs_reconcile{secret="DB"} 1`,
		`rotord_needs_reconcile{secret="web"} 0`,
		`rotord_last_success_timestamp_seconds{secret="mail"} 0`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("right after start, metrics lack %s", want)
		}
	}

	if err := os.WriteFile(ta.path, []byte(strings.Replace(readFile(t, ta.path), "  - name: mail\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The daemon's loop handles one signal at a time: the second reload's
	// report says it has finished with the first, metrics included.
	for range 2 {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := recv(t, reloaded); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	got = httpScrape(t, addr)
	if strings.Contains(got, `secret="mail"`) {
		t.Errorf("a secret removed by a reload keeps series:\n%s", grepLines(got, `secret="mail"`))
	}
	if !strings.Contains(got, `rotord_needs_reconcile{secret="DB"} 1`) {
		t.Error("after the reload, DB is no longer in needs-reconcile")
	}
	stop()
	if code := recv(t, done); code != exitOK {
		t.Fatalf("run exited %d: %s", code, ta.err)
	}
}

func httpScrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The metrics read what the daemon's own journal holds: last success and
// attempt of each secret, and which secret has a rotation in
// needs-reconcile.
func TestMetricsRefreshFromStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := store.WriteNewKey(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	key, err := store.LoadKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	db, err := store.Open(ctx, filepath.Join(dir, "rotord.db"), store.NewKeyring(key), store.WithNow(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	journal := func(name string, st rotation.State, at time.Time) {
		t.Helper()
		now = at
		id, err := db.Begin(ctx, rotation.Rotation{Secret: name, Kind: rotation.KindRotate, Username: "root",
			Old: secret.New("Old-Pass-1"), New: secret.New("New-Pass-2"), Hosts: []rotation.HostRecord{{Host: rotation.Host{Name: "h1"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.SetState(ctx, id, 0, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	journal("Web", rotation.StateCommitted, t0)
	journal("Web", rotation.StateRolledBack, t0.Add(time.Hour))
	journal("db", rotation.StateCommitted, t0.Add(2*time.Hour))
	journal("db", rotation.StateNeedsReconcile, t0.Add(3*time.Hour))

	m := newMetrics()
	m.followSchedule(func(string) (time.Time, bool) { return time.Time{}, false })
	m.setSecrets([]rotation.SecretSpec{{Name: "Web"}, {Name: "db"}, {Name: "mail"}})
	if err := m.refresh(ctx, db); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, m)
	for _, want := range []string{
		fmt.Sprintf(`rotord_last_success_timestamp_seconds{secret="Web"} %g`, float64(t0.Unix())),
		fmt.Sprintf(`rotord_last_attempt_timestamp_seconds{secret="Web"} %g`, float64(t0.Add(time.Hour).Unix())),
		fmt.Sprintf(`rotord_last_success_timestamp_seconds{secret="db"} %g`, float64(t0.Add(2*time.Hour).Unix())),
		fmt.Sprintf(`rotord_last_attempt_timestamp_seconds{secret="db"} %g`, float64(t0.Add(3*time.Hour).Unix())),
		`rotord_last_success_timestamp_seconds{secret="mail"} 0`,
		`rotord_needs_reconcile{secret="db"} 1`,
		`rotord_needs_reconcile{secret="Web"} 0`,
		`rotord_needs_reconcile{secret="mail"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "Pass-") {
		t.Error("a password shows in the metrics")
	}
}
