package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/sshexec/sshtest"
)

// TestCrashMatrix kills `rotord rotate` with SIGKILL at randomly chosen step
// boundaries of the protocol (fault points compiled in only with the
// rotord_faults tag) and at random moments, then runs `rotord recover` and
// checks the first promise: the password Secret Server holds works on
// every host, and the journal kept every password it ever set.
// ROTORD_CRASH_POINTS sets how many kills (default 50), ROTORD_CRASH_SEED
// replays a run.
func TestCrashMatrix(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, ctx, labOptions{
		variants: []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.Debian},
		groups:   map[string][]int{"web-root": {0, 1, 2}},
		schedule: "@weekly",
		extra:    "rotation:\n  host_retries: 2\n",
	})
	crashMatrix(t, ctx, l, "web-root", accPassword, 50, l.logsIn, nil)
}

// TestCrashMatrixThroughSu is the crash matrix of root rotated through su
// on PermitRootLogin-no hosts (shadow-utils and BusyBox): kills at the
// protocol's steps and at random moments, su's dialogues included, and
// `rotord recover` (its probes through su too) ends consistent. The first
// kills land inside su's dialogues, while a host runs su for the
// pre-flight and lifeline, and again for the verify. 14 kills
// unless ROTORD_CRASH_POINTS says otherwise.
func TestCrashMatrixThroughSu(t *testing.T) {
	sshtest.RequireReach(t)
	ctx := context.Background()
	noRoot := &sshtest.ReachSpec{PermitRootLogin: "no"}
	logonPw := privateFile(t, t.TempDir(), "logon-password", accPassword+"\n")
	l := newLab(t, ctx, labOptions{
		variants: []sshtest.Variant{sshtest.Debian, sshtest.BusyBox, sshtest.Debian},
		reach:    map[int]*sshtest.ReachSpec{0: noRoot, 1: noRoot, 2: noRoot},
		groups:   map[string][]int{"root-su": {0, 1, 2}},
		schedule: "@weekly", rootPass: accRootPassword, asRoot: true,
		extra:       "rotation:\n  host_retries: 2\nlogon:\n  user: " + accUser + "\n  password_file: " + logonPw + "\n",
		secretExtra: map[string]string{"root-su": "    escalation: su\n"},
	})
	rootHolds := func(_ context.Context, i int, pw string) bool {
		ok, err := l.rig.PasswordWorks(i, "root", pw)
		return err == nil && ok
	}
	crashMatrix(t, ctx, l, "root-su", accRootPassword, 14, rootHolds, []escKill{
		{"su-preflight", func(a []string, passwdSeen bool) bool { return isSu(a) && !passwdSeen }, false},
		{"su-verify", func(a []string, passwdSeen bool) bool { return isSu(a) && passwdSeen }, true},
	})
}

// TestCrashMatrixThroughSudo kills `rotord rotate` while sudo runs passwd
// for root (the logon account logs in with its password and answers sudo's
// prompt with it) on PermitRootLogin-no hosts, and at the protocol's
// steps; `rotord recover`, its probes through sudo too, ends consistent.
// 6 kills unless ROTORD_CRASH_POINTS says otherwise.
func TestCrashMatrixThroughSudo(t *testing.T) {
	ctx := context.Background()
	l := rootSudoLab(t, ctx, "rotation:\n  host_retries: 2\n")
	rootHolds := func(_ context.Context, i int, pw string) bool {
		ok, err := l.rig.PasswordWorks(i, "root", pw)
		return err == nil && ok
	}
	crashMatrix(t, ctx, l, "root-sudo", accRootPassword, 6, rootHolds, []escKill{
		{"sudo-passwd", func(a []string, _ bool) bool { return isSudoPasswd(a) }, false},
	})
}

// escKill is a kill point inside an escalation dialogue: rotord is killed
// once a rig host runs a process whose command line match accepts
// (passwdSeen: that host has run passwd in this rotation). The host is
// stopped (SIGSTOP) from that moment until rotord is dead, so the kill
// lands while the dialogue is open.
type escKill struct {
	name  string
	match func(args []string, passwdSeen bool) bool
	// fresh: only a process that started after the host ran passwd
	// counts (shadow-utils' su stays as the lifeline's parent all along).
	fresh bool
}

func isSu(args []string) bool { return len(args) > 0 && filepath.Base(args[0]) == "su" }

func isPasswd(args []string) bool {
	for _, a := range args {
		if filepath.Base(a) == "passwd" {
			return true
		}
	}
	return false
}

func isSudo(args []string) bool { return len(args) > 0 && filepath.Base(args[0]) == "sudo" }

// isSudoPasswd: sudo running passwd (the change), not sudo -l asking
// whether it would (the pre-flight).
func isSudoPasswd(args []string) bool {
	return isSudo(args) && isPasswd(args) && !slices.Contains(args, "-l")
}

// killInEscalation watches the rig's hosts until one runs a process k
// matches, stops that host, kills cmd and resumes the host. It returns
// false when cmd exited first (done closed).
func killInEscalation(t *testing.T, l *lab, cmd *exec.Cmd, k escKill, done <-chan struct{}) bool {
	t.Helper()
	hosts := len(l.rig.Hosts())
	passwdSeen := make([]bool, hosts)
	before := make([]map[int]bool, hosts) // pids running before passwd
	for i := range before {
		before[i] = map[int]bool{}
	}
	tick := time.NewTicker(200 * time.Microsecond)
	defer tick.Stop()
	for {
		for i := 0; i < hosts; i++ {
			ps, err := l.rig.Processes(i)
			if err != nil {
				continue
			}
			for _, p := range ps {
				if isPasswd(p.Args) && !isSudo(p.Args) {
					passwdSeen[i] = true
				}
			}
			for _, p := range ps {
				if !passwdSeen[i] {
					before[i][p.Pid] = true
				}
				if (k.fresh && before[i][p.Pid]) || !k.match(p.Args, passwdSeen[i]) {
					continue
				}
				if err := l.rig.PauseHost(i); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Process.Kill()
				<-done
				if err := l.rig.ResumeHost(i); err != nil {
					t.Fatal(err)
				}
				return true
			}
		}
		select {
		case <-done:
			return false
		case <-tick.C:
		}
	}
}

// crashMatrix kills `rotord rotate NAME` (built with fault points) kills
// times and checks after each `rotord recover` that the password Secret
// Server holds is the one every host takes (holds) and the journal kept
// both. first is the secret's first password.
//
// esc are kill points inside escalation dialogues: the first kills go to
// each of them in turn, so every one is exercised on every run.
func crashMatrix(t *testing.T, ctx context.Context, l *lab, name, first string, kills int, holds func(ctx context.Context, i int, pw string) bool, esc []escKill) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rotord-faults")
	if out, err := exec.Command("go", "build", "-tags", "rotord_faults", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build with fault points: %v\n%s", err, out)
	}
	if v, err := strconv.Atoi(os.Getenv("ROTORD_CRASH_POINTS")); err == nil && v > 0 {
		kills = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("ROTORD_CRASH_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("crash matrix: %d kills, ROTORD_CRASH_SEED=%d", kills, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	hosts := len(l.rig.Hosts())
	points := []string{"journaled", "before-vault-write", "after-vault-write"}
	for n := 1; n <= hosts; n++ {
		points = append(points, fmt.Sprintf("host-changing#%d", n), fmt.Sprintf("host-changed#%d", n))
	}
	points = append(points, "timed") // SIGKILL from outside at a random moment, mid-dialogue included

	seen := map[string]bool{first: true} // every password Secret Server has held
	tally := map[string]int{}
	escByName := map[string]escKill{}
	for _, e := range esc {
		escByName[e.name] = e
		points = append(points, e.name)
	}
	for k := 0; k < kills; k++ {
		point := points[rng.IntN(len(points))]
		if k < len(esc) {
			point = esc[k].name
		}
		ek, inEsc := escByName[point]
		refusedBefore, pamBefore := make([]int, hosts), make([]int, hosts)
		for i := range refusedBefore {
			refusedBefore[i] = l.rig.RefusedLogins(i)
			var err error
			if pamBefore[i], err = l.rig.PAMRefusals(i); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(bin, "--config", l.config, "--log-level", "error", "rotate", name)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + l.dir}
		if point != "timed" && !inEsc {
			cmd.Env = append(cmd.Env, "ROTORD_FAULT="+point)
		}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if point == "timed" {
			timer := time.AfterFunc(time.Duration(rng.IntN(1500))*time.Millisecond, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()
		}
		var err error
		if inEsc {
			done := make(chan struct{})
			go func() { err = cmd.Wait(); close(done) }()
			if !killInEscalation(t, l, cmd, ek, done) {
				t.Fatalf("kill %d at %s: rotord finished before the dialogue was seen: %v\n%s", k, point, err, out.String())
			}
		} else {
			err = cmd.Wait()
		}
		killed := false
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
				killed = true
			}
		}
		if point != "timed" && !killed {
			t.Fatalf("kill %d at %s: rotord was not killed (%v):\n%s", k, point, err, out.String())
		}
		if !killed && err != nil {
			t.Fatalf("kill %d (timed): rotate failed: %v\n%s", k, err, out.String())
		}
		recOut, recErr, code := l.rotord("--log-level", "error", "recover")
		if code != 0 {
			t.Fatalf("kill %d at %s: recover exit %d:\n%s%s", k, point, code, recOut, recErr)
		}
		pw := l.password(name)
		seen[pw] = true
		for i := 0; i < hosts; i++ {
			if !holds(ctx, i, pw) {
				t.Fatalf("kill %d at %s: host %d does not take the password Secret Server holds\nrecover said:\n%s", k, point, i, recOut)
			}
			if n := l.rig.RefusedLogins(i) - refusedBefore[i]; n > 2 {
				t.Fatalf("kill %d at %s: host %d refused %d logins in one rotation and its recovery (budget 2)", k, point, i, n)
			}
			// PAM's own count takes in su and sudo, which sshd's log does not.
			if n, err := l.rig.PAMRefusals(i); err != nil || n-pamBefore[i] > 2 {
				t.Fatalf("kill %d at %s: host %d's PAM refused %d passwords in one rotation and its recovery (budget 2; %v)", k, point, i, n-pamBefore[i], err)
			}
		}
		outcome := "rolled back"
		if !killed {
			outcome = "finished before the kill"
		}
		db := l.openStore(ctx)
		if unf, _ := db.Unfinished(ctx); len(unf) != 0 {
			t.Fatalf("kill %d at %s: %d rotations still unfinished after recover", k, point, len(unf))
		}
		if nr, _ := db.NeedsReconcile(ctx); len(nr) != 0 {
			t.Fatalf("kill %d at %s: %d rotations need reconcile after recover", k, point, len(nr))
		}
		// Nothing lost: the rotation keeps both passwords, sealed, and the
		// one Secret Server holds is the one its final state says.
		hist, err := db.History(ctx, rotation.HistoryQuery{Secret: name, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) == 1 {
			r, err := db.Get(ctx, hist[0].ID)
			if err != nil || r.Old.IsZero() || r.New.IsZero() {
				t.Fatalf("kill %d at %s: rotation %d lost a password: %v", k, point, hist[0].ID, err)
			}
			want := r.Old.Reveal()
			if r.State == rotation.StateCommitted {
				want = r.New.Reveal()
				if killed {
					outcome = "rolled forward"
				}
			}
			if pw != want {
				t.Fatalf("kill %d at %s: rotation %d is %s but Secret Server holds the other password", k, point, r.ID, r.State)
			}
		} else if killed {
			outcome = "nothing journaled"
		}
		_ = db.Close()
		tally[point+" → "+outcome]++
	}
	var lines []string
	for k, v := range tally {
		lines = append(lines, fmt.Sprintf("%3d  %s", v, k))
	}
	sort.Strings(lines)
	t.Logf("kills by point and recovery:\n%s\nSecret Server held %d distinct passwords", strings.Join(lines, "\n"), len(seen))
}
