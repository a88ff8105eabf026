package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
)

func (a *app) rollbackCmd() *cobra.Command {
	var (
		toID   int64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "rollback NAME",
		Short: "Restore a secret's previous password on every host and in Secret Server",
		Long: `Restore, on every host of the secret and in Secret Server, the password that
was current before its last committed rotation, or before rotation ID with
--to ID (see rotord history). The rollback is itself a journaled rotation: it
is all or nothing across the hosts, and can be rolled back in turn.
Interrupting it (Ctrl-C, SIGTERM, or SIGHUP when the terminal goes away)
finishes or reverts it and exits with 130.`,
		Example: `  rotord rollback prod-web-root
  rotord rollback prod-web-root --to 42`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return hangupStops(cmd.Context(), func(ctx context.Context) error { return a.rollback(ctx, args[0], toID, asJSON) })
		},
	}
	cmd.Flags().Int64Var(&toID, "to", 0, "restore the password from before rotation `ID` (default: the last committed one)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "write the result as JSON")
	return cmd
}

func (a *app) rollback(ctx context.Context, name string, toID int64, asJSON bool) error {
	if toID < 0 {
		return usagef("--to: want a rotation id, got %d", toID)
	}
	rep := reportAs{what: "rollback", asJSON: asJSON}
	return a.rotations(ctx, []string{name}, rep, func(e rotationEngine, specs []rotation.SecretSpec) []rotation.Result {
		return []rotation.Result{e.Rollback(ctx, specs[0], toID, a.actor())}
	})
}
