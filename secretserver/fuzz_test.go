package secretserver

import (
	"errors"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
)

func FuzzParseHosts(f *testing.F) {
	for _, s := range []string{"web01", "a,b;c\nd", "[::1]:22", "10.0.0.1:65535", "x:0", "[", "::", "a..b", "h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		hosts, err := ParseHosts(in)
		if err != nil {
			if !errors.Is(err, rotation.ErrBadHosts) {
				t.Fatalf("error %v is not ErrBadHosts", err)
			}
			return
		}
		if len(hosts) == 0 {
			t.Fatal("no hosts and no error")
		}
		for _, h := range hosts {
			if h.Name == "" || h.Port < 0 || h.Port > 65535 || strings.ContainsAny(h.Name, " ,;\n[]") {
				t.Fatalf("bad host %#v from %q", h, in)
			}
			// A parsed host prints as an entry that parses back to itself.
			again, err := ParseHosts(h.String())
			if err != nil || len(again) != 1 || again[0] != h {
				t.Fatalf("%v does not round-trip: %v, %v", h, again, err)
			}
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Add(400, "application/json", []byte(`{"errorCode":"API_AccessDenied","message":"Access Denied"}`))
	f.Add(400, "application/json", []byte(`{"error":"Login failed."}`))
	f.Add(500, "text/html", []byte(`<html><title>Runtime Error</title></html>`))
	f.Add(503, "", []byte("\xff\xfe garbage"))
	f.Add(403, "application/json", []byte(`{"message":"Authentication failed or expired token."}`))
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte) {
		const pw = "S3cret-Pw!"
		e := decodeError(status, ctype, body, []string{pw})
		msg := e.Error()
		if strings.Contains(msg, pw) {
			t.Fatalf("error %q carries the secret", msg)
		}
		if len(e.Message) > maxMessage+3 || strings.ContainsAny(e.Message, "\n\r") {
			t.Fatalf("message not bounded to one line: %q", e.Message)
		}
		_ = errors.Is(e, rotation.ErrAccessDenied)
	})
}

func FuzzDecodeAnswers(f *testing.F) {
	f.Add([]byte(`{"records":[{"id":1,"name":"a","folderPath":"\\x"}],"hasNext":false}`))
	f.Add([]byte(`{"id":1,"items":[{"slug":"password","itemValue":"x","isPassword":true,"fieldId":3}]}`))
	f.Add([]byte(`{"access_token":"abcd","token_type":"bearer","expires_in":1199,"refresh_token":"r"}`))
	f.Add([]byte(`"generated"`))
	f.Add([]byte(`null`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if p, err := decodeSearchPage("application/json", body); err == nil && p.Records == nil {
			t.Fatal("search page without records accepted")
		}
		_, _ = decodeSecret("application/json", body)
		if tr, err := decodeToken("application/json", body); err == nil && (len(tr.AccessToken) < 4 || tr.ExpiresIn <= 0) {
			t.Fatalf("bad token accepted: %d-char token, expires_in %d", len(tr.AccessToken), tr.ExpiresIn)
		}
		for _, dec := range []func() error{
			func() error { _, err := decodeSecret("x", body); return err },
			func() error { _, err := decodeJSONString("x", body); return err },
			func() error { _, err := decodeToken("x", body); return err },
		} {
			if err := dec(); err != nil && !errors.Is(err, ErrBadResponse) {
				t.Fatalf("decode error %v is not ErrBadResponse", err)
			}
		}
	})
}
