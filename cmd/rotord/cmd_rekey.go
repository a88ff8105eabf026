package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) rekeyCmd() *cobra.Command {
	var newKey string
	cmd := &cobra.Command{
		Use:   "rekey --new-key FILE",
		Short: "Re-seal every journaled password with a new key",
		Long: `Re-seal every password in the journal with the key in FILE (written by
rotord keygen), in one transaction. Afterwards point store.key_file at FILE
(or replace the old key file with it) and restart the daemon. Rekey needs the
journal alone: it refuses while the daemon or another rotord command has it
open, so stop the daemon first.`,
		Example: `  rotord keygen /etc/rotord/credentials/store-key.new
  rotord rekey --new-key /etc/rotord/credentials/store-key.new`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if newKey == "" {
				return usagef("--new-key is required")
			}
			if err := a.setupLocal(); err != nil {
				return err
			}
			if err := a.adapters.rekey(cmd.Context(), a.cfg, newKey, a.log); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "journal re-sealed with %s; now set store.key_file to it\n", newKey)
			return nil
		},
	}
	cmd.Flags().StringVar(&newKey, "new-key", "", "the new key `FILE`")
	return cmd
}
