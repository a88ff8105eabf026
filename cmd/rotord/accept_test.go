package main

// Acceptance tests: the built rotord binary against the Secret Server
// emulator (HTTPS) and a rig of real sshd hosts with real passwd, a real
// SQLite journal file, and real signals.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
	"github.com/rotord/rotord/store"
	"github.com/rotord/rotord/store/pgtest"
)

const (
	accUser       = "rotuser"
	accPassword   = "Acc-Initial-Pw-7731" // every rig host's first password
	accSSUser     = "svc-rotord"
	accSSPassword = "Acc-Svc-Pw-90f1!" // rotord's own Secret Server account
)

// lab is one acceptance setup: rig hosts, the emulator, the lab's files.
type lab struct {
	t      *testing.T
	dir    string
	config string
	env    []string
	ss     *sstest.Server
	rig    *sshtest.Rig
	ids    map[string]int   // secret name → emulator id
	groups map[string][]int // secret name → rig host indices
	root   map[string]bool  // secrets that hold root's account rather than accUser's
	dialer *sshexec.Dialer
	dsn    string // the PostgreSQL journal's connection string, if it is one
}

// labOptions shape a lab.
type labOptions struct {
	hosts    int               // Debian hosts, when variants is nil
	variants []sshtest.Variant // the hosts' passwd variants
	groups   map[string][]int
	schedule string
	extra    string // appended to the configuration file
	rootPass string // if set, root may log into the hosts with it (a reconcile account)
	asRoot   bool   // the secrets hold root's account (rootPass) instead of accUser's
	// rootSecrets hold root's account (rootPass) rather than accUser's,
	// so that two secrets can share a host with distinct accounts.
	rootSecrets map[string]bool
	metrics     string // metrics.listen ("" serves none)
	postgres    bool   // the journal is a fresh PostgreSQL database (store.driver postgres), not a SQLite file
	// reach shapes host i's sshd, sudo and su (nil: the rig's defaults).
	reach map[int]*sshtest.ReachSpec
	// secretExtra holds lines appended to a secret's entry (each indented
	// under it, such as "    escalation: su").
	secretExtra map[string]string
}

// eachJournal runs f as a subtest per journal database: a SQLite file
// ("sqlite") and a fresh PostgreSQL database of the throwaway cluster
// ("postgres", labOptions.postgres). The acceptance tests that touch the
// journal run on both drivers through it: one test, two databases.
func eachJournal(t *testing.T, f func(t *testing.T, postgres bool)) {
	for _, j := range []struct {
		name     string
		postgres bool
	}{{"sqlite", false}, {"postgres", true}} {
		t.Run(j.name, func(t *testing.T) { f(t, j.postgres) })
	}
}

func newLab(t *testing.T, ctx context.Context, o labOptions) *lab {
	t.Helper()
	variants := o.variants
	if variants == nil {
		variants = make([]sshtest.Variant, o.hosts) // sshtest.Debian
	}
	sshtest.RequireRig(t, variants...)
	l := &lab{t: t, dir: t.TempDir(), ids: map[string]int{}, groups: o.groups, root: map[string]bool{}}
	specs := make([]sshtest.HostSpec, len(variants))
	for i, v := range variants {
		specs[i] = sshtest.HostSpec{Variant: v, Reach: o.reach[i]}
	}
	rig, err := sshtest.StartRig(ctx, sshtest.RigOptions{Dir: filepath.Join(l.dir, "hosts"), Hosts: specs, User: accUser, Password: accPassword, RootPassword: o.rootPass})
	if err != nil {
		t.Fatalf("start rig: %v", err)
	}
	t.Cleanup(func() { _ = rig.Close() })
	l.rig = rig
	l.ss = sstest.New()
	t.Cleanup(l.ss.Close)
	l.ss.AddUser(accSSUser, "", accSSPassword)
	names := make([]string, 0, len(o.groups))
	for name, idx := range o.groups {
		names = append(names, name)
		var hs []string
		for _, i := range idx {
			hs = append(hs, rig.Hosts()[i].Addr())
		}
		user, pw := accUser, accPassword
		if o.asRoot || o.rootSecrets[name] {
			user, pw = "root", o.rootPass
			l.root[name] = true
		}
		l.ids[name] = l.ss.AddSecret(sstest.SecretSeed{Name: name, Folder: `\Lab\Linux`, Username: user,
			Password: pw, Notes: strings.Join(hs, ", ")})
	}
	slices.Sort(names)
	l.write("ca.pem", string(l.ss.CACertPEM()))
	l.write("ss-password", accSSPassword+"\n")
	kh, err := os.ReadFile(rig.KnownHostsFile())
	if err != nil {
		t.Fatal(err)
	}
	l.write("known_hosts", string(kh))
	var secrets strings.Builder
	for _, n := range names {
		fmt.Fprintf(&secrets, "  - name: %s\n%s", n, o.secretExtra[n])
	}
	l.config = l.write("rotord.yaml", fmt.Sprintf(`secret_server:
  url: %s
  username: %s
  password_file: %s
  ca_file: %s
  token_cache: %s
store:
  path: %s
  key_file: %s
ssh:
  known_hosts: %s
  connect_timeout: 30s
  step_timeout: 30s
schedule: %q
jitter: 0s
metrics:
  listen: %q
%ssecrets:
%s`, l.ss.URL, accSSUser, l.path("ss-password"), l.path("ca.pem"), l.path("token.cache"), l.path("rotord.db"),
		l.path("store-key"), l.path("known_hosts"), o.schedule, o.metrics, o.extra, secrets.String()))
	if o.postgres {
		l.dsn = pgtest.NewDatabase(t)
		l.write("store-dsn", l.dsn+"\n")
		cfg, err := os.ReadFile(l.config)
		if err != nil {
			t.Fatal(err)
		}
		cfg = []byte(strings.Replace(string(cfg), "store:\n  path: "+l.path("rotord.db")+"\n",
			"store:\n  driver: postgres\n  dsn_file: "+l.path("store-dsn")+"\n", 1))
		l.write("rotord.yaml", string(cfg))
	}
	if _, errOut, code := runBin(t, nil, "keygen", l.path("store-key")); code != 0 {
		t.Fatalf("rotord keygen: exit %d: %s", code, errOut)
	}
	dc := sshexec.DefaultConfig()
	dc.KnownHosts, dc.StepTimeout = rig.KnownHostsFile(), 10*time.Second
	l.dialer, err = sshexec.New(dc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *lab) path(name string) string { return filepath.Join(l.dir, name) }

func (l *lab) write(name, content string) string {
	l.t.Helper()
	p := l.path(name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// rotord runs the binary with the lab's configuration.
func (l *lab) rotord(args ...string) (stdout, stderr string, code int) {
	l.t.Helper()
	return runBin(l.t, l.env, append([]string{"--config", l.config}, args...)...)
}

// password is what Secret Server holds for the secret.
func (l *lab) password(name string) string { return l.ss.Field(l.ids[name], "password") }

// logsIn reports whether pw logs into rig host i as accUser.
func (l *lab) logsIn(ctx context.Context, i int, pw string) bool {
	return l.logsInAs(ctx, i, accUser, pw)
}

// logsInAs reports whether pw logs into rig host i as user.
func (l *lab) logsInAs(ctx context.Context, i int, user, pw string) bool {
	h := l.rig.Hosts()[i]
	s, err := l.dialer.Login(ctx, rotation.Host{Name: h.Name, Port: h.Port}, user, secret.New(pw))
	if err != nil {
		return false
	}
	_ = s.Close()
	return true
}

// requireWorks fails unless Secret Server's password of the secret logs
// into every one of its hosts, and none of refused does.
func (l *lab) requireWorks(ctx context.Context, name string, refused ...string) string {
	l.t.Helper()
	pw := l.password(name)
	user := accUser
	if l.root[name] {
		user = "root"
	}
	for _, i := range l.groups[name] {
		if !l.logsInAs(ctx, i, user, pw) {
			l.t.Fatalf("%s: host %d does not take the password Secret Server holds", name, i)
		}
		for _, r := range refused {
			if r != pw && l.logsInAs(ctx, i, user, r) {
				l.t.Fatalf("%s: host %d still takes a superseded password", name, i)
			}
		}
	}
	return pw
}

// history returns the journal's rotations as `rotord history --json` lists them.
func (l *lab) history(name string) []jsonRotation {
	l.t.Helper()
	args := []string{"history", "--json", "--limit", "500"}
	if name != "" {
		args = append(args, name)
	}
	out, errOut, code := l.rotord(args...)
	if code != 0 {
		l.t.Fatalf("rotord history: exit %d: %s", code, errOut)
	}
	var rs []jsonRotation
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		l.t.Fatalf("history output: %v\n%s", err, out)
	}
	return rs
}

// openStore opens the lab's journal with its key.
func (l *lab) openStore(ctx context.Context) *store.DB {
	l.t.Helper()
	key, err := store.LoadKey(l.path("store-key"))
	if err != nil {
		l.t.Fatal(err)
	}
	open := func() (*store.DB, error) { return store.Open(ctx, l.path("rotord.db"), store.NewKeyring(key)) }
	if l.dsn != "" {
		open = func() (*store.DB, error) { return store.OpenPostgres(ctx, l.dsn, store.NewKeyring(key)) }
	}
	db, err := open()
	if err != nil {
		l.t.Fatal(err)
	}
	return db
}

// noSecrets fails if text holds any password in play.
func (l *lab) noSecrets(text string, more ...string) {
	l.t.Helper()
	for _, pw := range append([]string{accPassword, accSSPassword}, more...) {
		if pw != "" && strings.Contains(text, pw) {
			l.t.Fatalf("output holds a password:\n%s", text)
		}
	}
	for name := range l.ids {
		if pw := l.password(name); strings.Contains(text, pw) {
			l.t.Fatalf("output holds %s's password:\n%s", name, text)
		}
	}
}

// daemon is a running `rotord run`, its stderr read as JSON log records.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	records chan map[string]any
	exited  chan struct{}
	code    int

	mu  sync.Mutex
	log strings.Builder // everything it logged, for failure reports
}

func (l *lab) startDaemon() *daemon {
	l.t.Helper()
	return l.startRotord("run")
}

func (d *daemon) logged() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// is reports whether rec has message msg and the given attributes.
func is(rec map[string]any, msg string, attrs ...string) bool {
	if rec["msg"] != msg {
		return false
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		if fmt.Sprint(rec[attrs[i]]) != attrs[i+1] {
			return false
		}
	}
	return true
}

// next returns the next log record that match accepts, failing the test
// when the daemon exits or a minute passes first.
func (d *daemon) next(what string, match func(map[string]any) bool) map[string]any {
	d.t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		select {
		case rec, ok := <-d.records:
			if !ok {
				d.t.Fatalf("rotord exited (status %d) before %s; it logged:\n%s", d.code, what, d.logged())
			}
			if match(rec) {
				return rec
			}
		case <-deadline.C:
			d.t.Fatalf("no %s within a minute; rotord logged:\n%s", what, d.logged())
		}
	}
}

// signal sends sig to the daemon.
func (d *daemon) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
}

// wait returns the daemon's exit status, failing after a minute.
func (d *daemon) wait() int {
	d.t.Helper()
	go func() {
		for range d.records { // drain so the reader reaches Wait
		}
	}()
	select {
	case <-d.exited:
		return d.code
	case <-time.After(time.Minute):
		d.t.Fatalf("rotord did not exit within a minute; it logged:\n%s", d.logged())
		return -1
	}
}

// stop sends SIGTERM and requires exit status 0.
func (d *daemon) stop() {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	if code := d.wait(); code != 0 {
		d.t.Fatalf("rotord run exited %d after SIGTERM; it logged:\n%s", code, d.logged())
	}
}

// TestAcceptRunStopHistoryRollback: the daemon rotates two secrets on a
// short schedule; SIGTERM during a rotation lets it finish and exits 0; the
// journal holds only finished rotations and Secret Server's passwords work;
// history lists them; rollback restores the previous password everywhere.
func TestAcceptRunStopHistoryRollback(t *testing.T) { eachJournal(t, testRunStopHistoryRollback) }

func testRunStopHistoryRollback(t *testing.T, postgres bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 3, groups: map[string][]int{"web-root": {0, 1}, "db-root": {2}}, schedule: "@every 2s",
		postgres: postgres})

	d := l.startDaemon()
	committed := map[string]bool{}
	d.next("both secrets committed", func(rec map[string]any) bool {
		if is(rec, "rotation finished", "state", "committed") {
			committed[fmt.Sprint(rec["secret"])] = true
		}
		return committed["web-root"] && committed["db-root"]
	})
	// db-root's next rotation starts 2s after its last one finished: pause
	// its only host now, so that rotation hangs on it while in flight.
	d.next("db-root finished", func(rec map[string]any) bool { return is(rec, "rotation finished", "secret", "db-root") })
	if err := l.rig.PauseHost(2); err != nil {
		t.Fatal(err)
	}
	// On a shared journal (PostgreSQL) the slot is claimed in the database
	// first, which a stop still cancels: the rotation is in flight once
	// its slot is claimed.
	started := "scheduled rotation starting"
	if postgres {
		started = "slot claimed"
	}
	d.next("db-root started", func(rec map[string]any) bool {
		return is(rec, started, "secret", "db-root")
	})
	d.signal(syscall.SIGTERM)
	d.next("the stop", func(rec map[string]any) bool {
		if is(rec, "rotation finished", "secret", "db-root") {
			t.Fatalf("db-root's rotation finished before the stop: it was not in flight")
		}
		return is(rec, "stopping: no new rotation starts; waiting for those in flight")
	})
	if err := l.rig.ResumeHost(2); err != nil {
		t.Fatal(err)
	}
	d.next("the in-flight rotation finished", func(rec map[string]any) bool {
		return is(rec, "rotation finished", "secret", "db-root")
	})
	if code := d.wait(); code != 0 {
		t.Fatalf("rotord run exited %d after SIGTERM; it logged:\n%s", code, d.logged())
	}
	l.noSecrets(d.logged())

	hist := l.history("")
	count := map[string]int{}
	for _, r := range hist {
		if !rotation.State(r.State).Terminal() {
			t.Fatalf("rotation %d of %s left in state %s", r.ID, r.Secret, r.State)
		}
		count[r.Secret]++
	}
	if count["web-root"] < 1 || count["db-root"] < 2 {
		t.Fatalf("rotations per secret %v; want web-root ≥ 1, db-root ≥ 2", count)
	}
	l.requireWorks(ctx, "web-root", accPassword)
	l.requireWorks(ctx, "db-root", accPassword)

	out, errOut, code := l.rotord("history")
	if code != 0 || !strings.Contains(out, "web-root") || !strings.Contains(out, "db-root") || !strings.Contains(out, "committed") {
		t.Fatalf("rotord history: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	l.noSecrets(out + errOut)

	// Rollback restores the password from before web-root's last rotation.
	db := l.openStore(ctx)
	last, err := db.LastCommitted(ctx, "web-root", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := last.Old.Reveal()
	_ = db.Close()
	current := l.password("web-root")
	out, errOut, code = l.rotord("rollback", "web-root")
	if code != 0 {
		t.Fatalf("rotord rollback: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	l.noSecrets(out+errOut, want, current)
	if got := l.requireWorks(ctx, "web-root", current); got != want {
		t.Fatal("Secret Server does not hold the password from before the last rotation")
	}
	after := l.history("web-root")
	if len(after) == 0 || after[0].Kind != string(rotation.KindRollback) || after[0].State != string(rotation.StateCommitted) || after[0].RollbackOf != last.ID {
		t.Fatalf("newest history entry %+v; want a committed rollback of rotation %d", after[0], last.ID)
	}
}

// TestAcceptCheckReportsEveryProblem: check names an ambiguous secret, a
// host with an unknown key and a stopped host, exits 1, and prints no
// password.
func TestAcceptCheckReportsEveryProblem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 3, groups: map[string][]int{"web-root": {0, 1, 2}, "dup-root": {0}}, schedule: "@weekly"})
	// A second dup-root, in another folder.
	l.ss.AddSecret(sstest.SecretSeed{Name: "dup-root", Folder: `\Lab\Other`, Username: accUser, Password: accPassword, Notes: l.rig.Hosts()[0].Addr()})
	// Host 1's key is not in known_hosts; host 2 is down.
	kh := strings.SplitAfter(readFile(t, l.rig.KnownHostsFile()), "\n")
	l.write("known_hosts", kh[0]+kh[2])
	if err := l.rig.StopHost(2); err != nil {
		t.Fatal(err)
	}
	h1, h2 := l.rig.Hosts()[1].Addr(), l.rig.Hosts()[2].Addr()

	out, errOut, code := l.rotord("check")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitFailed, out, errOut)
	}
	for _, want := range []string{
		`secret dup-root: resolve secret "dup-root": secret name is ambiguous`,
		`\Lab\Linux`, `\Lab\Other`,
		"secret web-root: host " + h1 + ": host key unknown",
		"secret web-root: host " + h2 + " unreachable",
		"problems (3)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	l.noSecrets(out + errOut)

	out, errOut, code = l.rotord("check", "--json")
	if code != exitFailed {
		t.Fatalf("--json: exit %d; stderr:\n%s", code, errOut)
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	if len(rep.Problems) != 3 {
		t.Fatalf("problems %q, want 3", rep.Problems)
	}
	l.noSecrets(out + errOut)
}

// TestAcceptCatchUpExactlyOnce: a restart with due times in the future
// rotates nothing; a secret whose due time passed while the daemon was
// down (several slots) is rotated exactly once; a secret already rotated
// for its slot (killed daemon, recovery committed it) is not rotated again.
func TestAcceptCatchUpExactlyOnce(t *testing.T) { eachJournal(t, testCatchUpExactlyOnce) }

func testCatchUpExactlyOnce(t *testing.T, postgres bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 2, groups: map[string][]int{"web-root": {0}, "db-root": {1}}, schedule: "@weekly",
		postgres: postgres})

	// First start: due times recorded at the next weekly slot; nothing rotates.
	from := time.Now()
	d := l.startDaemon()
	seen := map[string]bool{}
	d.next("both secrets scheduled", func(rec map[string]any) bool {
		if is(rec, "secret scheduled") {
			seen[fmt.Sprint(rec["secret"])] = true
		}
		return seen["web-root"] && seen["db-root"]
	})
	d.stop()
	db := l.openStore(ctx)
	dueDB, ok, err := db.NextDue(ctx, "db-root")
	if err != nil || !ok {
		t.Fatalf("db-root due %v (recorded %v, %v)", dueDB, ok, err)
	}
	requireSlot(t, "db-root's first due time", "@weekly", from, time.Now(), dueDB)
	if time.Until(dueDB) < time.Hour {
		// Late on a Saturday the slot is near: keep db-root not due
		// through the next start, which must not rotate it.
		dueDB = time.Now().Add(time.Hour).Truncate(time.Second)
		if err := db.SetNextDue(ctx, "db-root", dueDB); err != nil {
			t.Fatal(err)
		}
	}
	// web-root missed three weekly slots while the daemon was down.
	if err := db.SetNextDue(ctx, "web-root", time.Now().Add(-3*7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	// Second start: web-root is caught up once; db-root, not yet due,
	// is not rotated (it would have started with web-root).
	from = time.Now()
	d = l.startDaemon()
	rec := d.next("web-root's catch-up", func(rec map[string]any) bool { return is(rec, "rotation finished", "secret", "web-root") })
	if rec["state"] != string(rotation.StateCommitted) {
		t.Fatalf("catch-up ended %v; rotord logged:\n%s", rec["state"], d.logged())
	}
	d.stop()
	if n := len(l.history("web-root")); n != 1 {
		t.Fatalf("web-root has %d rotations after the catch-up, want 1", n)
	}
	if n := len(l.history("db-root")); n != 0 {
		t.Fatalf("db-root, not due, has %d rotations, want 0", n)
	}
	l.requireWorks(ctx, "web-root", accPassword)
	db = l.openStore(ctx)
	due, _, _ := db.NextDue(ctx, "web-root")
	requireSlot(t, "web-root's due time after the catch-up", "@weekly", from, time.Now(), due)
	if due, _, _ := db.NextDue(ctx, "db-root"); !due.Equal(dueDB) {
		t.Fatalf("db-root next due moved from %v to %v", dueDB, due)
	}

	// A daemon killed during web-root's rotation leaves the due time
	// before the rotation, which recovery then commits. Make that state:
	// the due time just before the committed rotation started. db-root is
	// due too, as a control that due secrets do rotate.
	hist := l.history("web-root")
	if err := db.SetNextDue(ctx, "web-root", hist[0].Started.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := db.SetNextDue(ctx, "db-root", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	before := l.password("web-root")

	from = time.Now()
	d = l.startDaemon()
	skipped, done := false, false
	d.next("web-root skipped and db-root rotated", func(rec map[string]any) bool {
		switch {
		case is(rec, "rotation already made for this slot; skipped", "secret", "web-root"):
			skipped = true
		case is(rec, "rotation finished", "secret", "web-root"):
			t.Fatalf("web-root rotated again for a slot already rotated; rotord logged:\n%s", d.logged())
		case is(rec, "rotation finished", "secret", "db-root", "state", "committed"):
			done = true
		}
		return skipped && done
	})
	d.stop()
	if n := len(l.history("web-root")); n != 1 {
		t.Fatalf("web-root has %d rotations, want still 1", n)
	}
	if n := len(l.history("db-root")); n != 1 {
		t.Fatalf("db-root has %d rotations, want 1", n)
	}
	if l.password("web-root") != before {
		t.Fatal("web-root's password changed")
	}
	db = l.openStore(ctx)
	defer db.Close()
	due, _, _ = db.NextDue(ctx, "web-root")
	requireSlot(t, "web-root's due time after the skip", "@weekly", from, time.Now(), due)
}

// TestAcceptDryRunChangesNothing: rotate --dry-run leaves the hosts, Secret
// Server and the journal's rotations as they were, and records an audit
// entry.
func TestAcceptDryRunChangesNothing(t *testing.T) { eachJournal(t, testDryRunChangesNothing) }

func testDryRunChangesNothing(t *testing.T, postgres bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 2, groups: map[string][]int{"web-root": {0, 1}}, schedule: "@weekly", postgres: postgres})
	var shadows []string
	for i := range 2 {
		s, err := l.rig.ShadowLine(i)
		if err != nil {
			t.Fatal(err)
		}
		shadows = append(shadows, s)
	}
	out, errOut, code := l.rotord("rotate", "--dry-run", "web-root")
	if code != 0 {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	l.noSecrets(out + errOut)
	for i := range 2 {
		s, err := l.rig.ShadowLine(i)
		if err != nil {
			t.Fatal(err)
		}
		if s != shadows[i] {
			t.Fatalf("host %d's shadow line changed", i)
		}
	}
	if l.password("web-root") != accPassword {
		t.Fatal("Secret Server's password changed")
	}
	if n := l.ss.Calls(sstest.EndpointPutField) + l.ss.Calls(sstest.EndpointPutSecret); n != 0 {
		t.Fatalf("%d writes to Secret Server", n)
	}
	if h := l.history(""); len(h) != 0 {
		t.Fatalf("the journal gained rotations: %+v", h)
	}
	db := l.openStore(ctx)
	defer db.Close()
	evs, err := db.AuditLog(ctx, store.AuditQuery{Secret: "web-root"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e store.AuditEvent) bool { return e.Action == "dry-run" }) {
		t.Fatalf("no dry-run audit entry in %+v", evs)
	}
	l.requireWorks(ctx, "web-root")
}

// TestAcceptWebhookAlerts: a rotation that rolls back and a heartbeat that
// finds drift each POST one alert, over verified TLS, holding no password;
// a committed rotation alerts nobody.
func TestAcceptWebhookAlerts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hook := newWebhook(t)
	l := newLab(t, ctx, labOptions{hosts: 2, groups: map[string][]int{"web-root": {0, 1}}, schedule: "@weekly",
		extra: "notify:\n  webhook_url: " + hook.url + "/hooks/T0KEN-in-path\n"})
	// The webhook's certificate is trusted through the system pool only.
	l.env = []string{"SSL_CERT_FILE=" + l.write("webhook-ca.pem", hook.caPEM)}

	out, errOut, code := l.rotord("rotate", "web-root")
	if code != 0 {
		t.Fatalf("rotate: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if n := hook.count(); n != 0 {
		t.Fatalf("a committed rotation sent %d alerts", n)
	}
	rotated := l.requireWorks(ctx, "web-root", accPassword)

	// Secret Server refuses the new password: the rotation rolls back.
	l.ss.FailNext(sstest.EndpointPutField, 1000, 500, `{"errorCode":"API_InternalError","message":"The database is unavailable."}`)
	out, errOut, code = l.rotord("rotate", "web-root")
	l.ss.FailNext(sstest.EndpointPutField, 0, 0, "")
	if code != exitFailed {
		t.Fatalf("failing rotate: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	l.requireWorks(ctx, "web-root")
	got := hook.alerts(t, 1)
	a := got[0]
	if a.Secret != "web-root" || a.State != string(rotation.StateRolledBack) || a.Rotation == 0 || a.Error == "" ||
		time.Since(a.Time) > time.Minute || a.Time.After(time.Now()) {
		t.Fatalf("alert %+v; want web-root rolled-back with its rotation, error and time", a)
	}
	hist := l.history("web-root")
	if hist[0].ID != a.Rotation || hist[0].State != string(rotation.StateRolledBack) {
		t.Fatalf("alert names rotation %d; the journal's newest is %+v", a.Rotation, hist[0])
	}

	// Host 1's password changed behind rotord's back: heartbeat drift.
	if err := l.rig.SetPassword(1, "Drifted-Pw-5521x"); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = l.rotord("heartbeat", "web-root")
	if code != exitFailed {
		t.Fatalf("heartbeat: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	got = hook.alerts(t, 1)
	if a := got[0]; a.Secret != "web-root" || a.State != alertDrift || a.Error == "" {
		t.Fatalf("alert %+v; want web-root drift", a)
	}
	l.noSecrets(strings.Join(hook.bodies(), "\n"), rotated, "Drifted-Pw-5521x")
	if n := hook.count(); n != 0 {
		t.Fatalf("%d alerts more than expected", n)
	}
}

// TestAcceptKilledMidRotationNotRepeated: the daemon is killed (SIGKILL)
// during a caught-up rotation, after its host changed and while it writes
// Secret Server. The next start's recovery commits that rotation, and the
// catch-up must not rotate the secret a second time for the same slot.
func TestAcceptKilledMidRotationNotRepeated(t *testing.T) {
	eachJournal(t, testKilledMidRotationNotRepeated)
}

func testKilledMidRotationNotRepeated(t *testing.T, postgres bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 1, groups: map[string][]int{"web-root": {0}}, schedule: "@weekly", postgres: postgres})
	db := l.openStore(ctx)
	if err := db.SetNextDue(ctx, "web-root", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	// The vault write hangs, so the kill lands after the host changed and
	// before Secret Server holds the new password.
	l.ss.SetLatency(sstest.EndpointPutField, time.Minute)
	d := l.startDaemon()
	d.next("web-root's host changed", func(rec map[string]any) bool {
		return is(rec, "host state", "secret", "web-root", "state", string(rotation.HostChanged))
	})
	d.signal(syscall.SIGKILL)
	if code := d.wait(); code != -1 {
		t.Fatalf("exit status %d after SIGKILL", code)
	}
	l.ss.SetLatency(sstest.EndpointPutField, 0)
	if l.password("web-root") != accPassword {
		t.Fatal("Secret Server holds the new password already: the kill came too late")
	}
	if h := l.history("web-root"); len(h) != 1 || rotation.State(h[0].State).Terminal() {
		t.Fatalf("history %+v; want one unfinished rotation", h)
	}

	from := time.Now()
	d = l.startDaemon()
	rolled, skipped := false, false
	d.next("recovery and the skipped catch-up", func(rec map[string]any) bool {
		switch {
		case is(rec, "recovered rotation", "secret", "web-root", "state", string(rotation.StateCommitted)):
			rolled = true
		case is(rec, "rotation already made for this slot; skipped", "secret", "web-root"):
			skipped = true
		case is(rec, "scheduled rotation starting", "secret", "web-root") && !rolled:
			t.Fatalf("catch-up started before recovery; rotord logged:\n%s", d.logged())
		case is(rec, "rotation finished", "secret", "web-root"):
			t.Fatalf("web-root rotated a second time for one slot; rotord logged:\n%s", d.logged())
		}
		return rolled && skipped
	})
	d.stop()
	h := l.history("web-root")
	if len(h) != 1 || h[0].State != string(rotation.StateCommitted) {
		t.Fatalf("history %+v; want exactly one committed rotation", h)
	}
	l.requireWorks(ctx, "web-root", accPassword)
	db = l.openStore(ctx)
	defer db.Close()
	due, _, _ := db.NextDue(ctx, "web-root")
	requireSlot(t, "web-root's due time after the skip", "@weekly", from, time.Now(), due)
}

// TestAcceptHistoryAudit: after a rotation, `rotord history --audit` lists
// the audit trail's events of it (started, committed) under the rotation's
// id, as a table and as JSON, and neither holds a password.
func TestAcceptHistoryAudit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 2, groups: map[string][]int{"web-root": {0, 1}}, schedule: "@weekly"})
	out, errOut, code := l.rotord("rotate", "web-root")
	if code != 0 {
		t.Fatalf("rotord rotate: exit %d: %s%s", code, out, errOut)
	}
	l.requireWorks(ctx, "web-root", accPassword)
	rs := l.history("web-root")
	if len(rs) != 1 {
		t.Fatalf("history: %+v; want one rotation", rs)
	}
	id := rs[0].ID

	out, errOut, code = l.rotord("history", "--audit", "web-root")
	if code != 0 {
		t.Fatalf("history --audit: exit %d: %s", code, errOut)
	}
	l.noSecrets(out + errOut)
	for _, want := range []string{"ACTION", "web-root", "rotate", "started", "committed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history --audit lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = l.rotord("history", "--audit", "--json", "web-root")
	if code != 0 {
		t.Fatalf("history --audit --json: exit %d: %s", code, errOut)
	}
	l.noSecrets(out + errOut)
	var evs []jsonAuditEvent
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatalf("history --audit --json: %v\n%s", err, out)
	}
	// Newest first: the commit, then the start.
	var details []string
	for _, e := range evs {
		if e.RotationID == id && e.Action == "rotate" {
			details = append(details, e.Detail)
		}
		if e.Secret != "web-root" {
			t.Fatalf("event of another secret: %+v", e)
		}
	}
	if !slices.Equal(details, []string{"committed", "started"}) {
		t.Fatalf("rotation %d's events: %q; want committed, started\n%s", id, details, out)
	}

	if _, errOut, code := l.rotord("history", "--audit", "--heartbeats"); code == 0 {
		t.Fatalf("history --audit --heartbeats accepted: %s", errOut)
	}
}
