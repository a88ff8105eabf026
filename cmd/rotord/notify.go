package main

// This file sends alerts to notify.webhook_url: a rotation that ended
// rolled back or needs-reconcile, a secret parked, and heartbeat drift.

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
	alertDrift  = "drift"  // heartbeat: Secret Server's password no longer logs in somewhere
	alertParked = "parked" // no rotation until a reconcile, or until the next slot after repeated transient failures
	alertMissed = "missed" // a scheduled slot given up: the secret's lease stayed held by another holder
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

// notifier posts alerts to a webhook. A nil *notifier sends nothing.
// Neither its logs nor its errors show the webhook URL, which may hold a
// token.
type notifier struct {
	url    string
	client *http.Client
	log    *slog.Logger
}

// newNotifier returns the notifier of cfg, or nil when no webhook is set.
// The webhook's certificate is verified against the system's CAs
// ($SSL_CERT_FILE and $SSL_CERT_DIR select others); $HTTPS_PROXY is
// honoured.
func newNotifier(cfg NotifyConfig, log *slog.Logger) *notifier {
	if cfg.WebhookURL == "" {
		return nil
	}
	return &notifier{
		url: cfg.WebhookURL,
		client: &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			Timeout:   webhookTimeout,
			// A redirect could lead the alert somewhere unverified.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log: log,
	}
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
		if a, ok := rotationAlert(r, time.Now()); ok {
			n.deliver(ctx, a)
		}
	}
}

// parked alerts that the scheduler parked a secret after its transient
// retries were spent.
func (n *notifier) parked(ctx context.Context, secretName string, cause error) {
	if n == nil {
		return
	}
	n.deliver(ctx, alert{Secret: secretName, State: alertParked,
		Error: "retries spent; parked until the next scheduled slot: " + cause.Error(), Time: time.Now().UTC()})
}

// missed alerts that the scheduler gave a slot up: the secret's lease
// stayed held by another holder for the whole retry window.
func (n *notifier) missed(ctx context.Context, secretName string, due time.Time, cause error) {
	if n == nil {
		return
	}
	n.deliver(ctx, alert{Secret: secretName, State: alertMissed,
		Error: "scheduled slot due " + due.UTC().Format(time.RFC3339) + " missed: " + cause.Error(), Time: time.Now().UTC()})
}

// heartbeats alerts on every heartbeat that found drift.
func (n *notifier) heartbeats(ctx context.Context, hs ...rotation.HeartbeatResult) {
	if n == nil {
		return
	}
	for _, h := range hs {
		if h.Err != nil {
			n.deliver(ctx, alert{Secret: h.Secret, State: alertDrift, Error: h.Err.Error(), Time: time.Now().UTC()})
		}
	}
}

func (n *notifier) deliver(ctx context.Context, a alert) {
	if err := n.send(ctx, a); err != nil {
		n.log.Error("alert not delivered", "secret", a.Secret, "rotation", a.Rotation, "state", a.State, "err", err)
		return
	}
	n.log.Info("alert delivered", "secret", a.Secret, "rotation", a.Rotation, "state", a.State)
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
