package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestJournalPriorities: with stderr going to journald each log line starts
// with its sd-daemon(3) priority, so `journalctl -p err` finds the errors;
// derived loggers (With) keep it.
func TestJournalPriorities(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			a := newApp(&buf, &buf, os.Getenv, adapters{})
			a.journal, a.logLevel, a.logFormat = true, "debug", format
			if err := a.setupLog(); err != nil {
				t.Fatal(err)
			}
			log := a.log.With("secret", "web-root")
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			log.Error("e")
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			want := []string{"<7>", "<6>", "<4>", "<3>"}
			if len(lines) != len(want) {
				t.Fatalf("logged %q, want %d lines", buf.String(), len(want))
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, want[i]) || !strings.Contains(l, "web-root") {
					t.Errorf("line %d is %q, want it to start with %s", i, l, want[i])
				}
			}
		})
	}
}

// TestBinaryJournalStream: the binary prefixes priorities only when its
// stderr is the stream $JOURNAL_STREAM names (device:inode), as systemd
// sets it, not when stderr is anything else.
func TestBinaryJournalStream(t *testing.T) {
	run := func(journalStream bool) string {
		f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		ino := st.Ino
		if !journalStream {
			ino++ // another stream: stderr was redirected after systemd started us
		}
		cmd := exec.Command(rotordBin, "check", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
		cmd.Env = []string{"PATH=/usr/bin:/bin", fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, ino)}
		cmd.Stderr = f
		if err := cmd.Run(); err == nil {
			t.Fatal("rotord check with a missing configuration succeeded")
		}
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := run(true); !strings.HasPrefix(got, "<3>rotord: ") {
		t.Fatalf("stderr to journald: %q, want the error at priority <3>", got)
	}
	if got := run(false); !strings.HasPrefix(got, "rotord: ") {
		t.Fatalf("stderr elsewhere: %q, want no priority prefix", got)
	}
}
