package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver/sstest"
)

// testClock is a settable clock for the dedupe window.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// mailNotifier loads a configuration whose notify section is notify (with
// {{dir}} expanded; the dir holds smtp-password, mode 0600, and
// mail-ca.pem) and returns its notifier on clock, logging to the returned
// buffer.
func mailNotifier(t *testing.T, m *mailServer, notify func(dir string) string, clock *testClock) (*notifier, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "smtp-password"), []byte(m.pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mail-ca.pem"), []byte(m.caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	path, _ := writeConfig(t, minimal+"notify:\n"+notify(dir))
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	n := newNotifier(c.Notify, slog.New(slog.NewTextHandler(&logs, nil)), clock.Now)
	if n == nil || n.mail == nil {
		t.Fatal("no mailer for a notify.smtp section")
	}
	return n, &logs
}

// TestMailAlertSTARTTLSAuth: an alert goes by mail over STARTTLS with AUTH
// PLAIN to every recipient, as an RFC 5322 message naming the secret and
// state and holding no password; the same secret and state again within
// the dedupe window sends nothing, another state does, and so does the same
// state once the window has passed.
func TestMailAlertSTARTTLSAuth(t *testing.T) {
	m := newMailServer(t, false)
	clock := &testClock{now: time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)}
	n, logs := mailNotifier(t, m, func(dir string) string {
		return m.smtpSection(false, dir+"/mail-ca.pem", dir+"/smtp-password")
	}, clock)
	ctx := context.Background()
	failure := rotation.Result{Secret: "prod-web-root", RotationID: 41, State: rotation.StateNeedsReconcile,
		Err: errors.New("host web02:22: unreachable\nsecond line")}
	n.rotations(ctx, failure)

	got := m.mails()
	if len(got) != 1 {
		t.Fatalf("%d mails, want 1; log:\n%s", len(got), logs)
	}
	r := got[0]
	if r.user != m.user || !r.tls || r.from != "rotord@example.com" ||
		strings.Join(r.to, ",") != "ops@example.com,oncall@example.net" {
		t.Fatalf("envelope %+v: want AUTH as %s over TLS, from rotord@example.com to both recipients", r, m.user)
	}
	msg, body := parseMail(t, r.data)
	if s := msg.Header.Get("Subject"); s != "rotord: prod-web-root needs-reconcile" {
		t.Errorf("Subject %q", s)
	}
	for _, want := range []string{"secret:   prod-web-root\r\n", "state:    needs-reconcile\r\n", "rotation: 41\r\n",
		"error:    host web02:22: unreachable\r\n          second line\r\n", "time:     2026-11-30T03:00:00Z"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(r.data, m.pass) || strings.Contains(logs.String(), m.pass) {
		t.Fatalf("the relay's password is in the mail or the log")
	}

	// The same secret and state within the window: no mail.
	clock.advance(59 * time.Minute)
	n.rotations(ctx, failure)
	if k := len(m.mails()); k != 1 {
		t.Fatalf("%d mails after a duplicate alert within the window, want 1", k)
	}
	if !strings.Contains(logs.String(), "alert mail suppressed") {
		t.Errorf("the suppressed mail is not logged:\n%s", logs)
	}
	// Another state of the same secret: a mail.
	n.heartbeats(ctx, rotation.HeartbeatResult{Secret: "prod-web-root", Err: rotation.ErrDrift})
	got = m.mails()
	if len(got) != 2 {
		t.Fatalf("%d mails after a drift alert, want 2", len(got))
	}
	if msg, _ := parseMail(t, got[1].data); msg.Header.Get("Subject") != "rotord: prod-web-root drift" {
		t.Errorf("Subject %q", msg.Header.Get("Subject"))
	}
	// The window passed: the first alert mails again.
	clock.advance(time.Minute)
	n.rotations(ctx, failure)
	if k := len(m.mails()); k != 3 {
		t.Fatalf("%d mails once the window passed, want 3", k)
	}
}

// TestMailAlertFailedMailDoesNotCount: a mail the relay refused is logged
// as not delivered and does not open the dedupe window: the next alert of
// the same secret and state is mailed.
func TestMailAlertFailedMailDoesNotCount(t *testing.T) {
	m := newMailServer(t, false)
	n, logs := mailNotifier(t, m, func(dir string) string {
		return m.smtpSection(false, dir+"/mail-ca.pem", dir+"/smtp-password")
	}, &testClock{now: time.Now()})
	drift := rotation.HeartbeatResult{Secret: "prod-web-root", Err: rotation.ErrDrift}
	m.setReject(true)
	n.heartbeats(context.Background(), drift)
	if !strings.Contains(logs.String(), `msg="alert not delivered" via=mail`) || !strings.Contains(logs.String(), "451") {
		t.Fatalf("a refused mail is not logged as not delivered:\n%s", logs)
	}
	m.setReject(false)
	n.heartbeats(context.Background(), drift)
	if got := m.mails(); len(got) != 1 {
		t.Fatalf("%d mails after a refused one and a retry, want 1; log:\n%s", len(got), logs)
	}
}

// TestMailAlertImplicitTLS: tls: implicit speaks TLS from the first byte.
func TestMailAlertImplicitTLS(t *testing.T) {
	m := newMailServer(t, true)
	n, logs := mailNotifier(t, m, func(dir string) string {
		return m.smtpSection(true, dir+"/mail-ca.pem", dir+"/smtp-password")
	}, &testClock{now: time.Now()})
	n.parked(context.Background(), "prod-db-root", errors.New("host db01: connection refused"))
	got := m.mails()
	if len(got) != 1 || !got[0].tls || got[0].user != m.user {
		t.Fatalf("mails %+v; want one over TLS as %s; log:\n%s", got, m.user, logs)
	}
	msg, body := parseMail(t, got[0].data)
	if msg.Header.Get("Subject") != "rotord: prod-db-root parked" || !strings.Contains(body, "connection refused") {
		t.Fatalf("Subject %q, body:\n%s", msg.Header.Get("Subject"), body)
	}
}

// TestMailAlertUntrustedCertificate: a relay whose certificate no trusted
// CA signed gets no mail (and no password); the failure is logged as an
// alert not delivered, and the webhook configured beside it still gets
// the alert.
func TestMailAlertUntrustedCertificate(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		m := newMailServer(t, implicit)
		hook := newWebhook(t)
		n, logs := mailNotifier(t, m, func(dir string) string {
			return "  webhook_url: " + hook.url + "\n" + m.smtpSection(implicit, "", dir+"/smtp-password")
		}, &testClock{now: time.Now()})
		n.client = hook.srv.Client()
		n.rotations(context.Background(), rotation.Result{Secret: "prod-web-root", RotationID: 3,
			State: rotation.StateRolledBack, Err: rotation.ErrRolledBack})
		if got := m.mails(); len(got) != 0 {
			t.Fatalf("implicit=%v: a relay with an untrusted certificate got %d mails", implicit, len(got))
		}
		if a := hook.alerts(t, 1); a[0].State != "rolled-back" {
			t.Errorf("webhook alert %+v", a[0])
		}
		out := logs.String()
		if !strings.Contains(out, `msg="alert not delivered" via=mail`) || !strings.Contains(out, "certificate") {
			t.Errorf("implicit=%v: log does not say the mail failed on the certificate:\n%s", implicit, out)
		}
		if strings.Contains(out, m.pass) {
			t.Fatal("the log holds the relay's password")
		}
	}
}

// TestWallMailAlerts: through the binary, a rotation that rolls back (Secret
// Server refused the new password) and a heartbeat that finds drift each
// send one mail over STARTTLS with AUTH, naming the secret and state and
// holding no password.
func TestWallMailAlerts(t *testing.T) {
	m := newMailServer(t, false)
	web, drifted := sshHost(t, accPassword), sshHost(t, "Drifted-Pw-5521x")
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "smtp-password"), []byte(m.pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "mail-ca.pem"), []byte(m.caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newWallLab(t, []wallSecret{
		{name: "prod-web-root", hosts: []string{web.Addr()}},
		{name: "drifted-root", hosts: []string{drifted.Addr()}},
	}, web.KnownHostsLine()+"\n"+drifted.KnownHostsLine()+"\n",
		"notify:\n"+m.smtpSection(false, filepath.Join(creds, "mail-ca.pem"), filepath.Join(creds, "smtp-password")))

	l.ss.FailNext(sstest.EndpointPutField, 1000, 500, `{"errorCode":"API_InternalError","message":"The database is unavailable."}`)
	out, errOut, code := l.rotord("rotate", "prod-web-root")
	l.ss.FailNext(sstest.EndpointPutField, 0, 0, "")
	if code != exitFailed {
		t.Fatalf("failing rotate: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if web.Password() != accPassword {
		t.Fatal("the host was not reverted to the password Secret Server holds")
	}
	got := m.mails()
	if len(got) != 1 {
		t.Fatalf("%d mails after a rolled-back rotation, want 1; stderr:\n%s", len(got), errOut)
	}
	msg, body := parseMail(t, got[0].data)
	hist := l.history("prod-web-root")
	if s := msg.Header.Get("Subject"); s != "rotord: prod-web-root rolled-back" || !got[0].tls || got[0].user != m.user ||
		!strings.Contains(body, "secret:   prod-web-root\r\n") || !strings.Contains(body, "state:    rolled-back\r\n") ||
		!strings.Contains(body, "rotation: "+strconv.FormatInt(hist[0].ID, 10)+"\r\n") {
		t.Fatalf("mail %+v, Subject %q, body:\n%s", got[0], s, body)
	}

	out, errOut, code = l.rotord("heartbeat", "drifted-root")
	if code != exitFailed {
		t.Fatalf("heartbeat: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	got = m.mails()
	if len(got) != 2 {
		t.Fatalf("%d mails after a heartbeat drift, want 2; stderr:\n%s", len(got), errOut)
	}
	msg, body = parseMail(t, got[1].data)
	if s := msg.Header.Get("Subject"); s != "rotord: drifted-root drift" || !strings.Contains(body, "state:    drift\r\n") ||
		!strings.Contains(body, drifted.Addr()) {
		t.Fatalf("Subject %q, body:\n%s", s, body)
	}
	for _, r := range got {
		l.noSecrets(r.data, m.pass, "Drifted-Pw-5521x")
	}
}
