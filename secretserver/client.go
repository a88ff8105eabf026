// Package secretserver is rotord's client for Thycotic / Delinea Secret
// Server's REST API. It authenticates with OAuth2 (password and refresh
// grants, with an optional encrypted on-disk token cache) or with Windows
// integrated authentication (NTLM), resolves secret names, reads secrets,
// generates passwords with the server's generator and writes them back.
//
// A Client implements rotation.Vault. Every call has a deadline, TLS is
// always verified, transient failures (5xx, 429, network errors) are
// retried with exponential backoff and jitter within the caller's context,
// and no password or token ever appears in an error or a log line.
package secretserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/go-ntlmssp"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

var _ rotation.Vault = (*Client)(nil)

// Authentication methods for Config.Auth.
const (
	AuthOAuth2 = "oauth2" // OAuth2 password grant against {url}/oauth2/token, bearer tokens on {url}/api/v1
	AuthNTLM   = "ntlm"   // Windows integrated authentication on {url}/winauthwebservices/api/v1
)

// DefaultConfig returns the defaults of every setting that has one: OAuth2,
// 30s per exchange, hosts in the "notes" field, 4 retries backing off from
// 250ms to at most 30s, search pages of 100. The server's address and
// rotord's account have none.
func DefaultConfig() Config {
	return Config{
		Auth:           AuthOAuth2,
		Timeout:        30 * time.Second,
		HostsField:     "notes",
		MaxRetries:     4,
		RetryBaseDelay: 250 * time.Millisecond,
		RetryMaxDelay:  30 * time.Second,
		PageSize:       100,
	}
}

// maxBody bounds every response body read.
const maxBody = 8 << 20

// Config configures a Client. New takes the values as they are (start from
// DefaultConfig for the defaults; each field says what its zero means),
// but for Auth and HostsField, which have no zero: "" is the default's.
type Config struct {
	URL        string        // application root: https://host/SecretServer or https://tenant.example/
	Auth       string        // AuthOAuth2 or AuthNTLM
	Username   string        // Secret Server (or Windows) account
	Password   secret.Value  // its password
	Domain     string        // optional AD domain
	CAFile     string        // optional extra CA bundle (PEM), added to the system roots
	CAPEM      []byte        // optional extra CA certificates (PEM), as CAFile
	Timeout    time.Duration // each HTTP exchange; 0: no limit of the client's own
	HostsField string        // slug of the field listing hosts, when Read names none
	TokenCache *TokenCache   // nil: tokens live in memory only (OAuth2 only)

	MaxRetries     int           // retries after the first attempt; 0: none
	RetryBaseDelay time.Duration // first backoff, doubled per retry, with jitter; 0: retry at once
	RetryMaxDelay  time.Duration // cap of one backoff and of Retry-After; 0: no cap
	PageSize       int           // search page size; 0: the server's own

	// Now returns the current time (time.Now); tests move it to age tokens.
	Now func() time.Time
	// Sleep waits d before a retry, or until ctx ends (then it returns
	// ctx's error). The default uses a timer; tests record the waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client talks to one Secret Server as one account. It is safe for
// concurrent use; one token serves all callers.
type Client struct {
	cfg      Config
	apiBase  string // {url}/api/v1 or {url}/winauthwebservices/api/v1
	tokenURL string
	hc       *http.Client
	log      *slog.Logger
	ntlm     bool
	cacheKey string

	grantSem chan struct{} // one grant at a time
	mu       sync.Mutex
	tok      token
	cacheTry bool
	folders  map[int]string // folder paths learnt from searches
}

// New returns a client for cfg. It does no I/O except reading CAFile.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil {
		return nil, fmt.Errorf("secret server url: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("secret server url %q: must be https://host[/path]", cfg.URL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("secret server url %q: must not carry credentials, a query or a fragment", u.Redacted())
	}
	base := strings.TrimRight(u.String(), "/")
	// The two settings without a zero of their own take the default's.
	if cfg.Auth == "" {
		cfg.Auth = DefaultConfig().Auth
	}
	if cfg.HostsField == "" {
		cfg.HostsField = DefaultConfig().HostsField
	}
	switch cfg.Auth {
	case AuthOAuth2, AuthNTLM:
	default:
		return nil, fmt.Errorf("secret server auth %q: must be %s or %s", cfg.Auth, AuthOAuth2, AuthNTLM)
	}
	if cfg.Username == "" {
		return nil, errors.New("secret server username is empty")
	}
	if cfg.Password.IsZero() {
		return nil, errors.New("secret server password is empty")
	}
	for _, n := range []struct {
		name string
		neg  bool
	}{
		{"timeout", cfg.Timeout < 0}, {"max retries", cfg.MaxRetries < 0}, {"retry base delay", cfg.RetryBaseDelay < 0},
		{"retry max delay", cfg.RetryMaxDelay < 0}, {"page size", cfg.PageSize < 0},
	} {
		if n.neg {
			return nil, fmt.Errorf("secret server %s is negative", n.name)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}

	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificates", cfg.CAFile)
		}
	}
	if len(cfg.CAPEM) > 0 && !roots.AppendCertsFromPEM(cfg.CAPEM) {
		return nil, errors.New("ca pem: no certificates")
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
	}
	c := &Client{
		cfg:      cfg,
		log:      log,
		tokenURL: base + "/oauth2/token",
		apiBase:  base + "/api/v1",
		grantSem: make(chan struct{}, 1),
		folders:  make(map[int]string),
		cacheKey: cacheKey(base, cfg.Username, cfg.Domain),
	}
	var rt http.RoundTripper = tr
	if cfg.Auth == AuthNTLM {
		// NTLM is connection-bound and cannot ride HTTP/2.
		tr.ForceAttemptHTTP2 = false
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		rt = ntlmssp.Negotiator{RoundTripper: tr}
		c.ntlm = true
		c.apiBase = base + "/winauthwebservices/api/v1"
	}
	c.hc = &http.Client{
		Transport: rt,
		// A redirect could carry the bearer token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// request is one logical API call.
type request struct {
	method  string
	url     string // absolute
	body    []byte
	ctype   string   // body content type
	secrets []string // values in the request, scrubbed from errors
	retry   bool     // replay on 5xx, 429 and network errors
	noAuth  bool     // token endpoint: no bearer, no re-grant
}

// response is a 2xx answer.
type response struct {
	status int
	ctype  string
	body   []byte
}

func (c *Client) api(path string) string { return c.apiBase + path }

// do runs req: it adds authentication, retries transient failures with
// backoff, re-authenticates once when the token was refused, and turns
// error answers into *APIError.
func (c *Client) do(ctx context.Context, req request) (response, error) {
	regranted := false
	for attempt := 0; ; attempt++ {
		var tok secret.Value
		if !req.noAuth && !c.ntlm {
			t, err := c.token(ctx)
			if err != nil {
				return response{}, err
			}
			tok = t
		}
		resp, retryAfter, err := c.send(ctx, req, tok)
		if err != nil {
			if ctx.Err() != nil || !req.retry || attempt >= c.cfg.MaxRetries || unresolvable(err) {
				return response{}, err
			}
			if werr := c.backoff(ctx, attempt, 0, req, 0, err); werr != nil {
				return response{}, err
			}
			continue
		}
		if resp.status >= 200 && resp.status < 300 {
			return resp, nil
		}
		// Scrub what this request carried, and rotord's own credentials
		// whatever the request: a server may echo anything.
		scrubbed := append([]string{c.cfg.Password.Reveal(), tok.Reveal()}, req.secrets...)
		apiErr := decodeError(resp.status, resp.ctype, resp.body, scrubbed)
		apiErr.RetryAfter = retryAfter
		if !req.noAuth && tokenRefused(apiErr) {
			if c.ntlm || regranted {
				apiErr.Auth = true
				return response{}, apiErr
			}
			regranted = true
			c.dropToken(tok)
			attempt--
			continue
		}
		if req.noAuth && (resp.status == 400 || resp.status == 401 || resp.status == 403) {
			apiErr.Auth = true
			return response{}, apiErr
		}
		if !transient(resp.status) || !req.retry || attempt >= c.cfg.MaxRetries {
			return response{}, apiErr
		}
		if werr := c.backoff(ctx, attempt, retryAfter, req, resp.status); werr != nil {
			return response{}, apiErr
		}
	}
}

// tokenRefused reports an answer that means "the token (or the NTLM
// identity) was not accepted".
func tokenRefused(e *APIError) bool {
	if e.Status == 401 {
		return true
	}
	return e.Status == 403 && e.tokenExpired
}

func transient(status int) bool {
	switch status {
	case 408, 429, 500, 502, 503, 504:
		return true
	}
	return false
}

// backoff waits before retry attempt+1: the server's Retry-After when it
// answered 429 or 503 with one, else exponential backoff with jitter; both
// capped by RetryMaxDelay. The warning it logs names cause, when given
// (status is 0 when no answer came: the cause says why). It returns the
// context's error if the context ends first, or would end before the wait
// does (the request's deadline caps every wait: a retry that could not
// start in time is not waited for).
func (c *Client) backoff(ctx context.Context, attempt int, retryAfter time.Duration, req request, status int, cause ...error) error {
	d := retryAfter
	if status != 429 && status != 503 {
		d = 0 // Retry-After means "when to retry" only on these answers
	}
	if d <= 0 {
		d = c.cfg.RetryBaseDelay << min(attempt, 20)
		if d < c.cfg.RetryBaseDelay { // overflowed
			d = c.cfg.RetryMaxDelay
		}
		if c.cfg.RetryMaxDelay > 0 && d > c.cfg.RetryMaxDelay {
			d = c.cfg.RetryMaxDelay
		}
		d = d/2 + rand.N(d/2+1)
	} else if c.cfg.RetryMaxDelay > 0 && d > c.cfg.RetryMaxDelay {
		d = c.cfg.RetryMaxDelay
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.DeadlineExceeded
	}
	attrs := []any{"method", req.method, "path", logPath(req.url), "status", status, "attempt", attempt + 1, "delay", d}
	for _, err := range cause {
		attrs = append(attrs, "err", err)
	}
	c.log.Warn("secret server request retried", attrs...)
	return c.cfg.Sleep(ctx, d)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// withTimeout is ctx bounded by Config.Timeout, or ctx as it is when the
// timeout is 0 (no limit).
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.cfg.Timeout == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// logPath returns the path of u without its query.
func logPath(u string) string {
	p, _, _ := strings.Cut(u, "?")
	return p
}

// send makes one HTTP exchange with its own deadline. A non-2xx answer is
// returned as a response, not an error.
func (c *Client) send(ctx context.Context, req request, tok secret.Value) (response, time.Duration, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, req.url, body)
	if err != nil {
		return response{}, 0, fmt.Errorf("%s %s: %w", req.method, logPath(req.url), err)
	}
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", "rotord")
	if req.body != nil {
		hr.Header.Set("Content-Type", req.ctype)
	}
	switch {
	case c.ntlm && !req.noAuth:
		user := c.cfg.Username
		if c.cfg.Domain != "" {
			user = c.cfg.Domain + `\` + user
		}
		// The NTLM negotiator turns these into the NTLM handshake; they are
		// never sent as Basic credentials.
		hr.SetBasicAuth(user, c.cfg.Password.Reveal())
	case !tok.IsZero():
		hr.Header.Set("Authorization", "Bearer "+tok.Reveal())
	}
	start := time.Now()
	hresp, err := c.hc.Do(hr)
	if err != nil {
		err = unwrapURLError(err)
		var ne net.Error
		if errors.As(err, &ne) {
			return response{}, 0, fmt.Errorf("%s %s: %w: %w", req.method, logPath(req.url), rotation.ErrVaultUnavailable, err)
		}
		return response{}, 0, fmt.Errorf("%s %s: %w", req.method, logPath(req.url), err)
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, maxBody+1))
	if err != nil {
		return response{}, 0, fmt.Errorf("%s %s: read body: %w", req.method, logPath(req.url), err)
	}
	if len(data) > maxBody {
		return response{}, 0, fmt.Errorf("%s %s: %w: body over %d bytes", req.method, logPath(req.url), ErrBadResponse, maxBody)
	}
	c.log.Debug("secret server request", "method", req.method, "path", logPath(req.url), "status", hresp.StatusCode, "duration", time.Since(start))
	return response{status: hresp.StatusCode, ctype: hresp.Header.Get("Content-Type"), body: data}, retryAfter(hresp.Header.Get("Retry-After"), c.cfg.Now()), nil
}

// unwrapURLError drops *url.Error's wrapper (it repeats method and URL).
// unresolvable reports a transport error that no retry mends soon: the
// server's host name does not exist in DNS (a typo in secret_server.url,
// or a resolver that does not know the name).
func unresolvable(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter parses a Retry-After header (seconds or HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		if n > 86400 {
			n = 86400
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
