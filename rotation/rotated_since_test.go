package rotation_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// pagedHistory is a journal whose History pages like the store's.
type pagedHistory struct {
	rs    []rotation.Rotation // newest first
	err   error
	pages int
}

func (h *pagedHistory) History(_ context.Context, q rotation.HistoryQuery) ([]rotation.Rotation, error) {
	h.pages++
	if h.err != nil {
		return nil, h.err
	}
	var out []rotation.Rotation
	for _, r := range h.rs {
		if (q.BeforeID == 0 || r.ID < q.BeforeID) && r.Secret == q.Secret && len(out) < q.Limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func TestRotatedSince(t *testing.T) {
	due := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return due.Add(d) }
	ctx := context.Background()

	// Newest first: a failed rotation and many rollbacks after the
	// committed rotation of the slot, past the first page.
	var rs []rotation.Rotation
	id := int64(200)
	for i := range 60 {
		rs = append(rs, rotation.Rotation{ID: id, Secret: "a", Kind: rotation.KindRollback, State: rotation.StateCommitted, Started: at(time.Hour - time.Duration(i)*time.Second)})
		id--
	}
	rs = append(rs,
		rotation.Rotation{ID: id, Secret: "a", Kind: rotation.KindRotate, State: rotation.StateRolledBack, Started: at(2 * time.Minute)},
		rotation.Rotation{ID: id - 1, Secret: "a", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: at(time.Minute)},
		rotation.Rotation{ID: id - 2, Secret: "a", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: at(-time.Hour)},
	)
	h := &pagedHistory{rs: rs}
	got, err := rotation.RotatedSince(ctx, h, "a", due)
	if err != nil || got == nil || got.ID != id-1 {
		t.Fatalf("got %+v, %v; want rotation %d", got, err, id-1)
	}
	if h.pages != 2 {
		t.Fatalf("read %d pages, want 2", h.pages)
	}

	// Only rotations before the slot, or not committed ones: none.
	for _, tc := range []struct {
		name string
		rs   []rotation.Rotation
	}{
		{"Before", []rotation.Rotation{{ID: 3, Secret: "a", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: at(-time.Second)}}},
		{"RolledBack", []rotation.Rotation{{ID: 3, Secret: "a", Kind: rotation.KindRotate, State: rotation.StateRolledBack, Started: at(time.Second)}}},
		{"NeedsReconcile", []rotation.Rotation{{ID: 3, Secret: "a", Kind: rotation.KindRotate, State: rotation.StateNeedsReconcile, Started: at(time.Second)}}},
		{"OtherSecret", []rotation.Rotation{{ID: 3, Secret: "b", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: at(time.Second)}}},
		{"Empty", nil},
	} {
		got, err := rotation.RotatedSince(ctx, &pagedHistory{rs: tc.rs}, "a", due)
		if err != nil || got != nil {
			t.Errorf("%s: got %+v, %v; want none", tc.name, got, err)
		}
	}
	// At the due time exactly counts.
	got, _ = rotation.RotatedSince(ctx, &pagedHistory{rs: []rotation.Rotation{{ID: 1, Secret: "a", Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: due}}}, "a", due)
	if got == nil {
		t.Fatal("a rotation started at the due time does not count")
	}
	boom := errors.New("disk I/O error")
	if _, err := rotation.RotatedSince(ctx, &pagedHistory{err: boom}, "a", due); !errors.Is(err, boom) {
		t.Fatalf("error %v, want it wrapped", err)
	}
}
