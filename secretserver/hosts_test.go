package secretserver_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/secretserver"
)

func TestParseHosts(t *testing.T) {
	h := func(name string, port int) rotation.Host { return rotation.Host{Name: name, Port: port} }
	for _, tc := range []struct {
		in   string
		want []rotation.Host
	}{
		{"web01", []rotation.Host{h("web01", 0)}},
		{"web01,web02", []rotation.Host{h("web01", 0), h("web02", 0)}},
		{" web01 ;\n web02\tweb03\r\n", []rotation.Host{h("web01", 0), h("web02", 0), h("web03", 0)}},
		{"web01.example.com:2222", []rotation.Host{h("web01.example.com", 2222)}},
		{"10.0.0.1:22, 10.0.0.1", []rotation.Host{h("10.0.0.1", 22), h("10.0.0.1", 0)}},
		{"[2001:db8::1]:2200", []rotation.Host{h("2001:db8::1", 2200)}},
		{"[2001:DB8:0::1]", []rotation.Host{h("2001:db8::1", 0)}},
		{"2001:db8::2", []rotation.Host{h("2001:db8::2", 0)}},
		{"web01, WEB01, web01:22, web01", []rotation.Host{h("web01", 0), h("web01", 22)}},
		// One canonical spelling per endpoint: names in lower case without
		// the trailing dot of a fully qualified name, IPv6 compressed.
		{"WEB01:22", []rotation.Host{h("web01", 22)}},
		{"web01, WEB01:22, web01., Web01.:22", []rotation.Host{h("web01", 0), h("web01", 22)}},
		{"Web01.Example.COM.", []rotation.Host{h("web01.example.com", 0)}},
		{"web01:2222, web01", []rotation.Host{h("web01", 2222), h("web01", 0)}},
		{"[2001:DB8::5]:22, [2001:db8:0:0::5]:22, 2001:db8::5", []rotation.Host{h("2001:db8::5", 22), h("2001:db8::5", 0)}},
		{"a-b.c-d.example,,, ;;", []rotation.Host{h("a-b.c-d.example", 0)}},
		{"host:65535 host:1", []rotation.Host{h("host", 65535), h("host", 1)}},
		{"xn--bcher-kva.example", []rotation.Host{h("xn--bcher-kva.example", 0)}},
	} {
		got, err := secretserver.ParseHosts(tc.in)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseHosts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseHostsErrBadHosts(t *testing.T) {
	for _, tc := range []struct{ in, bad string }{
		{"", ""},
		{" ,;\n", ""},
		{"web01, bad_host", "bad_host"},
		{"web01:0", "web01:0"},
		{"web01:65536", "web01:65536"},
		{"web01:22x", "web01:22x"},
		{"web01:", "web01:"},
		{"-web", "-web"},
		{"web-", "web-"},
		{"a..b", "a..b"},
		{"web01..", "web01.."},
		{".", "."},
		{"10.0.0.1.", "10.0.0.1."},
		{"999.1.1.1", "999.1.1.1"},
		{"10.0.0", "10.0.0"},
		{"[10.0.0.1]:22", "[10.0.0.1]:22"},
		{"[2001:db8::1", "[2001:db8::1"},
		{"[2001:db8::1]x", "[2001:db8::1]x"},
		{"2001:db8::zz", "2001:db8::zz"},
		{"fe80::1%eth0", "fe80::1%eth0"},
		{"host/path", "host/path"},
		{"user@host", "user@host"},
		{"::ffff:10.0.0.1", ""},
		{strings.Repeat("a", 64) + ".example", ""},
		{"héllo", "héllo"},
	} {
		got, err := secretserver.ParseHosts(tc.in)
		if tc.in == "::ffff:10.0.0.1" {
			// An IPv4-mapped IPv6 address is a valid IPv6 literal.
			if err != nil {
				t.Errorf("ParseHosts(%q): %v", tc.in, err)
			}
			continue
		}
		if !errors.Is(err, rotation.ErrBadHosts) {
			t.Errorf("ParseHosts(%q) = %v, %v; want ErrBadHosts", tc.in, got, err)
			continue
		}
		if tc.bad != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.bad)) {
			t.Errorf("ParseHosts(%q): error %q does not name %q", tc.in, err, tc.bad)
		}
	}
}
