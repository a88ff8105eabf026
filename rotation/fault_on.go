//go:build rotord_faults

package rotation

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	faultMu   sync.Mutex
	faultHits = map[string]int{}
)

// faultPoint kills the process with SIGKILL when ROTORD_FAULT names the
// point: "NAME" for its first hit, "NAME#N" for its N-th. Compiled only
// with the rotord_faults build tag, for the crash tests; never in a
// release binary.
func faultPoint(name string) {
	want := os.Getenv("ROTORD_FAULT")
	if want == "" {
		return
	}
	wantName, nth := want, 1
	if i := strings.IndexByte(want, '#'); i >= 0 {
		wantName = want[:i]
		if n, err := strconv.Atoi(want[i+1:]); err == nil {
			nth = n
		}
	}
	if wantName != name {
		return
	}
	faultMu.Lock()
	faultHits[name]++
	hit := faultHits[name] == nth
	faultMu.Unlock()
	if hit {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
