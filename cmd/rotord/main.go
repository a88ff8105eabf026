// Command rotord rotates the passwords of privileged Linux accounts kept in
// Thycotic / Delinea Secret Server: it changes them on every host listed in
// the secret over SSH, verifies them, writes them back, and keeps old and
// new passwords sealed in a journal so that any change can be undone.
//
// Run "rotord --help" for the commands and their exit statuses.
package main

import (
	"sync"

	"context"
	"errors"
	"fmt"
	"github.com/rotord/rotord/rotation"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := newApp(os.Stdout, os.Stderr, os.Getenv, defaultAdapters())
	a.stderrTTY = isTerminal(os.Stderr)
	a.journal = journalStream(os.Stderr, os.Getenv)
	code := a.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is one invocation of rotord: its flags, configuration, logger,
// output streams and the adapters commands use.
type app struct {
	stdout, stderr io.Writer
	stderrTTY      bool // progress is shown only on a terminal
	journal        bool // stderr is journald's: lines carry priority prefixes
	getenv         func(string) string
	adapters       adapters

	configFlag string
	logLevel   string
	logFormat  string

	cfg *Config
	log *slog.Logger

	reloaded    chan<- error  // tests: told the outcome of each SIGHUP reload
	metricsAddr chan<- string // tests: told the address metrics are served on

	clock rotation.Clock // tests: the daemon's clock; nil for the wall clock

	alerts *notifier // built from cfg by notifier

	created []string // files a command wrote outside stateFiles, to hand over
}

// notifier returns the alert sender of the configuration; nil (sends
// nothing) when neither a webhook nor mail is configured. Call it after
// setup.
func (a *app) notifier() *notifier {
	if a.alerts == nil && a.cfg != nil {
		a.alerts = newNotifier(a.cfg.Notify, a.log, a.alertClock())
	}
	return a.alerts
}

func newApp(stdout, stderr io.Writer, getenv func(string) string, ad adapters) *app {
	return &app{stdout: stdout, stderr: stderr, getenv: getenv, adapters: ad,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

// main runs the command line args and returns the exit status.
func (a *app) main(ctx context.Context, args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(ctx)
	handOver(append(a.stateFiles(), a.created...)...)
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %w", errInterrupted, err)
	}
	if err != nil {
		prefix := ""
		if a.journal {
			prefix = journalPriority(slog.LevelError)
		}
		fmt.Fprintf(a.stderr, "%srotord: %s\n", prefix, err)
	}
	return exitCode(err)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rotord",
		Short: "Rotate privileged Linux passwords kept in Secret Server",
		Long: `rotord rotates the passwords of privileged Linux accounts kept in Thycotic /
Delinea Secret Server. For each configured secret it changes the password on
every host listed in the secret over SSH, verifies it with a fresh login,
writes it back to Secret Server, and keeps old and new passwords sealed in a
journal so that any change can be finished or undone.

Every command reads the configuration file given by --config, else
$ROTORD_CONFIG, else ` + defaultConfigPath + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q (see rotord --help)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&a.configFlag, "config", "c", "", "configuration file (default $ROTORD_CONFIG or "+defaultConfigPath+")")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format on stderr: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.SetHelpTemplate(root.HelpTemplate() + "\n" + exitStatusHelp + "\n")
	// --version prints what `rotord version` prints.
	root.Version = version
	root.SetVersionTemplate(versionLine())

	root.AddCommand(
		a.runCmd(), a.rotateCmd(), a.rollbackCmd(), a.historyCmd(), a.statusCmd(), a.recoverCmd(),
		a.heartbeatCmd(), a.checkCmd(), a.hostkeysCmd(), a.tokenCmd(), a.migrateCmd(),
		a.keygenCmd(), a.rekeyCmd(), a.versionCmd(),
	)
	root.AddCommand(a.manCmd()) // hidden: the package build's man pages
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

// wrapArgs makes argument-count errors usage errors, for the exit status.
func wrapArgs(c *cobra.Command) {
	if v := c.Args; v != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := v(cmd, args); err != nil {
				return &usageError{err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

// setup reads the configuration and builds the logger. Commands that need
// the configuration call it first.
func (a *app) setup() error {
	return a.setupWith(true)
}

// setupLocal is setup for commands that neither talk to Secret Server nor
// log into hosts (the journal, host-key scans, keys): it reads none of the
// passwords the file names, so an empty or unreadable password file does
// not stop them.
func (a *app) setupLocal() error {
	return a.setupWith(false)
}

func (a *app) setupWith(withCredentials bool) error {
	if err := a.setupLog(); err != nil {
		return err
	}
	cfg, err := loadConfig(configPath(a.configFlagOrEnv()), a.getenv, withCredentials)
	if err != nil {
		return err
	}
	a.cfg = cfg
	return nil
}

func (a *app) configFlagOrEnv() string {
	if a.configFlag != "" {
		return a.configFlag
	}
	return a.getenv("ROTORD_CONFIG")
}

func (a *app) setupLog() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return usagef("--log-level: want debug, info, warn or error, got %q", a.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var mk func(io.Writer) slog.Handler
	switch strings.ToLower(a.logFormat) {
	case "text":
		mk = func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
	case "json":
		mk = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) }
	default:
		return usagef("--log-format: want text or json, got %q", a.logFormat)
	}
	if a.journal {
		// journald reads the sd-daemon(3) prefix as the line's priority,
		// so `journalctl -u rotord -p err` finds errors.
		a.log = slog.New(newJournalHandler(a.stderr, mk))
	} else {
		a.log = slog.New(mk(a.stderr))
	}
	return nil
}

// actor names the person running a command, for the audit trail.
func (a *app) actor() string {
	u := a.getenv("SUDO_USER")
	if u == "" {
		u = a.getenv("USER")
	}
	if u == "" {
		u = fmt.Sprintf("uid%d", os.Getuid())
	}
	return "cli:" + u
}

// holder names this process for leases: an instance id (host name, pid,
// nonce, boot id and start time) from which the engine tells a dead local
// process from a live one, even when its pid was reused.
var holder = sync.OnceValue(rotation.DefaultHolder)

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
