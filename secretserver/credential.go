package secretserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/rotord/rotord/rotation/secret"
)

// Slugs of the Unix Account (SSH) template's key fields.
const (
	SlugPrivateKey           = "private-key"            // a file field: the OpenSSH private key
	SlugPrivateKeyPassphrase = "private-key-passphrase" // the key's passphrase
)

// Credential is a logon account's credential kept in a secret: its
// username and password, and on the Unix Account (SSH) template its
// private key and passphrase. Empty values are fields the secret does not
// have or leaves empty.
type Credential struct {
	Username   string
	Password   secret.Value
	PrivateKey secret.Value
	Passphrase secret.Value
}

// Credential reads secret id as a logon account's credential. A file
// field's content is fetched from its field endpoint (its item value is
// only the file name). A secret that needs a check-out or a comment is
// checked out and in again around the read.
func (c *Client) Credential(ctx context.Context, id int) (Credential, error) {
	m, err := c.getSecret(ctx, id)
	if errors.Is(err, ErrCheckoutRequired) || errors.Is(err, ErrCommentRequired) {
		m, err = c.getRestricted(ctx, id)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("read secret %d: %w", id, err)
	}
	var cr Credential
	for _, it := range m.Items {
		switch {
		case strings.EqualFold(it.Slug, "username"):
			cr.Username = it.ItemValue
		case strings.EqualFold(it.Slug, SlugPrivateKey):
			if !it.IsFile {
				cr.PrivateKey = secret.New(it.ItemValue)
				continue
			}
			resp, err := c.do(ctx, request{method: http.MethodGet, url: c.fieldURL(id, it.Slug), retry: true})
			if err != nil {
				return Credential{}, fmt.Errorf("read secret %d field %s: %w", id, it.Slug, err)
			}
			cr.PrivateKey = secret.New(string(resp.body))
		case strings.EqualFold(it.Slug, SlugPrivateKeyPassphrase):
			cr.Passphrase = secret.New(it.ItemValue)
		case strings.EqualFold(it.Slug, "password"), it.IsPassword && cr.Password.IsZero():
			cr.Password = secret.New(it.ItemValue)
		}
	}
	if cr.Username == "" {
		return Credential{}, fmt.Errorf("read secret %d: no username field or it is empty", id)
	}
	return cr, nil
}
