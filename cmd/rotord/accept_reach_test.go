package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// reachKey is a logon key: its OpenSSH PEM (under passphrase when set)
// and its public half for authorized_keys.
type reachKey struct {
	pem        string
	passphrase string
	pub        ssh.PublicKey
}

func newReachKey(t *testing.T, passphrase string) reachKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(crypto.Signer(priv), "", []byte(passphrase))
	} else {
		block, err = ssh.MarshalPrivateKey(crypto.Signer(priv), "")
	}
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return reachKey{pem: string(pem.EncodeToMemory(block)), passphrase: passphrase, pub: pub}
}

// logonSecretPassword is the Secret Server secret "ops-logon"'s password:
// the logon account's (the rig's test account's) own password.
const logonSecret = "ops-logon"

// rootWorksOnly fails unless want is root's password on every host of
// idx and old is on none (checked against each host's shadow entry, no
// login).
func (l *lab) rootWorksOnly(idx []int, want, old string) {
	l.t.Helper()
	for _, i := range idx {
		ok, err := l.rig.PasswordWorks(i, "root", want)
		if err != nil || !ok {
			l.t.Errorf("host %d: root's new password does not authenticate (%v)", i, err)
		}
		if ok, _ := l.rig.PasswordWorks(i, "root", old); ok {
			l.t.Errorf("host %d: root's old password still authenticates", i)
		}
	}
}

// leakFree fails if any of the logon credentials, or a password in play,
// is in text or in the journal's bytes on disk.
func (l *lab) leakFree(text string, creds ...string) {
	l.t.Helper()
	l.noSecrets(text, append([]string{accRootPassword}, creds...)...)
	for _, c := range creds {
		for _, line := range strings.Split(c, "\n") {
			if len(line) > 20 && strings.Contains(text, line) {
				l.t.Fatalf("output holds part of a logon credential:\n%s", text)
			}
		}
	}
	files, _ := filepath.Glob(l.path("rotord.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			l.t.Fatal(err)
		}
		for _, c := range append([]string{accRootPassword, accPassword}, creds...) {
			if c != "" && strings.Contains(string(b), c) {
				l.t.Fatalf("%s holds a credential in plaintext", filepath.Base(f))
			}
		}
	}
}

// TestAcceptRotateRootThroughSuAndSudo: root is rotated by `rotord rotate`
// on PermitRootLogin-no hosts through su (the logon account's password
// from a Secret Server secret) and on keys-only hosts through sudo (a
// passphrase-protected key from a file, sudo's password from a file; and a
// passphrase-protected key kept in a Unix Account (SSH) secret, on a
// requiretty host), shadow-utils and BusyBox: root's new password authenticates on every
// host and the old one on none, Secret Server holds the new one, the
// journal holds both sealed, and no logon credential is in the output,
// the daemon's log, check's report or the journal's bytes.
func TestAcceptRotateRootThroughSuAndSudo(t *testing.T) {
	sshtest.RequireReach(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	key := newReachKey(t, "Logon-Key-Phrase-41")
	vaultKey := newReachKey(t, "Vault-Key-Phrase-77")
	noRoot := &sshtest.ReachSpec{PermitRootLogin: "no"}
	keysOnly := &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{key.pub}, Sudo: sshtest.SudoPassword}
	vaultKeysOnly := &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{vaultKey.pub}, Sudo: sshtest.SudoPassword, RequireTTY: true}
	dir := t.TempDir()
	write := func(name, content string) string { return privateFile(t, dir, name, content) }
	keyFile := write("logon-key", key.pem)
	phraseFile := write("logon-key-phrase", key.passphrase+"\n")
	sudoFile := write("logon-sudo", accPassword+"\n")
	l := newLab(t, ctx, labOptions{
		variants: []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.Debian, sshtest.BusyBox, sshtest.Debian},
		reach:    map[int]*sshtest.ReachSpec{0: noRoot, 1: noRoot, 2: keysOnly, 3: keysOnly, 4: vaultKeysOnly},
		groups:   map[string][]int{"root-su": {0, 1}, "root-sudo": {2, 3}, "root-sudo-vault-key": {4}},
		schedule: "@weekly", rootPass: accRootPassword, asRoot: true,
		secretExtra: map[string]string{
			"root-su": "    escalation: su\n    logon:\n      secret: " + logonSecret + "\n",
			"root-sudo": "    escalation: sudo\n    logon:\n      user: " + accUser + "\n      key_file: " + keyFile +
				"\n      passphrase_file: " + phraseFile + "\n      sudo_password_file: " + sudoFile + "\n",
			"root-sudo-vault-key": "    escalation: sudo\n    logon:\n      secret: ops-key\n",
		},
	})
	l.ss.AddSecret(sstest.SecretSeed{Name: logonSecret, Folder: `\Lab\Linux`, Username: accUser, Password: accPassword, Notes: "logon"})
	// The Unix Account (SSH) template: the key and its passphrase in
	// their fields, the password answering sudo.
	tid := l.ss.AddUnixSSHTemplate("Unix Account (SSH)")
	l.ss.AddSecret(sstest.SecretSeed{Name: "ops-key", Folder: `\Lab\Linux`, TemplateID: tid, Username: accUser, Password: accPassword,
		Fields: map[string]string{"private-key": vaultKey.pem, "private-key-passphrase": vaultKey.passphrase}})
	creds := []string{accPassword, key.pem, key.passphrase, vaultKey.pem, vaultKey.passphrase}

	out, errOut, code := l.rotord("check")
	if code != 0 {
		t.Fatalf("rotord check: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("rotord check:\n%s", out)
	for _, want := range []string{"logon " + accUser + " by password, su", "logon " + accUser + " by key ssh-ed25519", ", sudo"} {
		if !strings.Contains(out, want) {
			t.Errorf("check does not show the path %q:\n%s", want, out)
		}
	}
	l.leakFree(out+errOut, creds...)

	for name, idx := range map[string][]int{"root-su": {0, 1}, "root-sudo": {2, 3}, "root-sudo-vault-key": {4}} {
		stored, hist := l.rotateRoot(t, name, idx, creds)
		db := l.openStore(ctx)
		r, err := db.Get(ctx, hist[0].ID)
		_ = db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.Old.Reveal() != accRootPassword || r.New.Reveal() != stored {
			t.Errorf("%s: the journal does not hold both passwords", name)
		}
	}
	// A heartbeat goes the same path: every secret's new password proven
	// through su or sudo, the debug log free of logon credentials.
	out, errOut, code = l.rotord("--log-level", "debug", "heartbeat", "root-su", "root-sudo", "root-sudo-vault-key")
	if code != 0 {
		t.Fatalf("rotord heartbeat: exit %d\n%s\n%s", code, out, errOut)
	}
	l.leakFree(out+errOut, creds...)
	// The logon account's password is unchanged (it is never rotated
	// through itself), and the journal's bytes hold no credential.
	for i := range 5 {
		if ok, _ := l.rig.PasswordWorks(i, accUser, accPassword); !ok {
			t.Errorf("host %d: the logon account's password changed", i)
		}
	}
	l.leakFree("", creds...)
}

// TestAcceptReachFailures: each way a path fails before anything changes
// — the logon account's password or key refused, a key type sshd does
// not accept, not in sudoers, not in wheel, su refusing root's current
// password — is a clear outcome of
// `rotord rotate` naming the host and the step; root's password is
// unchanged, Secret Server keeps it, and pam_faillock counted at most 2
// refused authentications per account on each host.
func TestAcceptReachFailures(t *testing.T) {
	sshtest.RequireReach(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	key, stranger := newReachKey(t, ""), newReachKey(t, "")
	noRoot := &sshtest.ReachSpec{PermitRootLogin: "no"}
	dir := t.TempDir()
	write := func(name, content string) string { return privateFile(t, dir, name, content) }
	keyFile := write("logon-key", key.pem)
	wrongPw := write("logon-wrong", "Not-The-Logon-Pw-9\n")
	sudoFile := write("logon-sudo", accPassword+"\n")
	viaKey := "    logon:\n      user: " + accUser + "\n      key_file: " + keyFile + "\n      sudo_password_file: " + sudoFile + "\n"
	cases := []struct {
		secret, step string
		reach        *sshtest.ReachSpec
		extra        string
	}{
		{"f-su-wrong-root", "step su", noRoot, "    escalation: su\n    logon:\n      secret: " + logonSecret + "\n"},
		{"f-logon-password", "step logon", noRoot, "    escalation: su\n    logon:\n      user: " + accUser + "\n      password_file: " + wrongPw + "\n"},
		{"f-not-in-wheel", "step su", &sshtest.ReachSpec{PermitRootLogin: "no", Wheel: sshtest.WheelNotMember}, "    escalation: su\n    logon:\n      secret: " + logonSecret + "\n"},
		{"f-not-in-sudoers", "step sudo", &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{key.pub}, Sudo: sshtest.SudoNone}, "    escalation: sudo\n" + viaKey},
		{"f-logon-key", "step logon", &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{stranger.pub}, Sudo: sshtest.SudoPassword}, "    escalation: sudo\n" + viaKey},
		{"f-key-type", "step logon", &sshtest.ReachSpec{PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{key.pub}, Sudo: sshtest.SudoPassword, PubkeyAcceptedAlgorithms: "rsa-sha2-512,rsa-sha2-256"}, "    escalation: sudo\n" + viaKey},
	}
	o := labOptions{reach: map[int]*sshtest.ReachSpec{}, groups: map[string][]int{}, secretExtra: map[string]string{},
		schedule: "@weekly", rootPass: accRootPassword, asRoot: true}
	for i, c := range cases {
		o.variants = append(o.variants, sshtest.Faillock)
		o.reach[i], o.groups[c.secret], o.secretExtra[c.secret] = c.reach, []int{i}, c.extra
	}
	// A logon secret that does not resolve: check reports it, and a
	// rotation stops before touching the host.
	o.groups["f-missing-logon"] = []int{0}
	o.secretExtra["f-missing-logon"] = "    escalation: su\n    logon:\n      secret: no-such-logon\n"
	l := newLab(t, ctx, o)
	l.ss.AddSecret(sstest.SecretSeed{Name: logonSecret, Folder: `\Lab\Linux`, Username: accUser, Password: accPassword, Notes: "logon"})
	const wrongRoot = "Wrong-Root-Pw-3318"
	l.ss.SetField(l.ids["f-su-wrong-root"], "password", wrongRoot)
	creds := []string{accPassword, key.pem, "Not-The-Logon-Pw-9"}
	for i, c := range cases {
		host := l.rig.Hosts()[i].Addr()
		out, errOut, code := l.rotord("rotate", c.secret)
		if code == 0 {
			t.Fatalf("%s: rotate succeeded:\n%s", c.secret, out)
		}
		l.leakFree(out+errOut, append(creds, wrongRoot)...)
		if all := out + errOut; !strings.Contains(all, host) || !strings.Contains(all, c.step) {
			t.Errorf("%s: the outcome does not name host %s and %q:\nstdout:\n%s\nstderr:\n%s", c.secret, host, c.step, out, errOut)
		}
		want := accRootPassword
		if c.secret == "f-su-wrong-root" {
			want = wrongRoot
		}
		if got := l.password(c.secret); got != want {
			t.Errorf("%s: Secret Server's password changed", c.secret)
		}
		if ok, _ := l.rig.PasswordWorks(i, "root", accRootPassword); !ok {
			t.Errorf("%s: root's password changed on host %d", c.secret, i)
		}
		for _, user := range []string{"root", accUser} {
			n, err := l.rig.FaillockCount(i, user)
			t.Logf("%s: host %d: pam_faillock counted %d refusals of %s", c.secret, i, n, user)
			if err != nil || n > rotation.RefusalBudget {
				t.Errorf("%s: host %d: pam_faillock counted %d refusals of %s (%v), want at most %d", c.secret, i, n, user, err, rotation.RefusalBudget)
			}
		}
	}
	attempts := l.rig.AuthAttempts(0)
	out, errOut, code := l.rotord("rotate", "f-missing-logon")
	if code == 0 || !strings.Contains(out+errOut, `logon secret "no-such-logon"`) {
		t.Errorf("rotate with a logon secret that does not resolve: exit %d\n%s\n%s", code, out, errOut)
	}
	if l.rig.AuthAttempts(0) != attempts {
		t.Error("a rotation whose logon secret does not resolve sent a credential to the host")
	}
	out, errOut, code = l.rotord("check")
	if code != 1 || !strings.Contains(out, `secret f-missing-logon: logon account: logon secret "no-such-logon"`) {
		t.Errorf("check: exit %d, want 1 naming the logon secret that does not resolve:\n%s\n%s", code, out, errOut)
	}
	l.leakFree(out+errOut, append(creds, wrongRoot)...)
}

// TestAcceptReachDaemonLeaks: `rotord run` rotates root through su (the
// logon password from a Secret Server secret) and through sudo (a
// passphrase-protected key file) on its schedule, with debug logging and
// metrics on. While it runs, every process's arguments and environment on
// the machine (rotord, sshd, su, sudo, passwd) are read again and again:
// no logon credential (password, key, passphrase) appears there, nor in
// the daemon's log, its metrics or the journal's bytes.
func TestAcceptReachDaemonLeaks(t *testing.T) {
	sshtest.RequireReach(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	key := newReachKey(t, "Daemon-Key-Phrase-58")
	dir := t.TempDir()
	write := func(name, content string) string { return privateFile(t, dir, name, content) }
	keyFile, phraseFile, sudoFile := write("k", key.pem), write("kp", key.passphrase+"\n"), write("sp", accPassword+"\n")
	l := newLab(t, ctx, labOptions{
		variants: []sshtest.Variant{sshtest.Debian, sshtest.BusyBox},
		reach: map[int]*sshtest.ReachSpec{0: {PermitRootLogin: "no"},
			1: {PermitRootLogin: "no", KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{key.pub}, Sudo: sshtest.SudoPassword}},
		groups:   map[string][]int{"root-su": {0}, "root-sudo": {1}},
		schedule: "@every 2s", rootPass: accRootPassword, asRoot: true, metrics: "127.0.0.1:0",
		secretExtra: map[string]string{
			"root-su": "    escalation: su\n    logon:\n      secret: " + logonSecret + "\n",
			"root-sudo": "    escalation: sudo\n    logon:\n      user: " + accUser + "\n      key_file: " + keyFile +
				"\n      passphrase_file: " + phraseFile + "\n      sudo_password_file: " + sudoFile + "\n",
		},
	})
	l.ss.AddSecret(sstest.SecretSeed{Name: logonSecret, Folder: `\Lab\Linux`, Username: accUser, Password: accPassword, Notes: "logon"})
	creds := []string{accPassword, key.passphrase}
	for _, line := range strings.Split(key.pem, "\n") {
		if len(line) > 40 {
			creds = append(creds, line) // a line of the key's body
		}
	}

	// Read every process's arguments and environment until told to stop.
	stop, found := make(chan struct{}), make(chan string, 1)
	scanned := make(chan int)
	go func() {
		n := 0
		defer func() { scanned <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			procs, _ := filepath.Glob("/proc/[0-9]*")
			for _, p := range procs {
				for _, f := range []string{"cmdline", "environ"} {
					b, err := os.ReadFile(filepath.Join(p, f))
					if err != nil {
						continue
					}
					for _, c := range creds {
						if strings.Contains(string(b), c) {
							select {
							case found <- p + "/" + f:
							default:
							}
						}
					}
				}
			}
			n++
		}
	}()

	d := l.startDaemon()
	served := d.next("the metrics endpoint", func(rec map[string]any) bool { return is(rec, "serving metrics") })
	done := map[string]bool{}
	d.next("both secrets rotated", func(rec map[string]any) bool {
		if is(rec, "rotation finished", "state", string(rotation.StateCommitted)) {
			done[fmt.Sprint(rec["secret"])] = true
		}
		return done["root-su"] && done["root-sudo"]
	})
	resp, err := http.Get("http://" + served["addr"].(string) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsBody, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	d.signal(syscall.SIGTERM)
	if code := d.wait(); code != 0 {
		t.Fatalf("rotord run exited %d; it logged:\n%s", code, d.logged())
	}
	close(stop)
	if n := <-scanned; n == 0 {
		t.Fatal("the processes were never read")
	}
	select {
	case where := <-found:
		t.Fatalf("a logon credential is in %s", where)
	default:
	}
	for _, name := range []string{"root-su", "root-sudo"} {
		if l.password(name) == accRootPassword {
			t.Fatalf("%s was not rotated", name)
		}
	}
	l.leakFree(d.logged(), creds...)
	l.leakFree(string(metricsBody), creds...)
	l.leakFree("", creds...)
}

// rotateRoot runs `rotord rotate name` (root on hosts idx, first holding
// accRootPassword) and checks it committed: no credential of creds in its
// output, Secret Server holds a new password, which root's is on every
// host (the first one on none), and history holds one committed rotation.
func (l *lab) rotateRoot(t *testing.T, name string, idx []int, creds []string) (stored string, hist []jsonRotation) {
	t.Helper()
	out, errOut, code := l.rotord("rotate", name)
	if code != 0 {
		t.Fatalf("rotord rotate %s: exit %d\nstdout:\n%s\nstderr:\n%s", name, code, out, errOut)
	}
	l.leakFree(out+errOut, creds...)
	stored = l.password(name)
	if stored == accRootPassword {
		t.Fatalf("%s: Secret Server still holds root's first password", name)
	}
	l.rootWorksOnly(idx, stored, accRootPassword)
	hist = l.history(name)
	if len(hist) != 1 || hist[0].State != string(rotation.StateCommitted) {
		t.Fatalf("%s: history %+v; want one committed rotation", name, hist)
	}
	return stored, hist
}

// privateFile writes content to dir/name, readable by its owner only (as
// rotord wants its credential files), and returns the path.
func privateFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
