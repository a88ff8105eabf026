package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
)

const testPassword = "Ss-Pw_7f3a9c!e"

// testEnv is a getenv for tests.
func testEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeConfig writes body (with {{dir}} replaced by a temporary directory
// holding ss-password, mode 0600) and returns its path.
func writeConfig(t *testing.T, body string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ss-password"), []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "rotord.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "{{dir}}", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

const minimal = `secret_server:
  url: https://ss.example.com/SecretServer/
  username: svc
  password_file: {{dir}}/ss-password
secrets:
  - name: web-root
`

func TestLoadConfigDefaults(t *testing.T) {
	path, _ := writeConfig(t, minimal)
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.SecretServer.Password().Reveal(); got != testPassword {
		t.Fatalf("password %q, want the file's first line", got)
	}
	if c.SecretServer.URL != "https://ss.example.com/SecretServer" {
		t.Errorf("url %q: trailing slash kept", c.SecretServer.URL)
	}
	want := defaults()
	if c.Schedule != "@weekly" || c.Jitter != want.Jitter || c.SSH.Port != 22 || c.Password.Length != 24 ||
		c.Store.Driver != "sqlite" || c.HostsField != "notes" || c.Rotation.MaxConcurrent != 4 || c.SecretServer.Auth != "oauth2" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.Store.KeyFile != credentialsFallback+"/store-key" {
		t.Errorf("key_file %q, want the credentials fallback", c.Store.KeyFile)
	}
	ec := c.EngineConfig("me:1")
	if ec.Port != 22 || ec.Concurrency != 32 || ec.SecretDeadline != 15*time.Minute || ec.Holder != "me:1" || ec.Reconcile != nil {
		t.Errorf("engine config %+v", ec)
	}
}

func TestLoadConfigExample(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ss-password", "store-key"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(testPassword), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	c, err := LoadConfig("../../deploy/rotord.example.yaml", testEnv(map[string]string{"CREDENTIALS_DIRECTORY": dir}))
	if err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	if c.SecretServer.PasswordFile != dir+"/ss-password" || c.Store.KeyFile != dir+"/store-key" {
		t.Errorf("credential paths %q %q not expanded", c.SecretServer.PasswordFile, c.Store.KeyFile)
	}
	specs := c.Specs()
	wantSpecs := []rotation.SecretSpec{
		{Name: "prod-web-root"},
		{Name: "prod-db-root", Length: 32, Generator: "local"},
		{Name: "lab-root", HostsField: "hosts", Port: 2222},
	}
	if len(specs) != len(wantSpecs) {
		t.Fatalf("specs %+v", specs)
	}
	for i := range specs {
		if specs[i] != wantSpecs[i] {
			t.Errorf("spec %d = %+v, want %+v", i, specs[i], wantSpecs[i])
		}
	}
	plan := c.SchedulePlan()
	if plan.DefaultSchedule != "@weekly" || plan.Jitter != 10*time.Minute || plan.MaxConcurrent != 4 ||
		plan.Secrets[1].Schedule != "CRON_TZ=Europe/Berlin 0 3 * * 0" || plan.Secrets[0].Schedule != "" {
		t.Errorf("plan %+v", plan)
	}
}

func TestLoadConfigPasswordEnvAndReconcile(t *testing.T) {
	path, _ := writeConfig(t, `secret_server:
  url: https://ss.example.com
  username: svc
  password_env: SS_PW
ssh:
  reconcile:
    user: fixer
    password_env: FIX_PW
secrets: [{name: a}]
`)
	c, err := LoadConfig(path, testEnv(map[string]string{"SS_PW": "from-env", "FIX_PW": "fix-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SecretServer.Password().Reveal() != "from-env" {
		t.Error("password_env not read")
	}
	r := c.EngineConfig("h").Reconcile
	if r == nil || r.User != "fixer" || r.Password.Reveal() != "fix-secret" {
		t.Errorf("reconcile account %+v", r)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // each a whole error line, with FILE for the path
	}{
		{"UnknownKey", minimal + "sssh:\n  port: 22\n",
			[]string{"FILE:7: sssh: unknown field (known here: heartbeat, hosts_field, jitter, logon, metrics, notify, password, rotation, schedule, secret_server, secrets, ssh, store)"}},
		{"UnknownNestedKey", minimal + "ssh:\n  prot: 2222\n",
			[]string{"FILE:8: ssh.prot: unknown field (known here: concurrency, connect_timeout, known_hosts, port, reconcile, step_timeout)"}},
		{"WrongType", minimal + "ssh:\n  port: twenty-two\n",
			[]string{`FILE:8: ssh.port: want an integer, got "twenty-two"`}},
		{"BadDuration", minimal + "jitter: 10 minutes\n",
			[]string{`FILE:7: jitter: want a duration such as 30s or 10m, got "10 minutes"`}},
		{"BadCron", minimal + "schedule: \"0 25 * * *\"\n",
			[]string{"FILE:7: schedule: bad cron spec: end of range (25) above maximum (23): 25"}},
		{"BadSecretCron", strings.Replace(minimal, "  - name: web-root\n", "  - name: web-root\n  - name: db-root\n    schedule: \"@fortnightly\"\n", 1),
			[]string{"FILE:8: secrets[1].schedule: bad cron spec: unrecognized descriptor: @fortnightly"}},
		{"PostgresWithoutDSN", minimal + "store:\n  driver: postgres\n",
			[]string{"FILE:7: store: dsn_file or dsn_env is required with driver postgres (the connection string is never in the configuration)"}},
		{"PostgresInlineDSN", minimal + "store:\n  driver: postgres\n  dsn_env: PG_DSN\n  dsn: \"host=db password=" + testPassword + "\"\n",
			[]string{
				"FILE:9: store.dsn_env: environment variable PG_DSN is empty or not set",
				"FILE:10: store.dsn: a connection string may hold a password: put it in a file (dsn_file) or an environment variable (dsn_env), never in the configuration",
			}},
		{"PostgresFieldsOnSQLite", minimal + "store:\n  dsn_env: PG_DSN\n  ca_file: /ca.pem\n",
			[]string{"FILE:8: store.dsn_env: only for driver postgres", "FILE:9: store.ca_file: only for driver postgres"}},
		{"BadDriver", minimal + "store:\n  driver: mysql\n",
			[]string{`FILE:8: store.driver: must be sqlite or postgres, got "mysql"`}},
		{"PlainHTTP", strings.Replace(minimal, "https://", "http://", 1),
			[]string{"FILE:2: secret_server.url: must be https (credentials and passwords cross it); give ca_file for a private CA"}},
		{"DuplicateName", minimal + "  - name: Web-Root\n",
			[]string{`FILE:7: secrets[1].name: "Web-Root" is already listed at line 6 (names are compared without regard to case)`}},
		{"DuplicateKey", minimal + "schedule: \"@daily\"\nschedule: \"@weekly\"\n",
			[]string{"FILE:8: schedule: given twice"}},
		{"NoSecrets", strings.TrimSuffix(minimal, "  - name: web-root\n"),
			[]string{"FILE:5: secrets: list at least one secret to rotate"}},
		{"BothPasswordSources", strings.Replace(minimal, "  username: svc\n", "  username: svc\n  password_env: X\n", 1),
			[]string{"FILE:4: secret_server.password_env: give password_file or password_env, not both"}},
		{"EmptyEnv", strings.Replace(minimal, "password_file: {{dir}}/ss-password", "password_env: ROTORD_NOPE", 1),
			[]string{"FILE:4: secret_server.password_env: environment variable ROTORD_NOPE is empty or not set"}},
		{"NoPassword", strings.Replace(minimal, "  password_file: {{dir}}/ss-password\n", "", 1),
			[]string{"FILE:1: secret_server: password_file or password_env is required (passwords are never given on the command line)"}},
		{"MappingForList", minimal + "notify:\n  smtp:\n    to: root@example.com\n    host: mail.example.com\n    from: r@example.com\n",
			[]string{`FILE:9: notify.smtp.to: want a list, got "root@example.com"`}},
		{"SMTPBad", minimal + "notify:\n  smtp:\n    host: mail:25\n    tls: plain\n    username: alerts\n    from: nobody\n    to: [ops@example.com, \"x y\"]\n    dedupe_window: -1m\n",
			[]string{
				"FILE:8: notify.smtp: password_file or password_env is required (passwords are never given on the command line)",
				`FILE:9: notify.smtp.host: want a host name or address without port, got "mail:25"`,
				`FILE:10: notify.smtp.tls: must be implicit or starttls (mail is never sent in plain text), got "plain"`,
				`FILE:12: notify.smtp.from: not a mail address: "nobody"`,
				`FILE:13: notify.smtp.to[1]: not a mail address: "x y"`,
				"FILE:14: notify.smtp.dedupe_window: must not be negative, got -1m0s",
			}},
		{"SMTPIncomplete", minimal + "notify:\n  smtp:\n    dedupe_window: 1h\n    ca_file: {{dir}}/nope.pem\n",
			[]string{
				"FILE:8: notify.smtp.host: required: the mail relay's name (its certificate must match it)",
				"FILE:8: notify.smtp.from: required: the sender address",
				"FILE:8: notify.smtp.to: required: at least one recipient address",
				"FILE:10: notify.smtp.ca_file: cannot read: no such file or directory",
			}},
		{"SMTPPasswordWithoutUser", minimal + "notify:\n  smtp:\n    host: mail.example.com\n    password_env: SMTP_PW\n    from: r@example.com\n    to: [ops@example.com]\n",
			[]string{"FILE:8: notify.smtp.username: required with a password (AUTH needs both)"}},
		{"ListForScalar", minimal + "hosts_field: [a, b]\n",
			[]string{"FILE:7: hosts_field: want text, got a list"}},
		{"Syntax", minimal + "ssh:\n port: 22\n  known_hosts: x\n",
			[]string{"FILE:9: YAML syntax: mapping values are not allowed in this context"}},
		{"Ranges", minimal + "password:\n  length: 8\n  generator: magic\nssh:\n  port: 70000\n",
			[]string{
				"FILE:8: password.length: must be between 12 and 128, got 8",
				`FILE:9: password.generator: must be server, local or auto, got "magic"`,
				"FILE:11: ssh.port: must be a TCP port (1-65535), got 70000",
			}},
		{"Empty", "", []string{"FILE: the file is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := writeConfig(t, tt.body)
			_, err := LoadConfig(path, testEnv(nil))
			if err == nil {
				t.Fatal("LoadConfig accepted the file")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError", err)
			}
			got := strings.Split(err.Error(), "\n")
			var want []string
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "FILE", path))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatal("error holds the password")
			}
		})
	}
}

func TestLoadConfigRefusesReadablePasswordFile(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		t.Run(mode.String(), func(t *testing.T) {
			path, dir := writeConfig(t, minimal)
			pw := filepath.Join(dir, "ss-password")
			if err := os.Chmod(pw, mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path, testEnv(nil))
			want := path + ":4: secret_server.password_file: " + pw + " has mode " + octal(mode) +
				": group or others may read it; run chmod 600 " + pw
			if err == nil || err.Error() != want {
				t.Fatalf("got %v\nwant %s", err, want)
			}
		})
	}
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	p := uint32(m.Perm())
	return string([]byte{'0', digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig("/nonexistent/rotord.yaml", testEnv(nil))
	if err == nil || err.Error() != "/nonexistent/rotord.yaml: cannot read: no such file or directory" {
		t.Fatalf("got %v", err)
	}
	if exitCode(err) != exitUsage {
		t.Fatalf("exit %d, want %d", exitCode(err), exitUsage)
	}
}

func TestConfigPath(t *testing.T) {
	t.Setenv("ROTORD_CONFIG", "/env/rotord.yaml")
	if got := configPath("/flag.yaml"); got != "/flag.yaml" {
		t.Errorf("flag lost: %s", got)
	}
	if got := configPath(""); got != "/env/rotord.yaml" {
		t.Errorf("env lost: %s", got)
	}
	t.Setenv("ROTORD_CONFIG", "")
	if got := configPath(""); got != defaultConfigPath {
		t.Errorf("default lost: %s", got)
	}
}

// policy_retries: 0 is documented as valid ("integer ≥ 0"): no fresh
// password after a policy rejection. The engine takes its values as given,
// so the zero reaches it as a zero; a file that does not name the field
// gets the engine's default.
func TestPolicyRetriesZeroMeansNone(t *testing.T) {
	path, _ := writeConfig(t, minimal+"rotation:\n  policy_retries: 0\n")
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.EngineConfig("h").PolicyRetries; got != 0 {
		t.Fatalf("policy_retries: 0 reaches the engine as %d, want 0 (no fresh password)", got)
	}
	if err := c.EngineConfig("h").Validate(); err != nil {
		t.Fatalf("the engine refuses policy_retries: 0: %v", err)
	}
	path, _ = writeConfig(t, minimal)
	if c, err = LoadConfig(path, testEnv(nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := c.EngineConfig("h").PolicyRetries, rotation.DefaultConfig().PolicyRetries; got != want {
		t.Fatalf("policy_retries absent: PolicyRetries = %d, want the default %d", got, want)
	}
	path, _ = writeConfig(t, minimal+"rotation:\n  policy_retries: 2\n")
	if c, err = LoadConfig(path, testEnv(nil)); err != nil {
		t.Fatal(err)
	}
	if got := c.EngineConfig("h").PolicyRetries; got != 2 {
		t.Fatalf("PolicyRetries = %d, want 2", got)
	}
}

// TestLoadConfigSMTP: notify.smtp fills its defaults (STARTTLS on 587, a
// one-hour dedupe window) and reads its password like the other
// credentials: from a file only its owner may read, or the environment.
func TestLoadConfigSMTP(t *testing.T) {
	path, dir := writeConfig(t, minimal+"notify:\n  smtp:\n    host: mail.example.com\n    username: alerts\n"+
		"    password_file: {{dir}}/ss-password\n    from: rotord@example.com\n    to: [a@example.com, b@example.com]\n")
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	sm := c.Notify.SMTP
	if sm.Port != 587 || sm.TLS != "starttls" || sm.DedupeWindow.D() != time.Hour || sm.Password().Reveal() != testPassword || sm.roots != nil {
		t.Errorf("smtp %+v: want port 587, starttls, 1h window, the file's password, the system CAs", sm)
	}
	if err := os.Chmod(filepath.Join(dir, "ss-password"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfig(path, testEnv(nil))
	if err == nil || !strings.Contains(err.Error(), "notify.smtp.password_file: ") || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a group-readable smtp password file: %v", err)
	}

	path, _ = writeConfig(t, minimal+"notify:\n  smtp:\n    host: \"::1\"\n    tls: implicit\n    username: alerts\n"+
		"    password_env: SMTP_PW\n    from: rotord@example.com\n    to: [a@example.com]\n    dedupe_window: 10m\n")
	c, err = LoadConfig(path, testEnv(map[string]string{"SMTP_PW": "env-pw"}))
	if err != nil {
		t.Fatal(err)
	}
	if sm := c.Notify.SMTP; sm.Port != 465 || sm.Password().Reveal() != "env-pw" || sm.DedupeWindow.D() != 10*time.Minute {
		t.Errorf("smtp %+v: want port 465, the environment's password, a 10m window", sm)
	}
}

// A PostgreSQL journal's connection string comes from a file or the
// environment, never the configuration; ca_file makes it verify the
// server (verify-full), and messages name the database without the
// password.
func TestLoadConfigPostgres(t *testing.T) {
	path, dir := writeConfig(t, minimal+"store:\n  driver: postgres\n  dsn_file: {{dir}}/dsn\n  ca_file: {{dir}}/ca.pem\n")
	testCA, _ := testCertificate(t)
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte("host=db.example.com user=rotord password="+testPassword+" dbname=rotord\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(testCA), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := "host=db.example.com user=rotord password=" + testPassword + " dbname=rotord sslmode=verify-full sslrootcert='" + dir + "/ca.pem'"
	if !c.Store.Postgres() || c.Store.ConnString() != want {
		t.Errorf("connection string %q, want %q", c.Store.ConnString(), want)
	}
	if d := c.Store.Describe(); strings.Contains(d, testPassword) || !strings.Contains(d, "rotord") {
		t.Errorf("Describe() = %q", d)
	}

	path, _ = writeConfig(t, minimal+"store:\n  driver: postgresql\n  dsn_env: PG_DSN\n")
	c, err = LoadConfig(path, testEnv(map[string]string{"PG_DSN": "postgres://rotord:" + testPassword + "@db.example.com/rotord?sslmode=require"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Store.Postgres() || !strings.HasSuffix(c.Store.ConnString(), "sslmode=require") {
		t.Errorf("connection string from the environment: %q", c.Store.ConnString())
	}
	if got := withVerifyFull("postgres://u@h/db?sslmode=disable", "/etc/ca.pem"); got != "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem" {
		t.Errorf("withVerifyFull of a URL = %q", got)
	}
}

// TestLoadConfigLogon: a logon account's bad combinations are errors with
// their file and line; good ones load their credential.
func TestLoadConfigLogon(t *testing.T) {
	su := func(extra string) string {
		return strings.Replace(minimal, "  - name: web-root\n", "  - name: web-root\n    escalation: su\n"+extra, 1)
	}
	tests := []struct {
		name, body string
		want       []string
	}{
		{"SuWithoutLogon", su(""), []string{"FILE:7: secrets[0].escalation: su needs a logon account: set logon here or at the top level"}},
		{"UnknownEscalation", strings.Replace(minimal, "  - name: web-root\n", "  - name: web-root\n    escalation: doas\n", 1),
			[]string{`FILE:7: secrets[0].escalation: escalation "doas": want none, su or sudo`}},
		{"PasswordAndKey", su("    logon:\n      user: ops\n      password_file: {{dir}}/ss-password\n      key_file: {{dir}}/ss-password\n"),
			[]string{"FILE:11: secrets[0].logon.key_file: give password_file or key_file, not both"}},
		{"NoCredential", su("    logon:\n      user: ops\n"),
			[]string{"FILE:8: secrets[0].logon: password_file, key_file or secret is required"}},
		{"LogonIsTheSecret", su("    logon:\n      secret: web-root\n"),
			[]string{"FILE:9: secrets[0].logon.secret: the logon account is the rotated secret itself: its password is never changed through itself; name another secret"}},
		{"LogonWithoutEscalation", strings.Replace(minimal, "  - name: web-root\n", "  - name: web-root\n    logon:\n      secret: ops\n", 1),
			[]string{"FILE:7: secrets[0].logon: a logon account needs escalation su or sudo (with none the rotated account logs in itself)"}},
		{"ReadableKey", su("    logon:\n      user: ops\n      key_file: {{dir}}/key\n"),
			[]string{"FILE:10: secrets[0].logon.key_file: {{dir}}/key has mode 0644: group or others may read it; run chmod 600 {{dir}}/key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, dir := writeConfig(t, tc.body)
			if err := os.WriteFile(filepath.Join(dir, "key"), []byte("not a key"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path, testEnv(nil))
			if err == nil {
				t.Fatal("loaded")
			}
			got := err.Error()
			for _, w := range tc.want {
				w = strings.ReplaceAll(strings.ReplaceAll(w, "FILE", path), "{{dir}}", dir)
				if !strings.Contains(got, w) {
					t.Errorf("errors:\n%s\nwant a line:\n%s", got, w)
				}
			}
		})
	}

	// A top-level logon by password serves a secret with su.
	body := "logon:\n  user: ops\n  password_file: {{dir}}/ss-password\n" + su("")
	path, _ := writeConfig(t, body)
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	esc, l := c.logonOf("web-root")
	if esc.String() != "su" || l == nil || !l.hasAuth || l.auth.String() != "password" {
		t.Fatalf("escalation %s, logon loaded: %v", esc, l != nil && l.hasAuth)
	}
}

// TestLoadConfigReconcileChoices: the reconcile account by key (its
// password still read) or by secret; a secret with files, or a key file
// others may read, is an error at its line.
func TestLoadConfigReconcileChoices(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	withReconcile := func(r string) string { return minimal + "ssh:\n  reconcile:\n" + r }
	path, dir := writeConfig(t, withReconcile("    user: fixer\n    password_file: {{dir}}/ss-password\n    key_file: {{dir}}/key\n"))
	if err := os.WriteFile(filepath.Join(dir, "key"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.SSH.Reconcile; r.key == nil || r.key.KeyType() != "ssh-ed25519" || r.password.Reveal() != testPassword {
		t.Errorf("reconcile key not loaded, or its password not read")
	}
	if (&pathResolver{cfg: c}).reconcileFor() == nil {
		t.Error("a reconcile account by key is not given to the engine")
	}

	for name, tc := range map[string]struct{ body, want string }{
		"SecretAndFile": {withReconcile("    secret: fixer-account\n    password_file: {{dir}}/ss-password\n"),
			"FILE:9: ssh.reconcile.secret: give secret or files (password_file, password_env, key_file), not both"},
		"ReadableKey": {withReconcile("    user: fixer\n    password_file: {{dir}}/ss-password\n    key_file: {{dir}}/key\n"),
			"FILE:11: ssh.reconcile.key_file: {{dir}}/key has mode 0644: group or others may read it; run chmod 600 {{dir}}/key"},
	} {
		t.Run(name, func(t *testing.T) {
			path, dir := writeConfig(t, tc.body)
			if err := os.WriteFile(filepath.Join(dir, "key"), pem.EncodeToMemory(block), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path, testEnv(nil))
			want := strings.ReplaceAll(strings.ReplaceAll(tc.want, "FILE", path), "{{dir}}", dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v\nwant a line %s", err, want)
			}
		})
	}
}
