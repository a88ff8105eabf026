package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
)

func (a *app) historyCmd() *cobra.Command {
	var (
		asJSON bool
		limit  int
		before int64
	)
	cmd := &cobra.Command{
		Use:   "history [NAME]",
		Short: "List journaled rotations, newest first",
		Long: `List the rotations in the journal, newest first, of one secret or of all:
their id (for rollback --to), kind, state, hosts changed, and why a rotation
did not commit. Passwords are never shown.`,
		Example: `  rotord history
  rotord history prod-web-root --limit 5
  rotord history --json | jq '.[] | select(.state != "committed")'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return a.history(cmd.Context(), name, limit, before, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "write rotations as JSON")
	cmd.Flags().IntVar(&limit, "limit", 50, "list at most `N` rotations")
	cmd.Flags().Int64Var(&before, "before", 0, "list only rotations with an id below `ID` (paging)")
	return cmd
}

func (a *app) history(ctx context.Context, name string, limit int, before int64, asJSON bool) error {
	if limit < 1 {
		return usagef("--limit: want at least 1, got %d", limit)
	}
	if err := a.setupLocal(); err != nil {
		return err
	}
	if name != "" {
		// History keeps secrets since removed from the file: use the
		// configured spelling when there is one.
		if s, ok := a.cfg.Spec(name); ok {
			name = s.Name
		}
	}
	svc, _, err := a.open(ctx, false)
	if err != nil {
		return err
	}
	defer svc.close()
	rs, err := svc.journal.History(ctx, rotation.HistoryQuery{Secret: name, BeforeID: before, Limit: limit})
	if err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	// The journal keys secrets by their canonical (lower-case) identity;
	// show the spelling the configuration uses where there is one.
	for i := range rs {
		if s, ok := a.cfg.Spec(rs[i].Secret); ok {
			rs[i].Secret = s.Name
		}
	}
	if asJSON {
		out := make([]jsonRotation, 0, len(rs))
		for _, r := range rs {
			out = append(out, toJSONRotation(r))
		}
		return writeJSON(a.stdout, out)
	}
	if len(rs) == 0 {
		fmt.Fprintln(a.stdout, "no rotations in the journal")
		return nil
	}
	return renderHistory(a.stdout, rs)
}
