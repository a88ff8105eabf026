package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

func (a *app) historyCmd() *cobra.Command {
	var (
		asJSON     bool
		heartbeats bool
		audit      bool
		limit      int
		before     int64
	)
	cmd := &cobra.Command{
		Use:   "history [NAME]",
		Short: "List journaled rotations, newest first",
		Long: `List the rotations in the journal, newest first, of one secret or of all:
their id (for rollback --to), kind, state, hosts changed, and why a rotation
did not commit. Passwords are never shown.

With --heartbeats it lists heartbeat results instead (from the journal's
audit trail): each check's time, who ran it (heartbeat: the daemon's
schedule or rotord heartbeat) and what it found: ok, or the drift,
unreachable or other problem with the hosts it concerns.

With --audit it lists the journal's audit trail instead: every event
recorded about the secrets (a rotation's steps, recoveries, rollbacks,
heartbeats, missed slots), with its time, the rotation it belongs to, who
acted (scheduler, cli, daemon, heartbeat) and what happened. The trail
holds no password.`,
		Example: `  rotord history
  rotord history prod-web-root --limit 5
  rotord history --json | jq '.[] | select(.state != "committed")'
  rotord history prod-web-root --heartbeats
  rotord history prod-web-root --audit --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			switch {
			case heartbeats && audit:
				return usagef("--heartbeats and --audit: choose one")
			case heartbeats:
				return a.heartbeatHistory(cmd.Context(), name, limit, before, asJSON)
			case audit:
				return a.auditHistory(cmd.Context(), name, limit, before, asJSON)
			}
			return a.history(cmd.Context(), name, limit, before, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "write rotations as JSON")
	cmd.Flags().IntVar(&limit, "limit", 50, "list at most `N` rotations")
	cmd.Flags().BoolVar(&heartbeats, "heartbeats", false, "list heartbeat results instead of rotations")
	cmd.Flags().BoolVar(&audit, "audit", false, "list the audit trail's events instead of rotations")
	cmd.Flags().Int64Var(&before, "before", 0, "list only rotations with an id below `ID` (paging)")
	return cmd
}

func (a *app) history(ctx context.Context, name string, limit int, before int64, asJSON bool) error {
	if limit < 1 {
		return usagef("--limit: want at least 1, got %d", limit)
	}
	return a.withJournal(ctx, func(svc *services) error {
		if name != "" {
			// History keeps secrets since removed from the file: use the
			// configured spelling when there is one.
			if s, ok := a.cfg.Spec(name); ok {
				name = s.Name
			}
		}
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
		return writeListing(a.stdout, asJSON, rs, toJSONRotation, "no rotations in the journal", renderHistory)
	})
}

// auditLogReader is the journal's audit trail (*store.DB).
type auditLogReader interface {
	AuditLog(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error)
}

// auditEvents reads the journal's audit events of one secret (name; ""
// for all) and one action ("" for all), newest first, each secret named
// as the configuration spells it.
func (a *app) auditEvents(ctx context.Context, svc *services, name, action string, limit int, before int64) ([]store.AuditEvent, error) {
	if limit < 1 {
		return nil, usagef("--limit: want at least 1, got %d", limit)
	}
	j, ok := svc.journal.(auditLogReader)
	if !ok {
		return nil, errors.New("this journal keeps no audit trail")
	}
	evs, err := j.AuditLog(ctx, store.AuditQuery{Secret: name, Action: action, BeforeID: before, Limit: limit})
	if err != nil {
		return nil, err
	}
	for i := range evs {
		if s, ok := a.cfg.Spec(evs[i].Secret); ok {
			evs[i].Secret = s.Name
		}
	}
	return evs, nil
}

// heartbeatHistory lists recorded heartbeat results, newest first.
func (a *app) heartbeatHistory(ctx context.Context, name string, limit int, before int64, asJSON bool) error {
	return a.withJournal(ctx, func(svc *services) error {
		evs, err := a.auditEvents(ctx, svc, name, "heartbeat", limit, before)
		if err != nil {
			return fmt.Errorf("read heartbeats: %w", err)
		}
		return writeListing(a.stdout, asJSON, evs, toJSONHeartbeatEvent, "no heartbeats in the journal", renderHeartbeatEvents)
	})
}

// auditHistory lists the audit trail's events, newest first.
func (a *app) auditHistory(ctx context.Context, name string, limit int, before int64, asJSON bool) error {
	return a.withJournal(ctx, func(svc *services) error {
		evs, err := a.auditEvents(ctx, svc, name, "", limit, before)
		if err != nil {
			return fmt.Errorf("read audit trail: %w", err)
		}
		return writeListing(a.stdout, asJSON, evs, toJSONAuditEvent, "no audit events in the journal", renderAudit)
	})
}
