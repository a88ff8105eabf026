package rotation

import (
	"time"

	"github.com/robfig/cron/v3"
)

// wallSchedule makes a cron spec in a zone with daylight saving time keep
// one slot per matching wall-clock time, as cron(8) does for jobs at a fixed
// hour. The cron library alone gets both changes wrong:
//
//   - spring forward: a slot whose wall time does not exist that night
//     (02:30 in Europe/Berlin on the last Sunday of March) is skipped, so a
//     daily rotation is missed for a day. Here it falls due at the instant
//     the clocks jump instead.
//   - fall back: a slot whose wall time happens twice (02:30 on the last
//     Sunday of October) would be due twice, an hour apart. Here only the
//     first is a slot.
//
// Specs whose hour field matches every hour (hourly, "@every") are left as
// the library computes them: their next slot is never far.
type wallSchedule struct {
	spec *cron.SpecSchedule
	// wall is the same spec read in UTC: it tells whether a wall-clock
	// reading (expressed as a UTC time) matches, free of zone changes.
	wall *cron.SpecSchedule
}

// everyHour is the hour field's bits when it matches every hour.
const everyHour = 1<<24 - 1

// withWallClock wraps s when it is a cron spec at fixed hours.
func withWallClock(s cron.Schedule) Schedule {
	spec, ok := s.(*cron.SpecSchedule)
	if !ok || spec.Location == nil || spec.Hour&everyHour == everyHour {
		return s
	}
	wall := *spec
	wall.Location = time.UTC
	return &wallSchedule{spec: spec, wall: &wall}
}

// Next returns the first slot strictly after t.
func (w *wallSchedule) Next(t time.Time) time.Time {
	from := t
	for range 8 { // a few repeated wall times in a row at most
		n := w.spec.Next(from)
		if n.IsZero() {
			return n
		}
		if jump, ok := w.skippedSlot(t, n); ok {
			return jump.In(t.Location())
		}
		if !w.repeated(n) {
			return n
		}
		from = n
	}
	return w.spec.Next(from)
}

// skippedSlot returns the first instant after t and before n at which the
// clocks jumped forward over a wall time the spec matches.
func (w *wallSchedule) skippedSlot(t, n time.Time) (time.Time, bool) {
	loc := w.spec.Location
	cur := t.In(loc)
	for range 16 { // two changes a year; slots are at most a few years apart
		_, end := cur.ZoneBounds()
		if end.IsZero() || !end.Before(n) {
			return time.Time{}, false
		}
		_, before := end.Add(-time.Second).Zone()
		_, after := end.Zone()
		if after > before && w.matchesWall(end, before, after) {
			return end, true
		}
		cur = end
	}
	return time.Time{}, false
}

// matchesWall reports whether the spec matches a wall time the clocks
// skipped at instant end, when the zone's offset went from before to after
// (seconds east of UTC).
func (w *wallSchedule) matchesWall(end time.Time, before, after int) bool {
	// The wall clock read end+before just before the jump, as a UTC time.
	from := end.Add(time.Duration(before) * time.Second).UTC().Truncate(time.Minute)
	to := end.Add(time.Duration(after) * time.Second).UTC()
	for m := from; m.Before(to); m = m.Add(time.Minute) {
		if w.wall.Next(m.Add(-time.Second)).Equal(m) {
			return true
		}
	}
	return false
}

// repeated reports whether n is the second time its wall time is read:
// the clocks went back less than the change's size before n.
func (w *wallSchedule) repeated(n time.Time) bool {
	n = n.In(w.spec.Location)
	start, _ := n.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, now := n.Zone()
	_, prev := start.Add(-time.Second).Zone()
	if prev <= now {
		return false
	}
	return n.Sub(start) < time.Duration(prev-now)*time.Second
}
