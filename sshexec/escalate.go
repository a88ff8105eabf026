package sshexec

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// Escalation is how the logon account becomes able to change the target
// account's password.
type Escalation int

// The escalations.
const (
	// EscalateNone: the target logs in itself and runs passwd.
	EscalateNone Escalation = iota
	// EscalateSu: the logon account runs `su - TARGET`, answering with the
	// target's password, and passwd runs in that shell.
	EscalateSu
	// EscalateSudo: the logon account runs `passwd TARGET` through
	// `sudo -S`, answering sudo's prompt with its own password (or, without
	// one, `sudo -n` where sudoers says NOPASSWD).
	EscalateSudo
)

// String returns none, su or sudo.
func (e Escalation) String() string {
	switch e {
	case EscalateNone:
		return "none"
	case EscalateSu:
		return "su"
	case EscalateSudo:
		return "sudo"
	}
	return "escalation(" + strconv.Itoa(int(e)) + ")"
}

// ParseEscalation reads "none" (or ""), "su" or "sudo".
func ParseEscalation(s string) (Escalation, error) {
	switch s {
	case "", "none":
		return EscalateNone, nil
	case "su":
		return EscalateSu, nil
	case "sudo":
		return EscalateSudo, nil
	}
	return 0, fmt.Errorf("escalation %q: want none, su or sudo", s)
}

// Path is how rotord reaches the account it rotates on a host: the logon
// account that opens the SSH session, its credential, and the escalation
// to the target.
type Path struct {
	// Logon is the account that opens the SSH session. With EscalateNone
	// it is the target itself ("" means the target).
	Logon string
	// Auth is the logon account's credential. With EscalateNone and a
	// password (or no credential), the target's own password is used.
	Auth LogonAuth
	// Escalation is none, su or sudo.
	Escalation Escalation
}

// String describes the path without a credential, e.g.
// "logon ops by key ssh-ed25519, su".
func (p Path) String() string {
	logon := p.Logon
	if logon == "" {
		logon = "(target)"
	}
	return "logon " + logon + " by " + p.Auth.String() + ", " + p.Escalation.String()
}

// Reach logs into hosts along a Path. It implements rotation.HostChanger:
// Login(h, target, pw) succeeds only if pw authenticates target on h (su,
// through PAM, proves it where the target itself does not log in), and
// its session changes the target's password. It is safe for concurrent use.
type Reach struct {
	d    *Dialer
	path Path
	pool logonPool
}

var _ rotation.HostChanger = (*Reach)(nil)

// Through returns a Reach that logs in along p with d's configuration
// (known_hosts, timeouts). su and sudo need a logon account; a key
// logon needs EscalateNone, su or sudo, and sudo by key without a
// password relies on NOPASSWD.
func (d *Dialer) Through(p Path) (*Reach, error) {
	switch p.Escalation {
	case EscalateNone:
	case EscalateSu, EscalateSudo:
		if p.Logon == "" {
			return nil, fmt.Errorf("path: %s needs a logon account", p.Escalation)
		}
		if p.Auth.signer == nil && p.Auth.password.IsZero() {
			return nil, fmt.Errorf("path: the logon account %s has no credential (a password or a key)", p.Logon)
		}
	default:
		return nil, fmt.Errorf("path: unknown escalation %d", p.Escalation)
	}
	if p.Logon != "" && !userRe.MatchString(p.Logon) {
		return nil, fmt.Errorf("path: invalid logon account name %q", p.Logon)
	}
	return &Reach{d: d, path: p}, nil
}

// Path returns the path r logs in along.
func (r *Reach) Path() Path { return r.path }

// Login opens a session on h along the path that can change target's
// password, and proves pw authenticates target:
//
//   - none: target logs in itself (with pw, or with the key, and then su
//     proves pw); the session is a *Session.
//   - su: the logon account logs in, runs `su - target` answering pw, and
//     keeps that shell as the session (the lifeline).
//   - sudo: the logon account logs in; when it logged in by key, `su
//     LOGON` proves its password first (one try: sudo would try a refused
//     one twice); sudo shows it may act as root; `su target -c` proves pw.
//
// With su and sudo, sessions open on h at the same time share one logon
// connection (the verifying login rides on the lifeline's), each on its
// own channel; a connection that died is replaced by a fresh login.
//
// Errors: *HostKeyError (rotation.ErrHostKey), rotation.ErrUnreachable
// before any credential was sent, and otherwise a *StepError naming the
// host, the step and the reason; a refusal of pw satisfies
// rotation.ErrAuthFailed (ErrSuRefused, or the Dialer's refusal for a
// target logging in itself with pw). No step is tried twice.
func (r *Reach) Login(ctx context.Context, h rotation.Host, target string, pw secret.Value) (rotation.HostSession, error) {
	if !userRe.MatchString(target) {
		return nil, fmt.Errorf("login %s: invalid user name %q", h, target)
	}
	p := r.path
	if p.Escalation == EscalateNone && p.Logon != "" && p.Logon != target {
		return nil, fmt.Errorf("login %s: escalation none logs in as the target %s itself, not %s", h, target, p.Logon)
	}
	if p.Escalation == EscalateNone && p.Auth.signer == nil {
		return r.d.Login(ctx, h, target, pw)
	}
	if p.Escalation == EscalateNone {
		// The target logs in itself by key: a connection of its own,
		// which the returned *Session closes.
		client, addr, err := r.d.dialLogon(ctx, h, target, p.Auth)
		if err != nil {
			return nil, err
		}
		s := &reachSession{r: r, client: client, addr: addr, logon: target, target: target, pw: pw}
		if err := s.suProve(ctx); err != nil {
			client.Close()
			return nil, err
		}
		return &Session{client: client, addr: addr, user: target, pw: pw, step: r.d.cfg.StepTimeout, log: r.d.log}, nil
	}
	s, err := r.logonSession(ctx, h, target, pw)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	switch p.Escalation {
	case EscalateSu:
		if err := s.openShell(ctx); err != nil {
			return nil, err
		}
	case EscalateSudo:
		if err := s.proveLogonPassword(ctx); err != nil {
			return nil, err
		}
		if err := s.sudoCheck(ctx); err != nil {
			return nil, err
		}
		if err := s.suProve(ctx); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// Verify proves pw authenticates target on h, changing nothing. With su
// and sudo it is `su target -c` from the logon session (on the shared
// logon connection, maybe the lifeline's): the target is authenticated
// afresh through PAM, without a second escalated shell or a sudo check;
// with none, a login as the target, checked and closed.
func (r *Reach) Verify(ctx context.Context, h rotation.Host, target string, pw secret.Value) error {
	if r.path.Escalation == EscalateNone {
		return checkAndClose(ctx, func() (rotation.HostSession, error) { return r.Login(ctx, h, target, pw) })
	}
	if !userRe.MatchString(target) {
		return fmt.Errorf("verify %s: invalid user name %q", h, target)
	}
	s, err := r.logonSession(ctx, h, target, pw)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.suProve(ctx)
}

// logonSession is a session on the logon account's (shared) connection
// to h, for reaching target with pw; nothing has run on it yet.
func (r *Reach) logonSession(ctx context.Context, h rotation.Host, target string, pw secret.Value) (*reachSession, error) {
	client, addr, release, err := r.sharedLogon(ctx, h, r.path.Logon)
	if err != nil {
		return nil, err
	}
	return &reachSession{r: r, client: client, release: release, addr: addr, logon: r.path.Logon, target: target, pw: pw}, nil
}

// Preflight checks, changing nothing, that the whole path works on h:
// the logon, the escalation (with sudo, that sudo would run passwd for
// target), and that pw authenticates target: a login along the path,
// checked and closed.
func (r *Reach) Preflight(ctx context.Context, h rotation.Host, target string, pw secret.Value) error {
	return checkAndClose(ctx, func() (rotation.HostSession, error) { return r.Login(ctx, h, target, pw) })
}

// reachSession is a session of a Reach with su or sudo. With su, shell is
// the target's shell (the lifeline); with sudo every command runs through
// sudo on its own channel of the logon connection.
type reachSession struct {
	r             *Reach
	client        *ssh.Client // the logon connection, maybe shared with other sessions of r
	release       func()      // gives the connection back
	addr          string
	logon, target string
	pw            secret.Value // the target's password the session was opened with
	shell         *ptyChan     // su: the target's shell
	shellBroken   bool
}

var _ rotation.HostSession = (*reachSession)(nil)

func (s *reachSession) step() time.Duration { return s.r.d.cfg.StepTimeout }

func (s *reachSession) stepErr(step Step, user string, err error, transcript string) error {
	return &StepError{Host: s.addr, Step: step, User: user, Err: err, Transcript: transcript}
}

// suCommand is su to user running script (markers only, no secret).
func suCommand(user string, login bool, script string) string {
	dash := ""
	if login {
		dash = "- "
	}
	return "exec env LC_ALL=C LANG=C su " + dash + user + " -c '" + script + "'"
}

// shellScript prints the ready marker and then runs each line it reads,
// without prompts (a non-interactive shell on the PTY).
const shellScript = `printf "@rotord@ready@%s@\n" "$(id -un)"; while IFS= read -r l; do eval "$l"; done`

// readyScript only prints the ready marker.
const readyScript = `printf "@rotord@ready@%s@\n" "$(id -un)"`

// suDialogue runs cmd, an su to user, and answers its password prompt
// with pw, once. It leaves the channel open when su let the account in;
// otherwise the error is a *StepError of StepSu.
func (s *reachSession) suDialogue(ctx context.Context, cmd, user string, pw secret.Value) (*ptyChan, error) {
	p, err := openPTY(ctx, s.client, cmd, s.step())
	if err != nil {
		return nil, s.stepErr(StepSu, user, err, "")
	}
	e := newEscDialogue(viaSu, pw.Reveal())
	end, cerr := p.converse(ctx, s.step(), func(b []byte) ([]byte, bool) {
		a, done, _ := e.feed(b)
		return a, done
	})
	var why error
	switch end {
	case endDone:
		why = e.err
		switch {
		case why != nil:
		case e.user != user:
			why = ErrNotTarget
		case !e.sent:
			why = ErrSuNoPassword
		}
	case endEOF:
		why = e.eof()
		if !e.sent {
			// su exiting on its own reports its status; a channel that
			// ended without one was cut, perhaps inside PAM.
			if _, known := p.exit(s.step()); !known {
				why = ErrSuCutOff
			}
		}
	default:
		switch {
		case e.sent:
			why = fmt.Errorf("%w (%w)", ErrSuUnknown, cerr)
		case end == endTimeout:
			why = fmt.Errorf("%w: %w", ErrEscalation, cerr)
		default:
			why = unreachable(cerr)
		}
	}
	if why != nil {
		p.close()
		return nil, s.stepErr(StepSu, user, why, e.transcript())
	}
	return p, nil
}

// openShell becomes the target through `su - target` and keeps the shell.
func (s *reachSession) openShell(ctx context.Context) error {
	p, err := s.suDialogue(ctx, suCommand(s.target, true, shellScript), s.target, s.pw)
	if err != nil {
		return err
	}
	s.shell = p
	return nil
}

// suProve proves the target's password through PAM: `su target -c`
// answering with it, from the logon session.
func (s *reachSession) suProve(ctx context.Context) error {
	p, err := s.suDialogue(ctx, suCommand(s.target, false, readyScript), s.target, s.pw)
	if err != nil {
		return err
	}
	p.close()
	return nil
}

// proveLogonPassword checks the logon account's password before sudo is
// given it, with `su LOGON` (one try). sudo tries a refused password
// again at once, and stopping it there fails that second try through PAM
// too: two refusals pam_faillock counts instead of one. Only a logon by
// key needs it (sshd has just accepted a logon password). Where su is
// denied to the logon account (pam_wheel) there is no such proof and
// sudo is asked directly.
func (s *reachSession) proveLogonPassword(ctx context.Context) error {
	auth := s.r.path.Auth
	if auth.signer == nil || auth.password.IsZero() {
		return nil
	}
	p, err := s.suDialogue(ctx, suCommand(s.logon, false, readyScript), s.logon, auth.password)
	if err == nil {
		p.close()
		return nil
	}
	var se *StepError
	switch {
	case errors.Is(err, ErrSuDenied):
		return nil
	case errors.As(err, &se) && errors.Is(err, ErrSuRefused):
		return s.stepErr(StepSudo, s.logon, ErrSudoRefused, se.Transcript)
	case errors.As(err, &se) && errors.Is(err, ErrSuUnknown):
		return s.stepErr(StepSudo, s.logon, fmt.Errorf("%w: proving the logon password with su: %w", ErrEscalation, rotation.ErrLoginUnknown), se.Transcript)
	case errors.As(err, &se):
		se.Step, se.Err = StepSudo, fmt.Errorf("proving the logon password with su: %w", se.Err)
		return se
	}
	return err
}

// sudoPasswdCommand is the command rotord runs as root through sudo to
// set user's password: passwd in the C locale, whose words the dialogue
// knows. A sudoers rule may allow exactly this command, e.g.
// `ops ALL=(root) /usr/bin/env LC_ALL\=C LANG\=C passwd root`.
func sudoPasswdCommand(user string) string { return "env LC_ALL=C LANG=C passwd " + user }

// sudoCommand runs cmd as root through sudo (with list, only asks sudo
// whether it would): -S with the fixed prompt when the path has the logon
// account's password, -n otherwise. sudo's own messages are in the C
// locale.
func (s *reachSession) sudoCommand(list bool, cmd string) string {
	flags := "-n"
	if !s.r.path.Auth.password.IsZero() {
		flags = "-S -p '" + sudoPrompt + "'"
	}
	if list {
		flags += " -l"
	}
	return "exec env LC_ALL=C LANG=C sudo " + flags + " -- " + cmd
}

// sudoCheck shows, running nothing, that sudo lets the logon account run
// the very passwd command the change runs for the target (`sudo -l
// COMMAND`): a rule that allows other commands only, or this one only, is
// judged as the change would find it.
func (s *reachSession) sudoCheck(ctx context.Context) error {
	cmd := sudoPasswdCommand(s.target)
	p, err := openPTY(ctx, s.client, s.sudoCommand(true, cmd), s.step())
	if err != nil {
		return s.stepErr(StepSudo, s.logon, err, "")
	}
	defer p.close()
	pwd := s.r.path.Auth.password.Reveal()
	e := newEscDialogue(viaSudo, pwd, s.pw.Reveal())
	var out []byte
	end, cerr := p.converse(ctx, s.step(), func(b []byte) ([]byte, bool) {
		a, done, pass := e.feed(b)
		out = append(out, pass...)
		return a, done
	})
	var why error
	switch end {
	case endDone:
		why = e.err
	case endEOF:
		status, known := p.exit(s.step())
		switch {
		case e.done:
			why = e.err
		case known && status == 0 && sudoListed(lastLine(string(out)), cmd):
		case known && status == 1 && lastLine(string(out)) == "":
			// sudo -l COMMAND ends with status 1 and says nothing when
			// sudoers does not allow COMMAND.
			why = fmt.Errorf("%w (sudo -l: %s not allowed)", ErrNotInSudoers, cmd)
		default:
			why = ErrEscalation
		}
	case endTimeout:
		why = fmt.Errorf("%w: %w", ErrEscalation, cerr)
	default:
		why = unreachable(cerr)
	}
	if why != nil {
		return s.stepErr(StepSudo, s.logon, why, e.transcript())
	}
	return nil
}

// sudoListed reports whether line is sudo -l's answer allowing cmd: the
// command's full path and its arguments.
func sudoListed(line, cmd string) bool {
	name, args, _ := strings.Cut(cmd, " ")
	path, rest, _ := strings.Cut(line, " ")
	return rest == args && (path == name || strings.HasSuffix(path, "/"+name))
}

// Check proves the session can act on the target: with su, the kept
// shell runs as the target; with sudo, the logon connection answers (Login
// has just shown, with sudo -l, that sudo would run passwd for the target:
// asking again would cost the logon account another PAM authentication).
func (s *reachSession) Check(ctx context.Context) error {
	if s.shell == nil {
		if !alive(ctx, s.client, s.step()) {
			return s.stepErr(StepCheck, s.logon, unreachable(errLogonLost), "")
		}
		return nil
	}
	if s.shellBroken {
		return s.stepErr(StepCheck, s.target, unreachable(errShellLost), "")
	}
	var got string
	err := s.inShell(ctx, `printf '@rotord@end@%s@\n' "$(id -un)"`, func([]byte) []byte { return nil }, func(v string) { got = v })
	if err != nil {
		return s.stepErr(StepCheck, s.target, err, "")
	}
	if got != s.target {
		return s.stepErr(StepCheck, s.target, ErrNotTarget, "")
	}
	return nil
}

// errShellLost: the escalated shell ended or is stuck.
var errShellLost = errors.New("the escalated shell is gone")

// errLogonLost: the logon connection does not answer.
var errLogonLost = errors.New("the logon connection does not answer")

// inShell writes line to the kept shell and reads its output up to the
// end marker, handing each chunk before it to feed (whose answers are
// written) and the marker's value to end.
func (s *reachSession) inShell(ctx context.Context, line string, feed func([]byte) []byte, end func(string)) error {
	if err := s.shell.write([]byte(line + "\n")); err != nil {
		s.shellBroken = true
		return err
	}
	var buf []byte
	fed := 0
	kind, err := s.shell.converse(ctx, s.step(), func(b []byte) ([]byte, bool) {
		buf = append(buf, b...)
		if m := endRe.FindSubmatchIndex(buf); m != nil {
			if m[0] > fed {
				feed(buf[fed:m[0]])
			}
			end(string(buf[m[2]:m[3]]))
			return nil, true
		}
		fed = len(buf)
		return feed(b), false
	})
	if kind != endDone {
		s.shellBroken = true
		if kind == endEOF {
			return unreachable(errShellLost)
		}
		return unreachable(err)
	}
	return nil
}

// ChangePassword changes the target's password: passwd in the target's
// shell (su; root is asked no current password), or `passwd TARGET`
// through sudo. A failure of su or sudo itself is OutcomeUnexpected with a
// *StepError in Err: passwd did not run, nothing changed.
func (s *reachSession) ChangePassword(ctx context.Context, old, new secret.Value) rotation.Outcome {
	if s.shell == nil {
		return s.sudoPasswd(ctx, s.target, new, old)
	}
	return s.shellPasswd(ctx, "env LC_ALL=C LANG=C passwd", newDialogue(modeSelf, old, new, secret.Value{}))
}

// SetPassword sets user's password with root's privileges: passwd USER in
// the target's shell (meaningful when the target is root) or through sudo.
func (s *reachSession) SetPassword(ctx context.Context, user string, new secret.Value) rotation.Outcome {
	if !userRe.MatchString(user) {
		return rotation.Outcome{Kind: rotation.OutcomeUnexpected, Err: fmt.Errorf("set password: invalid user name %q", user)}
	}
	if s.shell == nil {
		return s.sudoPasswd(ctx, user, new, secret.Value{})
	}
	return s.shellPasswd(ctx, "env LC_ALL=C LANG=C passwd "+user, newDialogue(modeOther, secret.Value{}, new, s.pw))
}

// shellPasswd runs a passwd command line in the kept shell with d.
func (s *reachSession) shellPasswd(ctx context.Context, cmd string, d *dialogue) rotation.Outcome {
	if s.shellBroken {
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, unreachable(errShellLost)))
	}
	var status string
	err := s.inShell(ctx, cmd+`; printf '@rotord@end@%s@\n' "$?"`, func(b []byte) []byte {
		if d.done {
			return nil
		}
		a, done := d.feed(b)
		if done {
			// passwd waits at a prompt the dialogue will not answer:
			// end its input so that it gives up and the shell goes on.
			return []byte{4}
		}
		return a
	}, func(v string) { status = v })
	if err != nil {
		if errors.Is(err, ErrStepTimeout) {
			return d.timeout()
		}
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, err))
	}
	n, convErr := strconv.Atoi(status)
	return d.finish(n, convErr == nil)
}

// sudoPasswd runs `passwd user` through sudo on a channel of its own,
// answering sudo's prompt with the logon account's password.
func (s *reachSession) sudoPasswd(ctx context.Context, user string, new, old secret.Value) rotation.Outcome {
	logonPw := s.r.path.Auth.password
	d := newDialogue(modeOther, old, new, logonPw)
	p, err := openPTY(ctx, s.client, s.sudoCommand(false, sudoPasswdCommand(user)), s.step())
	if err != nil {
		if errors.Is(err, ErrStepTimeout) {
			return d.timeout()
		}
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, err))
	}
	defer p.close()
	e := newEscDialogue(viaSudo, logonPw.Reveal(), new.Reveal(), old.Reveal())
	end, cerr := p.converse(ctx, s.step(), func(b []byte) ([]byte, bool) {
		a, done, pass := e.feed(b)
		if done {
			return a, true
		}
		if a != nil {
			return a, false
		}
		if len(pass) > 0 {
			return d.feed(pass)
		}
		return nil, false
	})
	if e.done {
		return rotation.Outcome{Kind: rotation.OutcomeUnexpected, Transcript: e.transcript(),
			Err: s.stepErr(StepSudo, s.logon, e.err, e.transcript())}
	}
	switch end {
	case endDone:
		return d.outcome
	case endEOF:
		status, known := p.exit(s.step())
		return d.finish(status, known)
	case endTimeout:
		return d.timeout()
	default:
		return d.abort(fmt.Errorf("passwd on %s: %w", s.addr, cerr))
	}
}

// Close ends the kept shell and the connection.
func (s *reachSession) Close() error {
	if s.shell != nil {
		s.shell.close()
	}
	s.release()
	return nil
}

// lastLine returns the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := splitLines(s)
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i] != "" {
			return lines[i]
		}
	}
	return ""
}
