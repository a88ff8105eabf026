package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
	"github.com/rotord/rotord/store/pgtest"
)

// Child processes are this test binary re-executed with helperEnv set;
// TestMain runs the helper instead of the tests.
const (
	helperEnv     = "ROTORD_STORE_HELPER" // "journal" or "lease"
	helperDB      = "ROTORD_STORE_DB"
	helperKey     = "ROTORD_STORE_KEY"
	helperRound   = "ROTORD_STORE_ROUND"
	helperHolder  = "ROTORD_STORE_HOLDER"
	helperClockAt = "ROTORD_STORE_CLOCK" // Unix seconds the child's clock reads
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

var leaseEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func runHelper(mode string) error {
	ctx := context.Background()
	switch mode {
	case "journal":
		key, err := store.LoadKey(os.Getenv(helperKey))
		if err != nil {
			return err
		}
		db, err := store.Open(ctx, os.Getenv(helperDB), store.NewKeyring(key))
		if err != nil {
			return err
		}
		return writeJournal(ctx, db, os.Getenv(helperRound), os.Stdout)
	case "lease":
		now := leaseEpoch
		if s := os.Getenv(helperClockAt); s != "" {
			sec, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return err
			}
			now = time.Unix(sec, 0)
		}
		db, err := store.Open(ctx, os.Getenv(helperDB), nil, store.WithNow(func() time.Time { return now }))
		if err != nil {
			return err
		}
		defer db.Close()
		fmt.Println("ready")
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil || line != "go\n" {
			return fmt.Errorf("waiting for go: %q, %v", line, err)
		}
		_, err = db.Acquire(ctx, "prod-web-root", os.Getenv(helperHolder), time.Hour)
		var held *rotation.LeaseHeldError
		switch {
		case err == nil:
			fmt.Println("won")
		case errors.As(err, &held):
			fmt.Println("held", held.Holder)
		default:
			return err
		}
		return nil
	case "hold":
		// A rotord (the daemon, or a command) with the journal open.
		db, err := store.Open(ctx, os.Getenv(helperDB), nil)
		if err != nil {
			return err
		}
		defer db.Close()
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return nil
	}
	return fmt.Errorf("unknown helper %q", mode)
}

// Passwords of the journal writer derive from the rotation's username, so
// the checker knows what each rotation must unseal to.
func helperPasswords(user string) (old, new, fresh secret.Value) {
	return secret.New("old/" + user), secret.New("new/" + user), secret.New("fresh/" + user)
}

// writeJournal runs whole rotations through the journal until killed,
// printing "committed ID" after each commit is on disk.
func writeJournal(ctx context.Context, db *store.DB, round string, out io.Writer) error {
	hosts := []rotation.HostRecord{
		{Host: rotation.Host{Name: "web01"}}, {Host: rotation.Host{Name: "web02"}}, {Host: rotation.Host{Name: "web03", Port: 2222}},
	}
	for i := 0; ; i++ {
		user := fmt.Sprintf("r%s-%d", round, i)
		old, new, fresh := helperPasswords(user)
		id, err := db.Begin(ctx, rotation.Rotation{
			Secret: "prod-web-root", Username: user, Kind: rotation.KindRotate, Old: old, New: new, Hosts: hosts,
		})
		if err != nil {
			return err
		}
		steps := []func() error{
			func() error { return db.SetState(ctx, id, 0, rotation.StateHostsChanging, "") },
			func() error { return db.SetNew(ctx, id, 0, fresh) },
		}
		for _, h := range hosts {
			h.State = rotation.HostChanged
			h.Attempts = 1
			steps = append(steps, func() error { return db.SetHost(ctx, id, 0, h) })
		}
		steps = append(steps,
			func() error { return db.SetState(ctx, id, 0, rotation.StateCommitting, "") },
			func() error { return db.SetState(ctx, id, 0, rotation.StateCommitted, "") },
			func() error {
				return db.Audit(ctx, rotation.Event{Secret: "prod-web-root", RotationID: id, Actor: "test", Action: "rotate"})
			},
		)
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(out, "committed %d\n", id); err != nil {
			return err
		}
	}
}

func helperCommand(ctx context.Context, t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestCrashMidWrite kills journal writers with SIGKILL while they write and
// checks that the database stays consistent and keeps every commit the
// writer had reported.
func TestCrashMidWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	path, keyPath := filepath.Join(dir, "rotord.db"), filepath.Join(dir, "key")
	if err := store.WriteNewKey(keyPath); err != nil {
		t.Fatal(err)
	}
	key, err := store.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	const rounds, commitsBeforeKill = 3, 15
	var lastReported int64
	for round := range rounds {
		cmd := helperCommand(ctx, t, helperEnv+"=journal", helperDB+"="+path, helperKey+"="+keyPath,
			helperRound+"="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		for n := 0; n < commitsBeforeKill && sc.Scan(); n++ {
			id, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "committed "), 10, 64)
			if err != nil {
				t.Fatalf("helper said %q", sc.Text())
			}
			lastReported = id
		}
		// The writer is now in the middle of its next rotation.
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: writer ended with %v, not by SIGKILL (did it fail early?)", round, err)
		}
		checkJournalAfterCrash(ctx, t, path, key, lastReported, round+1)
	}
}

func checkJournalAfterCrash(ctx context.Context, t *testing.T, path string, key store.Key, lastReported int64, rounds int) {
	t.Helper()
	raw := rawSQL(t, path)
	var integrity string
	if err := raw.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&integrity); err != nil {
		t.Fatal(err)
	}
	if integrity != "ok" {
		t.Fatalf("integrity_check: %s", integrity)
	}
	rows, err := raw.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		t.Fatal(err)
	}
	if rows.Next() {
		t.Error("foreign_key_check reports violations")
	}
	rows.Close()
	_ = raw.Close()

	db, err := store.Open(ctx, path, store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Every rotation on disk is whole: its sealed passwords unseal to the
	// ones written and it has all its hosts.
	var n int
	for before := int64(0); ; {
		page, err := db.History(ctx, rotation.HistoryQuery{BeforeID: before, Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, h := range page {
			n++
			before = h.ID
			r, err := db.Get(ctx, h.ID)
			if err != nil {
				t.Fatalf("rotation %d: %v", h.ID, err)
			}
			old, new, fresh := helperPasswords(r.Username)
			if !r.Old.Equal(old) || !(r.New.Equal(new) || r.New.Equal(fresh)) {
				t.Errorf("rotation %d (%s): passwords are not the ones written", r.ID, r.Username)
			}
			if len(r.Hosts) != 3 {
				t.Errorf("rotation %d: %d hosts, want 3", r.ID, len(r.Hosts))
			}
			if r.State == rotation.StateCommitted {
				if !r.New.Equal(fresh) {
					t.Errorf("committed rotation %d lacks its last new password", r.ID)
				}
				for _, hr := range r.Hosts {
					if hr.State != rotation.HostChanged {
						t.Errorf("committed rotation %d: host %s %s", r.ID, hr.Host, hr.State)
					}
				}
			}
		}
	}
	if n < int(lastReported) {
		t.Errorf("%d rotations on disk, the writers reported %d", n, lastReported)
	}
	// The last commit reported before the kill is there and readable.
	r, err := db.Get(ctx, lastReported)
	if err != nil {
		t.Fatal(err)
	}
	_, _, fresh := helperPasswords(r.Username)
	if r.State != rotation.StateCommitted || !r.New.Equal(fresh) {
		t.Errorf("last reported commit %d: state %s", lastReported, r.State)
	}
	last, err := db.LastCommitted(ctx, "prod-web-root", 0)
	if err != nil || last.ID < lastReported {
		t.Errorf("LastCommitted = %d, %v; want at least %d", last.ID, err, lastReported)
	}
	// At most the rotation in flight at each kill is unfinished.
	unfinished, err := db.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unfinished) > rounds {
		t.Errorf("%d unfinished rotations after %d kills", len(unfinished), rounds)
	}
}

// TestLeaseContention races processes for one lease on a fresh database
// (so their migrations race too): exactly one wins. A process whose clock
// is past the lease's expiry then takes it over.
func TestLeaseContention(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "rotord.db")

	type child struct {
		holder string
		cmd    *exec.Cmd
		in     io.WriteCloser
		out    *bufio.Scanner
	}
	start := func(holder string, env ...string) *child {
		cmd := helperCommand(ctx, t, append(env, helperEnv+"=lease", helperDB+"="+path, helperHolder+"="+holder)...)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return &child{holder: holder, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	}
	line := func(c *child) string {
		if !c.out.Scan() {
			t.Fatalf("%s said nothing: %v", c.holder, c.out.Err())
		}
		return c.out.Text()
	}
	finish := func(c *child) {
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("%s: %v", c.holder, err)
		}
	}

	var children []*child
	for i := range 4 {
		children = append(children, start(fmt.Sprintf("host%d:%d", i, 100+i)))
	}
	for _, c := range children {
		if got := line(c); got != "ready" {
			t.Fatalf("%s: %q, want ready", c.holder, got)
		}
	}
	for _, c := range children {
		if _, err := io.WriteString(c.in, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	var winners []string
	results := map[string]string{}
	for _, c := range children {
		got := line(c)
		results[c.holder] = got
		if got == "won" {
			winners = append(winners, c.holder)
		}
		finish(c)
	}
	if len(winners) != 1 {
		t.Fatalf("winners %v, want exactly one (results %v)", winners, results)
	}
	for holder, got := range results {
		if holder != winners[0] && got != "held "+winners[0] {
			t.Errorf("%s: %q, want held %s", holder, got, winners[0])
		}
	}

	// Within the hour the lease is still held; after it, it is taken over.
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{59 * time.Minute, "held " + winners[0]},
		{61 * time.Minute, "won"},
	} {
		c := start("late", helperClockAt+"="+strconv.FormatInt(leaseEpoch.Add(tc.after).Unix(), 10))
		if got := line(c); got != "ready" {
			t.Fatalf("late: %q", got)
		}
		if _, err := io.WriteString(c.in, "go\n"); err != nil {
			t.Fatal(err)
		}
		if got := line(c); got != tc.want {
			t.Errorf("after %s: %q, want %q", tc.after, got, tc.want)
		}
		finish(c)
	}
	db, err := store.Open(ctx, path, nil, store.WithNow(func() time.Time { return leaseEpoch.Add(61 * time.Minute) }))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var held *rotation.LeaseHeldError
	if _, err := db.Acquire(ctx, "prod-web-root", winners[0], time.Minute); !errors.As(err, &held) || held.Holder != "late" {
		t.Errorf("first winner after takeover: %v, want held by late", err)
	}
}

// TestRekeyRefusedWhileInUse: rekey while another process (a running
// daemon) has the journal open is refused and re-seals nothing — else the
// other process would go on sealing with the old key; once it has stopped,
// rekey works.
func TestRekeyRefusedWhileInUse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path, keyPath := filepath.Join(dir, "rotord.db"), filepath.Join(dir, "key")
	if err := store.WriteNewKey(keyPath); err != nil {
		t.Fatal(err)
	}
	oldKey, err := store.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, path, store.NewKeyring(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Begin(ctx, sampleRotation("web")); err != nil {
		t.Fatal(err)
	}

	daemon := helperCommand(ctx, t, helperEnv+"=hold", helperDB+"="+path)
	stdin, err := daemon.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("daemon said %q, %v", line, err)
	}
	newKey := mustKey(t)
	_, err = db.Rekey(ctx, newKey)
	if !errors.Is(err, store.ErrInUse) || !strings.Contains(err.Error(), "rotord run") {
		t.Errorf("Rekey while the daemon runs: %v, want ErrInUse naming the daemon", err)
	}
	keyIDs := func() []string {
		var ids []string
		rows, err := rawSQL(t, path).Query(`SELECT DISTINCT key_id FROM sealed_passwords`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			ids = append(ids, s)
		}
		return ids
	}
	if ids := keyIDs(); len(ids) != 1 || ids[0] != oldKey.ID() {
		t.Errorf("key ids after a refused rekey: %v, want only the old key %s", ids, oldKey.ID())
	}

	_ = stdin.Close()
	if err := daemon.Wait(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	if n, err := db.Rekey(ctx, newKey); err != nil || n != 2 {
		t.Fatalf("Rekey after the daemon stopped: %d, %v", n, err)
	}
	if ids := keyIDs(); len(ids) != 1 || ids[0] != newKey.ID() {
		t.Errorf("key ids after rekey: %v, want only the new key %s", ids, newKey.ID())
	}
}
