package sshexec

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

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
	c, err := d.dial(ctx, addr, user, func(tried *atomic.Bool) []ssh.AuthMethod {
		if auth.signer == nil {
			return passwordMethods(auth.password, tried)
		}
		return []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			tried.Store(true)
			return []ssh.Signer{auth.signer}, nil
		})}
	})
	var ce *connectError
	if err != nil && !errors.As(err, &ce) {
		return nil, addr, fmt.Errorf("logon %s: %w", addr, err)
	}
	step := func(e error) error {
		return &StepError{Host: addr, Step: StepLogon, User: user, Method: auth.String(), Err: e}
	}
	switch {
	case err == nil:
		return c, addr, nil
	case ce.hostKey != nil:
		return nil, addr, fmt.Errorf("logon %s: %w", addr, ce.hostKey)
	case ce.keyChecked && !ce.authTried && ce.refused:
		return nil, addr, step(ErrLogonMethod)
	case ce.keyChecked && ce.authTried && ce.refused && auth.signer != nil:
		return nil, addr, step(ErrLogonKeyRefused)
	case ce.keyChecked && ce.authTried && ce.refused:
		return nil, addr, step(ErrLogonRefused)
	case ce.keyChecked && ce.authTried:
		return nil, addr, step(&loginUnknownError{err: ce.unreachable})
	default:
		return nil, addr, fmt.Errorf("logon %s: %w", addr, ce.unreachable)
	}
}
