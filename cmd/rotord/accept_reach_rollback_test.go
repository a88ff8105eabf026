package main

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestAcceptRollbackThroughSuAndSudo: root, rotated by `rotord rotate` on
// PermitRootLogin-no hosts through su (the logon account's password from
// a Secret Server secret) and on keys-only hosts through sudo (a
// passphrase-protected key file, sudo's password from a file), shadow-utils
// with pam_faillock and BusyBox, is put back by `rotord rollback NAME`
// along the same path: root's previous password authenticates on every
// host and the rotated-away one on none, Secret Server holds the previous
// password, the journal records a committed rollback of the rotation with
// both passwords sealed, the logon account's password is unchanged,
// pam_faillock counted no refusal of root or of the logon account, and no
// credential is in the output or the journal's bytes.
func TestAcceptRollbackThroughSuAndSudo(t *testing.T) {
	sshtest.RequireReach(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	key := newReachKey(t, "Rollback-Key-Phrase-62")
	noRoot := &sshtest.ReachSpec{PermitRootLogin: "no"}
	keysOnly := &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{key.pub}, Sudo: sshtest.SudoPassword}
	dir := t.TempDir()
	write := func(name, content string) string { return privateFile(t, dir, name, content) }
	keyFile := write("logon-key", key.pem)
	phraseFile := write("logon-key-phrase", key.passphrase+"\n")
	sudoFile := write("logon-sudo", accPassword+"\n")
	groups := map[string][]int{"root-su": {0, 1}, "root-sudo": {2, 3}}
	l := newLab(t, ctx, labOptions{
		variants: []sshtest.Variant{sshtest.Faillock, sshtest.BusyBox, sshtest.Faillock, sshtest.BusyBox},
		reach:    map[int]*sshtest.ReachSpec{0: noRoot, 1: noRoot, 2: keysOnly, 3: keysOnly},
		groups:   groups,
		schedule: "@weekly", rootPass: accRootPassword, asRoot: true,
		secretExtra: map[string]string{
			"root-su": "    escalation: su\n    logon:\n      secret: " + logonSecret + "\n",
			"root-sudo": "    escalation: sudo\n    logon:\n      user: " + accUser + "\n      key_file: " + keyFile +
				"\n      passphrase_file: " + phraseFile + "\n      sudo_password_file: " + sudoFile + "\n",
		},
	})
	l.ss.AddSecret(sstest.SecretSeed{Name: logonSecret, Folder: `\Lab\Linux`, Username: accUser, Password: accPassword, Notes: "logon"})
	creds := []string{accPassword, key.pem, key.passphrase}

	for _, name := range []string{"root-su", "root-sudo"} {
		idx := groups[name]
		rotated, rot := l.rotateRoot(t, name, idx, creds)

		out, errOut, code := l.rotord("rollback", name)
		if code != 0 {
			t.Fatalf("rotord rollback %s: exit %d\nstdout:\n%s\nstderr:\n%s", name, code, out, errOut)
		}
		t.Logf("rollback %s:\n%s", name, out)
		l.leakFree(out+errOut, append(creds, rotated)...)
		if got := l.password(name); got != accRootPassword {
			t.Errorf("%s: Secret Server does not hold root's previous password after the rollback", name)
		}
		// The previous password on every host, the rotated-away one on none.
		l.rootWorksOnly(idx, accRootPassword, rotated)
		hist := l.history(name)
		if len(hist) != 2 || hist[0].Kind != string(rotation.KindRollback) || hist[0].State != string(rotation.StateCommitted) || hist[0].RollbackOf != rot[0].ID {
			t.Fatalf("%s: history %+v; want a committed rollback of rotation %d, newest first", name, hist, rot[0].ID)
		}
		for _, h := range hist[0].Hosts {
			if h.State != string(rotation.HostChanged) {
				t.Errorf("%s: the rollback left host %s %s (%s)", name, h.Host, h.State, h.Outcome)
			}
		}
		db := l.openStore(ctx)
		r, err := db.Get(ctx, hist[0].ID)
		_ = db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.Old.Reveal() != rotated || r.New.Reveal() != accRootPassword {
			t.Errorf("%s: the journal does not hold the rotated-away password as old and the previous one as new", name)
		}
		for _, i := range idx {
			if ok, _ := l.rig.PasswordWorks(i, accUser, accPassword); !ok {
				t.Errorf("%s: host %d: the logon account's password changed", name, i)
			}
			if l.rig.Hosts()[i].Variant != sshtest.Faillock {
				continue
			}
			for _, user := range []string{"root", accUser} {
				n, err := l.rig.FaillockCount(i, user)
				if err != nil || n != 0 {
					t.Errorf("%s: host %d: pam_faillock counted %d refusals of %s (%v), want none", name, i, n, user, err)
				}
			}
		}
	}
	l.leakFree("", creds...)
}
