package sstest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"gopkg.in/yaml.v3"
)

// Seed is the content of a seed file: the users, templates and secrets a
// Server starts with.
//
//	token_lifetime: 20m
//	refresh_tokens: true
//	users:
//	  - {name: svc-rotord, password: "..."}
//	templates:
//	  - {id: 7001, name: Long Unix, policy: {length: 32, lower: true, upper: true, digits: true}}
//	secrets:
//	  - {name: prod-web-root, folder: '\Prod\Web', username: root, password: "...", notes: "web01, web02:2222"}
type Seed struct {
	TokenLifetime time.Duration  `yaml:"token_lifetime"`
	RefreshTokens *bool          `yaml:"refresh_tokens"`
	Users         []SeedUser     `yaml:"users"`
	Templates     []SeedTemplate `yaml:"templates"`
	Secrets       []SecretSeed   `yaml:"secrets"`
}

// SeedUser is an account in a seed file.
type SeedUser struct {
	Name     string `yaml:"name"`
	Domain   string `yaml:"domain"`
	Password string `yaml:"password"`
}

// SeedTemplate is a template in a seed file; secrets name it by ID.
type SeedTemplate struct {
	ID     int            `yaml:"id"`
	Name   string         `yaml:"name"`
	Policy PasswordPolicy `yaml:"policy"`
}

// ReadSeed decodes a seed file strictly: unknown keys are errors.
func ReadSeed(r io.Reader) (Seed, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Seed{}, fmt.Errorf("read seed: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var sd Seed
	if err := dec.Decode(&sd); err != nil && !errors.Is(err, io.EOF) {
		return Seed{}, fmt.Errorf("decode seed: %w", err)
	}
	for i, u := range sd.Users {
		if u.Name == "" || u.Password == "" {
			return Seed{}, fmt.Errorf("seed: users[%d]: name and password are required", i)
		}
	}
	for i, s := range sd.Secrets {
		if s.Name == "" {
			return Seed{}, fmt.Errorf("seed: secrets[%d]: name is required", i)
		}
	}
	return sd, nil
}

// Apply adds the seed's users, templates and secrets to s. Template ids in
// the seed are mapped to the ids the server assigns.
func (s *Server) Apply(sd Seed) error {
	if sd.TokenLifetime > 0 {
		s.SetTokenLifetime(sd.TokenLifetime)
	}
	if sd.RefreshTokens != nil {
		s.SetRefreshTokens(*sd.RefreshTokens)
	}
	for _, u := range sd.Users {
		s.AddUser(u.Name, u.Domain, u.Password)
	}
	ids := map[int]int{}
	for _, t := range sd.Templates {
		ids[t.ID] = s.AddTemplate(t.Name, t.Policy)
	}
	for i, sec := range sd.Secrets {
		if sec.TemplateID != 0 {
			id, ok := ids[sec.TemplateID]
			if !ok && sec.TemplateID != DefaultTemplateID {
				return fmt.Errorf("seed: secrets[%d] %q: unknown template %d", i, sec.Name, sec.TemplateID)
			}
			if ok {
				sec.TemplateID = id
			}
		}
		s.AddSecret(sec)
	}
	return nil
}
