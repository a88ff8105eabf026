package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestBuildFrom(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-11-30T10:00:00Z"}}
	dirty := append([]debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}, vcs...)
	for _, c := range []struct {
		name               string
		commit, date       string
		settings           []debug.BuildSetting
		wantCommit, wantAt string
	}{
		{"Ldflags", "def456", "2026-12-01T00:00:00Z", vcs, "def456", "2026-12-01T00:00:00Z"},
		{"VCSStamp", "", "", vcs, "abc123", "2026-11-30T10:00:00Z"},
		{"VCSStampDirty", "", "", dirty, "abc123-dirty", "2026-11-30T10:00:00Z"},
		{"Nothing", "", "", nil, "unknown", "unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := buildFrom(c.commit, c.date, c.settings)
			if b.commit != c.wantCommit || b.date != c.wantAt {
				t.Fatalf("got %+v, want commit %q date %q", b, c.wantCommit, c.wantAt)
			}
		})
	}
}

// TestBinaryVersionLdflags: a binary built as the Makefile builds it
// reports the version, commit and date it was given, and the Go version.
func TestBinaryVersionLdflags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "rotord")
	out, err := exec.Command("go", "build", "-ldflags",
		"-X main.version=v1.2.3 -X main.commit=0123abcd -X main.date=2026-11-30T12:00:00Z", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	text, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "rotord v1.2.3 (" + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\ncommit: 0123abcd\nbuilt:  2026-11-30T12:00:00Z\n"
	if string(text) != want {
		t.Fatalf("rotord version printed %q, want %q", text, want)
	}
	flag, err := exec.Command(bin, "--version").Output()
	if err != nil || string(flag) != want {
		t.Fatalf("rotord --version printed %q (%v), want %q", flag, err, want)
	}
	js, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	if got["version"] != "v1.2.3" || got["commit"] != "0123abcd" || got["date"] != "2026-11-30T12:00:00Z" || got["go"] != runtime.Version() {
		t.Fatalf("rotord version --json: %s", js)
	}
}
