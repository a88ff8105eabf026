package main

// The README's install block, run verbatim, line by line, on a throwaway
// view of this machine: the test re-runs itself in private mount and
// network namespaces (unshare), where /etc, /var/lib and the repository are
// overlays whose writes land in a temporary directory, /usr/local/bin is an
// empty tmpfs, and loopback is the namespace's own. There the Secret Server
// emulator serves TLS and two SSH hosts, web01:22 and web02:2222 (the names
// the README uses, in the namespace's /etc/hosts), offer their host keys.
// Nothing of the machine changes.
//
// The block's lines run as written (sh -c LINE, from the repository root).
// Between them the test does what the block's comments tell the user to
// do, and nothing else:
//   - "write rotord's Secret Server password here": writes the emulator
//     account's password into the file;
//   - "then edit it": points secret_server.url at the emulator, ca_file at
//     its CA (the CA written beside the config) and lists the emulator's
//     secrets;
//   - "then append the lines to ssh.known_hosts": appends what hostkeys scan
//     printed on stdout (the fingerprints it compared are on stderr).
// systemctl is a stub first in PATH (CI has no systemd): it records its
// arguments and succeeds.

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/secretserver/sstest"
)

// installChildEnv names, in the re-run test process, the directory that
// holds the overlays' layers; it marks the process as the one inside the
// namespaces.
const installChildEnv = "ROTORD_INSTALL_TEST_DIR"

func TestReadmeInstallBlockVerbatim(t *testing.T) {
	if dir := os.Getenv(installChildEnv); dir != "" {
		installInNamespaces(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the install test needs root (mount and network namespaces) under CI")
		}
		t.Skip("the install test needs root (mount and network namespaces)")
	}
	dir := t.TempDir()
	cmd := exec.Command("/usr/bin/unshare", "--mount", "--net", "--propagation", "private",
		os.Args[0], "-test.run=^TestReadmeInstallBlockVerbatim$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), installChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the install block in its namespaces: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestReadmeInstallBlockVerbatim") {
		t.Fatalf("the install test did not run in its namespaces:\n%s", out)
	}
	t.Logf("%s", grepLines(string(out), "install:"))
}

// installInNamespaces runs inside the private namespaces.
func installInNamespaces(t *testing.T, dir string) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := installBlock(t, string(readme))

	if out, err := exec.Command("/usr/sbin/ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("loopback up: %v: %s", err, out)
	}
	for _, d := range []string{"/etc", "/var/lib", repo} {
		overlay(t, dir, d)
	}
	if err := syscall.Mount("tmpfs", "/usr/local/bin", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("tmpfs on /usr/local/bin: %v", err)
	}
	for _, p := range []string{"/etc/rotord", "/var/lib/rotord", "/usr/local/bin/rotord", "/etc/systemd/system/rotord.service"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists before the install (%v): not a fresh machine", p, err)
		}
	}
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/hosts", append(hosts, "\n127.0.0.1 web01 web02\n"...), 0o644); err != nil {
		t.Fatal(err)
	}

	// Secret Server and the two hosts of the README's example.
	ss := sstest.New()
	defer ss.Close()
	const ssUser, ssPassword = "svc-rotord", "Install-Svc-Pw-31!"
	ss.AddUser(ssUser, "", ssPassword)
	ss.AddSecret(sstest.SecretSeed{Name: "prod-web-root", Folder: `\Prod\Linux`, Username: "root", Password: "Web-Root-Pw-0001", Notes: "web01"})
	ss.AddSecret(sstest.SecretSeed{Name: "prod-db-root", Folder: `\Prod\Linux`, Username: "root", Password: "Db-Root-Pw-00002", Notes: "web02:2222"})
	keyOnlySSH(t, "127.0.0.1:22")
	keyOnlySSH(t, "127.0.0.1:2222")

	shims := filepath.Join(dir, "shims")
	calls := filepath.Join(dir, "systemctl.calls")
	if err := os.MkdirAll(shims, 0o755); err != nil {
		t.Fatal(err)
	}
	stub := "#!/bin/sh\necho \"$*\" >> " + calls + "\n"
	if err := os.WriteFile(filepath.Join(shims, "systemctl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+shims+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:"+filepath.Dir(goTool(t)))

	steps, checked := 0, false
	for _, line := range block {
		cmd := exec.Command("/bin/sh", "-c", line)
		cmd.Dir, cmd.Env = repo, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("install: `%s`: %v\nstdout:\n%s\nstderr:\n%s", line, err, stdout.String(), stderr.String())
		}
		t.Logf("install: ok: %s", line)
		switch {
		case strings.Contains(line, "write rotord's Secret Server password here"):
			path := lastWord(line)
			if err := os.WriteFile(path, []byte(ssPassword+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			steps++
		case strings.Contains(line, "then edit it"):
			editConfig(t, "/etc/rotord/rotord.yaml", ss.URL, ss.CACertPEM())
			steps++
		case strings.Contains(line, "then append the lines to ssh.known_hosts"):
			f, err := os.OpenFile("/etc/rotord/known_hosts", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteString(stdout.String())
			_ = f.Close()
			if n := strings.Count(stdout.String(), "\n"); n < 2 {
				t.Fatalf("hostkeys scan printed %d known_hosts lines:\n%s\nstderr:\n%s", n, stdout.String(), stderr.String())
			}
			steps++
		case strings.Contains(line, "rotord rotord check"):
			if !strings.Contains(stdout.String(), "no problems found") {
				t.Fatalf("rotord check:\n%s", stdout.String())
			}
			checked = true
		}
	}
	if steps != 3 {
		t.Fatalf("the block's comments named %d of the 3 steps the user takes (password, config, known_hosts)", steps)
	}
	if !checked {
		t.Fatalf("the block does not run rotord check: %q", block)
	}
	if n := ss.Calls(sstest.EndpointToken) + ss.Calls(sstest.EndpointSearch); n < 3 {
		t.Fatalf("rotord check did not reach the emulator (%d calls)", n)
	}
	got, _ := os.ReadFile(calls)
	if string(got) != "daemon-reload\nenable --now rotord\n" {
		t.Fatalf("systemctl was called with:\n%s", got)
	}
	if fi, err := os.Stat("/var/lib/rotord"); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("/var/lib/rotord: %v, %v; want a directory open to root only", fi.Mode(), err)
	}
	if _, err := os.Stat("/etc/systemd/system/rotord.service"); err != nil {
		t.Fatal(err)
	}
	// The commands ran as the service's user: the journal is the daemon's.
	out, err := exec.Command("stat", "-c", "%U %a", "/var/lib/rotord/rotord.db").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "rotord 600" {
		t.Fatalf("/var/lib/rotord/rotord.db: %s %v; want owned by rotord, mode 0600", out, err)
	}
}

// installBlock returns the command lines of the README's Install block.
func installBlock(t *testing.T, readme string) []string {
	t.Helper()
	m := regexp.MustCompile("(?s)\n## Install\n(?:[^\n]*\n)*?```sh\n(.*?)```").FindStringSubmatch(readme)
	if m == nil {
		t.Fatal("README has no ```sh block under ## Install")
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(m[1]))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// overlay mounts an overlay on dir whose writes land under base.
func overlay(t *testing.T, base, dir string) {
	t.Helper()
	name := strings.ReplaceAll(strings.Trim(dir, "/"), "/", "_")
	upper, work := filepath.Join(base, name, "upper"), filepath.Join(base, name, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount("overlay", dir, "overlay", 0, "lowerdir="+dir+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("overlay on %s: %v", dir, err)
	}
}

// editConfig is the user's "then edit it": Secret Server's URL and CA, and
// the secrets to rotate.
func editConfig(t *testing.T, path, url string, ca []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(filepath.Dir(path), "secret-server-ca.pem")
	if err := os.WriteFile(caPath, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range [][2]string{
		{"url: https://secrets.example.com/SecretServer", "url: " + url},
		{`ca_file: ""`, "ca_file: " + caPath},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("the example configuration has no %q to edit", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	i, j := strings.Index(s, "\nsecrets:\n"), strings.Index(s, "\nmetrics:\n")
	if i < 0 || j < i {
		t.Fatal("the example configuration has no secrets list before metrics")
	}
	s = s[:i] + "\nsecrets:\n  - name: prod-web-root\n  - name: prod-db-root\n" + s[j:]
	if err := os.WriteFile(path, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

// keyOnlySSH serves SSH on addr far enough to show a host key; it refuses
// every login.
func keyOnlySSH(t *testing.T, addr string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) {
		return nil, errors.New("no logins here")
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if sc, _, _, err := ssh.NewServerConn(c, cfg); err == nil {
					_ = sc.Close()
				}
				_ = c.Close()
			}()
		}
	}()
}

// goTool returns the go command building this test, for `make build`.
func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go: %v", err)
	}
	return p
}

// lastWord returns the last word of a shell line before its comment.
func lastWord(line string) string {
	code, _, _ := strings.Cut(line, "#")
	f := strings.Fields(code)
	return f[len(f)-1]
}
