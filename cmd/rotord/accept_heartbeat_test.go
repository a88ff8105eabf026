package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestAcceptScheduledHeartbeat: `rotord run` with a heartbeat every 2s, on
// the real rig. A password changed on the host behind rotord's back is
// drift: one alert however many heartbeats see it, and the host is not
// offered the refused password again; fixing Secret Server's password
// brings an ok alert. A stopped host is unreachable, not drift, and its
// return is ok again. history --heartbeats lists the results.
func TestAcceptScheduledHeartbeat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hook := newWebhook(t)
	l := newLab(t, ctx, labOptions{hosts: 1, groups: map[string][]int{"web-root": {0}}, schedule: "@yearly",
		extra: "heartbeat:\n  schedule: \"@every 2s\"\nnotify:\n  webhook_url: " + hook.url + "/hook\n"})
	l.env = []string{"SSL_CERT_FILE=" + l.write("webhook-ca.pem", hook.caPEM)}
	d := l.startDaemon()
	beat := func(state string) map[string]any {
		t.Helper()
		return d.next("a heartbeat finding "+state, func(rec map[string]any) bool {
			return is(rec, "heartbeat", "secret", "web-root", "state", state)
		})
	}

	beat("ok")
	if n := hook.count(); n != 0 {
		t.Fatalf("a first ok heartbeat sent %d alerts", n)
	}

	const drifted = "Drifted-Pw-5521x"
	if err := l.rig.SetPassword(0, drifted); err != nil {
		t.Fatal(err)
	}
	refusedBefore := l.rig.RefusedLogins(0)
	beat("drift")
	if a := hook.alerts(t, 1)[0]; a.Secret != "web-root" || a.State != alertDrift || a.Error == "" {
		t.Fatalf("alert %+v; want web-root drift", a)
	}
	beat("drift")
	beat("drift")
	if n := hook.count(); n != 0 {
		t.Fatalf("drift that lasted sent %d more alerts", n)
	}
	if n := l.rig.RefusedLogins(0) - refusedBefore; n != 1 {
		t.Fatalf("the host refused %d logins over three heartbeats; want 1 (the refused password is not offered again)", n)
	}

	// The operator puts the password the host has into Secret Server.
	l.ss.SetField(l.ids["web-root"], "password", drifted)
	beat("ok")
	if a := hook.alerts(t, 1)[0]; a.Secret != "web-root" || a.State != alertHeartbeatOK {
		t.Fatalf("alert %+v; want web-root ok", a)
	}

	if err := l.rig.StopHost(0); err != nil {
		t.Fatal(err)
	}
	beat("unreachable")
	if a := hook.alerts(t, 1)[0]; a.Secret != "web-root" || a.State != alertUnreachable {
		t.Fatalf("alert %+v; want web-root unreachable (not drift)", a)
	}
	if err := l.rig.StartHost(ctx, 0); err != nil {
		t.Fatal(err)
	}
	beat("ok")
	if a := hook.alerts(t, 1)[0]; a.Secret != "web-root" || a.State != alertHeartbeatOK {
		t.Fatalf("alert %+v; want web-root ok", a)
	}
	d.stop()
	l.noSecrets(d.logged()+strings.Join(hook.bodies(), "\n"), drifted)

	out, errOut, code := l.rotord("history", "web-root", "--heartbeats")
	if code != 0 {
		t.Fatalf("history --heartbeats: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"RESULT", "web-root", "ok", "drift", "could not"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history --heartbeats lacks %q:\n%s", want, out)
		}
	}
}
