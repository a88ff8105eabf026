package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// smallDisk mounts a tmpfs of the given size at dir for the test. Mounting
// needs root: without it the test skips, or fails under CI=true.
func smallDisk(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a small tmpfs for the journal: %v", err)
		}
		t.Skipf("cannot mount a small tmpfs for the journal (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// fill writes path until the file system has no room left.
func fill(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

// shadowWatch reports, on the returned channel, the index of the first
// rig host whose /etc/shadow is replaced (passwd wrote it), after running
// then (filling the disk) at once. stop ends the watch if nothing came.
func shadowWatch(t *testing.T, upperDirs []string, then func()) (changed <-chan int, stop func()) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	wds := map[int32]int{}
	for i, d := range upperDirs {
		wd, err := syscall.InotifyAddWatch(fd, d, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE|syscall.IN_CREATE)
		if err != nil {
			t.Fatalf("inotify watch %s: %v", d, err)
		}
		wds[int32(wd)] = i
	}
	out := make(chan int, 1)
	go func() {
		defer syscall.Close(fd)
		buf := make([]byte, 64*1024)
		for {
			n, err := syscall.Read(fd, buf)
			if err != nil {
				close(out)
				return
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := string(bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)], "\x00"))
				off += syscall.SizeofInotifyEvent + int(ev.Len)
				switch {
				case name == "rotord-test-stop":
					close(out)
					return
				case name == "shadow" && ev.Mask&(syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE) != 0:
					then()
					out <- wds[ev.Wd]
					close(out)
					return
				}
			}
		}
	}()
	return out, func() { _ = os.WriteFile(filepath.Join(upperDirs[0], "rotord-test-stop"), nil, 0o600) }
}

// TestAcceptDiskFullRevertsChangedHost: the journal's file system fills
// up the moment passwd changed the first host of a `rotord rotate` of
// three secrets. The changed host is put back to the old password although
// its revert cannot be journaled, Secret Server keeps the old password,
// and the output and the alert name the host the journal may still list
// as changed. Once there is room again, recovery settles the journal.
func TestAcceptDiskFullRevertsChangedHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hook := newWebhook(t)
	groups := map[string][]int{"a-root": {0, 1}, "b-root": {2}, "c-root": {3}}
	l := newLab(t, ctx, labOptions{hosts: 4, groups: groups, schedule: "@weekly",
		extra: "notify:\n  webhook_url: " + hook.url + "/hooks/full\n"})
	l.env = []string{"SSL_CERT_FILE=" + l.write("webhook-ca.pem", hook.caPEM)}

	disk := l.path("journal-disk")
	smallDisk(t, disk, "1m")
	cfg, err := os.ReadFile(l.config)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(cfg), "path: "+l.path("rotord.db"), "path: "+filepath.Join(disk, "rotord.db"), 1)
	if moved == string(cfg) {
		t.Fatal("store.path not found in the lab's configuration")
	}
	l.write("rotord.yaml", moved)
	if _, errOut, code := l.rotord("migrate"); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, errOut)
	}

	var uppers []string
	for i := range l.rig.Hosts() {
		// Each rig host's /etc layer, where passwd replaces shadow.
		uppers = append(uppers, filepath.Join(l.rig.Dir(), fmt.Sprintf("host-%03d", i), "upper"))
	}
	filler := filepath.Join(disk, "filler")
	var fillErr error
	changed, stop := shadowWatch(t, uppers, func() { fillErr = fill(filler) })

	out, errOut, code := l.rotord("rotate", "a-root", "b-root", "c-root")
	stop()
	host, ok := <-changed
	if !ok {
		t.Fatalf("no host was changed; rotate exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if fillErr != nil {
		t.Fatalf("fill the journal's disk: %v", fillErr)
	}
	if code == 0 {
		t.Fatalf("rotate succeeded with a full journal\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	l.noSecrets(out + errOut)
	t.Logf("rotate: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	addr := l.rig.Hosts()[host].Addr()
	if !l.logsIn(ctx, host, accPassword) {
		t.Fatalf("host %s (changed before the disk filled) does not take the old password\nstdout:\n%s\nstderr:\n%s", addr, out, errOut)
	}
	for name := range groups {
		if got := l.password(name); got != accPassword {
			t.Errorf("Secret Server's password of %s changed", name)
		}
		for _, i := range groups[name] {
			if !l.logsIn(ctx, i, accPassword) {
				t.Errorf("%s: host %d does not take the old password", name, i)
			}
		}
	}
	if !strings.Contains(out+errOut, addr) {
		t.Errorf("the output does not name the changed host %s\nstdout:\n%s\nstderr:\n%s", addr, out, errOut)
	}
	// rotate delivered its alerts before it exited.
	if !strings.Contains(strings.Join(hook.bodies(), "\n"), addr) {
		t.Errorf("no alert names the changed host %s: %q", addr, hook.bodies())
	}

	// Room again: recovery settles whatever the journal could not record.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := l.rotord("recover"); code != 0 {
		t.Fatalf("recover: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for name := range groups {
		l.requireWorks(ctx, name)
		if got := l.password(name); got != accPassword {
			t.Errorf("after recovery, Secret Server's password of %s changed", name)
		}
	}
}
