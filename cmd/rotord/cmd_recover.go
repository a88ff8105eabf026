package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
)

func (a *app) recoverCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Finish or undo unfinished rotations, and retry reconciliation",
		Long: `Finish or undo every rotation the journal holds unfinished (after a crash or
power loss), so that Secret Server again holds the password that works on
every host, and retry hosts marked needs-reconcile. "rotord run" does this at
every start, and while it runs for rotations whose lease has expired; run it
by hand after fixing a host that was unreachable. Interrupting it (Ctrl-C,
SIGTERM, or SIGHUP when the terminal goes away) exits with 130; what was not
recovered stays in the journal for the next run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return hangupStops(cmd.Context(), func(ctx context.Context) error { return a.recover(ctx, asJSON) })
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "write results as JSON")
	return cmd
}

func (a *app) recover(ctx context.Context, asJSON bool) error {
	rep := reportAs{what: "recovery", empty: "nothing to recover: every rotation in the journal is finished", asJSON: asJSON}
	return a.rotations(ctx, nil, rep, func(e rotationEngine, _ []rotation.SecretSpec) []rotation.Result {
		return e.Recover(ctx, a.actor())
	})
}
