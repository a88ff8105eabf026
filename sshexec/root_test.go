package sshexec

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestDialogueNoCurrentPrompt: passwd that opens with the new-password
// prompt (root changing its own password, an account without one) gets
// the new password there, never the old one, and the change succeeds.
func TestDialogueNoCurrentPrompt(t *testing.T) {
	const old, new = "Root-Old-Pw-1", "Root-Set-Pw-1"
	for _, section := range []string{
		"root: passwd rotuser on debian host (no current-password prompt)",
		"root: passwd rotuser on pwquality host with weak password (root is only warned)",
		"root: busybox passwd rotuser",
	} {
		t.Run(section, func(t *testing.T) {
			newPw := new
			if strings.Contains(section, "weak") {
				newPw = "abc"
			}
			d := newDialogue(modeSelf, secret.New(old), secret.New(newPw), secret.New(old))
			o := replay(t, d, readDialogues(t, "40-root.txt")[section], false)
			if o.Kind != rotation.OutcomeChanged || o.Err != nil {
				t.Fatalf("outcome %v %v\n%s", o.Kind, o.Err, o.Transcript)
			}
		})
	}
	// The retype mismatch of such a dialogue is still a mismatch.
	d := newDialogue(modeSelf, secret.New(old), secret.New(new), secret.New(old))
	if o := replay(t, d, readDialogues(t, "40-root.txt")["root: mismatch"], true); o.Err != ErrMismatch {
		t.Fatalf("mismatch: %v %v", o.Kind, o.Err)
	}
	// A current-password prompt after the new password was sent is not
	// answered with the old one.
	d = newDialogue(modeSelf, secret.New(old), secret.New(new), secret.New(old))
	if a, _ := d.feed([]byte("New password: ")); string(a) != new+"\n" {
		t.Fatalf("answered %q", redact(string(a), old, new))
	}
	if a, done := d.feed([]byte("\r\nCurrent password: ")); a != nil || !done || d.outcome.Kind != rotation.OutcomeUnexpected {
		t.Fatalf("answered %q to a late current-password prompt (%v)", redact(string(a), old, new), d.outcome.Kind)
	}
}

// TestRigRootChangesItsOwnPassword: root logged in with its password runs
// passwd, which asks no current password, on shadow-utils and BusyBox
// hosts; the new password logs in as root, and the host's root entry
// changed while the machine's did not.
func TestRigRootChangesItsOwnPassword(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian}, sshtest.HostSpec{Variant: sshtest.BusyBox})
	machine, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	const newPw = "Root-New-Pw-9k"
	for i, h := range e.rig.Hosts() {
		t.Run(h.Variant.String(), func(t *testing.T) {
			before, err := e.rig.ShadowEntry(i, "root")
			if err != nil {
				t.Fatal(err)
			}
			s := e.login(t, i, "root", rigRoot)
			o := s.ChangePassword(context.Background(), secret.New(rigRoot), secret.New(newPw))
			e.watch.add(o)
			if o.Kind != rotation.OutcomeChanged {
				t.Fatalf("outcome %v %v\ntranscript %q", o.Kind, o.Err, o.Transcript)
			}
			after, err := e.rig.ShadowEntry(i, "root")
			if err != nil {
				t.Fatal(err)
			}
			if after == before {
				t.Fatal("root's shadow entry on the host did not change")
			}
			if err := e.d.Verify(context.Background(), e.host(i), "root", secret.New(newPw)); err != nil {
				t.Fatalf("the new password does not log in as root: %v", err)
			}
		})
	}
	now, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	if string(now) != string(machine) {
		t.Fatal("the machine's own /etc/shadow changed")
	}
	e.watch.check(t, rigRoot, newPw)
}

// TestRigAccountWithoutPasswordChangesIt: a non-root account whose
// password is empty is asked no current password by passwd (pam_unix and
// BusyBox skip the check); the change succeeds and the new password logs in.
func TestRigAccountWithoutPasswordChangesIt(t *testing.T) {
	e := startRig(t, Config{}, sshtest.HostSpec{Variant: sshtest.Debian, EmptyPasswords: true}, sshtest.HostSpec{Variant: sshtest.BusyBox, EmptyPasswords: true})
	const newPw = "First-Real-Pw-4q"
	for i, h := range e.rig.Hosts() {
		t.Run(h.Variant.String(), func(t *testing.T) {
			if err := e.rig.ClearPassword(i); err != nil {
				t.Fatal(err)
			}
			s := e.login(t, i, rigUser, "")
			o := s.ChangePassword(context.Background(), secret.New(""), secret.New(newPw))
			e.watch.add(o)
			if o.Kind != rotation.OutcomeChanged {
				t.Fatalf("outcome %v %v\ntranscript %q", o.Kind, o.Err, o.Transcript)
			}
			if !e.logsIn(t, i, newPw) {
				t.Fatal("the new password does not log in")
			}
		})
	}
	e.watch.check(t, newPw)
}
