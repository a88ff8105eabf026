package main

// This file builds the adapters (Secret Server client, SSH host changer,
// journal store) from the configuration and hands them to the engine.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/store"
)

// rotationEngine is what commands need of *rotation.Engine.
type rotationEngine interface {
	Rotate(ctx context.Context, spec rotation.SecretSpec, opts rotation.RotateOptions) rotation.Result
	Rollback(ctx context.Context, spec rotation.SecretSpec, toID int64, actor string) rotation.Result
	Recover(ctx context.Context, actor string) []rotation.Result
	RecoverUnfinished(ctx context.Context, actor string, claim func(secretName string) (release func(), ok bool)) []rotation.Result
	Heartbeat(ctx context.Context, spec rotation.SecretSpec) rotation.HeartbeatResult
	ScheduledHeartbeat(ctx context.Context, spec rotation.SecretSpec) rotation.HeartbeatResult
}

var _ rotationEngine = (*rotation.Engine)(nil)

// historyReader is what commands need of the journal.
type historyReader interface {
	History(ctx context.Context, q rotation.HistoryQuery) ([]rotation.Rotation, error)
	Audit(ctx context.Context, e rotation.Event) error
}

// hostInspector connects to a host far enough to see its host key, and
// compares the key with known_hosts (sshexec.HostKeyInspector). It sends
// no password.
type hostInspector interface {
	Inspect(ctx context.Context, addr string) sshexec.HostKeyCheck
}

// services are the adapters commands run on. close releases them.
type services struct {
	engine  rotationEngine
	journal historyReader
	state   rotation.ScheduleState
	vault   rotation.Vault
	hosts   hostInspector
	// reach returns the path of a secret with su or sudo (nil, nil for
	// escalation none); nil where no dialer was built.
	reach func(ctx context.Context, secretName string) (*sshexec.Reach, error)
	close func() error

	// problems found while opening that did not stop it (openCheck: an
	// unusable store key); check reports them with the rest.
	problems []string
}

// progressFunc reports a rotation's progress: hosts done of total, and how
// many failed so far. The engine calls it as hosts finish.
type progressFunc func(secret string, done, total, failed int)

// adapters are the constructors and one-shot operations commands use.
// Tests replace them with fakes.
type adapters struct {
	// open builds every service from cfg; progress may be nil.
	open func(ctx context.Context, cfg *Config, log *slog.Logger, progress progressFunc) (*services, error)
	// openCheck builds what check needs, the vault and the host
	// inspector, whatever else is missing (known_hosts, the journal).
	openCheck func(ctx context.Context, cfg *Config, log *slog.Logger) (*services, error)
	// scanHostKeys returns the known_hosts lines for the keys addr offers.
	scanHostKeys func(ctx context.Context, addr string, timeout time.Duration) ([]string, error)
	// migrate brings the journal's schema up to date.
	migrate func(ctx context.Context, cfg *Config, log *slog.Logger) error
	// writeNewKey writes a fresh sealing key to path (mode 0600); it
	// refuses to overwrite a file.
	writeNewKey func(path string) error
	// rekey re-seals every journaled password with the key in newKeyFile.
	rekey func(ctx context.Context, cfg *Config, newKeyFile string, log *slog.Logger) error
}

func defaultAdapters() adapters {
	return adapters{
		open:         openServices,
		openCheck:    openCheckServices,
		scanHostKeys: scanHostKeys,
		migrate: func(ctx context.Context, cfg *Config, log *slog.Logger) error {
			var from, to int64
			var err error
			if cfg.Store.Postgres() {
				from, to, err = store.MigratePostgres(ctx, cfg.Store.ConnString(), store.WithLogger(log))
			} else {
				// Outside the unit (whose StateDirectory= makes it) the journal's
				// directory may not exist yet: make it, open to root only.
				if err := os.MkdirAll(filepath.Dir(cfg.Store.Path), 0o700); err != nil {
					return fmt.Errorf("create the journal's directory: %w", err)
				}
				from, to, err = store.Migrate(ctx, cfg.Store.Path, store.WithLogger(log))
			}
			if err != nil {
				return err
			}
			log.Info("journal schema", "from", from, "to", to)
			return nil
		},
		writeNewKey: store.WriteNewKey,
		rekey:       rekey,
	}
}

// openServices builds the journal, the Secret Server client, the SSH
// dialer and the engine over them.
func openServices(ctx context.Context, cfg *Config, log *slog.Logger, progress progressFunc) (*services, error) {
	key, err := loadStoreKey(cfg)
	if err != nil {
		return nil, err
	}
	keys := store.NewKeyring(key)
	db, err := openStore(ctx, cfg, keys, log)
	if err != nil {
		return nil, err
	}
	ss := cfg.SecretServer
	if ss.Password().IsZero() {
		// Loaded by a command that reads only the journal (setupLocal):
		// without rotord's credentials there is no vault and no engine.
		return &services{journal: db, state: db, close: db.Close}, nil
	}
	var cache *secretserver.TokenCache
	if ss.TokenCache != "" && ss.Auth != secretserver.AuthNTLM {
		cache = secretserver.NewTokenCache(ss.TokenCache, keys)
	}
	vault, err := secretserver.New(vaultConfig(cfg, cache), log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	dialer, err := sshexec.New(dialerConfig(cfg), log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	ec := cfg.EngineConfig(holder())
	ec.Specs = cfg.Specs()
	ec.Progress = progress
	paths := &pathResolver{cfg: cfg, dialer: dialer, vault: vault}
	engine, err := rotation.New(ec, rotation.Deps{Vault: vault, Hosts: dialer, HostsFor: paths.hostsFor, Reconcile: paths.reconcileFor(), Store: db, Log: log})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &services{
		engine:  engine,
		journal: db,
		state:   db,
		vault:   vault,
		hosts:   &sshexec.HostKeyInspector{KnownHosts: cfg.SSH.KnownHosts, Timeout: cfg.SSH.ConnectTimeout.D()},
		reach:   paths.reach,
		close:   db.Close,
	}, nil
}

// openStore opens the journal store.driver names: the SQLite file at
// store.path, or the PostgreSQL database of the connection string. On
// PostgreSQL a statement that fails for a transient reason is retried for
// a third of the lease TTL, so that a rotation whose lease renewals fail
// for longer gives up before its lease can expire.
func openStore(ctx context.Context, cfg *Config, keys *store.Keyring, log *slog.Logger) (*store.DB, error) {
	if cfg.Store.Postgres() {
		return store.OpenPostgres(ctx, cfg.Store.ConnString(), keys, store.WithLogger(log),
			store.WithRetryWindow(cfg.Rotation.LeaseTTL.D()/3))
	}
	return store.Open(ctx, cfg.Store.Path, keys, store.WithLogger(log))
}

// openCheckServices builds the Secret Server client and the host-key
// inspector for check. Neither needs known_hosts or the journal to exist;
// without a usable store key the token is not cached, and the key's
// problem is recorded for the report.
func openCheckServices(ctx context.Context, cfg *Config, log *slog.Logger) (*services, error) {
	svc := &services{close: func() error { return nil },
		hosts: &sshexec.HostKeyInspector{KnownHosts: cfg.SSH.KnownHosts, Timeout: cfg.SSH.ConnectTimeout.D()}}
	ss := cfg.SecretServer
	var cache *secretserver.TokenCache
	key, err := loadStoreKey(cfg)
	switch {
	case err != nil:
		svc.problems = append(svc.problems, err.Error())
	default:
		if p := checkJournal(ctx, cfg, key, log); p != "" {
			svc.problems = append(svc.problems, p)
		}
		if ss.TokenCache != "" && ss.Auth != secretserver.AuthNTLM {
			cache = secretserver.NewTokenCache(ss.TokenCache, store.NewKeyring(key))
		}
	}
	vault, err := secretserver.New(vaultConfig(cfg, cache), log)
	if err != nil {
		return nil, err
	}
	svc.vault = vault
	// A path is checked only where known_hosts can be read: the dialer
	// sends no credential to a host it cannot trust.
	if dialer, err := sshexec.New(dialerConfig(cfg), log); err == nil {
		svc.reach = (&pathResolver{cfg: cfg, dialer: dialer, vault: vault}).reach
	}
	return svc, nil
}

// checkJournal says what is wrong with an existing journal (a store key
// that does not open it, a schema newer than this rotord), or "". A journal
// not created yet is not a problem: the first command that needs it makes
// it, and check does not.
func checkJournal(ctx context.Context, cfg *Config, key store.Key, log *slog.Logger) string {
	if cfg.Store.Postgres() {
		db, err := openStore(ctx, cfg, store.NewKeyring(key), log)
		if err != nil {
			return fmt.Sprintf("store: %v", err)
		}
		_ = db.Close()
		return ""
	}
	if _, err := os.Stat(cfg.Store.Path); errors.Is(err, os.ErrNotExist) {
		return ""
	}
	db, err := store.Open(ctx, cfg.Store.Path, store.NewKeyring(key), store.WithLogger(log))
	if err != nil {
		return fmt.Sprintf("store.path %s: %v", cfg.Store.Path, err)
	}
	_ = db.Close()
	return ""
}

// loadStoreKey reads the journal's sealing key from store.key_file. A key
// file that is missing or unfit is a configuration error naming the file
// and the line of store.key_file.
func loadStoreKey(cfg *Config) (store.Key, error) {
	key, err := store.LoadKey(cfg.Store.KeyFile)
	if err != nil {
		return store.Key{}, cfg.fieldError("store.key_file", err)
	}
	return key, nil
}

// scanHostKeys returns the known_hosts lines of the keys addr offers.
func scanHostKeys(ctx context.Context, addr string, timeout time.Duration) ([]string, error) {
	keys, err := sshexec.Scan(ctx, []string{addr}, timeout)
	var lines []string
	for _, k := range keys {
		lines = append(lines, k.Line)
	}
	return lines, err
}

// rekey re-seals every journaled password under the key in newKeyFile.
func rekey(ctx context.Context, cfg *Config, newKeyFile string, log *slog.Logger) error {
	old, err := loadStoreKey(cfg)
	if err != nil {
		return err
	}
	nk, err := store.LoadKey(newKeyFile)
	if err != nil {
		return err
	}
	db, err := openStore(ctx, cfg, store.NewKeyring(old), log)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.Rekey(ctx, nk)
	if err != nil {
		return err
	}
	log.Info("journal re-sealed; now point store.key_file at the new key", "values", n, "key", nk.ID())
	return nil
}

// vaultConfig is the Secret Server client's configuration from cfg, with
// the token cache to use (nil: none). What the file does not set keeps the
// client's defaults.
func vaultConfig(cfg *Config, cache *secretserver.TokenCache) secretserver.Config {
	ss := cfg.SecretServer
	vc := secretserver.DefaultConfig()
	vc.URL, vc.Auth, vc.Username, vc.Password, vc.Domain = ss.URL, ss.Auth, ss.Username, ss.Password(), ss.Domain
	vc.CAFile, vc.Timeout, vc.HostsField, vc.TokenCache = ss.CAFile, ss.Timeout.D(), cfg.HostsField, cache
	return vc
}

// dialerConfig is the SSH dialer's configuration from cfg. What the file
// does not set keeps the dialer's defaults.
func dialerConfig(cfg *Config) sshexec.Config {
	dc := sshexec.DefaultConfig()
	dc.KnownHosts, dc.DefaultPort = cfg.SSH.KnownHosts, cfg.SSH.Port
	dc.ConnectTimeout, dc.StepTimeout = cfg.SSH.ConnectTimeout.D(), cfg.SSH.StepTimeout.D()
	return dc
}
