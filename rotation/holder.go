package rotation

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// DefaultHolder names this process as a lease holder with an instance id
// that is new at every process start:
//
//	host/pid/nonce/boot/start
//
// host is the host name, nonce a random part, boot the kernel's boot id
// (/proc/sys/kernel/random/boot_id) and start the process's start time in
// clock ticks since boot (/proc/PID/stat). The last three pin the process
// down on its machine even when its PID is reused — rotord as PID 1 of a
// container restarted within a lease TTL, a quick reboot — so that
// recovery can tell a dead holder from a live one (see holderDead).
// Where /proc cannot be read, boot and start are "-".
func DefaultHolder() string {
	h, _ := os.Hostname()
	var n [4]byte
	_, _ = rand.Read(n[:])
	boot, start := bootID(), "-"
	if boot == "" {
		boot = "-"
	}
	if st, ok := procStart(os.Getpid()); ok {
		start = strconv.FormatUint(st, 10)
	}
	return fmt.Sprintf("%s/%d/%s/%s/%s", h, os.Getpid(), hex.EncodeToString(n[:]), boot, start)
}

// holderDead reports whether a lease holder is a process of this machine
// that no longer runs, so that its lease may be taken over before it
// expires. A holder of another host is never judged (it may be alive).
// On this host a holder named by DefaultHolder is dead when it was named
// in another boot, or when no process with its PID and start time runs
// (its PID is free, or reused by another process — ours included).
// Holders named by older rotords ("host/pid/nonce") are dead when their
// PID is free or is ours (this process names itself otherwise).
//
// Two containers that share a journal must not share a host name: their
// PIDs are in different namespaces.
func holderDead(holder string) bool {
	parts := strings.Split(holder, "/")
	if len(parts) != 3 && len(parts) != 5 {
		return false
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(parts[1])
	if parts[0] != host || err != nil || pid <= 0 {
		return false
	}
	if len(parts) == 5 {
		boot, start := parts[3], parts[4]
		if myBoot := bootID(); boot != "-" && myBoot != "" {
			if boot != myBoot {
				return true // named before this machine's last boot
			}
			if st, err := strconv.ParseUint(start, 10, 64); err == nil {
				cur, running := procStart(pid)
				if !running {
					return !pidRuns(pid)
				}
				return cur != st // the PID now names another process
			}
		}
	}
	if pid == os.Getpid() {
		// Not this process's name, yet its PID: a process before us.
		return len(parts) == 3
	}
	return !pidRuns(pid)
}

// pidRuns reports whether a process with the PID exists (or may: a
// permission error means it does).
func pidRuns(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// bootID returns the kernel's boot id, "" if it cannot be read.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procStart returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/PID/stat); ok is false if it cannot be read.
func procStart(pid int) (start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses: the fields after it follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, err == nil
}
