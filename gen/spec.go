// Package gen makes synthetic traffic: UDP, TCP or ICMP echo flows over IPv4 or IPv6, in
// Ethernet frames with correct checksums, deterministic for a seed.
package gen

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Spec says what to generate. Its text form is a comma-separated list, e.g.
//
//	udp,size=64,flows=1000,count=1000000
//	tcp,handshake,size=imix,flows=10,count=5000,rate=10000,ipv6,seed=7
type Spec struct {
	Proto     string  // udp, tcp or icmp
	Sizes     []int   // frame sizes in bytes, cycled in a seeded order; imix = 60,590,1514 in 7:4:1
	Flows     int     // distinct flows, visited round robin
	Count     int     // frames in all, handshakes included
	Rate      float64 // frames per second; 0: as fast as the output takes them
	Seed      uint64
	IPv6      bool
	Handshake bool // TCP: each flow starts with SYN, SYN-ACK, ACK
	Src, Dst  netip.Prefix
	SrcPort   uint16 // first source port; flows take consecutive ports
	DstPort   uint16
}

// MaxCount bounds a generator, so a typo cannot flood a link forever.
const MaxCount = 1 << 40

// imix is the simple IMIX (7:4:1), as frame sizes without the 4-byte FCS.
var imix = []int{60, 60, 60, 60, 60, 60, 60, 590, 590, 590, 590, 1514}

// ParseSpec parses the text form of a Spec. Unset fields get defaults: udp, size=64 (or the
// smallest frame that holds the headers),
// flows=1, count=1000, src 192.0.2.0/24 (2001:db8:1::/64), dst 198.51.100.10
// (2001:db8:2::10), sport 10000, dport 9 (udp) or 80 (tcp).
func ParseSpec(text string) (Spec, error) {
	s := Spec{Proto: "udp", Flows: 1, Count: 1000, SrcPort: 10000}
	var src, dst string
	dport := -1
	for _, tok := range strings.Split(text, ",") {
		tok = strings.TrimSpace(tok)
		key, val, hasVal := strings.Cut(tok, "=")
		var err error
		switch key {
		case "":
			continue
		case "udp", "tcp", "icmp":
			s.Proto = key
		case "ipv6", "ip6", "v6":
			s.IPv6 = true
		case "ipv4", "ip4", "v4":
			s.IPv6 = false
		case "handshake":
			s.Handshake = true
		case "size":
			if val == "imix" {
				s.Sizes = imix
				break
			}
			s.Sizes = s.Sizes[:0:0]
			for _, v := range strings.Split(val, "/") {
				n, perr := strconv.Atoi(v)
				if perr != nil || n < 60 || n > 9018 {
					return s, fmt.Errorf("gen spec: size=%s: want imix or frame sizes of 60 to 9018 bytes separated by /", val)
				}
				s.Sizes = append(s.Sizes, n)
			}
		case "flows":
			s.Flows, err = positive(key, val, 1<<24)
		case "count":
			s.Count, err = positive(key, val, MaxCount)
		case "rate":
			s.Rate, err = strconv.ParseFloat(val, 64)
			if err != nil || s.Rate < 0 {
				err = fmt.Errorf("gen spec: rate=%s: want frames per second", val)
			}
		case "seed":
			s.Seed, err = strconv.ParseUint(val, 0, 64)
		case "src":
			src = val
		case "dst":
			dst = val
		case "sport", "dport":
			var n int
			n, err = positive(key, val, 65535)
			if key == "sport" {
				s.SrcPort = uint16(n)
			} else {
				dport = n
			}
		default:
			return s, fmt.Errorf("gen spec: unknown item %q (want udp|tcp|icmp, ipv6, handshake, size=, flows=, count=, rate=, seed=, src=, dst=, sport=, dport=)", tok)
		}
		if err != nil {
			return s, fmt.Errorf("gen spec: %s: %w", tok, err)
		}
		if hasVal != needsValue(key) {
			return s, fmt.Errorf("gen spec: %q: %s", tok, map[bool]string{true: "takes no value", false: "needs a value"}[hasVal])
		}
	}
	if s.Handshake && s.Proto != "tcp" {
		return s, fmt.Errorf("gen spec: handshake needs tcp")
	}
	switch {
	case dport >= 0:
		s.DstPort = uint16(dport)
	case s.Proto == "tcp":
		s.DstPort = 80
	default:
		s.DstPort = 9 // discard: tshark shows the payload as data, not as some protocol on 5000
	}
	var err error
	if s.Src, err = prefix(src, s.IPv6, "192.0.2.0/24", "2001:db8:1::/64"); err != nil {
		return s, fmt.Errorf("gen spec: src=%s: %w", src, err)
	}
	if s.Dst, err = prefix(dst, s.IPv6, "198.51.100.10/32", "2001:db8:2::10/128"); err != nil {
		return s, fmt.Errorf("gen spec: dst=%s: %w", dst, err)
	}
	if s.Src.Addr().Is6() != s.IPv6 || s.Dst.Addr().Is6() != s.IPv6 {
		return s, fmt.Errorf("gen spec: src and dst must both be IPv%s", map[bool]string{true: "6", false: "4"}[s.IPv6])
	}
	if s.Sizes == nil {
		s.Sizes = []int{max(64, s.headerLen())} // 64 bytes, or the smallest frame that holds the headers
	}
	if len(s.Sizes) == len(imix) && &s.Sizes[0] == &imix[0] {
		// IMIX's small frames are the smallest the protocol allows.
		s.Sizes = append([]int(nil), imix...)
		for i := range s.Sizes {
			s.Sizes[i] = max(s.Sizes[i], s.headerLen())
		}
	}
	if minSize := s.headerLen(); minSlice(s.Sizes) < minSize {
		return s, fmt.Errorf("gen spec: size %d is too small for %s over IPv%s (minimum %d)", minSlice(s.Sizes), s.Proto, map[bool]string{true: "6", false: "4"}[s.IPv6], minSize)
	}
	return s, nil
}

func needsValue(key string) bool {
	switch key {
	case "udp", "tcp", "icmp", "ipv6", "ip6", "v6", "ipv4", "ip4", "v4", "handshake":
		return false
	}
	return true
}

func positive(key, val string, limit int) (int, error) {
	n, err := strconv.Atoi(val)
	if err != nil || n < 1 || n > limit {
		return 0, fmt.Errorf("%s wants a whole number from 1 to %d", key, limit)
	}
	return n, nil
}

func prefix(s string, v6 bool, def4, def6 string) (netip.Prefix, error) {
	if s == "" {
		if v6 {
			s = def6
		} else {
			s = def4
		}
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

func minSlice(v []int) int {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

// headerLen is the smallest frame that holds the headers (and 4 bytes of payload, for a
// sequence stamp).
func (s Spec) headerLen() int {
	n := 14 + 20
	if s.IPv6 {
		n = 14 + 40
	}
	switch s.Proto {
	case "tcp":
		n += 20
	default:
		n += 8
	}
	return max(n, 60)
}
