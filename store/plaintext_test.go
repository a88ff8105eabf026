package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// TestNoPlaintextOnDisk writes known passwords through the journal and
// scans the bytes of the database file and its -wal and -shm files, before
// and after a checkpoint, for any of them.
func TestNoPlaintextOnDisk(t *testing.T) {
	ctx := context.Background()
	db, path := mustOpen(t)
	var passwords []string
	pw := func(role string, i int) secret.Value {
		s := fmt.Sprintf("Zq7%s-plaintext-canary-%03d!", role, i)
		passwords = append(passwords, s)
		return secret.New(s)
	}
	for i := range 40 {
		r := sampleRotation(fmt.Sprintf("secret-%d", i%5))
		r.Old, r.New = pw("old", i), pw("new", i)
		id, err := db.Begin(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.SetNew(ctx, id, 0, pw("fresh", i)); err != nil {
			t.Fatal(err)
		}
		if err := db.SetState(ctx, id, 0, rotation.StateCommitted, ""); err != nil {
			t.Fatal(err)
		}
	}
	// The passwords are really in there, sealed: they read back.
	got, err := db.LastCommitted(ctx, "secret-4", 0)
	if err != nil || got.New.Reveal() != "Zq7fresh-plaintext-canary-039!" {
		t.Fatalf("LastCommitted: %v", err)
	}

	scan := func(stage string, files ...string) {
		t.Helper()
		total := 0
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			total += len(data)
			for _, p := range passwords {
				if bytes.Contains(data, []byte(p)) {
					t.Errorf("%s: %s holds password %q in plain text", stage, f, p)
				}
				// A common prefix catches a password split across pages.
				if bytes.Contains(data, []byte(p[:12])) {
					t.Errorf("%s: %s holds a password prefix in plain text", stage, f)
				}
			}
		}
		if total == 0 {
			t.Fatalf("%s: nothing on disk to scan", stage)
		}
	}
	// Before any checkpoint the rows are in the WAL.
	wal, err := os.Stat(path + "-wal")
	if err != nil || wal.Size() == 0 {
		t.Fatalf("no WAL to scan: %v", err)
	}
	scan("open", path, path+"-wal", path+"-shm")

	// The canary is findable when it is written in plain text, so the scan
	// itself works.
	raw := rawSQL(t, path)
	if _, err := raw.Exec(`INSERT INTO audit_events (at, actor, action, detail) VALUES (0, 'test', 'probe', ?)`,
		"Zq7probe-plaintext-canary"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path + "-wal")
	if !bytes.Contains(data, []byte("Zq7probe-plaintext-canary")) {
		t.Fatal("the scan cannot see plain text written to the WAL")
	}
	if _, err := raw.Exec(`DELETE FROM audit_events WHERE action = 'probe'`); err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // checkpoints into the main file
		t.Fatal(err)
	}
	scan("closed", path)
}
