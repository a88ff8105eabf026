package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAcceptScheduledHeartbeat: `rotord run` with a heartbeat every 2s, on
// the real rig. A password changed on the host behind rotord's back is
// drift: one alert however many heartbeats see it, and the host is not
// offered the refused password again; fixing Secret Server's password
// brings an ok alert. A stopped host is unreachable, not drift, and its
// return is ok again. Each alert also goes by mail (STARTTLS, AUTH) and the
// heartbeat gauge follows the states. history --heartbeats lists the results.
func TestAcceptScheduledHeartbeat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hook := newWebhook(t)
	mail := newMailServer(t, false)
	dir := t.TempDir()
	mailPw, mailCA := filepath.Join(dir, "smtp-password"), filepath.Join(dir, "mail-ca.pem")
	if err := os.WriteFile(mailPw, []byte(mail.pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mailCA, []byte(mail.caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLab(t, ctx, labOptions{hosts: 1, groups: map[string][]int{"web-root": {0}}, schedule: "@yearly",
		metrics: "127.0.0.1:0",
		extra: "heartbeat:\n  schedule: \"@every 2s\"\nnotify:\n  webhook_url: " + hook.url + "/hook\n" +
			mail.smtpSection(false, mailCA, mailPw)})
	l.env = []string{"SSL_CERT_FILE=" + l.write("webhook-ca.pem", hook.caPEM)}
	d := l.startDaemon()
	served := d.next("the metrics endpoint", func(rec map[string]any) bool { return is(rec, "serving metrics") })
	metricsURL := "http://" + served["addr"].(string) + "/metrics"
	gauge := func(state string) string {
		t.Helper()
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, `rotord_heartbeat_state{secret="web-root",state="`+state+`"} `) {
				return strings.TrimSpace(line[strings.LastIndex(line, " "):])
			}
		}
		t.Fatalf("no heartbeat gauge for state %s in:\n%s", state, b)
		return ""
	}
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
	// The mail went out before the webhook's POST.
	if got := mail.mails(); len(got) != 1 {
		t.Fatalf("%d mails after drift, want 1", len(got))
	} else if msg, _ := parseMail(t, got[0].data); msg.Header.Get("Subject") != "rotord: web-root drift" {
		t.Fatalf("drift mail subject %q", msg.Header.Get("Subject"))
	}
	if g := gauge("drift"); g != "1" {
		t.Fatalf("rotord_heartbeat_state{state=drift} = %s, want 1", g)
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
	if u, dr := gauge("unreachable"), gauge("drift"); u != "1" || dr != "0" {
		t.Fatalf("heartbeat gauges unreachable=%s drift=%s, want 1 and 0", u, dr)
	}
	if err := l.rig.StartHost(ctx, 0); err != nil {
		t.Fatal(err)
	}
	beat("ok")
	if a := hook.alerts(t, 1)[0]; a.Secret != "web-root" || a.State != alertHeartbeatOK {
		t.Fatalf("alert %+v; want web-root ok", a)
	}
	if g := gauge("ok"); g != "1" {
		t.Fatalf("rotord_heartbeat_state{state=ok} = %s after recovery, want 1", g)
	}
	d.stop()
	var mails []string
	for _, m := range mail.mails() {
		mails = append(mails, string(m.data))
	}
	l.noSecrets(d.logged()+strings.Join(hook.bodies(), "\n")+strings.Join(mails, "\n"), drifted)

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
