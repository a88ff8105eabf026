package main

// This file sends alerts to notify.webhook_url and, through notify.smtp
// (notify_mail.go), by mail: a rotation that ended
// rolled back or needs-reconcile, a secret parked, a scheduled rotation
// that needs an operator, and what a heartbeat found (drift, unreachable).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/rotord/rotord/rotation"
)

// webhookTimeout bounds each alert POST, connection and TLS included.
const webhookTimeout = 10 * time.Second

// Alert states that are not rotation states.
const (
	alertDrift       = "drift"       // heartbeat: a host refuses the password Secret Server holds
	alertUnreachable = "unreachable" // heartbeat: a host (or Secret Server) could not be reached to check it
	alertParked      = "parked"      // no rotation until a reconcile, or until the next slot after repeated transient failures
	alertMissed      = "missed"
	alertHeartbeatOK = "ok" // a scheduled slot given up: the secret's lease stayed held by another holder
	// alertNeedsOperator: a failure no retry mends (a refused password, an
	// untrusted host key, a bad hosts field, an ambiguous name...): a
	// scheduled rotation waits for its next slot unless someone acts; a
	// heartbeat could not check a host for such a reason.
	alertNeedsOperator = "needs-operator"
)

// alert is the JSON body POSTed to the webhook. It never holds a password:
// Error is the engine's error text, which holds none.
type alert struct {
	Secret   string    `json:"secret"`
	Rotation int64     `json:"rotation"`
	State    string    `json:"state"`
	Error    string    `json:"error"`
	Time     time.Time `json:"time"`
}

// notifier posts alerts to a webhook and mails them; each is optional and
// independent of the other. A nil *notifier sends nothing. Neither its
// logs nor its errors show the webhook URL, which may hold a token.
type notifier struct {
	url    string // "" when no webhook is configured
	client *http.Client
	mail   *mailer // nil when no mail is configured
	log    *slog.Logger
	now    func() time.Time
}

// newNotifier returns the notifier of cfg, or nil when neither a webhook
// nor mail is configured. The webhook's certificate is verified against
// the system's CAs ($SSL_CERT_FILE and $SSL_CERT_DIR select others);
// $HTTPS_PROXY is honoured. now stamps the alerts and is the clock of the
// mail dedupe window.
func newNotifier(cfg NotifyConfig, log *slog.Logger, now func() time.Time) *notifier {
	n := &notifier{url: cfg.WebhookURL, mail: newMailer(cfg.SMTP, now), log: log, now: now}
	if n.url == "" && n.mail == nil {
		return nil
	}
	n.client = &http.Client{
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		Timeout:   webhookTimeout,
		// A redirect could lead the alert somewhere unverified.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return n
}

// rotationAlert returns the alert a rotation result calls for, if any.
func rotationAlert(r rotation.Result, now time.Time) (alert, bool) {
	a := alert{Secret: r.Secret, Rotation: r.RotationID, State: string(r.State), Error: errText(r.Err), Time: now.UTC()}
	switch {
	case r.State == rotation.StateRolledBack, r.State == rotation.StateNeedsReconcile:
		return a, true
	case errors.Is(r.Err, rotation.ErrParked):
		a.State = alertParked
		return a, true
	}
	return alert{}, false
}

// rotations alerts on every result that ended rolled back, needs-reconcile
// or parked. Delivery failures are logged, never returned: an alert must
// not change a command's outcome.
func (n *notifier) rotations(ctx context.Context, rs ...rotation.Result) {
	if n == nil {
		return
	}
	for _, r := range rs {
		if a, ok := rotationAlert(r, n.now()); ok {
			n.deliver(ctx, a)
		}
	}
}

// needsOperator reports whether r is a failure that nothing journaled and
// that no retry mends: a host refused the current password, a host key is
// not trusted, the hosts field is bad, the name is unknown or ambiguous,
// access was denied, or Secret Server refused rotord's own credentials.
// The scheduler does not retry it and the secret waits for its next slot,
// so someone must act. Transient failures (retried, then parked) and other
// errors are not: they have their own handling.
func needsOperator(r rotation.Result) bool {
	if r.Err == nil || r.State != "" {
		return false // journaled: rotationAlert covers rolled-back and needs-reconcile
	}
	if rotation.Transient(r.Err) || errors.Is(r.Err, context.Canceled) {
		return false
	}
	for _, e := range []error{rotation.ErrAuthFailed, rotation.ErrHostKey, rotation.ErrBadHosts,
		rotation.ErrSecretNotFound, rotation.ErrAmbiguousName, rotation.ErrAccessDenied} {
		if errors.Is(r.Err, e) {
			return true
		}
	}
	return false
}

// operatorNeeded alerts when a scheduled rotation failed in a way that
// needs an operator (needsOperator).
func (n *notifier) operatorNeeded(ctx context.Context, r rotation.Result) {
	if n == nil || !needsOperator(r) {
		return
	}
	n.deliver(ctx, alert{Secret: r.Secret, State: alertNeedsOperator,
		Error: "not retried; the secret waits for its next scheduled slot: " + r.Err.Error(), Time: n.now().UTC()})
}

// parked alerts that the scheduler parked a secret after its transient
// retries were spent.
func (n *notifier) parked(ctx context.Context, secretName string, cause error) {
	if n == nil {
		return
	}
	n.deliver(ctx, alert{Secret: secretName, State: alertParked,
		Error: "retries spent; parked until the next scheduled slot: " + cause.Error(), Time: n.now().UTC()})
}

// missed alerts that the scheduler gave a slot up: the secret's lease
// stayed held by another holder for the whole retry window.
func (n *notifier) missed(ctx context.Context, secretName string, due time.Time, cause error) {
	if n == nil {
		return
	}
	n.deliver(ctx, alert{Secret: secretName, State: alertMissed,
		Error: "scheduled slot due " + due.UTC().Format(time.RFC3339) + " missed: " + cause.Error(), Time: n.now().UTC()})
}

// heartbeats alerts on every heartbeat that found a problem: one alert per
// kind of problem (drift, unreachable, needs-operator) of each secret.
func (n *notifier) heartbeats(ctx context.Context, hs ...rotation.HeartbeatResult) {
	if n == nil {
		return
	}
	now := n.now().UTC()
	for _, h := range hs {
		for _, a := range heartbeatAlerts(h, now) {
			n.deliver(ctx, a)
		}
	}
}

// heartbeatRecovered alerts that a secret's scheduled heartbeat found
// every host taking Secret Server's password again, after it found
// before (drift, unreachable or failed).
func (n *notifier) heartbeatRecovered(ctx context.Context, secretName string, before rotation.HeartbeatState) {
	if n == nil {
		return
	}
	n.deliver(ctx, alert{Secret: secretName, State: alertHeartbeatOK,
		Error: "heartbeat ok again after " + string(before), Time: time.Now().UTC()})
}

// heartbeatAlerts returns the alerts a heartbeat result calls for: drift
// when a host refused the password, unreachable when a host or Secret
// Server could not be reached, needs-operator for anything else.
func heartbeatAlerts(h rotation.HeartbeatResult, now time.Time) []alert {
	if h.Err == nil {
		return nil
	}
	parts := []error{h.Err}
	if j, ok := h.Err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	var out []alert
	for _, err := range parts {
		out = append(out, alert{Secret: h.Secret, State: heartbeatState(err), Error: err.Error(), Time: now})
	}
	return out
}

// heartbeatState names what a heartbeat's error means for the alert.
func heartbeatState(err error) string {
	if st := (rotation.HeartbeatResult{Err: err}).State(); st != rotation.HeartbeatFailed {
		return string(st) // drift or unreachable: the alert states of the same names
	}
	return alertNeedsOperator
}

func (n *notifier) deliver(ctx context.Context, a alert) {
	if n.mail != nil {
		n.mail.deliver(ctx, n.log, a)
	}
	if n.url == "" {
		return
	}
	if err := n.send(ctx, a); err != nil {
		n.log.Error("alert not delivered", "via", "webhook", "secret", a.Secret, "rotation", a.Rotation, "state", a.State, "err", err)
		return
	}
	n.log.Info("alert delivered", "via", "webhook", "secret", a.Secret, "rotation", a.Rotation, "state", a.State)
}

// send POSTs a to the webhook. It runs even when ctx is cancelled (the
// daemon stopping still reports what it saw), within webhookTimeout.
func (n *notifier) send(ctx context.Context, a alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("post alert: bad webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rotord/"+version)
	resp, err := n.client.Do(req)
	if err != nil {
		// The URL itself may hold a token (many webhooks carry one in
		// their path): keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post alert: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post alert: webhook answered %s", resp.Status)
	}
	return nil
}
