package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver/sstest"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/sshexec/sshtest"
)

const (
	labUser     = "rotuser"
	labPassword = "Initial-Pw-2024"
	ssUser      = "svc-rotord"
	ssPassword  = "Lab-Svc-Pw-1!" // the emulator's account; lives only in the lab directory
)

// demo is one run of the lab.
type demo struct {
	rotord    string
	keep      bool
	inProcess bool
	out       io.Writer

	dir    string
	config string
	ss     *sstest.Server
	hosts  hostSet
	ids    map[string]int // secret name → emulator id
	groups map[string][]int
	dialer *sshexec.Dialer
	step   int
	steps  int

	// suHost is a real host refusing root logins (PermitRootLogin no),
	// whose root password is rotated through su; nil where real hosts or
	// su cannot run.
	suHost *sshtest.Rig
}

// hostSet is the lab's SSH hosts, real or in-process.
type hostSet interface {
	Addrs() []string
	KnownHosts() (string, error) // a known_hosts file's content
	Describe() string
	Close() error
}

// baseSteps is the number of the demo's steps without the su host.
const baseSteps = 6

// labRootPassword is root's first password on the su host.
const labRootPassword = "Lab-Root-Pw-2024"

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	if _, err := os.Stat(d.rotord); err != nil {
		return fmt.Errorf("rotord binary: %w (run `make build` first)", err)
	}
	dir, err := os.MkdirTemp("", "rotord-lab-")
	if err != nil {
		return err
	}
	d.dir = dir
	defer func() {
		if d.keep {
			fmt.Fprintf(d.out, "lab kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	if err := d.setUp(ctx); err != nil {
		return err
	}
	defer d.ss.Close()
	defer d.hosts.Close()
	if d.suHost != nil {
		defer d.suHost.Close()
	}

	fmt.Fprintf(d.out, "rotord demo lab\n  Secret Server emulator: %s (TLS with the lab's own CA)\n  hosts: %s\n  secrets: web-root on hosts 1-3, db-root on hosts 4-5 (account %s)\n",
		d.ss.URL, d.hosts.Describe(), labUser)

	if err := d.stepCheck(ctx); err != nil {
		return err
	}
	if err := d.stepRotate(ctx); err != nil {
		return err
	}
	if err := d.stepHistory(ctx, "rotord history — the journal of every rotation, newest first (no passwords: they are sealed)", "history"); err != nil {
		return err
	}
	if err := d.stepFailedRotation(ctx); err != nil {
		return err
	}
	if err := d.stepRollback(ctx); err != nil {
		return err
	}
	if err := d.stepHistory(ctx, "rotord history web-root — the rotation, the reverted one and the rollback, as the journal recorded them", "history", "web-root"); err != nil {
		return err
	}
	if d.suHost != nil {
		if err := d.stepRootThroughSu(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(d.out, "\ndemo finished in %.1fs; every step checked by logging into the hosts. The lab is cleaned up.\n", time.Since(start).Seconds())
	return nil
}

// setUp starts the hosts and the emulator and writes the lab's files.
func (d *demo) setUp(ctx context.Context) error {
	var err error
	if !d.inProcess && sshtest.Available() == nil {
		d.hosts, err = startRealHosts(ctx, filepath.Join(d.dir, "hosts"))
		if err != nil {
			fmt.Fprintf(d.out, "note: real sshd hosts did not start (%v); using in-process SSH hosts with an emulated passwd.\n\n", err)
			d.hosts, err = startInProcessHosts()
		}
	} else {
		why := "requested with -in-process"
		if !d.inProcess {
			why = sshtest.Available().Error()
		}
		fmt.Fprintf(d.out, "note: real sshd hosts cannot run here (%s); using in-process SSH hosts with an emulated passwd.\n\n", why)
		d.hosts, err = startInProcessHosts()
	}
	if err != nil {
		return fmt.Errorf("start hosts: %w", err)
	}
	d.steps = baseSteps
	if mh, ok := d.hosts.(*mixedHosts); ok && mh.rig != nil {
		_, errSu := os.Stat("/usr/bin/su")
		_, errPerl := os.Stat("/usr/bin/perl") // PasswordWorks checks root's password without a login
		if errSu == nil && errPerl == nil {
			d.suHost, err = sshtest.StartRig(ctx, sshtest.RigOptions{Dir: filepath.Join(d.dir, "hosts-su"),
				Hosts: []sshtest.HostSpec{{Variant: sshtest.Debian, Reach: &sshtest.ReachSpec{PermitRootLogin: "no"}}},
				User:  labUser, Password: labPassword, RootPassword: labRootPassword})
			if err != nil {
				fmt.Fprintf(d.out, "note: the host refusing root logins did not start (%v); the su step is left out.\n\n", err)
				d.suHost = nil
			} else {
				d.steps++
			}
		}
	}
	d.ss = sstest.New()
	d.ss.AddUser(ssUser, "", ssPassword)
	addrs := d.hosts.Addrs()
	d.ids = map[string]int{}
	d.groups = map[string][]int{"web-root": {0, 1, 2}, "db-root": {3, 4}}
	for name, idx := range d.groups {
		var hs []string
		for _, i := range idx {
			hs = append(hs, addrs[i])
		}
		d.ids[name] = d.ss.AddSecret(sstest.SecretSeed{Name: name, Folder: `\Lab\Linux`, Username: labUser,
			Password: labPassword, Notes: strings.Join(hs, ", ")})
	}
	kh, err := d.hosts.KnownHosts()
	if err != nil {
		return err
	}
	suSecrets := ""
	if d.suHost != nil {
		h := d.suHost.Hosts()[0]
		d.ids["hardened-root"] = d.ss.AddSecret(sstest.SecretSeed{Name: "hardened-root", Folder: `\Lab\Linux`, Username: "root",
			Password: labRootPassword, Notes: h.Addr()})
		skh, err := os.ReadFile(d.suHost.KnownHostsFile())
		if err != nil {
			return err
		}
		kh += string(skh)
		suSecrets = fmt.Sprintf("  - name: hardened-root\n    escalation: su\n    logon:\n      user: %s\n      password_file: %s\n",
			labUser, filepath.Join(d.dir, "logon-password"))
	}
	files := map[string]string{
		"known_hosts":    kh,
		"ca.pem":         string(d.ss.CACertPEM()),
		"ss-password":    ssPassword + "\n",
		"logon-password": labPassword + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d.dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	d.config = filepath.Join(d.dir, "rotord.yaml")
	cfg := fmt.Sprintf(`# the lab's rotord configuration
secret_server:
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
  step_timeout: 10s
schedule: "@weekly"
jitter: 0s
password:
  length: 24
metrics:
  listen: ""
secrets:
  - name: web-root
  - name: db-root
%s`, d.ss.URL, ssUser, filepath.Join(d.dir, "ss-password"), filepath.Join(d.dir, "ca.pem"),
		filepath.Join(d.dir, "token.cache"), filepath.Join(d.dir, "rotord.db"), filepath.Join(d.dir, "store-key"),
		filepath.Join(d.dir, "known_hosts"), suSecrets)
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		return err
	}
	if _, code, err := d.rotordRun(ctx, "keygen", filepath.Join(d.dir, "store-key")); err != nil || code != 0 {
		return fmt.Errorf("rotord keygen: exit %d: %v", code, err)
	}
	sc := sshexec.DefaultConfig()
	sc.KnownHosts, sc.StepTimeout = filepath.Join(d.dir, "known_hosts"), 10*time.Second
	d.dialer, err = sshexec.New(sc, nil)
	return err
}

// rotordRun runs the rotord binary with the lab's config and returns what
// it printed and its exit status.
func (d *demo) rotordRun(ctx context.Context, args ...string) (string, int, error) {
	cmd := exec.CommandContext(ctx, d.rotord, append([]string{"--config", d.config, "--log-level", "warn"}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return buf.String(), ee.ExitCode(), nil
	}
	if err != nil {
		return buf.String(), -1, err
	}
	return buf.String(), 0, nil
}

// show runs rotord, prints the command and its output indented, and
// checks its exit status.
func (d *demo) show(ctx context.Context, wantCode int, args ...string) error {
	fmt.Fprintf(d.out, "  $ rotord %s\n", strings.Join(args, " "))
	out, code, err := d.rotordRun(ctx, args...)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		fmt.Fprintf(d.out, "    %s\n", line)
	}
	fmt.Fprintf(d.out, "    (exit status %d)\n", code)
	if code != wantCode {
		return fmt.Errorf("rotord %s: exit status %d, want %d", strings.Join(args, " "), code, wantCode)
	}
	return nil
}

func (d *demo) header(what string) {
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] %s\n", d.step, d.steps, what)
}

// expect checks, by logging in, that the password Secret Server holds for
// the secret works on each of its hosts, and that none of not does.
func (d *demo) expect(ctx context.Context, name string, not ...string) (string, error) {
	pw := d.ss.Field(d.ids[name], "password")
	addrs := d.hosts.Addrs()
	for _, i := range d.groups[name] {
		h, err := hostOf(addrs[i])
		if err != nil {
			return "", err
		}
		if err := d.login(ctx, h, pw); err != nil {
			return "", fmt.Errorf("%s: host %s does not take the password Secret Server holds: %w", name, addrs[i], err)
		}
		for _, n := range not {
			if n != pw && d.login(ctx, h, n) == nil {
				return "", fmt.Errorf("%s: host %s still takes a superseded password", name, addrs[i])
			}
		}
	}
	return pw, nil
}

func (d *demo) login(ctx context.Context, h rotation.Host, pw string) error {
	s, err := d.dialer.Login(ctx, h, labUser, secret.New(pw))
	if err != nil {
		return err
	}
	return s.Close()
}

func (d *demo) stepCheck(ctx context.Context) error {
	d.header("rotord check — validates the config, logs into Secret Server, resolves each name, lists hosts with their key status; prints no password")
	return d.show(ctx, 0, "check")
}

var rotated = map[string]string{} // secret → password before the last committed rotation

func (d *demo) stepRotate(ctx context.Context) error {
	d.header("rotord rotate — per secret: pre-flight every host, journal the new password sealed, passwd on every host by its prompts, verify by a fresh login, write Secret Server")
	if err := d.show(ctx, 0, "rotate", "web-root", "db-root"); err != nil {
		return err
	}
	for _, name := range []string{"web-root", "db-root"} {
		pw, err := d.expect(ctx, name, labPassword)
		if err != nil {
			return err
		}
		if pw == labPassword {
			return fmt.Errorf("%s: Secret Server still holds the first password", name)
		}
		rotated[name] = labPassword
		fmt.Fprintf(d.out, "  checked: %s's new password (from Secret Server) logs into all %d hosts; the old one is refused\n", name, len(d.groups[name]))
	}
	return nil
}

func (d *demo) stepHistory(ctx context.Context, what string, args ...string) error {
	d.header(what)
	return d.show(ctx, 0, args...)
}

func (d *demo) stepFailedRotation(ctx context.Context) error {
	d.header("a failed rotation reverts — Secret Server refuses to store the new password (the lab injects HTTP 500s), so rotord puts every host back")
	before := d.ss.Field(d.ids["web-root"], "password")
	d.ss.FailNext(sstest.EndpointPutField, 1000, 500, `{"errorCode":"API_InternalError","message":"The database is unavailable."}`)
	err := d.show(ctx, 1, "rotate", "web-root")
	d.ss.FailNext(sstest.EndpointPutField, 0, 0, "")
	if err != nil {
		return err
	}
	pw, err := d.expect(ctx, "web-root")
	if err != nil {
		return err
	}
	if pw != before {
		return errors.New("web-root: Secret Server's password changed although the rotation failed")
	}
	fmt.Fprintln(d.out, "  checked: Secret Server still holds the password from step 2, and it still logs into every host")
	return nil
}

func (d *demo) stepRollback(ctx context.Context) error {
	d.header("rotord rollback web-root — restores the password from before the last rotation, on every host and in Secret Server, as a journaled rotation")
	current := d.ss.Field(d.ids["web-root"], "password")
	if err := d.show(ctx, 0, "rollback", "web-root"); err != nil {
		return err
	}
	pw, err := d.expect(ctx, "web-root", current)
	if err != nil {
		return err
	}
	if pw != rotated["web-root"] {
		return errors.New("web-root: the rollback did not restore the earlier password")
	}
	fmt.Fprintln(d.out, "  checked: the first password is back in Secret Server and logs into all 3 hosts; the rotated one is refused")
	return nil
}

// stepRootThroughSu rotates root's password on a host that refuses root
// logins: the logon account logs in, su - root answers with root's
// current password, passwd runs as root, and the new password is proven
// with su root -c true from a fresh logon session.
func (d *demo) stepRootThroughSu(ctx context.Context) error {
	d.header("rotord rotate hardened-root — root on a host with PermitRootLogin no: " + labUser + " logs in, su - root with root's current password, passwd as root, verified by su root -c true")
	if err := d.show(ctx, 0, "rotate", "hardened-root"); err != nil {
		return err
	}
	pw := d.ss.Field(d.ids["hardened-root"], "password")
	if pw == labRootPassword {
		return errors.New("hardened-root: Secret Server still holds root's first password")
	}
	if ok, err := d.suHost.PasswordWorks(0, "root", pw); err != nil || !ok {
		return fmt.Errorf("hardened-root: root's new password is not the host's (%v)", err)
	}
	if ok, _ := d.suHost.PasswordWorks(0, "root", labRootPassword); ok {
		return errors.New("hardened-root: root's first password still works")
	}
	fmt.Fprintln(d.out, "  checked: root's new password (from Secret Server) is the host's; the first one no longer is; root never logged in over SSH")
	return nil
}
