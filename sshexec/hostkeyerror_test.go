package sshexec_test

import (
	"strings"
	"testing"

	"github.com/rotord/rotord/sshexec"
)

func TestHostKeyErrorScanHint(t *testing.T) {
	for host, want := range map[string]string{
		"web01":              "rotord hostkeys scan web01`",
		"[web01]:2222":       "rotord hostkeys scan web01:2222`",
		"2001:db8::5":        "rotord hostkeys scan 2001:db8::5`",
		"[2001:db8::5]:2222": "rotord hostkeys scan [2001:db8::5]:2222`",
		"[192.0.2.7]:2200":   "rotord hostkeys scan 192.0.2.7:2200`",
	} {
		err := &sshexec.HostKeyError{Host: host, KeyType: "ssh-ed25519", Fingerprint: "SHA256:x", KnownHosts: "/etc/rotord/known_hosts"}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q lacks %q", host, err.Error(), want)
		}
	}
}
