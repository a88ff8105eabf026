package sshexec

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// LogonAuth is how a logon account authenticates to sshd: with a password
// or with an SSH private key. The zero value authenticates with nothing.
// It never prints its credential.
type LogonAuth struct {
	password secret.Value // the password login, and the answer to sudo's prompt
	signer   ssh.Signer   // the key login, if any
	keyType  string       // the key's type, e.g. ssh-ed25519
}

// PasswordLogon authenticates with pw (password, then keyboard-interactive
// answering every prompt with pw, once). pw also answers sudo's prompt on
// a sudo path.
func PasswordLogon(pw secret.Value) LogonAuth { return LogonAuth{password: pw} }

// Errors of KeyLogon and LoadKeyFile.
var (
	// ErrKeyPassphrase: the key is protected by a passphrase and none, or a
	// wrong one, was given.
	ErrKeyPassphrase = errors.New("logon key: passphrase missing or wrong")
	// ErrKeyFileMode: a key file may be read or written by group or others.
	ErrKeyFileMode = errors.New("logon key file is accessible by group or others")
	// ErrKeyType: the key is not ed25519, ECDSA or RSA.
	ErrKeyType = errors.New("logon key type not supported (ed25519, ECDSA or RSA)")
)

// KeyLogon authenticates with the OpenSSH (or PEM) private key in key,
// decrypted with passphrase when it is protected (an empty passphrase for
// a key without one). ed25519, ECDSA and RSA keys are accepted; an RSA key
// signs with rsa-sha2-512 or rsa-sha2-256, never SHA-1. key is not kept.
func KeyLogon(key []byte, passphrase secret.Value) (LogonAuth, error) {
	var (
		signer ssh.Signer
		err    error
	)
	if passphrase.IsZero() {
		signer, err = ssh.ParsePrivateKey(key)
	} else {
		signer, err = ssh.ParsePrivateKeyWithPassphrase(key, []byte(passphrase.Reveal()))
	}
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return LogonAuth{}, fmt.Errorf("%w: the key is encrypted and no passphrase was given", ErrKeyPassphrase)
	case errors.Is(err, x509.IncorrectPasswordError):
		return LogonAuth{}, fmt.Errorf("%w: the passphrase does not decrypt the key", ErrKeyPassphrase)
	case err != nil:
		return LogonAuth{}, fmt.Errorf("logon key: %w", err)
	}
	kt := signer.PublicKey().Type()
	switch kt {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
	case ssh.KeyAlgoRSA:
		as, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return LogonAuth{}, fmt.Errorf("%w: RSA key cannot sign with rsa-sha2", ErrKeyType)
		}
		if signer, err = ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}); err != nil {
			return LogonAuth{}, fmt.Errorf("logon key: %w", err)
		}
	default:
		return LogonAuth{}, fmt.Errorf("%w: %s", ErrKeyType, kt)
	}
	return LogonAuth{signer: signer, keyType: kt}, nil
}

// LoadKeyFile reads a private key for KeyLogon from path. The file must
// be a regular file that neither group nor others may read or write (mode
// 0600 or stricter), as a credential file; otherwise it is refused with
// ErrKeyFileMode and not read.
func LoadKeyFile(path string, passphrase secret.Value) (LogonAuth, error) {
	f, err := os.Open(path)
	if err != nil {
		return LogonAuth{}, fmt.Errorf("logon key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return LogonAuth{}, fmt.Errorf("logon key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return LogonAuth{}, fmt.Errorf("logon key: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return LogonAuth{}, fmt.Errorf("%w: %s has mode %04o; make it 0600 (chmod 600 %s)", ErrKeyFileMode, path, perm, path)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return LogonAuth{}, fmt.Errorf("logon key: %w", err)
	}
	defer clear(b)
	a, err := KeyLogon(b, passphrase)
	if err != nil {
		return LogonAuth{}, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// WithPassword returns a with the logon account's password pw, which
// answers sudo's prompt when a logs in with a key.
func (a LogonAuth) WithPassword(pw secret.Value) LogonAuth {
	a.password = pw
	return a
}

// KeyType returns the key's type (ssh-ed25519, ecdsa-sha2-nistp256,
// ssh-rsa, ...), or "" for a password logon.
func (a LogonAuth) KeyType() string { return a.keyType }

// String describes the method without the credential: "password" or
// "key ssh-ed25519".
func (a LogonAuth) String() string {
	if a.signer != nil {
		return "key " + a.keyType
	}
	return "password"
}

// GoString keeps %#v from printing the credential.
func (a LogonAuth) GoString() string { return "sshexec.LogonAuth(" + a.String() + ")" }

// dialLogon opens an SSH connection to h as user with auth, checking the
// host key first. Its errors are those of Dialer.Login, except that a
// refused credential is a *StepError of StepLogon (ErrLogonRefused,
// ErrLogonKeyRefused or ErrLogonMethod), never rotation.ErrAuthFailed:
// the logon account's credential is not the rotated password.
func (d *Dialer) dialLogon(ctx context.Context, h rotation.Host, user string, auth LogonAuth) (*ssh.Client, string, error) {
	addr := h.Addr(d.cfg.DefaultPort)
	algos, err := d.kh.algorithms(addr)
	if err != nil {
		return nil, addr, fmt.Errorf("logon %s: %w", addr, err)
	}
	var keyChecked, authTried atomic.Bool
	var methods []ssh.AuthMethod
	if auth.signer != nil {
		methods = append(methods, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			authTried.Store(true)
			return []ssh.Signer{auth.signer}, nil
		}))
	} else {
		pw := auth.password
		methods = append(methods,
			ssh.PasswordCallback(func() (string, error) {
				authTried.Store(true)
				return pw.Reveal(), nil
			}),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				if authTried.Load() && len(questions) > 0 {
					return nil, errPasswordRefused
				}
				authTried.Store(true)
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw.Reveal()
				}
				return answers, nil
			}))
	}
	cfg := &ssh.ClientConfig{
		User:              user,
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(_ string, remote net.Addr, key ssh.PublicKey) error {
			if err := d.kh.check(addr, remote, key, d.log.Warn); err != nil {
				return err
			}
			keyChecked.Store(true)
			return nil
		},
		Auth:    methods,
		Timeout: d.cfg.ConnectTimeout,
	}
	cctx, cancel := withLimit(ctx, d.cfg.ConnectTimeout)
	defer cancel()
	conn, err := dialContext(cctx, addr)
	if err != nil {
		return nil, addr, fmt.Errorf("logon %s: %w", addr, unreachableWithin(cctx, err))
	}
	stop := context.AfterFunc(cctx, func() { conn.Close() })
	if dl, ok := cctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() && err == nil {
		c.Close()
		err = cctx.Err()
	}
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		var ane *ssh.AlgorithmNegotiationError
		refused := !isNetError(err) && connectEnded(cctx, err) == nil
		step := func(e error) error {
			return &StepError{Host: addr, Step: StepLogon, User: user, Method: auth.String(), Err: e}
		}
		switch {
		case errors.As(err, &hke):
			return nil, addr, fmt.Errorf("logon %s: %w", addr, hke)
		case errors.As(err, &ane) && ane.What == "host key" && algos != nil:
			return nil, addr, fmt.Errorf("logon %s: %w", addr, &HostKeyError{
				Host:       knownhosts.Normalize(addr),
				KeyType:    strings.Join(ane.RequestedAlgorithms, ","),
				Known:      true,
				KnownHosts: d.cfg.KnownHosts,
			})
		case keyChecked.Load() && !authTried.Load() && refused:
			return nil, addr, step(ErrLogonMethod)
		case keyChecked.Load() && authTried.Load() && refused && auth.signer != nil:
			return nil, addr, step(ErrLogonKeyRefused)
		case keyChecked.Load() && authTried.Load() && refused:
			return nil, addr, step(ErrLogonRefused)
		case keyChecked.Load() && authTried.Load():
			return nil, addr, step(&loginUnknownError{err: unreachableWithin(cctx, err)})
		default:
			return nil, addr, fmt.Errorf("logon %s: %w", addr, unreachableWithin(cctx, err))
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), addr, nil
}
