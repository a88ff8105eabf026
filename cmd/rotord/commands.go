package main

// This file holds the steps the commands share: choosing secrets, opening
// the services and closing them, alerting on and reporting rotations, and
// working on several secrets or hosts at once.

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/rotord/rotord/rotation"
)

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

// withSecrets loads the configuration with rotord's credentials, selects
// the named secrets (all configured secrets when none is named), opens the
// services, with a progress display on a terminal when withProgress, and
// runs f on them; the services are closed once f returns.
func (a *app) withSecrets(ctx context.Context, names []string, withProgress bool, f func(svc *services, specs []rotation.SecretSpec, prog *progress) error) error {
	if err := a.setup(); err != nil {
		return err
	}
	specs, err := a.selectSpecs(names)
	if err != nil {
		return err
	}
	svc, prog, err := a.open(ctx, withProgress)
	if err != nil {
		return err
	}
	defer svc.close()
	return f(svc, specs, prog)
}

// withJournal loads the configuration without rotord's credentials, opens
// the journal and runs f on it; the journal is closed once f returns.
func (a *app) withJournal(ctx context.Context, f func(svc *services) error) error {
	if err := a.setupLocal(); err != nil {
		return err
	}
	svc, _, err := a.open(ctx, false)
	if err != nil {
		return err
	}
	defer svc.close()
	return f(svc)
}

// reportAs says how rotations reports its results.
type reportAs struct {
	what   string // names the operation in the exit message: "rotation", "rollback"...
	empty  string // printed instead of an empty report; "" reports it as any other
	dryRun bool   // the results are a dry run's
	asJSON bool   // write JSON
}

// rotations runs op on the named secrets (all configured secrets when none
// is named) with a progress display on a terminal, alerts on its results
// and reports them.
func (a *app) rotations(ctx context.Context, names []string, rep reportAs, op func(e rotationEngine, specs []rotation.SecretSpec) []rotation.Result) error {
	return a.withSecrets(ctx, names, true, func(svc *services, specs []rotation.SecretSpec, prog *progress) error {
		results := op(svc.engine, specs)
		prog.done()
		a.notifier().rotations(ctx, results...)
		if len(results) == 0 && !rep.asJSON && rep.empty != "" {
			fmt.Fprintln(a.stdout, rep.empty)
			return nil
		}
		return a.reportResults(results, rep.dryRun, rep.asJSON, rep.what)
	})
}

// forEach calls f(i) for every i below n, at most limit at once, and
// returns once every call has.
func forEach(n, limit int, f func(i int)) {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
