package secretserver

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rotord/rotord/rotation"
)

// maxEntryQuote bounds how much of a bad hosts entry an error quotes.
const maxEntryQuote = 64

// ParseHosts parses a secret's hosts field: entries separated by commas,
// semicolons, newlines or other white space, each "host", "host:port",
// "[v6]:port", "[v6]" or a bare IPv6 literal. Host names are checked
// against the rules for DNS names; ports must be 1-65535. Each host comes
// back in one canonical spelling: a DNS name in lower case without a
// trailing dot ("WEB01." is "web01"), an IP literal in its canonical text
// form ("2001:DB8:0::5" is "2001:db8::5"). Duplicates (same canonical name
// and same port) are dropped, the first occurrence keeping its place. A
// host listed once without a port and once with one ("web01, web01:22")
// is kept twice: only the caller knows the default port
// (rotation.Engine removes such duplicates).
//
// A bad entry or an empty list is an error satisfying
// errors.Is(err, rotation.ErrBadHosts); the error names the bad entry.
func ParseHosts(field string) ([]rotation.Host, error) {
	entries := strings.FieldsFunc(field, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
	})
	var hosts []rotation.Host
	seen := make(map[rotation.Host]bool, len(entries))
	for _, e := range entries {
		h, err := parseHost(e)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %s: %s", rotation.ErrBadHosts, quoteEntry(e), err.Error())
		}
		if seen[h] {
			continue
		}
		seen[h] = true
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: no hosts listed", rotation.ErrBadHosts)
	}
	return hosts, nil
}

func quoteEntry(e string) string {
	if len(e) > maxEntryQuote {
		e = e[:maxEntryQuote] + "..."
	}
	return strconv.Quote(e)
}

type hostError string

func (e hostError) Error() string { return string(e) }

func parseHost(e string) (rotation.Host, error) {
	switch {
	case strings.HasPrefix(e, "["):
		end := strings.IndexByte(e, ']')
		if end < 0 {
			return rotation.Host{}, hostError("missing ]")
		}
		a, err := netip.ParseAddr(e[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return rotation.Host{}, hostError("not an IPv6 address in brackets")
		}
		h := rotation.Host{Name: a.String()}
		rest := e[end+1:]
		if rest == "" {
			return h, nil
		}
		if !strings.HasPrefix(rest, ":") {
			return rotation.Host{}, hostError("unexpected text after ]")
		}
		p, err := parsePort(rest[1:])
		if err != nil {
			return rotation.Host{}, err
		}
		h.Port = p
		return h, nil
	case strings.Count(e, ":") >= 2:
		a, err := netip.ParseAddr(e)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return rotation.Host{}, hostError("not an IPv6 address (use [addr]:port for a port)")
		}
		return rotation.Host{Name: a.String()}, nil
	}
	name, port, hasPort := strings.Cut(e, ":")
	h := rotation.Host{}
	if hasPort {
		p, err := parsePort(port)
		if err != nil {
			return rotation.Host{}, err
		}
		h.Port = p
	}
	if a, err := netip.ParseAddr(name); err == nil {
		if !a.Is4() {
			return rotation.Host{}, hostError("not an IPv4 address")
		}
		h.Name = a.String()
		return h, nil
	}
	// A fully qualified name may end in a dot; "web01." is "web01".
	name = strings.TrimSuffix(name, ".")
	if err := checkHostname(name); err != nil {
		return rotation.Host{}, err
	}
	h.Name = strings.ToLower(name)
	return h, nil
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, hostError("bad port")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, hostError("bad port")
		}
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, hostError("port out of range 1-65535")
	}
	return p, nil
}

// checkHostname accepts a DNS name: at most 253 bytes, dot-separated labels
// of 1-63 letters, digits and inner hyphens, the last label not all digits
// (so that a malformed IPv4 address is not taken for a name).
func checkHostname(s string) error {
	if s == "" {
		return hostError("empty host name")
	}
	if len(s) > 253 {
		return hostError("host name longer than 253 bytes")
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return hostError("bad host name label length")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return hostError("host name label starts or ends with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return hostError("invalid character in host name")
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return hostError("not a valid IPv4 address or host name")
	}
	return nil
}
