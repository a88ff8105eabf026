package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) keygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen [FILE]",
		Short: "Write a new key for sealing the journal's passwords",
		Long: `Write a new random key, with mode 0600, to FILE (default: store.key_file of
the configuration). The journal's passwords are sealed with it (AES-256-GCM):
keep a copy where you keep the backups of the database, apart from them.
An existing file is never overwritten; to change keys use rotord rekey.`,
		Example: `  rotord keygen /etc/rotord/credentials/store-key`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var path string
			if len(args) == 1 {
				path = args[0]
			} else {
				if err := a.setupLocal(); err != nil {
					return err
				}
				path = a.cfg.Store.KeyFile
			}
			if err := a.adapters.writeNewKey(path); err != nil {
				return err
			}
			a.created = append(a.created, path)
			fmt.Fprintf(a.stdout, "new key written to %s\n", path)
			return nil
		},
	}
}
