package main

// This file builds the adapters (Secret Server client, SSH host changer,
// journal store) from the configuration. It is the one place to change when
// they are wired: until then each constructor returns errNotWired.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/rotord/rotord/rotation"
)

// errNotWired marks a command whose adapters this build does not have yet.
var errNotWired = errors.New("not wired yet in this build: the adapters are missing")

// rotationEngine is what commands need of *rotation.Engine.
type rotationEngine interface {
	Rotate(ctx context.Context, spec rotation.SecretSpec, opts rotation.RotateOptions) rotation.Result
	Rollback(ctx context.Context, spec rotation.SecretSpec, toID int64, actor string) rotation.Result
	Recover(ctx context.Context, actor string) []rotation.Result
	Heartbeat(ctx context.Context, spec rotation.SecretSpec) rotation.HeartbeatResult
}

var _ rotationEngine = (*rotation.Engine)(nil)

// historyReader is what commands need of the journal.
type historyReader interface {
	History(ctx context.Context, q rotation.HistoryQuery) ([]rotation.Rotation, error)
	Audit(ctx context.Context, e rotation.Event) error
}

// Host-key statuses reported by hostInspector.
const (
	keyKnown    = "known"
	keyUnknown  = "unknown"
	keyMismatch = "mismatch"
)

// hostCheck is what check learns of one host without logging in.
type hostCheck struct {
	Reachable bool
	KeyStatus string // keyKnown, keyUnknown, keyMismatch, or "" when unreachable
	Err       error  // why unreachable, or the key problem
}

// hostInspector connects to a host far enough to see its host key, and
// compares the key with known_hosts. It sends no password.
type hostInspector interface {
	Inspect(ctx context.Context, h rotation.Host, defaultPort int) hostCheck
}

// services are the adapters commands run on. close releases them.
type services struct {
	engine  rotationEngine
	journal historyReader
	state   rotation.ScheduleState
	vault   rotation.Vault
	hosts   hostInspector
	close   func() error
}

// progressFunc reports a rotation's progress: hosts done of total, and how
// many failed so far. The engine calls it as hosts finish.
type progressFunc func(secret string, done, total, failed int)

// adapters are the constructors and one-shot operations commands use.
// Tests replace them with fakes.
type adapters struct {
	// open builds every service from cfg; progress may be nil.
	open func(ctx context.Context, cfg *Config, log *slog.Logger, progress progressFunc) (*services, error)
	// scanHostKeys returns the known_hosts lines for the keys addr offers.
	scanHostKeys func(ctx context.Context, addr string, timeout time.Duration) ([]string, error)
	// migrate brings the journal's schema up to date.
	migrate func(ctx context.Context, cfg *Config, log *slog.Logger) error
	// writeNewKey writes a fresh sealing key to path (mode 0600); it
	// refuses to overwrite a file.
	writeNewKey func(path string) error
	// rekey re-seals every journaled password with the key in newKeyFile.
	rekey func(ctx context.Context, cfg *Config, newKeyFile string, log *slog.Logger) error
	// clearToken forgets the cached Secret Server token.
	clearToken func(ctx context.Context, cfg *Config) error
}

func defaultAdapters() adapters {
	return adapters{
		open: func(ctx context.Context, cfg *Config, log *slog.Logger, progress progressFunc) (*services, error) {
			// Wiring: store.Open(ctx, cfg.Store.Path, key) → journal, leases, state;
			// secretserver.New(...) → vault; sshexec.New(...) → hosts;
			// rotation.New(cfg.EngineConfig(holder()), vault, hosts, db, db, db, log).
			return nil, errNotWired
		},
		scanHostKeys: func(ctx context.Context, addr string, timeout time.Duration) ([]string, error) {
			return nil, errNotWired
		},
		migrate: func(ctx context.Context, cfg *Config, log *slog.Logger) error {
			return errNotWired
		},
		writeNewKey: func(path string) error {
			return errNotWired
		},
		rekey: func(ctx context.Context, cfg *Config, newKeyFile string, log *slog.Logger) error {
			return errNotWired
		},
		clearToken: func(ctx context.Context, cfg *Config) error {
			err := os.Remove(cfg.SecretServer.TokenCache)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove token cache: %w", err)
			}
			return nil
		},
	}
}
