package main

import (
	"strings"
	"testing"

	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/sshexec"
)

// A setting the file leaves out takes the adapter's default, and the
// adapters are handed complete values: the SSH dialer and the Secret
// Server client get exactly their DefaultConfig for what the file does not
// set (retries and paging included, which the file cannot set).
func TestConfigAbsentTakesAdapterDefaults(t *testing.T) {
	path, _ := writeConfig(t, minimal)
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	dc := dialerConfig(c)
	want := sshexec.DefaultConfig()
	want.KnownHosts = c.SSH.KnownHosts
	if dc != want {
		t.Errorf("dialer config %+v, want %+v", dc, want)
	}
	vc := vaultConfig(c, nil)
	def := secretserver.DefaultConfig()
	if vc.Auth != def.Auth || vc.Timeout != def.Timeout || vc.HostsField != def.HostsField || vc.MaxRetries != def.MaxRetries ||
		vc.RetryBaseDelay != def.RetryBaseDelay || vc.RetryMaxDelay != def.RetryMaxDelay || vc.PageSize != def.PageSize {
		t.Errorf("vault config %+v, want the defaults %+v", vc, def)
	}
}

// An explicit zero is not the default: where zero means nothing it is a
// configuration error naming the file and the line.
func TestConfigExplicitZero(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"ssh:\n  port: 0\n", "FILE:8: ssh.port: must be a TCP port (1-65535), got 0"},
		{"ssh:\n  connect_timeout: 0\n", "FILE:8: ssh.connect_timeout: must be positive"},
		{"ssh:\n  step_timeout: 0s\n", "FILE:8: ssh.step_timeout: must be positive"},
		{"ssh:\n  concurrency: 0\n", "FILE:8: ssh.concurrency: must be at least 1"},
		{"secret_server_timeout", "FILE:3: secret_server.timeout: must be positive"},
	} {
		body := minimal + tc.body
		if tc.body == "secret_server_timeout" {
			body = strings.Replace(minimal, "  username: svc\n", "  timeout: 0\n  username: svc\n", 1)
		}
		path, _ := writeConfig(t, body)
		_, err := LoadConfig(path, testEnv(nil))
		want := strings.ReplaceAll(tc.want, "FILE", path)
		if err == nil || err.Error() != want {
			t.Errorf("%q: err %v, want %s", tc.body, err, want)
		}
	}
}
