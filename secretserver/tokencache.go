package secretserver

import (
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

// tokenCacheMagic starts every token cache file (format version 2: the
// rest is sealed by the cache's Sealer).
const tokenCacheMagic = "rotord-token-cache-2\n"

// tokenCachePurpose is what the cache's contents are sealed for: a value
// sealed for anything else does not open as a token cache.
const tokenCachePurpose = "token-cache"

// Sealer seals the token cache's contents at rest, binding them to a
// purpose; rotord's journal keyring (store.Keyring) is the one it uses.
// Open fails on a value sealed for another purpose, with another key, or
// altered.
type Sealer interface {
	Seal(purpose string, plaintext []byte) ([]byte, error)
	Open(purpose string, sealed []byte) ([]byte, error)
}

// TokenCache keeps OAuth2 tokens on disk between runs, sealed by a Sealer,
// so that a run reuses the previous run's token until it expires instead
// of logging in again. Entries are keyed by server URL, user name and
// domain. The file has mode 0600 and is replaced atomically. A TokenCache
// is safe for concurrent use within a process; across processes the last
// writer wins, which at worst costs a login.
type TokenCache struct {
	path   string
	sealer Sealer
	mu     sync.Mutex
}

// NewTokenCache returns a cache kept in the file at path, sealed by s.
func NewTokenCache(path string, s Sealer) *TokenCache {
	return &TokenCache{path: path, sealer: s}
}

// ClearTokenCache removes the token cache file at path, and with it every
// cached token: the next run authenticates afresh. Clearing a cache that
// does not exist is no error; no key is needed.
func ClearTokenCache(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
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
	if len(data) < len(tokenCacheMagic) || string(data[:len(tokenCacheMagic)]) != tokenCacheMagic {
		return nil, errors.New("not a token cache file")
	}
	plain, err := tc.sealer.Open(tokenCachePurpose, data[len(tokenCacheMagic):])
	if err != nil {
		return nil, errors.New("cannot decrypt (other key or damaged file)")
	}
	defer clear(plain)
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
	sealed, err := tc.sealer.Seal(tokenCachePurpose, plain)
	clear(plain)
	if err != nil {
		return fmt.Errorf("seal token cache: %w", err)
	}
	out := append([]byte(tokenCacheMagic), sealed...)

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
