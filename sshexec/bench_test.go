package sshexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/sshexec/sshtest"
)

const (
	benchHosts       = 50
	benchConcurrency = 16
)

// floorChange is the same work as a rotation done by the least code that
// can do it with x/crypto/ssh: log in with old, run passwd on a PTY
// answering its three prompts, log in with new and run true.
func floorChange(addr string, hk ssh.HostKeyCallback, old, new string) error {
	cfg := func(pw string) *ssh.ClientConfig {
		return &ssh.ClientConfig{User: rigUser, Auth: []ssh.AuthMethod{ssh.Password(pw)}, HostKeyCallback: hk,
			HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 30 * time.Second}
	}
	c, err := ssh.Dial("tcp", addr, cfg(old))
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.RequestPty("dumb", 24, 200, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		return err
	}
	if err := s.Start("env LC_ALL=C LANG=C passwd"); err != nil {
		return err
	}
	var buf bytes.Buffer
	p := make([]byte, 4096)
	for _, answer := range []string{old, new, new} {
		for !bytes.HasSuffix(bytes.TrimRight(buf.Bytes(), " "), []byte("password:")) {
			n, err := out.Read(p)
			if err != nil {
				return err
			}
			buf.Write(p[:n])
		}
		buf.Reset()
		if _, err := in.Write([]byte(answer + "\n")); err != nil {
			return err
		}
	}
	if err := s.Wait(); err != nil {
		return err
	}
	v, err := ssh.Dial("tcp", addr, cfg(new))
	if err != nil {
		return err
	}
	defer v.Close()
	vs, err := v.NewSession()
	if err != nil {
		return err
	}
	defer vs.Close()
	return vs.Run("true")
}

// sshexecChange is the same work through sshexec: the lifeline login,
// ChangePassword, and Verify with the new password.
func sshexecChange(d *Dialer, h rotation.Host, old, new string) error {
	ctx := context.Background()
	s, err := d.Login(ctx, h, rigUser, secret.New(old))
	if err != nil {
		return err
	}
	defer s.Close()
	if o := s.ChangePassword(ctx, secret.New(old), secret.New(new)); o.Kind != rotation.OutcomeChanged {
		return fmt.Errorf("outcome %v", o)
	}
	return d.Verify(ctx, h, rigUser, secret.New(new))
}

// cpuTimes returns this process's user and system CPU time so far. The
// hosts' sshd and passwd run in other processes and are not counted.
func cpuTimes() cpu {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpu{}
	}
	return cpu{user: time.Duration(ru.Utime.Nano()), sys: time.Duration(ru.Stime.Nano())}
}

type cpu struct{ user, sys time.Duration }

func (c cpu) sub(o cpu) cpu        { return cpu{c.user - o.user, c.sys - o.sys} }
func (c cpu) add(o cpu) cpu        { return cpu{c.user + o.user, c.sys + o.sys} }
func (c cpu) total() time.Duration { return c.user + c.sys }

// fanOut runs f on every host, benchConcurrency at a time, and returns
// the wall and this process's CPU time it took.
func fanOut(b *testing.B, n int, f func(i int) error) (wall time.Duration, used cpu) {
	sem := make(chan struct{}, benchConcurrency)
	var wg sync.WaitGroup
	errs := make([]error, n)
	c0, t0 := cpuTimes(), time.Now()
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	wall, used = time.Since(t0), cpuTimes().sub(c0)
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return wall, used
}

// The rig runs in a process of its own during the benchmark, so that the
// CPU time measured here is the clients' alone: reading 50 sshd logs and
// reaping their processes is the rig's work, not sshexec's.
const rigProcessEnv = "ROTORD_BENCH_RIG_HOSTS"

// rigProcess is what the rig process tells the benchmark.
type rigProcess struct {
	Hosts      []sshtest.RigHost
	KnownHosts string
	Startup    time.Duration
}

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(rigProcessEnv)); err == nil {
		os.Exit(holdRig(n))
	}
	os.Exit(m.Run())
}

// holdRig starts n hosts, prints their rigProcess as JSON on stdout and
// keeps them running until stdin is closed.
func holdRig(n int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	opts, err := benchRigOptions(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r, err := sshtest.StartRig(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer r.Close()
	err = json.NewEncoder(os.Stdout).Encode(rigProcess{Hosts: r.Hosts(), KnownHosts: r.KnownHostsFile(), Startup: time.Since(t0)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startRigProcess runs holdRig in a child process (this test binary again)
// and returns its hosts; the rig stops when the benchmark ends.
func startRigProcess(b *testing.B, n int, env ...string) rigProcess {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), rigProcessEnv+"="+strconv.Itoa(n)), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("rig process: %v", err)
		}
	})
	var r rigProcess
	if err := json.NewDecoder(stdout).Decode(&r); err != nil {
		b.Fatalf("rig process: %v", err)
	}
	return r
}

// BenchmarkChangeVerify50 changes and verifies the password on 50 real
// hosts at concurrency 16, through sshexec and through a minimal
// x/crypto/ssh loop (the floor) in the same run, and reports the ratio of
// their wall times and sshexec's own CPU time per host.
func BenchmarkChangeVerify50(b *testing.B) {
	sshtest.RequireRig(b)
	r := startRigProcess(b, benchHosts)
	d, err := New(Config{KnownHosts: r.KnownHosts, StepTimeout: time.Minute, ConnectTimeout: time.Minute}, nil)
	if err != nil {
		b.Fatal(err)
	}
	hk, err := knownhosts.New(r.KnownHosts)
	if err != nil {
		b.Fatal(err)
	}
	hosts, startup := r.Hosts, r.Startup
	const other = "Rot-8q!Zx-2024-k"
	var floorWall, wall time.Duration
	var floorCPU, ownCPU cpu
	floor := func(from, to string) {
		w, c := fanOut(b, len(hosts), func(j int) error {
			return floorChange(net.JoinHostPort(hosts[j].Name, strconv.Itoa(hosts[j].Port)), hk, from, to)
		})
		floorWall, floorCPU = floorWall+w, floorCPU.add(c)
	}
	viaSSHExec := func(from, to string) {
		w, c := fanOut(b, len(hosts), func(j int) error {
			return sshexecChange(d, rotation.Host{Name: hosts[j].Name, Port: hosts[j].Port}, from, to)
		})
		wall, ownCPU = wall+w, ownCPU.add(c)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each round moves every host away from rigPw and back. Which
		// client goes first alternates, so drift in the machine's load
		// does not always favour the same one.
		if i%2 == 0 {
			floor(rigPw, other)
			viaSSHExec(other, rigPw)
		} else {
			viaSSHExec(rigPw, other)
			floor(other, rigPw)
		}
	}
	b.StopTimer()
	n := float64(b.N * len(hosts))
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	ratio := float64(wall) / float64(floorWall)
	fmt.Printf("\nchange+verify on %d real hosts, concurrency %d, %d round(s); rig started in %v\n",
		len(hosts), benchConcurrency, b.N, startup.Round(time.Millisecond))
	fmt.Printf("%-10s %10s %9s %26s\n", "", "wall", "hosts/s", "client CPU/host (user+sys)")
	for _, r := range []struct {
		name string
		wall time.Duration
		cpu  cpu
	}{{"floor", floorWall, floorCPU}, {"sshexec", wall, ownCPU}} {
		fmt.Printf("%-10s %10v %9.1f %11.2f ms (%.2f+%.2f)\n", r.name, r.wall.Round(time.Millisecond),
			n/r.wall.Seconds(), ms(r.cpu.total()), ms(r.cpu.user), ms(r.cpu.sys))
	}
	fmt.Printf("wall ratio sshexec/floor %.3f (target <= 1.1); sshexec client CPU %.2f ms/host (target <= 10), %+.2f ms/host over the floor\n",
		ratio, ms(ownCPU.total()), ms(ownCPU.total())-ms(floorCPU.total()))
	b.ReportMetric(ratio, "wall-ratio")
	b.ReportMetric(ms(ownCPU.total()), "client-cpu-ms/host")
	b.ReportMetric(ms(floorCPU.total()), "floor-cpu-ms/host")
}
