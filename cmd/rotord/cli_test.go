package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotord/rotord/store/pgtest"
)

// rotordBin is the binary built once for the tests that run it.
var rotordBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rotord-bin")
	if err != nil {
		panic(err)
	}
	rotordBin = filepath.Join(dir, "rotord")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test", "-o", rotordBin, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("build rotord: " + err.Error() + "\n" + string(out))
	}
	code := pgtest.Main(m) // a throwaway PostgreSQL for the tests of a shared journal
	os.RemoveAll(dir)
	os.Exit(code)
}

// runBin runs the built rotord with args and a clean environment plus env.
func runBin(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(rotordBin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run rotord: %v", err)
	}
	return o.String(), e.String(), code
}

func TestBinaryHelpEverywhere(t *testing.T) {
	cmds := [][]string{
		{}, {"run"}, {"rotate"}, {"rollback"}, {"history"}, {"recover"}, {"heartbeat"}, {"check"},
		{"hostkeys"}, {"hostkeys", "scan"}, {"token"}, {"token", "clear"}, {"migrate"}, {"keygen"},
		{"rekey"}, {"version"}, {"completion"}, {"status"},
	}
	for _, c := range cmds {
		t.Run(strings.Join(append([]string{"rotord"}, c...), " "), func(t *testing.T) {
			out, errOut, code := runBin(t, nil, append(c, "--help")...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, want := range []string{"Usage:", "--config", "Exit status:", "130  interrupted"} {
				if !strings.Contains(out, want) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestBinaryUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"UnknownCommand": {"rotatte"},
		"UnknownFlag":    {"rotate", "--dryrun"},
		"MissingArg":     {"rollback"},
		"ExtraArg":       {"recover", "now"},
		"BadLogLevel":    {"version", "--log-level", "loud", "check"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := runBin(t, nil, args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
			}
			if !strings.HasPrefix(errOut, "rotord: ") {
				t.Fatalf("stderr %q", errOut)
			}
		})
	}
}

func TestBinaryConfigErrorNamesFileAndLine(t *testing.T) {
	path, _ := writeConfig(t, minimal+"ssh:\n  port: 22\n  known_host: /etc/kh\nschedule: \"0 3 * *\"\n")
	for _, args := range [][]string{
		{"check", "--config", path},
		{"rotate", "-c", path},
		{"run", "--config", path},
	} {
		t.Run(args[0], func(t *testing.T) {
			out, errOut, code := runBin(t, nil, args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d", code, exitUsage)
			}
			want := "rotord: " + path + ":9: ssh.known_host: unknown field (known here: concurrency, connect_timeout, known_hosts, port, reconcile, step_timeout)\n"
			if !strings.HasPrefix(errOut, want) {
				t.Fatalf("stderr:\n%s\nwant it to start with:\n%s", errOut, want)
			}
			if out != "" {
				t.Fatalf("stdout %q", out)
			}
		})
	}
	t.Run("FromEnvironment", func(t *testing.T) {
		fixed, _ := writeConfig(t, minimal+"schedule: \"0 3 * *\"\n")
		_, errOut, code := runBin(t, []string{"ROTORD_CONFIG=" + fixed}, "check")
		want := "rotord: " + fixed + ":7: schedule: bad cron spec: expected exactly 5 fields, found 4: [0 3 * *]\n"
		if code != exitUsage || errOut != want {
			t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", code, errOut, want)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		_, errOut, code := runBin(t, nil, "check", "--config", "/nonexistent.yaml")
		if code != exitUsage || errOut != "rotord: /nonexistent.yaml: cannot read: no such file or directory\n" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("NoPasswordPrinted", func(t *testing.T) {
		p, dir := writeConfig(t, minimal+"jitter: soon\n")
		if err := os.Chmod(filepath.Join(dir, "ss-password"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runBin(t, nil, "check", "--config", p)
		if code != exitUsage || !strings.Contains(errOut, "chmod 600") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		if strings.Contains(out+errOut, testPassword) {
			t.Fatal("the password was printed")
		}
	})
}

func TestBinaryVersion(t *testing.T) {
	out, _, code := runBin(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "rotord v9.9.9-test (go") {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	out, _, code = runBin(t, nil, "version", "--json")
	if code != 0 || !strings.Contains(out, `"version": "v9.9.9-test"`) {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}

func TestBinaryCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			out, errOut, code := runBin(t, nil, "completion", shell)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.Contains(out, "rotord") || len(out) < 1000 {
				t.Fatalf("no completion script: %q", out)
			}
		})
	}
	// The bash script completes subcommands through the binary itself.
	out, _, code := runBin(t, nil, "__complete", "ro")
	if code != 0 || !strings.Contains(out, "rotate") || !strings.Contains(out, "rollback") {
		t.Fatalf("exit %d, completions %q", code, out)
	}
}

func TestBinaryTokenClear(t *testing.T) {
	path, dir := writeConfig(t, minimal)
	cache := filepath.Join(dir, "token.cache")
	cfg := strings.Replace(readFile(t, path), "  username: svc\n", "  username: svc\n  token_cache: "+cache+"\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cache, []byte("sealed"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBin(t, nil, "token", "clear", "--config", path)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token cache still there (%v); stdout %q", err, out)
	}
	// Clearing an absent cache is no error.
	if _, errOut, code := runBin(t, nil, "token", "clear", "--config", path); code != 0 {
		t.Fatalf("second clear: exit %d, stderr %q", code, errOut)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
