package sshexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
)

// feedAll feeds chunks to e and returns what it answered to each and
// whether it was done after the last.
func feedAll(e *escDialogue, chunks ...string) (answers []string, done bool, passed string) {
	for _, c := range chunks {
		a, d, p := e.feed([]byte(c))
		answers = append(answers, string(a))
		passed += string(p)
		done = d
	}
	return answers, done, passed
}

// TestEscalationDialogueSu: su's prompt is answered with the target's
// password once; its verdicts (C locale of util-linux su) are typed; a
// second prompt is never answered; the transcript holds no password.
func TestEscalationDialogueSu(t *testing.T) {
	const pw = "Target-Pw-1"
	for _, c := range []struct {
		name   string
		chunks []string
		want   error
		sent   bool
	}{
		{"let in", []string{"Password: ", "\r\n@rotord@ready@root@\r\n"}, nil, true},
		{"refused", []string{"Password: ", "\r\nsu: Authentication failure\r\n"}, ErrSuRefused, true},
		{"pam_wheel", []string{"Password: ", "\r\nsu: Permission denied\r\n"}, ErrSuDenied, true},
		{"pam_wheel requisite", []string{"su: Permission denied\r\n"}, ErrSuDenied, false},
		{"locked before a prompt", []string{"su: Authentication failure\r\n"}, ErrSuRefused, false},
		{"busybox su", []string{"Password: ", "\r\nsu: incorrect password\r\n"}, ErrSuRefused, true},
		{"asked twice", []string{"Password: ", "\r\nPassword: "}, ErrEscalation, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEscDialogue(viaSu, pw)
			answers, done, _ := feedAll(e, c.chunks...)
			if !done || !errors.Is(e.err, c.want) && !(c.want == nil && e.err == nil) {
				t.Fatalf("done %v err %v, want %v", done, e.err, c.want)
			}
			n := 0
			for _, a := range answers {
				if a != "" {
					n++
					if a != pw+"\n" {
						t.Fatalf("answered %q", redact(a, pw))
					}
				}
			}
			if c.sent != (n == 1) || n > 1 {
				t.Fatalf("answered %d times", n)
			}
			if strings.Contains(e.transcript(), pw) {
				t.Fatal("the transcript holds the password")
			}
		})
	}
	if e := newEscDialogue(viaSu, pw); !errors.Is(ErrSuRefused, rotation.ErrAuthFailed) || !errors.Is(ErrSuUnknown, rotation.ErrLoginUnknown) {
		t.Fatal("su's refusal is not the engine's")
	} else if feedAll(e, "Password: "); !errors.Is(e.eof(), ErrSuUnknown) {
		t.Fatal("a sent password without a verdict is not unknown")
	}
	if e := newEscDialogue(viaSu, pw); !errors.Is(e.eof(), ErrEscalation) || errors.Is(e.err, rotation.ErrLoginUnknown) {
		t.Fatal("su ending before a prompt")
	}
	for _, err := range []error{ErrSuDenied, ErrSudoRefused, ErrNotInSudoers, ErrSudoTTY, ErrSudoPasswordRequired, ErrLogonRefused, ErrLogonKeyRefused, ErrLogonMethod} {
		if errors.Is(err, rotation.ErrAuthFailed) || errors.Is(err, rotation.ErrLoginUnknown) || rotation.Transient(err) {
			t.Errorf("%v counts as the target's refusal or is retried", err)
		}
	}
}

// TestEscalationDialogueSudo: sudo's fixed prompt is answered once with
// the logon password; every refusal sudo 1.9 words in the C locale is
// typed; what follows sudo's authentication passes to the command's
// dialogue.
func TestEscalationDialogueSudo(t *testing.T) {
	const pw = "Logon-Pw-2"
	for _, c := range []struct {
		name   string
		answer string
		chunks []string
		want   error
	}{
		{"sorry", pw, []string{sudoPrompt, "\r\nSorry, try again.\r\n"}, ErrSudoRefused},
		{"prompted again", pw, []string{sudoPrompt, "\r\n" + sudoPrompt}, ErrSudoRefused},
		{"attempts", pw, []string{sudoPrompt, "\r\nsudo: 3 incorrect password attempts\r\n"}, ErrSudoRefused},
		{"not in sudoers", pw, []string{sudoPrompt, "\r\nrotuser is not in the sudoers file.\r\n"}, ErrNotInSudoers},
		{"not allowed", pw, []string{sudoPrompt, "\r\nSorry, user rotuser is not allowed to execute '/usr/bin/passwd root' as root on h.\r\n"}, ErrNotInSudoers},
		{"requiretty", pw, []string{"sudo: sorry, you must have a tty to run sudo\r\n"}, ErrSudoTTY},
		{"no terminal", pw, []string{"sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\r\n"}, ErrSudoTTY},
		{"a password is required", "", []string{"sudo: a password is required\r\n"}, ErrSudoPasswordRequired},
		{"prompt without a password", "", []string{sudoPrompt}, ErrSudoPasswordRequired},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEscDialogue(viaSudo, c.answer)
			answers, done, _ := feedAll(e, c.chunks...)
			if !done || !errors.Is(e.err, c.want) {
				t.Fatalf("done %v err %v, want %v", done, e.err, c.want)
			}
			n := 0
			for _, a := range answers {
				if a != "" && a != "\x03" {
					n++
				}
			}
			if n > 1 {
				t.Fatalf("answered %d times", n)
			}
			if c.want == ErrSudoRefused && answers[len(answers)-1] != "\x03" {
				t.Fatal("a refusing sudo was not interrupted before its next try")
			}
			if strings.Contains(e.transcript(), pw) {
				t.Fatal("the transcript holds the password")
			}
		})
	}
	for _, prompt := range []string{sudoPrompt, "[sudo] password for rotuser: "} {
		e := newEscDialogue(viaSudo, pw)
		answers, done, passed := feedAll(e, prompt, "\r\nNew password: ")
		if done || answers[0] != pw+"\n" || answers[1] != "" || passed != "\r\nNew password: " {
			t.Fatalf("done %v answers %q passed %q", done, redact(strings.Join(answers, "|"), pw), passed)
		}
	}
	e := newEscDialogue(viaSudo, pw)
	answers, done, passed := feedAll(e, sudoPrompt, "\r\nNew password: ")
	if done || answers[0] != pw+"\n" || answers[1] != "" || passed != "\r\nNew password: " {
		t.Fatalf("done %v answers %q passed %q", done, redact(strings.Join(answers, "|"), pw), passed)
	}
}
