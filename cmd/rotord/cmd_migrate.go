package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/store"
)

func (a *app) migrateCmd() *cobra.Command {
	var copyFrom string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the journal database or bring its schema up to date",
		Long: `Create the journal database (store.path, and its directory with mode 0700
when missing; or the tables in the PostgreSQL database of store.driver
postgres) or apply the schema migrations this version of rotord needs.
rotord refuses to run on a schema it does not know; run migrate after an
upgrade, with the daemon stopped (on PostgreSQL: every daemon sharing it).

--copy-from sqlite:PATH moves a SQLite journal into the configured
PostgreSQL database, which must be empty: every rotation, host record,
sealed password (as it is: the same store key opens it), audit event and
schedule state is copied in one transaction. It refuses a journal with
unfinished rotations: run rotord recover with the old configuration first.
Stop the daemon that used the SQLite journal before copying it.`,
		Example: `  rotord migrate
  rotord migrate --copy-from sqlite:/var/lib/rotord/rotord.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.setupLocal(); err != nil {
				return err
			}
			if copyFrom != "" {
				path, ok := strings.CutPrefix(copyFrom, "sqlite:")
				if !ok || path == "" {
					return usagef("--copy-from: want sqlite:PATH, got %q", copyFrom)
				}
				if !a.cfg.Store.Postgres() {
					return usagef("--copy-from: the configured journal must be PostgreSQL (store.driver postgres)")
				}
				return a.copyJournal(cmd.Context(), path)
			}
			if err := a.adapters.migrate(cmd.Context(), a.cfg, a.log); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "journal %s is up to date\n", a.cfg.Store.Describe())
			return nil
		},
	}
	cmd.Flags().StringVar(&copyFrom, "copy-from", "", "copy the SQLite journal at `sqlite:PATH` into the empty PostgreSQL journal")
	return cmd
}

// copyJournal copies the SQLite journal at path into the configured
// PostgreSQL journal, both opened with the store key.
func (a *app) copyJournal(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("--copy-from: %w", err)
	}
	key, err := loadStoreKey(a.cfg)
	if err != nil {
		return err
	}
	keys := store.NewKeyring(key)
	src, err := store.Open(ctx, path, keys, store.WithLogger(a.log))
	if err != nil {
		return fmt.Errorf("open the SQLite journal %s: %w", path, err)
	}
	defer src.Close()
	dst, err := openStore(ctx, a.cfg, keys, a.log)
	if err != nil {
		return err
	}
	defer dst.Close()
	counts, err := dst.CopyFrom(ctx, src)
	if err != nil {
		return err
	}
	a.log.Info("journal copied", slog.Any("rows", counts))
	fmt.Fprintf(a.stdout, "copied %s into %s: %d rotations, %d audit events, %d secrets\n", path, a.cfg.Store.Describe(),
		counts["rotations"], counts["audit_events"], counts["secrets"])
	return nil
}
