package main

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/rotord/rotord/rotation"
)

func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b)
	p.Update("web", 3, 10, 0)
	p.Update("db", 1, 5, 1)
	p.Update("web", 10, 10, 0)
	p.Done()
	want := "\r\033[Krotating 1 secret: 3/10 hosts done, 0 failed" +
		"\r\033[Krotating 2 secrets: 4/15 hosts done, 1 failed" +
		"\r\033[Krotating 2 secrets: 11/15 hosts done, 1 failed" +
		"\r\033[K"
	if b.String() != want {
		t.Fatalf("progress %q\nwant     %q", b.String(), want)
	}
}

// progressEngine reports progress as an engine would.
type progressEngine struct {
	fakeEngine
	report progressFunc
}

func (e *progressEngine) Rotate(ctx context.Context, spec rotation.SecretSpec, opts rotation.RotateOptions) rotation.Result {
	e.report(spec.Name, 1, 2, 1)
	e.report(spec.Name, 2, 2, 1)
	return e.fakeEngine.Rotate(ctx, spec, opts)
}

func TestRotateShowsProgressOnlyOnTerminal(t *testing.T) {
	for _, tty := range []bool{true, false} {
		pe := &progressEngine{}
		ta := newTestApp(t, threeSecrets, services4(pe))
		ta.stderrTTY = tty
		ta.adapters.open = func(_ context.Context, _ *Config, _ *slog.Logger, pf progressFunc) (*services, error) {
			pe.report = func(s string, d, tot, f int) {
				if pf != nil {
					pf(s, d, tot, f)
				}
			}
			return ta.svc, nil
		}
		if code := ta.run(context.Background(), "rotate", "web"); code != exitOK {
			t.Fatalf("exit %d: %s", code, ta.err)
		}
		got := bytes.Contains(ta.err.Bytes(), []byte("rotating 1 secret: 2/2 hosts done, 1 failed"))
		if got != tty {
			t.Fatalf("tty=%v: stderr %q", tty, ta.err)
		}
	}
}
