package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

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

// selectSpecs returns the configured secrets with the given names, all of
// them when names is empty. A name not in the configuration is a usage error.
func (a *app) selectSpecs(names []string) ([]rotation.SecretSpec, error) {
	if len(names) == 0 {
		return a.cfg.Specs(), nil
	}
	var specs []rotation.SecretSpec
	seen := map[string]bool{}
	for _, n := range names {
		s, ok := a.cfg.Spec(n)
		if !ok {
			return nil, usagef("secret %q is not in %s", n, a.cfg.Path())
		}
		if !seen[strings.ToLower(s.Name)] {
			seen[strings.ToLower(s.Name)] = true
			specs = append(specs, s)
		}
	}
	return specs, nil
}

// open builds the services, with a progress display on a terminal.
func (a *app) open(ctx context.Context, withProgress bool) (*services, *progress, error) {
	var p *progress
	var pf progressFunc
	if withProgress && a.stderrTTY {
		p = newProgress(a.stderr)
		pf = p.Update
	}
	svc, err := a.adapters.open(ctx, a.cfg, a.log, pf)
	if err != nil {
		return nil, nil, err
	}
	return svc, p, nil
}

func (p *progress) done() {
	if p != nil {
		p.Done()
	}
}

func (a *app) rotate(ctx context.Context, names []string, dryRun, asJSON bool) error {
	if err := a.setup(); err != nil {
		return err
	}
	specs, err := a.selectSpecs(names)
	if err != nil {
		return err
	}
	svc, prog, err := a.open(ctx, true)
	if err != nil {
		return err
	}
	defer svc.close()

	opts := rotation.RotateOptions{DryRun: dryRun, Actor: a.actor()}
	results := make([]rotation.Result, len(specs))
	sem := make(chan struct{}, a.cfg.Rotation.MaxConcurrent)
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = svc.engine.Rotate(ctx, spec, opts)
		}()
	}
	wg.Wait()
	prog.done()
	a.notifier().rotations(ctx, results...)
	return a.reportResults(results, dryRun, asJSON, "rotation")
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
