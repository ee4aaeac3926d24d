package osinst

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/rules"
)

// transportProto returns the packet's transport protocol number.
func transportProto(pkt *stack.PacketBuffer) uint8 {
	if pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber {
		if h := pkt.NetworkHeader().Slice(); len(h) >= header.IPv4MinimumSize {
			return header.IPv4(h).Protocol()
		}
	}
	return uint8(pkt.TransportProtocolNumber)
}

// notProtoMatcher matches packets of any protocol but one (! -p).
type notProtoMatcher struct{ proto uint8 }

// Match implements stack.Matcher.
func (m notProtoMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	return transportProto(pkt) != m.proto, false
}

// ports returns a TCP or UDP packet's ports; ok is false when the packet has no transport
// header (a later fragment) or it is too short to hold them.
func ports(pkt *stack.PacketBuffer) (src, dst uint16, ok bool) {
	switch pkt.TransportProtocolNumber {
	case header.TCPProtocolNumber, header.UDPProtocolNumber:
	default:
		return 0, 0, false
	}
	h := pkt.TransportHeader().Slice()
	if len(h) < 4 {
		return 0, 0, false
	}
	return uint16(h[0])<<8 | uint16(h[1]), uint16(h[2])<<8 | uint16(h[3]), true
}

// portMatcher is --sport/--dport and -m multiport --sports/--dports/--ports.
type portMatcher struct{ src, dst, either *rules.PortMatch }

// Match implements stack.Matcher. A packet without ports does not match; iptables hot-drops a
// truncated header, which the instance has already dropped as malformed.
func (m *portMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	sp, dp, ok := ports(pkt)
	if !ok {
		return false, false
	}
	if m.src != nil && !m.src.Match(sp) || m.dst != nil && !m.dst.Match(dp) {
		return false, false
	}
	if e := m.either; e != nil {
		hit := false
		for _, r := range e.Ranges {
			if r.Contains(sp) || r.Contains(dp) {
				hit = true
				break
			}
		}
		if hit == e.Not {
			return false, false
		}
	}
	return true, false
}

// tcpFlagsMatcher is --tcp-flags and --syn.
type tcpFlagsMatcher struct{ m *rules.TCPFlagsMatch }

// Match implements stack.Matcher.
func (m *tcpFlagsMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	h := pkt.TransportHeader().Slice()
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber || len(h) < header.TCPMinimumSize {
		return false, false
	}
	return m.m.Match(h[13] & 0x3f), false
}

// icmpMatcher is --icmp-type and --icmpv6-type.
type icmpMatcher struct{ m *rules.ICMPMatch }

// Match implements stack.Matcher.
func (m *icmpMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	want := header.ICMPv4ProtocolNumber
	if m.m.V6 {
		want = header.ICMPv6ProtocolNumber
	}
	h := pkt.TransportHeader().Slice()
	if pkt.TransportProtocolNumber != want || len(h) < 2 {
		return false, false
	}
	return m.m.Match(h[0], h[1]), false
}

// stateMatcher is -m conntrack --ctstate and -m state --state.
type stateMatcher struct{ m *rules.StateMatch }

// Match implements stack.Matcher.
func (m *stateMatcher) Match(_ stack.Hook, pkt *stack.PacketBuffer, _, _ string) (bool, bool) {
	return (connState(pkt)&m.m.States != 0) != m.m.Not, false
}

// connState maps netstack's connection tracking to iptables' states. netstack reports a TCP
// connection as NEW until its handshake completes, even for the SYN-ACK; Linux calls every
// packet in the reply direction ESTABLISHED, so a reply is ESTABLISHED here too. An ICMP error
// that netstack ties to a connection is RELATED. A packet netstack does not track (bad
// checksum, unsolicited echo reply or ICMP error, protocols other than TCP, UDP and ICMP echo)
// is INVALID.
func connState(pkt *stack.PacketBuffer) rules.State {
	if !pkt.IsConnTrackConfigured() || invalidForLinux(pkt) {
		return rules.StateInvalid
	}
	if isICMPError(pkt) {
		return rules.StateRelated
	}
	reply := pkt.IsReplyPacket()
	var info stack.ConnTrackInfo
	if !pkt.FillConnTrackInfo(stack.ConnTrackInfoOpts{FillState: true, UseReplyDir: reply}, &info) {
		return rules.StateInvalid
	}
	switch info.State {
	case stack.ConnTrackStateInvalid:
		return rules.StateInvalid
	case stack.ConnTrackStateNew:
		if reply {
			return rules.StateEstablished
		}
		return rules.StateNew
	}
	return rules.StateEstablished
}

// tcpFlagsValid reports whether Linux conntrack takes a TCP flag byte (tcp_valid_flags, which
// leaves PSH, ECE and CWR out): SYN+FIN, no flags, FIN+PSH+URG (XMAS) and the like, which no
// TCP sends, are INVALID.
func tcpFlagsValid(flags uint8) bool {
	const fin, syn, rst, ack, urg = 0x01, 0x02, 0x04, 0x10, 0x20
	switch flags &^ (0x08 | 0x40 | 0x80) {
	case syn, syn | urg, syn | ack, rst, rst | ack, fin | ack, fin | ack | urg, ack, ack | urg:
		return true
	}
	return false
}

// invalidForLinux reports whether Linux conntrack calls a packet INVALID that netstack's
// conntrack tracks: a TCP segment with impossible flags, an ICMP or ICMPv6 message with a bad
// checksum (netstack checks only TCP's and UDP's), or an ICMP error quoting a header that
// cannot hold the ports (a header length under 20, a fragment other than the first).
func invalidForLinux(pkt *stack.PacketBuffer) bool {
	th := pkt.TransportHeader().Slice()
	switch pkt.TransportProtocolNumber {
	case header.TCPProtocolNumber:
		return len(th) >= header.TCPMinimumSize && !tcpFlagsValid(th[13])
	case header.ICMPv4ProtocolNumber:
		if pkt.NetworkProtocolNumber != header.IPv4ProtocolNumber || len(th) < header.ICMPv4MinimumSize {
			return false
		}
		if checksum.Checksum(th, pkt.Data().Checksum()) != 0xffff {
			return true
		}
		if isICMPError(pkt) {
			if q, ok := pkt.Data().PullUp(header.IPv4MinimumSize); ok {
				return q[0]&0x0f < 5 || binary.BigEndian.Uint16(q[6:])&0x1fff != 0
			}
		}
	case header.ICMPv6ProtocolNumber:
		if pkt.NetworkProtocolNumber != header.IPv6ProtocolNumber || len(th) < header.ICMPv6MinimumSize {
			return false
		}
		n := pkt.Network()
		return header.ICMPv6(th).Checksum() != header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: th,
			Src: n.SourceAddress(), Dst: n.DestinationAddress(), PayloadCsum: pkt.Data().Checksum(), PayloadLen: pkt.Data().Size()})
	}
	return false
}

// isICMPError reports whether the packet is an ICMP or ICMPv6 error message.
func isICMPError(pkt *stack.PacketBuffer) bool {
	h := pkt.TransportHeader().Slice()
	if len(h) < 1 {
		return false
	}
	switch pkt.TransportProtocolNumber {
	case header.ICMPv4ProtocolNumber:
		switch header.ICMPv4Type(h[0]) {
		case header.ICMPv4DstUnreachable, header.ICMPv4SrcQuench, header.ICMPv4Redirect,
			header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
			return true
		}
	case header.ICMPv6ProtocolNumber:
		return h[0] < 128
	}
	return false
}
