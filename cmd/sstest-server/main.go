// Command sstest-server serves rotord's Secret Server emulator (package
// secretserver/sstest) over TLS on a loopback address, seeded from a YAML
// file, for the demo and for manual testing:
//
//	sstest-server -listen 127.0.0.1:0 -seed seed.yaml -ca-out ca.pem -url-out url.txt
//
// It writes the certificate authority to trust (PEM) and the base URL to
// the files named, logs requests (never a body, password or token) to
// stderr, and exits on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/rotord/rotord/secretserver/sstest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sstest-server:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	seedPath := flag.String("seed", "", "seed file (YAML: users, templates, secrets)")
	caOut := flag.String("ca-out", "", "write the CA certificate (PEM) to this file")
	urlOut := flag.String("url-out", "", "write the base URL to this file")
	base := flag.String("base-path", "/SecretServer", `base path ("" for the cloud form)`)
	verbose := flag.Bool("v", false, "log every request")
	flag.Parse()

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("-listen: only loopback addresses are allowed")
	}
	var seed sstest.Seed
	if *seedPath != "" {
		f, err := os.Open(*seedPath)
		if err != nil {
			return fmt.Errorf("open seed: %w", err)
		}
		seed, err = sstest.ReadSeed(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := sstest.New(sstest.WithListener(l), sstest.WithBasePath(*base), sstest.WithLogger(log))
	defer srv.Close()
	if err := srv.Apply(seed); err != nil {
		return err
	}
	if *caOut != "" {
		if err := os.WriteFile(*caOut, srv.CACertPEM(), 0o644); err != nil {
			return fmt.Errorf("write ca: %w", err)
		}
	}
	if *urlOut != "" {
		if err := os.WriteFile(*urlOut, []byte(srv.URL+"\n"), 0o644); err != nil {
			return fmt.Errorf("write url: %w", err)
		}
	}
	log.Info("secret server emulator listening", "url", srv.URL, "users", len(seed.Users), "secrets", len(seed.Secrets))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("secret server emulator stopping")
	return nil
}
