package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
)

func TestMain(m *testing.M) {
	if os.Getenv("SSTEST_SERVER_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCommand runs the command as a process, points rotord's client at the
// URL and CA it wrote, and stops it with SIGTERM.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.yaml")
	err := os.WriteFile(seed, []byte(`
users: [{name: svc, password: "Svc-Pw-1!"}]
secrets:
  - {name: prod-web-root, folder: '\Prod\Web', username: root, password: "Old-Pw-1!", notes: "web01, web02:2222"}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	caFile, urlFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "url.txt")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-listen", "127.0.0.1:0", "-seed", seed, "-ca-out", caFile, "-url-out", urlFile, "-v")
	cmd.Env = append(os.Environ(), "SSTEST_SERVER_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	var log strings.Builder
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "emulator listening") {
			break
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for lines.Scan() {
			log.WriteString(lines.Text() + "\n")
		}
	}()
	u, err := os.ReadFile(urlFile)
	if err != nil {
		t.Fatalf("url file: %v", err)
	}
	c, err := secretserver.New(secretserver.Config{
		URL: strings.TrimSpace(string(u)), Username: "svc", Password: secret.New("Svc-Pw-1!"), CAFile: caFile,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Resolve(ctx, "prod-web-root")
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	s, err := c.Read(ctx, id, "")
	if err != nil || s.Password.Reveal() != "Old-Pw-1!" || len(s.Hosts) != 2 {
		t.Fatalf("read = %v hosts, %v", len(s.Hosts), err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	out := log.String()
	if !strings.Contains(out, "/api/v1/secrets") {
		t.Errorf("request log missing: %s", out)
	}
	for _, pw := range []string{"Svc-Pw-1!", "Old-Pw-1!"} {
		if strings.Contains(out, pw) {
			t.Errorf("the command logged a password")
		}
	}
}
