package main

// This file builds each secret's path to its hosts (the logon account,
// its credential and the escalation) from the configuration, reading a
// logon credential kept in Secret Server when the path is needed, so that
// a logon secret rotated on its own is read fresh.

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/sshexec"
)

// credentialReader reads a logon account's credential from Secret Server.
type credentialReader interface {
	Resolve(ctx context.Context, name string) (int, error)
	Credential(ctx context.Context, id int) (secretserver.Credential, error)
}

// pathResolver builds the secrets' paths to their hosts.
type pathResolver struct {
	cfg    *Config
	dialer *sshexec.Dialer
	vault  credentialReader
}

// reach returns the Reach of secret name's path, or nil with escalation
// none (the account logs in itself, as the dialer does).
func (p *pathResolver) reach(ctx context.Context, name string) (*sshexec.Reach, error) {
	esc, l := p.cfg.logonOf(name)
	if esc == sshexec.EscalateNone {
		return nil, nil
	}
	user, auth, err := p.logon(ctx, l)
	if err != nil {
		return nil, err
	}
	return p.dialer.Through(sshexec.Path{Logon: user, Auth: auth, Escalation: esc})
}

// hostsFor is the engine's Deps.HostsFor: the secret's Reach, refusing
// to change the logon account's own password through itself.
func (p *pathResolver) hostsFor(ctx context.Context, spec rotation.SecretSpec) (rotation.HostChanger, error) {
	r, err := p.reach(ctx, spec.Name)
	if err != nil || r == nil {
		return p.dialer, err
	}
	return notThroughItself{r}, nil
}

// logon returns the logon account's name and credential: from the files
// read at load time, or from the secret it names, read now.
func (p *pathResolver) logon(ctx context.Context, l *LogonConfig) (string, sshexec.LogonAuth, error) {
	if l == nil {
		return "", sshexec.LogonAuth{}, errors.New("no logon account configured")
	}
	if l.Secret == "" {
		if !l.hasAuth {
			return "", sshexec.LogonAuth{}, errors.New("the logon account's credential was not read")
		}
		return l.User, l.auth, nil
	}
	if p.vault == nil {
		return "", sshexec.LogonAuth{}, errors.New("no Secret Server to read the logon secret from")
	}
	id, err := p.vault.Resolve(ctx, l.Secret)
	if err != nil {
		return "", sshexec.LogonAuth{}, fmt.Errorf("logon secret %q: %w", l.Secret, err)
	}
	cr, err := p.vault.Credential(ctx, id)
	if err != nil {
		return "", sshexec.LogonAuth{}, fmt.Errorf("logon secret %q: %w", l.Secret, err)
	}
	user := l.User
	if user == "" {
		user = cr.Username
	}
	if cr.PrivateKey.IsZero() {
		if cr.Password.IsZero() {
			return "", sshexec.LogonAuth{}, fmt.Errorf("logon secret %q holds neither a password nor a private key", l.Secret)
		}
		return user, sshexec.PasswordLogon(cr.Password), nil
	}
	auth, err := sshexec.KeyLogon([]byte(cr.PrivateKey.Reveal()), cr.Passphrase)
	if err != nil {
		return "", sshexec.LogonAuth{}, fmt.Errorf("logon secret %q: private key: %w", l.Secret, err)
	}
	sudo := l.sudoPw
	if sudo.IsZero() {
		sudo = cr.Password
	}
	if !sudo.IsZero() {
		auth = auth.WithPassword(sudo)
	}
	return user, auth, nil
}

// notThroughItself is a Reach that refuses to reach the logon account
// itself: the logon account's own password is never changed by the
// rotation that uses it.
type notThroughItself struct{ *sshexec.Reach }

// errLogonIsTarget: the rotated account is the path's logon account.
var errLogonIsTarget = fmt.Errorf("%w: the rotated account is the logon account of its own path; its password is never changed through itself (rotate it with escalation none, or through another logon account)", rotation.ErrBeforePasswd)

// Login refuses target when it is the logon account, else logs in along the path.
func (n notThroughItself) Login(ctx context.Context, h rotation.Host, target string, pw secret.Value) (rotation.HostSession, error) {
	if target == n.Path().Logon {
		return nil, fmt.Errorf("login %s: %w", h, errLogonIsTarget)
	}
	return n.Reach.Login(ctx, h, target, pw)
}

// Verify refuses target when it is the logon account, else verifies along the path.
func (n notThroughItself) Verify(ctx context.Context, h rotation.Host, target string, pw secret.Value) error {
	if target == n.Path().Logon {
		return fmt.Errorf("verify %s: %w", h, errLogonIsTarget)
	}
	return n.Reach.Verify(ctx, h, target, pw)
}

// reconcileFor returns the engine's Deps.Reconcile for a reconcile account
// that logs in by key or whose credential is a Secret Server secret; nil
// for one that logs in with a password from the configuration (the
// engine's Config.Reconcile through the dialer).
func (p *pathResolver) reconcileFor() func(context.Context) (rotation.HostChanger, rotation.Account, error) {
	r := p.cfg.SSH.Reconcile
	if r == nil || (r.key == nil && r.Secret == "") {
		return nil
	}
	return func(ctx context.Context) (rotation.HostChanger, rotation.Account, error) {
		if r.Secret == "" {
			reach, err := p.dialer.Through(sshexec.Path{Auth: *r.key})
			return reach, rotation.Account{User: r.User, Password: r.password}, err
		}
		if p.vault == nil {
			return nil, rotation.Account{}, errors.New("no Secret Server to read the reconcile secret from")
		}
		id, err := p.vault.Resolve(ctx, r.Secret)
		if err != nil {
			return nil, rotation.Account{}, fmt.Errorf("reconcile secret %q: %w", r.Secret, err)
		}
		cr, err := p.vault.Credential(ctx, id)
		if err != nil {
			return nil, rotation.Account{}, fmt.Errorf("reconcile secret %q: %w", r.Secret, err)
		}
		user := r.User
		if user == "" {
			user = cr.Username
		}
		acct := rotation.Account{User: user, Password: cr.Password}
		if cr.PrivateKey.IsZero() {
			return p.dialer, acct, nil
		}
		auth, err := sshexec.KeyLogon([]byte(cr.PrivateKey.Reveal()), cr.Passphrase)
		if err != nil {
			return nil, rotation.Account{}, fmt.Errorf("reconcile secret %q: private key: %w", r.Secret, err)
		}
		reach, err := p.dialer.Through(sshexec.Path{Auth: auth})
		return reach, acct, err
	}
}
