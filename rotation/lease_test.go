package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
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

// A rotation whose lease is lost in the middle of the fan-out touches no
// host and not the vault again: another process may hold the secret now
// (or will once the lease expires). The lease is lost either because
// another holder took it, or because renewals kept failing and it would
// expire. The journal keeps the rotation, and the next holder recovers it.
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
			e := newEngine(t, testConfig(func(c *rotation.Config) {
				c.RetryBase = time.Millisecond
				c.Concurrency = 1
				c.Generator = rotation.GeneratorServer
				c.LeaseTTL = 300 * time.Millisecond
			}), rotation.Deps{Vault: f.vault, Hosts: f.hosts, Store: leases, Log: slog.New(logs)})
			// The canary h00 changes; h01 is in passwd when the lease goes.
			changed := map[string]bool{}
			loginsAtLoss := -1
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
					f.hosts.mu.Lock()
					loginsAtLoss = f.hosts.logins
					f.hosts.mu.Unlock()
				}
			}
			res := e.Rotate(context.Background(), spec, rotation.RotateOptions{})
			if !errors.Is(res.Err, rotation.ErrFenced) {
				t.Fatalf("state %s err %v, want ErrFenced: the rotation is left to the next holder", res.State, res.Err)
			}
			if changed["h02"] || changed["h03"] || changed["h00"] && f.hosts.pw("h00") == oldPw {
				t.Errorf("hosts touched after the lease was lost: %v", changed)
			}
			if f.hosts.logins != loginsAtLoss {
				t.Errorf("%d logins after the lease was lost, want none", f.hosts.logins-loginsAtLoss)
			}
			if f.vault.writes != 0 || f.vault.password(f.id) != oldPw {
				t.Errorf("the vault was written after the lease was lost")
			}
			if tc.name == "RenewalKeepsFailing" {
				// Renewals every TTL/3: giving up after the second failure
				// (or earlier, at half the TTL) is before the lease expires.
				if n := leases.renewals(); n > 2 {
					t.Errorf("%d renewals failed before the rotation gave up, want at most 2", n)
				}
			}
			// The next holder, once the lease has expired, finds the
			// rotation unfinished with both passwords and puts every host
			// back in line with the vault.
			f.journal.expireLeases()
			next := newEngine(t, testConfig(func(c *rotation.Config) {
				c.RetryBase = time.Millisecond
				c.Generator = rotation.GeneratorServer
				c.Holder = "next/1/n"
			}), rotation.Deps{Vault: f.vault, Hosts: f.hosts, Store: f.journal})
			for _, r := range next.Recover(context.Background(), "test") {
				if r.Err != nil {
					t.Errorf("recovery of rotation %d: %v", r.RotationID, r.Err)
				}
			}
			f.assertAll(t, oldPw)
		})
	}
}

// sharedVault runs hooks before the fake vault's reads and writes: one
// engine's view of a vault that several engines share.
type sharedVault struct {
	*fakeVault
	beforeRead  func()
	beforeWrite func() error
}

func (v *sharedVault) Read(ctx context.Context, id int, field string) (rotation.Secret, error) {
	if v.beforeRead != nil {
		v.beforeRead()
	}
	return v.fakeVault.Read(ctx, id, field)
}

func (v *sharedVault) Write(ctx context.Context, s rotation.Secret, pw secret.Value, comment string) error {
	if v.beforeWrite != nil {
		if err := v.beforeWrite(); err != nil {
			return err
		}
	}
	return v.fakeVault.Write(ctx, s, pw, comment)
}

// Two processes on one journal file: A changed every host and is writing
// the vault when its lease expires; B takes the lease over and recovers
// the rotation, rolling it forward. A's vault write fails and A would
// roll back — putting the hosts back while B commits the new password.
// A's journal writes are fenced off instead: A touches neither the hosts
// nor the vault again, and the journal, the hosts and the vault agree.
func TestFencedHolderStopsAfterTakeover(t *testing.T) {
	ctx := context.Background()
	key, err := store.NewKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rotord.db")
	dbA, err := store.Open(ctx, path, store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	defer dbA.Close()
	// B's clock is an hour ahead: A's lease (one minute) has expired for B.
	dbB, err := store.Open(ctx, path, store.NewKeyring(key), store.WithNow(func() time.Time { return time.Now().Add(time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	defer dbB.Close()

	vault, hosts := newFakeVault(), newFakeHosts()
	hosts.add("h00", oldPw)
	hosts.add("h01", oldPw)
	id := vault.add("prod-root", "root", oldPw, "h00", "h01")
	vaultA, vaultB := &sharedVault{fakeVault: vault}, &sharedVault{fakeVault: vault}
	cfg := func(holder string) rotation.Config {
		return testConfig(func(c *rotation.Config) {
			c.RetryBase = time.Millisecond
			c.Concurrency = 1
			c.Generator = rotation.GeneratorServer
			c.LeaseTTL = time.Minute
			c.Holder = holder
		})
	}
	a := newEngine(t, cfg("host-a/1/a"), rotation.Deps{Vault: vaultA, Hosts: hosts, Store: dbA})
	b := newEngine(t, cfg("host-b/1/b"), rotation.Deps{Vault: vaultB, Hosts: hosts, Store: dbB})

	bCommitting, resumeB := make(chan struct{}), make(chan struct{})
	bDone := make(chan []rotation.Result, 1)
	var once sync.Once
	vaultB.beforeRead = func() { // B is about to write the vault
		once.Do(func() { close(bCommitting); <-resumeB })
	}
	aWrites := 0
	vaultA.beforeWrite = func() error {
		aWrites++
		if aWrites > 1 {
			t.Error("A wrote the vault after its lease was taken over")
			return nil
		}
		go func() { bDone <- b.Recover(ctx, "test") }()
		<-bCommitting
		return fmt.Errorf("secret server: 503: %w", rotation.ErrVaultUnavailable)
	}
	resA := a.Rotate(ctx, spec, rotation.RotateOptions{})
	close(resumeB)
	resB := <-bDone
	if !errors.Is(resA.Err, rotation.ErrFenced) {
		t.Errorf("A: state %s, err %v; want ErrFenced", resA.State, resA.Err)
	}
	if len(resB) != 1 || resB[0].Err != nil || resB[0].State != rotation.StateCommitted {
		t.Fatalf("B's recovery: %+v, want the rotation committed", resB)
	}
	r, err := dbA.Get(ctx, resB[0].RotationID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != rotation.StateCommitted {
		t.Errorf("journal: %s, want committed", r.State)
	}
	want := vault.password(id)
	if want == oldPw || want != r.New.Reveal() {
		t.Errorf("vault holds %s, want the rotation's new password", redact(want))
	}
	for _, h := range []string{"h00", "h01"} {
		if got := hosts.pw(h); got != want {
			t.Errorf("host %s holds %s, the vault %s", h, redact(got), redact(want))
		}
	}
	// A's generation (the first holder: 1) can write no more of the rotation.
	if err := dbA.SetState(ctx, r.ID, 1, rotation.StateRolledBack, ""); !errors.Is(err, rotation.ErrFenced) {
		t.Errorf("a write by A's generation: %v, want ErrFenced", err)
	}
}

// The daemon rotating prod-root and an operator's `rotord rotate PROD-ROOT`
// are two rotations of one secret: the second finds the lease held, and
// the journal files the first under either spelling.
func TestLeaseIgnoresCaseOfName(t *testing.T) {
	ctx := context.Background()
	key, err := store.NewKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "rotord.db"), store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	vault, hosts := newFakeVault(), newFakeHosts()
	hosts.add("h00", oldPw)
	id := vault.add("prod-root", "root", oldPw, "h00")
	cfg := func(holder string) rotation.Config {
		return testConfig(func(c *rotation.Config) {
			c.RetryBase = time.Millisecond
			c.Generator = rotation.GeneratorServer
			c.Holder = holder
		})
	}
	daemon := newEngine(t, cfg("daemon-host/1/d"), rotation.Deps{Vault: vault, Hosts: hosts, Store: db})
	operator := newEngine(t, cfg("laptop/1/o"), rotation.Deps{Vault: vault, Hosts: hosts, Store: db})

	var second rotation.Result
	var started atomic.Bool
	hosts.hosts["h00"].onChange = func() { // the daemon is mid-rotation
		if started.CompareAndSwap(false, true) {
			second = operator.Rotate(ctx, rotation.SecretSpec{Name: "PROD-ROOT"}, rotation.RotateOptions{})
		}
	}
	first := daemon.Rotate(ctx, rotation.SecretSpec{Name: "prod-root"}, rotation.RotateOptions{})
	if first.Err != nil {
		t.Fatalf("the daemon's rotation: %v", first.Err)
	}
	var held *rotation.LeaseHeldError
	if !errors.As(second.Err, &held) || held.Holder != "daemon-host/1/d" {
		t.Errorf("the operator's rotation under another spelling: %v, want the lease held by the daemon", second.Err)
	}
	if second.RotationID != 0 || vault.writes != 1 {
		t.Errorf("the second rotation journaled %d, the vault was written %d times; want nothing and once", second.RotationID, vault.writes)
	}
	if got := hosts.pw("h00"); got != vault.password(id) || got == oldPw {
		t.Errorf("h00 holds %s, the vault %s", redact(got), redact(vault.password(id)))
	}
	for _, name := range []string{"prod-root", "PROD-ROOT"} {
		h, err := db.History(ctx, rotation.HistoryQuery{Secret: name})
		if err != nil || len(h) != 1 || h[0].ID != first.RotationID {
			t.Errorf("history of %q: %v, %v", name, h, err)
		}
	}
}
