package sshexec

import (
	"regexp"
	"strings"
)

// escVia says which program an escDialogue talks to.
type escVia int

const (
	viaSu escVia = iota + 1
	viaSudo
)

// Markers the escalated shell prints (never a secret): readyRe once su
// let it in, with the account it runs as; endRe after each command, with
// the command's exit status or the account (Check).
var (
	readyRe = regexp.MustCompile(`@rotord@ready@([A-Za-z0-9_.$-]*)@`)
	endRe   = regexp.MustCompile(`@rotord@end@([A-Za-z0-9_.$-]*)@`)
)

// The C-locale words of su (util-linux and shadow-utils: "Authentication
// failure"; BusyBox: "incorrect password") and sudo 1.9.
var (
	suAuthFailRe  = regexp.MustCompile(`(?im)^su: (authentication failure|incorrect password)`)
	suDeniedRe    = regexp.MustCompile(`(?im)^su: permission denied`)
	sudoSorryRe   = regexp.MustCompile(`(?im)(^sorry, try again\.|\bincorrect password attempts?\b)`)
	sudoersRe     = regexp.MustCompile(`(?im)(is not in the sudoers file|may not run sudo on|is not allowed to (execute|run))`)
	sudoTTYRe     = regexp.MustCompile(`(?im)(a terminal is required|you must have a tty to run sudo)`)
	sudoNeedsPwRe = regexp.MustCompile(`(?im)^sudo: a password is required`)
	// sudoDefaultPromptRe is sudo's own prompt (lower-cased), should a
	// sudoers passprompt_override put it in place of the one rotord asks for.
	sudoDefaultPromptRe = regexp.MustCompile(`^\[sudo\] password for [a-z0-9_.$-]+:$`)
)

// escDialogue drives su's or sudo's authentication. Like dialogue it is
// a pure state machine: fed their output, it returns the answer to write
// and, once it can tell, the verdict (err nil: let in). It answers a
// password prompt at most once: a second prompt is a refusal, never
// answered again. Its transcript is redacted.
type escDialogue struct {
	via     escVia
	answer  string // su: the target's password; sudo: the logon account's ("" for none)
	secrets []string
	out     []byte
	mark    int // start of the output after the answer
	sent    bool
	done    bool
	err     error
	user    string // su: the account the ready marker names
}

// interrupt is the terminal's interrupt character (^C, VINTR).
const interrupt = 0x03

func newEscDialogue(via escVia, answer string, secrets ...string) *escDialogue {
	return &escDialogue{via: via, answer: answer, secrets: append(secrets, answer)}
}

// feed consumes a chunk. It returns the bytes to write, whether the
// authentication is over (e.err says how), and, for sudo, the part of p
// that belongs to the command sudo runs once it let the account in.
func (e *escDialogue) feed(p []byte) (answer []byte, done bool, pass []byte) {
	if e.done {
		return nil, true, nil
	}
	start := len(e.out)
	e.out = append(e.out, p...)
	text := string(e.out)
	last := text
	if i := strings.LastIndexAny(last, "\r\n"); i >= 0 {
		last = last[i+1:]
	}
	last = strings.ToLower(strings.TrimSpace(last))
	switch e.via {
	case viaSu:
		after := text[e.mark:]
		switch {
		case readyRe.MatchString(text):
			e.user = readyRe.FindStringSubmatch(text)[1]
			return nil, e.end(nil), nil
		case suAuthFailRe.MatchString(after) && e.sent:
			return nil, e.end(ErrSuRefused), nil
		case suDeniedRe.MatchString(text):
			return nil, e.end(ErrSuDenied), nil
		case suAuthFailRe.MatchString(text):
			// Refused before a password was asked (an account pam_faillock
			// holds locked): the target's authentication failed.
			return nil, e.end(ErrSuRefused), nil
		case last == "password:":
			if e.sent {
				return nil, e.end(ErrEscalation), nil
			}
			e.sent = true
			e.mark = len(e.out)
			return []byte(e.answer + "\n"), false, nil
		}
		return nil, false, nil
	case viaSudo:
		switch {
		case sudoSorryRe.MatchString(text):
			// sudo goes straight on to its next try: interrupt it (^C on
			// the terminal; sudo dies of the signal without going back to
			// PAM). Ending its input or the channel instead fails that try
			// through PAM, a second refusal pam_faillock counts.
			return []byte{interrupt}, e.end(ErrSudoRefused), nil
		case sudoersRe.MatchString(text):
			return nil, e.end(ErrNotInSudoers), nil
		case sudoTTYRe.MatchString(text):
			return nil, e.end(ErrSudoTTY), nil
		case sudoNeedsPwRe.MatchString(text):
			return nil, e.end(ErrSudoPasswordRequired), nil
		case last == sudoPrompt || sudoDefaultPromptRe.MatchString(last):
			switch {
			case e.sent:
				return []byte{interrupt}, e.end(ErrSudoRefused), nil
			case e.answer == "":
				return nil, e.end(ErrSudoPasswordRequired), nil
			}
			e.sent = true
			e.mark = len(e.out)
			return []byte(e.answer + "\n"), false, nil
		}
		if start < e.mark {
			start = e.mark
		}
		return nil, false, e.out[start:]
	}
	return nil, e.end(ErrEscalation), nil
}

// eof ends the dialogue when the program's output ended without a verdict.
func (e *escDialogue) eof() error {
	if e.done {
		return e.err
	}
	if e.via == viaSu && e.sent {
		// The password is out and su said nothing understood: it may
		// have been refused.
		e.end(ErrSuUnknown)
	} else {
		e.end(ErrEscalation)
	}
	return e.err
}

func (e *escDialogue) end(err error) bool {
	e.done, e.err = true, err
	return true
}

// transcript returns what the program said, redacted.
func (e *escDialogue) transcript() string { return redact(string(e.out), e.secrets...) }

// splitLines splits s at CR and LF and trims each line.
func splitLines(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' })
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return f
}
