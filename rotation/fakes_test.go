package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// fakeVault is an in-memory vault for fast engine tests.
type fakeVault struct {
	mu        sync.Mutex
	secrets   map[int]*rotation.Secret
	gen       int
	writeErrs int    // fail this many writes
	failWrite bool   // fail every write
	onRead    func() // called on every Read, before it answers
	writes    int
}

func newFakeVault() *fakeVault { return &fakeVault{secrets: map[int]*rotation.Secret{}} }

func (v *fakeVault) add(name, user, pw string, hosts ...string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := len(v.secrets) + 1
	s := &rotation.Secret{ID: id, Name: name, Username: user, Password: secret.New(pw), PasswordFieldID: 7, PasswordSlug: "password"}
	for _, h := range hosts {
		s.Hosts = append(s.Hosts, rotation.Host{Name: h})
	}
	v.secrets[id] = s
	return id
}

func (v *fakeVault) password(id int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.secrets[id].Password.Reveal()
}

func (v *fakeVault) setPassword(id int, pw string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.secrets[id].Password = secret.New(pw)
}

func (v *fakeVault) Resolve(_ context.Context, name string) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var ids []int
	for id, s := range v.secrets {
		if strings.EqualFold(s.Name, name) {
			ids = append(ids, id)
		}
	}
	switch len(ids) {
	case 0:
		return 0, fmt.Errorf("%q: %w", name, rotation.ErrSecretNotFound)
	case 1:
		return ids[0], nil
	}
	return 0, fmt.Errorf("%q: %w", name, rotation.ErrAmbiguousName)
}

func (v *fakeVault) Read(_ context.Context, id int, _ string) (rotation.Secret, error) {
	if v.onRead != nil {
		v.onRead()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.secrets[id]
	if !ok {
		return rotation.Secret{}, rotation.ErrAccessDenied
	}
	c := *s
	c.Hosts = append([]rotation.Host(nil), s.Hosts...)
	return c, nil
}

func (v *fakeVault) Generate(_ context.Context, s rotation.Secret) (secret.Value, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen++
	return secret.New(fmt.Sprintf("Gen-%03d-xY7!kQ", v.gen)), nil
}

func (v *fakeVault) Write(_ context.Context, s rotation.Secret, pw secret.Value, _ string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.writes++
	if v.failWrite || v.writeErrs > 0 {
		v.writeErrs--
		return errors.New("secret server: 500 internal error")
	}
	v.secrets[s.ID].Password = pw
	return nil
}

// fakeHost is one in-memory SSH host.
type fakeHost struct {
	password    string
	history     []string            // earlier passwords passwd refuses to reuse
	remember    bool                // add each replaced password to history (pam_pwhistory)
	reject      func(string) string // policy: a reason to refuse the new password, or ""
	down        bool                // unreachable
	dieOnChange bool                // the connection breaks after passwd applied the change
	onChange    func()              // called as passwd starts, outside the fleet's lock
	failedAuth  int

	// For the budget of refused logins (pam_faillock):
	deny             int  // refuse every login of the user once failedAuth reaches deny (0: never)
	sshBlocked       bool // refuse the user's logins even with the right password
	blockAfterChange bool // set sshBlocked once passwd changed the password
	unknownRefusal   bool // a refused login answers ErrLoginUnknown (a slow PAM refusal)
	passwdTimeout    bool // passwd times out without changing anything

	// A passwd cut off mid-dialogue that still writes landing at landsAt.
	landing string
	landsAt time.Time
	// passwd times out, but writes the new password this long after.
	landsLate time.Duration
}

// land applies a cut-off passwd's change once its time has come. The
// caller holds the fleet's lock.
func (fh *fakeHost) land() {
	if fh.landing != "" && !time.Now().Before(fh.landsAt) {
		fh.password, fh.landing = fh.landing, ""
	}
}

// fakeHosts is an in-memory fleet implementing rotation.HostChanger.
type fakeHosts struct {
	mu     sync.Mutex
	hosts  map[string]*fakeHost
	logins int
	admin  string // the reconcile account's name; it may set any password
}

func newFakeHosts() *fakeHosts { return &fakeHosts{hosts: map[string]*fakeHost{}} }

func (f *fakeHosts) add(name, pw string) *fakeHost {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := &fakeHost{password: pw}
	f.hosts[name] = h
	return h
}

func (f *fakeHosts) pw(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fh := f.hosts[name]; fh.landing != "" {
		return fh.landing // it lands whatever happens meanwhile
	}
	return f.hosts[name].password
}

func (f *fakeHosts) Login(_ context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins++
	fh, ok := f.hosts[h.Name]
	if !ok || fh.down {
		return nil, fmt.Errorf("dial %s: %w", h, rotation.ErrUnreachable)
	}
	fh.land()
	if user == f.admin && f.admin != "" {
		return &fakeSession{f: f, h: fh, admin: true}, nil
	}
	if pw.Reveal() != fh.password || fh.sshBlocked || (fh.deny > 0 && fh.failedAuth >= fh.deny) {
		fh.failedAuth++
		if fh.unknownRefusal {
			return nil, fmt.Errorf("%s: %w (%w)", h, rotation.ErrLoginUnknown, rotation.ErrUnreachable)
		}
		return nil, fmt.Errorf("%s: %w", h, rotation.ErrAuthFailed)
	}
	return &fakeSession{f: f, h: fh}, nil
}

type fakeSession struct {
	f      *fakeHosts
	h      *fakeHost
	admin  bool
	closed bool
}

func (s *fakeSession) Check(context.Context) error { return nil }

func (s *fakeSession) ChangePassword(_ context.Context, old, new secret.Value) rotation.Outcome {
	s.f.mu.Lock()
	hook := s.h.onChange
	s.f.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.h.down {
		return rotation.Outcome{Kind: rotation.OutcomeUnexpected, Err: rotation.ErrUnreachable}
	}
	if s.h.passwdTimeout {
		return rotation.Outcome{Kind: rotation.OutcomeTimeout, Transcript: "Current password: "}
	}
	if s.h.landsLate > 0 && old.Reveal() == s.h.password {
		s.h.landing, s.h.landsAt = new.Reveal(), time.Now().Add(s.h.landsLate)
		return rotation.Outcome{Kind: rotation.OutcomeTimeout, Transcript: "Retype new password: "}
	}
	if old.Reveal() != s.h.password {
		return rotation.Outcome{Kind: rotation.OutcomeWrongCurrent}
	}
	if s.h.reject != nil {
		if why := s.h.reject(new.Reveal()); why != "" {
			return rotation.Outcome{Kind: rotation.OutcomeRejected, Reason: why}
		}
	}
	for _, p := range s.h.history {
		if p == new.Reveal() {
			return rotation.Outcome{Kind: rotation.OutcomeRejected, Reason: "password has been already used"}
		}
	}
	if s.h.remember {
		s.h.history = append(s.h.history, s.h.password)
	}
	s.h.password = new.Reveal()
	if s.h.blockAfterChange {
		s.h.sshBlocked = true
	}
	if s.h.dieOnChange {
		s.h.down = true
		return rotation.Outcome{Kind: rotation.OutcomeUnexpected, Transcript: "New password: ", Err: rotation.ErrUnreachable}
	}
	return rotation.Outcome{Kind: rotation.OutcomeChanged}
}

func (s *fakeSession) SetPassword(_ context.Context, user string, new secret.Value) rotation.Outcome {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if !s.admin {
		return rotation.Outcome{Kind: rotation.OutcomeUnexpected, Reason: "not root"}
	}
	s.h.password = new.Reveal()
	return rotation.Outcome{Kind: rotation.OutcomeChanged}
}

func (s *fakeSession) Close() error { s.closed = true; return nil }

// memJournal is an in-memory Journal, Leases and ScheduleState, keyed by
// rotation.SecretKey and fenced by lease generations like the store.
type memJournal struct {
	mu        sync.Mutex
	rots      map[int64]*rotation.Rotation
	next      int64
	events    []rotation.Event
	leases    map[string]lease
	ids       map[string]int
	due       map[string]time.Time
	failBegin error
	// Writes after Begin (SetNew, SetState, SetHost, SetRefused, Audit)
	// fail with writeErr once failAfter of them succeeded; writeErr nil:
	// never (a full disk, or ErrFenced).
	failAfter int
	writeErr  error
	writes    int
}

type lease struct {
	holder string
	until  time.Time
	gen    int64
}

func newMemJournal() *memJournal {
	return &memJournal{rots: map[int64]*rotation.Rotation{}, leases: map[string]lease{}, ids: map[string]int{}, due: map[string]time.Time{}}
}

func clone(r *rotation.Rotation) rotation.Rotation {
	c := *r
	c.Hosts = append([]rotation.HostRecord(nil), r.Hosts...)
	return c
}

func (j *memJournal) Begin(_ context.Context, r rotation.Rotation) (int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failBegin != nil {
		return 0, j.failBegin
	}
	if err := j.fence(r.Secret, r.Generation, r.Generation); err != nil {
		return 0, err
	}
	j.next++
	r.ID = j.next
	r.Secret = rotation.SecretKey(r.Secret)
	c := clone(&r)
	j.rots[r.ID] = &c
	return r.ID, nil
}

func (j *memJournal) get(id int64) (*rotation.Rotation, error) {
	r, ok := j.rots[id]
	if !ok {
		return nil, rotation.ErrNotFound
	}
	return r, nil
}

// fence is the store's fencing rule: a writer of generation gen may write
// a rotation of generation owner if they are equal and, when fenced, the
// lease is still at that generation. The caller holds j.mu.
func (j *memJournal) fence(name string, owner, gen int64) error {
	if gen != owner || (gen != 0 && j.leases[rotation.SecretKey(name)].gen != gen) {
		return fmt.Errorf("generation %d of %d: %w", gen, owner, rotation.ErrFenced)
	}
	return nil
}

// getFor returns rotation id for a write by lease generation gen.
func (j *memJournal) getFor(id, gen int64) (*rotation.Rotation, error) {
	r, err := j.get(id)
	if err != nil {
		return nil, err
	}
	return r, j.fence(r.Secret, r.Generation, gen)
}

func (j *memJournal) Adopt(_ context.Context, id, gen int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writeFault(); err != nil {
		return err
	}
	r, err := j.get(id)
	if err != nil {
		return err
	}
	if err := j.fence(r.Secret, gen, gen); err != nil || gen == 0 {
		return fmt.Errorf("adopt: %w", rotation.ErrFenced)
	}
	r.Generation = gen
	return nil
}

// expireLeases lets every lease run out, as if its TTL had passed.
func (j *memJournal) expireLeases() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for k, l := range j.leases {
		l.until = time.Time{}
		j.leases[k] = l
	}
}

func (j *memJournal) SetNew(_ context.Context, id, gen int64, pw secret.Value) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writeFault(); err != nil {
		return err
	}
	r, err := j.getFor(id, gen)
	if err != nil {
		return err
	}
	r.New = pw
	return nil
}

func (j *memJournal) SetState(_ context.Context, id, gen int64, st rotation.State, errText string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writeFault(); err != nil {
		return err
	}
	r, err := j.getFor(id, gen)
	if err != nil {
		return err
	}
	r.State, r.Error = st, errText
	return nil
}

func (j *memJournal) SetHost(_ context.Context, id, gen int64, h rotation.HostRecord) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writeFault(); err != nil {
		return err
	}
	r, err := j.getFor(id, gen)
	if err != nil {
		return err
	}
	for i := range r.Hosts {
		if r.Hosts[i].Host.String() == h.Host.String() {
			h.Refused = r.Hosts[i].Refused // recorded by SetRefused only
			r.Hosts[i] = h
			return nil
		}
	}
	return fmt.Errorf("host %s not in rotation %d", h.Host, id)
}

func (j *memJournal) SetRefused(_ context.Context, id, gen int64, h rotation.Host, ref rotation.Refusals) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writeFault(); err != nil {
		return err
	}
	r, err := j.getFor(id, gen)
	if err != nil {
		return err
	}
	for i := range r.Hosts {
		if r.Hosts[i].Host.String() == h.String() {
			r.Hosts[i].Refused = ref
			return nil
		}
	}
	return fmt.Errorf("host %s not in rotation %d", h, id)
}

// writeFault returns the error a write meets once failAfter writes have
// succeeded (failAfter < 0: never); the caller holds j.mu.
func (j *memJournal) writeFault() error {
	if j.failAfter < 0 || j.writeErr == nil {
		return nil
	}
	if j.writes >= j.failAfter {
		return j.writeErr
	}
	j.writes++
	return nil
}

func (j *memJournal) Get(_ context.Context, id int64) (rotation.Rotation, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, err := j.get(id)
	if err != nil {
		return rotation.Rotation{}, err
	}
	return clone(r), nil
}

func (j *memJournal) list(keep func(*rotation.Rotation) bool) []rotation.Rotation {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []rotation.Rotation
	for _, r := range j.rots {
		if keep(r) {
			out = append(out, clone(r))
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

func (j *memJournal) Unfinished(context.Context) ([]rotation.Rotation, error) {
	return j.list(func(r *rotation.Rotation) bool { return !r.State.Terminal() }), nil
}

func (j *memJournal) NeedsReconcile(context.Context) ([]rotation.Rotation, error) {
	return j.list(func(r *rotation.Rotation) bool { return r.State == rotation.StateNeedsReconcile }), nil
}

func (j *memJournal) LastCommitted(_ context.Context, name string, before int64) (rotation.Rotation, error) {
	all := j.list(func(r *rotation.Rotation) bool {
		return r.Secret == rotation.SecretKey(name) && r.State == rotation.StateCommitted && (before == 0 || r.ID < before)
	})
	if len(all) == 0 {
		return rotation.Rotation{}, rotation.ErrNotFound
	}
	return all[len(all)-1], nil
}

func (j *memJournal) History(_ context.Context, q rotation.HistoryQuery) ([]rotation.Rotation, error) {
	all := j.list(func(r *rotation.Rotation) bool { return q.Secret == "" || r.Secret == rotation.SecretKey(q.Secret) })
	var out []rotation.Rotation
	for i := len(all) - 1; i >= 0 && (q.Limit == 0 || len(out) < q.Limit); i-- {
		r := all[i]
		r.Old, r.New = secret.Value{}, secret.Value{}
		out = append(out, r)
	}
	return out, nil
}

func (j *memJournal) Audit(_ context.Context, e rotation.Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writeFault(); err != nil {
		return err
	}
	j.events = append(j.events, e)
	return nil
}

func (j *memJournal) Acquire(_ context.Context, name, holder string, ttl time.Duration) (int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	key := rotation.SecretKey(name)
	l := j.leases[key]
	if l.holder != "" && l.holder != holder && time.Now().Before(l.until) {
		return 0, &rotation.LeaseHeldError{Secret: name, Holder: l.holder, Expires: l.until}
	}
	if l.holder != holder {
		l.gen++
	}
	l.holder, l.until = holder, time.Now().Add(ttl)
	j.leases[key] = l
	return l.gen, nil
}

func (j *memJournal) Renew(_ context.Context, name, holder string, ttl time.Duration) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	key := rotation.SecretKey(name)
	l := j.leases[key]
	if l.holder != holder {
		return &rotation.LeaseHeldError{Secret: name, Holder: l.holder, Expires: l.until}
	}
	l.until = time.Now().Add(ttl)
	j.leases[key] = l
	return nil
}

func (j *memJournal) Release(_ context.Context, name, holder string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	key := rotation.SecretKey(name)
	if l := j.leases[key]; l.holder == holder {
		l.holder, l.until = "", time.Time{}
		j.leases[key] = l
	}
	return nil
}

func (j *memJournal) NextDue(_ context.Context, name string) (time.Time, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	t, ok := j.due[rotation.SecretKey(name)]
	return t, ok, nil
}

func (j *memJournal) SetNextDue(_ context.Context, name string, t time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.due[rotation.SecretKey(name)] = t
	return nil
}

func (j *memJournal) SecretID(_ context.Context, name string) (int, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	id, ok := j.ids[rotation.SecretKey(name)]
	return id, ok, nil
}

func (j *memJournal) SetSecretID(_ context.Context, name string, id int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ids[rotation.SecretKey(name)] = id
	return nil
}

var (
	_ rotation.Vault         = (*fakeVault)(nil)
	_ rotation.HostChanger   = (*fakeHosts)(nil)
	_ rotation.Journal       = (*memJournal)(nil)
	_ rotation.Leases        = (*memJournal)(nil)
	_ rotation.ScheduleState = (*memJournal)(nil)
)

// testConfig returns the engine's defaults with set applied.
func testConfig(set func(c *rotation.Config)) rotation.Config {
	c := rotation.DefaultConfig()
	set(&c)
	return c
}

// newEngine returns an engine over d, failing the test if cfg is refused.
func newEngine(tb testing.TB, cfg rotation.Config, d rotation.Deps) *rotation.Engine {
	tb.Helper()
	e, err := rotation.New(cfg, d)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}
