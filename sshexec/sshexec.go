// Package sshexec logs into hosts over SSH and changes passwords there by
// driving passwd through its prompts.
//
// Host keys are checked against a known_hosts file before any password is
// sent; an unknown or changed key is refused with a *HostKeyError that says
// how to approve it. A Dialer implements rotation.HostChanger and its
// sessions rotation.HostSession: a session is the lifeline of a change,
// kept open until a fresh login with the new password (Verify) succeeded.
//
// passwd runs on a PTY in the C locale; its prompts are read and answered
// one step at a time, each within Config.StepTimeout. Passwords travel only
// through the PTY, never in a command line or environment variable, and
// every transcript is redacted before it is kept.
package sshexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

var _ rotation.HostChanger = (*Dialer)(nil)
var _ rotation.HostSession = (*Session)(nil)

// Config configures a Dialer. New takes the values as they are: start from
// DefaultConfig for the defaults. A zero duration sets no limit of the
// Dialer's own (the caller's context alone bounds the step); a zero
// DefaultPort leaves hosts without a port of their own unreachable.
type Config struct {
	KnownHosts      string        // path of the known_hosts file; required
	DefaultPort     int           // port for hosts without one
	ConnectTimeout  time.Duration // TCP connect plus SSH handshake and authentication
	StepTimeout     time.Duration // each passwd prompt, and each command
	TrustOnFirstUse bool          // explicit opt-in: append unknown host keys to KnownHosts and accept them
}

// DefaultConfig returns the defaults: port 22, 10s to connect and log in,
// 30s for each step of a dialogue or command, no trust on first use.
// KnownHosts has no default.
func DefaultConfig() Config {
	return Config{DefaultPort: 22, ConnectTimeout: 10 * time.Second, StepTimeout: 30 * time.Second}
}

// Dialer logs into hosts. It is safe for concurrent use.
type Dialer struct {
	cfg Config
	kh  *knownHosts
	log *slog.Logger
}

// New returns a Dialer. The known_hosts file must exist unless
// TrustOnFirstUse is set.
func New(cfg Config, log *slog.Logger) (*Dialer, error) {
	if cfg.KnownHosts == "" {
		return nil, errors.New("ssh: known_hosts path is required")
	}
	if cfg.DefaultPort < 0 || cfg.DefaultPort > 65535 {
		return nil, fmt.Errorf("ssh: default port %d: want 1 to 65535", cfg.DefaultPort)
	}
	if cfg.ConnectTimeout < 0 {
		return nil, fmt.Errorf("ssh: connect timeout %s is negative", cfg.ConnectTimeout)
	}
	if cfg.StepTimeout < 0 {
		return nil, fmt.Errorf("ssh: step timeout %s is negative", cfg.StepTimeout)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kh := &knownHosts{path: cfg.KnownHosts, tofu: cfg.TrustOnFirstUse}
	if _, err := kh.current(); err != nil {
		return nil, err
	}
	return &Dialer{cfg: cfg, kh: kh, log: log}, nil
}

// Login opens an authenticated connection to h as user: password
// authentication, then keyboard-interactive answering every prompt with pw.
// The host key is checked before any authentication. Errors satisfy
// rotation.ErrHostKey (a *HostKeyError), rotation.ErrAuthFailed,
// rotation.ErrUnreachable (no password was sent) or
// rotation.ErrLoginUnknown (the password was sent, and the connection
// ended or Config.ConnectTimeout passed before the host answered: it may
// have counted a refusal). The connection, its handshake and
// authentication must finish within Config.ConnectTimeout.
func (d *Dialer) Login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	s, err := d.login(ctx, h, user, pw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Verify logs into h as user with pw and runs a trivial command, then
// closes the connection: the proof that pw works there. Errors are those
// of Login and Session.Check.
func (d *Dialer) Verify(ctx context.Context, h rotation.Host, user string, pw secret.Value) error {
	return checkAndClose(ctx, func() (rotation.HostSession, error) { return d.login(ctx, h, user, pw) })
}

// checkAndClose logs in with login, checks the session and closes it: a
// verify. Its errors are login's and Session.Check's.
func checkAndClose(ctx context.Context, login func() (rotation.HostSession, error)) error {
	s, err := login()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Check(ctx)
}

// hostKeyCheck is the host key callback of a connection to addr: the key
// must be the one known_hosts holds; checked is set once it is.
func (d *Dialer) hostKeyCheck(addr string, checked *atomic.Bool) ssh.HostKeyCallback {
	return func(_ string, remote net.Addr, key ssh.PublicKey) error {
		if err := d.kh.check(addr, remote, key, d.log.Warn); err != nil {
			return err
		}
		checked.Store(true)
		return nil
	}
}

// passwordMethods offers pw by the password and keyboard-interactive
// methods, at most once: tried is set when it is offered, and a second
// keyboard-interactive round (the password was refused) is declined, as
// a second try with the same password only counts towards a lockout.
func passwordMethods(pw secret.Value, tried *atomic.Bool) []ssh.AuthMethod {
	return []ssh.AuthMethod{
		ssh.PasswordCallback(func() (string, error) {
			tried.Store(true)
			return pw.Reveal(), nil
		}),
		ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			if tried.Load() && len(questions) > 0 {
				return nil, errPasswordRefused
			}
			tried.Store(true)
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = pw.Reveal()
			}
			return answers, nil
		}),
	}
}

func (d *Dialer) login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (*Session, error) {
	addr := h.Addr(d.cfg.DefaultPort)
	c, err := d.dial(ctx, addr, user, func(tried *atomic.Bool) []ssh.AuthMethod { return passwordMethods(pw, tried) })
	var ce *connectError
	switch {
	case err == nil:
	case !errors.As(err, &ce):
		return nil, fmt.Errorf("login %s: %w", addr, err)
	case ce.hostKey != nil:
		return nil, fmt.Errorf("login %s: %w", addr, ce.hostKey)
	case ce.keyChecked && ce.authTried && ce.refused:
		return nil, fmt.Errorf("login %s as %s: %w", addr, user, rotation.ErrAuthFailed)
	case ce.keyChecked && ce.authTried:
		// The password is out and no verdict came (a PAM slower than the
		// connect timeout, a host that died): trying it again could be
		// one more refusal towards a lockout.
		return nil, fmt.Errorf("login %s as %s: %w", addr, user, &loginUnknownError{err: ce.unreachable})
	default:
		return nil, fmt.Errorf("login %s: %w", addr, ce.unreachable)
	}
	return &Session{
		client: c,
		addr:   addr,
		user:   user,
		pw:     pw,
		step:   d.cfg.StepTimeout,
		log:    d.log,
	}, nil
}

// connectError is a failed SSH connection attempt, in the terms its
// callers name it by: a host key not trusted, or how far it went.
type connectError struct {
	hostKey     *HostKeyError // the host key is not one known_hosts trusts
	keyChecked  bool          // the host key was checked and trusted
	authTried   bool          // a credential was offered
	refused     bool          // the server ended it: not the network, not a time limit
	unreachable error         // the failure marked unreachable (unreachableWithin)
}

func (e *connectError) Error() string { return e.unreachable.Error() }

// dial connects to addr and runs the SSH handshake as user with the
// authentication methods methods returns (each sets tried when it offers
// a credential), the host key checked against known_hosts first, all
// within ConnectTimeout. A failed handshake is a *connectError; a
// known_hosts that cannot be read is returned as it is.
func (d *Dialer) dial(ctx context.Context, addr, user string, methods func(tried *atomic.Bool) []ssh.AuthMethod) (*ssh.Client, error) {
	algos, err := d.kh.algorithms(addr)
	if err != nil {
		return nil, err
	}
	var keyChecked, authTried atomic.Bool
	cfg := &ssh.ClientConfig{
		User:              user,
		HostKeyAlgorithms: algos,
		HostKeyCallback:   d.hostKeyCheck(addr, &keyChecked),
		Auth:              methods(&authTried),
		Timeout:           d.cfg.ConnectTimeout,
	}
	cctx, cancel := withLimit(ctx, d.cfg.ConnectTimeout)
	defer cancel()
	conn, err := dialContext(cctx, addr)
	if err != nil {
		return nil, &connectError{unreachable: unreachableWithin(cctx, err)}
	}
	stop := context.AfterFunc(cctx, func() { conn.Close() })
	if dl, ok := cctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() && err == nil {
		// The deadline or ctx closed the connection during the handshake.
		c.Close()
		err = cctx.Err()
	}
	if err != nil {
		conn.Close()
		ce := &connectError{
			keyChecked:  keyChecked.Load(),
			authTried:   authTried.Load(),
			refused:     !isNetError(err) && connectEnded(cctx, err) == nil,
			unreachable: unreachableWithin(cctx, err),
		}
		var ane *ssh.AlgorithmNegotiationError
		switch {
		case errors.As(err, &ce.hostKey):
		case errors.As(err, &ane) && ane.What == "host key" && algos != nil:
			// known_hosts holds keys for the host, none of a type it offers.
			ce.hostKey = &HostKeyError{
				Host:       knownhosts.Normalize(addr),
				KeyType:    strings.Join(ane.RequestedAlgorithms, ","),
				Known:      true,
				KnownHosts: d.cfg.KnownHosts,
			}
		}
		return nil, ce
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// connectEnded tells why a connection attempt bounded by cctx failed when
// it was canceled or ran out of time: cctx's error, or DeadlineExceeded
// when the connection's own deadline, set to cctx's, fired before cctx's
// timer did. It is nil for any other failure.
func connectEnded(cctx context.Context, err error) error {
	if e := cctx.Err(); e != nil {
		return e
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}

// unreachableWithin marks err, a failure to connect within cctx, as
// unreachable; when cctx was canceled or ran out of time it says so first
// and keeps err as the cause.
func unreachableWithin(cctx context.Context, err error) error {
	if end := connectEnded(cctx, err); end != nil && !errors.Is(err, end) {
		err = fmt.Errorf("%w (%w)", end, err)
	}
	return unreachable(err)
}

// loginUnknownError is a login whose password was sent but whose verdict
// never came: rotation.ErrLoginUnknown, never rotation.ErrUnreachable
// (which the engine retries), keeping the cause's text.
type loginUnknownError struct{ err error }

func (e *loginUnknownError) Error() string {
	return rotation.ErrLoginUnknown.Error() + " (" + e.err.Error() + ")"
}

func (e *loginUnknownError) Is(target error) bool { return target == rotation.ErrLoginUnknown }

// errPasswordRefused stops authentication after the password was refused once.
var errPasswordRefused = errors.New("password refused")

// dialContext opens a TCP connection, wrapping failures as unreachable.
func dialContext(ctx context.Context, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, unreachable(err)
	}
	return conn, nil
}

// unreachableError marks a network failure as rotation.ErrUnreachable while
// keeping its cause.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() []error {
	return []error{rotation.ErrUnreachable, e.err}
}

func unreachable(err error) error {
	if err == nil || errors.Is(err, rotation.ErrUnreachable) {
		return err
	}
	return &unreachableError{err: err}
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// Session is one logged-in connection. It is used by one goroutine at a
// time; Close may be called from any goroutine.
type Session struct {
	client *ssh.Client
	addr   string
	user   string
	pw     secret.Value // the login password, for sudo
	step   time.Duration
	log    *slog.Logger
}

// Check runs `true` in a new channel within the step timeout, proving the
// login yields a working shell. Errors satisfy rotation.ErrUnreachable when
// the connection broke or the command did not finish in time.
func (s *Session) Check(ctx context.Context) error {
	ctx, cancel := withLimit(ctx, s.step)
	defer cancel()
	sess, err := s.newSession(ctx)
	if err != nil {
		return fmt.Errorf("check %s: %w", s.addr, err)
	}
	defer sess.Close()
	done := make(chan error, 1)
	go func() { done <- sess.Run("true") }()
	select {
	case err := <-done:
		if err != nil {
			var ee *ssh.ExitError
			if errors.As(err, &ee) {
				return fmt.Errorf("check %s: %w", s.addr, err)
			}
			return fmt.Errorf("check %s: %w", s.addr, unreachable(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("check %s: %w", s.addr, unreachable(ctx.Err()))
	}
}

// newSession opens a session channel, giving up when ctx ends (a stalled
// host answers no channel request).
func (s *Session) newSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		sess *ssh.Session
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		sess, err := s.client.NewSession()
		ch <- result{sess, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, unreachable(r.err)
		}
		return r.sess, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.sess != nil {
				r.sess.Close()
			}
		}()
		return nil, unreachable(ctx.Err())
	}
}

// ChangePassword runs passwd for the logged-in user on a PTY and answers
// its prompts with old and new. Each prompt, and the final verdict, must
// come within the step timeout. A policy that refuses new yields
// OutcomeRejected with its reason, without retrying.
func (s *Session) ChangePassword(ctx context.Context, old, new secret.Value) rotation.Outcome {
	return s.runPasswd(ctx, "env LC_ALL=C LANG=C passwd", newDialogue(modeSelf, old, new, s.pw))
}

// userRe accepts the account names passwd takes; anything else could
// change the meaning of the command line.
var userRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$`)

// SetPassword sets user's password to new with the logged-in account's
// privileges: `passwd USER` when logged in as root, otherwise through
// `sudo -S`, answering sudo's prompt with the login password. A refused
// sudo password yields OutcomeWrongCurrent.
func (s *Session) SetPassword(ctx context.Context, user string, new secret.Value) rotation.Outcome {
	if !userRe.MatchString(user) {
		return rotation.Outcome{Kind: rotation.OutcomeUnexpected, Err: fmt.Errorf("set password: invalid user name %q", user)}
	}
	cmd := sudoPasswdCommand(user)
	if s.user != "root" {
		cmd = "env LC_ALL=C LANG=C sudo -S -p '" + sudoPrompt + "' -- " + cmd
	}
	return s.runPasswd(ctx, cmd, newDialogue(modeOther, secret.Value{}, new, s.pw))
}

// runPasswd runs cmd on a PTY and lets d answer its output.
func (s *Session) runPasswd(ctx context.Context, cmd string, d *dialogue) rotation.Outcome {
	stepCtx, cancel := withLimit(ctx, s.step)
	sess, err := s.newSession(stepCtx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && stepCtx.Err() != nil {
			return d.timeout()
		}
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, err))
	}
	defer sess.Close()
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, unreachable(err)))
	}
	// Requests on a stalled host get no reply: bound them by the step.
	started := startOnPTY(sess, cmd)
	timer := newStepTimer(s.step)
	defer timer.Stop()
	select {
	case err := <-started:
		if err != nil {
			return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, unreachable(err)))
		}
	case <-timer.C:
		return d.timeout()
	case <-ctx.Done():
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, ctx.Err()))
	}

	readDone := make(chan struct{})
	chunks := pump(stdout, readDone)
	defer close(readDone)
	timer.restart()
	for {
		select {
		case p, ok := <-chunks:
			if !ok {
				return s.waitExit(ctx, sess, d, timer.Timer)
			}
			answer, done := d.feed(p)
			if done {
				return d.outcome
			}
			if answer != nil {
				_, err := stdin.Write(answer)
				clear(answer)
				if err != nil {
					return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, unreachable(err)))
				}
				if testHookAnswered != nil {
					testHookAnswered(s.addr)
				}
				timer.restart()
			}
		case <-timer.C:
			return d.timeout()
		case <-ctx.Done():
			return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, ctx.Err()))
		}
	}
}

// testHookAnswered, set only by tests, runs after each answer is written.
var testHookAnswered func(addr string)

// waitExit reads passwd's exit status once its output ended.
func (s *Session) waitExit(ctx context.Context, sess *ssh.Session, d *dialogue, timer *time.Timer) rotation.Outcome {
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		switch {
		case err == nil:
			return d.finish(0, true)
		case errors.As(err, &ee):
			return d.finish(ee.ExitStatus(), true)
		default:
			var em *ssh.ExitMissingError
			if errors.As(err, &em) {
				return d.finish(0, false)
			}
			return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, unreachable(err)))
		}
	case <-timer.C:
		return d.timeout()
	case <-ctx.Done():
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, ctx.Err()))
	}
}

// withLimit is ctx bounded by d, or ctx as it is when d is zero (no limit).
func withLimit(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// stepTimer fires when one step of a dialogue took longer than the step
// timeout; with none (0) it never fires.
type stepTimer struct {
	*time.Timer
	d time.Duration
}

func newStepTimer(d time.Duration) stepTimer {
	if d == 0 {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return stepTimer{Timer: t}
	}
	return stepTimer{Timer: time.NewTimer(d), d: d}
}

// restart starts the step's time again.
func (t stepTimer) restart() {
	if t.d > 0 {
		t.Reset(t.d)
	}
}

// Close closes the connection.
func (s *Session) Close() error {
	return s.client.Close()
}
