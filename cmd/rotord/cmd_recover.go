package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
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
	if err := a.setup(); err != nil {
		return err
	}
	svc, prog, err := a.open(ctx, true)
	if err != nil {
		return err
	}
	defer svc.close()
	results := svc.engine.Recover(ctx, a.actor())
	prog.done()
	a.notifier().rotations(ctx, results...)
	if len(results) == 0 && !asJSON {
		fmt.Fprintln(a.stdout, "nothing to recover: every rotation in the journal is finished")
		return nil
	}
	return a.reportResults(results, false, asJSON, "recovery")
}
