package sshexec

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// event is one line of a recorded passwd dialogue in testdata/dialogues:
// out "..." (passwd wrote), in "..." (the answer), exit-status N.
type event struct {
	dir  string
	text string
	exit int
}

// readDialogues returns the sections (### title) of a recorded dialogue file.
func readDialogues(t *testing.T, name string) map[string][]event {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "dialogues", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sections := map[string][]event{}
	var title string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "###"):
			title = strings.TrimSpace(strings.TrimPrefix(line, "###"))
		case strings.HasPrefix(line, "out "), strings.HasPrefix(line, "in "):
			dir, q, _ := strings.Cut(line, " ")
			s, err := strconv.Unquote(strings.TrimSpace(q))
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			sections[title] = append(sections[title], event{dir: dir, text: s})
		case strings.HasPrefix(line, "exit-status "):
			n, _ := strconv.Atoi(strings.TrimPrefix(line, "exit-status "))
			sections[title] = append(sections[title], event{dir: "exit", exit: n})
		case strings.HasPrefix(line, "TIMEOUT"):
			sections[title] = append(sections[title], event{dir: "timeout"})
		}
	}
	if len(sections) == 0 {
		t.Fatalf("%s: no dialogue", name)
	}
	return sections
}

// replay feeds a recorded dialogue to the state machine and checks that
// every answer it gives is the recorded one, until it ends.
func replay(t *testing.T, d *dialogue, evs []event, anyAnswer bool) rotation.Outcome {
	t.Helper()
	var answer []byte
	for _, ev := range evs {
		switch ev.dir {
		case "out":
			if answer != nil {
				t.Fatalf("passwd spoke before the answer %q was recorded", "<answer>")
			}
			a, done := d.feed([]byte(ev.text))
			if done {
				return d.outcome
			}
			answer = a
		case "in":
			if answer == nil {
				// passwd waits for an answer the dialogue will not give.
				return d.timeout()
			}
			if !anyAnswer && string(answer) != ev.text {
				t.Fatalf("answered %q, recorded %q", redact(string(answer), d.old, d.new, d.sudo), redact(ev.text, d.old, d.new, d.sudo))
			}
			answer = nil
		case "timeout":
			return d.timeout()
		case "exit":
			return d.finish(ev.exit, true)
		}
	}
	return d.finish(0, false)
}

func TestDialogueRecorded(t *testing.T) {
	const (
		initial = "Initial-Pw-2024"
		rot     = "Rot-8q!Zx-2024"
	)
	tests := []struct {
		file, section string
		mode          dialogueMode
		old, new      string
		kind          rotation.OutcomeKind
		reason        string
		err           error
		anyAnswer     bool // the recording retyped a different password
	}{
		{file: "01-debian-pty-success.txt", old: initial, new: rot, kind: rotation.OutcomeChanged},
		{file: "02-debian-pty-wrong-current.txt", old: "WrongPw-1", new: rot, kind: rotation.OutcomeWrongCurrent},
		{file: "03-debian-pty-mismatch.txt", old: initial, new: rot, err: ErrMismatch, kind: rotation.OutcomeUnexpected, anyAnswer: true},
		{file: "04-debian-pty-short-similar.txt", old: initial, new: "abc", kind: rotation.OutcomeRejected, reason: "You must choose a longer password."},
		{file: "05-debian-pty-same.txt", old: initial, new: initial, kind: rotation.OutcomeRejected, reason: "The password has not been changed."},
		{file: "08-pwquality-pty.txt", old: initial, new: "abc", kind: rotation.OutcomeRejected, reason: "The password is shorter than 8 characters"},
		{file: "08-pwquality-pty.txt", old: initial, new: "abc", kind: rotation.OutcomeRejected, reason: "The password is shorter than 8 characters"},
		{file: "09-pwquality-exhausted.txt", old: initial, new: "abc", kind: rotation.OutcomeRejected, reason: "The password is shorter than 8 characters"},
		{file: "10-pwquality-mismatch.txt", old: initial, new: "Strong-Q7x!vL-99", kind: rotation.OutcomeUnexpected, err: ErrMismatch, anyAnswer: true},
		{file: "11-pwquality-similar.txt", old: initial, new: initial, kind: rotation.OutcomeRejected, reason: "The password is the same as the old one"},
		{file: "12-pwquality-similar2.txt", old: initial, new: "aaaaaaaaaaaa", kind: rotation.OutcomeRejected, reason: "The password is a palindrome"},
		{file: "20-busybox-pty-success.txt", old: initial, new: rot, kind: rotation.OutcomeChanged},
		{file: "21-busybox-pty-wrong-current.txt", old: "WrongPw-1", new: rot, kind: rotation.OutcomeWrongCurrent},
		{file: "22-busybox-pty-mismatch.txt", old: initial, new: rot, kind: rotation.OutcomeUnexpected, err: ErrMismatch, anyAnswer: true},
		{file: "23-busybox-pty-weak.txt", old: initial, new: "abc", kind: rotation.OutcomeRejected, reason: "too short"},
		{file: "30-debian-de.txt", section: "debian PTY, LANG=de_DE.UTF-8 (sent via SSH env, AcceptEnv LANG LC_*): success", old: initial, new: rot, kind: rotation.OutcomeTimeout, err: ErrStepTimeout},
		{file: "40-root.txt", section: "root: passwd rotuser on debian host (no current-password prompt)", mode: modeOther, new: "Root-Set-Pw-1", kind: rotation.OutcomeChanged},
		{file: "40-root.txt", section: "root: mismatch", mode: modeOther, new: "Root-Set-Pw-1", kind: rotation.OutcomeUnexpected, err: ErrMismatch, anyAnswer: true},
		{file: "40-root.txt", section: "root: passwd rotuser on pwquality host with weak password (root is only warned)", mode: modeOther, new: "abc", kind: rotation.OutcomeChanged},
		{file: "40-root.txt", section: "root: busybox passwd rotuser", mode: modeOther, new: "Root-Set-Pw-1", kind: rotation.OutcomeChanged},
		{file: "50-rhel-synth.txt", section: "RHEL wording (composed from documented messages, not recorded): success", old: initial, new: rot, kind: rotation.OutcomeChanged},
		{file: "50-rhel-synth.txt", section: "older PAM wording: success", old: initial, new: rot, kind: rotation.OutcomeChanged},
		{file: "50-rhel-synth.txt", section: "RHEL: wrong current", old: "WrongPw-1", new: rot, kind: rotation.OutcomeWrongCurrent},
		{file: "50-rhel-synth.txt", section: "sssd: second current prompt", old: initial, new: rot, kind: rotation.OutcomeChanged},
		{file: "50-rhel-synth.txt", section: "pam_unix remember / pam_pwhistory: reused password (composed from documented messages)", old: initial, new: "Old-Used-Pw-2023", kind: rotation.OutcomeRejected, reason: "Password has been already used. Choose another."},
		{file: "50-rhel-synth.txt", section: "minimum password age (composed from documented messages)", old: initial, new: rot, kind: rotation.OutcomeRejected, reason: "You must wait longer to change your password."},
		{file: "50-rhel-synth.txt", section: "cracklib: too similar", old: initial, new: "Initial-Pw-2025", kind: rotation.OutcomeRejected, reason: "is too similar to the old one"},
	}
	for _, tc := range tests {
		t.Run(tc.file+"/"+tc.section, func(t *testing.T) {
			sections := readDialogues(t, tc.file)
			evs, ok := sections[tc.section]
			if !ok {
				if len(sections) != 1 {
					t.Fatalf("no section %q", tc.section)
				}
				for _, v := range sections {
					evs = v
				}
			}
			d := newDialogue(tc.mode, secret.New(tc.old), secret.New(tc.new), secret.Value{})
			o := replay(t, d, evs, tc.anyAnswer)
			if o.Kind != tc.kind || o.Reason != tc.reason {
				t.Fatalf("outcome %v, want %v (%q)\ntranscript %q", o, tc.kind, tc.reason, o.Transcript)
			}
			if tc.err != nil && o.Err != tc.err {
				t.Fatalf("err %v, want %v", o.Err, tc.err)
			}
			for _, pw := range []string{tc.old, tc.new} {
				if pw != "" && strings.Contains(o.Transcript+o.Reason+o.String(), pw) {
					t.Fatalf("outcome holds a password: %q", o.Transcript)
				}
			}
		})
	}
}

func TestDialogueSudo(t *testing.T) {
	login, pw := secret.New("Admin-Pw-1"), secret.New("Root-Set-Pw-1")
	t.Run("OK", func(t *testing.T) {
		d := newDialogue(modeOther, secret.Value{}, pw, login)
		a, _ := d.feed([]byte(sudoPrompt))
		if string(a) != login.Reveal()+"\n" {
			t.Fatalf("sudo prompt answered wrongly")
		}
		a, _ = d.feed([]byte("\r\nNew password: "))
		if string(a) != pw.Reveal()+"\n" {
			t.Fatalf("new prompt answered wrongly")
		}
		a, _ = d.feed([]byte("\r\nRetype new password: "))
		if string(a) != pw.Reveal()+"\n" {
			t.Fatalf("retype prompt answered wrongly")
		}
		d.feed([]byte("\r\npasswd: password updated successfully\r\n"))
		if o := d.finish(0, true); o.Kind != rotation.OutcomeChanged {
			t.Fatalf("outcome %v", o)
		}
	})
	t.Run("Refused", func(t *testing.T) {
		d := newDialogue(modeOther, secret.Value{}, pw, login)
		d.feed([]byte(sudoPrompt))
		_, done := d.feed([]byte("\r\nSorry, try again.\r\n" + sudoPrompt))
		if !done || d.outcome.Kind != rotation.OutcomeWrongCurrent {
			t.Fatalf("outcome %v, want wrong-current-password", d.outcome)
		}
	})
}

func TestDialogueSplitChunks(t *testing.T) {
	// Prompts split anywhere across reads are still recognised.
	var evs []event
	for _, v := range readDialogues(t, "01-debian-pty-success.txt") {
		evs = v
	}
	for size := 1; size <= 7; size++ {
		d := newDialogue(modeSelf, secret.New("Initial-Pw-2024"), secret.New("Rot-8q!Zx-2024"), secret.Value{})
		var answers []string
		for _, ev := range evs {
			if ev.dir != "out" {
				continue
			}
			for i := 0; i < len(ev.text); i += size {
				a, _ := d.feed([]byte(ev.text[i:min(i+size, len(ev.text))]))
				if a != nil {
					answers = append(answers, string(a))
				}
			}
		}
		if o := d.finish(0, true); o.Kind != rotation.OutcomeChanged || len(answers) != 3 {
			t.Fatalf("size %d: outcome %v after %d answers", size, o, len(answers))
		}
	}
}

func TestRedact(t *testing.T) {
	got := redact("a pw1 b pw12 c", "pw1", "pw12", "")
	if want := "a <redacted> b <redacted> c"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// FuzzDialogue feeds arbitrary passwd output in arbitrary chunks: the
// dialogue never panics, answers only with the passwords it holds, and
// keeps neither password in its outcome.
func FuzzDialogue(f *testing.F) {
	f.Add([]byte("Changing password for rotuser.\r\nCurrent password: "), []byte("\r\nNew password: "), []byte("\r\nRetype new password: \r\npasswd: password updated successfully\r\n"), false)
	f.Add([]byte("New password: "), []byte("\r\nBAD PASSWORD: Xq9#old-Pw\r\nNew password: "), []byte(sudoPrompt), true)
	f.Fuzz(func(t *testing.T, a, b, c []byte, other bool) {
		const old, new, sudo = "Xq9#old-Pw", "Zk4$new-Pw", "Wm7&sudo-Pw"
		mode := modeSelf
		if other {
			mode = modeOther
		}
		d := newDialogue(mode, secret.New(old), secret.New(new), secret.New(sudo))
		for _, p := range [][]byte{a, b, c} {
			ans, done := d.feed(p)
			if ans != nil {
				if s := string(ans); s != old+"\n" && s != new+"\n" && s != sudo+"\n" {
					t.Fatalf("answered %q", ans)
				}
				if mode == modeOther && string(ans) == old+"\n" {
					t.Fatal("sent the current password when setting another user's")
				}
			}
			if done {
				break
			}
		}
		o := d.finish(0, true)
		for _, pw := range []string{old, new, sudo} {
			if strings.Contains(o.Transcript+o.Reason+o.String(), pw) {
				t.Fatalf("outcome holds a password: %q", o.Transcript)
			}
		}
	})
}
