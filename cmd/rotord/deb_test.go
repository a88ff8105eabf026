package main

// The Debian package, end to end on this machine (as root; CI is a
// throwaway machine): `make deb`, lintian, dpkg -i, the user, group and
// directories it creates, systemd-analyze verify and security on the
// installed unit, `sudo -u rotord rotord check` against the Secret Server
// emulator and an SSH host, then dpkg --purge and what is left. The package
// is purged even when the test fails, and a rotord user the machine did not
// have before is removed again.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec/sshtest"
)

func TestDebPackageInstallCheckPurge(t *testing.T) {
	need := func(why string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		need("the package test installs a .deb: it needs root")
	}
	for _, tool := range []string{"make", "dpkg", "dpkg-query", "lintian", "systemd-analyze", "sudo", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			need("the package test needs " + tool + " (.ci/run installs it)")
		}
	}
	if err := exec.Command("dpkg-query", "-W", "rotord").Run(); err == nil {
		t.Fatal("a rotord package is installed already: not touching it")
	}
	for _, p := range []string{"/etc/rotord", "/var/lib/rotord"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists before the install (%v): not touching it", p, err)
		}
	}
	userBefore := exec.Command("getent", "passwd", "rotord").Run() == nil
	groupBefore := exec.Command("getent", "group", "rotord").Run() == nil

	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	run(t, repo, "make", "deb", "BIN="+out, "GO="+goTool(t))
	debs, _ := filepath.Glob(filepath.Join(out, "rotord_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %q", debs)
	}
	deb := debs[0]

	// lintian: no error and no warning (overrides carry their reasons).
	lint := exec.Command("lintian", "--fail-on", "error,warning", deb)
	lo, err := lint.CombinedOutput()
	if err != nil || regexp.MustCompile(`(?m)^[EW]: `).Match(lo) {
		t.Fatalf("lintian: %v\n%s", err, lo)
	}

	t.Cleanup(func() {
		if exec.Command("dpkg-query", "-W", "rotord").Run() == nil {
			if o, err := exec.Command("dpkg", "--purge", "rotord").CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge rotord: %v\n%s", err, o)
			}
		}
		// Neither existed before the test (checked above); a purge keeps
		// a journal and its key.
		_ = os.RemoveAll("/var/lib/rotord")
		_ = os.RemoveAll("/etc/rotord")
		if !userBefore {
			_ = exec.Command("userdel", "rotord").Run()
		}
		if !groupBefore {
			_ = exec.Command("groupdel", "rotord").Run()
		}
	})
	inst := run(t, "/", "dpkg", "-i", deb)
	if !strings.Contains(inst, "not enabled") {
		t.Errorf("dpkg -i did not tell the administrator the service waits for its configuration:\n%s", inst)
	}

	// The user, group and directories, and nothing started or enabled.
	if o := run(t, "/", "getent", "passwd", "rotord"); !strings.Contains(o, ":/var/lib/rotord:/usr/sbin/nologin") {
		t.Errorf("rotord user: %s", o)
	}
	run(t, "/", "getent", "group", "rotord")
	for path, want := range map[string]string{
		"/var/lib/rotord":                                  "rotord rotord 700 directory",
		"/etc/rotord":                                      "root rotord 750 directory",
		"/etc/rotord/credentials":                          "rotord rotord 700 directory",
		"/etc/rotord/rotord.yaml":                          "root root 644 regular file",
		"/usr/bin/rotord":                                  "root root 755 regular file",
		"/lib/systemd/system/rotord.service":               "root root 644 regular file",
		"/usr/share/man/man1/rotord.1.gz":                  "root root 644 regular file",
		"/usr/share/man/man1/rotord-rotate.1.gz":           "root root 644 regular file",
		"/usr/share/bash-completion/completions/rotord":    "root root 644 regular file",
		"/usr/share/zsh/vendor-completions/_rotord":        "root root 644 regular file",
		"/usr/share/fish/vendor_completions.d/rotord.fish": "root root 644 regular file",
		"/usr/share/doc/rotord/copyright":                  "root root 644 regular file",
		"/usr/share/doc/rotord/changelog.Debian.gz":        "root root 644 regular file",
	} {
		if got := strings.TrimSpace(run(t, "/", "stat", "-c", "%U %G %a %F", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if c := run(t, "/", "dpkg-query", "-W", "-f", "${Conffiles}", "rotord"); !strings.Contains(c, "/etc/rotord/rotord.yaml") {
		t.Errorf("conffiles: %q", c)
	}
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/rotord.service"); err == nil {
		t.Error("the package enabled the service before it is configured")
	}

	// The installed unit.
	unit := "/lib/systemd/system/rotord.service"
	if o, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, o)
	}
	sec, _ := exec.Command("systemd-analyze", "security", "--offline=true", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for rotord.service: ([0-9.]+)`).FindSubmatch(sec)
	if m == nil {
		t.Fatalf("systemd-analyze security:\n%s", sec)
	}
	if x, _ := strconv.ParseFloat(string(m[1]), 64); x > 1.3 {
		t.Errorf("exposure %s, want at most 1.3:\n%s", m[1], sec)
	}
	t.Logf("exposure %s", m[1])

	// rotord check as the service's user, against the emulator and a rig host.
	ss := sstest.New()
	defer ss.Close()
	const ssUser, ssPassword = "svc-rotord", "Deb-Svc-Pw-4242!"
	ss.AddUser(ssUser, "", ssPassword)
	rig, err := sshtest.StartRig(context.Background(), sshtest.RigOptions{
		Hosts: []sshtest.HostSpec{{Variant: sshtest.Debian}}, Password: "Deb-Rig-Pw-7781"})
	if err != nil {
		t.Fatalf("start rig: %v", err)
	}
	defer rig.Close()
	host := rig.Hosts()[0].Addr()
	ss.AddSecret(sstest.SecretSeed{Name: "prod-web-root", Folder: `\Prod\Linux`, Username: "root", Password: "Web-Root-Pw-0001", Notes: host})
	ss.AddSecret(sstest.SecretSeed{Name: "prod-db-root", Folder: `\Prod\Linux`, Username: "root", Password: "Db-Root-Pw-00002", Notes: host})

	pw := "/etc/rotord/credentials/ss-password"
	run(t, "/", "install", "-m", "0600", "-o", "rotord", "-g", "rotord", "/dev/null", pw)
	if err := os.WriteFile(pw, []byte(ssPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "/etc/rotord/rotord.yaml"
	editConfig(t, cfg, ss.URL, ss.CACertPEM())
	asRotord := func(args ...string) string {
		t.Helper()
		return run(t, "/", "sudo", append([]string{"-u", "rotord", "/usr/bin/rotord", "--config", cfg}, args...)...)
	}
	asRotord("keygen", "/etc/rotord/credentials/store-key")
	kh := asRotord("hostkeys", "scan", host)
	if err := os.WriteFile("/etc/rotord/known_hosts", []byte(kh), 0o644); err != nil {
		t.Fatal(err)
	}
	asRotord("migrate")
	if o := asRotord("check"); !strings.Contains(o, "no problems found") {
		t.Fatalf("rotord check:\n%s", o)
	}
	if n := ss.Calls(sstest.EndpointToken) + ss.Calls(sstest.EndpointSearch); n < 3 {
		t.Fatalf("rotord check did not reach the emulator (%d calls)", n)
	}
	if got := strings.TrimSpace(run(t, "/", "stat", "-c", "%U %a", "/var/lib/rotord/rotord.db")); got != "rotord 600" {
		t.Errorf("journal: %s, want rotord 600", got)
	}

	// Purge: the package's files, its configuration and its state go; the
	// user and group may stay.
	purge := exec.Command("dpkg", "--purge", "rotord")
	po, err := purge.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg --purge rotord: %v\n%s", err, po)
	}
	// A journal and its key are kept, and the administrator told so.
	if !strings.Contains(string(po), "kept /var/lib/rotord") {
		t.Errorf("purge did not say it kept the journal:\n%s", po)
	}
	for _, p := range []string{"/var/lib/rotord/rotord.db", "/etc/rotord/credentials/store-key"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("purge removed %s, which may hold the only copy of a host's password: %v", p, err)
		}
	}
	if err := os.RemoveAll("/var/lib/rotord"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll("/etc/rotord"); err != nil {
		t.Fatal(err)
	}
	if exec.Command("dpkg-query", "-W", "rotord").Run() == nil {
		if st := run(t, "/", "dpkg-query", "-W", "-f", "${db:Status-Status}", "rotord"); st != "not-installed" {
			t.Errorf("after purge dpkg knows rotord as %q", st)
		}
	}
	for _, p := range []string{"/usr/bin/rotord", unit, "/usr/lib/sysusers.d/rotord.conf", "/usr/lib/tmpfiles.d/rotord.conf",
		"/usr/share/doc/rotord", "/usr/share/man/man1/rotord.1.gz", "/usr/share/bash-completion/completions/rotord",
		"/etc/rotord", "/var/lib/rotord"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s remains after purge (%v)", p, err)
		}
	}
	left, _ := exec.Command("sh", "-c", "find /usr /lib /etc -name '*rotord*' 2>/dev/null").Output()
	if s := strings.TrimSpace(string(left)); s != "" {
		t.Errorf("left after purge:\n%s", s)
	}
}

// run runs name with args in dir and returns its stdout; a failure ends the
// test with both streams.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String()
}
