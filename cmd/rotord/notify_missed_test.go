package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// auditLog is a journal that keeps its audit events.
type auditLog struct {
	mu     sync.Mutex
	events []rotation.Event
}

func (j *auditLog) History(context.Context, rotation.HistoryQuery) ([]rotation.Rotation, error) {
	return nil, nil
}

func (j *auditLog) Audit(_ context.Context, e rotation.Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
	return nil
}

// TestSlotMissedAlertsAndRecords: a slot the scheduler gives up (the lease
// stayed held by another holder) is posted to the webhook as "missed",
// naming the slot and the holder, and recorded in the journal's audit
// trail: not skipped silently.
func TestSlotMissedAlertsAndRecords(t *testing.T) {
	got := make(chan alert, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Error(err)
		}
		got <- a
	}))
	defer srv.Close()
	a := newApp(&strings.Builder{}, &strings.Builder{}, testEnv(nil), defaultAdapters())
	a.cfg = &Config{Notify: NotifyConfig{WebhookURL: srv.URL}}
	a.log = slog.New(slog.DiscardHandler)
	j := &auditLog{}
	due := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	held := &rotation.LeaseHeldError{Secret: "web-root", Holder: "jump01/4242/9f3c", Expires: due.Add(2 * time.Hour)}

	a.slotMissed(context.Background(), j, "web-root", due, held)
	al := recv(t, got)
	if al.Secret != "web-root" || al.State != alertMissed || !strings.Contains(al.Error, "2026-11-29T00:00:00Z") || !strings.Contains(al.Error, "jump01/4242/9f3c") {
		t.Fatalf("alert %+v; want web-root's slot missed, naming it and the holder", al)
	}
	if len(j.events) != 1 || j.events[0].Secret != "web-root" || j.events[0].Action != "missed" || !strings.Contains(j.events[0].Detail, "2026-11-29T00:00:00Z") {
		t.Fatalf("audit %+v; want one missed-slot event", j.events)
	}
}
