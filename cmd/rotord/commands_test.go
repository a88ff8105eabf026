package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec"
)

// vaultPassword is what the fake vault holds; no command may print it.
const vaultPassword = "Vault-Pw-4c1d9e7b"

type fakeEngine struct {
	mu       sync.Mutex
	results  map[string]rotation.Result // by secret name; default committed
	opts     []rotation.RotateOptions
	rotated  chan string
	rollback []int64
}

func (e *fakeEngine) Rotate(ctx context.Context, spec rotation.SecretSpec, opts rotation.RotateOptions) rotation.Result {
	e.mu.Lock()
	e.opts = append(e.opts, opts)
	r, ok := e.results[spec.Name]
	e.mu.Unlock()
	if e.rotated != nil {
		e.rotated <- spec.Name
	}
	if !ok {
		r = rotation.Result{Secret: spec.Name, RotationID: 7, Kind: rotation.KindRotate, State: rotation.StateCommitted,
			Hosts: []rotation.HostResult{{Host: rotation.Host{Name: "web01"}, State: rotation.HostChanged, Outcome: "changed"}}}
	}
	if r.Err == nil && ctx.Err() != nil {
		r.Err = ctx.Err()
	}
	return r
}

func (e *fakeEngine) Rollback(_ context.Context, spec rotation.SecretSpec, toID int64, _ string) rotation.Result {
	e.mu.Lock()
	e.rollback = append(e.rollback, toID)
	e.mu.Unlock()
	return rotation.Result{Secret: spec.Name, RotationID: 9, Kind: rotation.KindRollback, State: rotation.StateCommitted}
}

func (e *fakeEngine) Recover(context.Context, string) []rotation.Result { return nil }

func (e *fakeEngine) RecoverUnfinished(context.Context, string, func(string) (func(), bool)) []rotation.Result {
	return nil
}

func (e *fakeEngine) Heartbeat(_ context.Context, spec rotation.SecretSpec) rotation.HeartbeatResult {
	return rotation.HeartbeatResult{Secret: spec.Name, Hosts: []rotation.HostResult{{Host: rotation.Host{Name: "web01"}, State: rotation.HostPending, Outcome: "ok"}}}
}

func (e *fakeEngine) ScheduledHeartbeat(ctx context.Context, spec rotation.SecretSpec) rotation.HeartbeatResult {
	return e.Heartbeat(ctx, spec)
}

type fakeVault struct {
	ids     map[string]int
	errs    map[string]error
	secrets map[int]rotation.Secret
}

func (v *fakeVault) Resolve(_ context.Context, name string) (int, error) {
	if err := v.errs[name]; err != nil {
		return 0, err
	}
	id, ok := v.ids[name]
	if !ok {
		return 0, fmt.Errorf("resolve %q: %w", name, rotation.ErrSecretNotFound)
	}
	return id, nil
}

func (v *fakeVault) Read(_ context.Context, id int, _ string) (rotation.Secret, error) {
	s, ok := v.secrets[id]
	if !ok {
		return rotation.Secret{}, fmt.Errorf("read secret %d: %w", id, rotation.ErrSecretNotFound)
	}
	s.Password = secret.New(vaultPassword)
	return s, nil
}

func (v *fakeVault) Generate(context.Context, rotation.Secret) (secret.Value, error) {
	return secret.Value{}, errors.New("not used")
}

func (v *fakeVault) Write(context.Context, rotation.Secret, secret.Value, string) error {
	return errors.New("not used")
}

type fakeInspector map[string]sshexec.HostKeyCheck

func (f fakeInspector) Inspect(_ context.Context, addr string) sshexec.HostKeyCheck {
	return f[addr]
}

type fakeJournal struct{ rotations []rotation.Rotation }

func (j *fakeJournal) History(_ context.Context, q rotation.HistoryQuery) ([]rotation.Rotation, error) {
	var out []rotation.Rotation
	for _, r := range j.rotations {
		if q.Secret == "" || r.Secret == q.Secret {
			out = append(out, r)
		}
	}
	return out, nil
}

func (j *fakeJournal) Audit(context.Context, rotation.Event) error { return nil }

// mapState is an in-memory rotation.ScheduleState.
type mapState struct {
	mu  sync.Mutex
	due map[string]time.Time
}

func (m *mapState) NextDue(_ context.Context, n string) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.due[n]
	return t, ok, nil
}

func (m *mapState) SetNextDue(_ context.Context, n string, t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.due[n] = t
	return nil
}

func (m *mapState) SecretID(context.Context, string) (int, bool, error) { return 0, false, nil }
func (m *mapState) SetSecretID(context.Context, string, int) error      { return nil }

// testApp is an app over fakes with captured output.
type testApp struct {
	*app
	out, err *bytes.Buffer
	svc      *services
	opened   chan struct{}
	path     string
}

func newTestApp(t *testing.T, body string, svc *services) *testApp {
	t.Helper()
	path, dir := writeConfig(t, body)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("web01 ssh-ed25519 AAAA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(readFile(t, path), "secrets:\n", "ssh:\n  known_hosts: "+kh+"\nsecrets:\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ta := &testApp{out: &bytes.Buffer{}, err: &bytes.Buffer{}, svc: svc, opened: make(chan struct{}, 1)}
	ad := defaultAdapters()
	ad.open = func(context.Context, *Config, *slog.Logger, progressFunc) (*services, error) {
		ta.opened <- struct{}{}
		return svc, nil
	}
	ad.openCheck = func(ctx context.Context, cfg *Config, log *slog.Logger) (*services, error) {
		return ad.open(ctx, cfg, log, nil)
	}
	ta.app = newApp(ta.out, ta.err, testEnv(nil), ad)
	ta.path = path
	return ta
}

func (ta *testApp) run(ctx context.Context, args ...string) int {
	return ta.main(ctx, append(args, "--config", ta.path))
}

// recv receives from ch; a hang fails the test instead of stalling it.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("nothing received")
		panic("unreachable")
	}
}

func services4(e rotationEngine) *services {
	return &services{engine: e, journal: &fakeJournal{}, state: &mapState{due: map[string]time.Time{}},
		vault: &fakeVault{}, hosts: fakeInspector{}, close: func() error { return nil }}
}

const threeSecrets = `secret_server:
  url: https://ss.example.com
  username: svc
  password_file: {{dir}}/ss-password
secrets:
  - name: web
  - name: db
  - name: mail
`

func TestCheckReportsEveryProblem(t *testing.T) {
	svc := services4(&fakeEngine{})
	svc.vault = &fakeVault{
		ids: map[string]int{"web": 1, "mail": 3},
		errs: map[string]error{"db": fmt.Errorf("resolve %q: %w: found in folders \\Prod\\DB, \\Lab\\DB",
			"db", rotation.ErrAmbiguousName)},
		secrets: map[int]rotation.Secret{
			1: {ID: 1, Name: "web", FolderPath: `\Prod`, Username: "root", Hosts: []rotation.Host{{Name: "web01"}}, AutoChangeEnabled: true},
			3: {ID: 3, Name: "mail", FolderPath: `\Prod`, Username: "root", Hosts: []rotation.Host{{Name: "mail01"}, {Name: "mail02", Port: 2222}}},
		},
	}
	svc.hosts = fakeInspector{
		"web01:22":    {Reachable: true, Status: sshexec.HostKeyKnown},
		"mail01:22":   {Reachable: true, Status: sshexec.HostKeyUnknown, Err: rotation.ErrHostKey},
		"mail02:2222": {Err: fmt.Errorf("dial mail02:2222: %w: connection refused", rotation.ErrUnreachable)},
	}
	ta := newTestApp(t, threeSecrets, svc)
	code := ta.run(context.Background(), "check")
	out := ta.out.String()
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitFailed, out, ta.err)
	}
	for _, want := range []string{
		`  - secret db: resolve "db": secret name is ambiguous: found in folders \Prod\DB, \Lab\DB`,
		"  - secret mail: host mail01:22: host key unknown: run rotord hostkeys scan mail01:22",
		"  - secret mail: host mail02:2222 unreachable: dial mail02:2222: host unreachable: connection refused",
		"  - secret web (id 1): Secret Server's auto-change is on",
		"problems (3):",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if ta.err.String() != "rotord: check found 3 problem(s)\n" {
		t.Errorf("stderr %q", ta.err)
	}
	if strings.Contains(out+ta.err.String(), vaultPassword) || strings.Contains(out, testPassword) {
		t.Fatal("check printed a password")
	}

	ta = newTestApp(t, threeSecrets, svc)
	if code := ta.run(context.Background(), "check", "--json"); code != exitFailed {
		t.Fatalf("--json: exit %d", code)
	}
	var rep checkReport
	if err := json.Unmarshal(ta.out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, ta.out)
	}
	if len(rep.Problems) != 3 || len(rep.Warnings) != 1 || len(rep.Secrets) != 3 || rep.Secrets[2].Hosts[1].Reachable {
		t.Fatalf("report %+v", rep)
	}
}

func TestCheckClean(t *testing.T) {
	svc := services4(&fakeEngine{})
	svc.vault = &fakeVault{ids: map[string]int{"web-root": 1},
		secrets: map[int]rotation.Secret{1: {ID: 1, Username: "root", Hosts: []rotation.Host{{Name: "web01"}}}}}
	svc.hosts = fakeInspector{"web01:22": {Reachable: true, Status: sshexec.HostKeyKnown}}
	ta := newTestApp(t, minimal, svc)
	if code := ta.run(context.Background(), "check"); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, ta.out, ta.err)
	}
	if !strings.Contains(ta.out.String(), "no problems found") {
		t.Fatalf("output:\n%s", ta.out)
	}
}

func TestRotateExitStatus(t *testing.T) {
	failed := func(name string) rotation.Result {
		return rotation.Result{Secret: name, RotationID: 8, Kind: rotation.KindRotate, State: rotation.StateRolledBack,
			Err: fmt.Errorf("host db02: %w", rotation.ErrAuthFailed),
			Hosts: []rotation.HostResult{
				{Host: rotation.Host{Name: "db01"}, State: rotation.HostReverted, Outcome: "reverted"},
				{Host: rotation.Host{Name: "db02"}, State: rotation.HostFailed, Outcome: "authentication failed"},
			}}
	}
	tests := []struct {
		name    string
		results map[string]rotation.Result
		args    []string
		code    int
	}{
		{"AllCommitted", nil, []string{"rotate"}, exitOK},
		{"Partial", map[string]rotation.Result{"db": failed("db")}, []string{"rotate"}, exitPartial},
		{"AllFailed", map[string]rotation.Result{"db": failed("db")}, []string{"rotate", "db"}, exitFailed},
		{"UnknownName", nil, []string{"rotate", "nope"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestApp(t, threeSecrets, services4(&fakeEngine{results: tt.results}))
			if code := ta.run(context.Background(), tt.args...); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, ta.out, ta.err)
			}
		})
	}
	t.Run("Table", func(t *testing.T) {
		ta := newTestApp(t, threeSecrets, services4(&fakeEngine{results: map[string]rotation.Result{"db": failed("db")}}))
		ta.run(context.Background(), "rotate", "web", "db")
		want := `SECRET  ROTATION  KIND    STATE        HOSTS  FAILED  RESULT
web     7         rotate  committed    1      0       ok
db      8         rotate  rolled-back  2      1       host db02: authentication failed
  db02                    failed                      authentication failed
`
		if ta.out.String() != want {
			t.Fatalf("table:\n%s\nwant:\n%s", ta.out, want)
		}
		if ta.err.String() != "rotord: 1 of 2 failed\n" {
			t.Fatalf("stderr %q", ta.err)
		}
	})
}

func TestRotateDryRunAndJSON(t *testing.T) {
	e := &fakeEngine{}
	ta := newTestApp(t, threeSecrets, services4(e))
	if code := ta.run(context.Background(), "rotate", "web", "--dry-run", "--json"); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.err)
	}
	if len(e.opts) != 1 || !e.opts[0].DryRun || !strings.HasPrefix(e.opts[0].Actor, "cli:") {
		t.Fatalf("engine got %+v", e.opts)
	}
	var got []jsonResult
	if err := json.Unmarshal(ta.out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Kind != "dry-run" || !got[0].OK || got[0].Hosts[0].Host != "web01" {
		t.Fatalf("json %+v", got)
	}
}

func TestRotateInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ta := newTestApp(t, threeSecrets, services4(&fakeEngine{}))
	if code := ta.run(ctx, "rotate", "web"); code != exitInterrupted {
		t.Fatalf("exit %d, want %d: %s", code, exitInterrupted, ta.err)
	}
}

func TestRollbackPassesTarget(t *testing.T) {
	e := &fakeEngine{}
	ta := newTestApp(t, threeSecrets, services4(e))
	if code := ta.run(context.Background(), "rollback", "WEB", "--to", "42"); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.err)
	}
	if len(e.rollback) != 1 || e.rollback[0] != 42 {
		t.Fatalf("rollback to %v", e.rollback)
	}
	if !strings.Contains(ta.out.String(), "rollback") {
		t.Fatalf("output:\n%s", ta.out)
	}
}

func TestHistory(t *testing.T) {
	start := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	svc := services4(&fakeEngine{})
	svc.journal = &fakeJournal{rotations: []rotation.Rotation{
		{ID: 12, Secret: "web", Username: "root", Kind: rotation.KindRollback, State: rotation.StateCommitted, RollbackOf: 11,
			Started: start.Add(time.Hour), Updated: start.Add(time.Hour + 4*time.Second),
			Hosts: []rotation.HostRecord{{Host: rotation.Host{Name: "web01"}, State: rotation.HostChanged}}},
		{ID: 11, Secret: "web", Username: "root", Kind: rotation.KindRotate, State: rotation.StateRolledBack,
			Error: "host web02: authentication failed", Started: start, Updated: start.Add(3 * time.Second),
			Hosts: []rotation.HostRecord{{Host: rotation.Host{Name: "web01"}, State: rotation.HostReverted}, {Host: rotation.Host{Name: "web02"}, State: rotation.HostFailed}}},
	}}
	ta := newTestApp(t, threeSecrets, svc)
	if code := ta.run(context.Background(), "history", "web"); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.err)
	}
	want := `ID  SECRET  USER  KIND            STATE        HOSTS  STARTED (UTC)        TOOK  ERROR
12  web     root  rollback of 11  committed    1/1    2026-11-22 04:00:00  4s
11  web     root  rotate          rolled-back  0/2    2026-11-22 03:00:00  3s    host web02: authentication failed
`
	if ta.out.String() != want {
		t.Fatalf("history:\n%s\nwant:\n%s", ta.out, want)
	}
	ta = newTestApp(t, threeSecrets, svc)
	if code := ta.run(context.Background(), "history", "--json"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var got []jsonRotation
	if err := json.Unmarshal(ta.out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].RollbackOf != 11 || got[1].Hosts[1].State != "failed" {
		t.Fatalf("json %+v", got)
	}
}

func TestRunRotatesOnScheduleReloadsAndStops(t *testing.T) {
	body := strings.Replace(threeSecrets, "secrets:\n", "schedule: \"@every 1s\"\njitter: 0s\nmetrics:\n  listen: 127.0.0.1:0\nsecrets:\n", 1)
	body = strings.Replace(body, "  - name: mail\n", "", 1)
	e := &fakeEngine{rotated: make(chan string, 10)}
	ta := newTestApp(t, body, services4(e))
	reloaded := make(chan error, 1)
	ta.reloaded = reloaded
	metricsAddr := make(chan string, 1)
	ta.metricsAddr = metricsAddr
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- ta.run(ctx, "run") }()
	recv(t, ta.opened) // signal handlers are installed before the services open
	addr := recv(t, metricsAddr)

	// A broken file on SIGHUP is rejected; the daemon keeps rotating.
	path := ta.path
	good := readFile(t, path)
	if err := os.WriteFile(path, []byte(good+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, reloaded); err == nil || !strings.Contains(err.Error(), "bogus: unknown field") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		got[recv(t, e.rotated)] = true
	}
	if !got["web"] || !got["db"] {
		t.Fatalf("rotated %v", got)
	}
	// A good file is taken.
	if err := os.WriteFile(path, []byte(good+"  - name: mail\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, reloaded); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for !got["mail"] {
		got[recv(t, e.rotated)] = true
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`rotord_rotations_total{secret="web",state="committed"}`,
		`rotord_config_reloads_total{result="rejected"} 1`,
		`rotord_config_reloads_total{result="ok"} 1`,
		`rotord_next_due_timestamp_seconds{secret="mail"}`,
	} {
		if !strings.Contains(string(body2), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	stop()
	if code := recv(t, done); code != exitOK {
		t.Fatalf("run exited %d: %s", code, ta.err)
	}
	for _, want := range []string{"configuration reload rejected", "configuration reloaded", "rotation finished", "rotord stopped"} {
		if !strings.Contains(ta.err.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, ta.err)
		}
	}
}

// The journal keys a secret by its lower-case identity; history shows the
// name as the configuration spells it.
func TestHistoryShowsConfiguredSpelling(t *testing.T) {
	svc := services4(&fakeEngine{})
	svc.journal = &fakeJournal{rotations: []rotation.Rotation{
		{ID: 3, Secret: "prod-web", Username: "root", Kind: rotation.KindRotate, State: rotation.StateCommitted},
		{ID: 2, Secret: "gone", Username: "root", Kind: rotation.KindRotate, State: rotation.StateCommitted},
	}}
	ta := newTestApp(t, strings.Replace(threeSecrets, "  - name: web\n", "  - name: Prod-Web\n", 1), svc)
	if code := ta.run(context.Background(), "history", "--json"); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.err)
	}
	var got []jsonRotation
	if err := json.Unmarshal(ta.out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Secret != "Prod-Web" || got[1].Secret != "gone" {
		t.Fatalf("history names %+v, want Prod-Web (configured) and gone (no longer configured)", got)
	}
}
