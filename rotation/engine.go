package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/rotord/rotord/rotation/secret"
)

// SecretSpec is one secret the operator asked rotord to rotate, with the
// per-secret settings that override the engine's defaults.
type SecretSpec struct {
	Name       string
	HostsField string // slug of the field listing the hosts; "" for the default
	Port       int    // SSH port for hosts listed without one; 0 for the default
	Length     int    // new password length; 0 for the default
	Generator  string // "server", "local" or "auto"; "" for the default
}

// Account is a login used on hosts, such as the privileged reconcile account.
type Account struct {
	User     string
	Password secret.Value
}

// Generators of new passwords.
const (
	GeneratorServer = "server" // the vault's generator for the password field
	GeneratorLocal  = "local"  // crypto/rand in rotord
	GeneratorAuto   = "auto"   // the vault's up to ServerMaxLength, local above
)

// ServerMaxLength is the longest password the auto generator asks the
// vault for; longer ones are generated locally.
const ServerMaxLength = 20

// Config holds the engine's settings. Start from DefaultConfig: New takes
// every value as given, so a zero is a zero (no retries, no settling).
type Config struct {
	Port           int           // default SSH port
	Concurrency    int           // SSH operations at once, across all secrets (at least 1)
	SecretDeadline time.Duration // deadline for starting work on a secret's hosts
	LeaseTTL       time.Duration // lease lifetime, renewed while a rotation runs
	Length         int           // default new password length
	Generator      string        // GeneratorServer, GeneratorLocal or GeneratorAuto
	PolicyRetries  int           // fresh passwords after a policy rejection (0: none)
	HostRetries    int           // attempts per login on transient network errors (at least 1)
	RetryBase      time.Duration // first backoff between such attempts
	// Settle is how long a host's passwd may go on after its dialogue
	// ended without an answer: a host whose passwd outcome is unknown
	// (a step timed out, the connection broke, rotord was killed) is probed
	// no sooner than this after, so that a change still landing on the host
	// does not make its probes refuse both passwords, or find the old one
	// just before the new one lands.
	Settle     time.Duration
	HostsField string       // default hosts field slug ("" leaves it to the vault)
	Comment    string       // comment for restricted secrets
	Holder     string       // lease holder name, an instance id
	Reconcile  *Account     // optional privileged account for reverts and reconcile
	Specs      []SecretSpec // the configured secrets, for recovery of their settings
	Now        func() time.Time

	// Progress, if set, is called as hosts finish during a change.
	Progress func(secretName string, done, total, failed int)
}

// DefaultConfig returns the engine's settings with every default filled
// in: port 22, 32 SSH operations at once, a 15m deadline, 2m leases,
// 24-character passwords from the auto generator, 3 fresh passwords after
// a policy rejection, 3 attempts per login from a 500ms backoff, 5s to
// settle, this process's DefaultHolder and the wall clock.
func DefaultConfig() Config {
	return Config{
		Port:           22,
		Concurrency:    32,
		SecretDeadline: 15 * time.Minute,
		LeaseTTL:       2 * time.Minute,
		Length:         24,
		Generator:      GeneratorAuto,
		PolicyRetries:  3,
		HostRetries:    3,
		RetryBase:      500 * time.Millisecond,
		Settle:         5 * time.Second,
		Comment:        "rotord password rotation",
		Holder:         DefaultHolder(),
		Now:            time.Now,
	}
}

// Validate reports what in c no engine can run with (New calls it).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Port < 1 || c.Port > 65535 {
		bad("port %d is not a TCP port", c.Port)
	}
	if c.Concurrency < 1 {
		bad("concurrency %d: at least 1", c.Concurrency)
	}
	if c.HostRetries < 1 {
		bad("host retries %d: at least 1 (the first attempt)", c.HostRetries)
	}
	if c.PolicyRetries < 0 {
		bad("policy retries %d is negative", c.PolicyRetries)
	}
	if c.SecretDeadline <= 0 {
		bad("secret deadline %s: must be positive", c.SecretDeadline)
	}
	if c.LeaseTTL <= 0 {
		bad("lease lifetime %s: must be positive", c.LeaseTTL)
	}
	if c.RetryBase < 0 {
		bad("retry backoff %s is negative", c.RetryBase)
	}
	if c.Settle < 0 {
		bad("settle time %s is negative", c.Settle)
	}
	if c.Length < 1 {
		bad("password length %d: at least 1", c.Length)
	}
	switch c.Generator {
	case GeneratorServer, GeneratorLocal, GeneratorAuto:
	default:
		bad("unknown generator %q", c.Generator)
	}
	if c.Holder == "" {
		bad("no lease holder name")
	}
	if c.Now == nil {
		bad("no clock")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("engine configuration: %w", err)
	}
	return nil
}

// Store is what the engine keeps in its database: the journal of
// rotations, the secrets' leases and the scheduler's state.
type Store interface {
	Journal
	Leases
	ScheduleState
}

// Deps are the adapters an engine works through.
type Deps struct {
	Vault Vault        // the secrets (Secret Server)
	Hosts HostChanger  // the hosts (SSH)
	Store Store        // the journal, leases and scheduler state (the database)
	Log   *slog.Logger // nil: no logging
}

// Engine runs rotations. It is safe for concurrent use; rotations of
// different secrets run in parallel, sharing the SSH concurrency cap.
type Engine struct {
	cfg     Config
	vault   Vault
	hosts   HostChanger
	store   Store
	log     *slog.Logger
	slots   chan struct{}
	refused refusedMemo // what scheduled heartbeats found refused
}

// New returns an engine over the given adapters, with cfg as given (see
// DefaultConfig). A setting no engine can run with (a negative duration, no
// concurrency) is an error.
func New(cfg Config, d Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Vault == nil || d.Hosts == nil || d.Store == nil {
		return nil, errors.New("engine: a vault, a host changer and a store are required")
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		cfg: cfg, vault: d.Vault, hosts: d.Hosts, store: d.Store, log: log,
		slots: make(chan struct{}, cfg.Concurrency),
	}, nil
}

// RotateOptions modify one Rotate call.
type RotateOptions struct {
	DryRun bool   // pre-flight only: nothing changes but an audit entry
	Actor  string // who asked, for the audit trail
}

// HostResult is one host's fate in a rotation.
type HostResult struct {
	Host    Host
	State   HostState
	Outcome string // the last passwd outcome or login error, never a password
}

// Result is what a rotation, rollback or recovery did.
type Result struct {
	Secret     string
	RotationID int64 // 0 when nothing was journaled (pre-flight failure, dry run)
	Kind       Kind
	State      State // "" when nothing was journaled
	Hosts      []HostResult
	Warnings   []string // things the operator should know, such as vault auto-change
	Err        error    // nil when committed (or, for a dry run, when every check passed)
}

// Errors in Result.Err, for errors.Is.
var (
	// ErrRolledBack: the rotation failed and every host was put back.
	ErrRolledBack = errors.New("rotation rolled back")
	// ErrNeedsReconcile: some host could not be put in a known state; both
	// passwords are kept in the journal and later runs reconcile it.
	ErrNeedsReconcile = errors.New("rotation needs reconcile")
	// ErrPreflight: a host failed the pre-flight; nothing was changed.
	ErrPreflight = errors.New("pre-flight failed")
	// ErrSecretChanged: someone changed the secret in the vault while the
	// rotation ran; it was not overwritten. Vault.Write returns it too,
	// when its compare-and-swap finds the secret edited.
	ErrSecretChanged = errors.New("secret changed in the vault during the rotation")
	// ErrParked: the secret has a rotation that needs reconcile; no new
	// rotation starts until it is reconciled.
	ErrParked = errors.New("secret is parked until its last rotation is reconciled")
)

// slot takes one of the shared SSH operation slots.
func (e *Engine) slot(ctx context.Context) (func(), error) {
	select {
	case e.slots <- struct{}{}:
		return func() { <-e.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// backoff waits before retry number attempt (0-based): exponential from
// RetryBase with ±50% jitter, capped at 30s.
func (e *Engine) backoff(ctx context.Context, attempt int) error {
	if e.cfg.RetryBase == 0 {
		return ctx.Err()
	}
	d := e.cfg.RetryBase << attempt
	if d > 30*time.Second || d <= 0 {
		d = 30 * time.Second
	}
	d = d/2 + time.Duration(mrand.Int64N(int64(d)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// login logs into h, retrying transient network errors with backoff. It
// never retries a refused password: that would feed pam_faillock.
func (e *Engine) login(ctx context.Context, h Host, user string, pw secret.Value) (HostSession, error) {
	var err error
	for attempt := 0; attempt < e.cfg.HostRetries; attempt++ {
		if attempt > 0 {
			if werr := e.backoff(ctx, attempt-1); werr != nil {
				return nil, err
			}
		}
		var release func()
		release, err = e.slot(ctx)
		if err != nil {
			return nil, err
		}
		var s HostSession
		s, err = e.hosts.Login(ctx, h, user, pw)
		if err == nil {
			err = s.Check(ctx)
			if err != nil {
				_ = s.Close()
			}
		}
		release()
		if err == nil {
			return s, nil
		}
		// Only a login that never sent the password is tried again: one
		// whose answer never came may have been refused already.
		if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrLoginUnknown) {
			return nil, err
		}
	}
	return nil, err
}

// verify proves pw logs into h with a fresh connection, then closes it.
func (e *Engine) verify(ctx context.Context, h Host, user string, pw secret.Value) error {
	s, err := e.login(ctx, h, user, pw)
	if err != nil {
		return err
	}
	return s.Close()
}

// withHostPorts fills in the default port of hosts listed without one,
// brings every name to its canonical spelling (canonicalHost) and drops
// the duplicates that makes: "web01", "WEB01:22" and "web01." are one
// host when the default port is 22, and changing it twice would fail the
// rotation on every run.
func (e *Engine) withHostPorts(hosts []Host, port int) []Host {
	if port == 0 {
		port = e.cfg.Port
	}
	out := make([]Host, 0, len(hosts))
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		h = canonicalHost(h, port)
		if k := h.String(); !seen[k] {
			seen[k] = true
			out = append(out, h)
		}
	}
	return out
}

// canonicalHost returns the one spelling of h's endpoint: an IP literal
// in its canonical text form (IPv6 compressed and in lower case), a DNS
// name in lower case without a trailing dot, and port when h has none.
func canonicalHost(h Host, port int) Host {
	name := strings.TrimSuffix(strings.TrimSpace(h.Name), ".")
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")); err == nil {
		name = a.String()
	} else {
		name = strings.ToLower(name)
	}
	h.Name = name
	if h.Port == 0 {
		h.Port = port
	}
	return h
}

// specFor returns the configured spec of a secret, or a bare one.
func (e *Engine) specFor(name string) SecretSpec {
	for _, s := range e.cfg.Specs {
		if strings.EqualFold(s.Name, name) {
			return s
		}
	}
	return SecretSpec{Name: name}
}

func (e *Engine) hostsField(spec SecretSpec) string {
	if spec.HostsField != "" {
		return spec.HostsField
	}
	return e.cfg.HostsField
}

// readSecret resolves the spec's name (through the id cache) and reads the
// secret, with the default port filled into its hosts.
func (e *Engine) readSecret(ctx context.Context, spec SecretSpec) (Secret, error) {
	id, cached, err := e.store.SecretID(ctx, spec.Name)
	if err != nil {
		e.log.Warn("secret id cache unreadable", "secret", spec.Name, "err", err)
		cached = false
	}
	if cached {
		s, err := e.vault.Read(ctx, id, e.hostsField(spec))
		if err == nil && strings.EqualFold(s.Name, spec.Name) {
			s.Hosts = e.withHostPorts(s.Hosts, spec.Port)
			return s, nil
		}
		if err != nil && !errors.Is(err, ErrAccessDenied) && !errors.Is(err, ErrSecretNotFound) {
			return Secret{}, fmt.Errorf("read secret %q: %w", spec.Name, err)
		}
		// Renamed, deleted or no longer ours: resolve again.
	}
	id, err = e.vault.Resolve(ctx, spec.Name)
	if err != nil {
		return Secret{}, err // not wrapped again: the vault names the secret it resolved
	}
	if err := e.store.SetSecretID(ctx, spec.Name, id); err != nil {
		e.log.Warn("secret id not cached", "secret", spec.Name, "err", err)
	}
	s, err := e.vault.Read(ctx, id, e.hostsField(spec))
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %q: %w", spec.Name, err)
	}
	s.Hosts = e.withHostPorts(s.Hosts, spec.Port)
	return s, nil
}

// hold is a secret's lease held by this engine.
type hold struct {
	gen     int64           // the lease's fencing generation
	lost    <-chan struct{} // closed if the lease is lost while held
	release func()          // stops the renewals and gives the lease up
}

// lease takes the secret's lease, taking over one left by a dead process
// of this machine, and keeps it renewed until the hold is released.
func (e *Engine) lease(ctx context.Context, name string) (*hold, error) {
	gen, err := e.store.Acquire(ctx, name, e.cfg.Holder, e.cfg.LeaseTTL)
	var held *LeaseHeldError
	if errors.As(err, &held) && holderDead(held.Holder) {
		e.log.Info("taking over the lease of a dead process", "secret", name, "holder", held.Holder)
		if err = e.store.Release(ctx, name, held.Holder); err == nil {
			gen, err = e.store.Acquire(ctx, name, e.cfg.Holder, e.cfg.LeaseTTL)
		}
	}
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	lostc := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(e.cfg.LeaseTTL / 3)
		defer t.Stop()
		// Renewals that keep failing (the database locked, a disk stall) do
		// not extend the lease; once it could expire before the next try,
		// another process may take it, so the rotation is given up first:
		// after a second failure in a row, or half the lifetime without a
		// renewal, whichever comes first.
		renewed, failures := time.Now(), 0
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sent := time.Now()
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.LeaseTTL/6)
				err := e.store.Renew(rctx, name, e.cfg.Holder, e.cfg.LeaseTTL)
				cancel()
				var held *LeaseHeldError
				switch {
				case errors.As(err, &held):
					close(lostc)
					e.log.Error("lease lost", "secret", name, "holder", held.Holder, "alert", true)
					return
				case err != nil:
					failures++
					if failures >= 2 || time.Since(renewed) >= e.cfg.LeaseTTL/2 {
						close(lostc)
						e.log.Error("lease lost: renewal keeps failing; giving up before it expires", "secret", name, "err", err, "alert", true)
						return
					}
					e.log.Warn("lease renewal failed", "secret", name, "err", err)
				default:
					renewed, failures = sent, 0
				}
			}
		}
	}()
	release := func() {
		close(done)
		wg.Wait()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := e.store.Release(rctx, name, e.cfg.Holder); err != nil {
			e.log.Warn("lease release failed", "secret", name, "err", err)
		}
	}
	return &hold{gen: gen, lost: lostc, release: release}, nil
}

func (e *Engine) audit(ctx context.Context, ev Event) {
	ev.Time = e.cfg.Now()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.store.Audit(actx, ev); err != nil {
		e.log.Warn("audit event not recorded", "secret", ev.Secret, "action", ev.Action, "err", err)
	}
}

// settle recovers or reconciles earlier rotations of the secret before a
// new change starts, and refuses to start while one stays unresolved,
// under the secret's lease l.
func (e *Engine) settle(ctx context.Context, name, actor string, l *hold) error {
	var pending []Rotation
	unf, err := e.store.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("read unfinished rotations: %w", err)
	}
	nr, err := e.store.NeedsReconcile(ctx)
	if err != nil {
		return fmt.Errorf("read rotations needing reconcile: %w", err)
	}
	for _, r := range append(unf, nr...) {
		if SecretKey(r.Secret) == SecretKey(name) {
			pending = append(pending, r)
		}
	}
	for _, r := range pending {
		res := e.resume(ctx, r, actor, l)
		if res.State != StateCommitted && res.State != StateRolledBack {
			return fmt.Errorf("%w: rotation %d is %s", ErrParked, r.ID, res.State)
		}
	}
	return nil
}

// Rotate rotates one secret now: a new password on every host of the
// secret and then in the vault, or no change at all.
func (e *Engine) Rotate(ctx context.Context, spec SecretSpec, opts RotateOptions) Result {
	res := Result{Secret: spec.Name, Kind: KindRotate}
	l, err := e.lease(ctx, spec.Name)
	if err != nil {
		res.Err = err
		return res
	}
	defer l.release()
	if !opts.DryRun {
		if err := e.settle(ctx, spec.Name, opts.Actor, l); err != nil {
			res.Err = err
			return res
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, e.cfg.SecretDeadline)
	defer cancel()

	s, err := e.readSecret(startCtx, spec)
	if err != nil {
		res.Err = err
		e.audit(ctx, Event{Secret: spec.Name, Actor: opts.Actor, Action: "rotate", Detail: "failed: " + err.Error()})
		return res
	}
	if s.AutoChangeEnabled {
		w := "Secret Server auto-change is enabled on this secret; two rotators on one account fight"
		res.Warnings = append(res.Warnings, w)
		e.log.Warn("vault auto-change enabled", "secret", spec.Name)
	}
	lifelines, hostRes, err := e.preflight(startCtx, s)
	defer closeAll(lifelines)
	res.Hosts = hostRes
	if err != nil || opts.DryRun {
		action := "rotate"
		detail := "pre-flight failed: " + errText(err)
		if opts.DryRun {
			action = "dry-run"
			detail = "pre-flight ok"
			if err != nil {
				detail = "pre-flight failed: " + err.Error()
			}
		}
		e.audit(ctx, Event{Secret: spec.Name, Actor: opts.Actor, Action: action, Detail: detail})
		res.Err = err
		return res
	}
	gen := func(ctx context.Context) (secret.Value, error) { return e.generate(ctx, spec, s) }
	newPw, err := gen(startCtx)
	if err != nil {
		res.Err = err
		return res
	}
	out := e.change(ctx, startCtx, l.lost, changeReq{
		kind: KindRotate, secret: s, spec: spec, newPw: newPw, fresh: gen,
		lifelines: lifelines, actor: opts.Actor, gen: l.gen,
	})
	out.Warnings = append(res.Warnings, out.Warnings...)
	return out
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// generate returns a new password for the secret under the spec's policy.
func (e *Engine) generate(ctx context.Context, spec SecretSpec, s Secret) (secret.Value, error) {
	length := spec.Length
	if length == 0 {
		length = e.cfg.Length
	}
	gen := spec.Generator
	if gen == "" {
		gen = e.cfg.Generator
	}
	if gen == GeneratorAuto {
		gen = GeneratorServer
		if length > ServerMaxLength {
			gen = GeneratorLocal
		}
	}
	for i := 0; i < 5; i++ {
		var pw secret.Value
		var err error
		if gen == GeneratorServer {
			pw, err = e.vault.Generate(ctx, s)
			if err != nil {
				return secret.Value{}, fmt.Errorf("generate password: %w", err)
			}
			if checkPassword(pw) != nil {
				// The vault's character set has characters passwd would
				// mangle: fall back to the local generator, same length.
				e.log.Warn("vault generated an unusable password; generating locally", "secret", s.Name)
				pw, err = GeneratePassword(max(pw.Len(), MinLength))
			}
		} else {
			pw, err = GeneratePassword(length)
		}
		if err != nil {
			return secret.Value{}, fmt.Errorf("generate password: %w", err)
		}
		if !pw.Equal(s.Password) {
			return pw, nil
		}
	}
	return secret.Value{}, errors.New("generate password: the generator keeps returning the current password")
}

// preflight logs into every host with the current password, concurrently,
// and keeps the sessions open as lifelines (aligned with s.Hosts). Any
// failure closes them all.
func (e *Engine) preflight(ctx context.Context, s Secret) ([]HostSession, []HostResult, error) {
	sessions := make([]HostSession, len(s.Hosts))
	errs := make([]error, len(s.Hosts))
	var wg sync.WaitGroup
	for i, h := range s.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sessions[i], errs[i] = e.login(ctx, h, s.Username, s.Password)
		}()
	}
	wg.Wait()
	results := make([]HostResult, len(s.Hosts))
	var failed []error
	for i, h := range s.Hosts {
		results[i] = HostResult{Host: h, State: HostPending, Outcome: "pre-flight ok"}
		if errs[i] != nil {
			results[i] = HostResult{Host: h, State: HostFailed, Outcome: "pre-flight: " + errs[i].Error()}
			failed = append(failed, fmt.Errorf("%s: %w", h, errs[i]))
		}
	}
	if len(failed) > 0 {
		closeAll(sessions)
		return nil, results, fmt.Errorf("%w: %w", ErrPreflight, errors.Join(failed...))
	}
	return sessions, results, nil
}

func closeAll(sessions []HostSession) {
	for i, s := range sessions {
		if s != nil {
			_ = s.Close()
			sessions[i] = nil
		}
	}
}
