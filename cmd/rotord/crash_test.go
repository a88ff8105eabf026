package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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
	crashMatrix(t, ctx, l, "web-root", accPassword, 50, l.logsIn)
}

// TestCrashMatrixThroughSu is the crash matrix of root rotated through su
// on PermitRootLogin-no hosts (shadow-utils and BusyBox): kills at the
// protocol's steps and at random moments, su's dialogues included, and
// `rotord recover` (its probes through su too) ends consistent. 20 kills
// unless ROTORD_CRASH_POINTS says otherwise.
func TestCrashMatrixThroughSu(t *testing.T) {
	sshtest.RequireReach(t)
	ctx := context.Background()
	noRoot := &sshtest.ReachSpec{PermitRootLogin: "no"}
	dir := t.TempDir()
	logonPw := filepath.Join(dir, "logon-password")
	if err := os.WriteFile(logonPw, []byte(accPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
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
	crashMatrix(t, ctx, l, "root-su", accRootPassword, 20, rootHolds)
}

// crashMatrix kills `rotord rotate NAME` (built with fault points) kills
// times and checks after each `rotord recover` that the password Secret
// Server holds is the one every host takes (holds) and the journal kept
// both. first is the secret's first password.
func crashMatrix(t *testing.T, ctx context.Context, l *lab, name, first string, kills int, holds func(ctx context.Context, i int, pw string) bool) {
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
	for k := 0; k < kills; k++ {
		point := points[rng.IntN(len(points))]
		cmd := exec.Command(bin, "--config", l.config, "--log-level", "error", "rotate", name)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + l.dir}
		if point != "timed" {
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
		err := cmd.Wait()
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
