package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/sshexec"
)

func (a *app) checkCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and test every secret and host without changing anything",
		Long: `Validate the configuration, authenticate to Secret Server, resolve every
configured secret name, and list each secret's username and hosts with each
host's reachability and host-key status (known, unknown or mismatch). Secrets
whose Secret Server auto-change is on are flagged: two rotators would fight.
For a secret with escalation su or sudo, the path (logon account, its
method and the escalation) is shown and checked on every host whose key is
known: the logon, the escalation and the secret's current password, one
authentication each, nothing changed; a logon secret that does not resolve
is a problem. Otherwise no password is sent to any host; none is printed.

The exit status is 0 when no problem was found, 1 naming each problem
otherwise, and 2 for a configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.check(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "write the report as JSON")
	return cmd
}

// checkReport is what check found.
type checkReport struct {
	Config   string        `json:"config"`
	Vault    string        `json:"secret_server"`
	Secrets  []checkSecret `json:"secrets"`
	Problems []string      `json:"problems"`
	Warnings []string      `json:"warnings"`
}

type checkSecret struct {
	Name       string `json:"name"`
	ID         int    `json:"id,omitempty"`
	Folder     string `json:"folder,omitempty"`
	Username   string `json:"username,omitempty"`
	AutoChange bool   `json:"auto_change"`
	// Path is how hosts are reached with su or sudo: the logon account,
	// its method (password, or key and its type) and the escalation.
	Path  string      `json:"path,omitempty"`
	Error string      `json:"error,omitempty"`
	Hosts []checkHost `json:"hosts"`
}

type checkHost struct {
	Host      string                `json:"host"`
	Reachable bool                  `json:"reachable"`
	HostKey   sshexec.HostKeyStatus `json:"host_key,omitempty"`
	// PathOK: every step of the secret's path works (logon, escalation,
	// the current password); PathError names the step that does not.
	PathOK    *bool  `json:"path_ok,omitempty"`
	PathError string `json:"path_error,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (a *app) check(ctx context.Context, asJSON bool) error {
	if err := a.setup(); err != nil {
		return err
	}
	svc, err := a.adapters.openCheck(ctx, a.cfg, a.log)
	if err != nil {
		return err
	}
	defer svc.close()
	rep := a.runChecks(ctx, svc)
	if asJSON {
		if err := writeJSON(a.stdout, rep); err != nil {
			return err
		}
	} else if err := renderCheck(a.stdout, rep); err != nil {
		return err
	}
	if n := len(rep.Problems); n > 0 {
		return &failedError{msg: fmt.Sprintf("check found %d problem(s)", n)}
	}
	return nil
}

// runChecks tests the vault and every host of every configured secret.
func (a *app) runChecks(ctx context.Context, svc *services) checkReport {
	cfg := a.cfg
	rep := checkReport{Config: cfg.Path(), Vault: cfg.SecretServer.URL, Problems: []string{}, Warnings: []string{}}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }

	if _, err := os.Stat(cfg.SSH.KnownHosts); err != nil {
		problem("ssh.known_hosts %s: %v: no host can be trusted; create it with rotord hostkeys scan HOST >> %s",
			cfg.SSH.KnownHosts, unwrapPath(err), cfg.SSH.KnownHosts)
	}
	rep.Problems = append(rep.Problems, svc.problems...)
	// Log in once: if that fails, every secret would fail the same way
	// (and each would try again).
	if au, ok := svc.vault.(interface{ Authenticate(context.Context) error }); ok {
		if err := au.Authenticate(ctx); err != nil {
			if errors.Is(err, rotation.ErrAuthFailed) {
				problem("Secret Server refused rotord's credentials (secret_server.username %s): %v", cfg.SecretServer.Username, err)
			} else {
				problem("Secret Server %s: %v", cfg.SecretServer.URL, err)
			}
			for _, spec := range cfg.Specs() {
				rep.Secrets = append(rep.Secrets, checkSecret{Name: spec.Name, Hosts: []checkHost{}, Error: "not checked: no Secret Server login"})
			}
			return rep
		}
	}
	ec := cfg.EngineConfig("")
	for _, spec := range cfg.Specs() {
		cs := checkSecret{Name: spec.Name, Hosts: []checkHost{}}
		id, err := svc.vault.Resolve(ctx, spec.Name)
		if err != nil {
			cs.Error = err.Error()
			rep.Secrets = append(rep.Secrets, cs)
			if errors.Is(err, rotation.ErrAuthFailed) {
				problem("Secret Server refused rotord's credentials (secret_server.username %s): %v", cfg.SecretServer.Username, err)
				break
			}
			problem("secret %s: %v", spec.Name, err)
			continue
		}
		cs.ID = id
		s, err := svc.vault.Read(ctx, id, ec.HostsFieldOf(spec))
		if err != nil {
			cs.Error = err.Error()
			rep.Secrets = append(rep.Secrets, cs)
			problem("secret %s (id %d): %v", spec.Name, id, err)
			continue
		}
		cs.Folder, cs.Username, cs.AutoChange = s.FolderPath, s.Username, s.AutoChangeEnabled
		if s.AutoChangeEnabled {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf(
				"secret %s (id %d): Secret Server's auto-change is on; it and rotord would both rotate this password: turn auto-change off for it", spec.Name, id))
		}
		// The hosts as a rotation reaches them: the same code as rotate's.
		hosts := ec.HostsOf(spec, s.Hosts)
		cs.Hosts = a.inspectHosts(ctx, svc.hosts, hosts, ec.Port)
		if svc.reach != nil {
			reach, err := svc.reach(ctx, spec.Name)
			switch {
			case err != nil:
				cs.Path = "not usable"
				problem("secret %s: logon account: %v", spec.Name, err)
			case reach != nil:
				cs.Path = reach.Path().String()
				a.preflightPaths(ctx, reach, hosts, s, cs.Hosts)
				for _, h := range cs.Hosts {
					if h.PathOK != nil && !*h.PathOK {
						problem("secret %s: host %s: path %s: %s", spec.Name, h.Host, cs.Path, h.PathError)
					}
				}
			}
		}
		for _, h := range cs.Hosts {
			switch {
			case !h.Reachable:
				problem("secret %s: host %s unreachable: %s", spec.Name, h.Host, h.Error)
			case h.HostKey == sshexec.HostKeyUnknown:
				problem("secret %s: host %s: host key unknown: run rotord hostkeys scan %s, compare the fingerprint with the host's, and add the line to %s",
					spec.Name, h.Host, h.Host, cfg.SSH.KnownHosts)
			case h.HostKey == sshexec.HostKeyMismatch:
				problem("secret %s: host %s: host key differs from %s: if the host was not rebuilt this may be an attack; otherwise replace its line with rotord hostkeys scan %s",
					spec.Name, h.Host, cfg.SSH.KnownHosts, h.Host)
			case h.HostKey != sshexec.HostKeyKnown:
				problem("secret %s: host %s: host key not checked: %s", spec.Name, h.Host, h.Error)
			}
		}
		rep.Secrets = append(rep.Secrets, cs)
	}
	return rep
}

func (a *app) inspectHosts(ctx context.Context, in hostInspector, hosts []rotation.Host, port int) []checkHost {
	out := make([]checkHost, len(hosts))
	forEach(len(hosts), a.cfg.SSH.Concurrency, func(i int) {
		addr := hosts[i].Addr(port)
		hc := in.Inspect(ctx, addr)
		out[i] = checkHost{Host: addr, Reachable: hc.Reachable, HostKey: hc.Status, Error: errText(hc.Err)}
	})
	return out
}

// preflightPaths checks the whole path on every host whose key is known:
// the logon, the escalation and the secret's current password (one
// authentication each, nothing changed). out is aligned with hosts.
func (a *app) preflightPaths(ctx context.Context, reach *sshexec.Reach, hosts []rotation.Host, s rotation.Secret, out []checkHost) {
	forEach(len(hosts), a.cfg.SSH.Concurrency, func(i int) {
		if !out[i].Reachable || out[i].HostKey != sshexec.HostKeyKnown {
			return
		}
		err := reach.Preflight(ctx, hosts[i], s.Username, s.Password)
		ok := err == nil
		out[i].PathOK = &ok
		out[i].PathError = errText(err)
	})
}

func renderCheck(w io.Writer, rep checkReport) error {
	fmt.Fprintf(w, "configuration  %s: valid\n", rep.Config)
	fmt.Fprintf(w, "secret server  %s\n\n", rep.Vault)
	tw := newTable(w)
	header := "SECRET\tID\tFOLDER\tUSER\tHOST\tREACHABLE\tHOST KEY"
	for _, s := range rep.Secrets {
		if s.Path != "" {
			header += "\tPATH\tSTEPS"
			break
		}
	}
	fmt.Fprintln(tw, header)
	for _, s := range rep.Secrets {
		id := "-"
		if s.ID != 0 {
			id = strconv.Itoa(s.ID)
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\n", s.Name, id)
			continue
		}
		for i, h := range s.Hosts {
			name, folder, user := s.Name, s.Folder, s.Username
			if i > 0 {
				name, id, folder, user = "", "", "", ""
			}
			reach, key := "yes", string(h.HostKey)
			if !h.Reachable {
				reach, key = "NO", "-"
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", name, id, folder, user, h.Host, reach, key)
			if s.Path != "" {
				step := "-"
				if h.PathOK != nil {
					step = "ok"
					if !*h.PathOK {
						step = "FAILED"
					}
				}
				line += "\t" + s.Path + "\t" + step
			}
			fmt.Fprintln(tw, line)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(w, "\nwarnings (%d):\n", len(rep.Warnings))
		for _, m := range rep.Warnings {
			fmt.Fprintf(w, "  - %s\n", oneLine(m))
		}
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(w, "\nproblems (%d):\n", len(rep.Problems))
		for _, m := range rep.Problems {
			fmt.Fprintf(w, "  - %s\n", oneLine(m))
		}
	} else {
		fmt.Fprintln(w, "\nno problems found")
	}
	return nil
}
