package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
)

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	raw := make([]byte, store.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	want, err := store.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(raw)
	for _, tc := range []struct {
		name    string
		path    string
		ok      bool
		message string // part of the error
	}{
		{"Raw", write("raw", raw, 0o600), true, ""},
		{"Base64", write("b64", []byte(b64+"\n"), 0o400), true, ""},
		{"RawBase64", write("rawb64", []byte(strings.TrimRight(b64, "=")), 0o600), true, ""},
		{"Missing", filepath.Join(dir, "missing"), false, "rotord keygen"},
		{"Short", write("short", raw[:31], 0o600), false, "31 bytes"},
		{"Long", write("long", append(raw, raw...), 0o600), false, "64 bytes"},
		{"ShortBase64", write("short64", []byte(base64.StdEncoding.EncodeToString(raw[:16])), 0o600), false, "rotord keygen"},
		{"Zero", write("zero", make([]byte, 32), 0o600), false, "all zero"},
		{"GroupReadable", write("group", raw, 0o640), false, "chmod 600"},
		{"OtherReadable", write("other", raw, 0o604), false, "chmod 600"},
		{"Directory", dir, false, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := store.LoadKey(tc.path)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if k.ID() != want.ID() {
					t.Errorf("key id %s, want %s", k.ID(), want.ID())
				}
				return
			}
			if !errors.Is(err, store.ErrKeyFile) {
				t.Fatalf("err = %v, want ErrKeyFile", err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("err = %q, want it to say %q", err, tc.message)
			}
			if strings.Contains(err.Error(), b64[:10]) {
				t.Errorf("err quotes the key: %q", err)
			}
		})
	}
}

func TestWriteNewKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := store.WriteNewKey(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %#o, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	k1, err := store.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.WriteNewKey(path); err == nil {
		t.Error("an existing key file was overwritten")
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, data) {
		t.Error("the key file changed")
	}
	other := filepath.Join(t.TempDir(), "key")
	if err := store.WriteNewKey(other); err != nil {
		t.Fatal(err)
	}
	k2, _ := store.LoadKey(other)
	if k1.ID() == k2.ID() {
		t.Error("two new keys are equal")
	}
	for _, s := range []string{k1.String(), fmt.Sprintf("%v %+v %#v %s", k1, k1, k1, k1)} {
		if strings.Contains(s, strings.TrimSpace(string(data))) {
			t.Errorf("key printed: %s", s)
		}
		if !strings.Contains(s, k1.ID()) {
			t.Errorf("printed key %q lacks its id", s)
		}
	}
}

// TestSwappedValues shows that moving sealed values between rows makes
// unsealing fail rather than return another password.
func TestSwappedValues(t *testing.T) {
	ctx := context.Background()
	db, path := mustOpen(t)
	id1, err := db.Begin(ctx, sampleRotation("web"))
	if err != nil {
		t.Fatal(err)
	}
	r2 := sampleRotation("db")
	r2.Old, r2.New = secret.New("second-old"), secret.New("second-new")
	id2, err := db.Begin(ctx, r2)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawSQL(t, path)
	swap := func(other string) func() error {
		return func() error {
			_, err := raw.Exec(`UPDATE sealed_passwords SET
				key_id = (SELECT key_id FROM saved s WHERE `+other+`),
				nonce = (SELECT nonce FROM saved s WHERE `+other+`),
				ciphertext = (SELECT ciphertext FROM saved s WHERE `+other+`)
				WHERE rotation_id IN (?1, ?2)`, id1, id2)
			return err
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func() error
		bad    []int64 // rotations that must now fail to unseal
	}{
		{"OldNew", swap(`s.rotation_id = sealed_passwords.rotation_id AND s.role <> sealed_passwords.role`), []int64{id1, id2}},
		{"AcrossRotations", swap(`s.rotation_id = (CASE sealed_passwords.rotation_id WHEN ?1 THEN ?2 ELSE ?1 END) AND s.role = sealed_passwords.role`), []int64{id1, id2}},
		{"FlippedBit", func() error {
			var ct []byte
			if err := raw.QueryRow(`SELECT ciphertext FROM sealed_passwords WHERE rotation_id = ? AND role = 'new'`, id2).Scan(&ct); err != nil {
				return err
			}
			ct[len(ct)/2] ^= 1
			_, err := raw.Exec(`UPDATE sealed_passwords SET ciphertext = ? WHERE rotation_id = ? AND role = 'new'`, ct, id2)
			return err
		}, []int64{id2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Work on a copy of the rows so the cases are independent.
			if _, err := raw.Exec(`CREATE TEMP TABLE saved AS SELECT * FROM sealed_passwords`); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if _, err := raw.Exec(`DELETE FROM sealed_passwords; INSERT INTO sealed_passwords SELECT * FROM saved; DROP TABLE saved`); err != nil {
					t.Fatal(err)
				}
			}()
			if err := tc.tamper(); err != nil {
				t.Fatal(err)
			}
			for _, id := range tc.bad {
				r, err := db.Get(ctx, id)
				if !errors.Is(err, store.ErrUnseal) {
					t.Errorf("Get(%d) = %v, %v; want ErrUnseal", id, r.ID, err)
				}
				if !r.Old.IsZero() || !r.New.IsZero() {
					t.Errorf("Get(%d) returned passwords with an error", id)
				}
			}
			if _, err := db.Unfinished(ctx); !errors.Is(err, store.ErrUnseal) {
				t.Errorf("Unfinished: %v, want ErrUnseal", err)
			}
		})
	}
	// Restored rows unseal again.
	if r, err := db.Get(ctx, id2); err != nil || !r.New.Equal(r2.New) {
		t.Errorf("after restore: %v", err)
	}
}

// TestWrongKey shows that a database opened with another key refuses to
// unseal, and that Rekey moves every value to a new key.
func TestWrongKey(t *testing.T) { eachBackend(t, testWrongKey) }

func testWrongKey(t *testing.T, b backend) {
	ctx := context.Background()
	right := mustKey(t)
	path := b.fresh(t)
	db, err := b.open(ctx, path, store.NewKeyring(right))
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRotation("web")
	id, err := db.Begin(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	other := mustKey(t)
	_, err = b.open(ctx, path, store.NewKeyring(other))
	if !errors.Is(err, store.ErrUnseal) {
		t.Fatalf("Open with another key: %v, want ErrUnseal", err)
	}
	if !strings.Contains(err.Error(), other.ID()) {
		t.Errorf("error %q does not name the key", err)
	}
	// Past the check at Open (a keyring that holds the right key only as
	// an old one, while the newest rotation is under another), a value
	// sealed with a missing key fails to unseal.
	db2, err := b.open(ctx, path, store.NewKeyring(other, right))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, err := db2.Begin(ctx, sampleRotation("web")); err != nil {
		t.Fatal(err)
	}
	db3, err := b.open(ctx, path, store.NewKeyring(other))
	if err != nil {
		t.Fatal(err)
	}
	defer db3.Close()
	got, err := db3.Get(ctx, id)
	if !errors.Is(err, store.ErrUnseal) {
		t.Fatalf("Get with another key: %v, want ErrUnseal", err)
	}
	if !got.New.IsZero() || !got.Old.IsZero() {
		t.Error("passwords returned with an error")
	}
	_ = db2.Close() // Rekey needs the database alone
	if _, err := db3.Rekey(ctx, mustKey(t)); !errors.Is(err, store.ErrUnseal) {
		t.Errorf("Rekey with another key: %v, want ErrUnseal", err)
	}
}

func TestRekey(t *testing.T) { eachBackend(t, testRekey) }

func testRekey(t *testing.T, b backend) {
	ctx := context.Background()
	path := b.fresh(t)
	oldKey, newKey := mustKey(t), mustKey(t)
	db, err := b.open(ctx, path, store.NewKeyring(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[int64]rotation.Rotation{}
	for i := range 300 { // 600 values: more than one batch
		r := sampleRotation("web")
		r.Old, r.New = secret.New(fmt.Sprintf("old-%d", i)), secret.New(fmt.Sprintf("new-%d", i))
		r.Hosts = nil
		id, err := db.Begin(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = r
	}
	n, err := db.Rekey(ctx, newKey)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*len(want) {
		t.Errorf("rekeyed %d values, want %d", n, 2*len(want))
	}
	if n, err := db.Rekey(ctx, newKey); err != nil || n != 0 {
		t.Errorf("second Rekey = %d, %v; want 0, nil", n, err)
	}
	var keyIDs []string
	raw := b.raw(t, path)
	rows, err := raw.Query(`SELECT DISTINCT key_id FROM sealed_passwords`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		keyIDs = append(keyIDs, s)
	}
	rows.Close()
	if len(keyIDs) != 1 || keyIDs[0] != newKey.ID() {
		t.Errorf("key ids after rekey %v, want [%s]", keyIDs, newKey.ID())
	}
	// The new key alone unseals everything; the old key alone nothing.
	dbNew, err := b.open(ctx, path, store.NewKeyring(newKey))
	if err != nil {
		t.Fatal(err)
	}
	defer dbNew.Close()
	for id, r := range want {
		got, err := dbNew.Get(ctx, id)
		if err != nil || !got.Old.Equal(r.Old) || !got.New.Equal(r.New) {
			t.Fatalf("rotation %d after rekey: %v", id, err)
		}
	}
	if _, err := b.open(ctx, path, store.NewKeyring(oldKey)); !errors.Is(err, store.ErrUnseal) {
		t.Errorf("the old key still opens the journal: %v", err)
	}
	// The rekeyed handle seals new values under the new key.
	id, err := db.Begin(ctx, sampleRotation("web"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dbNew.Get(ctx, id); err != nil {
		t.Errorf("value sealed after rekey: %v", err)
	}
}

func TestKeyringSealOpen(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	kr := store.NewKeyring(k1)
	token := []byte("bearer-token-canary-0123456789")
	blob, err := kr.Seal("token-cache", token)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, token) {
		t.Fatal("sealed blob holds the plain text")
	}
	again, err := kr.Seal("token-cache", token)
	if err != nil || bytes.Equal(again, blob) {
		t.Errorf("two seals of one value are equal (nonce reuse): %v", err)
	}
	got, err := kr.Open("token-cache", blob)
	if err != nil || !bytes.Equal(got, token) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// After a key change the old key, kept as an old key, still opens it.
	if got, err := store.NewKeyring(k2, k1).Open("token-cache", blob); err != nil || !bytes.Equal(got, token) {
		t.Errorf("Open with old key in ring = %q, %v", got, err)
	}
	flipped := bytes.Clone(blob)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		kr      *store.Keyring
		purpose string
		blob    []byte
	}{
		"OtherPurpose": {kr, "other", blob},
		"OtherKey":     {store.NewKeyring(k2), "token-cache", blob},
		"Flipped":      {kr, "token-cache", flipped},
		"Truncated":    {kr, "token-cache", blob[:20]},
		"Garbage":      {kr, "token-cache", []byte("garbage")},
	} {
		got, err := tc.kr.Open(tc.purpose, tc.blob)
		if !errors.Is(err, store.ErrUnseal) || got != nil {
			t.Errorf("%s: Open = %q, %v; want ErrUnseal", name, got, err)
		}
	}
}
