package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/secretserver"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the cached Secret Server token",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return usagef("token: name a subcommand (clear)") },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "clear",
		Short: "Forget the cached Secret Server token; the next command authenticates afresh",
		Long: `Delete the cached Secret Server access token (secret_server.token_cache).
Use it after changing rotord's Secret Server account or its permissions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.setupLocal(); err != nil {
				return err
			}
			if err := secretserver.ClearTokenCache(a.cfg.SecretServer.TokenCache); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "token cache %s cleared\n", a.cfg.SecretServer.TokenCache)
			return nil
		},
	})
	return cmd
}
