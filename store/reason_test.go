package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// A host's failure reason is journaled as its own code beside the words,
// by Begin and SetHost, and read back as it was written.
func TestHostReasonIsDurable(t *testing.T) {
	ctx := context.Background()
	db, path := mustOpen(t)
	r := sampleRotation("prod-web-root")
	r.Hosts[2].State, r.Hosts[2].Reason, r.Hosts[2].Error = rotation.HostFailed, rotation.ReasonNotStarted, "not started: another host failed"
	id, err := db.Begin(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	// The words say nothing of a policy: the code alone says rejected.
	web02 := rotation.HostRecord{Host: r.Hosts[1].Host, State: rotation.HostFailed, Reason: rotation.ReasonRejected, Error: "BAD PASSWORD: too simple"}
	if err := db.SetHost(ctx, id, 0, web02); err != nil {
		t.Fatal(err)
	}
	got, err := db.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Hosts[1]; h.Reason != rotation.ReasonRejected || h.Error != web02.Error {
		t.Errorf("web02: reason %q, error %q; want %q, %q", h.Reason, h.Error, rotation.ReasonRejected, web02.Error)
	}
	if h := got.Hosts[2]; h.Reason != rotation.ReasonNotStarted {
		t.Errorf("third host: reason %q, want %q", h.Reason, rotation.ReasonNotStarted)
	}
	if h := got.Hosts[0]; h.Reason != rotation.ReasonNone {
		t.Errorf("web01: reason %q, want none", h.Reason)
	}
	var raw string
	if err := rawSQL(t, path).QueryRow(`SELECT fail_reason FROM rotation_hosts WHERE rotation_id = ? AND host = ?`, id, "web02:2222").Scan(&raw); err != nil || raw != "rejected" {
		t.Errorf("fail_reason column of web02: %q, %v; want rejected", raw, err)
	}
}

// Rows journaled before failure reasons had a code get, on upgrade, the
// code their words stood for where the words took part in a decision
// (a policy rejection, a host not started), and no code otherwise.
func TestMigrateGivesOldHostRowsTheirReason(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	dir := t.TempDir()
	// The rotation as the current code writes it, copied into schema 4.
	scratch, err := store.Open(ctx, filepath.Join(dir, "scratch.db"), store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	id, err := scratch.Begin(ctx, sampleRotation("prod-web-root"))
	if err != nil {
		t.Fatal(err)
	}
	_ = scratch.Close()
	path := filepath.Join(dir, "rotord.db")
	old, err := store.OpenAt(ctx, path, store.NewKeyring(key), 4)
	if err != nil {
		t.Fatal(err)
	}
	_ = old.Close()
	raw := rawSQL(t, path)
	for _, q := range []string{
		`ATTACH DATABASE '` + filepath.Join(dir, "scratch.db") + `' AS s`,
		`INSERT INTO secrets (name) SELECT name FROM s.secrets`,
		`INSERT INTO rotations (id, secret, secret_id, username, kind, state, error, rollback_of, started_at, updated_at)
			SELECT id, secret, secret_id, username, kind, state, error, rollback_of, started_at, updated_at FROM s.rotations`,
		`INSERT INTO rotation_hosts (rotation_id, host, position, name, port, state, attempts, last_error, updated_at)
			SELECT rotation_id, host, position, name, port, state, attempts, last_error, updated_at FROM s.rotation_hosts`,
		`INSERT INTO sealed_passwords SELECT * FROM s.sealed_passwords`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for host, text := range map[string]string{
		"web01":            "rejected by policy: BAD PASSWORD: too simple",
		"web02:2222":       "not started: another host failed",
		"[2001:db8::1]:22": "login: host unreachable",
	} {
		if _, err := raw.Exec(`UPDATE rotation_hosts SET state = 'failed', last_error = ? WHERE rotation_id = ? AND host = ?`, text, id, host); err != nil {
			t.Fatal(err)
		}
	}
	_ = raw.Close()
	db, err := store.Open(ctx, path, store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := []rotation.FailReason{rotation.ReasonRejected, rotation.ReasonNotStarted, rotation.ReasonNone}
	for i, h := range got.Hosts {
		if h.Reason != want[i] {
			t.Errorf("%s (%q): reason %q, want %q", h.Host, h.Error, h.Reason, want[i])
		}
	}
}
