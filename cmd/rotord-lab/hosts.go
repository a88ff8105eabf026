package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// labVariants are the passwd programs of the lab's five hosts, in order.
var labVariants = []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.PwQuality, sshtest.Debian, sshtest.BusyBox}

// mixedHosts are the lab's hosts: real OpenSSH sshd hosts with their own
// /etc (from the test rig) for the variants this machine can run, and
// in-process SSH hosts with an emulated passwd standing in for the others.
type mixedHosts struct {
	rig     *sshtest.Rig      // nil when no host is real
	servers []*sshtest.Server // the stand-ins
	addrs   []string          // in labVariants order
	real    []sshtest.Variant // variants of the real hosts
	standIn []sshtest.Variant // variants stood in for
	why     map[string]string // variant → why it is stood in for
}

// startRealHosts starts real hosts for every lab variant the machine can
// run (it needs root, sshd and unshare: sshtest.Available) and in-process
// stand-ins for the rest, saying why in Describe.
func startRealHosts(ctx context.Context, dir string) (*mixedHosts, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	h := &mixedHosts{addrs: make([]string, len(labVariants)), why: map[string]string{}}
	var specs []sshtest.HostSpec
	var realAt, standInAt []int
	for i, v := range labVariants {
		if why := variantMissing(v); why != "" {
			h.why[v.String()] = why
			standInAt = append(standInAt, i)
			h.standIn = append(h.standIn, v)
			continue
		}
		specs = append(specs, sshtest.HostSpec{Variant: v})
		realAt = append(realAt, i)
		h.real = append(h.real, v)
	}
	if len(specs) > 0 {
		rig, err := sshtest.StartRig(ctx, sshtest.RigOptions{Dir: dir, Hosts: specs, User: labUser, Password: labPassword, BusyBox: sshtest.BusyBoxPath()})
		if err != nil {
			return nil, err
		}
		h.rig = rig
		for j, rh := range rig.Hosts() {
			h.addrs[realAt[j]] = rh.Addr()
		}
	}
	for _, i := range standInAt {
		if err := h.startStandIn(i); err != nil {
			_ = h.Close()
			return nil, err
		}
	}
	return h, nil
}

// startStandIn starts an in-process stand-in as lab host i.
func (h *mixedHosts) startStandIn(i int) error {
	s, err := sshtest.NewServer(sshtest.ServerOptions{User: labUser, Password: labPassword})
	if err != nil {
		return err
	}
	h.servers = append(h.servers, s)
	h.addrs[i] = s.Addr()
	return nil
}

// startInProcessHosts starts in-process stand-ins for every lab host, for
// machines where no real host can run (no root, no sshd).
func startInProcessHosts() (*mixedHosts, error) {
	h := &mixedHosts{addrs: make([]string, len(labVariants))}
	for i := range labVariants {
		if err := h.startStandIn(i); err != nil {
			_ = h.Close()
			return nil, err
		}
	}
	return h, nil
}

// variantMissing says what this machine lacks to run a real host of
// variant v, or "" when it has it.
func variantMissing(v sshtest.Variant) string {
	switch v {
	case sshtest.BusyBox:
		if _, err := os.Stat(sshtest.BusyBoxPath()); err != nil {
			return fmt.Sprintf("no BusyBox with the passwd applet at %s: set ROTORD_BUSYBOX", sshtest.BusyBoxPath())
		}
	case sshtest.PwQuality:
		mods, _ := filepath.Glob("/usr/lib/*/security/pam_pwquality.so")
		more, _ := filepath.Glob("/lib/*/security/pam_pwquality.so")
		if len(mods)+len(more) == 0 {
			return "no pam_pwquality (install libpam-pwquality)"
		}
		if _, err := os.Stat("/var/cache/cracklib/cracklib_dict.pwd"); err != nil {
			return "no cracklib dictionary for pam_pwquality (install cracklib-runtime)"
		}
	}
	if _, err := os.Stat("/usr/bin/passwd"); err != nil {
		return "no /usr/bin/passwd"
	}
	return ""
}

func (h *mixedHosts) Addrs() []string { return h.addrs }

func (h *mixedHosts) KnownHosts() (string, error) {
	var b strings.Builder
	if h.rig != nil {
		kh, err := os.ReadFile(h.rig.KnownHostsFile())
		if err != nil {
			return "", err
		}
		b.Write(kh)
		if len(kh) > 0 && kh[len(kh)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	for _, s := range h.servers {
		b.WriteString(s.KnownHostsLine() + "\n")
	}
	return b.String(), nil
}

func (h *mixedHosts) Describe() string {
	var parts []string
	if len(h.real) > 0 {
		parts = append(parts, fmt.Sprintf("%d real OpenSSH sshd hosts on loopback, each with its own /etc/shadow and passwd (%s)", len(h.real), variantNames(h.real)))
	}
	switch {
	case len(h.servers) == 0:
	case len(h.real) == 0:
		parts = append(parts, fmt.Sprintf("%d in-process SSH hosts with an emulated passwd", len(h.servers)))
	default:
		var kinds, whys []string
		seen := map[string]bool{}
		for _, v := range h.standIn {
			if !seen[v.String()] {
				seen[v.String()] = true
				kinds = append(kinds, v.String())
				whys = append(whys, h.why[v.String()])
			}
		}
		parts = append(parts, fmt.Sprintf("%d in-process SSH hosts with an emulated passwd standing in for the %s ones (%s)",
			len(h.servers), strings.Join(kinds, " and "), strings.Join(whys, "; ")))
	}
	return strings.Join(parts, "; ")
}

func variantNames(vs []sshtest.Variant) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.String()
	}
	return strings.Join(names, ", ")
}

func (h *mixedHosts) Close() error {
	for _, s := range h.servers {
		_ = s.Close()
	}
	if h.rig != nil {
		return h.rig.Close()
	}
	return nil
}

func hostOf(addr string) (rotation.Host, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return rotation.Host{}, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return rotation.Host{}, err
	}
	return rotation.Host{Name: host, Port: p}, nil
}
