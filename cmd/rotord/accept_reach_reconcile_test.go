package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestAcceptReconcileThroughSuAndSudo: root is rotated through su (host
// 0) and through sudo (host 1, keys only) on pam_faillock hosts that
// refuse root logins, and the change leaves the host in an unknown state:
// the moment passwd writes the host's shadow, root's entry is replaced by
// another password's and the host drops every connection (the lifeline
// with it). Neither candidate authenticates any more, and the lifeline
// that would have put the old password back is gone. The reconcile
// account — the logon account logging in by key, its password answering
// su and sudo; from key_file (host 0), then from a Unix Account (SSH)
// secret (host 1) — puts root's old password back: `rotord rotate` exits
// rolled back, root's old password authenticates (no login spent),
// Secret Server still holds it, pam_faillock holds at most 2 refusals of
// root and of the logon account, and no key, passphrase or password is in
// the output or the journal's bytes.
//
// Then, without a reconcile account, the same failure — host 0 dropping
// every connection this time, so that an su proving a candidate may be
// cut before it asked for the password, which PAM counts — leaves host 0
// needs-reconcile; once ssh.reconcile is configured, `rotord recover`
// resets it through the same path, sending no refused password again,
// and pam_faillock still holds at most 2 refusals of root.
func TestAcceptReconcileThroughSuAndSudo(t *testing.T) {
	sshtest.RequireReach(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	logonKey := newReachKey(t, "")
	reconKey := newReachKey(t, "Reconcile-Key-Phrase-35")
	vaultKey := newReachKey(t, "Vault-Reconcile-Phrase-19")
	keys := []ssh.PublicKey{logonKey.pub, reconKey.pub, vaultKey.pub}
	dir := t.TempDir()
	write := func(name, content string) string { return privateFile(t, dir, name, content) }
	l := newLab(t, ctx, labOptions{
		variants: []sshtest.Variant{sshtest.Faillock, sshtest.Faillock},
		reach: map[int]*sshtest.ReachSpec{
			// su: the logon account logs in with its password; the
			// reconcile account, the same account, by key and sudo.
			0: {PermitRootLogin: "no", AuthorizedKeys: keys, Sudo: sshtest.SudoPassword},
			1: {PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: keys, Sudo: sshtest.SudoPassword},
		},
		groups:   map[string][]int{"root-su": {0}, "root-sudo": {1}},
		schedule: "@weekly", rootPass: accRootPassword, asRoot: true,
		secretExtra: map[string]string{
			"root-su": "    escalation: su\n    logon:\n      secret: " + logonSecret + "\n",
			"root-sudo": "    escalation: sudo\n    logon:\n      user: " + accUser + "\n      key_file: " + write("logon-key", logonKey.pem) +
				"\n      sudo_password_file: " + write("logon-sudo", accPassword+"\n") + "\n",
		},
	})
	l.ss.AddSecret(sstest.SecretSeed{Name: logonSecret, Folder: `\Lab\Linux`, Username: accUser, Password: accPassword, Notes: "logon"})
	tid := l.ss.AddUnixSSHTemplate("Unix Account (SSH)")
	l.ss.AddSecret(sstest.SecretSeed{Name: "ops-reconcile", Folder: `\Lab\Linux`, TemplateID: tid, Username: accUser, Password: accPassword,
		Fields: map[string]string{"private-key": vaultKey.pem, "private-key-passphrase": vaultKey.passphrase}})
	base, err := os.ReadFile(l.config)
	if err != nil {
		t.Fatal(err)
	}
	byKeyFile := "  reconcile:\n    user: " + accUser + "\n    key_file: " + l.write("reconcile-key", reconKey.pem) +
		"\n    passphrase_file: " + l.write("reconcile-key-phrase", reconKey.passphrase+"\n") +
		"\n    password_file: " + l.write("reconcile-password", accPassword+"\n") + "\n"
	bySecret := "  reconcile:\n    secret: ops-reconcile\n"
	reconcileBy := func(lines string) { l.withSSH(base, lines) }
	const other = "Swapped-In-Root-Pw-8826"
	creds := []string{accPassword, logonKey.pem, reconKey.pem, reconKey.passphrase, vaultKey.pem, vaultKey.passphrase, other}

	// settled fails unless root's old password is back on host i, no
	// candidate of the failed rotation authenticates, Secret Server holds
	// the old password, and pam_faillock kept within the budget.
	settled := func(name string, i int) {
		t.Helper()
		if got := l.password(name); got != accRootPassword {
			t.Errorf("%s: Secret Server's password changed", name)
		}
		l.rootWorksOnly([]int{i}, accRootPassword, other)
		for _, user := range []string{"root", accUser} {
			n, err := l.rig.FaillockCount(i, user)
			t.Logf("%s: host %d: pam_faillock holds %d refusals of %s", name, i, n, user)
			if err != nil || n > rotation.RefusalBudget {
				t.Errorf("%s: host %d: pam_faillock holds %d refusals of %s (%v), want at most %d", name, i, n, user, err, rotation.RefusalBudget)
			}
		}
		if ok, _ := l.rig.PasswordWorks(i, accUser, accPassword); !ok {
			t.Errorf("%s: host %d: the logon account's password changed", name, i)
		}
	}
	// resetByReconcile fails unless the newest rotation of name ended
	// rolled back with host i reset through the reconcile account.
	resetByReconcile := func(name string, i int) {
		t.Helper()
		hist := l.history(name)
		if len(hist) == 0 || hist[0].State != string(rotation.StateRolledBack) {
			t.Fatalf("%s: history %+v; want the newest rotation rolled back", name, hist)
		}
		for _, h := range hist[0].Hosts {
			if h.Host != l.rig.Hosts()[i].Addr() {
				continue
			}
			if h.State != string(rotation.HostReverted) || !strings.Contains(h.Outcome, "reset through the reconcile account") {
				t.Errorf("%s: host %s %s (%s); want reverted through the reconcile account", name, h.Host, h.State, h.Outcome)
			}
		}
	}

	for _, c := range []struct {
		name, reconcile string
		host            int
		cut             lifelineCut
	}{
		{"root-su", byKeyFile, 0, cutShell},
		{"root-sudo", bySecret, 1, cutConnection},
	} {
		reconcileBy(c.reconcile)
		out, errOut, code := l.rotateRootSwapped(t, c.name, c.host, other, c.cut)
		l.leakFree(out+errOut, creds...)
		if code != exitFailed {
			t.Errorf("%s: rotate exit %d, want %d (rolled back)", c.name, code, exitFailed)
		}
		resetByReconcile(c.name, c.host)
		settled(c.name, c.host)
	}

	// No reconcile account: host 0 is left needs-reconcile, named with
	// what it may hold. Then recover resets it through the account.
	reconcileBy("")
	out, errOut, code := l.rotateRootSwapped(t, "root-su", 0, other, cutConnection)
	l.leakFree(out+errOut, creds...)
	if code == 0 {
		t.Fatalf("rotate without a reconcile account succeeded\nstdout:\n%s", out)
	}
	if addr := l.rig.Hosts()[0].Addr(); !strings.Contains(out+errOut, addr+": old or new") {
		t.Errorf("the output does not name %s with the candidates it may hold\nstdout:\n%s\nstderr:\n%s", addr, out, errOut)
	}
	if hist := l.history("root-su"); len(hist) == 0 || hist[0].State != string(rotation.StateNeedsReconcile) {
		t.Fatalf("history %+v; want the newest rotation needs-reconcile", hist)
	}
	if ok, _ := l.rig.PasswordWorks(0, "root", other); !ok {
		t.Fatal("host 0 does not hold the password swapped in")
	}
	// recover cannot settle it alone: both candidates were refused, and
	// neither is sent again.
	tally, err := l.rig.FaillockCount(0, "root")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = l.rotord("recover")
	t.Logf("recover without a reconcile account: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	l.leakFree(out+errOut, creds...)
	if code == 0 {
		t.Error("recover without a reconcile account reported success")
	}
	if hist := l.history("root-su"); len(hist) == 0 || hist[0].State != string(rotation.StateNeedsReconcile) {
		t.Fatalf("history %+v; want the newest rotation still needs-reconcile", hist)
	}
	if n, err := l.rig.FaillockCount(0, "root"); err != nil || n != tally {
		t.Errorf("recover without a reconcile account: pam_faillock holds %d refusals of root, was %d (%v)", n, tally, err)
	}
	reconcileBy(byKeyFile)
	out, errOut, code = l.rotord("recover")
	t.Logf("recover: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	l.leakFree(out+errOut, creds...)
	if code != 0 {
		t.Errorf("recover: exit %d, want 0", code)
	}
	hist := l.history("root-su")
	if len(hist) == 0 || hist[0].State != string(rotation.StateRolledBack) || len(hist[0].Hosts) != 1 || hist[0].Hosts[0].State != string(rotation.HostReverted) {
		t.Fatalf("history %+v; want the newest rotation rolled back, its host reverted", hist)
	}
	if got := hist[0].Hosts[0].Outcome; !strings.Contains(got, "reset through the reconcile account") {
		t.Errorf("the recovered host's outcome %q does not say how it was reset", got)
	}
	rec := hist[0]
	settled("root-su", 0)
	db := l.openStore(ctx)
	r, err := db.Get(ctx, rec.ID)
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r.Old.Reveal() != accRootPassword {
		t.Error("the journal does not hold root's old password for the reconciled rotation")
	}
	l.leakFree("", creds...)
}

// rotateRootSwapped runs `rotord rotate name` while, the moment passwd
// writes host i's shadow, root's entry there is replaced by one for
// other and the rotation's lifeline is cut: neither candidate
// authenticates, and the lifeline cannot put the old password back.
//
// cut says how: cutShell kills only root's shell, the lifeline of su (the
// logon connection stays); cutConnection kills every process the host's
// sshd runs, the logon connection with them (the lifeline of sudo), and
// with it any su proving a candidate on another channel of it, perhaps
// before it asked for the password (PAM then counts a refusal although
// no password reached su).
func (l *lab) rotateRootSwapped(t *testing.T, name string, i int, other string, cut lifelineCut) (stdout, stderr string, code int) {
	t.Helper()
	entry, err := l.rig.ShadowEntry(i, "root")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(entry, ":")
	f[1] = sha512Crypt(t, other)
	swapped := strings.Join(f, ":")
	shadow := filepath.Join(l.rig.Dir(), fmt.Sprintf("host-%03d", i), "upper", "shadow")
	var swapErr error
	changed, stop := shadowWatch(t, []string{filepath.Dir(shadow)}, func() {
		swapErr = replaceShadowLine(shadow, swapped)
		ps, err := l.rig.Processes(i)
		if err != nil {
			swapErr = err
			return
		}
		for _, p := range ps[1:] { // ps[0] is the listening sshd
			if cut == cutShell && !slices.ContainsFunc(p.Args, func(a string) bool { return strings.Contains(a, lifelineShell) }) {
				continue
			}
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	})
	stdout, stderr, code = l.rotord("rotate", name)
	stop()
	if _, ok := <-changed; !ok {
		t.Fatalf("passwd never changed host %d; rotate exit %d\nstdout:\n%s\nstderr:\n%s", i, code, stdout, stderr)
	}
	if swapErr != nil {
		t.Fatalf("replace host %d's shadow entry: %v", i, swapErr)
	}
	t.Logf("rotate %s: exit %d\nstdout:\n%s\nstderr:\n%s", name, code, stdout, stderr)
	return stdout, stderr, code
}

// lifelineCut is how rotateRootSwapped cuts a rotation's lifeline.
type lifelineCut int

const (
	cutShell      lifelineCut = iota // kill root's shell kept by su
	cutConnection                    // kill every process of the host's sshd
)

// lifelineShell is a part of the script of su's kept shell (the lifeline
// of a rotation through su), in the command lines of su and of the shell.
const lifelineShell = "while IFS= read -r l"

// sha512Crypt hashes pw with crypt(3)'s SHA-512 and a fresh salt (the
// machine's libcrypt through perl, pw on stdin), as a shadow entry holds it.
func sha512Crypt(t *testing.T, pw string) string {
	t.Helper()
	salt := fmt.Sprintf("$6$%016x$", uint64(time.Now().UnixNano()))
	c := exec.Command("/usr/bin/perl", "-e", `my $pw = <STDIN>; chomp $pw; print crypt($pw, $ARGV[0]);`, salt)
	c.Stdin = strings.NewReader(pw + "\n")
	c.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := c.Output()
	if err != nil || !strings.HasPrefix(string(out), "$6$") {
		t.Fatalf("crypt: %v: %q", err, out)
	}
	return string(out)
}
