package dump

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/framing"
)

// Filter selects packets with an expression in the syntax of pcap-filter(7), compiled to a
// small tree that is evaluated on a decoded Frame without allocating.
//
// Supported primitives:
//
//	ip ip6 arp tcp udp sctp icmp icmp6        protocol abbreviations
//	[ip|ip6|arp] [src|dst|src or dst|src and dst] host ADDR
//	ether [src|dst] host MAC,  ether src MAC,  ether dst MAC
//	[ip|ip6|arp] [src|dst] net CIDR           also net 192.0.2 (a /24), net A mask M
//	[ip|ip6|tcp|udp|sctp] [src|dst] port N    N a number or one of a few service names
//	[ip|ip6|tcp|udp|sctp] [src|dst] portrange A-B
//	ip proto N,  ip6 proto N,  proto N        N a number or \tcp, \udp, \icmp, \icmp6, \sctp
//	vlan [ID]
//	len OP N (OP one of > >= < <= = == !=),  less N (len <= N),  greater N (len >= N)
//	inbound, outbound, ifname NAME            stdpkt's own: the pcapng direction and interface
//	not !  and &&  or ||  ( )
//
// As in pcap-filter, "not" binds tightest and "and" and "or" have EQUAL precedence and
// group from the left: "a or b and c" is "(a or b) and c". A bare address or number after
// and/or takes the qualifiers of the primitive before it: "host A or B" is
// "host A or host B", "tcp port 80 or 443" is "tcp port 80 or tcp port 443". A bare address
// with nothing before it is a syntax error, as in pcap-filter: write "host A".
//
// Also as in pcap-filter, each "vlan" moves every primitive written after it (in the text,
// whatever the parentheses) one tag deeper: "vlan and udp" is UDP inside one tag, while a
// plain "udp" does not match a tagged frame. Where libpcap would read bytes at the wrong
// offset (a primitive deeper than the frame's tags), the primitive is false here.
//
// Not supported: packet data accessors (tcp[13] & 2), arithmetic other than on len, host
// names (no DNS: give addresses), gateway, broadcast, multicast, mpls and the other link
// types' keywords. Each is a usage error naming the word.
type Filter struct {
	root node
	text string
}

// Match reports whether the decoded frame f passes the filter. A nil Filter matches all.
func (fl *Filter) Match(f *Frame) bool {
	if fl == nil || fl.root == nil {
		return true
	}
	return fl.root.match(f)
}

// String is the parsed tree in prefix form, e.g. (and (or tcp udp) (port 80)): what the
// parser understood, for tests and -v.
func (fl *Filter) String() string {
	if fl == nil || fl.root == nil {
		return "all"
	}
	var b strings.Builder
	fl.root.str(&b)
	return b.String()
}

// Text returns the expression as given.
func (fl *Filter) Text() string { return fl.text }

// ParseFilter compiles expr. An empty expression selects every packet. Errors name the
// word and column at fault: filter: at 'foo' (column 10): expected ...
func ParseFilter(expr string) (*Filter, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return &Filter{text: expr}, nil
	}
	p := &parser{toks: toks, end: len(expr) + 1}
	root, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, p.errf("expected 'and', 'or' or the end of the expression")
	}
	return &Filter{root: root, text: expr}, nil
}

// ---- lexer ----

type tokKind uint8

const (
	tWord tokKind = iota
	tLParen
	tRParen
	tNot // ! (the word "not" is a tWord)
	tAnd // &&
	tOr  // ||
	tRel // > >= < <= = == !=
)

type token struct {
	kind tokKind
	text string
	col  int // 1-based byte column in the expression
}

// wordByte reports whether c can be part of a word: addresses (IPv4, IPv6, MAC, CIDR),
// numbers, port ranges, keywords and \tcp-style escapes.
func wordByte(c byte) bool {
	return !(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ')' || c == '!' ||
		c == '&' || c == '|' || c == '<' || c == '>' || c == '=')
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		col := i + 1
		two := ""
		if i+1 < len(s) {
			two = s[i : i+2]
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{tLParen, "(", col})
			i++
		case c == ')':
			toks = append(toks, token{tRParen, ")", col})
			i++
		case two == "&&":
			toks = append(toks, token{tAnd, two, col})
			i += 2
		case two == "||":
			toks = append(toks, token{tOr, two, col})
			i += 2
		case two == "!=" || two == ">=" || two == "<=" || two == "==":
			toks = append(toks, token{tRel, two, col})
			i += 2
		case c == '!':
			toks = append(toks, token{tNot, "!", col})
			i++
		case c == '>' || c == '<' || c == '=':
			toks = append(toks, token{tRel, s[i : i+1], col})
			i++
		case c == '&' || c == '|':
			return nil, fmt.Errorf("filter: at '%c' (column %d): expected '%c%c' (and, or); bitwise operators are not supported", c, col, c, c)
		default:
			j := i
			for j < len(s) && wordByte(s[j]) {
				j++
			}
			if strings.ContainsRune(s[i:j], '[') {
				return nil, fmt.Errorf("filter: at '%s' (column %d): packet data accessors (proto[offset]) are not supported", s[i:j], col)
			}
			toks = append(toks, token{tWord, s[i:j], col})
			i = j
		}
	}
	return toks, nil
}

// ---- parser ----

// Qualifiers, as pcap-filter names them: proto, dir, type.
type protoQ uint8

const (
	pNone protoQ = iota
	pEther
	pIP
	pIP6
	pARP
	pTCP
	pUDP
	pSCTP
	pICMP
	pICMP6
)

var protoWords = map[string]protoQ{"ether": pEther, "ip": pIP, "ip6": pIP6, "arp": pARP,
	"tcp": pTCP, "udp": pUDP, "sctp": pSCTP, "icmp": pICMP, "icmp6": pICMP6}

func (p protoQ) String() string {
	for w, q := range protoWords {
		if q == p {
			return w
		}
	}
	return ""
}

type dirQ uint8

const (
	dEither dirQ = iota // src or dst (the default)
	dSrc
	dDst
	dBoth // src and dst
)

// pick combines a test of the source and one of the destination as the qualifier says.
func (d dirQ) pick(src, dst bool) bool {
	switch d {
	case dSrc:
		return src
	case dDst:
		return dst
	case dBoth:
		return src && dst
	}
	return src || dst
}

func (d dirQ) String() string {
	return [...]string{"", "src ", "dst ", "src and dst "}[d]
}

type typeQ uint8

const (
	tyDefault typeQ = iota // host, unless the ID says otherwise
	tyHost
	tyNet
	tyPort
	tyPortrange
	tyProto
)

var typeWords = map[string]typeQ{"host": tyHost, "net": tyNet, "port": tyPort, "portrange": tyPortrange, "proto": tyProto}

type qual struct {
	proto protoQ
	dir   dirQ
	typ   typeQ
}

type parser struct {
	toks []token
	i    int
	end  int // column just past the expression, for errors at its end
	// vlans counts the vlan keywords read so far: every primitive after one looks one tag
	// deeper, as libpcap moves its offsets (see Filter).
	vlans int
	// last holds the qualifiers of the last qualified primitive, for bare IDs after and/or.
	last    qual
	hasLast bool
}

func (p *parser) peek(k int) *token {
	if p.i+k < len(p.toks) {
		return &p.toks[p.i+k]
	}
	return nil
}

func (p *parser) isWord(k int, words ...string) bool {
	t := p.peek(k)
	if t == nil || t.kind != tWord {
		return false
	}
	for _, w := range words {
		if strings.EqualFold(t.text, w) {
			return true
		}
	}
	return false
}

// errf reports a syntax error at the current token.
func (p *parser) errf(format string, args ...any) error {
	if t := p.peek(0); t != nil {
		return p.errAt(t, format, args...)
	}
	return fmt.Errorf("filter: at end of expression (column %d): "+format, append([]any{p.end}, args...)...)
}

func (p *parser) errAt(t *token, format string, args ...any) error {
	return fmt.Errorf("filter: at '%s' (column %d): "+format, append([]any{t.text, t.col}, args...)...)
}

func (p *parser) isAnd(k int) bool {
	t := p.peek(k)
	return t != nil && (t.kind == tAnd || t.kind == tWord && strings.EqualFold(t.text, "and"))
}

func (p *parser) isOr(k int) bool {
	t := p.peek(k)
	return t != nil && (t.kind == tOr || t.kind == tWord && strings.EqualFold(t.text, "or"))
}

// expr := term { (and|or) term }, left to right, and and or of equal precedence.
func (p *parser) expr() (node, error) {
	left, err := p.term()
	if err != nil {
		return nil, err
	}
	for p.isAnd(0) || p.isOr(0) {
		and := p.isAnd(0)
		p.i++
		right, err := p.term()
		if err != nil {
			return nil, err
		}
		if and {
			left = &andNode{left, right}
		} else {
			left = &orNode{left, right}
		}
	}
	return left, nil
}

const wantPrimitive = "expected a primitive (tcp, udp, host ADDR, net CIDR, port N, vlan, len > N, ...), 'not' or '('"

// term := (not|!) term | '(' expr ')' | primitive
func (p *parser) term() (node, error) {
	t := p.peek(0)
	switch {
	case t == nil:
		return nil, p.errf(wantPrimitive)
	case t.kind == tNot || p.isWord(0, "not"):
		p.i++
		n, err := p.term()
		if err != nil {
			return nil, err
		}
		return &notNode{n}, nil
	case t.kind == tLParen:
		p.i++
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		if r := p.peek(0); r == nil || r.kind != tRParen {
			return nil, p.errf("expected ')' to close the '(' at column %d", t.col)
		}
		p.i++
		return n, nil
	case t.kind == tWord && !p.isAnd(0) && !p.isOr(0):
		return p.primitive()
	}
	return nil, p.errf(wantPrimitive)
}

func (p *parser) number(what string, max uint64) (uint64, *token, error) {
	t := p.peek(0)
	if t == nil || t.kind != tWord {
		return 0, t, p.errf("expected %s", what)
	}
	v, err := strconv.ParseUint(t.text, 0, 64)
	if err != nil || v > max {
		return 0, t, p.errf("expected %s (0 to %d)", what, max)
	}
	p.i++
	return v, t, nil
}

func (p *parser) primitive() (node, error) {
	t := p.peek(0)
	w := strings.ToLower(t.text)
	switch w {
	case "len", "length":
		p.i++
		op := p.peek(0)
		if op == nil || op.kind != tRel {
			return nil, p.errf("expected a comparison after 'len' (>, >=, <, <=, =, !=)")
		}
		p.i++
		n, _, err := p.number("a length", 1<<32-1)
		if err != nil {
			return nil, err
		}
		return &lenNode{op: op.text, n: int(n)}, nil
	case "less", "greater":
		p.i++
		n, _, err := p.number("a length", 1<<32-1)
		if err != nil {
			return nil, err
		}
		if w == "less" {
			return &lenNode{op: "<=", n: int(n)}, nil
		}
		return &lenNode{op: ">=", n: int(n)}, nil
	case "vlan":
		p.i++
		n := &vlanNode{depth: p.vlans, id: -1}
		p.vlans++
		if nt := p.peek(0); nt != nil && nt.kind == tWord && nt.text[0] >= '0' && nt.text[0] <= '9' {
			id, _, err := p.number("a VLAN ID", 4095)
			if err != nil {
				return nil, err
			}
			n.id = int(id)
		}
		return n, nil
	case "inbound", "outbound":
		p.i++
		return &dirNode{out: w == "outbound"}, nil
	case "ifname", "on":
		p.i++
		nt := p.peek(0)
		if nt == nil || nt.kind != tWord {
			return nil, p.errf("expected an interface name")
		}
		p.i++
		return &ifnameNode{name: nt.text}, nil
	}
	switch w {
	case "gateway", "broadcast", "multicast", "mpls", "pppoed", "pppoes", "geneve", "vxlan", "rarp",
		"atalk", "aarp", "decnet", "iso", "stp", "ipx", "netbeui", "lat", "moprc", "mopdl", "igmp", "igrp",
		"pim", "vrrp", "carp", "ah", "esp", "fddi", "tr", "wlan", "type", "subtype", "llc", "protochain":
		return nil, p.errAt(t, "'%s' is not supported by stdpkt-dump's filter (see --help)", t.text)
	}

	// [proto] [dir] [type] ID, or a protocol abbreviation, or a bare ID.
	start := p.i
	var q qual
	qualified := false
	if pq, ok := protoWords[w]; ok {
		q.proto, qualified = pq, true
		p.i++
	}
	if p.isWord(0, "src", "dst") {
		first := strings.ToLower(p.peek(0).text)
		q.dir = map[string]dirQ{"src": dSrc, "dst": dDst}[first]
		p.i++
		// "src or dst" and "src and dst" are one qualifier when the next word is the other one.
		if (p.isAnd(0) || p.isOr(0)) && p.isWord(1, "src", "dst") && !p.isWord(1, first) {
			if p.isAnd(0) {
				q.dir = dBoth
			} else {
				q.dir = dEither
			}
			p.i += 2
		}
		qualified = true
	}
	if ty, ok := typeWords[strings.ToLower(textOf(p.peek(0)))]; ok && p.peek(0).kind == tWord {
		q.typ = ty
		qualified = true
		p.i++
	}
	switch {
	case qualified && p.i == start+1 && q.proto != pNone && !p.idNext():
		// A lone protocol name: the abbreviation (tcp is "ip proto 6 or ip6 proto 6").
		return p.abbrev(q.proto, &p.toks[start])
	case !qualified:
		// A bare ID: inherit the last qualifiers, as pcap-filter does after and/or; with
		// none before it, pcap-filter has a syntax error, and so do we.
		if !p.hasLast {
			if _, err := netip.ParseAddr(t.text); err == nil {
				return nil, p.errAt(t, "expected a primitive before the address (host %s, net %s)", t.text, t.text)
			}
			return nil, p.errAt(t, wantPrimitive)
		}
		q = p.last
	default:
		p.last, p.hasLast = q, true
	}
	id := p.peek(0)
	if id == nil || id.kind != tWord {
		return nil, p.errf("expected an address, a number or a name after '%s'", p.toks[p.i-1].text)
	}
	if q.proto == pEther && q.typ == tyDefault && q.dir == dEither {
		return nil, p.errAt(&p.toks[start], "expected 'host', 'src' or 'dst' after 'ether'")
	}
	p.i++
	return p.build(q, id, &p.toks[start])
}

func textOf(t *token) string {
	if t == nil {
		return ""
	}
	return t.text
}

// idNext reports whether the next token can be an ID (so a protocol name before it is a
// qualifier, not an abbreviation): a word that is not a keyword.
func (p *parser) idNext() bool {
	t := p.peek(0)
	if t == nil || t.kind != tWord {
		return false
	}
	switch strings.ToLower(t.text) {
	case "and", "or", "not":
		return false
	}
	return true
}

func (p *parser) abbrev(q protoQ, t *token) (node, error) {
	d := p.vlans
	switch q {
	case pIP:
		return &etherTypeNode{depth: d, t: layers.EthernetTypeIPv4, name: "ip"}, nil
	case pIP6:
		return &etherTypeNode{depth: d, t: layers.EthernetTypeIPv6, name: "ip6"}, nil
	case pARP:
		return &etherTypeNode{depth: d, t: layers.EthernetTypeARP, name: "arp"}, nil
	case pTCP:
		return &ipProtoNode{depth: d, v4: true, v6: true, p: layers.IPProtocolTCP, name: "tcp"}, nil
	case pUDP:
		return &ipProtoNode{depth: d, v4: true, v6: true, p: layers.IPProtocolUDP, name: "udp"}, nil
	case pSCTP:
		return &ipProtoNode{depth: d, v4: true, v6: true, p: layers.IPProtocolSCTP, name: "sctp"}, nil
	case pICMP:
		return &ipProtoNode{depth: d, v4: true, p: layers.IPProtocolICMPv4, name: "icmp"}, nil
	case pICMP6:
		return &ipProtoNode{depth: d, v6: true, p: layers.IPProtocolICMPv6, name: "icmp6"}, nil
	}
	return nil, p.errAt(t, "expected 'host', 'src' or 'dst' after 'ether'")
}

// services are the few port names accepted (there is no /etc/services lookup).
var services = map[string]uint16{"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25,
	"domain": 53, "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "pop3": 110, "ntp": 123,
	"imap": 143, "snmp": 161, "bgp": 179, "https": 443, "syslog": 514}

var ipProtos = map[string]layers.IPProtocol{"icmp": layers.IPProtocolICMPv4, "igmp": layers.IPProtocolIGMP,
	"tcp": layers.IPProtocolTCP, "udp": layers.IPProtocolUDP, "icmp6": layers.IPProtocolICMPv6,
	"sctp": layers.IPProtocolSCTP, "gre": layers.IPProtocolGRE, "esp": layers.IPProtocolESP, "ah": layers.IPProtocolAH}

// build makes the primitive for qualifiers q and ID id; head is the primitive's first token,
// named in qualifier errors.
func (p *parser) build(q qual, id, head *token) (node, error) {
	d := p.vlans
	bad := func(what string) error {
		return p.errAt(head, "'%s' modifier applied to %s", q.proto, what)
	}
	switch q.typ {
	case tyDefault, tyHost:
		if mac, err := net.ParseMAC(id.text); err == nil && len(mac) == 6 && strings.Count(id.text, ":")+strings.Count(id.text, "-") == 5 {
			if q.proto != pNone && q.proto != pEther {
				return nil, bad("an Ethernet address")
			}
			n := &etherHostNode{dir: q.dir}
			copy(n.mac[:], mac)
			return n, nil
		}
		if q.proto == pEther {
			return nil, p.errAt(id, "expected an Ethernet address (02:00:00:00:00:01)")
		}
		a, err := netip.ParseAddr(id.text)
		if err != nil || a.Zone() != "" {
			if q.typ == tyDefault && q.proto == pNone && !p.hasLast {
				return nil, p.errAt(id, wantPrimitive)
			}
			return nil, p.errAt(id, "expected an IPv4 or IPv6 address (host names are not resolved)")
		}
		return p.hostOrNet(q, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), id, head, true)
	case tyNet:
		pfx, err := parseNet(id.text)
		if err != nil {
			return nil, p.errAt(id, "%v", err)
		}
		if p.isWord(0, "mask") {
			p.i++
			mt := p.peek(0)
			if mt == nil || mt.kind != tWord {
				return nil, p.errf("expected a netmask after 'mask'")
			}
			m, err := netip.ParseAddr(mt.text)
			if err != nil || !m.Is4() || !pfx.Addr().Is4() || strings.Contains(id.text, "/") {
				return nil, p.errAt(mt, "expected an IPv4 netmask after an IPv4 network")
			}
			bits, ok := maskBits(m.As4())
			if !ok {
				return nil, p.errAt(mt, "not a contiguous netmask")
			}
			p.i++
			if pfx, err = exactPrefix(pfx.Addr(), bits, id.text+" mask "+mt.text); err != nil {
				return nil, p.errAt(id, "%v", err)
			}
		}
		return p.hostOrNet(q, pfx, id, head, false)
	case tyPort, tyPortrange:
		n := &portNode{depth: d, dir: q.dir, v4: true, v6: true}
		switch q.proto {
		case pNone:
			n.tcp, n.udp, n.sctp = true, true, true
		case pIP, pIP6:
			n.tcp, n.udp, n.sctp = true, true, true
			n.v4, n.v6 = q.proto == pIP, q.proto == pIP6
		case pTCP:
			n.tcp = true
		case pUDP:
			n.udp = true
		case pSCTP:
			n.sctp = true
		default:
			return nil, bad("port")
		}
		var err error
		if q.typ == tyPort {
			n.lo, err = p.port(id, id.text)
			n.hi = n.lo
		} else {
			lo, hi, ok := strings.Cut(id.text, "-")
			if !ok {
				return nil, p.errAt(id, "expected a port range A-B")
			}
			if n.lo, err = p.port(id, lo); err == nil {
				n.hi, err = p.port(id, hi)
			}
			if err == nil && n.lo > n.hi {
				n.lo, n.hi = n.hi, n.lo // libpcap takes the range either way round
			}
		}
		if err != nil {
			return nil, err
		}
		n.rng = q.typ == tyPortrange
		return n, nil
	case tyProto:
		if q.dir != dEither {
			return nil, p.errAt(head, "'%s' does not apply to 'proto'", strings.TrimSpace(q.dir.String()))
		}
		n := &ipProtoNode{depth: d}
		switch q.proto {
		case pNone:
			n.v4, n.v6 = true, true
		case pIP:
			n.v4 = true
		case pIP6:
			n.v6 = true
		default:
			return nil, bad("proto")
		}
		name := strings.ToLower(strings.TrimPrefix(id.text, `\`))
		if v, ok := ipProtos[name]; ok {
			n.p = v
		} else if v, err := strconv.ParseUint(id.text, 0, 8); err == nil {
			n.p = layers.IPProtocol(v)
		} else {
			return nil, p.errAt(id, "expected a protocol number (0 to 255) or name (\\tcp, \\udp, \\icmp, ...)")
		}
		n.name = q.proto.String() + " proto " + strconv.Itoa(int(n.p))
		if q.proto == pNone {
			n.name = "proto " + strconv.Itoa(int(n.p))
		}
		return n, nil
	}
	return nil, p.errAt(id, wantPrimitive)
}

func (p *parser) port(t *token, s string) (uint16, error) {
	if v, ok := services[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.ParseUint(s, 0, 16)
	if err != nil {
		return 0, p.errAt(t, "expected a port number (0 to 65535) or a service name (http, https, domain, ssh, ...)")
	}
	return uint16(v), nil
}

// hostOrNet makes a host (exact) or net primitive for pfx under the proto qualifier.
func (p *parser) hostOrNet(q qual, pfx netip.Prefix, id, head *token, host bool) (node, error) {
	n := &addrNode{depth: p.vlans, dir: q.dir, pfx: pfx, host: host}
	v4 := pfx.Addr().Is4()
	switch {
	case q.proto == pNone && v4:
		n.ip, n.arp = true, true
	case q.proto == pNone, q.proto == pIP && v4, q.proto == pIP6 && !v4:
		n.ip = true
	case q.proto == pARP && v4:
		n.arp = true
	case q.proto == pIP || q.proto == pIP6 || q.proto == pARP:
		return nil, p.errAt(id, "'%s' modifier applied to an IPv%d address", q.proto, map[bool]int{true: 4, false: 6}[v4])
	default:
		what := "host"
		if !host {
			what = "net"
		}
		return nil, p.errAt(head, "'%s' modifier applied to %s", q.proto, what)
	}
	n.proto = q.proto
	return n, nil
}

// parseNet reads a network: CIDR (192.0.2.0/24, 2001:db8::/32), a dotted prefix with fewer
// than four parts (192.0.2 is a /24, as in pcap-filter), or a plain address (a /32 or /128).
func parseNet(s string) (netip.Prefix, error) {
	if addr, bits, ok := strings.Cut(s, "/"); ok {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("expected a network (192.0.2.0/24, 2001:db8::/32)")
		}
		n, err := strconv.Atoi(bits)
		if err != nil || n < 0 || n > a.BitLen() {
			return netip.Prefix{}, fmt.Errorf("expected a prefix length 0 to %d", a.BitLen())
		}
		return exactPrefix(a, n, s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	parts := strings.Split(s, ".")
	if len(parts) < 4 {
		var b [4]byte
		ok := true
		for i, part := range parts {
			v, err := strconv.ParseUint(part, 10, 8)
			if err != nil {
				ok = false
				break
			}
			b[i] = byte(v)
		}
		if ok {
			return netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts)), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("expected a network (192.0.2.0/24, 2001:db8::/32; host names are not resolved)")
}

// exactPrefix refuses host bits set under the mask, as libpcap does.
func exactPrefix(a netip.Addr, bits int, text string) (netip.Prefix, error) {
	pfx := netip.PrefixFrom(a, bits)
	if pfx.Masked() != pfx {
		return netip.Prefix{}, fmt.Errorf("non-network bits set in \"%s\"", text)
	}
	return pfx, nil
}

func maskBits(m [4]byte) (int, bool) {
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	return n, v == 0
}

// ---- the tree ----

type node interface {
	match(f *Frame) bool
	str(b *strings.Builder)
}

type andNode struct{ l, r node }
type orNode struct{ l, r node }
type notNode struct{ n node }

func (n *andNode) match(f *Frame) bool { return n.l.match(f) && n.r.match(f) }
func (n *orNode) match(f *Frame) bool  { return n.l.match(f) || n.r.match(f) }
func (n *notNode) match(f *Frame) bool { return !n.n.match(f) }

func (n *andNode) str(b *strings.Builder) { binStr(b, "and", n.l, n.r) }
func (n *orNode) str(b *strings.Builder)  { binStr(b, "or", n.l, n.r) }
func (n *notNode) str(b *strings.Builder) {
	b.WriteString("(not ")
	n.n.str(b)
	b.WriteByte(')')
}

func binStr(b *strings.Builder, op string, l, r node) {
	b.WriteString("(" + op + " ")
	l.str(b)
	b.WriteByte(' ')
	r.str(b)
	b.WriteByte(')')
}

// depthStr marks a primitive that looks inside vlan tags, e.g. udp@1.
func depthStr(b *strings.Builder, depth int) {
	if depth > 0 {
		b.WriteString("@" + strconv.Itoa(depth))
	}
}

// at reports whether a primitive written after depth vlan keywords sees the frame's network
// layer: the frame must have exactly that many tags (see Filter).
func (f *Frame) at(depth int) bool { return f.Known && f.NTags == depth }

type etherTypeNode struct {
	depth int
	t     layers.EthernetType
	name  string
}

func (n *etherTypeNode) match(f *Frame) bool { return f.at(n.depth) && f.InnerType == n.t }
func (n *etherTypeNode) str(b *strings.Builder) {
	b.WriteString(n.name)
	depthStr(b, n.depth)
}

type ipProtoNode struct {
	depth  int
	v4, v6 bool
	p      layers.IPProtocol
	name   string
}

func (n *ipProtoNode) match(f *Frame) bool {
	if !f.at(n.depth) {
		return false
	}
	switch f.Net {
	case NetIPv4:
		return n.v4 && f.Proto == n.p
	case NetIPv6:
		// libpcap looks at the next header and, if that is a fragment header, at its next.
		return n.v6 && (f.Proto == n.p || f.Proto == layers.IPProtocolIPv6Fragment && f.FragNext == n.p)
	}
	return false
}
func (n *ipProtoNode) str(b *strings.Builder) {
	b.WriteString(n.name)
	depthStr(b, n.depth)
}

type addrNode struct {
	depth   int
	dir     dirQ
	pfx     netip.Prefix
	host    bool
	ip, arp bool // which network layers it applies to
	proto   protoQ
}

func (n *addrNode) match(f *Frame) bool {
	if !f.at(n.depth) {
		return false
	}
	switch f.Net {
	case NetIPv4, NetIPv6:
		if !n.ip {
			return false
		}
	case NetARP:
		if !n.arp {
			return false
		}
	default:
		return false
	}
	src, dst := n.pfx.Contains(f.Src), n.pfx.Contains(f.Dst)
	return n.dir.pick(src, dst)
}
func (n *addrNode) str(b *strings.Builder) {
	b.WriteByte('(')
	if n.proto != pNone {
		b.WriteString(n.proto.String() + " ")
	}
	b.WriteString(n.dir.String())
	if n.host {
		b.WriteString("host " + n.pfx.Addr().String())
	} else {
		b.WriteString("net " + n.pfx.String())
	}
	b.WriteByte(')')
	depthStr(b, n.depth)
}

type portNode struct {
	depth          int
	dir            dirQ
	lo, hi         uint16
	rng            bool
	tcp, udp, sctp bool
	v4, v6         bool
}

func (n *portNode) match(f *Frame) bool {
	if !f.at(n.depth) || !f.HasPorts {
		return false
	}
	if f.Net == NetIPv4 && !n.v4 || f.Net == NetIPv6 && !n.v6 {
		return false
	}
	switch f.Proto {
	case layers.IPProtocolTCP:
		if !n.tcp {
			return false
		}
	case layers.IPProtocolUDP:
		if !n.udp {
			return false
		}
	case layers.IPProtocolSCTP:
		if !n.sctp {
			return false
		}
	default:
		return false
	}
	src := f.SrcPort >= n.lo && f.SrcPort <= n.hi
	dst := f.DstPort >= n.lo && f.DstPort <= n.hi
	return n.dir.pick(src, dst)
}
func (n *portNode) str(b *strings.Builder) {
	b.WriteByte('(')
	switch {
	case n.tcp && n.udp && n.sctp && n.v4 && !n.v6:
		b.WriteString("ip ")
	case n.tcp && n.udp && n.sctp && n.v6 && !n.v4:
		b.WriteString("ip6 ")
	case n.tcp && !n.udp:
		b.WriteString("tcp ")
	case n.udp && !n.tcp:
		b.WriteString("udp ")
	case n.sctp && !n.tcp:
		b.WriteString("sctp ")
	}
	b.WriteString(n.dir.String())
	if n.rng {
		b.WriteString("portrange " + strconv.Itoa(int(n.lo)) + "-" + strconv.Itoa(int(n.hi)))
	} else {
		b.WriteString("port " + strconv.Itoa(int(n.lo)))
	}
	b.WriteByte(')')
	depthStr(b, n.depth)
}

type vlanNode struct {
	depth int
	id    int // -1: any
}

func (n *vlanNode) match(f *Frame) bool {
	return f.Known && f.NTags > n.depth && (n.id < 0 || int(f.Tags[n.depth].ID) == n.id)
}
func (n *vlanNode) str(b *strings.Builder) {
	b.WriteString("vlan")
	if n.id >= 0 {
		b.WriteString(" " + strconv.Itoa(n.id))
	}
	depthStr(b, n.depth)
}

type lenNode struct {
	op string
	n  int
}

func (n *lenNode) match(f *Frame) bool {
	l := f.Packet.Length
	switch n.op {
	case ">":
		return l > n.n
	case ">=":
		return l >= n.n
	case "<":
		return l < n.n
	case "<=":
		return l <= n.n
	case "!=":
		return l != n.n
	}
	return l == n.n
}
func (n *lenNode) str(b *strings.Builder) {
	b.WriteString("(len " + n.op + " " + strconv.Itoa(n.n) + ")")
}

type etherHostNode struct {
	dir dirQ
	mac [6]byte
}

func (n *etherHostNode) match(f *Frame) bool {
	if !f.Ether {
		return false
	}
	src, dst := bytes.Equal(f.SrcMAC, n.mac[:]), bytes.Equal(f.DstMAC, n.mac[:])
	return n.dir.pick(src, dst)
}
func (n *etherHostNode) str(b *strings.Builder) {
	b.WriteString("(ether " + n.dir.String() + "host " + net.HardwareAddr(n.mac[:]).String() + ")")
}

type dirNode struct{ out bool }

func (n *dirNode) match(f *Frame) bool {
	want := framing.DirInbound
	if n.out {
		want = framing.DirOutbound
	}
	return f.Packet.Direction == want
}
func (n *dirNode) str(b *strings.Builder) {
	if n.out {
		b.WriteString("outbound")
	} else {
		b.WriteString("inbound")
	}
}

type ifnameNode struct{ name string }

func (n *ifnameNode) match(f *Frame) bool {
	return f.Packet.Interface != nil && f.Packet.Interface.Name == n.name
}
func (n *ifnameNode) str(b *strings.Builder) { b.WriteString("(ifname " + n.name + ")") }
