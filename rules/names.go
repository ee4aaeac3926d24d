package rules

import (
	"fmt"
	"strconv"
	"strings"
)

// protoByName maps the protocol names iptables accepts (from /etc/protocols) to numbers.
var protoByName = map[string]uint8{
	"icmp": ProtoICMP, "tcp": ProtoTCP, "udp": ProtoUDP,
	"ipv6-icmp": ProtoICMPv6, "icmpv6": ProtoICMPv6, "icmp6": ProtoICMPv6,
	"igmp": 2, "gre": 47, "esp": 50, "ah": 51, "sctp": 132, "udplite": 136,
}

func protoName(p uint8) string {
	switch p {
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "ipv6-icmp"
	}
	return strconv.Itoa(int(p))
}

// parseProto returns the protocol number, or has=false for "all".
func parseProto(s string) (p uint8, has bool, err error) {
	s = strings.ToLower(s)
	if s == "all" || s == "0" {
		return 0, false, nil
	}
	if p, ok := protoByName[s]; ok {
		return p, true, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, false, fmt.Errorf("unknown protocol %q", s)
	}
	return uint8(n), n != 0, nil // 0 is "all", however it is written ("00")
}

type icmpName struct {
	typ  uint8
	code int16
}

// icmpTypes are the names `iptables -p icmp -h` lists.
var icmpTypes = map[string]icmpName{
	"echo-reply":                 {0, -1},
	"pong":                       {0, -1},
	"destination-unreachable":    {3, -1},
	"network-unreachable":        {3, 0},
	"host-unreachable":           {3, 1},
	"protocol-unreachable":       {3, 2},
	"port-unreachable":           {3, 3},
	"fragmentation-needed":       {3, 4},
	"source-route-failed":        {3, 5},
	"network-unknown":            {3, 6},
	"host-unknown":               {3, 7},
	"network-prohibited":         {3, 9},
	"host-prohibited":            {3, 10},
	"TOS-network-unreachable":    {3, 11},
	"TOS-host-unreachable":       {3, 12},
	"communication-prohibited":   {3, 13},
	"host-precedence-violation":  {3, 14},
	"precedence-cutoff":          {3, 15},
	"source-quench":              {4, -1},
	"redirect":                   {5, -1},
	"network-redirect":           {5, 0},
	"host-redirect":              {5, 1},
	"TOS-network-redirect":       {5, 2},
	"TOS-host-redirect":          {5, 3},
	"echo-request":               {8, -1},
	"ping":                       {8, -1},
	"router-advertisement":       {9, -1},
	"router-solicitation":        {10, -1},
	"time-exceeded":              {11, -1},
	"ttl-exceeded":               {11, -1},
	"ttl-zero-during-transit":    {11, 0},
	"ttl-zero-during-reassembly": {11, 1},
	"parameter-problem":          {12, -1},
	"ip-header-bad":              {12, 0},
	"required-option-missing":    {12, 1},
	"timestamp-request":          {13, -1},
	"timestamp-reply":            {14, -1},
	"address-mask-request":       {17, -1},
	"address-mask-reply":         {18, -1},
}

// icmp6Types are the names `ip6tables -p ipv6-icmp -h` lists.
var icmp6Types = map[string]icmpName{
	"destination-unreachable":    {1, -1},
	"no-route":                   {1, 0},
	"communication-prohibited":   {1, 1},
	"beyond-scope":               {1, 2},
	"address-unreachable":        {1, 3},
	"port-unreachable":           {1, 4},
	"failed-policy":              {1, 5},
	"reject-route":               {1, 6},
	"packet-too-big":             {2, -1},
	"time-exceeded":              {3, -1},
	"ttl-exceeded":               {3, -1},
	"ttl-zero-during-transit":    {3, 0},
	"ttl-zero-during-reassembly": {3, 1},
	"parameter-problem":          {4, -1},
	"bad-header":                 {4, 0},
	"unknown-header-type":        {4, 1},
	"unknown-option":             {4, 2},
	"echo-request":               {128, -1},
	"ping":                       {128, -1},
	"echo-reply":                 {129, -1},
	"pong":                       {129, -1},
	"router-solicitation":        {133, -1},
	"router-advertisement":       {134, -1},
	"neighbour-solicitation":     {135, -1},
	"neighbor-solicitation":      {135, -1},
	"neighbour-advertisement":    {136, -1},
	"neighbor-advertisement":     {136, -1},
	"redirect":                   {137, -1},
}

// parseICMPType parses "any", a name, "TYPE" or "TYPE/CODE".
func parseICMPType(s string, v6 bool) (ICMPMatch, error) {
	m := ICMPMatch{V6: v6, Code: -1}
	if s == "any" {
		m.Any = true
		return m, nil
	}
	names := icmpTypes
	if v6 {
		names = icmp6Types
	}
	if n, ok := names[s]; ok {
		m.Type, m.Code = n.typ, n.code
		return m, nil
	}
	t, c, hasCode := strings.Cut(s, "/")
	tn, err := strconv.ParseUint(t, 10, 8)
	if err != nil {
		return m, fmt.Errorf("unknown ICMP type %q", s)
	}
	m.Type = uint8(tn)
	if hasCode {
		cn, err := strconv.ParseUint(c, 10, 8)
		if err != nil {
			return m, fmt.Errorf("bad ICMP code in %q", s)
		}
		m.Code = int16(cn)
	}
	return m, nil
}

// rejectByName maps --reject-with values (long and short iptables spellings) to answers.
var rejectByName4 = map[string]RejectWith{
	"icmp-net-unreachable": RejectNetUnreachable, "net-unreach": RejectNetUnreachable,
	"icmp-host-unreachable": RejectHostUnreachable, "host-unreach": RejectHostUnreachable,
	"icmp-port-unreachable": RejectPortUnreachable, "port-unreach": RejectPortUnreachable,
	"icmp-proto-unreachable": RejectProtoUnreachable, "proto-unreach": RejectProtoUnreachable,
	"icmp-net-prohibited": RejectNetProhibited, "net-prohib": RejectNetProhibited,
	"icmp-host-prohibited": RejectHostProhibited, "host-prohib": RejectHostProhibited,
	"icmp-admin-prohibited": RejectAdminProhibited, "admin-prohib": RejectAdminProhibited,
	"tcp-reset": RejectTCPReset,
}

var rejectByName6 = map[string]RejectWith{
	"icmp6-no-route": RejectNoRoute, "no-route": RejectNoRoute,
	"icmp6-adm-prohibited": RejectAdminProhibited, "adm-prohibited": RejectAdminProhibited,
	"icmp6-addr-unreachable": RejectHostUnreachable, "addr-unreach": RejectHostUnreachable,
	"icmp6-port-unreachable": RejectPortUnreachable, "port-unreach": RejectPortUnreachable,
	"tcp-reset": RejectTCPReset,
}

// TCP flag bits, as in the TCP header.
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
)

var tcpFlagNames = []struct {
	f    uint8
	name string
}{{FlagSYN, "SYN"}, {FlagACK, "ACK"}, {FlagFIN, "FIN"}, {FlagRST, "RST"}, {FlagURG, "URG"}, {FlagPSH, "PSH"}}

func parseTCPFlags(s string) (uint8, error) {
	switch s {
	case "ALL":
		return 0x3f, nil
	case "NONE":
		return 0, nil
	}
	var f uint8
	for _, n := range strings.Split(s, ",") {
		found := false
		for _, tf := range tcpFlagNames {
			if strings.EqualFold(n, tf.name) {
				f |= tf.f
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown TCP flag %q", n)
		}
	}
	return f, nil
}

func flagNames(f uint8) string {
	if f == 0 {
		return "NONE"
	}
	var names []string
	for _, tf := range tcpFlagNames {
		if f&tf.f != 0 {
			names = append(names, tf.name)
		}
	}
	return strings.Join(names, ",")
}

func parseState(s string) (State, error) {
	var st State
	for _, n := range strings.Split(s, ",") {
		found := false
		for _, sn := range stateNames {
			if strings.EqualFold(n, sn.name) {
				st |= sn.s
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown state %q (want NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED)", n)
		}
	}
	return st, nil
}

// parsePort parses a port number. Service names are refused: iptables-save writes numbers,
// and a name would depend on this machine's /etc/services.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q (want a number 0-65535)", s)
	}
	return uint16(n), nil
}

// parsePortRange parses "P", "LO:HI", "LO-HI", ":HI" or "LO:".
func parsePortRange(s string) (PortRange, error) {
	sep := strings.IndexAny(s, ":-")
	if sep < 0 {
		p, err := parsePort(s)
		return PortRange{p, p}, err
	}
	lo, hi := uint16(0), uint16(65535)
	var err error
	if a := s[:sep]; a != "" {
		if lo, err = parsePort(a); err != nil {
			return PortRange{}, err
		}
	}
	if b := s[sep+1:]; b != "" {
		if hi, err = parsePort(b); err != nil {
			return PortRange{}, err
		}
	}
	if lo > hi {
		return PortRange{}, fmt.Errorf("bad port range %q: %d > %d", s, lo, hi)
	}
	return PortRange{lo, hi}, nil
}

// parsePortList parses a comma-separated list of ports and ranges (multiport allows 15).
func parsePortList(s string, max int) ([]PortRange, error) {
	parts := strings.Split(s, ",")
	if len(parts) > max {
		return nil, fmt.Errorf("too many ports in %q (at most %d)", s, max)
	}
	out := make([]PortRange, 0, len(parts))
	for _, p := range parts {
		r, err := parsePortRange(p)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
