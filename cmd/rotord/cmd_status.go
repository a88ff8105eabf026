package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// instanceStore is what the daemon and status need of a journal that
// several daemons share (*store.DB).
type instanceStore interface {
	Heartbeat(ctx context.Context, in store.Instance) error
	Deregister(ctx context.Context, id string) error
	ForgetInstances(ctx context.Context, before time.Time) (int, error)
	Instances(ctx context.Context) ([]store.Instance, error)
	HeldLeases(ctx context.Context) ([]store.Lease, error)
	ClaimSlot(ctx context.Context, secretName, holder string, now time.Time) (time.Time, bool, error)
	Acquire(ctx context.Context, secretName, holder string, ttl time.Duration) (int64, error)
	Release(ctx context.Context, secretName, holder string) error
	Unfinished(ctx context.Context) ([]rotation.Rotation, error)
}

// jsonInstance is one instance in status --json.
type jsonInstance struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"last_heartbeat"`
	Stale     bool      `json:"stale"`
	InFlight  int       `json:"rotations_in_flight"`
	Holds     []string  `json:"holds"`
}

// jsonStatus is status --json.
type jsonStatus struct {
	Journal   string         `json:"journal"`
	Instances []jsonInstance `json:"instances"`
	// Leases held by processes that are no daemon instance (a rotord
	// rotate, rollback or recover), by holder.
	Others map[string][]string `json:"other_holders"`
}

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the rotord daemons sharing the journal and the secrets each holds",
		Long: `List the rotord run instances that share the journal (several may, on
PostgreSQL): each one's id (host, process and a random part), host, version,
start and last heartbeat, how many rotations it has in flight, and the
secrets whose leases it holds. An instance whose last heartbeat is older
than three heartbeat periods is marked stale: it was killed or cut off from
the database; once its leases expire, another instance recovers what it
left unfinished. A starting instance forgets those silent for a week.
Leases held by other processes (rotord rotate, rollback,
recover) are listed after the instances.`,
		Example: `  rotord status
  rotord status --json | jq '.instances[] | select(.stale)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.status(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "write the status as JSON")
	return cmd
}

func (a *app) status(ctx context.Context, asJSON bool) error {
	return a.withJournal(ctx, func(svc *services) error { return a.statusOf(ctx, svc, asJSON) })
}

// statusOf writes the instances sharing the journal and the leases held.
func (a *app) statusOf(ctx context.Context, svc *services, asJSON bool) error {
	is, ok := svc.journal.(instanceStore)
	if !ok {
		return errors.New("status: this journal keeps no instances")
	}
	insts, err := is.Instances(ctx)
	if err != nil {
		return err
	}
	leases, err := is.HeldLeases(ctx)
	if err != nil {
		return err
	}
	st := jsonStatus{Journal: a.cfg.Store.Describe(), Instances: []jsonInstance{}, Others: map[string][]string{}}
	byID := map[string]int{}
	now := a.clockOrWall().Now()
	stale := 3 * instanceHeartbeatEvery(a.cfg)
	for i, in := range insts {
		byID[in.ID] = i
		st.Instances = append(st.Instances, jsonInstance{ID: in.ID, Host: in.Host, Version: in.Version,
			Started: in.Started, Heartbeat: in.Heartbeat, Stale: now.Sub(in.Heartbeat) > stale,
			InFlight: in.InFlight, Holds: []string{}})
	}
	for _, l := range leases {
		name := l.Secret
		if s, ok := a.cfg.Spec(name); ok {
			name = s.Name
		}
		if !l.Expires.After(now) {
			name += " (expired)"
		}
		if i, ok := byID[l.Holder]; ok {
			st.Instances[i].Holds = append(st.Instances[i].Holds, name)
		} else {
			st.Others[l.Holder] = append(st.Others[l.Holder], name)
		}
	}
	if asJSON {
		return writeJSON(a.stdout, st)
	}
	fmt.Fprintf(a.stdout, "journal: %s\n", st.Journal)
	if len(st.Instances) == 0 {
		fmt.Fprintln(a.stdout, "no rotord run instance is registered")
	} else {
		w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "INSTANCE\tHOST\tVERSION\tSTARTED\tLAST HEARTBEAT\tIN FLIGHT\tHOLDS")
		for _, in := range st.Instances {
			hb := in.Heartbeat.Local().Format(time.DateTime)
			if in.Stale {
				hb += " (stale)"
			}
			holds := strings.Join(in.Holds, ", ")
			if holds == "" {
				holds = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", in.ID, in.Host, in.Version,
				in.Started.Local().Format(time.DateTime), hb, in.InFlight, holds)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	holders := make([]string, 0, len(st.Others))
	for h := range st.Others {
		holders = append(holders, h)
	}
	sort.Strings(holders)
	for _, h := range holders {
		fmt.Fprintf(a.stdout, "held by %s (no daemon): %s\n", h, strings.Join(st.Others[h], ", "))
	}
	return nil
}

// instanceHeartbeatEvery is how often rotord run records its instance's
// heartbeat: a third of the lease TTL, so that status tells a stale
// instance before its leases can expire.
func instanceHeartbeatEvery(cfg *Config) time.Duration {
	return cfg.Rotation.LeaseTTL.D() / 3
}

// instanceHost is the host name an instance is registered with.
func instanceHost() string {
	h, _ := os.Hostname()
	return h
}
