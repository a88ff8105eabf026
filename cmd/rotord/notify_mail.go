package main

// This file sends alerts by mail through notify.smtp: the same alerts the
// webhook gets, one mail per secret and state within the dedupe window.
//
// It uses the standard library's net/smtp: it speaks STARTTLS and AUTH
// PLAIN, which is all a relay needs here, and it adds no dependency to the
// binary. The message itself is a short plain-text RFC 5322 message built
// below.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// mailTimeout bounds each alert mail: connection, TLS, AUTH and DATA.
const mailTimeout = 30 * time.Second

// alertClock is the clock of the mail dedupe window: the daemon's clock in
// tests, else the wall clock.
func (a *app) alertClock() func() time.Time {
	if a.clock != nil {
		return a.clock.Now
	}
	return time.Now
}

// mailer sends alert mails through one relay. It is safe for concurrent
// use. Its logs and errors never hold the AUTH password.
type mailer struct {
	cfg    SMTPConfig
	from   *mail.Address
	to     []*mail.Address
	now    func() time.Time
	window time.Duration

	mu   sync.Mutex
	sent map[mailKey]time.Time // last mail per secret and state, for dedupe
}

// mailKey is what dedupe counts as the same alert.
type mailKey struct{ secret, state string }

// newMailer returns the mailer of a validated notify.smtp section, or nil
// when the section is empty. now is the clock of the dedupe window.
func newMailer(cfg SMTPConfig, now func() time.Time) *mailer {
	if !cfg.Enabled() {
		return nil
	}
	m := &mailer{cfg: cfg, now: now, window: cfg.DedupeWindow.D(), sent: map[mailKey]time.Time{}}
	m.from, _ = mail.ParseAddress(cfg.From) // validated at load
	for _, t := range cfg.To {
		if a, err := mail.ParseAddress(t); err == nil {
			m.to = append(m.to, a)
		}
	}
	return m
}

// errDuplicate is returned by mailer.send for an alert already mailed
// within the dedupe window.
var errDuplicate = errors.New("same secret and state mailed within the dedupe window")

// send mails a unless the same secret and state was mailed within the
// dedupe window (then errDuplicate). A failed mail does not count: the
// next alert tries again.
func (m *mailer) send(ctx context.Context, a alert) error {
	key := mailKey{a.Secret, a.State}
	now := m.now()
	// Claim the slot before sending, so that two alerts at once for the
	// same secret and state send one mail; give it back if the mail fails.
	m.mu.Lock()
	last, seen := m.sent[key]
	if seen && now.Sub(last) < m.window {
		m.mu.Unlock()
		return errDuplicate
	}
	m.sent[key] = now
	m.mu.Unlock()
	err := m.mail(ctx, a, now)
	if err != nil {
		m.mu.Lock()
		if seen {
			m.sent[key] = last
		} else {
			delete(m.sent, key)
		}
		m.mu.Unlock()
	}
	return err
}

// mail builds and transmits the message of a.
func (m *mailer) mail(ctx context.Context, a alert, now time.Time) error {
	msg, err := m.message(a, now)
	if err != nil {
		return err
	}
	return m.transmit(ctx, msg)
}

// message returns the RFC 5322 message of a: a subject naming the secret
// and state, and a plain-text body with the webhook's fields.
func (m *mailer) message(a alert, now time.Time) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("message id: %w", err)
	}
	domain := "rotord.invalid"
	if at := strings.LastIndexByte(m.from.Address, '@'); at >= 0 {
		domain = m.from.Address[at+1:]
	}
	to := make([]string, len(m.to))
	for i, t := range m.to {
		to[i] = t.String()
	}
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	header("From", m.from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", "rotord: "+headerLine(a.Secret)+" "+headerLine(a.State)))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "8bit")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "secret:   %s\r\n", headerLine(a.Secret))
	fmt.Fprintf(&b, "state:    %s\r\n", headerLine(a.State))
	if a.Rotation != 0 {
		fmt.Fprintf(&b, "rotation: %d\r\n", a.Rotation)
	}
	fmt.Fprintf(&b, "time:     %s\r\n", a.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "error:    %s\r\n", strings.ReplaceAll(strings.ReplaceAll(a.Error, "\r", ""), "\n", "\r\n          "))
	msg := b.Bytes()
	// The alert text holds no password by construction; the only password
	// this process gives the mailer is its own AUTH password: never send it.
	if pw := m.cfg.Password().Reveal(); pw != "" && bytes.Contains(msg, []byte(pw)) {
		return nil, errors.New("message refused: it would carry the relay's password")
	}
	return msg, nil
}

// headerLine keeps a header value on one line.
func headerLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// transmit hands msg to the relay: TLS first (implicit, or STARTTLS, which
// the relay must offer), certificates verified, then AUTH if configured.
// It runs even when ctx is cancelled (the daemon stopping still reports
// what it saw), within mailTimeout.
func (m *mailer) transmit(ctx context.Context, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mailTimeout)
	defer cancel()
	addr := net.JoinHostPort(m.cfg.Host, strconv.Itoa(m.cfg.Port))
	tc := &tls.Config{ServerName: m.cfg.Host, RootCAs: m.cfg.roots, MinVersion: tls.VersionTLS12}
	var conn net.Conn
	var err error
	if m.cfg.TLS == "implicit" {
		conn, err = (&tls.Dialer{Config: tc}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("mail alert: connect: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, m.cfg.Host)
	if err != nil {
		return fmt.Errorf("mail alert: greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(helloName()); err != nil {
		return fmt.Errorf("mail alert: hello: %w", err)
	}
	if m.cfg.TLS != "implicit" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("mail alert: the relay offers no STARTTLS; refusing to send in plain text")
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("mail alert: starttls: %w", err)
		}
	}
	if m.cfg.Username != "" {
		// PlainAuth sends only over TLS, which every path above has.
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password().Reveal(), m.cfg.Host)); err != nil {
			return fmt.Errorf("mail alert: auth as %s: %w", m.cfg.Username, err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("mail alert: MAIL FROM: %w", err)
	}
	for _, t := range m.to {
		if err := c.Rcpt(t.Address); err != nil {
			return fmt.Errorf("mail alert: RCPT TO %s: %w", t.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("mail alert: DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("mail alert: DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("mail alert: DATA: %w", err)
	}
	_ = c.Quit()
	return nil
}

// helloName is the name rotord gives in EHLO: this host's, when it is one
// a relay accepts.
func helloName() string {
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
		return h
	}
	return "localhost"
}

// deliverMail mails a and logs the outcome; a failure is logged, never
// returned.
func (m *mailer) deliver(ctx context.Context, log *slog.Logger, a alert) {
	switch err := m.send(ctx, a); {
	case errors.Is(err, errDuplicate):
		log.Info("alert mail suppressed", "secret", a.Secret, "state", a.State, "reason", err)
	case err != nil:
		log.Error("alert not delivered", "via", "mail", "secret", a.Secret, "rotation", a.Rotation, "state", a.State, "err", err)
	default:
		log.Info("alert delivered", "via", "mail", "secret", a.Secret, "rotation", a.Rotation, "state", a.State)
	}
}
