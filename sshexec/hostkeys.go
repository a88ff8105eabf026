package sshexec

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/rotation"
)

// HostKeyError reports a host key that known_hosts does not hold: unknown
// (Known false) or different from the one recorded (Known true). It
// satisfies errors.Is(err, rotation.ErrHostKey). No password was sent.
type HostKeyError struct {
	Host        string // the address as known_hosts writes it: host or [host]:port
	KeyType     string // the key type the host presented, e.g. ssh-ed25519 (or the types it offered)
	Fingerprint string // SHA256:... of the presented key; "" when it offered none of the known types
	Known       bool   // true: known_hosts holds another key for the host (changed)
	Revoked     bool   // the presented key is marked @revoked in known_hosts
	KnownHosts  string // the known_hosts file consulted
}

// Error names the host, the key it presented and how to approve it.
func (e *HostKeyError) Error() string {
	scan := e.Host // "[name]:port" becomes "name:port"; an IPv6 address keeps its brackets
	if h, p, err := net.SplitHostPort(scan); err == nil && strings.HasPrefix(scan, "[") && !strings.Contains(h, ":") {
		scan = h + ":" + p
	}
	if e.Revoked {
		return fmt.Sprintf("host key of %s is revoked in %s: it presented %s %s; ask the host's administrator for its new key",
			e.Host, e.KnownHosts, e.KeyType, e.Fingerprint)
	}
	if e.Fingerprint == "" {
		return fmt.Sprintf("host key of %s changed: it offers only %s, none of the key types %s holds for it; "+
			"if the change is legitimate, run `rotord hostkeys scan %s` and add the key to %s",
			e.Host, e.KeyType, e.KnownHosts, scan, e.KnownHosts)
	}
	if e.Known {
		return fmt.Sprintf("host key of %s changed: it presented %s %s, which %s does not hold for it; "+
			"if the change is legitimate, remove the old entry, run `rotord hostkeys scan %s` and add the key to %s",
			e.Host, e.KeyType, e.Fingerprint, e.KnownHosts, scan, e.KnownHosts)
	}
	return fmt.Sprintf("host key of %s is unknown: it presented %s %s; "+
		"run `rotord hostkeys scan %s` and add the key to %s",
		e.Host, e.KeyType, e.Fingerprint, scan, e.KnownHosts)
}

// Is reports whether target is rotation.ErrHostKey.
func (e *HostKeyError) Is(target error) bool { return target == rotation.ErrHostKey }

// probeKey is a key no host has; asking known_hosts about it lists the
// keys recorded for a host.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return k
}()

// knownHosts checks host keys against a known_hosts file, re-reading it
// when it changes. It is safe for concurrent use.
type knownHosts struct {
	path string
	tofu bool

	mu   sync.Mutex
	mod  time.Time
	size int64
	view *khView
}

// khView is one version of the known_hosts file, with what was learnt
// from it. A lookup costs an HMAC per hashed line, and a rotation looks
// every host up four times (two logins, each asking which key types the
// host has and whether the presented key is the one), so answers are kept
// until the file changes: on a fleet's known_hosts of thousands of hashed
// lines this is milliseconds per host.
type khView struct {
	cb ssh.HostKeyCallback

	mu       sync.Mutex
	algos    map[string][]string // by address
	accepted map[string]bool     // address, remote address and key that passed
}

// current returns the view of the file as it is now, reloading it if it
// changed since the last load.
func (k *knownHosts) current() (*khView, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fi, err := os.Stat(k.path)
	if errors.Is(err, os.ErrNotExist) && k.tofu {
		unknown := func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
		return &khView{cb: unknown, algos: map[string][]string{}, accepted: map[string]bool{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	if k.view != nil && fi.ModTime().Equal(k.mod) && fi.Size() == k.size {
		return k.view, nil
	}
	cb, err := knownhosts.New(k.path)
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	k.view, k.mod, k.size = &khView{cb: cb, algos: map[string][]string{}, accepted: map[string]bool{}}, fi.ModTime(), fi.Size()
	return k.view, nil
}

// algorithms returns the host key algorithms to offer for addr: those of
// the keys known_hosts holds for it, so that the server presents a key we
// can check. It returns nil (the library's defaults) for an unknown host,
// whose key is then refused with its fingerprint.
func (k *knownHosts) algorithms(addr string) ([]string, error) {
	v, err := k.current()
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	algos, ok := v.algos[addr]
	v.mu.Unlock()
	if ok {
		return algos, nil
	}
	var ke *knownhosts.KeyError
	if err := v.cb(addr, fakeAddr(addr), probeKey); errors.As(err, &ke) {
		seen := map[string]bool{}
		for _, w := range ke.Want {
			for _, a := range algorithmsForKeyType(w.Key.Type()) {
				if !seen[a] {
					seen[a] = true
					algos = append(algos, a)
				}
			}
		}
	}
	v.mu.Lock()
	v.algos[addr] = algos
	v.mu.Unlock()
	return algos, nil
}

func algorithmsForKeyType(t string) []string {
	switch t {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	default:
		return []string{t}
	}
}

// check verifies key for addr, appending it to known_hosts when the host is
// unknown and trust on first use was asked for.
func (k *knownHosts) check(addr string, remote net.Addr, key ssh.PublicKey, log func(msg string, args ...any)) error {
	v, err := k.current()
	if err != nil {
		return err
	}
	seen := addr + "\x00" + remote.String() + "\x00" + string(key.Marshal())
	v.mu.Lock()
	ok := v.accepted[seen]
	v.mu.Unlock()
	if ok {
		return nil
	}
	err = v.cb(addr, remote, key)
	if err == nil {
		v.mu.Lock()
		v.accepted[seen] = true
		v.mu.Unlock()
		return nil
	}
	var rev *knownhosts.RevokedError
	if errors.As(err, &rev) {
		return &HostKeyError{Host: knownhosts.Normalize(addr), KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key),
			Known: true, Revoked: true, KnownHosts: k.path}
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return err
	}
	hke := &HostKeyError{
		Host:        knownhosts.Normalize(addr),
		KeyType:     key.Type(),
		Fingerprint: ssh.FingerprintSHA256(key),
		Known:       len(ke.Want) > 0,
		KnownHosts:  k.path,
	}
	if hke.Known || !k.tofu {
		return hke
	}
	if err := AppendKnownHosts(k.path, []ScannedKey{newScannedKey(addr, key)}); err != nil {
		return err
	}
	log("host key trusted on first use", "host", hke.Host, "type", hke.KeyType, "fingerprint", hke.Fingerprint)
	return nil
}

// fakeAddr gives known_hosts the remote address it may match IP patterns on.
func fakeAddr(addr string) net.Addr {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &net.TCPAddr{}
	}
	p, _ := strconv.Atoi(port)
	return &net.TCPAddr{IP: net.ParseIP(host), Port: p}
}

// ScannedKey is a host key read by Scan.
type ScannedKey struct {
	Host        string        // host or [host]:port, as known_hosts writes it
	Key         ssh.PublicKey // the key
	Fingerprint string        // SHA256:...
	Line        string        // the known_hosts line approving the key
}

func newScannedKey(addr string, key ssh.PublicKey) ScannedKey {
	n := knownhosts.Normalize(addr)
	return ScannedKey{Host: n, Key: key, Fingerprint: ssh.FingerprintSHA256(key), Line: knownhosts.Line([]string{n}, key)}
}

// errScanned stops a scanning handshake once the host key is in hand.
var errScanned = errors.New("host key scanned")

// scanAlgorithms are tried one at a time so a host shows every key it has.
var scanAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512,
}

// Scan connects to each address (host or host:port; port 22 when none) and
// returns the host keys it presents, one per key type, without
// authenticating. The keys are not trusted by being scanned: an operator
// compares the fingerprints with the hosts' and approves them into
// known_hosts (AppendKnownHosts). Each address gets timeout for all its
// handshakes. An address that yields no key is an error naming it; the
// keys of the others are still returned.
func Scan(ctx context.Context, addrs []string, timeout time.Duration) ([]ScannedKey, error) {
	var keys []ScannedKey
	var errs []error
	for _, a := range addrs {
		addr := a
		if _, _, err := net.SplitHostPort(a); err != nil {
			addr = net.JoinHostPort(strings.Trim(a, "[]"), "22")
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		var got []ScannedKey
		var lastErr error
		for _, algo := range scanAlgorithms {
			key, err := scanOne(actx, addr, algo)
			if err != nil {
				lastErr = err
				if actx.Err() != nil {
					break
				}
				continue
			}
			got = append(got, newScannedKey(addr, key))
		}
		cancel()
		if len(got) == 0 {
			errs = append(errs, fmt.Errorf("scan %s: %w", addr, lastErr))
		}
		keys = append(keys, got...)
	}
	return keys, errors.Join(errs...)
}

func scanOne(ctx context.Context, addr, algo string) (ssh.PublicKey, error) {
	var key ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User:              "rotord-scan",
		HostKeyAlgorithms: []string{algo},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			key = k
			return errScanned
		},
	}
	conn, err := dialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	_, _, _, err = ssh.NewClientConn(conn, addr, cfg)
	if key != nil {
		return key, nil
	}
	return nil, unreachableWithin(ctx, err)
}

// AppendKnownHosts adds the keys' lines to the known_hosts file at path,
// creating it (mode 0644) if needed and skipping lines it already holds.
// It is safe to call concurrently within one process.
func AppendKnownHosts(path string, keys []ScannedKey) error {
	appendMu.Lock()
	defer appendMu.Unlock()
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read known hosts: %w", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(old), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	var b strings.Builder
	if len(old) > 0 && old[len(old)-1] != '\n' {
		b.WriteByte('\n')
	}
	for _, k := range keys {
		if !have[k.Line] {
			have[k.Line] = true
			b.WriteString(k.Line + "\n")
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("append known hosts: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("append known hosts: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append known hosts: %w", err)
	}
	return nil
}

var appendMu sync.Mutex

// HostKeyStatus is how the keys a host offers compare with known_hosts.
type HostKeyStatus string

// Host-key statuses reported by HostKeyInspector.
const (
	HostKeyKnown    HostKeyStatus = "known"    // known_hosts approves a key the host offers
	HostKeyUnknown  HostKeyStatus = "unknown"  // known_hosts holds no key for the host, or could not be read
	HostKeyMismatch HostKeyStatus = "mismatch" // known_hosts holds other keys for the host
)

// HostKeyCheck is what HostKeyInspector learns of one host without logging
// in.
type HostKeyCheck struct {
	Reachable bool          // the host answered and offered a key
	Status    HostKeyStatus // "" when unreachable
	Err       error         // why unreachable, or the key problem; nil when known
}

// HostKeyInspector compares the host keys hosts offer with a known_hosts
// file, without authenticating: no password is sent and no key is added.
type HostKeyInspector struct {
	KnownHosts string        // path of the known_hosts file
	Timeout    time.Duration // for all of one host's handshakes
}

// Inspect connects to addr (host:port) far enough to see the host keys it
// offers and compares them with known_hosts.
func (in *HostKeyInspector) Inspect(ctx context.Context, addr string) HostKeyCheck {
	keys, err := Scan(ctx, []string{addr}, in.Timeout)
	if len(keys) == 0 {
		if err == nil {
			err = errors.New("no host key offered")
		}
		return HostKeyCheck{Err: err}
	}
	kh := &knownHosts{path: in.KnownHosts}
	if _, err := kh.current(); err != nil {
		return HostKeyCheck{Reachable: true, Status: HostKeyUnknown, Err: err}
	}
	remote, _ := net.ResolveTCPAddr("tcp", addr)
	status := HostKeyUnknown
	for _, sk := range keys {
		err := kh.check(addr, remote, sk.Key, nil)
		var hke *HostKeyError
		switch {
		case err == nil:
			return HostKeyCheck{Reachable: true, Status: HostKeyKnown}
		case errors.As(err, &hke) && hke.Known && !hke.Revoked:
			status = HostKeyMismatch
		}
	}
	if status == HostKeyMismatch {
		return HostKeyCheck{Reachable: true, Status: HostKeyMismatch,
			Err: fmt.Errorf("%s offers a key that differs from known_hosts: if the host was reinstalled, run `rotord hostkeys scan %s` and replace its line in %s", addr, addr, in.KnownHosts)}
	}
	return HostKeyCheck{Reachable: true, Status: HostKeyUnknown,
		Err: fmt.Errorf("%s's key is not in known_hosts: run `rotord hostkeys scan %s`, compare the fingerprints with the host's, and add the line to %s", addr, addr, in.KnownHosts)}
}
