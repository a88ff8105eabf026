package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestAcceptEscalationFailsAfterPreflight: root is rotated through sudo
// on two PermitRootLogin-no hosts, and host 1's sudoers loses the logon
// account's rule the moment its pre-flight has passed (sudo -l allowed
// passwd; su is proving root's password). sudo then refuses to run passwd
// there inside the change, after host 0 (the first, changed alone before
// the others) took the new password. `rotord rotate` must name host 1 and
// the sudo step, change nothing there, put host 0 back through sudo, keep
// Secret Server's password and refuse no authentication.
func TestAcceptEscalationFailsAfterPreflight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := rootSudoLab(t, ctx, "")
	const w = 1 // the host whose rule is withdrawn
	sudoers := filepath.Join(l.rig.Dir(), fmt.Sprintf("host-%03d", w), "upper", "sudoers")
	rules, err := os.ReadFile(sudoers)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(string(rules), "\n") {
		if !strings.HasPrefix(line, accUser) {
			kept = append(kept, line)
		}
	}
	if len(kept) == len(strings.Split(string(rules), "\n")) {
		t.Fatalf("host %d's sudoers has no rule for %s:\n%s", w, accUser, rules)
	}
	withdrawn := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		// The first su on host w is the pre-flight's proof of root's
		// password, which follows sudo -l: the host is stopped while its
		// sudoers is rewritten in place, so the change finds it so.
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			ps, _ := l.rig.Processes(w)
			for _, p := range ps {
				if !isSu(p.Args) {
					continue
				}
				err := l.rig.PauseHost(w)
				if err == nil {
					err = os.WriteFile(sudoers, []byte(strings.Join(kept, "\n")), 0o440)
				}
				if rerr := l.rig.ResumeHost(w); err == nil {
					err = rerr
				}
				withdrawn <- err
				return
			}
			select {
			case <-stop:
				close(withdrawn)
				return
			case <-tick.C:
			}
		}
	}()
	refusedBefore := []int{l.rig.RefusedLogins(0), l.rig.RefusedLogins(1)}
	pamBefore := make([]int, 2)
	for i := range pamBefore {
		if pamBefore[i], err = l.rig.PAMRefusals(i); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := l.rotord("rotate", "root-sudo")
	close(stop)
	if err, ok := <-withdrawn; !ok || err != nil {
		t.Fatalf("host %d's sudo rule was not withdrawn during the pre-flight (%v)\nstdout:\n%s\nstderr:\n%s", w, err, out, errOut)
	}
	t.Logf("rotate: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	l.noSecrets(out+errOut, accRootPassword)
	if code != exitFailed {
		t.Errorf("rotate exit %d, want %d (failed, rolled back)", code, exitFailed)
	}
	addr, first := l.rig.Hosts()[w].Addr(), l.rig.Hosts()[0].Addr()
	if !strings.Contains(out+errOut, addr) || !strings.Contains(out+errOut, "step sudo") {
		t.Errorf("the output does not name %s and the sudo step", addr)
	}
	if got := l.password("root-sudo"); got != accRootPassword {
		t.Error("Secret Server's password changed")
	}
	for i := range 2 {
		if ok, err := l.rig.PasswordWorks(i, "root", accRootPassword); err != nil || !ok {
			t.Errorf("host %d: root's old password does not work (%v)", i, err)
		}
		if n := l.rig.RefusedLogins(i) - refusedBefore[i]; n != 0 {
			t.Errorf("host %d refused %d logins", i, n)
		}
		if n, err := l.rig.PAMRefusals(i); err != nil || n != pamBefore[i] {
			t.Errorf("host %d's PAM refused %d passwords (%v), want none", i, n-pamBefore[i], err)
		}
	}
	db := l.openStore(ctx)
	hist, err := db.History(ctx, rotation.HistoryQuery{Secret: "root-sudo", Limit: 1})
	if err != nil || len(hist) != 1 {
		t.Fatalf("history: %v (%d rotations)", err, len(hist))
	}
	r, err := db.Get(ctx, hist[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != rotation.StateRolledBack {
		t.Errorf("rotation state %s, want %s", r.State, rotation.StateRolledBack)
	}
	states := map[string]rotation.HostRecord{}
	for _, h := range r.Hosts {
		states[h.Host.Addr(22)] = h
	}
	if h := states[addr]; h.Reason != rotation.ReasonEscalation {
		t.Errorf("host %d journaled %s/%s (%s), want reason %s", w, h.State, h.Reason, h.Error, rotation.ReasonEscalation)
	}
	if h := states[first]; h.State != rotation.HostReverted {
		t.Errorf("host 0 journaled %s (%s), want %s: changed, then put back through sudo", h.State, h.Error, rotation.HostReverted)
	}
}

// rootSudoLab is a lab of two PermitRootLogin-no hosts (shadow-utils,
// BusyBox) whose root is secret root-sudo, rotated through sudo by the
// logon account with its password (from a file); extra goes into the
// configuration.
func rootSudoLab(t *testing.T, ctx context.Context, extra string) *lab {
	t.Helper()
	sshtest.RequireReach(t)
	sudo := &sshtest.ReachSpec{PermitRootLogin: "no", Sudo: sshtest.SudoPassword}
	logonPw := privateFile(t, t.TempDir(), "logon-password", accPassword+"\n")
	return newLab(t, ctx, labOptions{
		variants: []sshtest.Variant{sshtest.Debian, sshtest.BusyBox},
		reach:    map[int]*sshtest.ReachSpec{0: sudo, 1: sudo},
		groups:   map[string][]int{"root-sudo": {0, 1}},
		schedule: "@weekly", rootPass: accRootPassword, asRoot: true,
		extra:       extra + "logon:\n  user: " + accUser + "\n  password_file: " + logonPw + "\n",
		secretExtra: map[string]string{"root-sudo": "    escalation: sudo\n"},
	})
}
