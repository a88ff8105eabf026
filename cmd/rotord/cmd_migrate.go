package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create the journal database or bring its schema up to date",
		Long: `Create the journal database (store.path, and its directory with mode 0700
when missing) or apply the schema migrations this version of rotord needs.
rotord refuses to run on a schema it does not know; run migrate after an
upgrade, with the daemon stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.setupLocal(); err != nil {
				return err
			}
			if err := a.adapters.migrate(cmd.Context(), a.cfg, a.log); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "journal %s is up to date\n", a.cfg.Store.Describe())
			return nil
		},
	}
}
