package rotation

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/rotord/rotord/rotation/secret"
)

// Character classes of locally generated passwords. The symbols are ones
// that no terminal line discipline, shell-less passwd prompt or PAM module
// treats specially: no quotes, backslash, space, '#', '@' or '$'.
const (
	lowerChars  = "abcdefghijkmnopqrstuvwxyz" // no l
	upperChars  = "ABCDEFGHJKLMNPQRSTUVWXYZ"  // no I, O
	digitChars  = "23456789"                  // no 0, 1
	symbolChars = "-_.,:;!%^*+=?~/"
)

// MinLength is the shortest password rotord generates.
const MinLength = 12

// GeneratePassword returns a random password of length n with at least one
// lower-case letter, upper-case letter, digit and symbol, drawn with
// crypto/rand. It never contains control characters or characters a
// terminal mangles.
func GeneratePassword(n int) (secret.Value, error) {
	if n < MinLength {
		return secret.Value{}, fmt.Errorf("password length %d is below the minimum of %d", n, MinLength)
	}
	classes := []string{lowerChars, upperChars, digitChars, symbolChars}
	all := strings.Join(classes, "")
	b := make([]byte, n)
	for i := range b {
		set := all
		if i < len(classes) {
			set = classes[i] // one of each class, shuffled below
		}
		c, err := randIndex(len(set))
		if err != nil {
			return secret.Value{}, err
		}
		b[i] = set[c]
	}
	// Fisher–Yates, so the guaranteed characters are not at fixed places.
	for i := len(b) - 1; i > 0; i-- {
		j, err := randIndex(i + 1)
		if err != nil {
			return secret.Value{}, err
		}
		b[i], b[j] = b[j], b[i]
	}
	return secret.New(string(b)), nil
}

func randIndex(n int) (int, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0, fmt.Errorf("read random: %w", err)
	}
	return int(v.Int64()), nil
}

// errUnsafePassword is returned by checkPassword for a password rotord will
// not type into passwd.
var errUnsafePassword = errors.New("password has characters passwd or a terminal would mangle")

// checkPassword refuses passwords that a PTY would mangle (control
// characters, non-ASCII) or that are empty.
func checkPassword(pw secret.Value) error {
	s := pw.Reveal()
	if s == "" {
		return errUnsafePassword
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return errUnsafePassword
		}
	}
	return nil
}
