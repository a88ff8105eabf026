// Package rotation is rotord's engine and owns the words of its domain:
// secrets, hosts, rotations and their outcomes.
//
// The engine consumes three small interfaces declared here, handed to New
// in Deps: a Vault that reads and writes a secret (Secret Server), a
// HostChanger that logs into a host and changes a password there (SSH),
// and a Store (Journal, Leases, ScheduleState) that records every rotation
// durably, with its passwords sealed (the database). The adapters live in
// sibling packages and import this one for its types; this package imports
// none of them.
//
// The files read in the order of the protocol: engine.go (configuration
// and construction), lease.go, rotate.go (one rotation, step by step),
// hosts.go (every host operation), recover.go, rollback.go, heartbeat.go,
// schedule.go.
package rotation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rotord/rotord/rotation/secret"
)

// Errors that adapters return (wrapped, or through an Is method) so that the
// engine can branch on them with errors.Is.
var (
	// ErrSecretNotFound: no secret has the name that was asked for.
	ErrSecretNotFound = errors.New("secret not found")
	// ErrAmbiguousName: several secrets have the name; the error names their folders.
	ErrAmbiguousName = errors.New("secret name is ambiguous")
	// ErrAccessDenied: the vault refused access to the secret.
	ErrAccessDenied = errors.New("access denied")
	// ErrBadHosts: the secret's hosts field is empty or holds an entry that
	// is not a host name, IP literal or host:port.
	ErrBadHosts = errors.New("bad hosts field")
	// ErrAuthFailed: a host refused the password (or the vault refused
	// rotord's own credentials).
	ErrAuthFailed = errors.New("authentication failed")
	// ErrHostKey: the host's key is unknown or differs from known_hosts; no
	// password was sent.
	ErrHostKey = errors.New("host key not trusted")
	// ErrUnreachable: the host could not be reached or the connection broke;
	// a transient condition worth a retry.
	ErrUnreachable = errors.New("host unreachable")
	// ErrNotFound: the journal has no such rotation.
	ErrNotFound = errors.New("not found")
	// ErrVaultUnavailable: the vault could not be reached or answered with
	// a server error or a rate limit; a transient condition.
	ErrVaultUnavailable = errors.New("vault unavailable")
	// ErrLoginUnknown: the password was sent to the host but no answer came
	// in time (a slow PAM refusal, a stall). It may have been refused: it
	// counts against the host's budget of refused logins and is never
	// retried blindly.
	ErrLoginUnknown = errors.New("login outcome unknown: password sent, no answer in time")
	// ErrBeforePasswd: a step of the path to the rotated account (the
	// logon account's login, su, sudo) failed before passwd ran, so
	// nothing changed on the host. A HostChanger's errors (and the Err of
	// an OutcomeUnexpected) satisfy it through errors.Is when that is
	// known; the engine then records ReasonEscalation and probes nothing.
	ErrBeforePasswd = errors.New("a step before passwd failed: nothing changed")
	// ErrFenced: the journal refused a write of a rotation because this
	// process no longer holds the secret's lease (another took it over).
	// The holder must stop touching the hosts and the vault at once: the
	// new holder recovers the rotation.
	ErrFenced = errors.New("lease lost: the rotation belongs to another holder now")
)

// Transient reports whether err is worth another attempt soon: a host or
// the vault could not be reached. A refused password, an untrusted host
// key, a policy rejection or bad input is not.
func Transient(err error) bool {
	if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrHostKey) || errors.Is(err, ErrBadHosts) {
		return false
	}
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrVaultUnavailable)
}

// LeaseHeldError is returned by Journal.Acquire when another holder has the
// secret's lease.
type LeaseHeldError struct {
	Secret  string
	Holder  string
	Expires time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("secret %q is being rotated by %s (lease until %s)",
		e.Secret, e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

// Host is one SSH endpoint listed in a secret.
type Host struct {
	Name string // host name or IP literal, without brackets
	Port int    // 0 means the configured default port
}

// String returns "name", "name:port" or "[v6]:port".
func (h Host) String() string {
	if h.Port == 0 {
		return h.Name
	}
	return net.JoinHostPort(h.Name, strconv.Itoa(h.Port))
}

// Addr returns the dial address, using defaultPort when h has none.
func (h Host) Addr(defaultPort int) string {
	p := h.Port
	if p == 0 {
		p = defaultPort
	}
	return net.JoinHostPort(h.Name, strconv.Itoa(p))
}

// Secret is a vault secret as the engine needs it.
type Secret struct {
	ID         int
	Name       string
	FolderPath string
	Username   string
	Password   secret.Value
	Hosts      []Host
	HostsField string // slug of the field Hosts was read from (set by Vault.Read)

	TemplateID      int
	PasswordFieldID int    // template field id of the password field (for the generator)
	PasswordSlug    string // slug of the password field (for the write)

	CheckoutRequired  bool // writes need a check-out (and check-in)
	CommentRequired   bool // access needs a comment
	AutoChangeEnabled bool // the vault rotates this secret itself (RPC): two rotators fight
}

// Vault reads and writes secrets. Implementations retry transient failures
// themselves and are safe for concurrent use.
type Vault interface {
	// Resolve returns the id of the one secret whose name equals name,
	// compared without regard to case. It returns an error satisfying
	// errors.Is(err, ErrSecretNotFound) when there is none and
	// errors.Is(err, ErrAmbiguousName) when there are several (the message
	// names their folders).
	Resolve(ctx context.Context, name string) (int, error)
	// Read returns the secret with the given id, its hosts parsed from the
	// field with slug hostsField ("" means the vault's default, notes).
	// A bad or empty hosts field is an error satisfying ErrBadHosts.
	Read(ctx context.Context, id int, hostsField string) (Secret, error)
	// Generate returns a new password from the vault's generator for the
	// secret's password field.
	Generate(ctx context.Context, s Secret) (secret.Value, error)
	// Write sets the secret's password field to pw, then reads it back and
	// returns an error unless it reads pw. A restricted secret is checked
	// out with comment first and checked in afterwards, also on failure.
	//
	// Write is a compare-and-swap: s is the secret as the caller has just
	// read and compared it, and pw is written only while the vault still
	// holds s's password, username and hosts. The first attempt relies on
	// the caller's read; before each retry (after an ambiguous failure:
	// 5xx, 429, a broken connection) the vault reads the secret again: a
	// field that holds pw means an earlier attempt landed (success);
	// anything other than s's values means someone edited the secret, and
	// Write writes nothing more and returns an error satisfying
	// ErrSecretChanged.
	Write(ctx context.Context, s Secret, pw secret.Value, comment string) error
}

// HostChanger logs into hosts. Implementations check host keys strictly
// and are safe for concurrent use.
type HostChanger interface {
	// Login opens an authenticated connection to h as user with password pw.
	// Errors satisfy ErrAuthFailed when the password is refused, ErrHostKey
	// when the host key is unknown or changed (no password was sent), and
	// ErrUnreachable when the host cannot be reached or the connection broke.
	Login(ctx context.Context, h Host, user string, pw secret.Value) (HostSession, error)
}

// HostVerifier is a HostChanger that proves a password without keeping a
// session: for an account reached through su, `su USER -c` from the logon
// connection instead of a second escalated shell. Verify's errors are
// Login's; the engine uses it for every proof of a password that keeps no
// session (the verify after passwd, probes, the heartbeat).
type HostVerifier interface {
	HostChanger
	// Verify proves pw authenticates user on h, changing nothing.
	Verify(ctx context.Context, h Host, user string, pw secret.Value) error
}

// HostSession is one logged-in connection. It is the lifeline of a change:
// kept open until the new password has been verified by a fresh login.
// A HostSession is used by one goroutine at a time.
type HostSession interface {
	// Check runs a trivial command, proving the login yields a working shell.
	Check(ctx context.Context) error
	// ChangePassword runs passwd for the logged-in user and answers its
	// prompts with old and new.
	ChangePassword(ctx context.Context, old, new secret.Value) Outcome
	// SetPassword sets another user's password with the privileges of the
	// logged-in account (passwd USER as root, or through sudo -S).
	SetPassword(ctx context.Context, user string, new secret.Value) Outcome
	// Close closes the connection.
	Close() error
}

// OutcomeKind classifies what a passwd dialogue did.
type OutcomeKind int

// The outcomes of a passwd dialogue.
const (
	// OutcomeChanged: passwd reported success.
	OutcomeChanged OutcomeKind = iota + 1
	// OutcomeWrongCurrent: passwd refused the current password; nothing changed.
	OutcomeWrongCurrent
	// OutcomeRejected: the new password was refused by policy; Reason says why; nothing changed.
	OutcomeRejected
	// OutcomeTimeout: a step passed its deadline; whether the password changed is unknown.
	OutcomeTimeout
	// OutcomeUnexpected: passwd said something not understood, or the
	// connection broke (Err is set); whether it changed is unknown.
	OutcomeUnexpected
)

var outcomeNames = map[OutcomeKind]string{
	OutcomeChanged:      "changed",
	OutcomeWrongCurrent: "wrong-current-password",
	OutcomeRejected:     "rejected-by-policy",
	OutcomeTimeout:      "timeout",
	OutcomeUnexpected:   "unexpected",
}

func (k OutcomeKind) String() string {
	if s, ok := outcomeNames[k]; ok {
		return s
	}
	return "outcome(" + strconv.Itoa(int(k)) + ")"
}

// Outcome is the typed result of a passwd dialogue. Its texts never hold a
// password: transcripts are redacted before they are stored here.
type Outcome struct {
	Kind       OutcomeKind
	Reason     string // the policy's words for OutcomeRejected
	Transcript string // what passwd said, redacted
	Err        error  // the underlying error, if any
}

// Known reports whether the host's password state is known after the
// dialogue: changed, or certainly unchanged.
func (o Outcome) Known() bool {
	return o.Kind == OutcomeChanged || o.Kind == OutcomeWrongCurrent || o.Kind == OutcomeRejected
}

func (o Outcome) String() string {
	s := o.Kind.String()
	if o.Reason != "" {
		s += " (" + o.Reason + ")"
	}
	if o.Err != nil {
		s += ": " + o.Err.Error()
	}
	return s
}

// Kind says why a rotation was made.
type Kind string

// The kinds of rotation.
const (
	KindRotate    Kind = "rotate"    // a new password
	KindRollback  Kind = "rollback"  // back to the password before an earlier rotation
	KindReconcile Kind = "reconcile" // hosts brought back in line after needs-reconcile
)

// State is where a rotation is in its protocol.
//
//	pending → hosts-changing → committing → committed
//	                ↘ rolling-back → rolled-back | needs-reconcile
type State string

// The states of a rotation.
const (
	StatePending        State = "pending"         // journaled; no host touched yet
	StateHostsChanging  State = "hosts-changing"  // hosts are being changed
	StateCommitting     State = "committing"      // every host verified; writing the vault
	StateCommitted      State = "committed"       // hosts and vault hold the new password
	StateRollingBack    State = "rolling-back"    // changed hosts are being reverted
	StateRolledBack     State = "rolled-back"     // hosts and vault hold the old password
	StateNeedsReconcile State = "needs-reconcile" // some host holds neither known state; both passwords kept
)

// Terminal reports whether no more work is due on a rotation in state s.
// needs-reconcile is terminal for the rotation itself; reconcile runs pick
// it up separately.
func (s State) Terminal() bool {
	return s == StateCommitted || s == StateRolledBack || s == StateNeedsReconcile
}

// HostState is where one host of a rotation is.
type HostState string

// The states of a host within a rotation.
const (
	HostPending        HostState = "pending"         // not touched; holds the old password
	HostChanging       HostState = "changing"        // passwd under way; either password may work
	HostChanged        HostState = "changed"         // the new password verified
	HostReverting      HostState = "reverting"       // going back; either password may work
	HostReverted       HostState = "reverted"        // the old password again
	HostFailed         HostState = "failed"          // not changed (refused, unreachable); holds the old password
	HostNeedsReconcile HostState = "needs-reconcile" // neither password known to work
)

// RefusalBudget is the most refused logins a rotation (revert, recovery
// and reconcile included) makes on one host: pam_faillock commonly locks
// an account at the third.
const RefusalBudget = 2

// Refusals is what one host refused in one rotation: which of the
// rotation's two passwords, and how many logins in all. A login whose
// outcome is unknown (ErrLoginUnknown) counts as refused. A refused
// password is never sent to that host again in the rotation.
type Refusals struct {
	Old, New bool
	Count    int
}

// Spent reports whether the host's budget of refused logins is used up.
func (r Refusals) Spent() bool { return r.Count >= RefusalBudget }

// String returns "", "old", "new" or "old,new" and the count, e.g.
// "old,new (2 refused logins)"; it never holds a password.
func (r Refusals) String() string {
	var s string
	switch {
	case r.Old && r.New:
		s = "old,new"
	case r.Old:
		s = "old"
	case r.New:
		s = "new"
	}
	if r.Count == 0 {
		return s
	}
	return fmt.Sprintf("%s (%d refused logins)", s, r.Count)
}

// FailReason is why a host of a rotation is where it is, as a code: the
// engine decides on it (HostRecord.Error holds the words for people). It
// is journaled beside the words, and "" (ReasonNone) where there is no
// failure to name, and for rows journaled before the code existed.
type FailReason string

// The reasons a host did not end as asked. The engine never parses
// HostRecord.Error: a decision is taken on these codes only.
const (
	// ReasonNone: no failure, or one journaled before reasons had codes.
	// It decides nothing: it is never taken for a policy rejection nor for
	// a host left untouched.
	ReasonNone FailReason = ""
	// ReasonRejected: the host's password policy refused the new password;
	// nothing changed. A fresh password may be tried.
	ReasonRejected FailReason = "rejected"
	// ReasonNotStarted: the host was not touched (another host failed
	// first, the run was interrupted, or the journal could not record the
	// start); it holds the old password.
	ReasonNotStarted FailReason = "not-started"
	// ReasonWrongCurrent: passwd refused the current password.
	ReasonWrongCurrent FailReason = "wrong-current"
	// ReasonRefused: the host refused a login with a password.
	ReasonRefused FailReason = "refused"
	// ReasonUnreachable: the host could not be reached, or the connection broke.
	ReasonUnreachable FailReason = "unreachable"
	// ReasonHostKey: the host's key is not trusted; no password was sent.
	ReasonHostKey FailReason = "host-key"
	// ReasonUnknown: the outcome is unknown (a step timed out, no answer came).
	ReasonUnknown FailReason = "unknown"
	// ReasonUnverified: passwd reported success but the new password does not log in.
	ReasonUnverified FailReason = "unverified"
	// ReasonInterrupted: the host was found in doubt after an interruption.
	ReasonInterrupted FailReason = "interrupted"
	// ReasonFenced: the lease was lost; the host was not touched further.
	ReasonFenced FailReason = "fenced"
	// ReasonRevert: putting the old password back failed.
	ReasonRevert FailReason = "revert"
	// ReasonEscalation: su or sudo failed before passwd ran (the logon
	// account refused, not in sudoers or wheel, requiretty): nothing
	// changed on the host.
	ReasonEscalation FailReason = "escalation"
	// ReasonOther: any other error (see the words).
	ReasonOther FailReason = "other"
)

// ReasonOf classifies a login or host error as a FailReason.
func ReasonOf(err error) FailReason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, ErrFenced):
		return ReasonFenced
	case errors.Is(err, ErrHostKey):
		return ReasonHostKey
	case errors.Is(err, ErrLoginUnknown), errors.Is(err, context.DeadlineExceeded):
		return ReasonUnknown
	case errors.Is(err, ErrAuthFailed):
		return ReasonRefused
	case errors.Is(err, ErrUnreachable):
		return ReasonUnreachable
	case errors.Is(err, ErrBeforePasswd):
		return ReasonEscalation
	}
	return ReasonOther
}

// HostRecord is the journal's view of one host of a rotation.
type HostRecord struct {
	Host     Host
	State    HostState
	Attempts int
	Reason   FailReason // the code of Error, for decisions
	Error    string     // for people; never holds a password
	Refused  Refusals   // what the host refused in this rotation
}

// SecretKey returns the canonical identity of the secret a configured name
// denotes: the name in lower case. Secret names match without regard to
// case everywhere (the vault resolves them so), so everything kept per
// secret — its lease, due time, cached id, parking, history and audit
// trail — is keyed by SecretKey(name), and "prod-root" and "PROD-ROOT" are
// one secret with one lease. It is the name, not the vault's id, because
// the lease is taken before the name is resolved. Journals apply it to
// every secret name they are given; this is its one definition.
func SecretKey(name string) string { return strings.ToLower(name) }

// Rotation is one journaled rotation of one secret.
type Rotation struct {
	ID         int64
	Secret     string // the configured name (as journaled: its SecretKey)
	SecretID   int
	Username   string
	Kind       Kind
	State      State
	Old, New   secret.Value // zero in history listings
	Hosts      []HostRecord
	Error      string // why it did not commit; never holds a password
	RollbackOf int64  // for KindRollback: the rotation whose old password is restored
	Generation int64  // the lease generation that owns it (see Leases); 0: not fenced
	Started    time.Time
	Updated    time.Time
}

// HistoryQuery selects rotations for a history listing, newest first.
type HistoryQuery struct {
	Secret   string // "" for all secrets
	BeforeID int64  // 0 for the newest; else only rotations with smaller ids (paging)
	Limit    int
}

// Event is one audit record. It never holds a password.
type Event struct {
	Time       time.Time
	Secret     string
	RotationID int64
	Actor      string // who asked: "scheduler", "cli:<user>", ...
	Action     string // "rotate", "dry-run", "rollback", "recover", "heartbeat", ...
	Detail     string
}

// Journal records rotations durably. Every method that changes state
// returns only after the change is on disk. Passwords are sealed at rest.
// Implementations are safe for concurrent use by several processes.
//
// Writes of a rotation are fenced by the lease of its secret: a rotation
// belongs to the lease generation recorded by Begin (or Adopt), and
// SetNew, SetState and SetHost take the writer's generation gen and,
// inside the same transaction as the write, refuse it with an error
// satisfying errors.Is(err, ErrFenced) unless gen is both the rotation's
// generation and the current generation of the secret's lease. A rotation
// begun with Generation 0 (tools and tests that hold no lease) is written
// with gen 0 until a holder adopts it.
type Journal interface {
	// Begin records r, with its sealed passwords and one record per host, in
	// state pending and returns its id. A non-zero r.Generation must be the
	// current generation of the secret's lease (else ErrFenced).
	Begin(ctx context.Context, r Rotation) (int64, error)
	// Adopt makes rotation id belong to lease generation gen, which must be
	// the current generation of its secret's lease (else ErrFenced): a new
	// holder recovering the rotation fences off the one before it.
	Adopt(ctx context.Context, id, gen int64) error
	// SetNew replaces the new password of rotation id (a fresh one after a
	// policy rejection).
	SetNew(ctx context.Context, id, gen int64, pw secret.Value) error
	// SetState moves rotation id to st, recording errText ("" to clear).
	SetState(ctx context.Context, id, gen int64, st State, errText string) error
	// SetHost records the state of one host of rotation id (matched by
	// Host.String()). It does not record h.Refused: SetRefused does.
	SetHost(ctx context.Context, id, gen int64, h HostRecord) error
	// SetRefused records what host h of rotation id refused, so that no
	// later step of the rotation (revert, recovery, reconcile) sends a
	// refused password to it again or passes its budget of refused logins.
	SetRefused(ctx context.Context, id, gen int64, h Host, r Refusals) error
	// Get returns rotation id with its passwords; ErrNotFound if none.
	Get(ctx context.Context, id int64) (Rotation, error)
	// Unfinished returns, oldest first, every rotation not in a terminal state.
	Unfinished(ctx context.Context) ([]Rotation, error)
	// NeedsReconcile returns, oldest first, the rotations in needs-reconcile.
	NeedsReconcile(ctx context.Context) ([]Rotation, error)
	// LastCommitted returns the newest committed rotation of the secret with
	// an id below beforeID (0: any), with its passwords; ErrNotFound if none.
	LastCommitted(ctx context.Context, secretName string, beforeID int64) (Rotation, error)
	// History lists rotations without their passwords, newest first.
	History(ctx context.Context, q HistoryQuery) ([]Rotation, error)
	// Audit appends an event.
	Audit(ctx context.Context, e Event) error
}

// Leases guard a secret against two rotations at once, across processes
// and machines sharing the journal. Leases are keyed by SecretKey.
//
// Each lease carries a fencing generation: it grows every time the lease
// passes to a holder that did not have it (also after a release), and
// stays while the same holder re-acquires or renews it.
type Leases interface {
	// Acquire takes the lease on secretName for holder until ttl from now
	// and returns its generation. It succeeds if the lease is free,
	// expired, or already the holder's, and returns *LeaseHeldError
	// otherwise.
	Acquire(ctx context.Context, secretName, holder string, ttl time.Duration) (gen int64, err error)
	// Renew extends a lease the holder has; *LeaseHeldError if it lost it.
	Renew(ctx context.Context, secretName, holder string, ttl time.Duration) error
	// Release gives the lease up; releasing a lease not held is no error.
	Release(ctx context.Context, secretName, holder string) error
}

// ScheduleState keeps what the scheduler must remember across restarts,
// keyed by SecretKey.
type ScheduleState interface {
	// NextDue returns when the secret's next scheduled rotation is due;
	// ok is false if none was recorded.
	NextDue(ctx context.Context, secretName string) (t time.Time, ok bool, err error)
	// SetNextDue records when the secret's next scheduled rotation is due.
	SetNextDue(ctx context.Context, secretName string, t time.Time) error
	// SecretID returns the cached vault id of a secret name; ok is false if none.
	SecretID(ctx context.Context, secretName string) (id int, ok bool, err error)
	// SetSecretID caches the vault id of a secret name.
	SetSecretID(ctx context.Context, secretName string, id int) error
}
