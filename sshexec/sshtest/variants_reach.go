package sshtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// ReachSpec shapes how a rig host may be reached, for rotating an account
// that does not log in itself (root on a hardened host): sshd's root and
// key settings, and what the test account — the logon account — may do
// with su and sudo. Everything lives in the host's own files: its
// sshd_config, its /etc/sudoers and /etc/group in its /etc overlay, its
// /etc/pam.d/su, its home's authorized_keys.
type ReachSpec struct {
	// PermitRootLogin is sshd's setting ("no", "prohibit-password", ...);
	// "" keeps the rig's (yes when RigOptions.RootPassword is set).
	PermitRootLogin string
	// KeysOnly turns password and keyboard-interactive authentication off.
	KeysOnly bool
	// AuthorizedKeys are keys the test account may log in with; public
	// key authentication is on when there is one.
	AuthorizedKeys []ssh.PublicKey
	// RootAuthorizedKeys are keys root may log in with (with
	// PermitRootLogin prohibit-password or yes).
	RootAuthorizedKeys []ssh.PublicKey
	// PubkeyAcceptedAlgorithms restricts the key types sshd accepts ("" for
	// sshd's default).
	PubkeyAcceptedAlgorithms string
	// Sudo is the test account's sudoers rule.
	Sudo SudoRule
	// RequireTTY sets `Defaults requiretty`: sudo runs only on a terminal.
	RequireTTY bool
	// Wheel restricts su with pam_wheel to group wheel.
	Wheel WheelRule
}

// SudoRule is what sudoers lets the test account do.
type SudoRule int

// The sudo rules.
const (
	// SudoDefault: RigOptions.Sudo decides (ALL with a password, or nothing).
	SudoDefault SudoRule = iota
	// SudoNone: no rule: "rotuser is not in the sudoers file".
	SudoNone
	// SudoPassword: `rotuser ALL=(ALL:ALL) ALL`, asking its password.
	SudoPassword
	// SudoNoPassword: `rotuser ALL=(ALL:ALL) NOPASSWD: ALL`.
	SudoNoPassword
	// SudoPasswdOnly: rotuser may run, with its password, only the one
	// command rotord runs to change root's password (the narrowest rule):
	// `rotuser ALL=(root) /usr/bin/env LC_ALL\=C LANG\=C passwd root`.
	SudoPasswdOnly
	// SudoOtherOnly: rotuser may run only /usr/bin/id as root, with its
	// password: sudo lets it in, but not to passwd.
	SudoOtherOnly
)

// WheelRule is whether su is restricted to group wheel.
type WheelRule int

// The wheel rules.
const (
	// WheelOff: anyone may su with the target's password.
	WheelOff WheelRule = iota
	// WheelMember: su is restricted to group wheel; the test account is in it.
	WheelMember
	// WheelNotMember: su is restricted to group wheel; the test account is not in it.
	WheelNotMember
)

// wheelGID is the wheel group's id on the hosts (a host's group file holds
// only the system groups the rig keeps and the test account's).
const wheelGID = 10

// sudoRules returns the test account's lines of a host's sudoers.
func sudoRules(opts RigOptions, spec HostSpec) string {
	rule := SudoDefault
	var s string
	if spec.Reach != nil {
		rule = spec.Reach.Sudo
		if spec.Reach.RequireTTY {
			s += "Defaults	requiretty\n"
		}
	}
	switch {
	case rule == SudoPassword, rule == SudoDefault && opts.Sudo:
		s += opts.User + "	ALL=(ALL:ALL) ALL\n"
	case rule == SudoNoPassword:
		s += opts.User + "	ALL=(ALL:ALL) NOPASSWD: ALL\n"
	case rule == SudoPasswdOnly:
		s += opts.User + "	ALL=(root) /usr/bin/env LC_ALL\\=C LANG\\=C passwd root\n"
	case rule == SudoOtherOnly:
		s += opts.User + "	ALL=(root) /usr/bin/id\n"
	}
	return s
}

// sshdReach returns the lines that go before a host's sshd_config (sshd
// takes the first value of each keyword).
func sshdReach(spec HostSpec) string {
	rs := spec.Reach
	if rs == nil {
		return ""
	}
	var b strings.Builder
	if rs.PermitRootLogin != "" {
		fmt.Fprintf(&b, "PermitRootLogin %s\n", rs.PermitRootLogin)
	}
	if rs.KeysOnly {
		b.WriteString("PasswordAuthentication no\nKbdInteractiveAuthentication no\n")
	}
	if len(rs.AuthorizedKeys)+len(rs.RootAuthorizedKeys) > 0 {
		b.WriteString("PubkeyAuthentication yes\nAuthorizedKeysFile .ssh/authorized_keys\n")
	}
	if rs.PubkeyAcceptedAlgorithms != "" {
		fmt.Fprintf(&b, "PubkeyAcceptedAlgorithms %s\n", rs.PubkeyAcceptedAlgorithms)
	}
	return b.String()
}

// prepareReach writes the host files spec.Reach asks for: the test
// account's and root's authorized_keys, the wheel group and pam_wheel in su's stack.
func (r *Rig) prepareReach(dir string, spec HostSpec, uid, gid int) error {
	rs := spec.Reach
	if rs == nil {
		return nil
	}
	for _, a := range []struct {
		home     string
		keys     []ssh.PublicKey
		uid, gid int
	}{
		{filepath.Join(dir, "home", r.opts.User), rs.AuthorizedKeys, uid, gid},
		{filepath.Join(dir, "root"), rs.RootAuthorizedKeys, 0, 0},
	} {
		if len(a.keys) == 0 {
			continue
		}
		sshDir := filepath.Join(a.home, ".ssh")
		var keys []byte
		for _, k := range a.keys {
			keys = append(keys, ssh.MarshalAuthorizedKey(k)...)
		}
		if err := os.MkdirAll(sshDir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sshDir, "authorized_keys"), keys, 0o600); err != nil {
			return err
		}
		for _, p := range []string{sshDir, filepath.Join(sshDir, "authorized_keys")} {
			if err := os.Chown(p, a.uid, a.gid); err != nil {
				return err
			}
		}
	}
	if rs.Wheel != WheelOff {
		members := ""
		if rs.Wheel == WheelMember {
			members = r.opts.User
		}
		upper := filepath.Join(dir, "upper")
		for _, f := range []struct{ name, line string }{
			{"group", fmt.Sprintf("wheel:x:%d:%s\n", wheelGID, members)},
			{"gshadow", fmt.Sprintf("wheel:*::%s\n", members)},
		} {
			fh, err := os.OpenFile(filepath.Join(upper, f.name), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = fh.WriteString(f.line)
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		// pam_wheel right after pam_rootok, as su(1) on RHEL and Debian's
		// commented example have it; use_uid: the caller's uid, not the
		// terminal's login name.
		su := "auth	sufficient	pam_rootok.so\nauth	required	pam_wheel.so group=wheel use_uid\n" +
			strings.TrimPrefix(pamCommon["su"], "auth	sufficient	pam_rootok.so\n")
		if err := writeFile(filepath.Join(dir, "pam.d", "su"), su, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// RequireReach skips tb when the machine lacks what ReachSpec hosts and
// their tests need (su, sudo, pam_wheel, perl for PasswordWorks), but
// fails it when the environment variable CI is "true", as RequireRig.
func RequireReach(tb testing.TB) {
	tb.Helper()
	var missing []string
	for _, p := range []string{"/usr/bin/su", "/usr/bin/sudo", "/usr/bin/perl"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/security/pam_wheel.so"); len(m) == 0 {
		if m, _ = filepath.Glob("/lib/*/security/pam_wheel.so"); len(m) == 0 {
			missing = append(missing, "pam_wheel.so")
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("reach hosts required under CI: missing %s", strings.Join(missing, ", "))
	}
	tb.Skipf("reach hosts unavailable: missing %s", strings.Join(missing, ", "))
}

// PasswordWorks reports whether pw is user's password on host i, by
// hashing it with the salt of the host's own shadow entry (crypt(3), the
// machine's libcrypt, through perl, pw on stdin): no login, so neither
// sshd nor pam_faillock counts anything.
func (r *Rig) PasswordWorks(i int, user, pw string) (bool, error) {
	line, err := r.ShadowEntry(i, user)
	if err != nil {
		return false, err
	}
	f := strings.Split(line, ":")
	if len(f) < 2 || f[1] == "" || strings.HasPrefix(f[1], "!") || strings.HasPrefix(f[1], "*") {
		return false, nil
	}
	c := exec.Command("/usr/bin/perl", "-e", `my $pw = <STDIN>; chomp $pw; print crypt($pw, $ARGV[0]) eq $ARGV[0] ? "yes" : "no";`, f[1])
	c.Stdin = strings.NewReader(pw + "\n")
	c.Env = []string{"PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return false, fmt.Errorf("sshtest: crypt: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	switch string(out) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, errors.New("sshtest: crypt: unexpected output")
}
