package source

import (
	"net/netip"
	"strings"
	"testing"
)

// --timestamps takes keep, now or auto (also given as ""), nothing else, and says what it
// wants when it gets something else.
func TestParseStamp(t *testing.T) {
	for in, want := range map[string]Stamp{"": StampAuto, "auto": StampAuto, "keep": StampKeep, "now": StampNow} {
		got, err := ParseStamp(in)
		if err != nil || got != want {
			t.Errorf("ParseStamp(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"Keep", "NOW", "kept", " keep", "0", "none"} {
		_, err := ParseStamp(in)
		if err == nil {
			t.Errorf("ParseStamp(%q) accepted", in)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "--timestamps") || !strings.Contains(msg, "want keep, now or auto") || !strings.Contains(msg, "\""+in+"\"") {
			t.Errorf("ParseStamp(%q): error %q does not name the flag, the value and what it wants", in, msg)
		}
	}
}

// --from-east takes iface=NAME or src=PREFIX; a bare address is a host prefix of its family
// and a prefix with host bits set is masked, so src=203.0.113.7/24 selects the whole /24.
func TestParseSides(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Sides
	}{
		{"iface=eth1", Sides{Iface: "eth1"}},
		{"iface=turnaround/x", Sides{Iface: "turnaround/x"}},
		{"iface=a=b", Sides{Iface: "a=b"}},
		{"src=203.0.113.0/24", Sides{Src: netip.MustParsePrefix("203.0.113.0/24")}},
		{"src=203.0.113.7/24", Sides{Src: netip.MustParsePrefix("203.0.113.0/24")}},
		{"src=203.0.113.7", Sides{Src: netip.MustParsePrefix("203.0.113.7/32")}},
		{"src=0.0.0.0/0", Sides{Src: netip.MustParsePrefix("0.0.0.0/0")}},
		{"src=2001:db8::1", Sides{Src: netip.MustParsePrefix("2001:db8::1/128")}},
		{"src=2001:db8:1:2::5/48", Sides{Src: netip.MustParsePrefix("2001:db8:1::/48")}},
		{"src=::ffff:192.0.2.1", Sides{Src: netip.MustParsePrefix("::ffff:192.0.2.1/128")}},
	} {
		got, err := ParseSides(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSides(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "iface", "iface=", "eth1", "src", "src=", "src=bogus", "src=203.0.113.0/33",
		"src=2001:db8::/129", "src=fe80::1%eth0", "src=203.0.113.1/", "dst=203.0.113.0/24", "Iface=eth1", "SRC=1.2.3.4"} {
		got, err := ParseSides(in)
		if err == nil {
			t.Errorf("ParseSides(%q) = %+v, accepted", in, got)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "--from-east") || !strings.Contains(msg, "\""+in+"\"") || !strings.Contains(msg, "iface=NAME or src=PREFIX") {
			t.Errorf("ParseSides(%q): error %q does not name the flag, the value and what it wants", in, msg)
		}
		if got != (Sides{}) {
			t.Errorf("ParseSides(%q) returned %+v with its error", in, got)
		}
	}
}
