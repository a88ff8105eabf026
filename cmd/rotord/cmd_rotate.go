package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
)

func (a *app) rotateCmd() *cobra.Command {
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "rotate [NAME...]",
		Short: "Rotate secrets now, once",
		Long: `Rotate the named secrets now (all configured secrets when none is named):
change the password on every host of each secret, verify it, and write it to
Secret Server; a secret whose rotation fails part way is reverted on every host.

With --dry-run only the pre-flight runs: each host is reached, its host key
checked and the current password tried; nothing changes anywhere but an audit
entry in the journal.

Names must be listed in the configuration file. Interrupting rotord
(Ctrl-C, SIGTERM, or SIGHUP when the terminal goes away) reverts the
rotations in flight and exits with 130.`,
		Example: `  rotord rotate                      # every configured secret
  rotord rotate prod-web-root --dry-run
  rotord rotate prod-web-root prod-db-root --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return hangupStops(cmd.Context(), func(ctx context.Context) error { return a.rotate(ctx, args, dryRun, asJSON) })
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "pre-flight only: change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "write results as JSON")
	return cmd
}

func (a *app) rotate(ctx context.Context, names []string, dryRun, asJSON bool) error {
	opts := rotation.RotateOptions{DryRun: dryRun, Actor: a.actor()}
	return a.rotations(ctx, names, reportAs{what: "rotation", dryRun: dryRun, asJSON: asJSON}, func(e rotationEngine, specs []rotation.SecretSpec) []rotation.Result {
		results := make([]rotation.Result, len(specs))
		forEach(len(specs), a.cfg.Rotation.MaxConcurrent, func(i int) { results[i] = e.Rotate(ctx, specs[i], opts) })
		return results
	})
}

// reportResults renders results and returns the error selecting the exit
// status: nil, partial, or failed.
func (a *app) reportResults(results []rotation.Result, dryRun, asJSON bool, what string) error {
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	var err error
	if asJSON {
		out := make([]jsonResult, 0, len(results))
		for _, r := range results {
			jr := toJSONResult(r)
			if dryRun {
				jr.Kind = "dry-run"
			}
			out = append(out, jr)
		}
		err = writeJSON(a.stdout, out)
	} else {
		err = renderResults(a.stdout, results, dryRun)
	}
	if err != nil {
		return err
	}
	if dryRun {
		return dryRunOutcome(failed, len(results))
	}
	return outcome(failed, len(results), what)
}

// dryRunOutcome is outcome for a dry run, whose failures changed nothing:
// the message says so rather than that a rotation failed.
func dryRunOutcome(failed, total int) error {
	switch {
	case failed == 0:
		return nil
	case failed < total:
		return &partialError{failed: failed, total: total,
			msg: fmt.Sprintf("dry run found problems in %d of %d secrets; nothing was changed", failed, total)}
	default:
		return &failedError{msg: "dry run found problems; nothing was changed"}
	}
}
