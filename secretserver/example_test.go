package secretserver_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
)

// A rotation's worth of API work against the emulator.
func Example() {
	srv := sstest.New()
	defer srv.Close()
	srv.AddUser("svc-rotord", "", "Svc-Pass-1!")
	srv.AddSecret(sstest.SecretSeed{Name: "prod-web-root", Folder: `\Prod\Web`, Username: "root", Password: "Old-1!", Notes: "web01, web02:2222"})

	cfg := secretserver.DefaultConfig()
	cfg.URL = srv.URL // https://127.0.0.1:PORT/SecretServer
	cfg.Username, cfg.Password = "svc-rotord", secret.New("Svc-Pass-1!")
	cfg.CAPEM = srv.CACertPEM()
	c, err := secretserver.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	id, _ := c.Resolve(ctx, "prod-web-root")
	s, _ := c.Read(ctx, id, "")
	pw, _ := c.Generate(ctx, s)
	err = c.Write(ctx, s, pw, "scheduled rotation")
	fmt.Println(s.Name, s.FolderPath, s.Username, s.Hosts, err, srv.Field(id, "password") == pw.Reveal())
	// Output: prod-web-root \Prod\Web root [web01 web02:2222] <nil> true
}
