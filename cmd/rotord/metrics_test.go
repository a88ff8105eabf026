package main

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

func TestMetrics(t *testing.T) {
	due := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	m := newMetrics(func(name string) (time.Time, bool) { return due, name == "web" })
	m.setSecrets([]rotation.SecretSpec{{Name: "web"}, {Name: "db"}})
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	m.observe(rotation.Result{Secret: "web", State: rotation.StateCommitted}, now)
	m.observe(rotation.Result{Secret: "db", State: rotation.StateRolledBack, Err: errors.New("host down")}, now)
	m.observe(rotation.Result{Secret: "db", Err: errors.New("ambiguous")}, now)
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`rotord_rotations_total{secret="web",state="committed"} 1`,
		`rotord_rotations_total{secret="db",state="rolled-back"} 1`,
		`rotord_rotations_total{secret="db",state="failed"} 1`,
		`rotord_last_success_timestamp_seconds{secret="web"} 1.7953416e+09`,
		`rotord_next_due_timestamp_seconds{secret="web"} 1.7959104e+09`,
		`rotord_build_info{version="dev"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `last_success_timestamp_seconds{secret="db"}`) {
		t.Error("a failed secret has a last success")
	}
}
