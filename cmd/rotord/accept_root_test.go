package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// accRootPassword is root's first password on the root lab's hosts.
const accRootPassword = "Acc-Root-Pw-5520"

// newRootLab is a lab whose one secret, "hosts-root", holds root's
// password on every host of variants: root may log in with a password on
// each host's own sshd, and each host's root entry is the rig's.
func newRootLab(t *testing.T, ctx context.Context, variants ...sshtest.Variant) *lab {
	t.Helper()
	all := make([]int, len(variants))
	for i := range all {
		all[i] = i
	}
	return newLab(t, ctx, labOptions{variants: variants, groups: map[string][]int{"hosts-root": all},
		schedule: "@weekly", rootPass: accRootPassword, asRoot: true})
}

// TestAcceptRotateRoot: `rotord rotate` changes root's own password on
// shadow-utils and BusyBox hosts (passwd asks root no current password):
// the rotation commits, what Secret Server stores logs in as root on every
// host, root's old password no longer does, each host's own root entry
// changed and the machine's did not.
func TestAcceptRotateRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newRootLab(t, ctx, sshtest.Debian, sshtest.BusyBox, sshtest.Debian)
	machine, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	var before []string
	for i := range l.rig.Hosts() {
		e, err := l.rig.ShadowEntry(i, "root")
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, e)
	}
	out, errOut, code := l.rotord("rotate", "hosts-root")
	if code != 0 {
		t.Fatalf("rotord rotate: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	l.noSecrets(out+errOut, accRootPassword)
	stored := l.password("hosts-root")
	if stored == accRootPassword {
		t.Fatal("Secret Server still holds root's first password")
	}
	rootLogsIn := func(i int, pw string) bool {
		h := l.rig.Hosts()[i]
		return l.dialer.Verify(ctx, rotation.Host{Name: h.Name, Port: h.Port}, "root", secret.New(pw)) == nil
	}
	for i := range l.rig.Hosts() {
		if !rootLogsIn(i, stored) {
			t.Errorf("host %d: the password Secret Server stores does not log in as root", i)
		}
		if rootLogsIn(i, accRootPassword) {
			t.Errorf("host %d: root's first password still logs in", i)
		}
		e, err := l.rig.ShadowEntry(i, "root")
		if err != nil {
			t.Fatal(err)
		}
		if e == before[i] {
			t.Errorf("host %d: root's shadow entry did not change", i)
		}
	}
	hist := l.history("hosts-root")
	if len(hist) != 1 || hist[0].State != string(rotation.StateCommitted) {
		t.Fatalf("history %+v; want one committed rotation", hist)
	}
	now, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	if string(now) != string(machine) {
		t.Fatal("the machine's own /etc/shadow changed")
	}
}
