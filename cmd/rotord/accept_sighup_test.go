package main

// Acceptance tests of rotations other processes leave behind: a `rotord
// rotate` whose terminal drops (SIGHUP), and one killed outright while the
// daemon runs.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver/sstest"
)

// startRotord starts the binary with the lab's configuration and JSON debug
// logs, its stderr read as log records (like startDaemon, for any command).
func (l *lab) startRotord(args ...string) *daemon {
	l.t.Helper()
	args = append(append([]string{}, args...), "--config", l.config, "--log-format", "json", "--log-level", "debug")
	cmd := exec.Command(rotordBin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + l.dir}, l.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	d := &daemon{t: l.t, cmd: cmd, records: make(chan map[string]any, 10000), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				rec = map[string]any{"msg": sc.Text()}
			}
			d.records <- rec
		}
		_, _ = io.Copy(io.Discard, stderr)
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			d.code = ee.ExitCode() // -1 when a signal killed it
		default:
			d.code = -1
		}
		close(d.records)
		close(d.exited)
	}()
	l.t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// TestAcceptRotateSIGHUPFinishes: `rotord rotate` gets SIGHUP (its terminal
// dropped) after the host changed, while it writes Secret Server. Like
// SIGTERM, it finishes the rotation (or reverts it) and exits by itself;
// it does not die leaving the host on a password only the journal knows.
func TestAcceptRotateSIGHUPFinishes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 1, groups: map[string][]int{"web-root": {0}}, schedule: "@weekly"})

	// The vault write takes a while, so the hangup lands after the host
	// changed and before Secret Server holds the new password.
	l.ss.SetLatency(sstest.EndpointPutField, 5*time.Second)
	r := l.startRotord("rotate", "web-root")
	r.next("web-root's host changed", func(rec map[string]any) bool {
		return is(rec, "host state", "secret", "web-root", "state", string(rotation.HostChanged))
	})
	r.signal(syscall.SIGHUP)
	code := r.wait()
	l.ss.SetLatency(sstest.EndpointPutField, 0)
	if code != exitOK && code != exitInterrupted {
		t.Fatalf("rotord rotate exited %d after SIGHUP (-1: killed by it), want 0 or 130; it logged:\n%s", code, r.logged())
	}
	h := l.history("web-root")
	if len(h) != 1 || (h[0].State != string(rotation.StateCommitted) && h[0].State != string(rotation.StateRolledBack)) {
		t.Fatalf("history %+v; want one rotation, committed or rolled back", h)
	}
	// Secret Server's password is the one the host takes.
	l.requireWorks(ctx, "web-root")
	l.noSecrets(r.logged())
}

// TestAcceptDaemonRecoversWhileRunning: a `rotord rotate` is killed while
// it writes Secret Server, its host already changed. The daemon, running
// all along and not restarted, finishes that rotation once its lease is
// free (at its next sweep, every lease_ttl): Secret Server ends up holding
// the password the host takes.
func TestAcceptDaemonRecoversWhileRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 1, groups: map[string][]int{"web-root": {0}}, schedule: "@yearly",
		extra: "rotation:\n  lease_ttl: 10s\n"})
	d := l.startDaemon()
	d.next("web-root scheduled", func(rec map[string]any) bool { return is(rec, "secret scheduled", "secret", "web-root") })

	l.ss.SetLatency(sstest.EndpointPutField, time.Minute)
	r := l.startRotord("rotate", "web-root")
	r.next("web-root's host changed", func(rec map[string]any) bool {
		return is(rec, "host state", "secret", "web-root", "state", string(rotation.HostChanged))
	})
	r.signal(syscall.SIGKILL)
	if code := r.wait(); code != -1 {
		t.Fatalf("rotord rotate exited %d after SIGKILL", code)
	}
	l.ss.SetLatency(sstest.EndpointPutField, 0)
	if l.password("web-root") != accPassword {
		t.Fatal("Secret Server holds the new password already: the kill came too late")
	}

	rec := d.next("the running daemon's recovery of web-root", func(rec map[string]any) bool {
		return is(rec, "recovered rotation", "secret", "web-root")
	})
	if rec["state"] != string(rotation.StateCommitted) && rec["state"] != string(rotation.StateRolledBack) {
		t.Fatalf("recovery ended %v; rotord logged:\n%s", rec["state"], d.logged())
	}
	d.stop()
	h := l.history("web-root")
	if len(h) != 1 || !rotation.State(h[0].State).Terminal() {
		t.Fatalf("history %+v; want the one rotation finished", h)
	}
	l.requireWorks(ctx, "web-root")
	l.noSecrets(d.logged())
}
