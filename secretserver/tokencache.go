package secretserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rotord/rotord/rotation/secret"
)

// tokenCacheMagic starts every token cache file (format version 1).
const tokenCacheMagic = "rotord-token-cache-1\n"

// TokenCache keeps OAuth2 tokens on disk between runs, sealed with
// AES-256-GCM, so that a run reuses the previous run's token until it
// expires instead of logging in again. Entries are keyed by server URL,
// user name and domain. The file has mode 0600 and is replaced atomically.
// A TokenCache is safe for concurrent use within a process; across
// processes the last writer wins, which at worst costs a login.
type TokenCache struct {
	path string
	aead cipher.AEAD
	mu   sync.Mutex
}

// NewTokenCache returns a cache kept in the file at path, sealed with key
// (rotord's store key).
func NewTokenCache(path string, key [32]byte) *TokenCache {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // unreachable: the key is 32 bytes
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // unreachable: AES has a 16-byte block
	}
	return &TokenCache{path: path, aead: aead}
}

// Clear removes every cached token. Clearing a cache that does not exist
// is no error.
func (tc *TokenCache) Clear() error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if err := os.Remove(tc.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear token cache: %w", err)
	}
	return nil
}

// cachedToken is one entry. Its fields hold token text: it is only ever
// encoded into the sealed plaintext, never logged.
type cachedToken struct {
	Access     string    `json:"a"`
	Refresh    string    `json:"r,omitempty"`
	Issued     time.Time `json:"i"`
	Expires    time.Time `json:"e"`
	RefreshExp time.Time `json:"re,omitzero"`
}

func cachedFrom(t token) cachedToken {
	return cachedToken{Access: t.access.Reveal(), Refresh: t.refresh.Reveal(), Issued: t.issued, Expires: t.expires, RefreshExp: t.refreshExp}
}

func (ct cachedToken) token() token {
	return token{access: secret.New(ct.Access), refresh: secret.New(ct.Refresh), issued: ct.Issued, expires: ct.Expires, refreshExp: ct.RefreshExp}
}

// usable reports whether the entry may still serve at now.
func (ct cachedToken) usable(now time.Time) bool {
	return now.Before(ct.Expires) || (ct.Refresh != "" && now.Before(ct.RefreshExp))
}

func cacheKey(base, user, domain string) string {
	h := sha256.Sum256([]byte(base + "\x00" + user + "\x00" + domain))
	return hex.EncodeToString(h[:])
}

// load returns the entry for key if one is there and still usable.
func (tc *TokenCache) load(key string) (cachedToken, bool, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	m, err := tc.read()
	if err != nil {
		return cachedToken{}, false, err
	}
	ct, ok := m[key]
	if !ok || !ct.usable(time.Now()) {
		return cachedToken{}, false, nil
	}
	return ct, true, nil
}

// store sets the entry for key, dropping entries no longer usable.
func (tc *TokenCache) store(key string, ct cachedToken) error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	m, err := tc.read()
	if err != nil {
		m = map[string]cachedToken{} // unreadable (other key, corrupt): start over
	}
	m[key] = ct
	return tc.write(m)
}

// remove deletes the entry for key.
func (tc *TokenCache) remove(key string) error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	m, err := tc.read()
	if err != nil {
		if err := os.Remove(tc.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("clear token cache: %w", err)
		}
		return nil
	}
	if _, ok := m[key]; !ok {
		return nil
	}
	delete(m, key)
	return tc.write(m)
}

// read opens the file; a missing file is an empty cache.
func (tc *TokenCache) read() (map[string]cachedToken, error) {
	data, err := os.ReadFile(tc.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]cachedToken{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read token cache: %w", err)
	}
	m, err := tc.open(data)
	if err != nil {
		return nil, fmt.Errorf("token cache %s: %w", tc.path, err)
	}
	return m, nil
}

// open decrypts and decodes a cache file's bytes.
func (tc *TokenCache) open(data []byte) (map[string]cachedToken, error) {
	ns := tc.aead.NonceSize()
	if len(data) < len(tokenCacheMagic)+ns || string(data[:len(tokenCacheMagic)]) != tokenCacheMagic {
		return nil, errors.New("not a token cache file")
	}
	data = data[len(tokenCacheMagic):]
	plain, err := tc.aead.Open(nil, data[:ns], data[ns:], []byte(tokenCacheMagic))
	if err != nil {
		return nil, errors.New("cannot decrypt (other key or damaged file)")
	}
	m := map[string]cachedToken{}
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, errors.New("damaged contents")
	}
	return m, nil
}

func (tc *TokenCache) write(m map[string]cachedToken) error {
	now := time.Now()
	for k, ct := range m {
		if !ct.usable(now) {
			delete(m, k)
		}
	}
	plain, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode token cache: %w", err)
	}
	nonce := make([]byte, tc.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("token cache nonce: %w", err)
	}
	out := append([]byte(tokenCacheMagic), nonce...)
	out = tc.aead.Seal(out, nonce, plain, []byte(tokenCacheMagic))

	dir := filepath.Dir(tc.path)
	f, err := os.CreateTemp(dir, ".token-cache-*")
	if err != nil {
		return fmt.Errorf("write token cache: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write token cache: %w", err)
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		return fmt.Errorf("write token cache: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write token cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write token cache: %w", err)
	}
	if err := os.Rename(tmp, tc.path); err != nil {
		return fmt.Errorf("write token cache: %w", err)
	}
	return nil
}
