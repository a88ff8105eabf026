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
	const otherPw = "Agent-Set-Pw-2093x" // what the host ends up holding instead of the new one
	l := newLab(t, ctx, labOptions{variants: []sshtest.Variant{sshtest.Faillock}, rootPass: rootPw,
		groups: map[string][]int{"app-user": {0}}, schedule: "@weekly"})
	cfg, err := os.ReadFile(l.config)
	if err != nil {
		t.Fatal(err)
	}
	withReconcile := strings.Replace(string(cfg), "\nssh:\n",
		"\nssh:\n  reconcile:\n    user: root\n    password_file: "+l.write("root-password", rootPw+"\n")+"\n", 1)
	if withReconcile == string(cfg) {
		t.Fatal("no ssh section in the lab's configuration")
	}
	l.write("rotord.yaml", withReconcile)

	// The shadow entry the host will be switched to once passwd changed it.
	if err := l.rig.SetPassword(0, otherPw); err != nil {
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

	out, errOut, code := l.rotord("rotate", "app-user")
	stop()
	if _, ok := <-changed; !ok {
		t.Fatalf("passwd never changed the host; rotate exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if swapErr != nil {
		t.Fatalf("replace the host's shadow entry: %v", swapErr)
	}
	t.Logf("rotate: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	l.noSecrets(out+errOut, rootPw, otherPw)
	if code != exitFailed {
		t.Errorf("rotate exit %d, want %d (rolled back)", code, exitFailed)
	}
	tally, err := l.rig.FaillockCount(0, accUser)
	if err != nil {
		t.Fatal(err)
	}
	if tally > 2 {
		t.Errorf("pam_faillock holds %d refused logins against %s (deny=%d): rotord locked the account", tally, accUser, sshtest.FaillockDeny)
	}
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
