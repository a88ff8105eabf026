package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotord/rotord/sshexec/sshtest"
)

// buildLab builds rotord and rotord-lab side by side in a directory any
// user may read, and returns that directory.
func buildLab(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rotord-lab-bin-") // t.TempDir's parent is open to its owner only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"../rotord", "."} {
		if out, err := exec.Command("go", "build", "-o", dir+"/", pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return dir
}

// TestDemoRootWithoutBusyBox: as root on a machine with sshd but no
// BusyBox, the demo runs green on real hosts for what the machine has
// (shadow-utils passwd) and in-process stand-ins for the BusyBox hosts,
// and says so on screen.
func TestDemoRootWithoutBusyBox(t *testing.T) {
	sshtest.RequireRig(t, sshtest.Debian)
	t.Setenv("ROTORD_BUSYBOX", filepath.Join(t.TempDir(), "no-busybox-here"))
	bin := filepath.Join(buildLab(t), "rotord")
	var out strings.Builder
	d := &demo{rotord: bin, out: &out}
	if err := d.run(context.Background()); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"real OpenSSH sshd hosts on loopback", "(debian, ",
		"2 in-process SSH hosts with an emulated passwd standing in for the busybox ones",
		"no BusyBox with the passwd applet at " + os.Getenv("ROTORD_BUSYBOX"),
		// The real hosts include one refusing root logins: root is
		// rotated through su as the last step.
		fmt.Sprintf("[%d/%d]", baseSteps+1, baseSteps+1), "root never logged in over SSH", "demo finished",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, labPassword) || strings.Contains(text, ssPassword) {
		t.Error("the demo printed a password")
	}
}

// TestDemoAsUnprivilegedUser: a user without root runs the demo binary
// (as `make demo` does) green, on in-process hosts, said on screen. As
// root the test drops to nobody with setpriv.
func TestDemoAsUnprivilegedUser(t *testing.T) {
	dir := buildLab(t)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env",
			filepath.Join(dir, "rotord-lab"), "demo")
	} else {
		cmd = exec.Command(filepath.Join(dir, "rotord-lab"), "demo")
	}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rotord-lab demo as an unprivileged user: %v\n%s", err, out)
	}
	for _, want := range []string{"real sshd hosts cannot run here", "in-process SSH hosts", "[6/6]", "demo finished"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
