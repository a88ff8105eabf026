package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// webhook is an HTTPS alert receiver.
type webhook struct {
	url   string
	caPEM string
	srv   *httptest.Server

	mu     sync.Mutex
	status int           // answered to each alert; 0 for 204
	got    []string      // bodies received, oldest first
	read   int           // bodies handed out by alerts
	new    chan struct{} // a body arrived
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	w := &webhook{new: make(chan struct{}, 100)}
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(rw, "want a JSON POST", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		status := w.status
		if status == 0 {
			status = http.StatusNoContent
			w.got = append(w.got, string(b))
		}
		w.mu.Unlock()
		if status == http.StatusNoContent {
			w.new <- struct{}{}
		}
		rw.WriteHeader(status)
	}))
	// Handshakes a client refuses are expected; keep them out of the output.
	w.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	w.srv.StartTLS()
	t.Cleanup(w.srv.Close)
	w.url = w.srv.URL
	w.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.srv.Certificate().Raw}))
	return w
}

// count returns how many bodies arrived and were not yet handed out.
func (w *webhook) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got) - w.read
}

func (w *webhook) bodies() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

// alerts returns the next n alerts, decoded strictly, waiting up to 10s.
func (w *webhook) alerts(t *testing.T, n int) []alert {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for w.count() < n {
		select {
		case <-w.new:
		case <-deadline.C:
			t.Fatalf("%d alerts arrived, want %d", w.count(), n)
		}
	}
	w.mu.Lock()
	bodies := w.got[w.read : w.read+n]
	w.read += n
	w.mu.Unlock()
	var out []alert
	for _, b := range bodies {
		dec := json.NewDecoder(strings.NewReader(b))
		dec.DisallowUnknownFields()
		var a alert
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("alert %s: %v", b, err)
		}
		for _, k := range []string{`"secret"`, `"rotation"`, `"state"`, `"error"`, `"time"`} {
			if !strings.Contains(b, k) {
				t.Fatalf("alert %s lacks %s", b, k)
			}
		}
		out = append(out, a)
	}
	return out
}

func TestRotationAlert(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		r     rotation.Result
		state string // "" for no alert
	}{
		{rotation.Result{Secret: "a", RotationID: 1, State: rotation.StateCommitted}, ""},
		{rotation.Result{Secret: "a", Err: rotation.ErrPreflight}, ""},
		{rotation.Result{Secret: "a", RotationID: 2, State: rotation.StateRolledBack, Err: rotation.ErrRolledBack}, "rolled-back"},
		{rotation.Result{Secret: "a", RotationID: 3, State: rotation.StateNeedsReconcile, Err: rotation.ErrNeedsReconcile}, "needs-reconcile"},
		{rotation.Result{Secret: "a", Err: rotation.ErrParked}, "parked"},
	} {
		a, ok := rotationAlert(tc.r, now)
		if ok != (tc.state != "") || a.State != tc.state {
			t.Errorf("%+v: alert %v %+v, want state %q", tc.r, ok, a, tc.state)
			continue
		}
		if ok && (a.Secret != "a" || a.Rotation != tc.r.RotationID || a.Error != tc.r.Err.Error() || !a.Time.Equal(now)) {
			t.Errorf("alert %+v from %+v", a, tc.r)
		}
	}
}

func TestNotifierVerifiesTLSAndHidesURL(t *testing.T) {
	w := newWebhook(t) // its certificate is in no pool this process trusts
	n := newNotifier(NotifyConfig{WebhookURL: w.url + "/hooks/S3CRET-TOKEN"}, slog.New(slog.DiscardHandler), time.Now)
	err := n.send(context.Background(), alert{Secret: "a", State: "rolled-back", Time: time.Now()})
	if err == nil {
		t.Fatal("alert sent to a server with an untrusted certificate")
	}
	if strings.Contains(err.Error(), "S3CRET-TOKEN") || strings.Contains(err.Error(), w.url) {
		t.Fatalf("error shows the webhook URL: %v", err)
	}
	if w.count() != 0 {
		t.Fatal("the server received the alert")
	}

	// A cancelled context (the daemon stopping) still delivers; a non-2xx
	// answer is an error.
	n.client = w.srv.Client()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.send(ctx, alert{Secret: "a", State: "drift", Time: time.Now()}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := w.alerts(t, 1); got[0].State != "drift" {
		t.Fatalf("got %+v", got[0])
	}
	w.mu.Lock()
	w.status = http.StatusNotFound
	w.mu.Unlock()
	if err := n.send(context.Background(), alert{Secret: "a"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("send to a 404: %v", err)
	}

	if newNotifier(NotifyConfig{}, nil, time.Now) != nil {
		t.Fatal("a notifier without a webhook URL")
	}
	var none *notifier // sends nothing, without panicking
	none.rotations(context.Background(), rotation.Result{State: rotation.StateRolledBack})
	none.heartbeats(context.Background(), rotation.HeartbeatResult{Err: rotation.ErrPreflight})
}

func TestNotifierParked(t *testing.T) {
	got := make(chan alert, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Error(err)
		}
		got <- a
	}))
	defer srv.Close()
	n := newNotifier(NotifyConfig{WebhookURL: srv.URL}, slog.New(slog.DiscardHandler), time.Now)
	n.parked(context.Background(), "web-root", errors.New("host unreachable"))
	a := <-got
	if a.Secret != "web-root" || a.State != alertParked || !strings.Contains(a.Error, "host unreachable") {
		t.Fatalf("alert %+v", a)
	}
}
