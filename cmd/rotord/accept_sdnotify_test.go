package main

// Acceptance test of the systemd notification protocol (Type=notify,
// WatchdogSec=): the binary talks to a real datagram socket the test
// listens on, as systemd's would.

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver/sstest"
)

// TestAcceptSystemdNotify: `rotord run` under Type=notify says READY=1 only
// once start-up recovery has finished the rotation a killed `rotord rotate`
// left behind; it pings the watchdog (WATCHDOG=1) when WATCHDOG_USEC is
// set; a SIGHUP reload is framed by RELOADING=1 and READY=1; SIGTERM says
// STOPPING=1.
func TestAcceptSystemdNotify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 1, groups: map[string][]int{"web-root": {0}}, schedule: "@yearly"})

	// A rotation left unfinished: the host changed, Secret Server not yet.
	l.ss.SetLatency(sstest.EndpointPutField, time.Minute)
	r := l.startRotord("rotate", "web-root")
	r.next("web-root's host changed", func(rec map[string]any) bool {
		return is(rec, "host state", "secret", "web-root", "state", string(rotation.HostChanged))
	})
	r.signal(syscall.SIGKILL)
	r.wait()
	l.ss.SetLatency(sstest.EndpointPutField, 0)

	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	l.env = append(l.env, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000") // WatchdogSec=200ms: a ping every 100ms
	d := l.startDaemon()

	pings := 0
	// await returns the next message that holds state, counting the
	// watchdog pings on the way.
	await := func(state string) string {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, "WATCHDOG=1") {
					pings++
				}
				if strings.Contains(m, state) {
					return m
				}
				if state != "WATCHDOG=1" && !strings.Contains(m, "WATCHDOG=1") {
					t.Fatalf("got %q while waiting for %s", m, state)
				}
			case <-deadline:
				t.Fatalf("no %s within a minute; rotord logged:\n%s", state, d.logged())
			}
		}
	}

	await("READY=1")
	// READY came after recovery: the rotation is finished in the journal.
	h := l.history("web-root")
	if len(h) != 1 || !rotation.State(h[0].State).Terminal() {
		t.Fatalf("at READY=1 the history is %+v; want the unfinished rotation recovered first", h)
	}
	for pings < 3 {
		await("WATCHDOG=1")
	}

	d.signal(syscall.SIGHUP)
	await("RELOADING=1")
	await("READY=1")

	d.signal(syscall.SIGTERM)
	await("STOPPING=1")
	if code := d.wait(); code != 0 {
		t.Fatalf("rotord run exited %d after SIGTERM; it logged:\n%s", code, d.logged())
	}
	l.requireWorks(ctx, "web-root")
}
