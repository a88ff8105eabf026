package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// realHosts are OpenSSH sshd hosts with their own /etc, from the test rig.
type realHosts struct{ rig *sshtest.Rig }

func startRealHosts(ctx context.Context, dir string) (*realHosts, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	specs := []sshtest.HostSpec{{Variant: sshtest.Debian}, {Variant: sshtest.BusyBox}, {Variant: sshtest.PwQuality},
		{Variant: sshtest.Debian}, {Variant: sshtest.BusyBox}}
	rig, err := sshtest.StartRig(ctx, sshtest.RigOptions{Dir: dir, Hosts: specs, User: labUser, Password: labPassword})
	if err != nil {
		return nil, err
	}
	return &realHosts{rig: rig}, nil
}

func (r *realHosts) Addrs() []string {
	var out []string
	for _, h := range r.rig.Hosts() {
		out = append(out, h.Addr())
	}
	return out
}

func (r *realHosts) KnownHosts() (string, error) {
	b, err := os.ReadFile(r.rig.KnownHostsFile())
	return string(b), err
}

func (r *realHosts) Describe() string {
	var kinds []string
	for _, h := range r.rig.Hosts() {
		kinds = append(kinds, h.Variant.String())
	}
	return fmt.Sprintf("%d real OpenSSH sshd hosts on loopback, each with its own /etc/shadow and passwd (%s)", len(kinds), strings.Join(kinds, ", "))
}

func (r *realHosts) Close() error { return r.rig.Close() }

// inProcessHosts are in-process SSH servers with an emulated passwd, for
// machines where real hosts cannot run (no root, no sshd).
type inProcessHosts struct{ servers []*sshtest.Server }

func startInProcessHosts() (*inProcessHosts, error) {
	h := &inProcessHosts{}
	for range 5 {
		s, err := sshtest.NewServer(sshtest.ServerOptions{User: labUser, Password: labPassword})
		if err != nil {
			_ = h.Close()
			return nil, err
		}
		h.servers = append(h.servers, s)
	}
	return h, nil
}

func (h *inProcessHosts) Addrs() []string {
	var out []string
	for _, s := range h.servers {
		out = append(out, s.Addr())
	}
	return out
}

func (h *inProcessHosts) KnownHosts() (string, error) {
	var lines []string
	for _, s := range h.servers {
		lines = append(lines, s.KnownHostsLine())
	}
	return strings.Join(lines, "\n") + "\n", nil
}

func (h *inProcessHosts) Describe() string {
	return fmt.Sprintf("%d in-process SSH hosts with an emulated passwd", len(h.servers))
}

func (h *inProcessHosts) Close() error {
	for _, s := range h.servers {
		_ = s.Close()
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
