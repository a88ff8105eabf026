package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// Renderers: aligned tables for people, JSON for scripts. Nothing rendered
// here can hold a password: the types rendered carry none.

// table aligns tab-separated cells in columns and trims trailing blanks.
type table struct {
	w   io.Writer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 4, 2, ' ', 0)
	return t
}

func (t *table) Write(p []byte) (int, error) { return t.tw.Write(p) }

// Flush writes the aligned table.
func (t *table) Flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	var out bytes.Buffer
	for line := range strings.Lines(t.buf.String()) {
		out.WriteString(strings.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	t.buf.Reset()
	_, err := t.w.Write(out.Bytes())
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// jsonHost is a host's fate in JSON output.
type jsonHost struct {
	Host    string `json:"host"`
	State   string `json:"state"`
	Outcome string `json:"outcome,omitempty"`
}

// jsonResult is a rotation, rollback or recovery result in JSON output.
type jsonResult struct {
	Secret     string     `json:"secret"`
	RotationID int64      `json:"rotation_id,omitempty"`
	Kind       string     `json:"kind"`
	State      string     `json:"state,omitempty"`
	OK         bool       `json:"ok"`
	Error      string     `json:"error,omitempty"`
	Hosts      []jsonHost `json:"hosts"`
}

func toJSONHosts(hs []rotation.HostResult) []jsonHost {
	out := make([]jsonHost, 0, len(hs))
	for _, h := range hs {
		out = append(out, jsonHost{Host: h.Host.String(), State: string(h.State), Outcome: h.Outcome})
	}
	return out
}

func toJSONResult(r rotation.Result) jsonResult {
	return jsonResult{
		Secret: r.Secret, RotationID: r.RotationID, Kind: string(r.Kind), State: string(r.State),
		OK: r.Err == nil, Error: errText(r.Err), Hosts: toJSONHosts(r.Hosts),
	}
}

// renderResults writes rotation results as a table: one line per secret,
// then its hosts that failed or are in doubt, indented.
func renderResults(w io.Writer, rs []rotation.Result, dryRun bool) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "SECRET\tROTATION\tKIND\tSTATE\tHOSTS\tFAILED\tRESULT")
	for _, r := range rs {
		id, state := "-", string(r.State)
		if r.RotationID != 0 {
			id = strconv.FormatInt(r.RotationID, 10)
		}
		if state == "" {
			state = "-"
		}
		kind := string(r.Kind)
		if dryRun {
			kind = "dry-run"
		}
		bad := 0
		for _, h := range r.Hosts {
			if hostBad(h.State) {
				bad++
			}
		}
		res := "ok"
		if r.Err != nil {
			res = oneLine(r.Err.Error())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Secret, id, kind, state, len(r.Hosts), bad, res)
		for _, h := range r.Hosts {
			if hostBad(h.State) {
				fmt.Fprintf(tw, "  %s\t\t\t%s\t\t\t%s\n", h.Host, h.State, oneLine(h.Outcome))
			}
		}
	}
	return tw.Flush()
}

// hostBad reports whether a host's state needs the operator's eye: it
// failed, or its password is in doubt.
func hostBad(s rotation.HostState) bool {
	switch s {
	case rotation.HostFailed, rotation.HostNeedsReconcile, rotation.HostChanging, rotation.HostReverting:
		return true
	}
	return false
}

// renderHeartbeats writes heartbeat results: one line per host.
func renderHeartbeats(w io.Writer, hs []rotation.HeartbeatResult) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "SECRET\tHOST\tLOGIN")
	for _, r := range hs {
		if len(r.Hosts) == 0 {
			fmt.Fprintf(tw, "%s\t-\t%s\n", r.Secret, oneLine(errText(r.Err)))
			continue
		}
		for _, h := range r.Hosts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Secret, h.Host, oneLine(h.Outcome))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// What each failure means: drift (refused) is not unreachable.
	for _, r := range hs {
		if len(r.Hosts) == 0 {
			continue
		}
		for _, a := range heartbeatAlerts(r, time.Time{}) {
			fmt.Fprintf(w, "%s: %s: %s\n", r.Secret, a.State, oneLine(a.Error))
		}
	}
	return nil
}

// jsonHeartbeat is a heartbeat result in JSON output.
type jsonHeartbeat struct {
	Secret string     `json:"secret"`
	OK     bool       `json:"ok"`
	Error  string     `json:"error,omitempty"`
	States []string   `json:"states,omitempty"` // what was found: drift, unreachable, needs-operator
	Hosts  []jsonHost `json:"hosts"`
}

func toJSONHeartbeat(r rotation.HeartbeatResult) jsonHeartbeat {
	jh := jsonHeartbeat{Secret: r.Secret, OK: r.Err == nil, Error: errText(r.Err), Hosts: toJSONHosts(r.Hosts)}
	for _, a := range heartbeatAlerts(r, time.Time{}) {
		jh.States = append(jh.States, a.State)
	}
	return jh
}

// jsonRotation is a journaled rotation in history's JSON output.
type jsonRotation struct {
	ID         int64      `json:"id"`
	Secret     string     `json:"secret"`
	SecretID   int        `json:"secret_id"`
	Username   string     `json:"username"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"`
	Error      string     `json:"error,omitempty"`
	RollbackOf int64      `json:"rollback_of,omitempty"`
	Started    time.Time  `json:"started"`
	Updated    time.Time  `json:"updated"`
	Hosts      []jsonHost `json:"hosts"`
}

func toJSONRotation(r rotation.Rotation) jsonRotation {
	hs := make([]jsonHost, 0, len(r.Hosts))
	for _, h := range r.Hosts {
		hs = append(hs, jsonHost{Host: h.Host.String(), State: string(h.State), Outcome: h.Error})
	}
	return jsonRotation{
		ID: r.ID, Secret: r.Secret, SecretID: r.SecretID, Username: r.Username, Kind: string(r.Kind),
		State: string(r.State), Error: r.Error, RollbackOf: r.RollbackOf,
		Started: r.Started.UTC(), Updated: r.Updated.UTC(), Hosts: hs,
	}
}

// renderHistory writes journaled rotations, newest first.
func renderHistory(w io.Writer, rs []rotation.Rotation) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSECRET\tUSER\tKIND\tSTATE\tHOSTS\tSTARTED (UTC)\tTOOK\tERROR")
	for _, r := range rs {
		changed := 0
		for _, h := range r.Hosts {
			if h.State == rotation.HostChanged {
				changed++
			}
		}
		kind := string(r.Kind)
		if r.RollbackOf != 0 {
			kind += " of " + strconv.FormatInt(r.RollbackOf, 10)
		}
		took := "-"
		if !r.Updated.IsZero() && !r.Started.IsZero() {
			took = r.Updated.Sub(r.Started).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", r.ID, r.Secret, r.Username, kind, r.State,
			changed, len(r.Hosts), r.Started.UTC().Format("2006-01-02 15:04:05"), took, oneLine(r.Error))
	}
	return tw.Flush()
}

// writeListing writes a journal listing, newest first: as a JSON array
// (each item through toJSON) for scripts, else as render's table, or the
// line empty when there is nothing to list.
func writeListing[T, J any](w io.Writer, asJSON bool, items []T, toJSON func(T) J, empty string, render func(io.Writer, []T) error) error {
	if asJSON {
		out := make([]J, 0, len(items))
		for _, it := range items {
			out = append(out, toJSON(it))
		}
		return writeJSON(w, out)
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, empty)
		return err
	}
	return render(w, items)
}

// jsonHeartbeatEvent is a recorded heartbeat result in JSON output.
type jsonHeartbeatEvent struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Secret string    `json:"secret"`
	Result string    `json:"result"`
}

func toJSONHeartbeatEvent(e store.AuditEvent) jsonHeartbeatEvent {
	return jsonHeartbeatEvent{ID: e.ID, Time: e.Time.UTC(), Secret: e.Secret, Result: e.Detail}
}

// renderHeartbeatEvents writes recorded heartbeat results as a table.
func renderHeartbeatEvents(w io.Writer, evs []store.AuditEvent) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTIME\tSECRET\tRESULT")
	for _, e := range evs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.ID, e.Time.UTC().Format(time.RFC3339), e.Secret, oneLine(e.Detail))
	}
	return tw.Flush()
}

// jsonAuditEvent is an audit trail event in JSON output.
type jsonAuditEvent struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Secret     string    `json:"secret"`
	RotationID int64     `json:"rotation_id,omitempty"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	Detail     string    `json:"detail,omitempty"`
}

func toJSONAuditEvent(e store.AuditEvent) jsonAuditEvent {
	return jsonAuditEvent{ID: e.ID, Time: e.Time.UTC(), Secret: e.Secret, RotationID: e.RotationID, Actor: e.Actor, Action: e.Action, Detail: e.Detail}
}

// renderAudit writes audit events as a table, newest first.
func renderAudit(w io.Writer, evs []store.AuditEvent) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTIME (UTC)\tSECRET\tROTATION\tACTOR\tACTION\tDETAIL")
	for _, e := range evs {
		rot := "-"
		if e.RotationID != 0 {
			rot = strconv.FormatInt(e.RotationID, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.UTC().Format("2006-01-02 15:04:05"), e.Secret, rot, e.Actor, e.Action, oneLine(e.Detail))
	}
	return tw.Flush()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " / ")
}

// progress shows, on one terminal line rewritten in place, how far the
// rotations under way are: hosts done of total and failures so far.
// It is safe for concurrent use.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	secrets map[string][3]int // done, total, failed
	shown   bool
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, secrets: map[string][3]int{}}
}

// Update records a secret's progress and redraws the line.
func (p *progress) Update(secret string, done, total, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.secrets[secret] = [3]int{done, total, failed}
	var d, t, f int
	for _, v := range p.secrets {
		d, t, f = d+v[0], t+v[1], f+v[2]
	}
	noun := "secret"
	if len(p.secrets) > 1 {
		noun = "secrets"
	}
	fmt.Fprintf(p.w, "\r\033[Krotating %d %s: %d/%d hosts done, %d failed", len(p.secrets), noun, d, t, f)
	p.shown = true
}

// Done erases the progress line.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
