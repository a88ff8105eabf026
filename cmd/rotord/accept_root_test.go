package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// accRootPassword is root's first password on the root lab's hosts.
const accRootPassword = "Acc-Root-Pw-5520"

// newRootLab is a lab whose one secret, "hosts-root", holds root's
// password on every host of variants: root may log in with a password on
// each host's own sshd, and each host's root entry is the rig's.
func newRootLab(t *testing.T, ctx context.Context, variants ...sshtest.Variant) *lab {
	t.Helper()
	sshtest.RequireRig(t, variants...)
	l := &lab{t: t, dir: t.TempDir(), ids: map[string]int{}, groups: map[string][]int{}}
	specs := make([]sshtest.HostSpec, len(variants))
	for i, v := range variants {
		specs[i] = sshtest.HostSpec{Variant: v}
		l.groups["hosts-root"] = append(l.groups["hosts-root"], i)
	}
	rig, err := sshtest.StartRig(ctx, sshtest.RigOptions{Dir: filepath.Join(l.dir, "hosts"), Hosts: specs,
		User: accUser, Password: accPassword, RootPassword: accRootPassword})
	if err != nil {
		t.Fatalf("start rig: %v", err)
	}
	t.Cleanup(func() { _ = rig.Close() })
	l.rig = rig
	l.ss = sstest.New()
	t.Cleanup(l.ss.Close)
	l.ss.AddUser(accSSUser, "", accSSPassword)
	var hs []string
	for _, h := range rig.Hosts() {
		hs = append(hs, h.Addr())
	}
	l.ids["hosts-root"] = l.ss.AddSecret(sstest.SecretSeed{Name: "hosts-root", Folder: `\Lab\Linux`, Username: "root",
		Password: accRootPassword, Notes: strings.Join(hs, ", ")})
	l.write("ca.pem", string(l.ss.CACertPEM()))
	l.write("ss-password", accSSPassword+"\n")
	kh, err := os.ReadFile(rig.KnownHostsFile())
	if err != nil {
		t.Fatal(err)
	}
	l.write("known_hosts", string(kh))
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
  connect_timeout: 30s
  step_timeout: 30s
schedule: "@weekly"
jitter: 0s
metrics:
  listen: ""
secrets:
  - name: hosts-root
`, l.ss.URL, accSSUser, l.path("ss-password"), l.path("ca.pem"), l.path("token.cache"), l.path("rotord.db"),
		l.path("store-key"), l.path("known_hosts")))
	if _, errOut, code := runBin(t, nil, "keygen", l.path("store-key")); code != 0 {
		t.Fatalf("rotord keygen: exit %d: %s", code, errOut)
	}
	l.dialer, err = sshexec.New(sshexec.Config{KnownHosts: rig.KnownHostsFile(), StepTimeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestAcceptRotateRoot: `rotord rotate` changes root's own password on
// shadow-utils and BusyBox hosts (passwd asks root no current password):
// the rotation commits, what Secret Server stores logs in as root on every
// host, root's old password no longer does, each host's own root entry
// changed and the machine's did not.
func TestAcceptRotateRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newRootLab(t, ctx, sshtest.Debian, sshtest.BusyBox, sshtest.Debian)
	machine, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	var before []string
	for i := range l.rig.Hosts() {
		e, err := l.rig.ShadowEntry(i, "root")
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, e)
	}
	out, errOut, code := l.rotord("rotate", "hosts-root")
	if code != 0 {
		t.Fatalf("rotord rotate: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	l.noSecrets(out+errOut, accRootPassword)
	stored := l.password("hosts-root")
	if stored == accRootPassword {
		t.Fatal("Secret Server still holds root's first password")
	}
	rootLogsIn := func(i int, pw string) bool {
		h := l.rig.Hosts()[i]
		return l.dialer.Verify(ctx, rotation.Host{Name: h.Name, Port: h.Port}, "root", secret.New(pw)) == nil
	}
	for i := range l.rig.Hosts() {
		if !rootLogsIn(i, stored) {
			t.Errorf("host %d: the password Secret Server stores does not log in as root", i)
		}
		if rootLogsIn(i, accRootPassword) {
			t.Errorf("host %d: root's first password still logs in", i)
		}
		e, err := l.rig.ShadowEntry(i, "root")
		if err != nil {
			t.Fatal(err)
		}
		if e == before[i] {
			t.Errorf("host %d: root's shadow entry did not change", i)
		}
	}
	hist := l.history("hosts-root")
	if len(hist) != 1 || hist[0].State != string(rotation.StateCommitted) {
		t.Fatalf("history %+v; want one committed rotation", hist)
	}
	now, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	if string(now) != string(machine) {
		t.Fatal("the machine's own /etc/shadow changed")
	}
}
