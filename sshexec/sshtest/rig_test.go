package sshtest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/sshexec/sshtest"
)

func TestRigIsolatesHosts(t *testing.T) {
	sshtest.RequireRig(t)
	machineShadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := sshtest.StartRig(ctx, sshtest.RigOptions{
		Dir:      t.TempDir(),
		Hosts:    []sshtest.HostSpec{{Variant: sshtest.Debian}, {Variant: sshtest.Debian}},
		User:     "rotuser",
		Password: "Initial-Pw-2024",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	line := func(i int) string {
		t.Helper()
		l, err := r.ShadowLine(i)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// Root's entry is the rig's, locked without RigOptions.RootPassword:
	// the machine's root hash never reaches a host.
	for i := range 2 {
		root, err := r.ShadowEntry(i, "root")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Split(root, ":"); len(f) < 2 || f[1] != "*" {
			t.Fatalf("host %d: root's shadow entry is not the rig's locked one", i)
		}
	}
	before0, before1 := line(0), line(1)
	if err := r.SetPassword(0, "Other-Pw-2025"); err != nil {
		t.Fatal(err)
	}
	if line(0) == before0 {
		t.Fatal("host 0's shadow line did not change")
	}
	if line(1) != before1 {
		t.Fatal("changing host 0 changed host 1")
	}
	after, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(machineShadow) || strings.Contains(string(after), "rotuser:") && !strings.Contains(string(machineShadow), "rotuser:") {
		t.Fatal("the machine's own /etc/shadow changed")
	}
	// A stopped host comes back on its port with the password it had.
	changed := line(0)
	port := r.Hosts()[0].Port
	if err := r.StopHost(0); err != nil {
		t.Fatal(err)
	}
	if err := r.StartHost(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if r.Hosts()[0].Port != port || line(0) != changed {
		t.Fatal("the restarted host lost its port or password")
	}
	if err := r.SetPassword(0, "Third-Pw-2026"); err != nil {
		t.Fatalf("the restarted host does not run: %v", err)
	}
}
