package sstest_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/rotord/rotord/secretserver/sstest"
)

func httpClient(t *testing.T, srv *sstest.Server) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CACertPEM()) {
		t.Fatal("CA PEM")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func do(t *testing.T, c *http.Client, method, u, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if strings.HasPrefix(body, "grant_type") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWire checks the emulator's answers against the wire notes: status
// codes and exact bodies a client branches on.
func TestWire(t *testing.T) {
	srv := sstest.New()
	defer srv.Close()
	srv.AddUser("u", "", "P-1!")
	for _, n := range []string{"alpha", "Alpha-2", "xalpha", "beta"} {
		srv.AddSecret(sstest.SecretSeed{Name: n, Folder: `\F`, Username: "root", Password: "pw", Notes: "h"})
	}
	c := httpClient(t, srv)
	api := srv.URL + "/api/v1"

	if st, body := do(t, c, "POST", srv.URL+"/oauth2/token", "", "grant_type=password&username=u&password=wrong"); st != 400 || body != sstest.BodyLoginFailed {
		t.Errorf("bad grant = %d %s", st, body)
	}
	st, body := do(t, c, "POST", srv.URL+"/oauth2/token", "", "grant_type=password&username=U&password=P-1%21")
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(body), &tok); st != 200 || err != nil || tok.ExpiresIn != 1200 {
		t.Fatalf("grant = %d %v", st, err)
	}
	if st, body := do(t, c, "GET", api+"/secrets/1", "", ""); st != 401 || body != sstest.BodyNoAuth {
		t.Errorf("no auth = %d %s", st, body)
	}
	if st, body := do(t, c, "GET", api+"/secrets/99", tok.AccessToken, ""); st != 400 || body != sstest.BodyAccessDenied {
		t.Errorf("unknown id = %d %s", st, body)
	}
	if st, _ := do(t, c, "GET", api+"/nothing", tok.AccessToken, ""); st != 404 {
		t.Errorf("unknown route = %d", st)
	}

	// Substring, case-insensitive search with paging, with or without the paging. prefix.
	q := url.Values{"paging.filter.searchText": {"ALPHA"}, "paging.take": {"2"}, "skip": {"2"}}
	st, body = do(t, c, "GET", api+"/secrets?"+q.Encode(), tok.AccessToken, "")
	var page struct {
		Total   int
		HasNext bool
		Records []struct{ Name, FolderPath string }
	}
	if err := json.Unmarshal([]byte(body), &page); st != 200 || err != nil {
		t.Fatalf("search = %d %v", st, err)
	}
	if page.Total != 3 || page.HasNext || len(page.Records) != 1 || page.Records[0].Name != "xalpha" || page.Records[0].FolderPath != `\F` {
		t.Errorf("search page = %+v", page)
	}

	if st, body := do(t, c, "PUT", api+"/secrets/1/fields/password", tok.AccessToken, `{"Value":"N3w"}`); st != 200 || body != `"N3w"` || srv.Field(1, "password") != "N3w" {
		t.Errorf("put field = %d %s", st, body)
	}
	if st, body := do(t, c, "GET", api+"/secrets/1/fields/password", tok.AccessToken, ""); st != 200 || body != `"N3w"` {
		t.Errorf("get field = %d %s", st, body)
	}

	// The refresh token works once.
	form := "grant_type=refresh_token&refresh_token=" + url.QueryEscape(tok.RefreshToken)
	if st, _ := do(t, c, "POST", srv.URL+"/oauth2/token", "", form); st != 200 {
		t.Errorf("refresh = %d", st)
	}
	if st, body := do(t, c, "POST", srv.URL+"/oauth2/token", "", form); st != 400 || body != sstest.BodyInvalidGrant {
		t.Errorf("refresh reused = %d %s", st, body)
	}

	srv.ExpireTokens()
	if st, body := do(t, c, "GET", api+"/secrets/1", tok.AccessToken, ""); st != 403 || body != sstest.BodyExpiredToken {
		t.Errorf("expired token = %d %s", st, body)
	}

	srv.RequireCheckout(2, true)
	st, body = do(t, c, "POST", srv.URL+"/oauth2/token", "", "grant_type=password&username=u&password=P-1%21")
	if err := json.Unmarshal([]byte(body), &tok); st != 200 || err != nil {
		t.Fatalf("grant = %d %v", st, err)
	}
	if st, body := do(t, c, "GET", api+"/secrets/2", tok.AccessToken, ""); st != 400 || !strings.Contains(body, "API_CheckOutRequired") {
		t.Errorf("checkout required = %d %s", st, body)
	}
}

func TestPolicy(t *testing.T) {
	p := sstest.PasswordPolicy{Length: 4, Lower: true, Upper: true, Digits: true, Symbols: true, SymbolSet: "#"}
	for range 200 {
		pw := p.Generate()
		if len(pw) != 4 || !strings.ContainsAny(pw, "abcdefghijklmnopqrstuvwxyz") || !strings.ContainsAny(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") ||
			!strings.ContainsAny(pw, "0123456789") || !strings.Contains(pw, "#") {
			t.Fatalf("password %q breaks the policy", pw)
		}
	}
}

func TestSeed(t *testing.T) {
	const yml = `
token_lifetime: 5m
users:
  - {name: svc, password: "Pw-1!"}
  - {name: win, domain: CORP, password: "Pw-2!"}
templates:
  - {id: 1, name: Long, policy: {length: 40, digits: true}}
secrets:
  - {name: web-root, folder: '\Prod\Web', username: root, password: "old", notes: "web01, web02"}
  - {name: long-root, template: 1, username: root, password: "old", notes: "db01", checkout: true}
`
	sd, err := sstest.ReadSeed(strings.NewReader(yml))
	if err != nil {
		t.Fatal(err)
	}
	srv := sstest.New()
	defer srv.Close()
	if err := srv.Apply(sd); err != nil {
		t.Fatal(err)
	}
	if srv.Field(1, "notes") != "web01, web02" || srv.Field(2, "username") != "root" {
		t.Errorf("seeded secrets: %q %q", srv.Field(1, "notes"), srv.Field(2, "username"))
	}
	if _, err := sstest.ReadSeed(strings.NewReader("users: [{name: a, password: b, pasword: c}]")); err == nil {
		t.Error("unknown key accepted")
	}
	bad, _ := sstest.ReadSeed(strings.NewReader("secrets: [{name: a, template: 77}]"))
	if err := srv.Apply(bad); err == nil {
		t.Error("unknown template accepted")
	}
}

// TestFaultsAfterApply: a call failed after it applied took effect; a
// dropped one breaks the connection without an answer.
func TestFaultsAfterApply(t *testing.T) {
	srv := sstest.New()
	defer srv.Close()
	srv.AddUser("u", "", "P-1!")
	id := srv.AddSecret(sstest.SecretSeed{Name: "a", Username: "root", Password: "pw-0", Notes: "h"})
	c := httpClient(t, srv)
	_, body := do(t, c, "POST", srv.URL+"/oauth2/token", "", "grant_type=password&username=u&password=P-1%21")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil {
		t.Fatal(err)
	}
	field := srv.URL + "/api/v1/secrets/1/fields/password"

	srv.FailNextAfterApply(sstest.EndpointPutField, 1, 503, "")
	if st, _ := do(t, c, "PUT", field, tok.AccessToken, `{"value":"pw-1"}`); st != 503 || srv.Field(id, "password") != "pw-1" {
		t.Errorf("failed after apply: status %d, field applied %v", st, srv.Field(id, "password") == "pw-1")
	}

	srv.DropNextAfterApply(sstest.EndpointPutField, 1)
	req, err := http.NewRequest("PUT", field, strings.NewReader(`{"value":"pw-2"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Errorf("dropped call answered %d, want a broken connection", resp.StatusCode)
	}
	if got := srv.Field(id, "password"); got != "pw-2" {
		t.Errorf("dropped call not applied: field %q", got)
	}
	if n := srv.Calls(sstest.EndpointPutField); n != 2 {
		t.Errorf("PUT calls = %d, want 2", n)
	}
}
