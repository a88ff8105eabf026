// Package secret provides Value, a string that keeps itself out of logs,
// errors, JSON and fmt output. Passwords, tokens and keys travel through
// rotord as Values; only an explicit Reveal yields the text.
package secret

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is what a Value prints instead of its text.
const Redacted = "<redacted>"

// Value holds a secret string. The zero Value is empty. A Value is
// immutable and safe for concurrent use.
type Value struct {
	s string
}

// New returns a Value holding s.
func New(s string) Value { return Value{s: s} }

// Reveal returns the secret text. Call it only where the text must leave
// the process: a passwd prompt, an HTTP body, the sealing function.
func (v Value) Reveal() string { return v.s }

// IsZero reports whether v is empty.
func (v Value) IsZero() bool { return v.s == "" }

// Len returns the length of the secret in bytes.
func (v Value) Len() int { return len(v.s) }

// Equal reports whether v and o hold the same text, in constant time for
// values of equal length.
func (v Value) Equal(o Value) bool {
	return subtle.ConstantTimeCompare([]byte(v.s), []byte(o.s)) == 1
}

// String returns Redacted.
func (v Value) String() string { return Redacted }

// GoString returns Redacted, so %#v does not print the text.
func (v Value) GoString() string { return Redacted }

// Format prints Redacted for every verb.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue makes slog print Redacted.
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON encodes Redacted, never the text.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes Redacted, never the text.
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
