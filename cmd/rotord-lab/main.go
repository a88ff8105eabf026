// Command rotord-lab runs rotord's main job on a built-in lab: the Secret
// Server emulator with a few secrets, and SSH hosts — real OpenSSH sshd
// hosts with real passwd programs when the machine allows (root, sshd and
// unshare present; BusyBox and pam_pwquality for those hosts), in-process
// SSH hosts standing in for the rest, said on screen. `make demo` runs
// `rotord-lab demo`, which drives the rotord binary beside it through
// check, a rotation, history, a failed rotation that reverts, and a
// rollback, explaining each step in one line, then cleans up.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	fs := flag.NewFlagSet("rotord-lab", flag.ContinueOnError)
	bin := fs.String("rotord", "", "the rotord binary to drive (default: rotord beside this program)")
	keep := fs.Bool("keep", false, "keep the lab directory (config, journal, logs) after the demo")
	inproc := fs.Bool("in-process", false, "use in-process SSH hosts even where real sshd hosts could run")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: rotord-lab demo [flags]\n\nRuns rotord's main job on a built-in lab and explains each step.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if len(os.Args) < 2 || os.Args[1] != "demo" {
		fs.Usage()
		os.Exit(2)
	}
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, "rotord-lab:", err)
			os.Exit(1)
		}
		*bin = filepath.Join(filepath.Dir(exe), "rotord")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{rotord: *bin, keep: *keep, inProcess: *inproc, out: os.Stdout}
	if err := d.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rotord-lab: demo failed:", err)
		os.Exit(1)
	}
}
