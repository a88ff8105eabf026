package sshtest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestRigMovesAHostWhosePortWasTaken takes the first port chosen for a host
// between the choice and sshd's bind, as any process on the machine may:
// the rig must come up anyway, on another port, with known_hosts naming
// the port the host really listens on.
func TestRigMovesAHostWhosePortWasTaken(t *testing.T) {
	RequireRig(t)
	var taken net.Listener
	testHookPortChosen = func(port int) {
		if taken != nil {
			return
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Errorf("take port %d: %v", port, err)
			return
		}
		taken = l
	}
	t.Cleanup(func() {
		testHookPortChosen = nil
		if taken != nil {
			taken.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const pw = "Initial-Pw-2024"
	r, err := StartRig(ctx, RigOptions{Dir: t.TempDir(), Hosts: []HostSpec{{Variant: Debian}}, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if taken == nil {
		t.Fatal("no port was chosen")
	}
	h := r.Hosts()[0]
	if h.Addr() == taken.Addr().String() {
		t.Fatalf("the host kept the taken port %s", h.Addr())
	}
	cb, err := knownhosts.New(r.KnownHostsFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", h.Addr(), &ssh.ClientConfig{
		User:              "rotuser",
		Auth:              []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, // the one key type known_hosts approves
		Timeout:           10 * time.Second,
	})
	if err != nil {
		t.Fatalf("log into the moved host with its known_hosts entry: %v", err)
	}
	c.Close()
}
