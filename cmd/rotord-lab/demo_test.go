package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The demo runs its whole story against the in-process hosts (no root
// needed) and checks each step by logging in; `make demo` runs it against
// real sshd hosts in CI.
func TestDemoInProcess(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "rotord")
	if out, err := exec.Command("go", "build", "-o", bin, "../rotord").CombinedOutput(); err != nil {
		t.Fatalf("build rotord: %v\n%s", err, out)
	}
	var out strings.Builder
	d := &demo{rotord: bin, inProcess: true, out: &out}
	if err := d.run(context.Background()); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"[1/6] rotord check", "[4/6] a failed rotation reverts", "[6/6]", "rolled-back", "rollback of", "demo finished"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), labPassword) || strings.Contains(out.String(), ssPassword) {
		t.Error("the demo printed a password")
	}
}
