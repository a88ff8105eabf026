package secretserver

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rotord/rotord/rotation/secret"
)

// token is an OAuth2 access token with its refresh token.
type token struct {
	access     secret.Value
	refresh    secret.Value
	issued     time.Time
	expires    time.Time
	refreshExp time.Time // when the refresh token stops working
}

// fresh reports whether t can be used at now without renewal: it is renewed
// at 90% of its life, or a minute before expiry, whichever comes first
// (never earlier than half its life).
func (t token) fresh(now time.Time) bool {
	if t.access.IsZero() {
		return false
	}
	life := t.expires.Sub(t.issued)
	margin := max(life/10, time.Minute)
	margin = min(margin, life/2)
	return now.Before(t.expires.Add(-margin))
}

// Authenticate checks rotord's credentials: it obtains a token (OAuth2;
// from the cache when one is there) and asks who it is logged in as. An
// error satisfies errors.Is(err, rotation.ErrAuthFailed) when the
// credentials are refused.
func (c *Client) Authenticate(ctx context.Context) error {
	if _, err := c.do(ctx, request{method: http.MethodGet, url: c.api("/users/current"), retry: true}); err != nil {
		return fmt.Errorf("check secret server login: %w", err)
	}
	return nil
}

func (c *Client) current() token {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok
}

// dropToken forgets the access token used, if it is still the current one,
// keeping the refresh token.
func (c *Client) dropToken(used secret.Value) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !used.IsZero() && c.tok.access.Equal(used) {
		c.tok.access = secret.Value{}
	}
}

// token returns an access token, granting one when there is none fresh.
// Concurrent callers share one grant.
func (c *Client) token(ctx context.Context) (secret.Value, error) {
	if t := c.current(); t.fresh(c.cfg.Now()) {
		return t.access, nil
	}
	select {
	case c.grantSem <- struct{}{}:
	case <-ctx.Done():
		return secret.Value{}, ctx.Err()
	}
	defer func() { <-c.grantSem }()
	t := c.current()
	if t.fresh(c.cfg.Now()) {
		return t.access, nil
	}
	if c.cfg.TokenCache != nil && t.access.IsZero() && t.refresh.IsZero() && !c.cacheTry {
		c.cacheTry = true
		ct, ok, err := c.cfg.TokenCache.load(c.cacheKey)
		if err != nil {
			c.log.Warn("token cache unreadable; authenticating", "err", err)
		} else if ok {
			t = ct.token()
			c.mu.Lock()
			c.tok = t
			c.mu.Unlock()
			if t.fresh(c.cfg.Now()) {
				c.log.Debug("token from cache", "expires", t.expires)
				return t.access, nil
			}
		}
	}
	nt, err := c.grant(ctx, t)
	if err != nil {
		return secret.Value{}, err
	}
	c.mu.Lock()
	c.tok = nt
	c.mu.Unlock()
	if c.cfg.TokenCache != nil {
		if err := c.cfg.TokenCache.store(c.cacheKey, cachedFrom(nt)); err != nil {
			c.log.Warn("token cache not written", "err", err)
		}
	}
	return nt.access, nil
}

// grant obtains a new token: by the refresh grant when old has a usable
// refresh token, falling back to the password grant when that is refused.
func (c *Client) grant(ctx context.Context, old token) (token, error) {
	now := c.cfg.Now()
	if !old.refresh.IsZero() && now.Before(old.refreshExp) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old.refresh.Reveal()}}
		t, err := c.postToken(ctx, form, []string{old.refresh.Reveal()})
		if err == nil {
			c.log.Info("secret server token refreshed", "expires", t.expires)
			return t, nil
		}
		if ctx.Err() != nil {
			return token{}, fmt.Errorf("refresh token: %w", err)
		}
		c.log.Info("refresh grant refused; using password grant", "err", err)
	}
	form := url.Values{
		"grant_type": {"password"},
		"username":   {c.cfg.Username},
		"password":   {c.cfg.Password.Reveal()},
	}
	if c.cfg.Domain != "" {
		form.Set("domain", c.cfg.Domain)
	}
	t, err := c.postToken(ctx, form, []string{c.cfg.Password.Reveal()})
	if err != nil {
		return token{}, fmt.Errorf("authenticate as %s: %w", c.cfg.Username, err)
	}
	c.log.Info("secret server token granted", "user", c.cfg.Username, "expires", t.expires)
	return t, nil
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func (c *Client) postToken(ctx context.Context, form url.Values, secrets []string) (token, error) {
	issued := c.cfg.Now()
	resp, err := c.do(ctx, request{
		method:  http.MethodPost,
		url:     c.tokenURL,
		body:    []byte(form.Encode()),
		ctype:   "application/x-www-form-urlencoded",
		secrets: secrets,
		retry:   true, // 400/401/403 are never retried: see do
		noAuth:  true,
	})
	if err != nil {
		return token{}, err
	}
	tr, err := decodeToken(resp.ctype, resp.body)
	if err != nil {
		return token{}, err
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	t := token{
		access:  secret.New(tr.AccessToken),
		refresh: secret.New(tr.RefreshToken),
		issued:  issued,
		expires: issued.Add(life),
	}
	if tr.RefreshToken != "" {
		t.refreshExp = t.expires.Add(15 * time.Minute)
	}
	return t, nil
}

// decodeToken parses and checks a token answer.
func decodeToken(ctype string, body []byte) (tokenResponse, error) {
	tr, err := decodeJSON[tokenResponse]("token answer is not JSON", ctype, body)
	if err != nil {
		return tokenResponse{}, err
	}
	switch {
	case len(tr.AccessToken) < 4 || strings.ContainsAny(tr.AccessToken, " \t\r\n"):
		return tokenResponse{}, badResponse("token answer has no usable access_token", ctype, nil)
	case tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer"):
		return tokenResponse{}, badResponse("token answer has a token_type other than bearer", ctype, nil)
	case tr.ExpiresIn <= 0 || tr.ExpiresIn > 366*24*3600:
		return tokenResponse{}, badResponse("token answer has expires_in out of range", ctype, nil)
	case strings.ContainsAny(tr.RefreshToken, " \t\r\n"):
		return tokenResponse{}, badResponse("token answer has a malformed refresh_token", ctype, nil)
	}
	return tr, nil
}
