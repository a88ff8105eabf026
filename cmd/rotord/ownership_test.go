package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Commands an operator runs as root against rotord's directories (owned by
// the service user) leave the files they create to that user, so that the
// daemon can still open them: the journal migrate creates and the key
// keygen writes.
func TestRootCommandsHandFilesToTheDirectoryOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (it runs rotord as root against a directory owned by another user)")
		}
		t.Skip("needs root")
	}
	const uid, gid = 65534, 65534 // nobody:nogroup stands for rotord
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	creds := filepath.Join(dir, "credentials")
	for _, d := range []string{state, creds} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pw := filepath.Join(dir, "ss-password")
	if err := os.WriteFile(pw, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(creds, "store-key")
	cfg := filepath.Join(dir, "rotord.yaml")
	body := "secret_server:\n  url: https://ss.invalid/SecretServer\n  username: svc\n  password_file: " + pw +
		"\n  token_cache: " + filepath.Join(state, "token.cache") +
		"\nstore:\n  path: " + filepath.Join(state, "rotord.db") + "\n  key_file: " + key +
		"\nsecrets:\n  - name: web\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"keygen", key}, {"--config", cfg, "migrate"}} {
		out, err := exec.Command(rotordBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("rotord %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, p := range []string{key, filepath.Join(state, "rotord.db"), filepath.Join(state, "rotord.db.lock")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s belongs to %d:%d, want %d:%d (the directory's owner)", p, st.Uid, st.Gid, uid, gid)
		}
	}
	// A file root created in a directory root owns stays root's.
	fi, _ := os.Stat(cfg)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("the configuration changed owner to %d", st.Uid)
	}
}
