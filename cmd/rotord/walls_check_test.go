package main

// `rotord check` as a new user meets it: every problem at once, one
// authentication, and a DNS failure said plainly.

import (
	"os"
	"strings"
	"testing"

	"github.com/rotord/rotord/secretserver/sstest"
)

// TestWallCheckAuthenticatesOnce: check resolves three secrets and reads
// them with one token grant, not one per secret.
func TestWallCheckAuthenticatesOnce(t *testing.T) {
	a, b := sshHost(t, accPassword), sshHost(t, accPassword)
	kh := a.KnownHostsLine() + "\n" + b.KnownHostsLine() + "\n"
	l := newWallLab(t, []wallSecret{
		{name: "web-root", hosts: []string{a.Addr()}},
		{name: "db-root", hosts: []string{b.Addr()}},
		{name: "mail-root", hosts: []string{a.Addr(), b.Addr()}},
	}, kh, "")
	l.ss.ResetCalls()
	out, errOut, code := l.rotord("check")
	if code != 0 {
		t.Fatalf("check: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if n := l.ss.Calls(sstest.EndpointToken); n != 1 {
		t.Fatalf("check asked Secret Server for a token %d times, want 1; stderr:\n%s", n, errOut)
	}

	// Secret Server cannot grant a token (503): check tries to log in
	// once (with its retries), reports it once, and does not try again
	// for each secret.
	if err := os.Remove(l.path("token.cache")); err != nil {
		t.Fatal(err)
	}
	l.ss.FailNext(sstest.EndpointToken, 1000, 503, `{"errorCode":"API_Unavailable","message":"Service unavailable."}`)
	l.ss.ResetCalls()
	out, errOut, code = l.rotord("check")
	if code != exitFailed || strings.Count(out, "503") != 1 {
		t.Fatalf("check with no token: exit %d, want 1 and the 503 reported once; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if n, most := l.ss.Calls(sstest.EndpointToken), 1+4; n > most { // 4: the client's retries of one request
		t.Fatalf("check asked Secret Server for a token %d times, want at most %d (one login); stderr:\n%s", n, most, errOut)
	}
}

// TestWallCheckMissingKnownHostsReportsEverything: with ssh.known_hosts
// missing, check still authenticates, resolves every name and inspects
// every host, and reports each problem found, the missing file first.
func TestWallCheckMissingKnownHostsReportsEverything(t *testing.T) {
	a := sshHost(t, accPassword)
	gone := closedAddr(t)
	l := newWallLab(t, []wallSecret{
		{name: "web-root", hosts: []string{a.Addr()}},
		{name: "db-root", hosts: []string{gone}},
	}, "", "")
	for _, f := range []string{"known_hosts", "rotord.db"} {
		if err := os.Remove(l.path(f)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := strings.Replace(readFile(t, l.config), "  - name: db-root\n", "  - name: db-root\n  - name: ghost\n", 1)
	l.write("rotord.yaml", cfg)
	out, errOut, code := l.rotord("check")
	if code != exitFailed {
		t.Fatalf("check: exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"ssh.known_hosts " + l.path("known_hosts") + ": no such file or directory",
		"secret web-root: host " + a.Addr() + ": host key unknown",
		"secret db-root: host " + gone + " unreachable",
		`secret ghost: resolve secret "ghost": secret not found`,
		"problems (4):",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check report lacks %q:\n%s\nstderr:\n%s", want, out, errOut)
		}
	}
	if _, err := os.Stat(l.path("rotord.db")); err == nil {
		t.Error("check created the journal")
	}
}

// TestWallCheckDNSFailureSaidOnce: a Secret Server host name that does not
// resolve is not retried (it will not resolve in a minute either), and the
// report names the cause.
func TestWallCheckDNSFailureSaidOnce(t *testing.T) {
	a := sshHost(t, accPassword)
	l := newWallLab(t, []wallSecret{{name: "web-root", hosts: []string{a.Addr()}}}, a.KnownHostsLine()+"\n", "")
	cfg := strings.Replace(readFile(t, l.config), l.ss.URL, "https://no-such-host.invalid/SecretServer", 1)
	l.write("rotord.yaml", cfg)
	out, errOut, code := l.rotord("check")
	if code != exitFailed {
		t.Fatalf("check: exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, "retried") {
		t.Errorf("a DNS failure was retried:\n%s", errOut)
	}
	if !strings.Contains(out, "no-such-host.invalid") || !strings.Contains(out, "no such host") {
		t.Errorf("check report does not name the cause:\n%s\nstderr:\n%s", out, errOut)
	}
}

// TestWallCheckWrongStoreKey: a store key that does not open the journal's
// sealed passwords is one of check's problems, with the others.
func TestWallCheckWrongStoreKey(t *testing.T) {
	a := sshHost(t, accPassword)
	l := newWallLab(t, []wallSecret{{name: "web-root", hosts: []string{a.Addr()}}}, a.KnownHostsLine()+"\n", "")
	if out, errOut, code := l.rotord("rotate", "web-root"); code != 0 {
		t.Fatalf("rotate: exit %d\n%s\n%s", code, out, errOut)
	}
	if err := os.Remove(l.path("store-key")); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := l.rotord("keygen", l.path("store-key")); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut)
	}
	out, errOut, code := l.rotord("check")
	if code != exitFailed || !strings.Contains(out, "store.path "+l.path("rotord.db")+": ") || !strings.Contains(out, "problems (1):") {
		t.Fatalf("check with another key: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 1 and the journal's problem", code, out, errOut)
	}
}
