package secretserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rotord/rotord/rotation"
)

// Errors returned by the client, wrapped or through (*APIError).Is, so that
// callers can branch on them with errors.Is. Errors from the rotation
// package are also matched: rotation.ErrAccessDenied (API_AccessDenied or a
// plain 403), rotation.ErrAuthFailed (rotord's own credentials refused),
// rotation.ErrSecretNotFound and rotation.ErrAmbiguousName (Resolve) and
// rotation.ErrBadHosts (Read).
var (
	// ErrCheckoutRequired: the secret must be checked out before this call.
	ErrCheckoutRequired = errors.New("secret requires check-out")
	// ErrCommentRequired: the secret needs a comment before access.
	ErrCommentRequired = errors.New("secret requires a comment")
	// ErrCheckedOutByOther: another user has the secret checked out.
	ErrCheckedOutByOther = errors.New("secret checked out by another user")
	// ErrServer: Secret Server failed (5xx), also after retries.
	ErrServer = errors.New("secret server error")
	// ErrNotFound: no such resource (HTTP 404). Secret Server reports an
	// unknown secret id as access denied, not with this error.
	ErrNotFound = errors.New("not found")
	// ErrBadResponse: a response could not be understood (not JSON, wrong
	// shape, HTML error page).
	ErrBadResponse = errors.New("unexpected response from secret server")
	// ErrVerifyFailed: after a write, the field read back differs from the
	// value written.
	ErrVerifyFailed = errors.New("password read back differs from the one written")
)

// APIError is an error answer from Secret Server. It carries the server's
// errorCode and message, never a password or token: values the request
// carried are removed from the message.
type APIError struct {
	Status  int    // HTTP status
	Code    string // errorCode ("API_AccessDenied"), or the token endpoint's "error"
	Message string // the server's message, bounded and scrubbed
	Auth    bool   // the answer refused rotord's own credentials

	// RetryAfter is the wait the server asked for in a Retry-After header
	// (seconds or an HTTP date), 0 if it named none.
	RetryAfter time.Duration

	// tokenExpired: the answer is Secret Server's "expired, revoked or
	// unknown token" (a 403 that carries no errorCode, only this message),
	// recognised once where the body is decoded.
	tokenExpired bool
}

// Error returns "secret server: HTTP status code: message".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("secret server: ")
	fmt.Fprintf(&b, "HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is maps the answer onto the package's and rotation's sentinel errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case rotation.ErrAuthFailed:
		return e.Auth
	case rotation.ErrAccessDenied:
		return !e.Auth && (e.Code == "API_AccessDenied" || e.Status == 403)
	case ErrCheckoutRequired:
		return e.Code == "API_CheckOutRequired" || e.Code == "API_CheckoutRequired"
	case ErrCommentRequired:
		return e.Code == "API_CommentRequired"
	case ErrCheckedOutByOther:
		return e.Code == "API_SecretCheckedOutByAnotherUser"
	case rotation.ErrVaultUnavailable:
		return e.Status >= 500 || e.Status == 429
	case ErrServer:
		return e.Status >= 500
	case ErrNotFound:
		return e.Status == 404
	case ErrBadResponse:
		return e.Status >= 200 && e.Status < 300
	}
	return false
}

// tokenExpiredMessage is the whole message of Secret Server's answer to
// an expired, revoked or unknown token (with or without a final period):
// the protocol's only sign of it on a 403.
const tokenExpiredMessage = "Authentication failed or expired token"

// maxMessage bounds the length of a server message kept in an error.
const maxMessage = 300

var htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

// decodeError builds an APIError from an error answer. It never fails:
// JSON error bodies, token-endpoint bodies, HTML pages and garbage all give
// a readable error. secrets are values the request carried; they are
// removed from the message.
func decodeError(status int, contentType string, body []byte, secrets []string) *APIError {
	e := &APIError{Status: status}
	var m struct {
		ErrorCode        string `json:"errorCode"`
		Message          string `json:"message"`
		MessageDetail    string `json:"messageDetail"`
		Error            any    `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &m) == nil {
		e.Code = m.ErrorCode
		e.Message = m.Message
		e.tokenExpired = strings.TrimSuffix(strings.TrimSpace(m.Message), ".") == tokenExpiredMessage
		if m.MessageDetail != "" && m.MessageDetail != m.Message {
			e.Message = joinMsg(e.Message, m.MessageDetail)
		}
		if s, ok := m.Error.(string); ok {
			if e.Code == "" {
				e.Code = s
			} else {
				e.Message = joinMsg(e.Message, s)
			}
		}
		e.Message = joinMsg(e.Message, m.ErrorDescription)
	} else if mt, _, _ := mime.ParseMediaType(contentType); mt == "text/html" || bytes.HasPrefix(trimmed, []byte("<")) {
		if t := htmlTitle.FindSubmatch(body); t != nil {
			e.Message = "HTML page: " + strings.Join(strings.Fields(string(t[1])), " ")
		} else {
			e.Message = "HTML page"
		}
	} else if len(trimmed) > 0 {
		e.Message = "unreadable error body (" + describeType(contentType) + ")"
	}
	e.Message = scrub(e.Message, secrets)
	e.Code = scrub(e.Code, secrets)
	if len(e.Code) > 64 {
		e.Code = e.Code[:64]
	}
	return e
}

func joinMsg(a, b string) string {
	switch {
	case b == "":
		return a
	case a == "":
		return b
	}
	return a + " (" + b + ")"
}

func describeType(ct string) string {
	if ct == "" {
		return "no content type"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "bad content type"
	}
	return mt
}

// scrub removes every secret from s, makes it valid single-line UTF-8 and
// bounds its length.
func scrub(s string, secrets []string) string {
	for _, v := range secrets {
		if len(v) >= 1 {
			s = strings.ReplaceAll(s, v, "<redacted>")
		}
	}
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	// A secret may straddle the cut; scrub once more on the result.
	for _, v := range secrets {
		if len(v) >= 1 {
			s = strings.ReplaceAll(s, v, "<redacted>")
		}
	}
	return s
}

// badResponse reports a 2xx answer whose body could not be understood.
func badResponse(what, contentType string, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %s (%s): %s", ErrBadResponse, what, describeType(contentType), jsonErrText(err))
	}
	return fmt.Errorf("%w: %s (%s)", ErrBadResponse, what, describeType(contentType))
}

// jsonErrText describes a JSON decoding error without quoting the input
// (a syntax error never does; a type error names only the Go types).
func jsonErrText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("JSON value of the wrong type for %q", te.Field)
	}
	return "invalid JSON"
}
