package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestAcceptFaillockNoLockout: on a host whose sshd runs pam_faillock
// deny=3, passwd reports that it changed the password, but the new
// password does not log in (the host's shadow entry is replaced at that
// moment, as a password agent or another administrator would). Neither
// candidate logs in any more. `rotord rotate` must make at most two refused
// logins — no retry of a refused password, in the probe, the revert or the
// reconcile account's confirmation — put the old password back through
// the reconcile account, keep Secret Server's password, and leave the
// account unlocked: the old password logs in afterwards.
func TestAcceptFaillockNoLockout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const rootPw = "Acc-Root-Pw-4410!"
	l := faillockLab(t, ctx, rootPw)
	out, errOut, code := l.rotateSwapped(t)
	l.noSecrets(out+errOut, rootPw, faillockOtherPw)
	if code != exitFailed {
		t.Errorf("rotate exit %d, want %d (rolled back)", code, exitFailed)
	}
	l.requireTally(t, 2)
	if got := l.password("app-user"); got != accPassword {
		t.Error("Secret Server's password changed")
	}
	if !l.logsIn(ctx, 0, accPassword) {
		t.Fatal("the old password does not log in afterwards")
	}
	if n := l.rig.RefusedLogins(0); n > 2 {
		t.Errorf("sshd logged %d connections with a refused password, want at most 2", n)
	}
}

// TestAcceptFaillockRecoverSendsNoRefusedPassword: the same host without a
// reconcile account is left needs-reconcile after two refused logins, and
// named with what it may hold. `rotord recover` then must not send either
// refused password again (the journal records both refusals): the tally
// stays below the lock.
func TestAcceptFaillockRecoverSendsNoRefusedPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := faillockLab(t, ctx, "")
	out, errOut, code := l.rotateSwapped(t)
	l.noSecrets(out+errOut, faillockOtherPw)
	if code == 0 {
		t.Fatalf("rotate succeeded\nstdout:\n%s", out)
	}
	addr := l.rig.Hosts()[0].Addr()
	if !strings.Contains(out+errOut, addr+": old or new") {
		t.Errorf("the output does not name %s with the candidates it may hold\nstdout:\n%s\nstderr:\n%s", addr, out, errOut)
	}
	l.requireTally(t, 2)
	for range 2 {
		out, errOut, code = l.rotord("recover")
		t.Logf("recover: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		l.noSecrets(out+errOut, faillockOtherPw)
		if code == 0 {
			t.Errorf("recover reported success for a host it cannot reach a known state on")
		}
		l.requireTally(t, 2)
	}
	if got := l.password("app-user"); got != accPassword {
		t.Error("Secret Server's password changed")
	}
	// The host holds the password set behind rotord's back, and is not locked.
	if !l.logsIn(ctx, 0, faillockOtherPw) {
		t.Fatal("the host's own password does not log in: the account is locked")
	}
}

// faillockOtherPw is what a Faillock lab's host holds once passwd changed it.
const faillockOtherPw = "Agent-Set-Pw-2093x"

// faillockLab is a lab with one Faillock host behind secret app-user;
// rootPw, if set, is root's password there and the reconcile account.
func faillockLab(t *testing.T, ctx context.Context, rootPw string) *lab {
	t.Helper()
	l := newLab(t, ctx, labOptions{variants: []sshtest.Variant{sshtest.Faillock}, rootPass: rootPw,
		groups: map[string][]int{"app-user": {0}}, schedule: "@weekly"})
	if rootPw == "" {
		return l
	}
	cfg, err := os.ReadFile(l.config)
	if err != nil {
		t.Fatal(err)
	}
	l.withSSH(cfg, "  reconcile:\n    user: root\n    password_file: "+l.write("root-password", rootPw+"\n")+"\n")
	return l
}

// withSSH writes the lab's configuration as base with lines added at the
// top of its ssh section ("" writes base).
func (l *lab) withSSH(base []byte, lines string) {
	l.t.Helper()
	cfg := strings.Replace(string(base), "\nssh:\n", "\nssh:\n"+lines, 1)
	if cfg == string(base) && lines != "" {
		l.t.Fatal("no ssh section in the lab's configuration")
	}
	l.write("rotord.yaml", cfg)
}

// rotateSwapped runs `rotord rotate app-user` while host 0's shadow entry
// is replaced by faillockOtherPw's the moment passwd writes it, so that
// passwd reports success and yet neither candidate logs in.
func (l *lab) rotateSwapped(t *testing.T) (stdout, stderr string, code int) {
	t.Helper()
	if err := l.rig.SetPassword(0, faillockOtherPw); err != nil {
		t.Fatal(err)
	}
	other, err := l.rig.ShadowLine(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.rig.SetPassword(0, accPassword); err != nil {
		t.Fatal(err)
	}
	shadow := filepath.Join(l.rig.Dir(), fmt.Sprintf("host-%03d", 0), "upper", "shadow")
	var swapErr error
	changed, stop := shadowWatch(t, []string{filepath.Dir(shadow)}, func() {
		// In place (same inode), so the host's overlay sees it at once:
		// before rotord's fresh login with the new password reaches PAM.
		swapErr = replaceShadowLine(shadow, other)
	})
	stdout, stderr, code = l.rotord("rotate", "app-user")
	stop()
	if _, ok := <-changed; !ok {
		t.Fatalf("passwd never changed the host; rotate exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if swapErr != nil {
		t.Fatalf("replace the host's shadow entry: %v", swapErr)
	}
	t.Logf("rotate: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	return stdout, stderr, code
}

// requireTally fails unless pam_faillock holds at most max refusals
// against the account on host 0.
func (l *lab) requireTally(t *testing.T, max int) {
	t.Helper()
	tally, err := l.rig.FaillockCount(0, accUser)
	if err != nil {
		t.Fatal(err)
	}
	if tally > max {
		t.Fatalf("pam_faillock holds %d refused logins against %s (deny=%d), want at most %d", tally, accUser, sshtest.FaillockDeny, max)
	}
}

// replaceShadowLine rewrites, in place, the line of path that belongs to
// the same account as line.
func replaceShadowLine(path, line string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	user, _, _ := strings.Cut(line, ":")
	lines := strings.Split(string(b), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, user+":") {
			lines[i], found = line, true
		}
	}
	if !found {
		return fmt.Errorf("no entry for %s", user)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(strings.Join(lines, "\n")); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
