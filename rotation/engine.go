package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

	// HostsFor, if set, returns the HostChanger that reaches spec's hosts
	// along the secret's own path (a logon account and an escalation). It
	// is called once per rotation, rollback, recovery and heartbeat of the
	// secret, so that every step of that run (pre-flight, change, verify,
	// revert, probes, reconcile) goes the same way; an error stops the run
	// before any host is touched. nil: Hosts for every secret. The
	// reconcile account always logs in through Hosts.
	HostsFor func(ctx context.Context, spec SecretSpec) (HostChanger, error)
	// Reconcile, if set, returns the reconcile account and the
	// HostChanger it logs in through (a key logon, or a credential read
	// afresh from the vault), each time a host must be reset; it stands
	// in for Config.Reconcile and Hosts. nil: Config.Reconcile through
	// Hosts.
	Reconcile func(ctx context.Context) (HostChanger, Account, error)
}

// Engine runs rotations. It is safe for concurrent use; rotations of
// different secrets run in parallel, sharing the SSH concurrency cap.
type Engine struct {
	cfg     Config
	vault   Vault
	hosts   *hostAccess
	store   Store
	log     *slog.Logger
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
		cfg: cfg, vault: d.Vault, hosts: newHostAccess(cfg, d), store: d.Store, log: log,
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

// specFor returns the configured spec of a secret, or a bare one.
func (e *Engine) specFor(name string) SecretSpec {
	for _, s := range e.cfg.Specs {
		if strings.EqualFold(s.Name, name) {
			return s
		}
	}
	return SecretSpec{Name: name}
}

// audit records ev in the audit trail.
func (e *Engine) audit(ctx context.Context, ev Event) {
	ev.Time = e.cfg.Now()
	writeAudit(ctx, e.store, e.log, ev)
}

// writeAudit appends ev to the journal's audit trail, on a context of its
// own: an audit entry is written even as ctx ends. A failure is logged.
func writeAudit(ctx context.Context, j Journal, log *slog.Logger, ev Event) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := j.Audit(actx, ev); err != nil {
		log.Warn("audit event not recorded", "secret", ev.Secret, "action", ev.Action, "err", err)
	}
}
