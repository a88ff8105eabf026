package sshtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Every host runs the machine's programs but none of the machine's
// configuration that decides how they behave: its /etc/pam.d and
// /etc/security are directories the rig writes (mounted over the
// machine's), and the files of /etc that shape passwd, useradd, sshd and
// sudo (passwd, group, shadow, login.defs, nsswitch.conf, the time zone,
// the locale, sudoers) are the rig's own in the host's /etc overlay. A
// package that switches a module on in the machine's PAM (pwquality does
// on install) or an administrator's login.defs changes no host.

// pamCommon is the part of every host's PAM configuration that does not
// depend on its variant: the services sshd, passwd, chpasswd, su, su-l, sudo and
// everything else ("other", refused).
var pamCommon = map[string]string{
	"common-account": `account	[success=1 new_authtok_reqd=done default=ignore]	pam_unix.so
account	requisite			pam_deny.so
account	required			pam_permit.so
`,
	"common-session": `session	required	pam_unix.so
`,
	"common-session-noninteractive": `session	required	pam_unix.so
`,
	// No pam_nologin: a /etc/nologin on the machine must not close the hosts.
	"sshd": `@include common-auth
@include common-account
@include common-session
@include common-password
`,
	"passwd": `@include common-password
`,
	"chpasswd": `@include common-password
`,
	"su": `auth	sufficient	pam_rootok.so
@include common-auth
@include common-account
@include common-session
`,
	// util-linux su takes su-l for a login shell (su -), as Debian's own file.
	"su-l": `@include su
`,
	"sudo": `@include common-auth
@include common-account
@include common-session-noninteractive
`,
	"other": `auth	required	pam_warn.so
auth	required	pam_deny.so
account	required	pam_warn.so
account	required	pam_deny.so
password	required	pam_warn.so
password	required	pam_deny.so
session	required	pam_warn.so
session	required	pam_deny.so
`,
}

// unixAuth checks passwords with pam_unix, without its 2 s delay after a
// failure (tests fail logins on purpose); a refused password is noted
// (refusalNote) before it is denied.
func unixAuth(hostDir string) string {
	return `auth	[success=2 default=ignore]	pam_unix.so nullok nodelay
` + refusalNote(hostDir) + `auth	requisite			pam_deny.so
auth	required			pam_permit.so
`
}

// refusalScript and refusalLog are, in a host's directory, the program
// PAM runs when it refuses a password, and the lines it appends there:
// "SERVICE USER" (Rig.PAMRefusals).
const (
	refusalScript = "note-refusal"
	refusalLog    = "refusals"
)

// refusalNote is the auth line that runs refusalScript, whatever the
// service (sshd, su, sudo): every refusal pam_faillock would count.
func refusalNote(hostDir string) string {
	return "auth	optional			pam_exec.so quiet seteuid " + filepath.Join(hostDir, refusalScript) + "\n"
}

// refusalScriptText appends the service and the account to hostDir's
// refusalLog (one short write: lines from concurrent refusals do not mix).
func refusalScriptText(hostDir string) string {
	return "#!/bin/sh\nprintf '%s %s\\n' \"$PAM_SERVICE\" \"$PAM_USER\" >>" + filepath.Join(hostDir, refusalLog) + "\n"
}

// unixPassword is the password stack of Debian's default install.
const unixPassword = `password	[success=1 default=ignore]	pam_unix.so obscure yescrypt
password	requisite			pam_deny.so
password	required			pam_permit.so
`

// pwqualityPassword is the password stack of PwQuality hosts.
const pwqualityPassword = `password	requisite			pam_pwquality.so retry=3
password	[success=1 default=ignore]	pam_unix.so obscure use_authtok try_first_pass yescrypt
password	requisite			pam_deny.so
password	required			pam_permit.so
`

// FaillockDeny is how many refused passwords in a row lock an account on
// a Faillock host.
const FaillockDeny = 3

// faillockAuth is the auth stack of Faillock hosts, as pam_faillock(8)'s
// example has it; the tally is kept in dir, inside the host's directory.
// An account stays locked for a day.
func faillockAuth(dir string) string {
	opts := fmt.Sprintf("dir=%s deny=%d unlock_time=86400 fail_interval=86400", dir, FaillockDeny)
	return `auth	requisite			pam_faillock.so preauth ` + opts + `
auth	[success=2 default=bad]		pam_unix.so nodelay
` + refusalNote(filepath.Dir(dir)) + `auth	[default=die]			pam_faillock.so authfail ` + opts + `
auth	sufficient			pam_faillock.so authsucc ` + opts + `
auth	required			pam_deny.so
`
}

// faillockAccount adds pam_faillock's account check to Faillock hosts.
const faillockAccount = `account	required	pam_faillock.so
account	[success=1 new_authtok_reqd=done default=ignore]	pam_unix.so
account	requisite			pam_deny.so
account	required			pam_permit.so
`

// pamFiles returns the /etc/pam.d of a host of variant v whose own
// directory is hostDir. A refusalDelay (microseconds) above 0 makes PAM
// wait that long before it answers a refused password.
func pamFiles(v Variant, hostDir string, refusalDelay int64) map[string]string {
	files := make(map[string]string, len(pamCommon)+2)
	for name, text := range pamCommon {
		files[name] = text
	}
	files["common-auth"] = unixAuth(hostDir)
	files["common-password"] = unixPassword
	switch v {
	case PwQuality:
		files["common-password"] = pwqualityPassword
	case Faillock:
		files["common-auth"] = faillockAuth(filepath.Join(hostDir, "faillock"))
		files["common-account"] = faillockAccount
	}
	if refusalDelay > 0 {
		files["common-auth"] = fmt.Sprintf("auth	optional	pam_faildelay.so delay=%d\n", refusalDelay) + files["common-auth"]
	}
	return files
}

// securityFiles is every host's /etc/security: the modules' own
// configuration files hold no settings (the PAM lines carry them), and
// drop-in directories are empty.
var securityFiles = map[string]string{
	"pwquality.conf": "# rotord test rig: pam_pwquality's defaults\n",
	"faillock.conf":  "# rotord test rig: options are on the PAM lines\n",
	"limits.conf":    "",
	"pam_env.conf":   "",
	"access.conf":    "",
}

// loginDefs is every host's /etc/login.defs (and the template's, where
// useradd and chpasswd read it): no minimum password age, hashes as
// Debian 12 makes them.
func loginDefs(sha512 bool) string {
	method := "YESCRYPT"
	if sha512 {
		method = "SHA512"
	}
	return `MAIL_DIR	/var/mail
ENV_SUPATH	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV_PATH	PATH=/usr/local/bin:/usr/bin:/bin
TTYGROUP	tty
TTYPERM		0600
UMASK		022
PASS_MAX_DAYS	99999
PASS_MIN_DAYS	0
PASS_WARN_AGE	7
UID_MIN		1000
UID_MAX		60000
SYS_UID_MIN	100
SYS_UID_MAX	999
GID_MIN		1000
GID_MAX		60000
SYS_GID_MIN	100
SYS_GID_MAX	999
USERGROUPS_ENAB	yes
ENCRYPT_METHOD	` + method + `
`
}

// etcFiles are the files of every host's /etc (in the template's upper
// layer, copied to each host) that replace the machine's.
func etcFiles(sha512 bool) map[string]string {
	return map[string]string{
		"login.defs": loginDefs(sha512),
		"nsswitch.conf": `passwd:	files
group:	files
shadow:	files
gshadow:	files
hosts:	files
networks:	files
protocols:	files
services:	files
ethers:	files
rpc:	files
netgroup:	files
`,
		"timezone": "Etc/UTC\n",
		// Read by no module the hosts use; pinned so none can pick up the machine's.
		"environment":     "",
		"default/locale":  "LANG=C\n",
		"default/useradd": "SHELL=/bin/sh\n",
	}
}

// systemUsers and systemGroups are the machine's accounts a host keeps
// (sshd's privilege separation, PTY and shadow ownership): their ids are
// those of the machine's files on disk.
var (
	systemUsers  = []string{"root", "daemon", "bin", "sys", "sshd", "nobody"}
	systemGroups = []string{"root", "daemon", "bin", "sys", "adm", "tty", "shadow", "utmp", "sudo", "staff", "users", "nogroup"}
)

// writeAccounts writes a minimal /etc/passwd, group, shadow and gshadow
// into upper: the system accounts of the machine, with no password (the
// machine's root password never reaches a host; StartRig sets the rig's).
func writeAccounts(upper string) error {
	pick := func(file string, names []string) ([]string, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		byName := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if n, _, ok := strings.Cut(l, ":"); ok {
				if _, seen := byName[n]; !seen {
					byName[n] = l
				}
			}
		}
		var out []string
		for _, n := range names {
			if l, ok := byName[n]; ok {
				out = append(out, l)
			}
		}
		if len(out) == 0 || !strings.HasPrefix(out[0], "root:") {
			return nil, fmt.Errorf("%s has no root entry", file)
		}
		return out, nil
	}
	users, err := pick("/etc/passwd", systemUsers)
	if err != nil {
		return err
	}
	groups, err := pick("/etc/group", systemGroups)
	if err != nil {
		return err
	}
	var shadow, gshadow []string
	for _, u := range users {
		n, _, _ := strings.Cut(u, ":")
		shadow = append(shadow, n+":*::0:99999:7:::")
	}
	for i, g := range groups {
		f := strings.Split(g, ":")
		if len(f) == 4 {
			f[3] = "" // no members: the machine's people are not the hosts'
			groups[i] = strings.Join(f, ":")
		}
		gshadow = append(gshadow, f[0]+":*::")
	}
	for _, f := range []struct {
		name  string
		lines []string
		mode  os.FileMode
	}{{"passwd", users, 0o644}, {"group", groups, 0o644}, {"shadow", shadow, 0o640}, {"gshadow", gshadow, 0o640}} {
		if err := writeFile(filepath.Join(upper, f.name), strings.Join(f.lines, "\n")+"\n", f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeTree writes files (paths relative to dir) into dir.
func writeTree(dir string, files map[string]string, mode os.FileMode) error {
	for name, text := range files {
		if err := writeFile(filepath.Join(dir, name), text, mode); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path, text string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// writeConfig writes the rig-owned parts of a host's (or the template's)
// configuration under dir: dir/pam.d and dir/security, mounted over
// /etc/pam.d and /etc/security in its namespace.
func writeConfig(dir string, v Variant, refusalDelay int64) error {
	for _, d := range []string{"pam.d", "security"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	if err := writeTree(filepath.Join(dir, "pam.d"), pamFiles(v, dir, refusalDelay), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, refusalScript), refusalScriptText(dir), 0o755); err != nil {
		return err
	}
	if err := writeTree(filepath.Join(dir, "security"), securityFiles, 0o644); err != nil {
		return err
	}
	for _, d := range []string{"security/pwquality.conf.d", "security/limits.d", "security/namespace.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}
