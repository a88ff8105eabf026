package secretserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// maxSearchPages bounds a search so that a server that never stops paging
// cannot keep a resolve going forever.
const maxSearchPages = 1000

// searchPage is the paging envelope of GET /secrets.
type searchPage struct {
	Records *[]secretSummary `json:"records"`
	HasNext *bool            `json:"hasNext"`
}

type secretSummary struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	FolderID   int    `json:"folderId"`
	FolderPath string `json:"folderPath"`
}

// decodeSearchPage parses one page of search results.
func decodeSearchPage(ctype string, body []byte) (searchPage, error) {
	p, err := decodeJSON[searchPage]("search answer", ctype, body)
	if err != nil {
		return searchPage{}, err
	}
	if p.Records == nil {
		return searchPage{}, badResponse("search answer has no records", ctype, nil)
	}
	return p, nil
}

// Resolve returns the id of the one active secret named name (compared
// without regard to case). It pages through every search result. It
// returns an error satisfying rotation.ErrSecretNotFound when no secret
// has the name, and rotation.ErrAmbiguousName, naming the candidates'
// folders and ids, when several have it.
func (c *Client) Resolve(ctx context.Context, name string) (int, error) {
	if strings.TrimSpace(name) == "" {
		return 0, fmt.Errorf("resolve secret: %w: empty name", rotation.ErrSecretNotFound)
	}
	var matches []secretSummary
	take := c.cfg.PageSize
	for skip, pages := 0, 0; ; pages++ {
		if pages >= maxSearchPages {
			return 0, fmt.Errorf("resolve secret %q: %w: search did not end after %d pages", name, ErrBadResponse, pages)
		}
		q := url.Values{}
		q.Set("filter.searchText", name)
		q.Set("filter.includeRestricted", "true")
		q.Set("filter.doNotCalculateTotal", "true")
		q.Set("skip", strconv.Itoa(skip))
		if take > 0 {
			q.Set("take", strconv.Itoa(take))
		}
		resp, err := c.do(ctx, request{method: http.MethodGet, url: c.api("/secrets?" + q.Encode()), retry: true})
		if err != nil {
			return 0, fmt.Errorf("resolve secret %q: %w", name, err)
		}
		p, err := decodeSearchPage(resp.ctype, resp.body)
		if err != nil {
			return 0, fmt.Errorf("resolve secret %q: %w", name, err)
		}
		records := *p.Records
		for _, r := range records {
			if strings.EqualFold(r.Name, name) {
				matches = append(matches, r)
			}
		}
		if len(records) == 0 || (p.HasNext != nil && !*p.HasNext) || (p.HasNext == nil && len(records) < take) {
			break
		}
		skip += len(records)
	}
	switch len(matches) {
	case 0:
		return 0, fmt.Errorf("resolve secret %q: %w", name, rotation.ErrSecretNotFound)
	case 1:
		c.mu.Lock()
		c.folders[matches[0].ID] = matches[0].FolderPath
		c.mu.Unlock()
		return matches[0].ID, nil
	}
	sort.Slice(matches, func(i, j int) bool { return matches[i].ID < matches[j].ID })
	cands := make([]string, len(matches))
	for i, m := range matches {
		folder := m.FolderPath
		if folder == "" {
			folder = "folder " + strconv.Itoa(m.FolderID)
		}
		cands[i] = fmt.Sprintf("%s (id %d)", folder, m.ID)
	}
	return 0, fmt.Errorf("resolve secret %q: %w: %d secrets have this name, in %s", name, rotation.ErrAmbiguousName, len(matches), strings.Join(cands, ", "))
}

// secretModel is the part of GET /secrets/{id} rotord reads.
type secretModel struct {
	ID                int         `json:"id"`
	Name              string      `json:"name"`
	FolderID          int         `json:"folderId"`
	SecretTemplateID  int         `json:"secretTemplateId"`
	CheckOutEnabled   bool        `json:"checkOutEnabled"`
	RequiresComment   bool        `json:"requiresComment"`
	AutoChangeEnabled bool        `json:"autoChangeEnabled"`
	Items             []itemModel `json:"items"`
}

type itemModel struct {
	ItemID     int    `json:"itemId"`
	FieldID    int    `json:"fieldId"`
	FieldName  string `json:"fieldName"`
	Slug       string `json:"slug"`
	ItemValue  string `json:"itemValue"`
	IsPassword bool   `json:"isPassword"`
	IsNotes    bool   `json:"isNotes"`
	IsFile     bool   `json:"isFile"`
}

// decodeSecret parses GET /secrets/{id}.
func decodeSecret(ctype string, body []byte) (secretModel, error) {
	return decodeJSON[secretModel]("secret answer", ctype, body)
}

// decodeJSON parses a JSON answer into a T; what names the answer in the
// error, which satisfies ErrBadResponse.
func decodeJSON[T any](what, ctype string, body []byte) (T, error) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		var zero T
		return zero, badResponse(what, ctype, err)
	}
	return v, nil
}

// Read returns secret id: its name, username, password, hosts (parsed from
// the field with slug hostsField, or the configured default) and the
// settings that govern writing it. A secret that needs a check-out or a
// comment to be read is checked out and in again around the read.
// Errors satisfy rotation.ErrAccessDenied for a secret that does not exist
// or may not be seen, and rotation.ErrBadHosts for a bad hosts field.
func (c *Client) Read(ctx context.Context, id int, hostsField string) (rotation.Secret, error) {
	if hostsField == "" {
		hostsField = c.cfg.HostsField
	}
	m, err := c.getSecret(ctx, id)
	if errors.Is(err, ErrCheckoutRequired) || errors.Is(err, ErrCommentRequired) {
		m, err = c.getRestricted(ctx, id)
	}
	if err != nil {
		return rotation.Secret{}, fmt.Errorf("read secret %d: %w", id, err)
	}
	return c.secretFrom(id, m, hostsField)
}

// secretFrom turns the model of secret id into the engine's view of it,
// its hosts parsed from the field with slug hostsField.
func (c *Client) secretFrom(id int, m secretModel, hostsField string) (rotation.Secret, error) {
	s := rotation.Secret{
		ID:                m.ID,
		Name:              m.Name,
		TemplateID:        m.SecretTemplateID,
		CheckoutRequired:  m.CheckOutEnabled,
		CommentRequired:   m.RequiresComment,
		AutoChangeEnabled: m.AutoChangeEnabled,
	}
	c.mu.Lock()
	s.FolderPath = c.folders[id]
	c.mu.Unlock()
	var pwItem, userItem, hostsItem *itemModel
	for i := range m.Items {
		it := &m.Items[i]
		switch {
		case it.IsPassword && pwItem == nil:
			pwItem = it
		case strings.EqualFold(it.Slug, "username") && userItem == nil:
			userItem = it
		}
		if strings.EqualFold(it.Slug, hostsField) && hostsItem == nil {
			hostsItem = it
		}
	}
	if pwItem == nil {
		for i := range m.Items {
			if strings.EqualFold(m.Items[i].Slug, "password") {
				pwItem = &m.Items[i]
				break
			}
		}
	}
	if pwItem == nil {
		return rotation.Secret{}, fmt.Errorf("read secret %d: template %d has no password field", id, m.SecretTemplateID)
	}
	if userItem == nil || userItem.ItemValue == "" {
		return rotation.Secret{}, fmt.Errorf("read secret %d: no username field or it is empty", id)
	}
	if hostsItem == nil {
		return rotation.Secret{}, fmt.Errorf("read secret %d: %w: no field with slug %q", id, rotation.ErrBadHosts, hostsField)
	}
	s.Username = userItem.ItemValue
	s.Password = secret.New(pwItem.ItemValue)
	s.PasswordFieldID = pwItem.FieldID
	s.PasswordSlug = pwItem.Slug
	hosts, err := ParseHosts(hostsItem.ItemValue)
	if err != nil {
		return rotation.Secret{}, fmt.Errorf("read secret %d field %s: %w", id, hostsField, err)
	}
	s.Hosts = hosts
	s.HostsField = hostsField
	return s, nil
}

func (c *Client) getSecret(ctx context.Context, id int) (secretModel, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, url: c.api("/secrets/" + strconv.Itoa(id)), retry: true})
	if err != nil {
		return secretModel{}, err
	}
	return c.checkSecret(id, resp)
}

func (c *Client) checkSecret(id int, resp response) (secretModel, error) {
	m, err := decodeSecret(resp.ctype, resp.body)
	if err != nil {
		return secretModel{}, err
	}
	if m.ID != id {
		return secretModel{}, fmt.Errorf("%w: answer is for secret %d", ErrBadResponse, m.ID)
	}
	return m, nil
}

// getRestricted reads a secret that needs a check-out or a comment: check
// out (with a comment), read, check in.
func (c *Client) getRestricted(ctx context.Context, id int) (m secretModel, err error) {
	const comment = "rotord: read for password rotation"
	if err := c.checkOut(ctx, id, comment); err != nil {
		return secretModel{}, err
	}
	defer c.checkInLater(ctx, id, comment)
	return c.getSecret(ctx, id)
}

// Generate returns a new password from Secret Server's generator for the
// secret's password field (its template field id).
func (c *Client) Generate(ctx context.Context, s rotation.Secret) (secret.Value, error) {
	if s.PasswordFieldID <= 0 {
		return secret.Value{}, fmt.Errorf("generate password for secret %d: no password field id", s.ID)
	}
	resp, err := c.do(ctx, request{
		method: http.MethodPost,
		url:    c.api("/secret-templates/generate-password/" + strconv.Itoa(s.PasswordFieldID)),
		retry:  true, // a second generated password is as good as the first
	})
	if err != nil {
		return secret.Value{}, fmt.Errorf("generate password for secret %d: %w", s.ID, err)
	}
	pw, err := decodeJSONString(resp.ctype, resp.body)
	if err != nil {
		return secret.Value{}, fmt.Errorf("generate password for secret %d: %w", s.ID, err)
	}
	if pw.IsZero() {
		return secret.Value{}, fmt.Errorf("generate password for secret %d: %w: empty password", s.ID, ErrBadResponse)
	}
	return pw, nil
}

// decodeJSONString parses a JSON string answer (a field value, a generated
// password) into a Value.
func decodeJSONString(ctype string, body []byte) (secret.Value, error) {
	s, err := decodeJSON[*string]("answer is not a JSON string", ctype, body)
	if err != nil {
		return secret.Value{}, err
	}
	if s == nil {
		return secret.Value{}, nil
	}
	return secret.New(*s), nil
}

// Write sets the secret's password field to pw and reads it back; it
// returns an error satisfying ErrVerifyFailed unless the field then holds
// pw. A secret that requires a check-out or a comment is checked out (with
// comment) first and checked in afterwards, also on failure.
//
// The write is a compare-and-swap against s, the secret as the caller has
// just read (and compared) it: the first PUT relies on that read, and
// before each retry after a failure that leaves unknown whether the PUT
// applied (5xx, 429, a broken connection) the secret is read again. A
// field that holds pw means the earlier attempt landed: done. A password,
// username or hosts field that differs from s's means someone edited the
// secret: nothing more is written and the error satisfies
// rotation.ErrSecretChanged. Retries wait the server's Retry-After (on 429
// and 503) or back off, within ctx's deadline.
func (c *Client) Write(ctx context.Context, s rotation.Secret, pw secret.Value, comment string) error {
	if s.PasswordSlug == "" {
		return fmt.Errorf("write secret %d: no password field slug", s.ID)
	}
	if pw.IsZero() {
		return fmt.Errorf("write secret %d: empty password", s.ID)
	}
	if comment == "" {
		comment = "rotord: password rotation"
	}
	if s.CheckoutRequired || s.CommentRequired {
		if err := c.checkOut(ctx, s.ID, comment); err != nil {
			return fmt.Errorf("write secret %d: %w", s.ID, err)
		}
		defer c.checkInLater(ctx, s.ID, comment)
	}
	if err := c.putPassword(ctx, s, pw, comment); err != nil {
		return fmt.Errorf("write secret %d: %w", s.ID, err)
	}
	got, err := c.getField(ctx, s.ID, s.PasswordSlug)
	if err != nil {
		return fmt.Errorf("write secret %d: read back: %w", s.ID, err)
	}
	if !got.Equal(pw) {
		return fmt.Errorf("write secret %d: %w", s.ID, ErrVerifyFailed)
	}
	return nil
}

func (c *Client) fieldURL(id int, slug string) string {
	return c.api("/secrets/" + strconv.Itoa(id) + "/fields/" + url.PathEscape(slug))
}

// putPassword PUTs the field as a compare-and-swap against s (see Write),
// repeating the PUT after an ambiguous failure at most MaxRetries times.
func (c *Client) putPassword(ctx context.Context, s rotation.Secret, pw secret.Value, comment string) error {
	fields := map[string]string{"value": pw.Reveal()}
	if s.CommentRequired && comment != "" {
		fields["comment"] = comment
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("encode field: %w", err)
	}
	req := request{method: http.MethodPut, url: c.fieldURL(s.ID, s.PasswordSlug), body: body, ctype: "application/json", secrets: []string{pw.Reveal(), s.Password.Reveal()}}
	var failed error // the last attempt's ambiguous failure
	for attempt := 0; ; attempt++ {
		if failed != nil {
			landed, err := c.compare(ctx, s, pw)
			switch {
			case errors.Is(err, rotation.ErrSecretChanged):
				return fmt.Errorf("%w (after an attempt that failed: %v)", err, failed)
			case err != nil:
				return fmt.Errorf("%w (and the check whether it applied failed: %w)", failed, err)
			case landed:
				c.log.Info("secret server applied a write that reported failure", "secret", s.ID)
				return nil
			}
		}
		_, err := c.do(ctx, req)
		if err == nil {
			return nil
		}
		if !ambiguous(err) || ctx.Err() != nil || attempt >= c.cfg.MaxRetries {
			return err
		}
		if werr := c.backoff(ctx, attempt, retryAfterOf(err), req, statusOf(err), err); werr != nil {
			return err
		}
		failed = err
	}
}

// compare reads secret s.ID again before a write of pw: landed is true if
// its password field holds pw already; the error satisfies
// rotation.ErrSecretChanged if its password, username or hosts differ from
// s's.
func (c *Client) compare(ctx context.Context, s rotation.Secret, pw secret.Value) (landed bool, err error) {
	field := s.HostsField
	if field == "" {
		field = c.cfg.HostsField
	}
	m, err := c.getSecret(ctx, s.ID)
	if err != nil {
		return false, fmt.Errorf("read secret %d before writing: %w", s.ID, err)
	}
	cur, err := c.secretFrom(s.ID, m, field)
	if errors.Is(err, rotation.ErrBadHosts) {
		return false, fmt.Errorf("%w: its host list was changed (%w); not overwritten", rotation.ErrSecretChanged, err)
	}
	if err != nil {
		return false, err
	}
	if cur.Password.Equal(pw) {
		return true, nil
	}
	why := ""
	switch {
	case !cur.Password.Equal(s.Password):
		why = "its password was changed by someone else"
	case cur.Username != s.Username:
		why = "its username was changed"
	case !sameHosts(cur.Hosts, s.Hosts):
		why = "its host list was changed"
	default:
		return false, nil
	}
	return false, fmt.Errorf("%w: %s; not overwritten", rotation.ErrSecretChanged, why)
}

// sameHosts reports whether a and b list the same hosts, in any order.
func sameHosts(a, b []rotation.Host) bool {
	set := func(hs []rotation.Host) map[rotation.Host]bool {
		m := make(map[rotation.Host]bool, len(hs))
		for _, h := range hs {
			m[h] = true
		}
		return m
	}
	sa, sb := set(a), set(b)
	if len(sa) != len(sb) {
		return false
	}
	for h := range sa {
		if !sb[h] {
			return false
		}
	}
	return true
}

// ambiguous reports a failure after which a write may or may not have
// applied: a 5xx, a rate limit (harmless to check), or a transport error.
func ambiguous(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return transient(ae.Status)
	}
	return !errors.Is(err, ErrBadResponse)
}

// retryAfterOf returns the wait the server asked for with an error answer.
func retryAfterOf(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

func statusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func (c *Client) getField(ctx context.Context, id int, slug string) (secret.Value, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, url: c.fieldURL(id, slug), retry: true})
	if err != nil {
		return secret.Value{}, err
	}
	return decodeJSONString(resp.ctype, resp.body)
}

func (c *Client) checkOut(ctx context.Context, id int, comment string) error {
	body, _ := json.Marshal(map[string]string{"comment": comment})
	_, err := c.do(ctx, request{method: http.MethodPost, url: c.api("/secrets/" + strconv.Itoa(id) + "/check-out"), body: body, ctype: "application/json", retry: true})
	if err != nil {
		return fmt.Errorf("check out: %w", err)
	}
	return nil
}

// checkInLater checks secret id in with its own deadline, even when ctx
// has ended; a failure is logged (the check-out expires on the server).
func (c *Client) checkInLater(ctx context.Context, id int, comment string) {
	ctx, cancel := c.withTimeout(context.WithoutCancel(ctx))
	defer cancel()
	body, _ := json.Marshal(map[string]any{"forceCheckIn": false, "comment": comment})
	_, err := c.do(ctx, request{method: http.MethodPost, url: c.api("/secrets/" + strconv.Itoa(id) + "/check-in"), body: body, ctype: "application/json", retry: true})
	if err != nil {
		c.log.Warn("secret check-in failed", "secret", id, "err", err)
	}
}
