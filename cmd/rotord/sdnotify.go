package main

// systemd integration: the service manager's notification socket
// (sd_notify(3), for Type=notify and WatchdogSec=) and journald's
// priority prefixes (sd-daemon(3)) on log lines.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sdNotifier tells systemd the daemon's state through $NOTIFY_SOCKET. It
// is a few lines of the datagram protocol rather than a dependency. A nil
// *sdNotifier (not started by systemd as Type=notify) sends nothing. Safe
// for concurrent use.
type sdNotifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration // how often to ping: half of WatchdogSec; 0 for none
	log      *slog.Logger
}

// newSDNotifier reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID;
// it returns nil when there is no socket to notify.
func newSDNotifier(getenv func(string) string, log *slog.Logger) *sdNotifier {
	path := getenv("NOTIFY_SOCKET")
	if path == "" || (path[0] != '/' && path[0] != '@') {
		return nil
	}
	n := &sdNotifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}, log: log}
	if usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		pid := getenv("WATCHDOG_PID")
		if pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond / 2
		}
	}
	return n
}

// notify sends one state ("READY=1", "WATCHDOG=1", ...). A failure is
// logged: systemd restarts a unit whose watchdog starves, which is the
// outcome we want anyway, so nothing else can be done about it here.
func (n *sdNotifier) notify(state string) {
	if n == nil {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err == nil {
		_, err = conn.Write([]byte(state))
		_ = conn.Close()
	}
	if err != nil {
		n.log.Warn("systemd notification not sent", "state", state, "err", err)
	}
}

// ready tells systemd the daemon has started (after recovery).
func (n *sdNotifier) ready() { n.notify("READY=1\nSTATUS=scheduling rotations") }

// stopping tells systemd the daemon is shutting down.
func (n *sdNotifier) stopping() {
	n.notify("STOPPING=1\nSTATUS=stopping: waiting for rotations in flight")
}

// reloading tells systemd a configuration reload started; ready ends it.
func (n *sdNotifier) reloading() { n.notify("RELOADING=1\nSTATUS=reloading the configuration") }

// alive is the watchdog's ping; the scheduler's loop calls it.
func (n *sdNotifier) alive() { n.notify("WATCHDOG=1") }

// watchdogEvery is how often alive must be called; 0 when systemd runs
// no watchdog on the service.
func (n *sdNotifier) watchdogEvery() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// journalStream reports whether f is connected to journald: systemd sets
// $JOURNAL_STREAM to the device and inode of the stream it hands the
// service as stdout/stderr (systemd.exec(5)).
func journalStream(f *os.File, getenv func(string) string) bool {
	dev, ino, ok := strings.Cut(getenv("JOURNAL_STREAM"), ":")
	if !ok || f == nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && dev == strconv.FormatUint(uint64(st.Dev), 10) && ino == strconv.FormatUint(st.Ino, 10)
}

// journalPriority is the sd-daemon(3) prefix of a log level: journald
// stores the line at that priority, so `journalctl -p err` finds errors.
func journalPriority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	default:
		return "<7>"
	}
}

// journalHandler prefixes each record its inner handler writes with the
// record's journald priority. The inner handler writes to a
// priorityWriter shared by every handler derived with WithAttrs or
// WithGroup.
type journalHandler struct {
	inner slog.Handler
	w     *priorityWriter
}

// newJournalHandler returns a handler writing to w, built by mk, that
// prefixes each line with its priority.
func newJournalHandler(w io.Writer, mk func(io.Writer) slog.Handler) slog.Handler {
	pw := &priorityWriter{out: w}
	return &journalHandler{inner: mk(pw), w: pw}
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.prefix = journalPriority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), w: h.w}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), w: h.w}
}

// priorityWriter writes every line it is given with prefix before it;
// journalHandler sets prefix, holding mu, around each record.
type priorityWriter struct {
	mu     sync.Mutex
	prefix string
	out    io.Writer
}

func (w *priorityWriter) Write(p []byte) (int, error) {
	var b bytes.Buffer
	for line := range bytes.Lines(p) {
		b.WriteString(w.prefix)
		b.Write(line)
	}
	if _, err := w.out.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
