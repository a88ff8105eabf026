package sshexec

import (
	"errors"
	"regexp"
	"strings"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// Errors carried in rotation.Outcome.Err by ChangePassword and SetPassword.
var (
	// ErrMismatch: passwd said the two new passwords differ although the
	// same one was sent twice (the terminal mangled it); nothing changed.
	ErrMismatch = errors.New("passwd reported the new passwords do not match")
	// ErrUnexpectedOutput: passwd said something not understood.
	ErrUnexpectedOutput = errors.New("unexpected passwd output")
	// ErrStepTimeout: passwd did not prompt or finish within the step timeout.
	ErrStepTimeout = errors.New("passwd step timed out")
)

// dialogueMode says whose password a dialogue changes.
type dialogueMode int

const (
	// modeSelf: the logged-in user changes its own password (current, new,
	// retype); passwd may skip the current password (root changing its own).
	modeSelf dialogueMode = iota
	// modeOther: a privileged login sets another user's password (new, retype),
	// possibly after answering sudo's marked prompt.
	modeOther
)

// sudoPrompt is the prompt sudo -S is told to print; the dialogue answers it
// with the login password.
const sudoPrompt = "rotord-sudo-password:"

type promptKind int

const (
	promptNone promptKind = iota
	promptCurrent
	promptNew
	promptRetype
	promptSudo
)

// prompts are matched against the last, unfinished line of passwd's output,
// trimmed and lower-cased (the C locale's wordings of shadow-utils, PAM,
// BusyBox, RHEL and sssd).
var prompts = []struct {
	re   *regexp.Regexp
	kind promptKind
}{
	{regexp.MustCompile(`^(\(current\) unix |current |old |enter current |\(current\) )password:$`), promptCurrent},
	{regexp.MustCompile(`^(enter )?new (unix )?password:$`), promptNew},
	{regexp.MustCompile(`^(retype|re-enter|reenter|repeat) (new )?(unix )?password:$`), promptRetype},
	{regexp.MustCompile(`^` + regexp.QuoteMeta(sudoPrompt) + `$`), promptSudo},
}

var (
	// successRe matches the messages passwd prints when the password changed.
	successRe = regexp.MustCompile(`(?im)^passwd: (password updated successfully|all authentication tokens updated successfully\.?|password for \S+ changed by \S+)\s*$`)
	// wrongCurrentRe matches a refused current password.
	wrongCurrentRe = regexp.MustCompile(`(?im)(authentication token manipulation error|authentication failure|^incorrect password)`)
	// reasonRe matches a policy's reason for refusing a new password.
	reasonRe = regexp.MustCompile(`(?im)^(?:bad password: (.+?)|(you must choose a longer password\.?)|(the password has not been changed\.?)|(password unchanged: .+?)|(password has been already used\..*?)|(?:passwd: )?(you (?:must|should) wait longer to change your password\.?)|(.*\btoo (?:similar|short|simple)\b.*?))\s*$`)
	// mismatchRe matches passwd's complaint that the retyped password differs.
	mismatchRe = regexp.MustCompile(`(?im)(passwords do not match|passwords don't match)`)
)

// dialogue drives one passwd run. It is a pure state machine: fed passwd's
// output, it returns the bytes to answer with and, once it can tell, the
// outcome. It never keeps a password in its transcript.
type dialogue struct {
	mode           dialogueMode
	old, new, sudo string // answers; old is unused in modeOther
	out            []byte // everything passwd said
	mark           int    // start of the output not yet answered
	sentCurrent    int
	sentNew        int // answers to "new password" prompts
	sentRetype     int
	sentSudo       int
	done           bool
	outcome        rotation.Outcome
}

func newDialogue(mode dialogueMode, old, new, sudo secret.Value) *dialogue {
	return &dialogue{mode: mode, old: old.Reveal(), new: new.Reveal(), sudo: sudo.Reveal()}
}

// feed consumes a chunk of output. It returns the answer to write (nil if
// none is due yet) and whether the dialogue has ended; once ended, the
// caller stops the remote passwd and reads d.outcome.
func (d *dialogue) feed(p []byte) (answer []byte, done bool) {
	if d.done {
		return nil, true
	}
	d.out = append(d.out, p...)
	pending := string(d.out[d.mark:])
	tail := pending
	if i := strings.LastIndexAny(tail, "\r\n"); i >= 0 {
		tail = tail[i+1:]
	}
	kind := promptNone
	t := strings.ToLower(strings.TrimSpace(tail))
	for _, p := range prompts {
		if p.re.MatchString(t) {
			kind = p.kind
			break
		}
	}
	if kind == promptNone {
		return nil, false
	}
	var ans string
	switch kind {
	case promptSudo:
		if d.mode != modeOther || d.sentSudo > 0 || d.sudo == "" {
			// sudo asks again: the login password was refused.
			return nil, d.end(rotation.OutcomeWrongCurrent, "", nil)
		}
		d.sentSudo++
		ans = d.sudo
	case promptCurrent:
		if d.mode != modeSelf || d.sentNew > 0 || d.sentCurrent >= 2 {
			return nil, d.end(rotation.OutcomeUnexpected, "", ErrUnexpectedOutput)
		}
		d.sentCurrent++
		ans = d.old
	case promptNew:
		// In modeSelf passwd may open with the new password: root changing
		// its own (pam_unix and BusyBox ask root no current password), or a
		// PAM stack that skips the check for this account. The answer is
		// the new password; the old one is never sent to a new-password
		// prompt.
		if d.sentNew > 0 {
			// Asked again: the policy refused the password or the retype
			// did not match. Sending the same password again cannot help.
			return nil, d.endRefused()
		}
		d.sentNew++
		ans = d.new
	case promptRetype:
		if d.sentNew == 0 || d.sentRetype >= d.sentNew {
			return nil, d.end(rotation.OutcomeUnexpected, "", ErrUnexpectedOutput)
		}
		d.sentRetype++
		ans = d.new
	}
	d.mark = len(d.out)
	return []byte(ans + "\n"), false
}

// finish ends the dialogue when passwd has exited (exitKnown false if the
// status was not reported) and returns the outcome.
func (d *dialogue) finish(exitStatus int, exitKnown bool) rotation.Outcome {
	if d.done {
		return d.outcome
	}
	text := string(d.out)
	after := string(d.out[d.mark:])
	switch {
	case successRe.MatchString(after) && (!exitKnown || exitStatus == 0):
		d.end(rotation.OutcomeChanged, "", nil)
	case d.sentNew == 0 && d.mode == modeSelf && d.sentCurrent > 0 && wrongCurrentRe.MatchString(after) && d.reason(after) == "":
		// (A reason, such as the minimum password age, is a policy refusal
		// even though PAM words it as a manipulation error.)
		d.end(rotation.OutcomeWrongCurrent, "", nil)
	case d.mode == modeOther && d.sentSudo > 0 && d.sentNew == 0:
		// sudo refused the login password (or the account may not use sudo).
		d.end(rotation.OutcomeWrongCurrent, "", nil)
	default:
		if reason := d.reason(text); reason != "" {
			d.end(rotation.OutcomeRejected, reason, nil)
		} else if mismatchRe.MatchString(after) {
			d.end(rotation.OutcomeUnexpected, "", ErrMismatch)
		} else {
			d.end(rotation.OutcomeUnexpected, "", ErrUnexpectedOutput)
		}
	}
	return d.outcome
}

// timeout ends the dialogue because a step passed its deadline.
func (d *dialogue) timeout() rotation.Outcome {
	if !d.done {
		d.end(rotation.OutcomeTimeout, "", ErrStepTimeout)
	}
	return d.outcome
}

// abort ends the dialogue because the connection or context failed.
func (d *dialogue) abort(err error) rotation.Outcome {
	if !d.done {
		d.end(rotation.OutcomeUnexpected, "", err)
	}
	return d.outcome
}

func (d *dialogue) endRefused() bool {
	if reason := d.reason(string(d.out)); reason != "" {
		return d.end(rotation.OutcomeRejected, reason, nil)
	}
	if mismatchRe.Match(d.out[d.mark:]) {
		return d.end(rotation.OutcomeUnexpected, "", ErrMismatch)
	}
	return d.end(rotation.OutcomeUnexpected, "", ErrUnexpectedOutput)
}

// reason returns the last policy reason in text, redacted, or "".
func (d *dialogue) reason(text string) string {
	ms := reasonRe.FindAllStringSubmatch(text, -1)
	if len(ms) == 0 {
		return ""
	}
	m := ms[len(ms)-1]
	for _, s := range m[1:] {
		if s != "" {
			return d.redact(strings.TrimSpace(s))
		}
	}
	return ""
}

func (d *dialogue) end(kind rotation.OutcomeKind, reason string, err error) bool {
	d.done = true
	d.outcome = rotation.Outcome{Kind: kind, Reason: reason, Transcript: d.redact(string(d.out)), Err: err}
	return true
}

// redact replaces every password the dialogue knows with secret.Redacted.
func (d *dialogue) redact(s string) string {
	return redact(s, d.old, d.new, d.sudo)
}

// redact replaces every occurrence of each non-empty secret in s with
// secret.Redacted, longest first so that one password inside another is
// not left half visible.
func redact(s string, secrets ...string) string {
	ss := make([]string, 0, len(secrets))
	for _, x := range secrets {
		if x != "" {
			ss = append(ss, x)
		}
	}
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && len(ss[j]) > len(ss[j-1]); j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
	for _, x := range ss {
		s = strings.ReplaceAll(s, x, secret.Redacted)
	}
	return s
}
