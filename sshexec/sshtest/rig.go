// Package sshtest runs real OpenSSH servers on loopback for tests and
// demos of code that changes passwords over SSH.
//
// A Rig starts one sshd per host on 127.0.0.1, each on its own port with
// its own host keys, inside a private mount namespace whose /etc is an
// overlay over the machine's: every host has its own /etc/passwd and
// /etc/shadow, so passwd run through one host changes only that host, and
// its own complete PAM configuration (/etc/pam.d, /etc/security), so the
// machine's PAM stack decides nothing on a host. The machine's own files
// and PAM configuration are never written. A Rig needs root,
// /usr/sbin/sshd and unshare(1); Available says whether it can run.
package sshtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Variant selects the passwd program and policy of a rig host.
type Variant int

// The host variants.
const (
	// Debian: shadow-utils passwd with Debian 12's default PAM stack
	// (pam_unix, yescrypt, no pwquality), whatever the machine's is.
	Debian Variant = iota
	// BusyBox: a setuid BusyBox passwd applet; SHA-512 crypt hashes.
	BusyBox
	// PwQuality: shadow-utils passwd with pam_pwquality enforcing the policy.
	PwQuality
	// Faillock: Debian with pam_faillock in the auth stack: an account is
	// locked (for a day) at its FaillockDeny-th refused password in a row;
	// a password that logs in resets the count. Root is never locked.
	Faillock
)

// String returns the variant's name: debian, busybox or pwquality.
func (v Variant) String() string {
	switch v {
	case Debian:
		return "debian"
	case BusyBox:
		return "busybox"
	case PwQuality:
		return "pwquality"
	case Faillock:
		return "faillock"
	}
	return "variant(" + strconv.Itoa(int(v)) + ")"
}

// HostSpec describes one rig host.
type HostSpec struct {
	Variant Variant
	// KbdInteractiveOnly turns password authentication off, so that only
	// keyboard-interactive is offered.
	KbdInteractiveOnly bool
	// RefusalDelay makes PAM wait this long (pam_faildelay) before it
	// refuses a password: a slow host. Logins that succeed are not delayed.
	RefusalDelay time.Duration
	// EmptyPasswords lets sshd accept an empty password
	// (PermitEmptyPasswords), for accounts ClearPassword left without one.
	EmptyPasswords bool
	// Reach shapes root logins, keys, su and sudo on the host (nil: the
	// rig's defaults).
	Reach *ReachSpec
}

// RigOptions configure StartRig.
type RigOptions struct {
	Dir          string     // working directory for the hosts' files; "" for a new temporary one, removed by Close
	Hosts        []HostSpec // one sshd each
	User         string     // the test account ("rotuser")
	Password     string     // its password on every host; required
	RootPassword string     // if set, root may log in with it (privileged mode)
	Sudo         bool       // the test account may run anything through sudo (needs /usr/bin/sudo)
	BusyBox      string     // a busybox binary with the passwd applet ($ROTORD_BUSYBOX, else /opt/rotord-rig/busybox)
}

// RigHost is the address of a rig host.
type RigHost struct {
	Name    string // 127.0.0.1
	Port    int
	Variant Variant
}

// Addr returns "127.0.0.1:port".
func (h RigHost) Addr() string { return net.JoinHostPort(h.Name, strconv.Itoa(h.Port)) }

// Rig is a set of running sshd hosts. Its methods are safe for concurrent use.
type Rig struct {
	dir, tmpDir string
	opts        RigOptions
	knownHosts  string
	hosts       []*rigHost
}

type rigHost struct {
	RigHost
	dir      string
	keys     []ssh.Signer
	keyFiles []string // private host keys, for sshd_config

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	attempts int
	refused  int           // connections in which sshd logged a failed attempt
	lastFail string        // the client port of the last failed attempt
	counted  chan struct{} // closed and replaced at each counted attempt
	logTail  []string
}

// Available reports why a rig cannot run here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("sshtest: the rig needs root")
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/sbin/chpasswd", "/usr/sbin/useradd"} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("sshtest: %w", err)
		}
	}
	return nil
}

// BusyBoxPath returns the busybox binary the rig uses for BusyBox hosts.
func BusyBoxPath() string {
	if p := os.Getenv("ROTORD_BUSYBOX"); p != "" {
		return p
	}
	return "/opt/rotord-rig/busybox"
}

// VariantAvailable reports what hosts of variant v need and the machine
// lacks, or nil: the BusyBox binary, or the PAM modules and cracklib's
// dictionary (without it pam_pwquality refuses every password). Available
// says whether any rig can run.
func VariantAvailable(v Variant) error {
	need := func(what string, globs ...string) error {
		for _, g := range globs {
			if m, _ := filepath.Glob(g); len(m) > 0 {
				return nil
			}
		}
		return fmt.Errorf("sshtest: %s hosts need %s (%s)", v, what, globs[0])
	}
	switch v {
	case BusyBox:
		if _, err := os.Stat(BusyBoxPath()); err != nil {
			return fmt.Errorf("sshtest: busybox for BusyBox hosts: %w", err)
		}
	case PwQuality:
		if err := need("pam_pwquality (libpam-pwquality)", "/usr/lib/*/security/pam_pwquality.so", "/lib/*/security/pam_pwquality.so"); err != nil {
			return err
		}
		return need("cracklib's dictionary (cracklib-runtime)", "/var/cache/cracklib/cracklib_dict.pwd", "/usr/share/cracklib/pw_dict.pwd")
	case Faillock:
		return need("pam_faillock (libpam-modules)", "/usr/lib/*/security/pam_faillock.so", "/lib/*/security/pam_faillock.so")
	}
	return nil
}

// RequireRig skips tb when the rig cannot run here, but fails it when the
// environment variable CI is "true": there the rig must run.
func RequireRig(tb testing.TB, variants ...Variant) {
	tb.Helper()
	err := Available()
	if err == nil {
		for _, v := range variants {
			if verr := VariantAvailable(v); verr != nil {
				err = verr
			}
		}
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("real sshd rig required under CI: %v", err)
	}
	tb.Skipf("real sshd rig unavailable: %v", err)
}

// StartRig starts the hosts of opts and returns once every sshd listens.
// On error, whatever was started is stopped again.
func StartRig(ctx context.Context, opts RigOptions) (_ *Rig, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	for _, h := range opts.Hosts {
		if err := VariantAvailable(h.Variant); err != nil {
			return nil, err
		}
	}
	if opts.User == "" {
		opts.User = "rotuser"
	}
	if opts.Password == "" {
		return nil, errors.New("sshtest: a password is required")
	}
	if opts.BusyBox == "" {
		opts.BusyBox = BusyBoxPath()
	}
	r := &Rig{opts: opts, dir: opts.Dir}
	if r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "rotord-rig-"); err != nil {
			return nil, fmt.Errorf("sshtest: %w", err)
		}
		r.tmpDir = r.dir
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	// One template /etc overlay per hash method, made by the real useradd
	// and chpasswd: BusyBox cannot verify yescrypt.
	templates := map[bool]string{}
	uid, gid := -1, -1
	for _, h := range opts.Hosts {
		sha := h.Variant == BusyBox
		if _, ok := templates[sha]; ok {
			continue
		}
		dir := filepath.Join(r.dir, "template-"+strconv.FormatBool(sha))
		if uid, gid, err = r.makeTemplate(ctx, dir, sha); err != nil {
			return nil, err
		}
		templates[sha] = dir
	}
	if hasVariant(opts.Hosts, BusyBox) {
		if err := copyFile(opts.BusyBox, filepath.Join(r.dir, "busybox-passwd"), os.ModeSetuid|0o755); err != nil {
			return nil, fmt.Errorf("sshtest: busybox: %w", err)
		}
	}
	for i, spec := range opts.Hosts {
		h, err := r.prepareHost(i, spec, templates[spec.Variant == BusyBox], uid, gid)
		if err != nil {
			return nil, err
		}
		r.hosts = append(r.hosts, h)
	}
	ready := make([]<-chan error, len(r.hosts))
	for i, h := range r.hosts {
		if ready[i], err = r.start(h); err != nil {
			return nil, err
		}
	}
	for i, ch := range ready {
		for moves := 0; ; moves++ {
			var err error
			select {
			case err = <-ch:
			case <-ctx.Done():
				return nil, fmt.Errorf("sshtest: start hosts: %w", ctx.Err())
			}
			if err == nil {
				break
			}
			// Another process took the port since freePort saw it free:
			// move the host to another one.
			if !errors.Is(err, errPortTaken) || moves == 5 {
				return nil, fmt.Errorf("sshtest: host %d: %w", i, err)
			}
			if err := r.assignPort(r.hosts[i], opts.Hosts[i]); err != nil {
				return nil, err
			}
			if ch, err = r.start(r.hosts[i]); err != nil {
				return nil, err
			}
		}
	}
	// The known_hosts file is written once every host has its final port.
	var khLines []string
	for i, h := range r.hosts {
		addr := knownhosts.Normalize(h.Addr())
		if i%2 == 1 {
			addr = knownhosts.HashHostname(addr) // exercise hashed entries
		}
		// Only the ed25519 key is approved; the hosts also offer ECDSA.
		khLines = append(khLines, knownhosts.Line([]string{addr}, h.keys[0].PublicKey()))
	}
	r.knownHosts = filepath.Join(r.dir, "known_hosts")
	if err := os.WriteFile(r.knownHosts, []byte(strings.Join(khLines, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	return r, nil
}

// testHookPortChosen, when set, is told each port chosen for a host.
var testHookPortChosen func(port int)

// errPortTaken is why an sshd that could not bind its port did not start.
var errPortTaken = errors.New("port already in use")

func hasVariant(hs []HostSpec, v Variant) bool {
	for _, h := range hs {
		if h.Variant == v {
			return true
		}
	}
	return false
}

// makeTemplate writes the rig's own accounts and /etc files into dir/upper,
// creates the test account in an overlay of that layer over the machine's
// /etc, with the rig's PAM configuration, and returns its uid and gid.
// Passwords go to chpasswd on stdin.
func (r *Rig) makeTemplate(ctx context.Context, dir string, sha512 bool) (uid, gid int, err error) {
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, 0, fmt.Errorf("sshtest: %w", err)
		}
	}
	if err := writeAccounts(upper); err != nil {
		return 0, 0, fmt.Errorf("sshtest: accounts: %w", err)
	}
	if err := writeTree(upper, etcFiles(sha512), 0o644); err != nil {
		return 0, 0, fmt.Errorf("sshtest: %w", err)
	}
	// UTC, also where tzdata is missing (glibc reads a dangling link as UTC).
	if err := os.Symlink("/usr/share/zoneinfo/Etc/UTC", filepath.Join(upper, "localtime")); err != nil {
		return 0, 0, fmt.Errorf("sshtest: %w", err)
	}
	if err := writeConfig(dir, Debian, 0); err != nil {
		return 0, 0, fmt.Errorf("sshtest: %w", err)
	}
	method := ""
	if sha512 {
		method = "-c SHA512"
	}
	script := `mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc
mount --bind "$4/pam.d" /etc/pam.d
mount --bind "$4/security" /etc/security
useradd -M -d "/home/$3" -s /bin/sh "$3"
chpasswd ` + method + `
id -u "$3"; id -g "$3"`
	cmd := exec.CommandContext(ctx, "/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", script, "sh", upper, work, r.opts.User, dir)
	in := r.opts.User + ":" + r.opts.Password + "\n"
	if r.opts.RootPassword != "" {
		in += "root:" + r.opts.RootPassword + "\n"
	}
	cmd.Stdin = strings.NewReader(in)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("sshtest: create test account: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("sshtest: create test account: unexpected output %q", out)
	}
	uid, _ = strconv.Atoi(f[0])
	gid, _ = strconv.Atoi(f[1])
	return uid, gid, nil
}

// prepareHost writes host i's files: its /etc layer, PAM configuration,
// home, root's home, keys and sshd_config.
func (r *Rig) prepareHost(i int, spec HostSpec, template string, uid, gid int) (*rigHost, error) {
	dir, err := filepath.Abs(filepath.Join(r.dir, fmt.Sprintf("host-%03d", i)))
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if strings.ContainsAny(dir, " \t\n[]") {
		// PAM module arguments name the host's tally directory.
		return nil, fmt.Errorf("sshtest: rig directory %q: PAM arguments cannot hold it", dir)
	}
	upper := filepath.Join(dir, "upper")
	home := filepath.Join(dir, "home", r.opts.User)
	for _, d := range []string{filepath.Join(dir, "work"), home, filepath.Join(dir, "faillock"), filepath.Join(dir, "sudo")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("sshtest: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "root"), 0o700); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := copyTree(filepath.Join(template, "upper"), upper); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := writeConfig(dir, spec.Variant, spec.RefusalDelay.Microseconds()); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	// The rig's own sudoers: no rule of the machine's applies, and sudo
	// keeps its state in the host's directory and asks every time.
	sudoers := "Defaults	env_reset\n" +
		"Defaults	secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n" +
		"Defaults	timestamp_timeout=0, lecture=never, !requiretty\n" +
		"Defaults	timestampdir=" + filepath.Join(dir, "sudo", "ts") + "\n" +
		"Defaults	lecture_status_dir=" + filepath.Join(dir, "sudo", "lectured") + "\n" +
		"root	ALL=(ALL:ALL) ALL\n"
	sudoers += sudoRules(r.opts, spec)
	if err := writeFile(filepath.Join(upper, "sudoers"), sudoers, 0o440); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := r.prepareReach(dir, spec, uid, gid); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	h := &rigHost{RigHost: RigHost{Name: "127.0.0.1", Variant: spec.Variant}, dir: dir}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	for _, k := range []struct {
		name string
		key  any
	}{{"ssh_host_ed25519_key", edKey}, {"ssh_host_ecdsa_key", ecKey}} {
		block, err := ssh.MarshalPrivateKey(k.key, "")
		if err != nil {
			return nil, fmt.Errorf("sshtest: %w", err)
		}
		p := filepath.Join(dir, k.name)
		if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, fmt.Errorf("sshtest: %w", err)
		}
		s, err := ssh.NewSignerFromKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("sshtest: %w", err)
		}
		h.keys = append(h.keys, s)
		h.keyFiles = append(h.keyFiles, p)
	}
	if err := r.assignPort(h, spec); err != nil {
		return nil, err
	}
	return h, nil
}

// assignPort gives h a free port and writes its sshd_config for it.
func (r *Rig) assignPort(h *rigHost, spec HostSpec) error {
	var err error
	if h.Port, err = freePort(); err != nil {
		return err
	}
	if testHookPortChosen != nil {
		testHookPortChosen(h.Port)
	}
	passwordAuth := "yes"
	if spec.KbdInteractiveOnly {
		passwordAuth = "no"
	}
	permitEmpty := "no"
	if spec.EmptyPasswords {
		permitEmpty = "yes"
	}
	permitRoot := "no"
	if r.opts.RootPassword != "" {
		permitRoot = "yes"
	}
	conf := sshdReach(spec) + fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
HostKey %s
PidFile none
UsePAM yes
PasswordAuthentication %s
KbdInteractiveAuthentication yes
PubkeyAuthentication no
PermitRootLogin %s
PermitEmptyPasswords %s
LogLevel VERBOSE
MaxStartups 1000
MaxSessions 100
MaxAuthTries 6
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
`, h.Port, h.keyFiles[0], h.keyFiles[1], passwordAuth, permitRoot, permitEmpty)
	if err := os.WriteFile(filepath.Join(h.dir, "sshd_config"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago, chosen
// outside the kernel's ephemeral range when it can be: a port from that
// range can be taken, between this check and sshd's bind, as the source
// port of any outgoing connection on the machine (other test processes
// open hundreds). A port that is taken anyway shows as "Address already
// in use" when sshd starts, and StartRig moves the host to another one.
func freePort() (int, error) {
	lo := ephemeralLow()
	const floor = 10000 // clear of the well-known and registered services people run
	if lo-floor >= 1000 {
		for range 50 {
			port := floor + mrand.IntN(lo-floor)
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue
			}
			l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("sshtest: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow returns the lowest of the kernel's source ports for
// outgoing connections (Linux's default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return lo
}

// copyTree copies the regular files, directories and symbolic links under
// src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(to, fi.Mode().Perm())
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case e.Type().IsRegular():
			return copyFile(p, to, fi.Mode().Perm())
		}
		return nil // overlay whiteouts and the like: nothing of the template's
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode) // WriteFile's mode is masked and drops setuid
}

// authRe matches sshd's log line for each password or keyboard-interactive
// authentication attempt (LogLevel VERBOSE).
var authRe = regexp.MustCompile(`(Accepted|Failed) (password|keyboard-interactive\S*) for `)

// portRe finds the client's port in sshd's log line.
var portRe = regexp.MustCompile(` port \d+ `)

// start launches host h's sshd in a new mount namespace; the returned
// channel yields nil once it listens, or why it did not.
func (r *Rig) start(h *rigHost) (<-chan error, error) {
	script := `mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
mount --bind "$1/pam.d" /etc/pam.d
mount --bind "$1/security" /etc/security
mount --bind "$1/home" /home
mount --bind "$1/root" /root
if [ -n "$2" ]; then mount --bind "$2" /usr/bin/passwd; fi
exec /usr/sbin/sshd -D -e -f "$1/sshd_config"`
	bb := ""
	if h.Variant == BusyBox {
		bb = filepath.Join(r.dir, "busybox-passwd")
	}
	cmd := exec.Command("/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", script, "sh", h.dir, bb)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(h.dir, "sshd.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("sshtest: start sshd: %w", err)
	}
	ready := make(chan error, 1)
	exited := make(chan struct{})
	h.mu.Lock()
	h.cmd, h.exited = cmd, exited
	h.logTail = nil // a new sshd: why an earlier one stopped is not its story
	h.mu.Unlock()
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(stderr)
		listening := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			h.mu.Lock()
			if m := authRe.FindStringSubmatch(line); m != nil {
				h.attempts++
				// A client whose password was refused may go on with
				// keyboard-interactive rounds that ask nothing (pam_faillock's
				// preauth on a locked account): one refused login.
				if port := portRe.FindString(line); m[1] == "Failed" && (port == "" || port != h.lastFail) {
					h.refused++
					h.lastFail = port
				}
				if h.counted != nil {
					close(h.counted)
					h.counted = nil
				}
			}
			h.logTail = append(h.logTail, line)
			if len(h.logTail) > 20 {
				h.logTail = h.logTail[1:]
			}
			h.mu.Unlock()
			if !listening && strings.Contains(line, "Server listening on") {
				listening = true
				ready <- nil
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		err := cmd.Wait()
		if !listening {
			h.mu.Lock()
			tail := strings.Join(h.logTail, "; ")
			h.mu.Unlock()
			if strings.Contains(tail, "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			ready <- fmt.Errorf("sshd exited before listening (%w): %s", err, tail)
		}
		close(exited)
	}()
	return ready, nil
}

// Hosts returns the rig's hosts, in the order of RigOptions.Hosts.
func (r *Rig) Hosts() []RigHost {
	hs := make([]RigHost, len(r.hosts))
	for i, h := range r.hosts {
		hs[i] = h.RigHost
	}
	return hs
}

// KnownHostsFile returns a known_hosts file approving every host's ed25519
// key (half of the entries hashed). The hosts also offer an ECDSA key,
// which the file does not hold.
func (r *Rig) KnownHostsFile() string { return r.knownHosts }

// HostKey returns host i's ed25519 public key.
func (r *Rig) HostKey(i int) ssh.PublicKey { return r.hosts[i].keys[0].PublicKey() }

// Dir returns the rig's working directory (each host's sshd.log is in
// host-NNN/ there).
func (r *Rig) Dir() string { return r.dir }

// pids returns the pid of host h's sshd and of all its descendants.
func (h *rigHost) pids() []int {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	root := cmd.Process.Pid
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func (r *Rig) signal(i int, sig syscall.Signal) error {
	for _, pid := range r.hosts[i].pids() {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("sshtest: signal host %d: %w", i, err)
		}
	}
	return nil
}

// Process is a process running on a rig host.
type Process struct {
	Pid  int
	Args []string // its command line
	Env  []string // its environment
}

// Processes returns host i's sshd and every process it runs, with their
// command lines and environments: what anyone on the host could see.
func (r *Rig) Processes(i int) ([]Process, error) {
	var ps []Process
	for _, pid := range r.hosts[i].pids() {
		dir := "/proc/" + strconv.Itoa(pid)
		args, err := os.ReadFile(dir + "/cmdline")
		if err != nil {
			continue // exited meanwhile
		}
		env, err := os.ReadFile(dir + "/environ")
		if err != nil {
			continue
		}
		ps = append(ps, Process{Pid: pid, Args: splitNUL(args), Env: splitNUL(env)})
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("sshtest: host %d runs no process", i)
	}
	return ps, nil
}

func splitNUL(b []byte) []string {
	s := strings.TrimRight(string(b), "\x00")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// PauseHost stops host i's sshd and everything it runs (SIGSTOP): the
// host stalls mid-dialogue, its connections stay open.
func (r *Rig) PauseHost(i int) error { return r.signal(i, syscall.SIGSTOP) }

// ResumeHost continues a paused host.
func (r *Rig) ResumeHost(i int) error { return r.signal(i, syscall.SIGCONT) }

// StopHost kills host i's sshd and its sessions and waits until it is
// gone; its mount namespace goes with it. Its files are kept for StartHost.
func (r *Rig) StopHost(i int) error {
	h := r.hosts[i]
	h.mu.Lock()
	cmd, exited := h.cmd, h.exited
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pids := h.pids()
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	h.mu.Lock()
	h.cmd = nil
	h.mu.Unlock()
	return nil
}

// StartHost starts a stopped host again on the same port, with the
// passwords it had.
func (r *Rig) StartHost(ctx context.Context, i int) error {
	h := r.hosts[i]
	h.mu.Lock()
	running := h.cmd != nil
	h.mu.Unlock()
	if running {
		return nil
	}
	ready, err := r.start(h)
	if err != nil {
		return err
	}
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("sshtest: host %d: %w", i, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sshtest: start host %d: %w", i, ctx.Err())
	}
}

// SetPassword sets the test account's password on running host i, behind
// the back of whatever is under test (chpasswd in the host's namespace,
// the password on its stdin).
func (r *Rig) SetPassword(i int, pw string) error {
	h := r.hosts[i]
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("sshtest: host %d is stopped", i)
	}
	args := []string{"-t", strconv.Itoa(cmd.Process.Pid), "-m", "/usr/sbin/chpasswd"}
	if h.Variant == BusyBox {
		args = append(args, "-c", "SHA512")
	}
	c := exec.Command("/usr/bin/nsenter", args...)
	c.Stdin = strings.NewReader(r.opts.User + ":" + pw + "\n")
	c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("sshtest: set password on host %d: %w: %s", i, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ShadowLine returns the test account's line of host i's /etc/shadow.
func (r *Rig) ShadowLine(i int) (string, error) { return r.ShadowEntry(i, r.opts.User) }

// ShadowEntry returns user's line of host i's /etc/shadow (root's is the
// rig's: the machine's root password never reaches a host).
func (r *Rig) ShadowEntry(i int, user string) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.hosts[i].dir, "upper", "shadow"))
	if err != nil {
		return "", fmt.Errorf("sshtest: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, user+":") {
			return l, nil
		}
	}
	return "", fmt.Errorf("sshtest: host %d: no shadow entry for %s", i, user)
}

// ClearPassword leaves the test account on running host i without a
// password (passwd -d in the host's namespace): passwd then asks it no
// current password, and with HostSpec.EmptyPasswords sshd lets it log in
// with an empty one.
func (r *Rig) ClearPassword(i int) error {
	h := r.hosts[i]
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("sshtest: host %d is stopped", i)
	}
	c := exec.Command("/usr/bin/nsenter", "-t", strconv.Itoa(cmd.Process.Pid), "-m", "/usr/bin/passwd", "-d", r.opts.User)
	c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("sshtest: clear password on host %d: %w: %s", i, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// AuthAttempts returns how many password or keyboard-interactive
// authentications host i's sshd has logged since the rig started.
func (r *Rig) AuthAttempts(i int) int {
	h := r.hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attempts
}

// RefusedLogins returns in how many connections host i's sshd has logged a
// failed password or keyboard-interactive authentication since the rig
// started, for any account (see WaitAuthAttempts for when they show). On
// a Faillock host, FaillockCount is what decides a lockout.
func (r *Rig) RefusedLogins(i int) int {
	h := r.hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused
}

// PAMRefusals returns how many passwords host i's PAM has refused since
// the rig started, for any service (sshd, su, sudo) and account: what
// pam_faillock counts, su and sudo included, which sshd's log
// (RefusedLogins) does not show. Each refusal is noted before PAM
// answers, so it is counted once the program that asked has its answer.
func (r *Rig) PAMRefusals(i int) (int, error) {
	b, err := os.ReadFile(filepath.Join(r.hosts[i].dir, refusalLog))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sshtest: %w", err)
	}
	return strings.Count(string(b), "\n"), nil
}

// faillockRecord is the size of one record of pam_faillock's tally file:
// source[52], reserved uint16, status uint16, time uint64.
const faillockRecord = 64

// FaillockCount returns how many refused passwords in a row pam_faillock
// holds against user on Faillock host i (its valid tally records): the
// account is locked once it reaches FaillockDeny. A login that succeeds
// resets it to 0. It reads the tally in the host's own directory.
func (r *Rig) FaillockCount(i int, user string) (int, error) {
	h := r.hosts[i]
	if h.Variant != Faillock {
		return 0, fmt.Errorf("sshtest: host %d is %s, not faillock", i, h.Variant)
	}
	if !userNameRe.MatchString(user) {
		return 0, fmt.Errorf("sshtest: invalid user name %q", user)
	}
	b, err := os.ReadFile(filepath.Join(h.dir, "faillock", user))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sshtest: %w", err)
	}
	n := 0
	for off := 0; off+faillockRecord <= len(b); off += faillockRecord {
		status := binary.NativeEndian.Uint16(b[off+54:])
		if status&1 != 0 { // TALLY_STATUS_VALID
			n++
		}
	}
	return n, nil
}

// ResetFaillock clears pam_faillock's tally of user on Faillock host i,
// unlocking the account (faillock --reset).
func (r *Rig) ResetFaillock(i int, user string) error {
	h := r.hosts[i]
	if h.Variant != Faillock {
		return fmt.Errorf("sshtest: host %d is %s, not faillock", i, h.Variant)
	}
	if !userNameRe.MatchString(user) {
		return fmt.Errorf("sshtest: invalid user name %q", user)
	}
	if err := os.Remove(filepath.Join(h.dir, "faillock", user)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sshtest: %w", err)
	}
	return nil
}

// userNameRe accepts account names that are safe as a file name.
var userNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)

// WaitAuthAttempts waits until host i's sshd has logged at least n
// password or keyboard-interactive authentications (sshd may log an
// attempt just after the client saw its result) and returns the count.
func (r *Rig) WaitAuthAttempts(ctx context.Context, i, n int) (int, error) {
	h := r.hosts[i]
	for {
		h.mu.Lock()
		got := h.attempts
		if got >= n {
			h.mu.Unlock()
			return got, nil
		}
		if h.counted == nil {
			h.counted = make(chan struct{})
		}
		ch := h.counted
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return got, fmt.Errorf("sshtest: host %d: %d authentication attempts, waiting for %d: %w", i, got, n, ctx.Err())
		}
	}
}

// Close stops every host and removes the rig's directory if StartRig
// created it. The hosts' mounts vanish with their namespaces.
func (r *Rig) Close() error {
	var errs []error
	for i := range r.hosts {
		_ = r.ResumeHost(i)
		errs = append(errs, r.StopHost(i))
	}
	if r.tmpDir != "" {
		errs = append(errs, os.RemoveAll(r.tmpDir))
	}
	return errors.Join(errs...)
}
