package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/mail"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/sshexec"
	"github.com/rotord/rotord/store"
)

// defaultConfigPath is read when neither --config nor $ROTORD_CONFIG is set.
const defaultConfigPath = "/etc/rotord/rotord.yaml"

// credentialsFallback stands in for $CREDENTIALS_DIRECTORY when rotord runs
// outside its systemd unit: it is the directory the unit loads its
// credentials from (see deploy/rotord.service).
const credentialsFallback = "/etc/rotord/credentials"

// Config is rotord's configuration file, after defaults and validation.
type Config struct {
	SecretServer SecretServerConfig `yaml:"secret_server"`
	Store        StoreConfig        `yaml:"store"`
	SSH          SSHConfig          `yaml:"ssh"`
	Schedule     string             `yaml:"schedule"`
	Jitter       Duration           `yaml:"jitter"`
	Rotation     RotationConfig     `yaml:"rotation"`
	Password     PasswordConfig     `yaml:"password"`
	HostsField   string             `yaml:"hosts_field"`
	Secrets      []SecretConfig     `yaml:"secrets"`
	Metrics      MetricsConfig      `yaml:"metrics"`
	Notify       NotifyConfig       `yaml:"notify"`
	Heartbeat    HeartbeatConfig    `yaml:"heartbeat"`
	// Logon is the default logon account of secrets whose escalation is
	// su or sudo and that name none of their own.
	Logon *LogonConfig `yaml:"logon"`

	path  string
	lines map[string]int // field path → line, for validation errors
}

// SecretServerConfig says how to reach and authenticate to Secret Server.
type SecretServerConfig struct {
	URL          string   `yaml:"url"`
	Auth         string   `yaml:"auth"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
	Domain       string   `yaml:"domain"`
	CAFile       string   `yaml:"ca_file"`
	Timeout      Duration `yaml:"timeout"`
	TokenCache   string   `yaml:"token_cache"`

	password secret.Value
}

// Password returns the Secret Server password read at load time.
func (c SecretServerConfig) Password() secret.Value { return c.password }

// StoreConfig locates the journal database and its sealing key.
//
// With driver sqlite the journal is the file at path. With driver
// postgres it is the PostgreSQL database whose connection string (it may
// hold a password) is read from dsn_file or the environment variable
// dsn_env, never from the configuration text; ca_file asks for TLS with
// the server's certificate checked against that CA and its name against
// the host (sslmode=verify-full).
type StoreConfig struct {
	Driver  string `yaml:"driver"`
	Path    string `yaml:"path"`
	KeyFile string `yaml:"key_file"`
	DSNFile string `yaml:"dsn_file"`
	DSNEnv  string `yaml:"dsn_env"`
	CAFile  string `yaml:"ca_file"`
	// DSN is refused: a connection string may hold a password.
	DSN string `yaml:"dsn"`

	dsn secret.Value
}

// Postgres reports whether the journal is in PostgreSQL.
func (c StoreConfig) Postgres() bool { return c.Driver == "postgres" }

// ConnString returns the PostgreSQL connection string read at load time,
// with the TLS settings of ca_file added.
func (c StoreConfig) ConnString() string { return c.dsn.Reveal() }

// Describe names the journal for messages: its file, or the PostgreSQL
// database without the connection string's password.
func (c StoreConfig) Describe() string {
	if !c.Postgres() {
		return c.Path
	}
	d, err := store.DescribePostgres(c.dsn.Reveal())
	if err != nil {
		return "the postgres database"
	}
	return d
}

// SSHConfig holds the settings of SSH connections to hosts.
type SSHConfig struct {
	KnownHosts     string           `yaml:"known_hosts"`
	Port           int              `yaml:"port"`
	ConnectTimeout Duration         `yaml:"connect_timeout"`
	StepTimeout    Duration         `yaml:"step_timeout"`
	Concurrency    int              `yaml:"concurrency"`
	Reconcile      *ReconcileConfig `yaml:"reconcile"`
}

// ReconcileConfig is an optional privileged account used to reset hosts a
// rotation could not revert.
//
// It logs in with its password (password_file or password_env), or with
// an SSH key (key_file, with passphrase_file for an encrypted key) and
// still its password, which proves the account through su and answers
// sudo; or its credential is another Secret Server secret (secret: its
// username, password and, on the Unix Account (SSH) template, its private
// key and passphrase), read each time a host is reset.
type ReconcileConfig struct {
	User           string `yaml:"user"`
	PasswordFile   string `yaml:"password_file"`
	PasswordEnv    string `yaml:"password_env"`
	KeyFile        string `yaml:"key_file"`
	PassphraseFile string `yaml:"passphrase_file"`
	Secret         string `yaml:"secret"`

	password secret.Value
	key      *sshexec.LogonAuth // from key_file; nil: a password logon
}

// RotationConfig tunes rotations.
type RotationConfig struct {
	MaxConcurrent int      `yaml:"max_concurrent"`
	Deadline      Duration `yaml:"deadline"`
	LeaseTTL      Duration `yaml:"lease_ttl"`
	PolicyRetries int      `yaml:"policy_retries"`
	HostRetries   int      `yaml:"host_retries"`
}

// PasswordConfig describes new passwords.
type PasswordConfig struct {
	Length    int    `yaml:"length"`
	Generator string `yaml:"generator"`
}

// SecretConfig is one secret to rotate, with its overrides.
type SecretConfig struct {
	Name       string `yaml:"name"`
	Schedule   string `yaml:"schedule"`
	Length     int    `yaml:"length"`
	Generator  string `yaml:"generator"`
	HostsField string `yaml:"hosts_field"`
	Port       int    `yaml:"port"`
	// Heartbeat overrides heartbeat.schedule for this secret ("off": none).
	Heartbeat string `yaml:"heartbeat"`
	// Escalation is how the logon account reaches the rotated account:
	// none (the account logs in itself), su or sudo.
	Escalation string `yaml:"escalation"`
	// Logon overrides the top-level logon for this secret.
	Logon *LogonConfig `yaml:"logon"`
}

// LogonConfig is the account that opens the SSH session when it is not
// the rotated account, and its credential: exactly one of password_file,
// key_file (with passphrase_file for an encrypted key) or secret (another
// Secret Server secret: its username and password, or its private key and
// passphrase). sudo_password_file (or the secret's password) answers
// sudo's prompt for an account logging in by key.
type LogonConfig struct {
	User             string `yaml:"user"`
	PasswordFile     string `yaml:"password_file"`
	KeyFile          string `yaml:"key_file"`
	PassphraseFile   string `yaml:"passphrase_file"`
	Secret           string `yaml:"secret"`
	SudoPasswordFile string `yaml:"sudo_password_file"`

	auth    sshexec.LogonAuth // from the files; zero for secret
	hasAuth bool
	sudoPw  secret.Value // from sudo_password_file
}

// HeartbeatConfig schedules heartbeats in rotord run: a login to every
// host of a secret with the password Secret Server holds.
type HeartbeatConfig struct {
	// Schedule is a cron spec like schedule's; "" or "off" (the default)
	// runs no scheduled heartbeat.
	Schedule string `yaml:"schedule"`
}

// MetricsConfig says where Prometheus metrics are served.
type MetricsConfig struct {
	Listen string `yaml:"listen"`
}

// NotifyConfig says where alerts go.
type NotifyConfig struct {
	WebhookURL string     `yaml:"webhook_url"`
	SMTP       SMTPConfig `yaml:"smtp"`
}

// SMTPConfig is the mail relay alerts are sent through. An empty section
// sends no mail.
type SMTPConfig struct {
	Host         string   `yaml:"host"`
	Port         int      `yaml:"port"`     // default 465 for tls implicit, 587 for starttls
	TLS          string   `yaml:"tls"`      // implicit | starttls (default); never plain text
	CAFile       string   `yaml:"ca_file"`  // optional extra CA bundle (PEM)
	Username     string   `yaml:"username"` // optional: AUTH PLAIN with the password below
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	DedupeWindow Duration `yaml:"dedupe_window"` // one mail per secret and state within it; default 1h

	password secret.Value
	roots    *x509.CertPool // system CAs plus CAFile; nil for the system's
}

// Enabled reports whether the section is set: mail alerts are wanted.
func (c SMTPConfig) Enabled() bool {
	return c.Host != "" || c.Port != 0 || c.TLS != "" || c.CAFile != "" || c.Username != "" ||
		c.PasswordFile != "" || c.PasswordEnv != "" || c.From != "" || len(c.To) > 0 || c.DedupeWindow != 0
}

// Password returns the AUTH password read at load; empty without AUTH.
func (c SMTPConfig) Password() secret.Value { return c.password }

// Duration is a time.Duration written as "30s", "10m" or "1h30m".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" && n.Tag != "!!int" {
		return fmt.Errorf("want a duration such as 30s or 10m, got %s", nodeDesc(n))
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("want a duration such as 30s or 10m, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// ConfigError is a problem in the configuration file, located by line.
type ConfigError struct {
	File  string
	Line  int // 0 when the problem has no line (a missing file)
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// defaults returns a Config holding every default: the engine's and the
// adapters' own for what is handed to them (rotation's, Secret Server's,
// SSH's), rotord's for the rest.
func defaults() Config {
	ec, vault, ssh := rotation.DefaultConfig(), secretserver.DefaultConfig(), sshexec.DefaultConfig()
	return Config{
		SecretServer: SecretServerConfig{
			Auth:       vault.Auth,
			Timeout:    Duration(vault.Timeout),
			TokenCache: "/var/lib/rotord/token.cache",
		},
		Store: StoreConfig{
			Driver:  "sqlite",
			Path:    "/var/lib/rotord/rotord.db",
			KeyFile: "${CREDENTIALS_DIRECTORY}/store-key",
		},
		SSH: SSHConfig{
			KnownHosts:     "/etc/rotord/known_hosts",
			Port:           ec.Port,
			ConnectTimeout: Duration(ssh.ConnectTimeout),
			StepTimeout:    Duration(ssh.StepTimeout),
			Concurrency:    ec.Concurrency,
		},
		Schedule: "@weekly",
		Jitter:   Duration(10 * time.Minute),
		Rotation: RotationConfig{
			MaxConcurrent: 4,
			Deadline:      Duration(ec.SecretDeadline),
			LeaseTTL:      Duration(ec.LeaseTTL),
			PolicyRetries: ec.PolicyRetries,
			HostRetries:   ec.HostRetries,
		},
		Password:   PasswordConfig{Length: ec.Length, Generator: ec.Generator},
		HostsField: vault.HostsField,
		Metrics:    MetricsConfig{Listen: "127.0.0.1:9464"},
	}
}

// configPath returns the path given by flag, else $ROTORD_CONFIG, else the default.
func configPath(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv("ROTORD_CONFIG"); p != "" {
		return p
	}
	return defaultConfigPath
}

// LoadConfig reads, decodes strictly and validates the file at path, and
// reads the credentials it names. Every problem found is reported, each as
// a *ConfigError naming file, line and field (joined with errors.Join).
func LoadConfig(path string, getenv func(string) string) (*Config, error) {
	return loadConfig(path, getenv, true)
}

// loadConfig is LoadConfig; withCredentials false checks that each
// password source is given but reads none of them, for commands that do
// not talk to Secret Server or log into hosts.
func loadConfig(path string, getenv func(string) string, withCredentials bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	return parseConfig(path, data, getenv, withCredentials)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func parseConfig(path string, data []byte, getenv func(string) string, withCredentials bool) (*Config, error) {
	c := defaults()
	c.path, c.lines = path, map[string]int{}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, &ConfigError{File: path, Msg: "the file is empty"}
	} else if err != nil {
		return nil, yamlSyntaxError(path, err)
	}
	d := &decoder{file: path, lines: c.lines}
	d.decode(doc.Content[0], reflect.ValueOf(&c).Elem(), "")
	// Validate even after decoding errors, to report every problem at once;
	// a field that did not decode keeps its default and is not reported twice.
	errs := d.errs
	for _, ve := range c.validate(getenv, withCredentials) {
		if !overlaps(ve.Field, d.errs) {
			errs = append(errs, ve)
		}
	}
	if len(errs) == 0 {
		return &c, nil
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	var out []error
	seen := map[string]bool{}
	for _, e := range errs {
		if k := strconv.Itoa(e.Line) + " " + e.Field; !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return nil, errors.Join(out...)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlSyntaxError(path string, err error) error {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ConfigError{File: path, Line: line, Msg: "YAML syntax: " + m[2]}
	}
	return &ConfigError{File: path, Msg: "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// overlaps reports whether field is, contains or lies in a field with a
// decoding error: its validation would only repeat that error.
func overlaps(field string, errs []*ConfigError) bool {
	for _, e := range errs {
		if e.Field == field || strings.HasPrefix(e.Field, field+".") || strings.HasPrefix(field, e.Field+".") ||
			strings.HasPrefix(e.Field, field+"[") || strings.HasPrefix(field, e.Field+"[") {
			return true
		}
	}
	return false
}

// decoder maps a YAML node tree onto a struct, strictly: unknown and
// repeated keys and values of the wrong type are errors with their line.
type decoder struct {
	file  string
	lines map[string]int
	errs  []*ConfigError
}

func (d *decoder) errf(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &ConfigError{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if _, ok := d.lines[path]; !ok && path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with no value keeps the default
	}
	if v.Addr().Type().Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.errf(n.Line, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.errf(n.Line, path, "want a mapping of keys, got %s", nodeDesc(n))
			return
		}
		fields := yamlFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kp := joinPath(path, k.Value)
			idx, ok := fields[k.Value]
			switch {
			case !ok:
				d.errf(k.Line, kp, "unknown field (known here: %s)", strings.Join(sortedKeys(fields), ", "))
			case seen[k.Value]:
				d.errf(k.Line, kp, "given twice")
			default:
				seen[k.Value] = true
				d.lines[kp] = k.Line // errors point at the key
				d.decode(val, v.Field(idx), kp)
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errf(n.Line, path, "want a list, got %s", nodeDesc(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String, reflect.Int, reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			d.errf(n.Line, path, "want %s, got %s", kindDesc(v.Kind()), nodeDesc(n))
			return
		}
		if v.Kind() == reflect.String && n.Tag != "!!str" {
			// 22 or true where text is wanted: accept the literal text, as
			// YAML users expect of names, but not a mapping or list.
			v.SetString(n.Value)
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.errf(n.Line, path, "want %s, got %q", kindDesc(v.Kind()), n.Value)
		}
	default:
		d.errf(n.Line, path, "unsupported field type %s", v.Type())
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag != "" && tag != "-" && f.IsExported() {
			m[tag] = i
		}
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func kindDesc(k reflect.Kind) string {
	switch k {
	case reflect.Int:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	default:
		return "text"
	}
}

func nodeDesc(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// line returns the line of a field path, or of its closest parent known.
func (c *Config) line(path string) int {
	for p := path; p != ""; {
		if l, ok := c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

type validator struct {
	c    *Config
	errs []*ConfigError

	skipCredentials bool // check that password sources are given; read none
}

func (v *validator) errf(field, format string, args ...any) {
	v.errs = append(v.errs, &ConfigError{File: v.c.path, Line: v.c.line(field), Field: field, Msg: fmt.Sprintf(format, args...)})
}

// validate checks values and, when withCredentials, reads the credentials
// the file names.
func (c *Config) validate(getenv func(string) string, withCredentials bool) []*ConfigError {
	v := &validator{c: c, skipCredentials: !withCredentials}
	ss := &c.SecretServer
	switch u, err := url.Parse(ss.URL); {
	case ss.URL == "":
		v.errf("secret_server.url", "required: the Secret Server base URL, such as https://secrets.example.com/SecretServer")
	case err != nil || u.Host == "":
		v.errf("secret_server.url", "not a URL: %q", ss.URL)
	case u.Scheme != "https":
		v.errf("secret_server.url", "must be https (credentials and passwords cross it); give ca_file for a private CA")
	case u.User != nil || u.RawQuery != "":
		v.errf("secret_server.url", "must hold no credentials or query")
	default:
		ss.URL = strings.TrimRight(ss.URL, "/")
	}
	if ss.Auth != secretserver.AuthOAuth2 && ss.Auth != secretserver.AuthNTLM {
		v.errf("secret_server.auth", "must be oauth2 or ntlm, got %q", ss.Auth)
	}
	if ss.Username == "" {
		v.errf("secret_server.username", "required")
	}
	if ss.Timeout <= 0 {
		v.errf("secret_server.timeout", "must be positive")
	}
	ss.password = v.credential("secret_server", ss.PasswordFile, ss.PasswordEnv, true, getenv)
	ss.PasswordFile = expandCredentials(ss.PasswordFile, getenv)
	if ss.CAFile != "" {
		if _, err := os.Stat(ss.CAFile); err != nil {
			v.errf("secret_server.ca_file", "cannot read: %v", unwrapPath(err))
		}
	}
	ss.TokenCache = expandCredentials(ss.TokenCache, getenv)

	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			v.errf("store.path", "required")
		}
		for _, f := range []struct{ field, val string }{
			{"dsn_file", c.Store.DSNFile}, {"dsn_env", c.Store.DSNEnv}, {"ca_file", c.Store.CAFile},
		} {
			if f.val != "" {
				v.errf("store."+f.field, "only for driver postgres")
			}
		}
	case "postgres", "postgresql":
		c.Store.Driver = "postgres"
		validPostgres(v, &c.Store, getenv)
	default:
		v.errf("store.driver", "must be sqlite or postgres, got %q", c.Store.Driver)
	}
	if c.Store.DSN != "" {
		v.errf("store.dsn", "a connection string may hold a password: put it in a file (dsn_file) or an environment variable (dsn_env), never in the configuration")
	}
	if c.Store.KeyFile == "" {
		v.errf("store.key_file", "required: the file holding the journal's sealing key (rotord keygen writes one)")
	}
	c.Store.KeyFile = expandCredentials(c.Store.KeyFile, getenv)

	if c.SSH.KnownHosts == "" {
		v.errf("ssh.known_hosts", "required: host keys are always checked")
	}
	v.port("ssh.port", c.SSH.Port, false)
	if c.SSH.ConnectTimeout <= 0 {
		v.errf("ssh.connect_timeout", "must be positive")
	}
	if c.SSH.StepTimeout <= 0 {
		v.errf("ssh.step_timeout", "must be positive")
	}
	if c.SSH.Concurrency < 1 {
		v.errf("ssh.concurrency", "must be at least 1")
	}
	if c.Logon != nil {
		v.logon("logon", c.Logon, getenv)
	}
	if r := c.SSH.Reconcile; r != nil {
		v.reconcile(r, getenv)
	}

	if _, err := rotation.ParseSchedule(c.Schedule); err != nil {
		v.errf("schedule", "%v", scheduleProblem(err))
	}
	if c.Jitter < 0 {
		v.errf("jitter", "must not be negative")
	}
	if c.Rotation.MaxConcurrent < 1 {
		v.errf("rotation.max_concurrent", "must be at least 1")
	}
	if c.Rotation.Deadline <= 0 {
		v.errf("rotation.deadline", "must be positive")
	}
	if c.Rotation.LeaseTTL.D() < 10*time.Second {
		v.errf("rotation.lease_ttl", "must be at least 10s")
	}
	if c.Rotation.PolicyRetries < 0 {
		v.errf("rotation.policy_retries", "must not be negative")
	}
	if c.Rotation.HostRetries < 1 {
		v.errf("rotation.host_retries", "must be at least 1")
	}
	validHeartbeat(v, "heartbeat.schedule", c.Heartbeat.Schedule)
	v.length("password.length", c.Password.Length, false)
	v.generator("password.generator", c.Password.Generator, false)
	if c.HostsField == "" {
		v.errf("hosts_field", "must not be empty")
	}

	if len(c.Secrets) == 0 {
		v.errf("secrets", "list at least one secret to rotate")
	}
	names := map[string]int{}
	for i, s := range c.Secrets {
		p := fmt.Sprintf("secrets[%d]", i)
		if strings.TrimSpace(s.Name) == "" {
			v.errf(p+".name", "required")
			continue
		}
		key := strings.ToLower(s.Name)
		if j, dup := names[key]; dup {
			v.errf(p+".name", "%q is already listed at line %d (names are compared without regard to case)", s.Name, c.line(fmt.Sprintf("secrets[%d].name", j)))
		}
		names[key] = i
		if s.Schedule != "" {
			if _, err := rotation.ParseSchedule(s.Schedule); err != nil {
				v.errf(p+".schedule", "%v", scheduleProblem(err))
			}
		}
		validHeartbeat(v, p+".heartbeat", s.Heartbeat)
		v.escalation(p, &c.Secrets[i], c.Logon, getenv)
		v.length(p+".length", s.Length, true)
		v.generator(p+".generator", s.Generator, true)
		v.port(p+".port", s.Port, true)
	}

	if c.Metrics.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Metrics.Listen); err != nil || port == "" {
			v.errf("metrics.listen", "want host:port such as 127.0.0.1:9464 (or \"\" to disable), got %q", c.Metrics.Listen)
		}
	}
	if w := c.Notify.WebhookURL; w != "" {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.errf("notify.webhook_url", "not an http(s) URL: %q", w)
		}
	}
	if c.Notify.SMTP.Enabled() {
		v.smtp(&c.Notify.SMTP, getenv)
	}
	return v.errs
}

// escalation checks secret s's escalation and the logon account it needs
// (its own, else the top-level default, already checked). p is the field
// path of the secret.
func (v *validator) escalation(p string, s *SecretConfig, def *LogonConfig, getenv func(string) string) {
	esc, err := sshexec.ParseEscalation(s.Escalation)
	if err != nil {
		v.errf(p+".escalation", "%v", err)
		return
	}
	if s.Logon != nil {
		v.logon(p+".logon", s.Logon, getenv)
		if s.Logon.Secret != "" && strings.EqualFold(s.Logon.Secret, s.Name) {
			v.errf(p+".logon.secret", "the logon account is the rotated secret itself: its password is never changed through itself; name another secret")
		}
	}
	switch {
	case esc == sshexec.EscalateNone && s.Logon != nil:
		v.errf(p+".logon", "a logon account needs escalation su or sudo (with none the rotated account logs in itself)")
	case esc != sshexec.EscalateNone && s.Logon == nil && def == nil:
		v.errf(p+".escalation", "%s needs a logon account: set logon here or at the top level", esc)
	case esc != sshexec.EscalateNone && s.Logon == nil && def.Secret != "" && strings.EqualFold(def.Secret, s.Name):
		v.errf(p+".escalation", "the top-level logon account is this secret itself: its password is never changed through itself; give this secret a logon of its own")
	}
}

// logon checks a logon account and, when credentials are read, loads its
// password or key. field is its path in the file.
func (v *validator) logon(field string, l *LogonConfig, getenv func(string) string) {
	n := 0
	for _, f := range []string{l.PasswordFile, l.KeyFile, l.Secret} {
		if f != "" {
			n++
		}
	}
	switch {
	case l.PasswordFile != "" && l.KeyFile != "":
		v.errf(field+".key_file", "give password_file or key_file, not both")
		return
	case n > 1:
		v.errf(field+".secret", "give secret or a file (password_file, key_file), not both")
		return
	case n == 0:
		v.errf(field, "password_file, key_file or secret is required")
		return
	}
	if l.User == "" && l.Secret == "" {
		v.errf(field+".user", "required (with secret, the secret's username is used)")
	}
	if l.User != "" && !validUserName(l.User) {
		v.errf(field+".user", "not a user name: %q", l.User)
	}
	if l.PassphraseFile != "" && l.KeyFile == "" {
		v.errf(field+".passphrase_file", "only with key_file (a secret's passphrase is its private-key-passphrase field)")
	}
	if l.SudoPasswordFile != "" && l.KeyFile == "" && l.Secret == "" {
		v.errf(field+".sudo_password_file", "only with key_file or secret (a password logon answers sudo with its password)")
	}
	l.PasswordFile = expandCredentials(l.PasswordFile, getenv)
	l.KeyFile = expandCredentials(l.KeyFile, getenv)
	l.PassphraseFile = expandCredentials(l.PassphraseFile, getenv)
	l.SudoPasswordFile = expandCredentials(l.SudoPasswordFile, getenv)
	if l.KeyFile != "" {
		// The mode is checked even when no credential is read.
		if fi, err := os.Stat(l.KeyFile); err != nil {
			v.errf(field+".key_file", "cannot read %s: %v", l.KeyFile, unwrapPath(err))
			return
		} else if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			v.errf(field+".key_file", "%s has mode %04o: group or others may read it; run chmod 600 %s", l.KeyFile, perm, l.KeyFile)
			return
		}
	}
	if v.skipCredentials {
		return
	}
	var sudoPw secret.Value
	if l.SudoPasswordFile != "" {
		sudoPw = v.readCredentialFile(field+".sudo_password_file", l.SudoPasswordFile)
	}
	switch {
	case l.PasswordFile != "":
		pw := v.readCredentialFile(field+".password_file", l.PasswordFile)
		if !pw.IsZero() {
			l.auth, l.hasAuth = sshexec.PasswordLogon(pw), true
		}
	case l.KeyFile != "":
		var pass secret.Value
		if l.PassphraseFile != "" {
			if pass = v.readCredentialFile(field+".passphrase_file", l.PassphraseFile); pass.IsZero() {
				return
			}
		}
		auth, err := sshexec.LoadKeyFile(l.KeyFile, pass)
		if err != nil {
			v.errf(field+".key_file", "%v", err)
			return
		}
		if !sudoPw.IsZero() {
			auth = auth.WithPassword(sudoPw)
		}
		l.auth, l.hasAuth = auth, true
	}
	l.sudoPw = sudoPw
}

// secretConfig returns the configured secret named name (compared without
// regard to case).
func (c *Config) secretConfig(name string) (SecretConfig, bool) {
	for _, s := range c.Secrets {
		if strings.EqualFold(s.Name, name) {
			return s, true
		}
	}
	return SecretConfig{}, false
}

// logonOf returns secret name's escalation and the logon account it uses
// (its own, else the top-level one; nil with escalation none).
func (c *Config) logonOf(name string) (sshexec.Escalation, *LogonConfig) {
	s, ok := c.secretConfig(name)
	if !ok {
		return sshexec.EscalateNone, nil
	}
	esc, err := sshexec.ParseEscalation(s.Escalation)
	if err != nil || esc == sshexec.EscalateNone {
		return sshexec.EscalateNone, nil
	}
	if s.Logon != nil {
		return esc, s.Logon
	}
	return esc, c.Logon
}

// reconcile checks ssh.reconcile and reads its credential.
func (v *validator) reconcile(r *ReconcileConfig, getenv func(string) string) {
	if r.Secret != "" {
		if r.PasswordFile != "" || r.PasswordEnv != "" || r.KeyFile != "" || r.PassphraseFile != "" {
			v.errf("ssh.reconcile.secret", "give secret or files (password_file, password_env, key_file), not both")
		}
		return
	}
	if r.User == "" {
		v.errf("ssh.reconcile.user", "required when ssh.reconcile is set")
	}
	r.password = v.credential("ssh.reconcile", r.PasswordFile, r.PasswordEnv, true, getenv)
	r.PasswordFile = expandCredentials(r.PasswordFile, getenv)
	if r.PassphraseFile != "" && r.KeyFile == "" {
		v.errf("ssh.reconcile.passphrase_file", "only with key_file")
	}
	if r.KeyFile == "" {
		return
	}
	l := &LogonConfig{User: r.User, KeyFile: r.KeyFile, PassphraseFile: r.PassphraseFile}
	v.logon("ssh.reconcile", l, getenv)
	r.KeyFile, r.PassphraseFile = l.KeyFile, l.PassphraseFile
	if l.hasAuth {
		auth := l.auth
		r.key = &auth
	}
}

// validUserName reports whether name may be a Unix account's name.
func validUserName(name string) bool {
	if name == "" || len(name) > 32 || name[0] == '-' {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// defaultDedupeWindow is notify.smtp.dedupe_window when not given.
const defaultDedupeWindow = Duration(time.Hour)

// smtp checks notify.smtp, fills its defaults and reads its password and
// CA file.
func (v *validator) smtp(sm *SMTPConfig, getenv func(string) string) {
	const p = "notify.smtp"
	if sm.Host == "" {
		v.errf(p+".host", "required: the mail relay's name (its certificate must match it)")
	} else if strings.ContainsAny(sm.Host, " /:[]\r\n") && net.ParseIP(sm.Host) == nil {
		v.errf(p+".host", "want a host name or address without port, got %q", sm.Host)
	}
	switch sm.TLS {
	case "":
		sm.TLS = "starttls"
	case "implicit", "starttls":
	default:
		v.errf(p+".tls", "must be implicit or starttls (mail is never sent in plain text), got %q", sm.TLS)
	}
	if sm.Port == 0 {
		sm.Port = 587
		if sm.TLS == "implicit" {
			sm.Port = 465
		}
	}
	v.port(p+".port", sm.Port, false)
	if sm.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(sm.CAFile); err != nil {
			v.errf(p+".ca_file", "cannot read: %v", unwrapPath(err))
		} else if !pool.AppendCertsFromPEM(pem) {
			v.errf(p+".ca_file", "%s holds no PEM certificate", sm.CAFile)
		} else {
			sm.roots = pool
		}
	}
	switch {
	case sm.Username != "":
		sm.password = v.credential(p, sm.PasswordFile, sm.PasswordEnv, true, getenv)
		sm.PasswordFile = expandCredentials(sm.PasswordFile, getenv)
	case sm.PasswordFile != "" || sm.PasswordEnv != "":
		v.errf(p+".username", "required with a password (AUTH needs both)")
	}
	if sm.From == "" {
		v.errf(p+".from", "required: the sender address")
	} else if _, err := mail.ParseAddress(sm.From); err != nil {
		v.errf(p+".from", "not a mail address: %q", sm.From)
	}
	if len(sm.To) == 0 {
		v.errf(p+".to", "required: at least one recipient address")
	}
	for i, to := range sm.To {
		if _, err := mail.ParseAddress(to); err != nil {
			v.errf(fmt.Sprintf("%s.to[%d]", p, i), "not a mail address: %q", to)
		}
	}
	switch {
	case sm.DedupeWindow < 0:
		v.errf(p+".dedupe_window", "must not be negative, got %s", sm.DedupeWindow.D())
	case sm.DedupeWindow == 0:
		sm.DedupeWindow = defaultDedupeWindow
	}
}

// scheduleProblem strips the quoting ParseSchedule adds: the field name
// already says which spec.
func scheduleProblem(err error) string {
	if u := errors.Unwrap(err); u != nil {
		return "bad cron spec: " + u.Error()
	}
	return "bad cron spec: " + err.Error()
}

func (v *validator) port(field string, p int, zeroOK bool) {
	if (p == 0 && zeroOK) || (p >= 1 && p <= 65535) {
		return
	}
	v.errf(field, "must be a TCP port (1-65535), got %d", p)
}

func (v *validator) length(field string, n int, zeroOK bool) {
	if (n == 0 && zeroOK) || (n >= 12 && n <= 128) {
		return
	}
	v.errf(field, "must be between 12 and 128, got %d", n)
}

func (v *validator) generator(field, g string, emptyOK bool) {
	switch g {
	case "server", "local", "auto":
		return
	case "":
		if emptyOK {
			return
		}
	}
	v.errf(field, "must be server, local or auto, got %q", g)
}

// credential reads a secret from exactly one of file and env. A file that
// group or others may read is refused: a password must be readable by its
// owner only.
// validPostgres reads the connection string of a PostgreSQL journal from
// its file or environment variable (always: every command needs the
// journal) and adds the TLS settings of ca_file.
func validPostgres(v *validator, st *StoreConfig, getenv func(string) string) {
	var dsn string
	switch {
	case st.DSNFile != "" && st.DSNEnv != "":
		v.errf("store.dsn_env", "give dsn_file or dsn_env, not both")
		return
	case st.DSNFile != "":
		st.DSNFile = expandCredentials(st.DSNFile, getenv)
		dsn = v.readCredentialFile("store.dsn_file", st.DSNFile).Reveal()
	case st.DSNEnv != "":
		dsn = getenv(st.DSNEnv)
		if dsn == "" {
			v.errf("store.dsn_env", "environment variable %s is empty or not set", st.DSNEnv)
		}
	default:
		v.errf("store", "dsn_file or dsn_env is required with driver postgres (the connection string is never in the configuration)")
	}
	if dsn == "" {
		return
	}
	if st.CAFile != "" {
		if _, err := os.Stat(st.CAFile); err != nil {
			v.errf("store.ca_file", "cannot read: %v", unwrapPath(err))
			return
		}
		dsn = withVerifyFull(dsn, st.CAFile)
	}
	field := "store.dsn_file"
	if st.DSNEnv != "" {
		field = "store.dsn_env"
	}
	if _, err := store.DescribePostgres(dsn); err != nil {
		v.errf(field, "%v", err)
		return
	}
	st.dsn = secret.New(dsn)
}

// withVerifyFull returns dsn (a URL or key=value pairs) asking for TLS
// with the server's certificate verified against caFile and its name.
func withVerifyFull(dsn, caFile string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn // refused by DescribePostgres
		}
		q := u.Query()
		q.Set("sslmode", "verify-full")
		q.Set("sslrootcert", caFile)
		u.RawQuery = q.Encode()
		return u.String()
	}
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(caFile) + "'"
	// Later settings win over earlier ones of the same name.
	return dsn + " sslmode=verify-full sslrootcert=" + quoted
}

func (v *validator) credential(section, file, env string, required bool, getenv func(string) string) secret.Value {
	switch {
	case file != "" && env != "":
		v.errf(section+".password_env", "give password_file or password_env, not both")
	case v.skipCredentials && (file != "" || env != ""):
		return secret.Value{}
	case file != "":
		return v.readCredentialFile(section+".password_file", expandCredentials(file, getenv))
	case env != "":
		val := getenv(env)
		if val == "" {
			v.errf(section+".password_env", "environment variable %s is empty or not set", env)
			return secret.Value{}
		}
		return secret.New(val)
	case required:
		v.errf(section, "password_file or password_env is required (passwords are never given on the command line)")
	}
	return secret.Value{}
}

func (v *validator) readCredentialFile(field, path string) secret.Value {
	f, err := os.Open(path)
	if err != nil {
		v.errf(field, "cannot read %s: %v", path, unwrapPath(err))
		return secret.Value{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		v.errf(field, "cannot stat %s: %v", path, unwrapPath(err))
		return secret.Value{}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		v.errf(field, "%s has mode %04o: group or others may read it; run chmod 600 %s", path, perm, path)
		return secret.Value{}
	}
	data := make([]byte, 4097)
	n, _ := f.Read(data)
	if n > 4096 {
		v.errf(field, "%s is over 4096 bytes: not a password file", path)
		return secret.Value{}
	}
	first, _, _ := strings.Cut(string(data[:n]), "\n")
	pw := strings.TrimSuffix(first, "\r")
	if pw == "" {
		v.errf(field, "%s is empty", path)
		return secret.Value{}
	}
	return secret.New(pw)
}

// expandCredentials replaces ${CREDENTIALS_DIRECTORY} in a path: with the
// directory systemd set for the unit, or, outside the unit, with the
// directory the unit loads its credentials from.
func expandCredentials(path string, getenv func(string) string) string {
	const v = "${CREDENTIALS_DIRECTORY}"
	if !strings.Contains(path, v) {
		return path
	}
	dir := getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		dir = credentialsFallback
	}
	return strings.ReplaceAll(path, v, dir)
}

// fieldError is a problem with the value of field found after loading (a
// file it names turned out unusable): a configuration error naming the
// file and the field's line. The default value's field has no line.
func (c *Config) fieldError(field string, err error) *ConfigError {
	e := &ConfigError{File: c.path, Line: c.lines[field], Field: field, Msg: err.Error()}
	if e.Line == 0 {
		e.Field += " (default)"
	}
	return e
}

// Path returns the file the configuration was read from.
func (c *Config) Path() string { return c.path }

// Specs returns the configured secrets as the engine takes them.
func (c *Config) Specs() []rotation.SecretSpec {
	out := make([]rotation.SecretSpec, 0, len(c.Secrets))
	for _, s := range c.Secrets {
		out = append(out, rotation.SecretSpec{
			Name: s.Name, HostsField: s.HostsField, Port: s.Port, Length: s.Length, Generator: s.Generator,
		})
	}
	return out
}

// Spec returns the configured secret with the given name (compared without
// regard to case); ok is false if it is not in the file.
func (c *Config) Spec(name string) (rotation.SecretSpec, bool) {
	for _, s := range c.Specs() {
		if strings.EqualFold(s.Name, name) {
			return s, true
		}
	}
	return rotation.SecretSpec{}, false
}

// SchedulePlan returns the scheduler's plan for the configured secrets.
func (c *Config) SchedulePlan() rotation.SchedulePlan {
	p := rotation.SchedulePlan{
		DefaultSchedule: c.Schedule,
		Jitter:          c.Jitter.D(),
		MaxConcurrent:   c.Rotation.MaxConcurrent,
	}
	for i, s := range c.Specs() {
		p.Secrets = append(p.Secrets, rotation.ScheduledSecret{Spec: s, Schedule: c.Secrets[i].Schedule})
	}
	return p
}

// HeartbeatPlan returns what the daemon's heartbeat scheduler runs.
func (c *Config) HeartbeatPlan() rotation.HeartbeatPlan {
	p := rotation.HeartbeatPlan{DefaultSchedule: c.Heartbeat.Schedule}
	for i, s := range c.Specs() {
		p.Secrets = append(p.Secrets, rotation.ScheduledSecret{Spec: s, Schedule: c.Secrets[i].Heartbeat})
	}
	return p
}

// validHeartbeat checks a heartbeat schedule: "", "off" or a cron spec.
func validHeartbeat(v *validator, field, spec string) {
	if spec == "" || strings.EqualFold(strings.TrimSpace(spec), "off") {
		return
	}
	if _, err := rotation.ParseSchedule(spec); err != nil {
		v.errf(field, "%v (or \"off\")", scheduleProblem(err))
	}
}

// EngineConfig returns the engine's settings: rotation.DefaultConfig with
// the file's values, each taken as it is (defaults filled them in where the
// file is silent, so a zero in the file is a zero). holder names this
// process for leases.
func (c *Config) EngineConfig(holder string) rotation.Config {
	ec := rotation.DefaultConfig()
	ec.Port = c.SSH.Port
	ec.Concurrency = c.SSH.Concurrency
	ec.SecretDeadline = c.Rotation.Deadline.D()
	ec.LeaseTTL = c.Rotation.LeaseTTL.D()
	ec.Length = c.Password.Length
	ec.Generator = c.Password.Generator
	ec.PolicyRetries = c.Rotation.PolicyRetries
	ec.HostRetries = c.Rotation.HostRetries
	ec.HostsField = c.HostsField
	ec.Holder = holder
	if r := c.SSH.Reconcile; r != nil {
		ec.Reconcile = &rotation.Account{User: r.User, Password: r.password}
	}
	return ec
}
