// Package sstest is an in-process emulator of Thycotic / Delinea Secret
// Server's REST API, for tests and demos. It follows rotord's wire notes on
// the API: OAuth2 password and refresh grants, bearer tokens, Windows
// integrated authentication (NTLMv2, verified against the user's password)
// on the winauthwebservices path, secret search with paging, secrets, field
// GET and PUT, whole-secret PUT, templates, password generation under the
// template's policy, check-out and check-in, heartbeat and healthcheck.
//
// It serves real HTTPS with a certificate authority made for the server
// (CACertPEM), counts the calls to each endpoint and injects faults
// (failures, latency, expired tokens, restricted secrets) so that tests
// can assert exactly what a client did. A Server is safe for concurrent
// use.
package sstest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoint names, for Calls, FailNext and SetLatency.
const (
	EndpointToken       = "token"             // POST /oauth2/token (every grant)
	EndpointRefresh     = "token-refresh"     // POST /oauth2/token with grant_type=refresh_token (also counted as EndpointToken)
	EndpointHealth      = "healthcheck"       // GET  /api/v1/healthcheck
	EndpointCurrentUser = "current-user"      // GET  /users/current
	EndpointSearch      = "search"            // GET  /secrets
	EndpointGetSecret   = "get-secret"        // GET  /secrets/{id}
	EndpointPutSecret   = "put-secret"        // PUT  /secrets/{id}
	EndpointRestricted  = "restricted"        // POST /secrets/{id}/restricted
	EndpointGetField    = "get-field"         // GET  /secrets/{id}/fields/{slug}
	EndpointPutField    = "put-field"         // PUT  /secrets/{id}/fields/{slug}
	EndpointCheckOut    = "check-out"         // POST /secrets/{id}/check-out
	EndpointCheckIn     = "check-in"          // POST /secrets/{id}/check-in
	EndpointState       = "state"             // GET  /secrets/{id}/state
	EndpointHeartbeat   = "heartbeat"         // POST /secrets/{id}/heartbeat
	EndpointTemplate    = "get-template"      // GET  /secret-templates/{id}
	EndpointGenerate    = "generate-password" // POST /secret-templates/generate-password/{fieldId}
	EndpointExpire      = "oauth-expiration"  // POST /oauth-expiration
)

// Bodies the emulator answers with, as Secret Server does.
const (
	BodyExpiredToken = `{"message":"Authentication failed or expired token."}`
	BodyNoAuth       = `{"message":"Authorization has been denied for this request."}`
	BodyAccessDenied = `{"errorCode":"API_AccessDenied","message":"Access Denied"}`
	BodyLoginFailed  = `{"error":"Login failed."}`
	BodyInvalidGrant = `{"error":"invalid_grant"}`
)

// DefaultTemplateID is the id of the template every Server starts with, a
// "Unix Account (SSH)" with fields machine, username, password (20
// characters of all four classes) and notes.
const DefaultTemplateID = 6007

// PasswordPolicy is a password field's generator policy.
type PasswordPolicy struct {
	Length    int    `yaml:"length"`
	Lower     bool   `yaml:"lower"`
	Upper     bool   `yaml:"upper"`
	Digits    bool   `yaml:"digits"`
	Symbols   bool   `yaml:"symbols"`
	SymbolSet string `yaml:"symbol_set"` // "" means DefaultSymbols
}

// DefaultSymbols is the symbol class of a policy without a SymbolSet.
const DefaultSymbols = "!#$%*+-=?@^_"

// TemplateField is one field of a template.
type TemplateField struct {
	ID         int // template field id; assigned when 0
	Slug       string
	Name       string
	IsPassword bool
	IsNotes    bool
	IsFile     bool           // a file attachment: GET of the field answers its raw bytes
	Policy     PasswordPolicy // for password fields
}

// Template is a secret template.
type Template struct {
	ID     int
	Name   string
	Fields []TemplateField
}

// SecretSeed describes a secret to add.
type SecretSeed struct {
	Name             string            `yaml:"name"`
	Folder           string            `yaml:"folder"`   // path such as \Prod\Web
	TemplateID       int               `yaml:"template"` // 0: DefaultTemplateID
	Username         string            `yaml:"username"`
	Password         string            `yaml:"password"`
	Notes            string            `yaml:"notes"` // the hosts, by rotord's convention
	Machine          string            `yaml:"machine"`
	Fields           map[string]string `yaml:"fields"` // other fields by slug
	CheckoutRequired bool              `yaml:"checkout"`
	CommentRequired  bool              `yaml:"comment"`
	AutoChange       bool              `yaml:"auto_change"`
	Inactive         bool              `yaml:"inactive"`
}

type account struct {
	id       int
	name     string
	domain   string
	password string
}

type tokenRec struct {
	user    string
	expires time.Time
}

type secretRec struct {
	id           int
	name         string
	folderID     int
	folderPath   string
	templateID   int
	values       map[string]string
	itemIDs      map[string]int
	checkout     bool
	comment      bool
	autoChange   bool
	active       bool
	checkedOutBy string
	commented    map[string]bool
	heartbeat    string
	pwWrites     int // writes of a password field (PasswordWrites)
}

type fault struct {
	n      int
	status int
	body   string
	header http.Header
	after  bool // apply the request, then answer the fault
	drop   bool // with after: break the connection instead of answering
}

type connKey struct{}

// Server is a running emulator.
type Server struct {
	// URL is the base URL (the application root) clients are given, such
	// as https://127.0.0.1:41234/SecretServer.
	URL string

	ts       *httptest.Server
	caPEM    []byte
	basePath string
	log      *slog.Logger

	mu             sync.Mutex
	users          map[string]*account
	templates      map[int]*Template
	secrets        map[int]*secretRec
	folders        map[string]int
	tokens         map[string]tokenRec
	refresh        map[string]tokenRec
	issued         []string
	tokenLife      time.Duration
	refreshOn      bool
	calls          map[string]int
	requests       int
	faults         map[string]*fault
	latency        map[string]time.Duration
	ntlmHandshakes int
	ntlmFailures   int
	heartbeatTo    string
	nextSecret     int
	nextItem       int
	nextField      int
	nextTemplate   int
}

// Option configures a Server.
type Option func(*options)

type options struct {
	basePath  string
	listener  net.Listener
	tokenLife time.Duration
	log       *slog.Logger
}

// WithBasePath serves the API under path (the on-premises form,
// default "/SecretServer"); "" or "/" serves it at the root (the cloud form).
func WithBasePath(path string) Option {
	return func(o *options) { o.basePath = strings.TrimRight(path, "/") }
}

// WithListener serves on l instead of a new loopback listener.
func WithListener(l net.Listener) Option { return func(o *options) { o.listener = l } }

// WithTokenLifetime sets the access token lifetime (default 20 minutes).
func WithTokenLifetime(d time.Duration) Option { return func(o *options) { o.tokenLife = d } }

// WithLogger logs each request (method, path, status; never a body).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New starts an emulator over TLS on a loopback port. Close it when done.
func New(opts ...Option) *Server {
	o := options{basePath: "/SecretServer", tokenLife: 20 * time.Minute}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		basePath:     o.basePath,
		log:          o.log,
		users:        map[string]*account{},
		templates:    map[int]*Template{},
		secrets:      map[int]*secretRec{},
		folders:      map[string]int{},
		tokens:       map[string]tokenRec{},
		refresh:      map[string]tokenRec{},
		tokenLife:    o.tokenLife,
		refreshOn:    true,
		calls:        map[string]int{},
		faults:       map[string]*fault{},
		latency:      map[string]time.Duration{},
		heartbeatTo:  "Success",
		nextSecret:   1,
		nextItem:     1001,
		nextField:    281,
		nextTemplate: DefaultTemplateID + 1,
	}
	s.addTemplateLocked(Template{ID: DefaultTemplateID, Name: "Unix Account (SSH)"}, PasswordPolicy{Length: 20, Lower: true, Upper: true, Digits: true, Symbols: true})

	cert, caPEM, err := newCertificate()
	if err != nil {
		panic(fmt.Sprintf("sstest: certificate: %v", err))
	}
	s.caPEM = caPEM
	ts := httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	if o.listener != nil {
		ts.Listener.Close()
		ts.Listener = o.listener
	}
	ts.TLS = newTLSConfig(cert)
	ts.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, &ntlmConn{})
	}
	ts.Config.ErrorLog = slog.NewLogLogger(o.log.Handler(), slog.LevelDebug)
	ts.StartTLS()
	s.ts = ts
	u, _ := url.Parse(ts.URL)
	u.Path = s.basePath
	s.URL = strings.TrimRight(u.String(), "/")
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.ts.Close() }

// CACertPEM returns the PEM certificate of the authority that signed the
// server's certificate, for clients to trust.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ts.Listener.Addr().String() }

func userKey(name, domain string) string {
	return strings.ToLower(domain) + `\` + strings.ToLower(name)
}

// AddUser adds an account that may log in (both OAuth2 and NTLM); domain
// may be "".
func (s *Server) AddUser(name, domain, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[userKey(name, domain)] = &account{id: len(s.users) + 2, name: name, domain: domain, password: password}
}

// lookupUser finds an account; s.mu is held.
func (s *Server) lookupUser(name, domain string) (*account, bool) {
	a, ok := s.users[userKey(name, domain)]
	return a, ok
}

// AddTemplate adds a template like the default one (machine, username,
// password, notes) whose password field follows policy, and returns its id.
func (s *Server) AddTemplate(name string, policy PasswordPolicy) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addTemplateLocked(Template{Name: name}, policy)
}

func (s *Server) addTemplateLocked(t Template, policy PasswordPolicy) int {
	if t.ID == 0 {
		t.ID = s.nextTemplate
		s.nextTemplate++
	}
	t.Fields = []TemplateField{
		{Slug: "machine", Name: "Machine"},
		{Slug: "username", Name: "Username"},
		{Slug: "password", Name: "Password", IsPassword: true, Policy: policy},
		{Slug: "notes", Name: "Notes", IsNotes: true},
	}
	for i := range t.Fields {
		t.Fields[i].ID = s.nextField
		s.nextField++
	}
	s.templates[t.ID] = &t
	return t.ID
}

// AddUnixSSHTemplate adds a template like Secret Server's Unix Account
// (SSH): machine, username, password, notes, the file field private-key
// and the password field private-key-passphrase. It returns its id.
func (s *Server) AddUnixSSHTemplate(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.addTemplateLocked(Template{Name: name}, PasswordPolicy{})
	t := s.templates[id]
	for _, f := range []TemplateField{
		{Slug: "private-key", Name: "Private Key", IsFile: true},
		{Slug: "private-key-passphrase", Name: "Private Key Passphrase", IsPassword: true},
	} {
		f.ID = s.nextField
		s.nextField++
		t.Fields = append(t.Fields, f)
	}
	return id
}

// PasswordFieldID returns the template field id of template tid's password field.
func (s *Server) PasswordFieldID(tid int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.templates[tid]; t != nil {
		for _, f := range t.Fields {
			if f.IsPassword {
				return f.ID
			}
		}
	}
	return 0
}

// AddSecret adds a secret and returns its id. Folder paths are created as
// needed. It panics on an unknown template (a test bug).
func (s *Server) AddSecret(seed SecretSeed) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	tid := seed.TemplateID
	if tid == 0 {
		tid = DefaultTemplateID
	}
	t := s.templates[tid]
	if t == nil {
		panic(fmt.Sprintf("sstest: unknown template %d", tid))
	}
	folder := seed.Folder
	if folder != "" && !strings.HasPrefix(folder, `\`) {
		folder = `\` + folder
	}
	fid, ok := s.folders[strings.ToLower(folder)]
	if !ok {
		fid = len(s.folders) + 1
		s.folders[strings.ToLower(folder)] = fid
	}
	rec := &secretRec{
		id: s.nextSecret, name: seed.Name, folderID: fid, folderPath: folder, templateID: tid,
		values: map[string]string{}, itemIDs: map[string]int{}, commented: map[string]bool{},
		checkout: seed.CheckoutRequired, comment: seed.CommentRequired, autoChange: seed.AutoChange,
		active: !seed.Inactive, heartbeat: "Success",
	}
	s.nextSecret++
	for _, f := range t.Fields {
		rec.itemIDs[f.Slug] = s.nextItem
		s.nextItem++
	}
	rec.values["machine"] = seed.Machine
	rec.values["username"] = seed.Username
	rec.values["password"] = seed.Password
	rec.values["notes"] = seed.Notes
	for k, v := range seed.Fields {
		if _, ok := rec.itemIDs[k]; ok {
			rec.values[k] = v
		}
	}
	s.secrets[rec.id] = rec
	return rec.id
}

// Field returns the value of secret id's field slug ("" if none).
func (s *Server) Field(id int, slug string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.secrets[id]; rec != nil {
		return rec.values[slug]
	}
	return ""
}

// PasswordWrites returns how many writes of a password field the secret
// accepted (whole-secret updates and field updates alike).
func (s *Server) PasswordWrites(id int) int {
	n := 0
	s.withSecret(id, func(rec *secretRec) { n = rec.pwWrites })
	return n
}

// SetField sets secret id's field slug, as a human editing the secret would.
func (s *Server) SetField(id int, slug, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.secrets[id]; rec != nil {
		rec.values[slug] = value
	}
}

func (s *Server) withSecret(id int, f func(*secretRec)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.secrets[id]; rec != nil {
		f(rec)
	}
}

// RequireCheckout sets whether secret id must be checked out for access.
func (s *Server) RequireCheckout(id int, on bool) {
	s.withSecret(id, func(r *secretRec) { r.checkout = on })
}

// RequireComment sets whether access to secret id needs a comment.
func (s *Server) RequireComment(id int, on bool) {
	s.withSecret(id, func(r *secretRec) { r.comment = on })
}

// SetAutoChange sets secret id's autoChangeEnabled.
func (s *Server) SetAutoChange(id int, on bool) {
	s.withSecret(id, func(r *secretRec) { r.autoChange = on })
}

// CheckOutAs marks secret id checked out by user ("" checks it in).
func (s *Server) CheckOutAs(id int, user string) {
	s.withSecret(id, func(r *secretRec) { r.checkedOutBy = user })
}

// CheckedOutBy returns who has secret id checked out ("" for nobody).
func (s *Server) CheckedOutBy(id int) string {
	var u string
	s.withSecret(id, func(r *secretRec) { u = r.checkedOutBy })
	return u
}

// HeartbeatStatus returns secret id's lastHeartBeatStatus.
func (s *Server) HeartbeatStatus(id int) string {
	var st string
	s.withSecret(id, func(r *secretRec) { st = r.heartbeat })
	return st
}

// SetTokenLifetime sets the lifetime of access tokens granted from now on.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLife = d
}

// SetRefreshTokens sets whether grants return refresh tokens (default on).
func (s *Server) SetRefreshTokens(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshOn = on
}

// ExpireTokens expires every access token granted so far, as an API
// session timeout would; refresh tokens stay valid.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]tokenRec{}
}

// Tokens returns every access and refresh token granted so far, for
// tests that check that no token leaks into logs or errors.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// RevokeRefreshTokens invalidates every refresh token granted so far.
func (s *Server) RevokeRefreshTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh = map[string]tokenRec{}
}

// FailNext makes the next n calls of endpoint answer status with body
// (a JSON error body for status when body is ""). Bodies starting with
// "<" are sent as text/html. A 429 or 503 carries Retry-After: 0 unless
// FailNextWithHeader sets one.
func (s *Server) FailNext(endpoint string, n, status int, body string) {
	s.FailNextWithHeader(endpoint, n, status, body, nil)
}

// FailNextWithHeader is FailNext with extra response headers (Retry-After).
func (s *Server) FailNextWithHeader(endpoint string, n, status int, body string, h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.faults, endpoint)
		return
	}
	s.faults[endpoint] = &fault{n: n, status: status, body: body, header: h}
}

// FailNextAfterApply makes the next n calls of endpoint take effect and
// then answer status with body, as a gateway that times out after the
// server applied a change does.
func (s *Server) FailNextAfterApply(endpoint string, n, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.faults, endpoint)
		return
	}
	s.faults[endpoint] = &fault{n: n, status: status, body: body, after: true}
}

// DropNextAfterApply makes the next n calls of endpoint take effect and
// then break the connection without an answer, as a proxy or a network
// that fails after the server applied a change does: the client sees a
// transport error and cannot tell whether the call applied.
func (s *Server) DropNextAfterApply(endpoint string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.faults, endpoint)
		return
	}
	s.faults[endpoint] = &fault{n: n, after: true, drop: true}
}

// SetLatency delays every answer of endpoint by d (0 to stop).
func (s *Server) SetLatency(endpoint string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency[endpoint] = d
}

// Calls returns how many HTTP requests reached endpoint since the last
// ResetCalls, refused ones (401, faults) included.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// Requests returns every HTTP request the server received since the last
// ResetCalls, including NTLM handshake legs and unknown routes.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// NTLMHandshakes returns the NTLM handshakes that succeeded since the last
// ResetCalls; NTLMFailures those that failed.
func (s *Server) NTLMHandshakes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ntlmHandshakes
}

// NTLMFailures returns the NTLM AUTHENTICATE messages refused since the
// last ResetCalls.
func (s *Server) NTLMFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ntlmFailures
}

// ResetCalls zeroes every counter.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
	s.requests = 0
	s.ntlmHandshakes = 0
	s.ntlmFailures = 0
}

// ---- HTTP ----

// maxRequestBody bounds request bodies.
const maxRequestBody = 1 << 20

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: rw, status: 200}
	w := sw
	defer func() {
		s.log.Debug("sstest request", "method", r.Method, "path", r.URL.Path, "status", sw.status)
	}()
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	// Read the whole body so that the connection stays usable (NTLM).
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		writeJSON(w, 400, map[string]string{"message": "The request is invalid."})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, s.basePath)
	if !ok {
		s.notFound(w, r)
		return
	}
	if rest == "/oauth2/token" {
		if !s.begin(w, r, EndpointToken) {
			return
		}
		s.handleToken(w, r, body)
		return
	}
	var api string
	ntlm := false
	switch {
	case strings.HasPrefix(rest, "/api/v1/"):
		api = strings.TrimPrefix(rest, "/api/v1")
	case strings.HasPrefix(rest, "/winauthwebservices/api/v1/"):
		api = strings.TrimPrefix(rest, "/winauthwebservices/api/v1")
		ntlm = true
	default:
		s.notFound(w, r)
		return
	}
	rt, ok := route(r.Method, api)
	if !ok {
		s.notFound(w, r)
		return
	}
	after, ok := s.beginAfter(w, r, rt.endpoint)
	if !ok {
		return
	}
	if rt.endpoint == EndpointHealth {
		writeJSON(w, 200, map[string]any{"healthy": true, "databaseHealthy": true, "serviceBusHealthy": true, "storageAccountHealthy": true, "scheduledForDeletion": false})
		return
	}
	var user string
	if ntlm {
		if user = s.ntlmAuth(w, r); user == "" {
			return
		}
	} else if user = s.bearerAuth(w, r); user == "" {
		return
	}
	if after != nil {
		// Apply the request against a discarded answer, then fail.
		rt.handle(s, &statusWriter{ResponseWriter: discard{h: http.Header{}}, status: 200}, r, call{user: user, id: rt.id, slug: rt.slug, body: body})
		writeFault(sw, *after)
		return
	}
	rt.handle(s, w, r, call{user: user, id: rt.id, slug: rt.slug, body: body})
}

// begin counts a call and applies latency and faults; false means the
// answer is written.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, ep string) bool {
	after, ok := s.beginAfter(w, r, ep)
	if after != nil {
		writeFault(w, *after) // endpoints without effects fail at once
	}
	return ok && after == nil
}

// beginAfter is begin, returning a fault to answer after the request took
// effect (FailNextAfterApply).
func (s *Server) beginAfter(w http.ResponseWriter, r *http.Request, ep string) (*fault, bool) {
	s.mu.Lock()
	s.calls[ep]++
	d := s.latency[ep]
	var f fault
	if ft := s.faults[ep]; ft != nil {
		f = *ft
		ft.n--
		if ft.n <= 0 {
			delete(s.faults, ep)
		}
	}
	s.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return nil, false
		}
	}
	if f.status == 0 && !f.drop {
		return nil, true
	}
	if f.after {
		return &f, true
	}
	writeFault(w, f)
	return nil, false
}

// discard is a ResponseWriter that drops the answer.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(p []byte) (int, error) { return len(p), nil }
func (d discard) WriteHeader(int)             {}

func writeFault(w http.ResponseWriter, f fault) {
	if f.drop {
		// The server closes the connection without a response.
		panic(http.ErrAbortHandler)
	}
	for k, v := range f.header {
		w.Header()[k] = v
	}
	if (f.status == 429 || f.status == 503) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "0")
	}
	body := f.body
	if body == "" {
		body = fmt.Sprintf(`{"errorCode":"API_InjectedFault","message":"injected %d"}`, f.status)
	}
	if strings.HasPrefix(body, "<") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(f.status)
	_, _ = io.WriteString(w, body)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 404, map[string]string{"message": "No HTTP resource was found that matches the request URI '" + r.URL.Path + "'."})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = 500, []byte(`{"message":"An error has occurred."}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errorCode": code, "message": msg})
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) bearerAuth(w http.ResponseWriter, r *http.Request) string {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		writeRaw(w, 401, BodyNoAuth)
		return ""
	}
	s.mu.Lock()
	rec, ok := s.tokens[tok]
	if ok && !time.Now().Before(rec.expires) {
		delete(s.tokens, tok)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		writeRaw(w, 403, BodyExpiredToken)
		return ""
	}
	return rec.user
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		writeJSON(w, 405, map[string]string{"message": "The requested resource does not support http method '" + r.Method + "'."})
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeRaw(w, 400, `{"error":"invalid_request"}`)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var user string
	switch form.Get("grant_type") {
	case "password":
		a, ok := s.lookupUser(form.Get("username"), form.Get("domain"))
		if !ok || a.password != form.Get("password") || a.password == "" {
			writeRaw(w, 400, BodyLoginFailed)
			return
		}
		user = a.name
	case "refresh_token":
		s.calls[EndpointRefresh]++
		rt := form.Get("refresh_token")
		rec, ok := s.refresh[rt]
		delete(s.refresh, rt) // single use
		if !ok || !time.Now().Before(rec.expires) {
			writeRaw(w, 400, BodyInvalidGrant)
			return
		}
		user = rec.user
	default:
		writeRaw(w, 400, `{"error":"unsupported_grant_type"}`)
		return
	}
	access := randomToken()
	s.issued = append(s.issued, access)
	life := s.tokenLife
	s.tokens[access] = tokenRec{user: user, expires: time.Now().Add(life)}
	resp := map[string]any{"access_token": access, "token_type": "bearer", "expires_in": max(int(life/time.Second), 1)}
	if s.refreshOn {
		rt := randomToken()
		s.issued = append(s.issued, rt)
		s.refresh[rt] = tokenRec{user: user, expires: time.Now().Add(life + 15*time.Minute)}
		resp["refresh_token"] = rt
	}
	writeJSON(w, 200, resp)
}

// ---- routes ----

type call struct {
	user string
	id   int
	slug string
	body []byte
}

type routed struct {
	endpoint string
	id       int
	slug     string
	handle   func(*Server, http.ResponseWriter, *http.Request, call)
}

func route(method, p string) (routed, bool) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	lower := make([]string, len(parts))
	for i, x := range parts {
		lower[i] = strings.ToLower(x)
	}
	id := func(i int) (int, bool) {
		n, err := strconv.Atoi(parts[i])
		return n, err == nil
	}
	switch {
	case len(parts) == 1 && lower[0] == "healthcheck" && method == http.MethodGet:
		return routed{endpoint: EndpointHealth}, true
	case len(parts) == 2 && lower[0] == "users" && lower[1] == "current" && method == http.MethodGet:
		return routed{endpoint: EndpointCurrentUser, handle: (*Server).handleCurrentUser}, true
	case len(parts) == 1 && lower[0] == "oauth-expiration" && method == http.MethodPost:
		return routed{endpoint: EndpointExpire, handle: (*Server).handleExpire}, true
	case len(parts) == 1 && lower[0] == "secrets" && method == http.MethodGet:
		return routed{endpoint: EndpointSearch, handle: (*Server).handleSearch}, true
	case len(parts) == 2 && lower[0] == "secrets":
		n, ok := id(1)
		if !ok {
			return routed{}, false
		}
		switch method {
		case http.MethodGet:
			return routed{endpoint: EndpointGetSecret, id: n, handle: (*Server).handleGetSecret}, true
		case http.MethodPut:
			return routed{endpoint: EndpointPutSecret, id: n, handle: (*Server).handlePutSecret}, true
		}
	case len(parts) == 3 && lower[0] == "secrets":
		n, ok := id(1)
		if !ok {
			return routed{}, false
		}
		switch {
		case lower[2] == "check-out" && method == http.MethodPost:
			return routed{endpoint: EndpointCheckOut, id: n, handle: (*Server).handleCheckOut}, true
		case lower[2] == "check-in" && method == http.MethodPost:
			return routed{endpoint: EndpointCheckIn, id: n, handle: (*Server).handleCheckIn}, true
		case lower[2] == "heartbeat" && method == http.MethodPost:
			return routed{endpoint: EndpointHeartbeat, id: n, handle: (*Server).handleHeartbeat}, true
		case lower[2] == "state" && method == http.MethodGet:
			return routed{endpoint: EndpointState, id: n, handle: (*Server).handleState}, true
		case lower[2] == "restricted" && method == http.MethodPost:
			return routed{endpoint: EndpointRestricted, id: n, handle: (*Server).handleRestricted}, true
		}
	case len(parts) == 4 && lower[0] == "secrets" && lower[2] == "fields":
		n, ok := id(1)
		if !ok {
			return routed{}, false
		}
		slug, err := url.PathUnescape(parts[3])
		if err != nil {
			return routed{}, false
		}
		switch method {
		case http.MethodGet:
			return routed{endpoint: EndpointGetField, id: n, slug: slug, handle: (*Server).handleGetField}, true
		case http.MethodPut:
			return routed{endpoint: EndpointPutField, id: n, slug: slug, handle: (*Server).handlePutField}, true
		}
	case len(parts) == 2 && lower[0] == "secret-templates" && method == http.MethodGet:
		n, ok := id(1)
		if ok {
			return routed{endpoint: EndpointTemplate, id: n, handle: (*Server).handleTemplate}, true
		}
	case len(parts) == 3 && lower[0] == "secret-templates" && lower[1] == "generate-password" && method == http.MethodPost:
		n, ok := id(2)
		if ok {
			return routed{endpoint: EndpointGenerate, id: n, handle: (*Server).handleGenerate}, true
		}
	}
	return routed{}, false
}

func (s *Server) handleCurrentUser(w http.ResponseWriter, _ *http.Request, c call) {
	s.mu.Lock()
	var id int
	for _, a := range s.users {
		if a.name == c.user {
			id = a.id
		}
	}
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{"id": id, "userName": c.user, "displayName": c.user, "enabled": true})
}

func (s *Server) handleExpire(w http.ResponseWriter, r *http.Request, _ call) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	delete(s.tokens, tok)
	s.mu.Unlock()
	writeJSON(w, 200, true)
}

// query reads a query parameter case-insensitively, with or without the
// "paging." prefix.
func query(q url.Values, name string) []string {
	name = strings.ToLower(name)
	var out []string
	for k, v := range q {
		k = strings.TrimPrefix(strings.ToLower(k), "paging.")
		if k == name {
			out = append(out, v...)
		}
	}
	return out
}

func query1(q url.Values, name string) string {
	if v := query(q, name); len(v) > 0 {
		return v[0]
	}
	return ""
}

type summaryJSON struct {
	ID                 int     `json:"id"`
	Name               string  `json:"name"`
	FolderID           int     `json:"folderId"`
	FolderPath         string  `json:"folderPath"`
	SecretTemplateID   int     `json:"secretTemplateId"`
	SecretTemplateName string  `json:"secretTemplateName"`
	SiteID             int     `json:"siteId"`
	Active             bool    `json:"active"`
	CheckedOut         bool    `json:"checkedOut"`
	IsRestricted       bool    `json:"isRestricted"`
	CheckOutEnabled    bool    `json:"checkOutEnabled"`
	RequiresComment    bool    `json:"requiresComment"`
	AutoChangeEnabled  bool    `json:"autoChangeEnabled"`
	LastHeartBeat      string  `json:"lastHeartBeatStatus"`
	LastPasswordChange string  `json:"lastPasswordChangeAttempt"`
	ExtendedFields     any     `json:"extendedFields"`
	CreateDate         string  `json:"createDate"`
	DaysUntilExpire    *string `json:"daysUntilExpiration"`
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request, _ call) {
	q := r.URL.Query()
	text := query1(q, "filter.searchText")
	exact := strings.EqualFold(query1(q, "filter.isExactMatch"), "true")
	inactive := strings.EqualFold(query1(q, "filter.includeInactive"), "true")
	field := query1(q, "filter.searchFieldSlug")
	if field == "" {
		field = strings.ToLower(query1(q, "filter.searchField"))
	}
	skip, _ := strconv.Atoi(query1(q, "skip"))
	take := 10
	if v := query1(q, "take"); v != "" {
		take, _ = strconv.Atoi(v)
	}
	if skip < 0 || take <= 0 || take > 10000 {
		apiError(w, 400, "API_InvalidPaging", "Invalid paging values.")
		return
	}
	s.mu.Lock()
	var all []summaryJSON
	for _, rec := range s.secrets {
		if !rec.active && !inactive {
			continue
		}
		target := rec.name
		if field != "" {
			target = rec.values[field]
		}
		lt, lx := strings.ToLower(target), strings.ToLower(text)
		if exact && lt != lx || !exact && !strings.Contains(lt, lx) {
			continue
		}
		all = append(all, s.summary(rec))
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		if !strings.EqualFold(all[i].Name, all[j].Name) {
			return strings.ToLower(all[i].Name) < strings.ToLower(all[j].Name)
		}
		return all[i].ID < all[j].ID
	})
	page := []summaryJSON{}
	if skip < len(all) {
		page = all[skip:min(skip+take, len(all))]
	}
	pageCount := (len(all) + take - 1) / take
	writeJSON(w, 200, map[string]any{
		"skip": skip, "take": take, "total": len(all), "pageCount": pageCount,
		"currentPage": skip/take + 1, "batchCount": pageCount,
		"prevSkip": max(skip-take, 0), "nextSkip": skip + take,
		"hasPrev": skip > 0, "hasNext": skip+take < len(all),
		"success": true, "severity": "None",
		"sortBy":  []map[string]any{{"name": "Name", "direction": "Asc", "priority": 0}},
		"filter":  map[string]any{"searchText": text},
		"records": page,
	})
}

// summary builds a record's summary; s.mu is held.
func (s *Server) summary(rec *secretRec) summaryJSON {
	tname := ""
	if t := s.templates[rec.templateID]; t != nil {
		tname = t.Name
	}
	return summaryJSON{
		ID: rec.id, Name: rec.name, FolderID: rec.folderID, FolderPath: rec.folderPath,
		SecretTemplateID: rec.templateID, SecretTemplateName: tname, SiteID: 1, Active: rec.active,
		CheckedOut: rec.checkedOutBy != "", IsRestricted: rec.checkout || rec.comment,
		CheckOutEnabled: rec.checkout, RequiresComment: rec.comment, AutoChangeEnabled: rec.autoChange,
		LastHeartBeat: rec.heartbeat, LastPasswordChange: "0001-01-01T00:00:00", CreateDate: "2024-01-01T00:00:00",
	}
}

type itemJSON struct {
	ItemID           int    `json:"itemId"`
	FieldID          int    `json:"fieldId"`
	FileAttachmentID *int   `json:"fileAttachmentId"`
	FieldName        string `json:"fieldName"`
	Slug             string `json:"slug"`
	FieldDescription string `json:"fieldDescription"`
	Filename         string `json:"filename"`
	ItemValue        string `json:"itemValue"`
	IsFile           bool   `json:"isFile"`
	IsNotes          bool   `json:"isNotes"`
	IsPassword       bool   `json:"isPassword"`
}

// secretJSON builds GET /secrets/{id}; s.mu is held.
func (s *Server) secretJSON(rec *secretRec) map[string]any {
	t := s.templates[rec.templateID]
	items := []itemJSON{}
	for _, f := range t.Fields {
		it := itemJSON{
			ItemID: rec.itemIDs[f.Slug], FieldID: f.ID, FieldName: f.Name, Slug: f.Slug,
			ItemValue: rec.values[f.Slug], IsNotes: f.IsNotes, IsPassword: f.IsPassword,
		}
		if f.IsFile {
			// A file's item value is its name, never its content.
			it.IsFile, it.ItemValue = true, ""
			if rec.values[f.Slug] != "" {
				att := rec.itemIDs[f.Slug]
				it.FileAttachmentID, it.Filename, it.ItemValue = &att, f.Slug, f.Slug
			}
		}
		items = append(items, it)
	}
	return map[string]any{
		"id": rec.id, "name": rec.name, "folderId": rec.folderID, "secretTemplateId": rec.templateID,
		"secretTemplateName": t.Name, "siteId": 1, "active": rec.active, "checkedOut": rec.checkedOutBy != "",
		"checkOutEnabled": rec.checkout, "checkOutIntervalMinutes": 30, "requiresComment": rec.comment,
		"isRestricted": rec.checkout || rec.comment, "autoChangeEnabled": rec.autoChange, "isDoubleLock": false,
		"checkOutChangePasswordEnabled": false, "lastHeartBeatStatus": rec.heartbeat,
		"lastHeartBeatCheck": "2024-05-01T10:00:00", "lastPasswordChangeAttempt": "0001-01-01T00:00:00",
		"launcherConnectAsSecretId": -1, "responseCodes": []string{}, "items": items,
	}
}

// active finds secret c.id, answering Access Denied (as Secret Server does
// for an unknown id) and returning nil when there is no active one. s.mu
// is held.
func (s *Server) active(w http.ResponseWriter, c call) *secretRec {
	rec := s.secrets[c.id]
	if rec == nil || !rec.active {
		writeRaw(w, 400, BodyAccessDenied)
		return nil
	}
	return rec
}

// access finds secret c.id and checks that c.user may use it now; on
// failure it writes the answer and returns nil. s.mu is held.
func (s *Server) access(w http.ResponseWriter, c call) *secretRec {
	rec := s.active(w, c)
	if rec == nil {
		return nil
	}
	if rec.checkout && rec.checkedOutBy != c.user {
		if rec.checkedOutBy != "" {
			apiError(w, 400, "API_SecretCheckedOutByAnotherUser", "Secret is checked out by another user.")
		} else {
			apiError(w, 400, "API_CheckOutRequired", "Secret requires check out.")
		}
		return nil
	}
	if rec.comment && !rec.commented[c.user] {
		apiError(w, 400, "API_CommentRequired", "Secret requires a comment.")
		return nil
	}
	return rec
}

func (s *Server) handleGetSecret(w http.ResponseWriter, _ *http.Request, c call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.access(w, c)
	if rec == nil {
		return
	}
	writeJSON(w, 200, s.secretJSON(rec))
}

func (s *Server) handleRestricted(w http.ResponseWriter, _ *http.Request, c call) {
	var b struct{ Comment string }
	_ = json.Unmarshal(c.body, &b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.secrets[c.id]; rec != nil && b.Comment != "" {
		rec.commented[c.user] = true
	}
	rec := s.access(w, c)
	if rec == nil {
		return
	}
	writeJSON(w, 200, s.secretJSON(rec))
}

// handlePutSecret updates the text fields given in the body's items (the
// Go SDK's UpdateSecret), matched by slug or field id.
func (s *Server) handlePutSecret(w http.ResponseWriter, _ *http.Request, c call) {
	var b struct {
		ID    int
		Name  string
		Items []struct {
			FieldID   int
			Slug      string
			ItemValue *string
			IsFile    bool
		}
	}
	if err := json.Unmarshal(c.body, &b); err != nil {
		apiError(w, 400, "API_ModelStateInvalid", "The request is invalid.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.access(w, c)
	if rec == nil {
		return
	}
	if b.ID != c.id {
		apiError(w, 400, "API_IdMismatch", "The secret id in the body does not match the URL.")
		return
	}
	t := s.templates[rec.templateID]
	for _, it := range b.Items {
		if it.IsFile || it.ItemValue == nil {
			continue
		}
		for _, f := range t.Fields {
			if strings.EqualFold(f.Slug, it.Slug) || (it.Slug == "" && f.ID == it.FieldID) {
				rec.values[f.Slug] = *it.ItemValue
				if f.IsPassword {
					rec.pwWrites++
				}
			}
		}
	}
	if b.Name != "" {
		rec.name = b.Name
	}
	writeJSON(w, 200, s.secretJSON(rec))
}

func (s *Server) fieldOf(rec *secretRec, slug string) (TemplateField, bool) {
	for _, f := range s.templates[rec.templateID].Fields {
		if strings.EqualFold(f.Slug, slug) {
			return f, true
		}
	}
	return TemplateField{}, false
}

func (s *Server) handleGetField(w http.ResponseWriter, _ *http.Request, c call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.access(w, c)
	if rec == nil {
		return
	}
	f, ok := s.fieldOf(rec, c.slug)
	if !ok {
		apiError(w, 400, "API_FieldNotFound", "Field not found.")
		return
	}
	if f.IsFile {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(200)
		_, _ = w.Write([]byte(rec.values[f.Slug]))
		return
	}
	writeJSON(w, 200, rec.values[f.Slug])
}

func (s *Server) handlePutField(w http.ResponseWriter, _ *http.Request, c call) {
	var b struct{ Value *string }
	if err := json.Unmarshal(c.body, &b); err != nil || b.Value == nil {
		writeJSON(w, 400, map[string]any{"message": "The request is invalid.", "modelState": map[string][]string{"args.value": {"The Value field is required."}}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.access(w, c)
	if rec == nil {
		return
	}
	f, ok := s.fieldOf(rec, c.slug)
	if !ok {
		apiError(w, 400, "API_FieldNotFound", "Field not found.")
		return
	}
	rec.values[f.Slug] = *b.Value
	if f.IsPassword {
		rec.pwWrites++
	}
	writeJSON(w, 200, *b.Value)
}

func (s *Server) stateJSON(rec *secretRec, user string) map[string]any {
	st := "None"
	switch {
	case rec.checkout && rec.comment && rec.checkedOutBy != user:
		st = "RequiresCheckoutAndComment"
	case rec.checkout && rec.checkedOutBy != user:
		st = "RequiresCheckout"
	case rec.comment && !rec.commented[user]:
		st = "RequiresComment"
	}
	var co any
	if rec.checkout {
		co = rec.checkedOutBy != ""
	}
	return map[string]any{"id": rec.id, "secretName": rec.name, "folderId": rec.folderID, "secretState": st,
		"isCheckedOut": co, "checkOutMinutesRemaining": nil, "checkOutIntervalMinutes": 30, "actions": []string{}}
}

func (s *Server) handleState(w http.ResponseWriter, _ *http.Request, c call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.active(w, c)
	if rec == nil {
		return
	}
	writeJSON(w, 200, s.stateJSON(rec, c.user))
}

func (s *Server) handleCheckOut(w http.ResponseWriter, _ *http.Request, c call) {
	var b struct{ Comment string }
	if len(c.body) > 0 {
		_ = json.Unmarshal(c.body, &b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.active(w, c)
	if rec == nil {
		return
	}
	if rec.checkout && rec.checkedOutBy != "" && rec.checkedOutBy != c.user {
		apiError(w, 400, "API_SecretCheckedOutByAnotherUser", "Secret is checked out by another user.")
		return
	}
	if rec.comment && strings.TrimSpace(b.Comment) == "" {
		apiError(w, 400, "API_CommentRequired", "Secret requires a comment.")
		return
	}
	if rec.checkout {
		rec.checkedOutBy = c.user
	}
	if b.Comment != "" {
		rec.commented[c.user] = true
	}
	writeJSON(w, 200, s.stateJSON(rec, c.user))
}

func (s *Server) handleCheckIn(w http.ResponseWriter, _ *http.Request, c call) {
	var b struct{ ForceCheckIn bool }
	if len(c.body) > 0 {
		_ = json.Unmarshal(c.body, &b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.active(w, c)
	if rec == nil {
		return
	}
	if rec.checkedOutBy != "" && rec.checkedOutBy != c.user && !b.ForceCheckIn {
		apiError(w, 400, "API_SecretCheckedOutByAnotherUser", "Secret is checked out by another user.")
		return
	}
	rec.checkedOutBy = ""
	delete(rec.commented, c.user)
	writeJSON(w, 200, s.stateJSON(rec, c.user))
}

// handleHeartbeat queues a heartbeat: the answer says Pending, and the
// secret's status becomes the configured result (Success by default).
func (s *Server) handleHeartbeat(w http.ResponseWriter, _ *http.Request, c call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.active(w, c)
	if rec == nil {
		return
	}
	rec.heartbeat = s.heartbeatTo
	out := s.secretJSON(rec)
	delete(out, "items")
	out["lastHeartBeatStatus"] = "Pending"
	writeJSON(w, 200, out)
}

// SetHeartbeatResult sets the status a heartbeat leaves on a secret.
func (s *Server) SetHeartbeatResult(status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heartbeatTo = status
}

func (s *Server) handleTemplate(w http.ResponseWriter, _ *http.Request, c call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.templates[c.id]
	if t == nil {
		writeRaw(w, 400, BodyAccessDenied)
		return
	}
	fields := []map[string]any{}
	for i, f := range t.Fields {
		fields = append(fields, map[string]any{
			"secretTemplateFieldId": f.ID, "fieldSlugName": f.Slug, "displayName": f.Name, "name": f.Name,
			"description": "", "isPassword": f.IsPassword, "isNotes": f.IsNotes, "isFile": false, "isUrl": false,
			"isList": false, "isRequired": f.IsPassword, "listType": "None", "editRequires": "Edit",
			"generatePasswordLength": f.Policy.Length, "generatePasswordCharacterSet": "",
			"passwordRequirementId": 1, "passwordTypeFieldId": 0, "hideOnView": f.IsPassword,
			"historyLength": 0, "sortOrder": i + 1, "mustEncrypt": f.IsPassword, "isExpirationField": false,
		})
	}
	writeJSON(w, 200, map[string]any{"id": t.ID, "name": t.Name, "active": true, "fields": fields})
}

func (s *Server) handleGenerate(w http.ResponseWriter, _ *http.Request, c call) {
	s.mu.Lock()
	var pol *PasswordPolicy
	for _, t := range s.templates {
		for i := range t.Fields {
			if t.Fields[i].ID == c.id && t.Fields[i].IsPassword {
				p := t.Fields[i].Policy
				pol = &p
			}
		}
	}
	s.mu.Unlock()
	if pol == nil {
		apiError(w, 400, "API_InvalidSecretTemplateField", "The secret template field is not a password field.")
		return
	}
	writeJSON(w, 200, pol.Generate())
}

// Generate returns a random password under p: Length characters (at least
// one per class) with at least one character of each class switched on.
func (p PasswordPolicy) Generate() string {
	var classes []string
	if p.Lower {
		classes = append(classes, "abcdefghijklmnopqrstuvwxyz")
	}
	if p.Upper {
		classes = append(classes, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	}
	if p.Digits {
		classes = append(classes, "0123456789")
	}
	if p.Symbols {
		sym := p.SymbolSet
		if sym == "" {
			sym = DefaultSymbols
		}
		classes = append(classes, sym)
	}
	if len(classes) == 0 {
		classes = []string{"abcdefghijklmnopqrstuvwxyz"}
	}
	n := max(p.Length, len(classes), 1)
	all := strings.Join(classes, "")
	out := make([]byte, n)
	for i := range out {
		out[i] = all[randInt(len(all))]
	}
	// One character of each class, at distinct random positions.
	pos := make([]int, n)
	for i := range pos {
		pos[i] = i
	}
	for i := range classes {
		j := i + randInt(n-i)
		pos[i], pos[j] = pos[j], pos[i]
		out[pos[i]] = classes[i][randInt(len(classes[i]))]
	}
	return string(out)
}

func randInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}
