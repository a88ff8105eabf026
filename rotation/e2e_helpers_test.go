package rotation_test

import (
	"os"
	"strings"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/sshexec/sshtest"
)

// knownHostsWithout writes a known_hosts file approving every rig host
// but host skip.
func knownHostsWithout(rig *sshtest.Rig, path string, skip int) error {
	var lines []string
	for i, h := range rig.Hosts() {
		if i != skip {
			lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(h.Addr())}, rig.HostKey(i)))
		}
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}
