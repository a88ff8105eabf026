package main

// Walls a new user hit (issue #9, section 3), each shown through the built
// binary against the Secret Server emulator and in-process SSH hosts: no
// root and no real sshd needed.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// wallSecret is a secret of a wall lab: its name and the hosts in its notes.
type wallSecret struct {
	name  string
	hosts []string
}

// newWallLab is a lab of the emulator holding secrets (account accUser,
// password accPassword), a journal migrated and its key, and a
// configuration listing the secrets, with extra appended before secrets:.
// knownHosts is the content of ssh.known_hosts.
func newWallLab(t *testing.T, secrets []wallSecret, knownHosts, extra string) *lab {
	t.Helper()
	l := &lab{t: t, dir: t.TempDir(), ids: map[string]int{}}
	l.ss = sstest.New()
	t.Cleanup(l.ss.Close)
	l.ss.AddUser(accSSUser, "", accSSPassword)
	var list strings.Builder
	for _, s := range secrets {
		l.ids[s.name] = l.ss.AddSecret(sstest.SecretSeed{Name: s.name, Folder: `\Lab\Linux`, Username: accUser,
			Password: accPassword, Notes: strings.Join(s.hosts, ", ")})
		fmt.Fprintf(&list, "  - name: %s\n", s.name)
	}
	l.write("ca.pem", string(l.ss.CACertPEM()))
	l.write("ss-password", accSSPassword+"\n")
	l.write("known_hosts", knownHosts)
	l.config = l.write("rotord.yaml", fmt.Sprintf(`secret_server:
  url: %s
  username: %s
  password_file: %s
  ca_file: %s
  token_cache: %s
store:
  path: %s
  key_file: %s
ssh:
  known_hosts: %s
  connect_timeout: 5s
  step_timeout: 10s
schedule: "@weekly"
jitter: 0s
metrics:
  listen: ""
%ssecrets:
%s`, l.ss.URL, accSSUser, l.path("ss-password"), l.path("ca.pem"), l.path("token.cache"), l.path("rotord.db"),
		l.path("store-key"), l.path("known_hosts"), extra, list.String()))
	if _, errOut, code := runBin(t, nil, "keygen", l.path("store-key")); code != 0 {
		t.Fatalf("rotord keygen: exit %d: %s", code, errOut)
	}
	if _, errOut, code := l.rotord("migrate"); code != 0 {
		t.Fatalf("rotord migrate: exit %d: %s", code, errOut)
	}
	return l
}

// sshHost is an in-process SSH host whose account has password pw.
func sshHost(t *testing.T, pw string) *sshtest.Server {
	t.Helper()
	s, err := sshtest.NewServer(sshtest.ServerOptions{User: accUser, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestWallVersionFlag: `rotord --version` is not an unknown flag; it prints
// what `rotord version` prints.
func TestWallVersionFlag(t *testing.T) {
	want, _, code := runBin(t, nil, "version")
	if code != 0 {
		t.Fatalf("rotord version: exit %d", code)
	}
	got, errOut, code := runBin(t, nil, "--version")
	if code != 0 || got != want {
		t.Fatalf("rotord --version: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, got, errOut, want)
	}
}

// TestWallResolveErrorSaidOnce: a name Secret Server does not know is
// reported as `resolve secret "x": secret not found`, not wrapped twice.
func TestWallResolveErrorSaidOnce(t *testing.T) {
	h := sshHost(t, accPassword)
	l := newWallLab(t, []wallSecret{{name: "web-root", hosts: []string{h.Addr()}}}, h.KnownHostsLine()+"\n",
		"")
	cfg := strings.Replace(readFile(t, l.config), "  - name: web-root\n", "  - name: web-root\n  - name: ghost\n", 1)
	l.write("rotord.yaml", cfg)
	out, errOut, code := l.rotord("rotate", "ghost", "--dry-run")
	all := out + errOut
	if code != exitFailed || !strings.Contains(all, `resolve secret "ghost": secret not found`) {
		t.Fatalf("exit %d, output:\n%s\nwant exit 1 naming the unknown secret", code, all)
	}
	if n := strings.Count(all, "resolve secret"); n != 1 {
		t.Fatalf("\"resolve secret\" said %d times:\n%s", n, all)
	}
}

// TestWallDryRunFailureSaysNothingChanged: a dry run that finds a problem
// ends saying so, and that nothing changed, not "rotation failed".
func TestWallDryRunFailureSaysNothingChanged(t *testing.T) {
	h := sshHost(t, "Another-Pw-on-host-1") // refuses the password Secret Server holds
	l := newWallLab(t, []wallSecret{{name: "web-root", hosts: []string{h.Addr()}}}, h.KnownHostsLine()+"\n", "")
	_, errOut, code := l.rotord("rotate", "web-root", "--dry-run")
	if code != exitFailed {
		t.Fatalf("dry run: exit %d, want 1; stderr:\n%s", code, errOut)
	}
	if strings.Contains(errOut, "rotation failed") || !strings.Contains(errOut, "rotord: dry run found problems; nothing was changed") {
		t.Fatalf("dry run's last word:\n%s\nwant \"dry run found problems; nothing was changed\"", errOut)
	}
	if got := l.password("web-root"); got != accPassword {
		t.Fatal("the dry run changed Secret Server")
	}
}

// TestWallStoreKeyIsConfigError: a missing or group-readable store key is a
// configuration error: exit 2, naming the file and store.key_file's line.
func TestWallStoreKeyIsConfigError(t *testing.T) {
	h := sshHost(t, accPassword)
	l := newWallLab(t, []wallSecret{{name: "web-root", hosts: []string{h.Addr()}}}, h.KnownHostsLine()+"\n", "")
	line := 0
	for i, s := range strings.Split(readFile(t, l.config), "\n") {
		if strings.HasPrefix(s, "  key_file:") {
			line = i + 1
		}
	}
	want := fmt.Sprintf("rotord: %s:%d: store.key_file: ", l.config, line)

	if err := os.Chmod(l.path("store-key"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := l.rotord("rotate", "web-root")
	if code != exitUsage || !strings.Contains(errOut, want) || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("group-readable key: exit %d, stderr:\n%s\nwant exit 2 and %q", code, errOut, want)
	}
	if err := os.Remove(l.path("store-key")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"rotate", "web-root"}, {"history"}} {
		_, errOut, code = l.rotord(args...)
		if code != exitUsage || !strings.Contains(errOut, want) || !strings.Contains(errOut, "does not exist") {
			t.Errorf("%v with the key missing: exit %d, stderr:\n%s\nwant exit 2 and %q", args, code, errOut, want)
		}
	}
	// check reports it among every other problem it finds.
	out, _, code := l.rotord("check")
	if code != exitFailed || !strings.Contains(out, strings.TrimPrefix(want, "rotord: ")) {
		t.Errorf("check with the key missing: exit %d, stdout:\n%s\nwant exit 1 and %q", code, out, strings.TrimPrefix(want, "rotord: "))
	}
}

// TestWallLocalCommandsNeedNoSecretServerPassword: commands that do not
// talk to Secret Server run while its password file is still empty, as it
// is halfway through the README's install; those that do still refuse.
func TestWallLocalCommandsNeedNoSecretServerPassword(t *testing.T) {
	h := sshHost(t, accPassword)
	l := newWallLab(t, []wallSecret{{name: "web-root", hosts: []string{h.Addr()}}}, "", "")
	l.write("ss-password", "") // mode 0600, empty: as `install -m 0600 /dev/null` leaves it

	out, errOut, code := l.rotord("hostkeys", "scan", h.Addr())
	if code != 0 || !strings.Contains(out, strings.TrimSpace(strings.SplitN(h.KnownHostsLine(), " ", 2)[1])) {
		t.Errorf("hostkeys scan: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	if _, errOut, code = l.rotord("migrate"); code != 0 {
		t.Errorf("migrate: exit %d, stderr:\n%s", code, errOut)
	}
	if _, errOut, code = l.rotord("history"); code != 0 {
		t.Errorf("history: exit %d, stderr:\n%s", code, errOut)
	}
	if err := os.Remove(l.path("store-key")); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code = l.rotord("keygen"); code != 0 { // writes store.key_file
		t.Errorf("keygen: exit %d, stderr:\n%s", code, errOut)
	} else if _, err := os.Stat(l.path("store-key")); err != nil {
		t.Errorf("keygen wrote no key: %v", err)
	}
	if _, errOut, code = l.rotord("token", "clear"); code != 0 {
		t.Errorf("token clear: exit %d, stderr:\n%s", code, errOut)
	}
	for _, args := range [][]string{{"check"}, {"rotate", "web-root"}, {"heartbeat"}} {
		_, errOut, code = l.rotord(args...)
		if code != exitUsage || !strings.Contains(errOut, "secret_server.password_file: "+l.path("ss-password")+" is empty") {
			t.Errorf("%v with the password file empty: exit %d, stderr:\n%s\nwant exit 2 naming the empty file", args, code, errOut)
		}
	}
}

// TestWallHeartbeatDriftIsNotUnreachable: a host that refuses Secret
// Server's password is drift; a host that cannot be reached is
// unreachable: each said on screen and alerted with its own state.
func TestWallHeartbeatDriftIsNotUnreachable(t *testing.T) {
	hook := newWebhook(t)
	ok, drifted := sshHost(t, accPassword), sshHost(t, "Drifted-Pw-5521x")
	gone := closedAddr(t)
	l := newWallLab(t, []wallSecret{
		{name: "drifted-root", hosts: []string{ok.Addr(), drifted.Addr()}},
		{name: "gone-root", hosts: []string{gone}},
	}, ok.KnownHostsLine()+"\n"+drifted.KnownHostsLine()+"\n", "notify:\n  webhook_url: "+hook.url+"/hooks/x\n")
	l.env = []string{"SSL_CERT_FILE=" + l.write("webhook-ca.pem", hook.caPEM)}

	out, errOut, code := l.rotord("heartbeat")
	if code != exitFailed {
		t.Fatalf("heartbeat: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "drifted-root: drift: ") || !strings.Contains(out, "gone-root: unreachable: ") ||
		strings.Contains(out, "gone-root: drift") {
		t.Fatalf("heartbeat output:\n%s\nwant drifted-root drift and gone-root unreachable", out)
	}
	js, _, _ := l.rotord("heartbeat", "--json")
	if !strings.Contains(js, `"states": [
      "drift"
    ]`) || !strings.Contains(js, `"states": [
      "unreachable"
    ]`) {
		t.Errorf("heartbeat --json:\n%s\nwant the states drift and unreachable", js)
	}
	states := map[string]alert{}
	for _, a := range hook.alerts(t, 4) { // two runs: text, then --json
		states[a.Secret] = a
	}
	if a := states["drifted-root"]; a.State != alertDrift || !strings.Contains(a.Error, drifted.Addr()) || strings.Contains(a.Error, ok.Addr()) {
		t.Errorf("drifted-root alert %+v; want drift naming %s only", a, drifted.Addr())
	}
	if a := states["gone-root"]; a.State != "unreachable" || !strings.Contains(a.Error, gone) {
		t.Errorf("gone-root alert %+v; want unreachable naming %s", a, gone)
	}
	if n := hook.count(); n != 0 {
		t.Errorf("%d alerts more than expected", n)
	}
	l.noSecrets(out+errOut+strings.Join(hook.bodies(), "\n"), "Drifted-Pw-5521x")
}

// TestWallScheduledRefusedPasswordAlerts: a scheduled rotation whose host
// refuses the current password needs an operator: the daemon posts a
// needs-operator alert and counts it as state="needs-operator", not as a
// transient "failed".
func TestWallScheduledRefusedPasswordAlerts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hook := newWebhook(t)
	h := sshHost(t, "Changed-By-Hand-77q") // someone changed it behind rotord's back
	l := newWallLab(t, []wallSecret{{name: "web-root", hosts: []string{h.Addr()}}}, h.KnownHostsLine()+"\n",
		"notify:\n  webhook_url: "+hook.url+"/hooks/x\n")
	l.env = []string{"SSL_CERT_FILE=" + l.write("webhook-ca.pem", hook.caPEM)}
	cfg := strings.Replace(readFile(t, l.config), "metrics:\n  listen: \"\"\n", "metrics:\n  listen: 127.0.0.1:0\n", 1)
	l.write("rotord.yaml", cfg)
	// A slot missed while the daemon was down: it rotates at start.
	db := l.openStore(ctx)
	if err := db.SetNextDue(ctx, "web-root", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	d := l.startDaemon()
	rec := d.next("the metrics address", func(rec map[string]any) bool { return is(rec, "serving metrics") })
	addr := fmt.Sprint(rec["addr"])
	got := hook.alerts(t, 1)
	if a := got[0]; a.Secret != "web-root" || a.State != "needs-operator" || !strings.Contains(a.Error, "authentication failed") {
		t.Fatalf("alert %+v; want web-root needs-operator naming the refused password", a)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`rotord_rotations_total\{secret="web-root",state="needs-operator"\} 1`).Match(body) ||
		!strings.Contains(string(body), `rotord_rotations_total{secret="web-root",state="failed"} 0`) {
		t.Fatalf("metrics:\n%s\nwant one needs-operator rotation and no failed one", grepLines(string(body), "rotord_rotations_total"))
	}
	d.signal(syscall.SIGTERM)
	if code := d.wait(); code != 0 {
		t.Fatalf("rotord run exited %d; it logged:\n%s", code, d.logged())
	}
	if n := hook.count(); n != 0 {
		t.Errorf("%d alerts more than expected", n)
	}
	l.noSecrets(d.logged()+strings.Join(hook.bodies(), "\n"), "Changed-By-Hand-77q")
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWallNeedsOperator: which failures of a scheduled rotation need an
// operator (alerted, state="needs-operator") and which do not.
func TestWallNeedsOperator(t *testing.T) {
	pre := func(err error) error { return fmt.Errorf("%w: host web01:22: %w", rotation.ErrPreflight, err) }
	for name, tc := range map[string]struct {
		r    rotation.Result
		want bool
	}{
		"RefusedPassword":    {rotation.Result{Err: pre(rotation.ErrAuthFailed)}, true},
		"UntrustedHostKey":   {rotation.Result{Err: pre(rotation.ErrHostKey)}, true},
		"BadHosts":           {rotation.Result{Err: fmt.Errorf("read secret: %w: entry \"web 01\"", rotation.ErrBadHosts)}, true},
		"AmbiguousName":      {rotation.Result{Err: fmt.Errorf("resolve secret: %w", rotation.ErrAmbiguousName)}, true},
		"UnknownName":        {rotation.Result{Err: fmt.Errorf("resolve secret: %w", rotation.ErrSecretNotFound)}, true},
		"HostUnreachable":    {rotation.Result{Err: pre(rotation.ErrUnreachable)}, false},
		"VaultUnavailable":   {rotation.Result{Err: rotation.ErrVaultUnavailable}, false},
		"Parked":             {rotation.Result{Err: rotation.ErrParked}, false},
		"Interrupted":        {rotation.Result{Err: context.Canceled}, false},
		"LeaseHeldElsewhere": {rotation.Result{Err: &rotation.LeaseHeldError{Secret: "web-root", Holder: "other"}}, false},
		"RolledBack":         {rotation.Result{State: rotation.StateRolledBack, Err: rotation.ErrRolledBack}, false}, // alerted as rolled-back
		"Committed":          {rotation.Result{State: rotation.StateCommitted}, false},
	} {
		if got := needsOperator(tc.r); got != tc.want {
			t.Errorf("%s: needsOperator = %v, want %v", name, got, tc.want)
		}
	}
}
