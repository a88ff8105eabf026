//go:build rotord_faults

package rotation

import (
	"os"
	"syscall"
)

// faultPoint kills the process with SIGKILL when ROTORD_FAULT names the
// point. Compiled only with the rotord_faults build tag, for the crash
// tests; never in a release binary.
func faultPoint(name string) {
	if want := os.Getenv("ROTORD_FAULT"); want != "" && want == name {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
