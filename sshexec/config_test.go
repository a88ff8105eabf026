package sshexec_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotord/rotord/sshexec"
)

// New refuses negative settings and a port out of range, and takes the
// others as given: the defaults come from DefaultConfig alone.
func TestConfigValidated(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	def := sshexec.DefaultConfig()
	if def.DefaultPort != 22 || def.ConnectTimeout != 10*time.Second || def.StepTimeout != 30*time.Second || def.TrustOnFirstUse {
		t.Fatalf("defaults %+v", def)
	}
	for name, mod := range map[string]func(*sshexec.Config){
		"NegativeConnectTimeout": func(c *sshexec.Config) { c.ConnectTimeout = -time.Second },
		"NegativeStepTimeout":    func(c *sshexec.Config) { c.StepTimeout = -time.Second },
		"NegativePort":           func(c *sshexec.Config) { c.DefaultPort = -1 },
		"PortTooLarge":           func(c *sshexec.Config) { c.DefaultPort = 65536 },
	} {
		cfg := sshexec.DefaultConfig()
		cfg.KnownHosts = kh
		mod(&cfg)
		if _, err := sshexec.New(cfg, nil); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := sshexec.New(sshexec.Config{KnownHosts: kh}, nil); err != nil {
		t.Errorf("zero settings refused: %v", err)
	}
}
