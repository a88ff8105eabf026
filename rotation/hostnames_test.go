package rotation_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/secretserver"
	"github.com/rotord/rotord/secretserver/sstest"
)

// dnsFleet is a fleet of endpoints whose names resolve as DNS names do:
// without regard to case, with or without the trailing dot of a fully
// qualified name, IP literals in any spelling. An endpoint is a name and a
// port. It counts the passwd runs on each endpoint.
type dnsFleet struct {
	*fakeHosts
	mu     sync.Mutex
	passwd map[string]int
}

// endpoint is how a resolver and a TCP dial see h: one address.
func endpoint(h rotation.Host) string {
	name := strings.ToLower(strings.TrimSuffix(h.Name, "."))
	if a, err := netip.ParseAddr(name); err == nil {
		name = a.String()
	}
	return net.JoinHostPort(name, strconv.Itoa(h.Port))
}

func newDNSFleet(pw string, endpoints ...string) *dnsFleet {
	d := &dnsFleet{fakeHosts: newFakeHosts(), passwd: map[string]int{}}
	for _, ep := range endpoints {
		h := d.add(ep, pw)
		h.onChange = func() {
			d.mu.Lock()
			d.passwd[ep]++
			d.mu.Unlock()
		}
	}
	return d
}

func (d *dnsFleet) Login(ctx context.Context, h rotation.Host, user string, pw secret.Value) (rotation.HostSession, error) {
	if h.Port == 0 {
		panic("the engine dialled a host without a port")
	}
	return d.fakeHosts.Login(ctx, rotation.Host{Name: endpoint(h)}, user, pw)
}

func (d *dnsFleet) passwdRuns(ep string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passwd[ep]
}

// TestHostSpellingsAreOneHost: a secret that lists one endpoint in several
// spellings rotates it once; different ports stay different hosts.
func TestHostSpellingsAreOneHost(t *testing.T) {
	h := func(name string, port int) rotation.Host { return rotation.Host{Name: name, Port: port} }
	for _, tc := range []struct {
		name      string
		port      int // the secret's port (SecretSpec.Port); 0: the engine's 22
		listed    []rotation.Host
		endpoints []string // what the fleet has; each must be changed exactly once
	}{
		{"CaseDefaultPortTrailingDot", 0, []rotation.Host{h("web01", 0), h("WEB01", 22), h("web01.", 0)}, []string{"web01:22"}},
		{"OtherPortIsOtherHost", 0, []rotation.Host{h("web01", 2222), h("web01", 0)}, []string{"web01:2222", "web01:22"}},
		{"SecretPort", 2222, []rotation.Host{h("web01", 2222), h("Web01", 0), h("web01", 22)}, []string{"web01:2222", "web01:22"}},
		{"IPv6", 0, []rotation.Host{h("2001:DB8::5", 22), h("2001:db8::5", 0), h("2001:db8:0:0::5", 0)}, []string{"[2001:db8::5]:22"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fleet := newDNSFleet(oldPw, tc.endpoints...)
			vault := newFakeVault()
			id := vault.add("prod-root", "root", oldPw)
			vault.secrets[id].Hosts = tc.listed
			journal := newMemJournal()
			e := newEngine(t, testConfig(func(c *rotation.Config) { c.RetryBase = time.Millisecond; c.Generator = rotation.GeneratorServer }), rotation.Deps{Vault: vault, Hosts: fleet, Store: journal})
			res := e.Rotate(context.Background(), rotation.SecretSpec{Name: "prod-root", Port: tc.port}, rotation.RotateOptions{})
			if res.Err != nil || res.State != rotation.StateCommitted {
				t.Fatalf("rotate: %s: %v", res.State, res.Err)
			}
			if len(res.Hosts) != len(tc.endpoints) {
				t.Errorf("rotated %d hosts %v, want %d", len(res.Hosts), res.Hosts, len(tc.endpoints))
			}
			newPw := vault.password(id)
			for _, ep := range tc.endpoints {
				if n := fleet.passwdRuns(ep); n != 1 {
					t.Errorf("%s: passwd ran %d times, want 1", ep, n)
				}
				if got := fleet.pw(ep); got != newPw || got == oldPw {
					t.Errorf("%s holds %s, want the new password the vault holds", ep, redact(got))
				}
			}
		})
	}
}

// TestHostSpellingsThroughSecretServer: the hosts field of a real (emulated)
// Secret Server secret listing "web01, WEB01:22, web01." is one host,
// changed once.
func TestHostSpellingsThroughSecretServer(t *testing.T) {
	ss := newSSVault(t, "web01, WEB01:22, web01.", nil)
	fleet := newDNSFleet(oldPw, "web01:22")
	journal := newMemJournal()
	e := newEngine(t, testConfig(func(c *rotation.Config) { c.RetryBase = time.Millisecond; c.Generator = rotation.GeneratorLocal }), rotation.Deps{Vault: ss.vault, Hosts: fleet, Store: journal})
	res := e.Rotate(context.Background(), rotation.SecretSpec{Name: "prod-root"}, rotation.RotateOptions{})
	if res.Err != nil || res.State != rotation.StateCommitted {
		t.Fatalf("rotate: %s: %v", res.State, res.Err)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].Host.String() != "web01:22" {
		t.Errorf("rotated hosts %v, want [web01:22]", res.Hosts)
	}
	if n := fleet.passwdRuns("web01:22"); n != 1 {
		t.Errorf("passwd ran %d times on web01:22, want 1", n)
	}
	if got := ss.srv.Field(ss.id, "password"); got == oldPw || got != fleet.pw("web01:22") {
		t.Errorf("Secret Server holds %s, the host %s", redact(got), redact(fleet.pw("web01:22")))
	}
}

// ssVault is the Secret Server emulator holding one secret, prod-root, and
// rotord's client for it.
type ssVault struct {
	srv   *sstest.Server
	vault *secretserver.Client
	id    int
}

func newSSVault(t *testing.T, notes string, mod func(*secretserver.Config)) *ssVault {
	t.Helper()
	srv := sstest.New()
	t.Cleanup(srv.Close)
	srv.AddUser(ssUser, "", ssPassword)
	id := srv.AddSecret(sstest.SecretSeed{Name: "prod-root", Folder: `\Prod`, Username: "root", Password: oldPw, Notes: notes})
	cfg := secretserver.Config{URL: srv.URL, Username: ssUser, Password: secret.New(ssPassword), CAPEM: srv.CACertPEM(),
		RetryBaseDelay: time.Millisecond, MaxRetries: 2}
	if mod != nil {
		mod(&cfg)
	}
	c, err := secretserver.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &ssVault{srv: srv, vault: c, id: id}
}

// Config.HostsOf is how both a rotation and `rotord check` see a secret's
// hosts: the spec's port, else the default, one canonical spelling each.
func TestConfigHostsOf(t *testing.T) {
	c := rotation.DefaultConfig()
	listed := []rotation.Host{{Name: "WEB01"}, {Name: "web01.", Port: 22}, {Name: "db1", Port: 2200}, {Name: "2001:DB8::1"}}
	got := c.HostsOf(rotation.SecretSpec{Name: "s"}, listed)
	want := []string{"web01:22", "db1:2200", "[2001:db8::1]:22"}
	if len(got) != len(want) {
		t.Fatalf("HostsOf = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("host %d = %s, want %s", i, got[i], want[i])
		}
	}
	if got := c.HostsOf(rotation.SecretSpec{Name: "s", Port: 2222}, listed[:1]); got[0].String() != "web01:2222" {
		t.Errorf("with the spec's port: %s, want web01:2222", got[0])
	}
	c.HostsField = "notes"
	if f := c.HostsFieldOf(rotation.SecretSpec{Name: "s"}); f != "notes" {
		t.Errorf("HostsFieldOf default = %q", f)
	}
	if f := c.HostsFieldOf(rotation.SecretSpec{Name: "s", HostsField: "hosts"}); f != "hosts" {
		t.Errorf("HostsFieldOf own = %q", f)
	}
}
