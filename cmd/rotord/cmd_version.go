package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/spf13/cobra"
)

// commit and date are set at build time with -ldflags "-X main.commit=...
// -X main.date=..." (see the Makefile); when they are not, the VCS
// information the go command records in the binary is used.
var (
	commit = ""
	date   = ""
)

func (a *app) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print rotord's version, commit, Go version and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				b := build()
				return writeJSON(a.stdout, map[string]string{
					"version": version, "commit": b.commit, "date": b.date,
					"go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH,
				})
			}
			fmt.Fprint(a.stdout, versionLine())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "write the version as JSON")
	return cmd
}

// buildInfo is where the binary came from.
type buildInfo struct {
	commit string // "unknown" when neither ldflags nor the go command said
	date   string // build date, or the commit's date; "unknown" likewise
}

// build returns the commit and date from the ldflags, else from the VCS
// stamp of runtime/debug.ReadBuildInfo (vcs.revision, vcs.time,
// vcs.modified).
var build = sync.OnceValue(func() buildInfo {
	var settings []debug.BuildSetting
	if info, ok := debug.ReadBuildInfo(); ok {
		settings = info.Settings
	}
	return buildFrom(commit, date, settings)
})

// buildFrom is build's logic: the ldflags' commit and date win, then the
// go command's VCS stamp, then "unknown".
func buildFrom(commit, date string, settings []debug.BuildSetting) buildInfo {
	b := buildInfo{commit: commit, date: date}
	var rev, at string
	var modified bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if b.commit == "" && rev != "" {
		b.commit = rev
		if modified {
			b.commit += "-dirty"
		}
	}
	if b.date == "" {
		b.date = at
	}
	if b.commit == "" {
		b.commit = "unknown"
	}
	if b.date == "" {
		b.date = "unknown"
	}
	return b
}

// versionLine is what `rotord version` and `rotord --version` print.
func versionLine() string {
	b := build()
	return fmt.Sprintf("rotord %s (%s, %s/%s)\ncommit: %s\nbuilt:  %s\n",
		version, runtime.Version(), runtime.GOOS, runtime.GOARCH, b.commit, b.date)
}
