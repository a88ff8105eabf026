package rotation

import (
	"context"
	"errors"
	"log/slog"
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

// Config holds the engine's settings. Zero fields take the defaults noted.
type Config struct {
	Port           int           // default SSH port (22)
	Concurrency    int           // SSH operations at once, across all secrets (32)
	SecretDeadline time.Duration // whole-rotation deadline per secret (15m)
	LeaseTTL       time.Duration // lease lifetime, renewed while a rotation runs (2m)
	Length         int           // default new password length (24)
	Generator      string        // "server", "local" or "auto" (auto: server up to 20 chars)
	PolicyRetries  int           // fresh passwords after a policy rejection (3)
	HostRetries    int           // attempts per host on transient network errors (3)
	HostsField     string        // default hosts field slug ("notes")
	Holder         string        // lease holder name (host name and pid)
	Reconcile      *Account      // optional privileged account for reverts and reconcile
	Now            func() time.Time
}

// Engine runs rotations. It is safe for concurrent use; rotations of
// different secrets run in parallel, sharing the SSH concurrency cap.
type Engine struct {
	cfg     Config
	vault   Vault
	hosts   HostChanger
	journal Journal
	leases  Leases
	ids     ScheduleState
	log     *slog.Logger
}

// New returns an engine over the given adapters.
func New(cfg Config, vault Vault, hosts HostChanger, journal Journal, leases Leases, ids ScheduleState, log *slog.Logger) *Engine {
	return &Engine{cfg: cfg, vault: vault, hosts: hosts, journal: journal, leases: leases, ids: ids, log: log}
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
	Err        error // nil when committed (or, for a dry run, when every check passed)
}

// ErrNotImplemented marks engine entry points still to be built.
var ErrNotImplemented = errors.New("not implemented")

// Rotate rotates one secret now.
func (e *Engine) Rotate(ctx context.Context, spec SecretSpec, opts RotateOptions) Result {
	return Result{Secret: spec.Name, Kind: KindRotate, Err: ErrNotImplemented}
}

// Rollback restores, on every host and in the vault, the password that was
// current before rotation toID of the secret (0: its last committed one).
func (e *Engine) Rollback(ctx context.Context, spec SecretSpec, toID int64, actor string) Result {
	return Result{Secret: spec.Name, Kind: KindRollback, Err: ErrNotImplemented}
}

// Recover finishes or undoes every unfinished rotation in the journal and
// retries reconciliation of needs-reconcile ones.
func (e *Engine) Recover(ctx context.Context, actor string) []Result {
	return nil
}

// HeartbeatResult reports, per host, whether the vault's password logs in.
type HeartbeatResult struct {
	Secret string
	Hosts  []HostResult // State HostChanged never appears; Outcome "ok" or the error
	Err    error        // set when the secret could not be read, or any host failed
}

// Heartbeat logs into every host of the secret with the password the vault
// holds and reports hosts where it no longer works. It changes nothing.
func (e *Engine) Heartbeat(ctx context.Context, spec SecretSpec) HeartbeatResult {
	return HeartbeatResult{Secret: spec.Name, Err: ErrNotImplemented}
}
