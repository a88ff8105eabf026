package main

import (
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCmd writes the man pages, rotord(1) and one per subcommand, generated
// from the command definitions and gzipped, into a directory. The package
// build runs it; it is hidden from --help.
func (a *app) manCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write rotord's man pages (gzipped, section 1) into DIR",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeManPages(cmd.Root(), args[0])
		},
	}
}

// writeManPages writes root's man pages into dir as NAME.1.gz, leaving
// hidden commands and cobra's help command out.
func writeManPages(root *cobra.Command, dir string) error {
	tmp, err := os.MkdirTemp("", "rotord-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root.DisableAutoGenTag = true // reproducible pages: no generation date
	hdr := &doc.GenManHeader{Title: "ROTORD", Section: "1", Source: "rotord " + version, Manual: "rotord manual"}
	if err := doc.GenManTree(root, hdr, tmp); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".1") {
			return err
		}
		return gzipFile(p, filepath.Join(dir, d.Name()+".gz"))
	})
}

// gzipFile writes src gzipped (at the best compression, with no name or
// time in the header, as Debian wants) to dst.
func gzipFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		_ = f.Close()
		return err
	}
	if _, err := zw.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
