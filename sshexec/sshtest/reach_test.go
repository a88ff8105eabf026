package sshtest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestRigReachVariants shows each ReachSpec setting is real, with a plain
// SSH client: root may not log in where PermitRootLogin is no; a keys-only
// host takes no password and only the key types it accepts; sudoers and
// su's PAM stack are the host's own (requiretty, no rule, NOPASSWD,
// pam_wheel); PasswordWorks reads the host's shadow; PAMRefusals counts
// the passwords PAM refused, through sshd and su.
func TestRigReachVariants(t *testing.T) {
	sshtest.RequireRig(t, sshtest.BusyBox)
	sshtest.RequireReach(t)
	const user, pw, rootPw = "rotuser", "Initial-Pw-2024", "Root-Admin-Pw-7"
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := ssh.NewSignerFromKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ssh.NewSignerFromKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := sshtest.StartRig(ctx, sshtest.RigOptions{
		Dir: t.TempDir(), User: user, Password: pw, RootPassword: rootPw, Sudo: true,
		Hosts: []sshtest.HostSpec{
			{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{PermitRootLogin: "no", RequireTTY: true, Sudo: sshtest.SudoPassword, Wheel: sshtest.WheelNotMember}},
			{Variant: sshtest.BusyBox, Reach: &sshtest.ReachSpec{KeysOnly: true, AuthorizedKeys: []ssh.PublicKey{ed.PublicKey(), ec.PublicKey()}, PubkeyAcceptedAlgorithms: "ssh-ed25519", Sudo: sshtest.SudoNone}},
			{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{Sudo: sshtest.SudoNoPassword}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	hk, err := knownhosts.New(r.KnownHostsFile())
	if err != nil {
		t.Fatal(err)
	}
	dial := func(i int, name string, auth ssh.AuthMethod) (*ssh.Client, error) {
		return ssh.Dial("tcp", r.Hosts()[i].Addr(), &ssh.ClientConfig{User: name, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: hk,
			HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 10 * time.Second})
	}
	run := func(c *ssh.Client, cmd, stdin string) (string, error) {
		t.Helper()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Stdin = strings.NewReader(stdin)
		out, err := s.CombinedOutput(cmd)
		return string(out), err
	}

	if c, err := dial(0, "root", ssh.Password(rootPw)); err == nil {
		c.Close()
		t.Fatal("root logged in where PermitRootLogin is no")
	}
	c, err := dial(0, user, ssh.Password(pw))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if out, err := run(c, "env LC_ALL=C sudo -S -p '' true", pw+"\n"); err == nil || !strings.Contains(out, "you must have a tty") {
		t.Fatalf("requiretty: sudo without a terminal: %v %q", err, out)
	}
	if out, err := run(c, "env LC_ALL=C su root -c true", rootPw+"\n"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("pam_wheel: su by a non-member: %v %q", err, out)
	}

	if c, err := dial(1, user, ssh.Password(pw)); err == nil {
		c.Close()
		t.Fatal("a password logged in on a keys-only host")
	}
	if c, err := dial(1, user, ssh.PublicKeys(ec)); err == nil {
		c.Close()
		t.Fatal("an ECDSA key logged in where sshd accepts only ssh-ed25519")
	}
	c1, err := dial(1, user, ssh.PublicKeys(ed))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if out, err := run(c1, "env LC_ALL=C sudo -S -p '' true", pw+"\n"); err == nil || !strings.Contains(out, "not in the sudoers file") {
		t.Fatalf("no sudo rule: %v %q", err, out)
	}

	c2, err := dial(2, user, ssh.Password(pw))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if out, err := run(c2, "sudo -n id -u", ""); err != nil || strings.TrimSpace(out) != "0" {
		t.Fatalf("NOPASSWD: %v %q", err, out)
	}
	if out, err := run(c2, "env LC_ALL=C su root -c 'id -u'", rootPw+"\n"); err != nil || !strings.HasSuffix(strings.TrimSpace(out), "0") {
		t.Fatalf("su without pam_wheel: %v %q", err, out)
	}

	// Every password PAM refuses is noted, sshd's and su's alike; an
	// accepted one is not.
	refusedBefore, err := r.PAMRefusals(2)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := dial(2, user, ssh.Password("Wrong-Pw-1")); err == nil {
		c.Close()
		t.Fatal("a wrong password logged in")
	}
	if out, err := run(c2, "env LC_ALL=C su root -c true", "Wrong-Root-Pw-2\n"); err == nil {
		t.Fatalf("su took a wrong password: %q", out)
	}
	if out, err := run(c2, "env LC_ALL=C su root -c true", rootPw+"\n"); err != nil {
		t.Fatalf("su: %v %q", err, out)
	}
	if n, err := r.PAMRefusals(2); err != nil || n-refusedBefore != 2 {
		t.Fatalf("PAM noted %d refusals (%v), want 2: sshd's and su's", n-refusedBefore, err)
	}

	for i := range r.Hosts() {
		if ok, err := r.PasswordWorks(i, "root", rootPw); err != nil || !ok {
			t.Fatalf("host %d: root's password does not match its shadow entry (%v)", i, err)
		}
		if ok, err := r.PasswordWorks(i, "root", pw); err != nil || ok {
			t.Fatalf("host %d: another password matches root's shadow entry (%v)", i, err)
		}
	}
}
