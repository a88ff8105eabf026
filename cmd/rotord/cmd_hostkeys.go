package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

func (a *app) hostkeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hostkeys",
		Short: "Manage the SSH host keys rotord trusts",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return usagef("hostkeys: name a subcommand (scan)") },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "scan HOST[:PORT]...",
		Short: "Print the host keys offered by hosts, as known_hosts lines",
		Long: `Connect to each host, read the host keys it offers (no login, no password
sent) and print them as known_hosts lines on stdout, with their SHA-256
fingerprints on stderr. Compare the fingerprints with the hosts' own
(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the host) before appending the
lines to the file named by ssh.known_hosts.`,
		Example: `  rotord hostkeys scan web01 db01:2222 >> /etc/rotord/known_hosts`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.scanHostKeys(cmd.Context(), args)
		},
	})
	return cmd
}

func (a *app) scanHostKeys(ctx context.Context, hosts []string) error {
	if err := a.setupLocal(); err != nil {
		return err
	}
	failed := 0
	for _, h := range hosts {
		addr, err := hostAddr(h, a.cfg.SSH.Port)
		if err != nil {
			return usagef("%s: %v", h, err)
		}
		lines, err := a.adapters.scanHostKeys(ctx, addr, a.cfg.SSH.ConnectTimeout.D())
		if err != nil {
			fmt.Fprintf(a.stderr, "%s: %v\n", addr, err)
			failed++
			continue
		}
		for _, l := range lines {
			fmt.Fprintln(a.stdout, l)
			if fp, err := fingerprint(l); err == nil {
				fmt.Fprintf(a.stderr, "%s %s\n", addr, fp)
			}
		}
	}
	return outcome(failed, len(hosts), "host key scan")
}

// fingerprint returns "TYPE SHA256:..." for a known_hosts line.
func fingerprint(line string) (string, error) {
	_, _, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
	if err != nil {
		return "", fmt.Errorf("parse known_hosts line: %w", err)
	}
	return key.Type() + " " + ssh.FingerprintSHA256(key), nil
}

// hostAddr returns host:port for "host", "host:port", "v6" or "[v6]:port".
func hostAddr(s string, defaultPort int) (string, error) {
	if host, port, err := net.SplitHostPort(s); err == nil {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || host == "" {
			return "", fmt.Errorf("bad host:port")
		}
		return net.JoinHostPort(host, port), nil
	}
	if s == "" {
		return "", fmt.Errorf("empty host")
	}
	return net.JoinHostPort(s, strconv.Itoa(defaultPort)), nil
}
