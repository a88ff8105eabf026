package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
)

func (a *app) heartbeatCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "heartbeat [NAME...]",
		Short: "Check that Secret Server's password still logs in on every host",
		Long: `Log into every host of the named secrets (all configured secrets when none
is named) with the password Secret Server holds, and report the hosts where
it no longer works: drift (the host refused the password) apart from
unreachable (the host could not be reached to check) and hosts whose key is
not trusted (no password sent). Each is alerted with its own state when
notify.webhook_url or notify.smtp is set. Nothing changes.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.heartbeat(cmd.Context(), args, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "write results as JSON")
	return cmd
}

func (a *app) heartbeat(ctx context.Context, names []string, asJSON bool) error {
	return a.withSecrets(ctx, names, false, func(svc *services, specs []rotation.SecretSpec, _ *progress) error {
		results := make([]rotation.HeartbeatResult, len(specs))
		forEach(len(specs), a.cfg.Rotation.MaxConcurrent, func(i int) { results[i] = svc.engine.Heartbeat(ctx, specs[i]) })
		a.notifier().heartbeats(ctx, results...)
		return a.reportHeartbeats(results, asJSON)
	})
}

// reportHeartbeats renders results and returns the error selecting the
// exit status: nil, partial, or failed.
func (a *app) reportHeartbeats(results []rotation.HeartbeatResult, asJSON bool) error {
	failed := 0
	out := make([]jsonHeartbeat, 0, len(results))
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
		out = append(out, toJSONHeartbeat(r))
	}
	var err error
	if asJSON {
		err = writeJSON(a.stdout, out)
	} else {
		err = renderHeartbeats(a.stdout, results)
	}
	if err != nil {
		return err
	}
	return outcome(failed, len(results), "heartbeat")
}
