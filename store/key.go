package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"

	"github.com/rotord/rotord/rotation/secret"
)

// KeySize is the size in bytes of a store key (AES-256).
const KeySize = 32

// Errors about keys and sealed values.
var (
	// ErrUnseal: a sealed password could not be opened: the key is wrong or
	// missing from the keyring, or the value was altered or moved to another
	// rotation or role. No password is ever returned with it.
	ErrUnseal = errors.New("cannot unseal password")
	// ErrNoKey: the store was opened without a keyring, so it can neither
	// seal nor unseal passwords.
	ErrNoKey = errors.New("store opened without a key")
	// ErrKeyFile: a key file is missing, unreadable, of the wrong size or
	// readable by group or others. The message says which and the remedy.
	ErrKeyFile = errors.New("bad store key file")
)

// Key is an AES-256 key that seals the passwords in the journal. Its
// printed forms show only its id, never its bytes.
type Key struct {
	id   string
	aead cipher.AEAD
}

// NewKey returns the key made of b, which must hold KeySize bytes.
func NewKey(b []byte) (Key, error) {
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("%w: key is %d bytes, want %d", ErrKeyFile, len(b), KeySize)
	}
	if bytes.Equal(b, make([]byte, KeySize)) {
		return Key{}, fmt.Errorf("%w: key is all zero bytes; create one with `rotord keygen`", ErrKeyFile)
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return Key{}, fmt.Errorf("new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return Key{}, fmt.Errorf("new gcm: %w", err)
	}
	sum := sha256.Sum256(b)
	k := Key{id: hex.EncodeToString(sum[:8]), aead: aead}
	return k, nil
}

// ID returns the key's id: the hex of the first 8 bytes of its SHA-256. It
// is stored beside every value the key seals and reveals nothing of the key.
func (k Key) ID() string { return k.id }

// IsZero reports whether k holds no key.
func (k Key) IsZero() bool { return k.aead == nil }

// String returns "key " and the key's id.
func (k Key) String() string { return "key " + k.id }

// GoString returns the same as String, so %#v does not print the key.
func (k Key) GoString() string { return k.String() }

// Format prints the same as String for every verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue makes slog print the key's id only.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// LoadKey reads a key file: KeySize raw bytes, or their standard base64
// encoding (surrounding white space allowed). It refuses, with an error
// satisfying errors.Is(err, ErrKeyFile) that names the remedy, a file that
// is missing, not a regular file, of the wrong size, or readable or writable
// by group or others.
func LoadKey(path string) (Key, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Key{}, fmt.Errorf("%w: %s does not exist; create one with `rotord keygen %s`", ErrKeyFile, path, path)
	}
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	if !fi.Mode().IsRegular() {
		return Key{}, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Key{}, fmt.Errorf("%w: %s has mode %#o, open to group or others; run `chmod 600 %s`",
			ErrKeyFile, path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer clear(data)
	raw, err := decodeKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %s: %w; create a new one with `rotord keygen`", ErrKeyFile, path, err)
	}
	defer clear(raw)
	k, err := NewKey(raw)
	if err != nil {
		return Key{}, fmt.Errorf("load key %s: %w", path, err)
	}
	return k, nil
}

// decodeKey returns the key bytes of a key file's contents. The error never
// quotes the contents.
func decodeKey(data []byte) ([]byte, error) {
	if len(data) == KeySize {
		return data, nil
	}
	text := bytes.TrimSpace(data)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		raw, err := enc.DecodeString(string(text))
		if err == nil && len(raw) == KeySize {
			return raw, nil
		}
	}
	return nil, errors.New("want " + strconv.Itoa(KeySize) + " raw bytes or their base64, got " +
		strconv.Itoa(len(data)) + " bytes of something else")
}

// WriteNewKey writes a new random key, base64-encoded, to a new file at path
// with mode 0600. It refuses to overwrite an existing file.
func WriteNewKey(path string) error {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	text := base64.StdEncoding.EncodeToString(raw) + "\n"
	clear(raw)
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("sync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("close key file: %w", err)
	}
	return nil
}

// Keyring holds the key that seals new values and older keys that can
// still unseal values sealed before a key rotation. It is immutable and
// safe for concurrent use.
type Keyring struct {
	current Key
	byID    map[string]Key
}

// NewKeyring returns a keyring that seals with current and unseals with
// current or any of old.
func NewKeyring(current Key, old ...Key) *Keyring {
	kr := &Keyring{current: current, byID: make(map[string]Key, 1+len(old))}
	for _, k := range old {
		if !k.IsZero() {
			kr.byID[k.id] = k
		}
	}
	if !current.IsZero() {
		kr.byID[current.id] = current
	}
	return kr
}

// Password roles: which of a rotation's two passwords a sealed value holds.
const (
	roleOld = "old"
	roleNew = "new"
)

// sealed is one password as stored: the ciphertext and what is needed to
// open it.
type sealed struct {
	KeyID      string
	Nonce      []byte
	Ciphertext []byte
}

// additionalData binds a ciphertext to its rotation and role, so that a
// value moved to another row fails to unseal.
func additionalData(rotationID int64, role string) []byte {
	return []byte("rotord/v1|" + strconv.FormatInt(rotationID, 10) + "|" + role)
}

// seal encrypts pw for the given rotation and role under the current key
// with a fresh random nonce.
func (kr *Keyring) seal(rotationID int64, role string, pw secret.Value) (sealed, error) {
	if kr == nil || kr.current.IsZero() {
		return sealed{}, ErrNoKey
	}
	k := kr.current
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return sealed{}, fmt.Errorf("seal: nonce: %w", err)
	}
	ct := k.aead.Seal(nil, nonce, []byte(pw.Reveal()), additionalData(rotationID, role))
	return sealed{KeyID: k.id, Nonce: nonce, Ciphertext: ct}, nil
}

// unseal decrypts a value sealed for the given rotation and role. Any
// mismatch (key, rotation, role, altered bytes) is an error wrapping
// ErrUnseal; it never returns a wrong password.
func (kr *Keyring) unseal(rotationID int64, role string, s sealed) (secret.Value, error) {
	if kr == nil || kr.current.IsZero() {
		return secret.Value{}, ErrNoKey
	}
	k, ok := kr.byID[s.KeyID]
	if !ok {
		return secret.Value{}, fmt.Errorf("unseal %s password of rotation %d: sealed with key %s, not in the keyring: %w",
			role, rotationID, s.KeyID, ErrUnseal)
	}
	if len(s.Nonce) != k.aead.NonceSize() {
		return secret.Value{}, fmt.Errorf("unseal %s password of rotation %d: bad nonce: %w", role, rotationID, ErrUnseal)
	}
	pt, err := k.aead.Open(nil, s.Nonce, s.Ciphertext, additionalData(rotationID, role))
	if err != nil {
		return secret.Value{}, fmt.Errorf("unseal %s password of rotation %d with key %s: altered, moved or wrong key: %w",
			role, rotationID, s.KeyID, ErrUnseal)
	}
	return secret.New(string(pt)), nil
}

// blobMagic starts every value sealed by Keyring.Seal.
const blobMagic = "rk1"

// Seal encrypts plaintext under the keyring's current key for use outside
// the journal (such as a token cache on disk). The result carries the key
// id and a random nonce; purpose is bound to it as additional data, so a
// value sealed for one purpose does not open for another. Values sealed
// here never open as journal passwords, nor the reverse.
func (kr *Keyring) Seal(purpose string, plaintext []byte) ([]byte, error) {
	if kr == nil || kr.current.IsZero() {
		return nil, ErrNoKey
	}
	k := kr.current
	id, err := hex.DecodeString(k.id)
	if err != nil {
		return nil, fmt.Errorf("seal: key id: %w", err)
	}
	out := make([]byte, 0, len(blobMagic)+len(id)+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	out = append(out, blobMagic...)
	out = append(out, id...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plaintext, []byte("rotord/v1|blob|"+purpose)), nil
}

// Open decrypts a value made by Seal with the same purpose, using whichever
// key of the keyring sealed it. Any mismatch is an error wrapping ErrUnseal.
func (kr *Keyring) Open(purpose string, blob []byte) ([]byte, error) {
	if kr == nil || kr.current.IsZero() {
		return nil, ErrNoKey
	}
	const idLen = 8
	if len(blob) < len(blobMagic)+idLen || string(blob[:len(blobMagic)]) != blobMagic {
		return nil, fmt.Errorf("open %s: not a sealed value: %w", purpose, ErrUnseal)
	}
	keyID := hex.EncodeToString(blob[len(blobMagic) : len(blobMagic)+idLen])
	k, ok := kr.byID[keyID]
	if !ok {
		return nil, fmt.Errorf("open %s: sealed with key %s, not in the keyring: %w", purpose, keyID, ErrUnseal)
	}
	rest := blob[len(blobMagic)+idLen:]
	if len(rest) < k.aead.NonceSize()+k.aead.Overhead() {
		return nil, fmt.Errorf("open %s: truncated: %w", purpose, ErrUnseal)
	}
	nonce, ct := rest[:k.aead.NonceSize()], rest[k.aead.NonceSize():]
	pt, err := k.aead.Open(nil, nonce, ct, []byte("rotord/v1|blob|"+purpose))
	if err != nil {
		return nil, fmt.Errorf("open %s with key %s: altered, other purpose or wrong key: %w", purpose, keyID, ErrUnseal)
	}
	return pt, nil
}
