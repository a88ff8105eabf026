package rotation_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// TestHolderHelper is not a test: re-executed with ROTORD_HOLDER_HELPER
// set, it prints this process's lease holder name and waits for stdin to
// close — a live rotord of this machine.
func TestHolderHelper(t *testing.T) {
	if os.Getenv("ROTORD_HOLDER_HELPER") == "" {
		return
	}
	fmt.Println(rotation.DefaultHolder())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// A lease left by a dead process of this machine is taken over at start-up
// even when its PID is in use again — by this very process (rotord as PID 1
// of a restarted container) or after a reboot — and its unfinished rotation
// is recovered. A live holder is respected.
func TestDeadHolderWithReusedPID(t *testing.T) {
	me := strings.Split(rotation.DefaultHolder(), "/")
	if len(me) != 5 || me[3] == "-" || me[4] == "-" {
		t.Fatalf("holder %q does not name boot and start time", strings.Join(me, "/"))
	}
	host, pid, boot, start := me[0], me[1], me[3], me[4]

	child := exec.Command(os.Args[0], "-test.run=^TestHolderHelper$")
	child.Env = append(os.Environ(), "ROTORD_HOLDER_HELPER=1")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = child.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	live := strings.TrimSpace(line)

	for _, tc := range []struct {
		name, holder string
		dead         bool
	}{
		{"OurPIDEarlierStart", fmt.Sprintf("%s/%s/0badc0de/%s/%s1", host, pid, boot, start), true},
		{"OurPIDOtherBoot", fmt.Sprintf("%s/%s/0badc0de/00000000-0000-4000-8000-000000000000/%s", host, pid, start), true},
		{"OurPIDOlderRotord", fmt.Sprintf("%s/%s/0badc0de", host, pid), true},
		{"LiveProcess", live, false},
		{"OtherHost", "elsewhere.example/1/0badc0de/" + boot + "/1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 2, nil)
			ctx := context.Background()
			// The holder changed h00 and died, leaving its lease and an
			// unfinished rotation.
			gen, err := f.journal.Acquire(ctx, spec.Name, tc.holder, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			r := rotation.Rotation{Secret: spec.Name, SecretID: f.id, Username: "root", Kind: rotation.KindRotate,
				Old: secret.New(oldPw), New: secret.New("New-Passw0rd!y"), Generation: gen,
				Hosts: []rotation.HostRecord{{Host: rotation.Host{Name: "h00", Port: 22}, State: rotation.HostChanged},
					{Host: rotation.Host{Name: "h01", Port: 22}, State: rotation.HostPending}}}
			id, err := f.journal.Begin(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.journal.SetState(ctx, id, gen, rotation.StateHostsChanging, ""); err != nil {
				t.Fatal(err)
			}
			f.hosts.hosts["h00"].password = "New-Passw0rd!y"

			res := f.engine.Recover(ctx, "startup")
			if len(res) != 1 {
				t.Fatalf("recover: %+v", res)
			}
			var held *rotation.LeaseHeldError
			if !tc.dead {
				if !errors.As(res[0].Err, &held) || held.Holder != tc.holder {
					t.Fatalf("recover: %v, want the lease left to its live holder", res[0].Err)
				}
				if f.hosts.pw("h00") != "New-Passw0rd!y" {
					t.Error("a host was touched under a live holder's lease")
				}
				return
			}
			if res[0].Err != nil {
				t.Fatalf("recover: %v, want the dead holder's lease taken over", res[0].Err)
			}
			f.assertAll(t, oldPw)
		})
	}
}
