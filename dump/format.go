package dump

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/framing"
)

// Style says how lines are printed.
type Style struct {
	// Link prints the link layer: MACs, ethertype, VLAN tags (tcpdump -e).
	Link bool
	// Verbose adds IP TTL, id, flags, total length and checksum validity (tcpdump -v, on
	// one line).
	Verbose bool
	// Epoch prints seconds.nanoseconds since the epoch instead of the local time of day.
	Epoch bool
	// Location is the zone of the time of day; nil is time.Local, as tcpdump.
	Location *time.Location
}

// AppendLine appends the last decoded frame as one line (with its newline), in the spirit of
// tcpdump -n: the time, the interface and direction when known, then the packet.
// Sequence numbers are absolute (tcpdump -S) and nothing above the transport is decoded.
func (d *Decoder) AppendLine(b []byte, st *Style) []byte {
	f := &d.f
	p := f.Packet
	b = appendTime(b, p.Timestamp, st)
	b = append(b, ' ')
	if p.Interface != nil && p.Interface.Name != "" {
		b = append(b, p.Interface.Name...)
		b = append(b, ' ')
	}
	if dir := d.direction(); dir != "" {
		b = append(b, dir...)
		b = append(b, ' ')
	}
	b = d.appendBody(b, st)
	return append(b, '\n')
}

func appendTime(b []byte, ns int64, st *Style) []byte {
	if st.Epoch {
		sec, frac := ns/1e9, ns%1e9
		if frac < 0 {
			sec, frac = sec-1, frac+1e9
		}
		b = strconv.AppendInt(b, sec, 10)
		b = append(b, '.')
		return appendPadded(b, uint64(frac), 9)
	}
	loc := st.Location
	if loc == nil {
		loc = time.Local
	}
	return time.Unix(0, ns).In(loc).AppendFormat(b, "15:04:05.000000")
}

// appendPadded appends v in decimal with at least width digits.
func appendPadded(b []byte, v uint64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendUint(tmp[:0], v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// direction names the packet's direction as tcpdump does for Linux cooked captures: the
// pcapng flags first, else the SLL packet type.
func (d *Decoder) direction() string {
	f := &d.f
	switch f.Packet.Direction {
	case framing.DirInbound:
		return "In"
	case framing.DirOutbound:
		return "Out"
	}
	var t uint16
	switch {
	case f.has(layers.LayerTypeLinuxSLL):
		t = uint16(d.sll.PacketType)
	case f.has(layers.LayerTypeLinuxSLL2):
		t = uint16(d.sll2.PacketType)
	default:
		return ""
	}
	switch t {
	case 0:
		return "In"
	case 1:
		return "B"
	case 2:
		return "M"
	case 3:
		return "P"
	case 4:
		return "Out"
	}
	return ""
}

func (d *Decoder) appendBody(b []byte, st *Style) []byte {
	f := &d.f
	if !f.Known {
		b = append(b, "link type "...)
		b = strconv.AppendUint(b, uint64(f.Link), 10)
		b = append(b, ", "...)
		b = strconv.AppendInt(b, int64(f.Packet.Length), 10)
		return append(b, " bytes"...)
	}
	linkDone := false
	if st.Link {
		b, linkDone = d.appendLink(b, true), true
		if f.Link == framing.LinkRaw || f.Link == framing.LinkIPv4 || f.Link == framing.LinkIPv6 {
			b = append(b, "ip: "...) // what tcpdump -e prints for raw IP
		}
	}
	prefix := !st.Link
	switch f.Net {
	case NetIPv4:
		return d.appendIPv4(b, st, prefix)
	case NetIPv6:
		return d.appendIPv6(b, st, prefix)
	case NetARP:
		return d.appendARP(b, st, prefix)
	}
	// Nothing above the link layer was decoded: say what is there.
	if f.Err == nil || f.LinkLen > 0 && f.InnerType != layers.EthernetTypeIPv4 && f.InnerType != layers.EthernetTypeIPv6 && f.InnerType != layers.EthernetTypeARP {
		if !linkDone {
			b = d.appendLink(b, false)
		}
	} else if prefix {
		switch f.InnerType {
		case layers.EthernetTypeIPv4:
			b = append(b, "IP "...)
		case layers.EthernetTypeIPv6:
			b = append(b, "IP6 "...)
		case layers.EthernetTypeARP:
			b = append(b, "ARP, "...)
		}
	}
	return appendErr(b, f.Err)
}

// appendErr appends the malformed marker when err is set.
func appendErr(b []byte, err error) []byte {
	if err == nil {
		return b
	}
	if len(b) > 0 && b[len(b)-1] != ' ' {
		b = append(b, ' ')
	}
	b = append(b, "[malformed: "...)
	b = append(b, err.Error()...)
	return append(b, ']')
}

// appendLink appends the link header as tcpdump -e does; head says a packet follows
// (", length N: " and the tags) rather than ending the line with the length.
func (d *Decoder) appendLink(b []byte, head bool) []byte {
	f := &d.f
	switch {
	case f.has(layers.LayerTypeEthernet):
		b = appendMAC(b, f.SrcMAC)
		b = append(b, " > "...)
		b = appendMAC(b, f.DstMAC)
		b = append(b, ", "...)
	case f.has(layers.LayerTypeLinuxSLL2):
		b = append(b, "ifindex "...)
		b = strconv.AppendUint(b, uint64(d.sll2.InterfaceIndex), 10)
		b = append(b, ' ')
		b = appendMAC(b, d.sll2.Addr)
		b = append(b, ' ')
	case f.has(layers.LayerTypeLinuxSLL):
		b = appendMAC(b, d.sll.Addr)
		b = append(b, ' ')
	default:
		if f.Link == framing.LinkEthernet || f.Link == framing.LinkLinuxSLL || f.Link == framing.LinkLinuxSLL2 {
			return b // the link header itself is malformed: the marker says so
		}
		return b // raw IP has no link header
	}
	b = appendEtherType(b, f.EtherType)
	b = append(b, ", length "...)
	b = strconv.AppendInt(b, int64(f.Packet.Length), 10)
	if !head {
		return b
	}
	b = append(b, ": "...)
	for i := range f.NTags {
		t := &f.Tags[i]
		b = append(b, "vlan "...)
		b = strconv.AppendUint(b, uint64(t.ID), 10)
		b = append(b, ", p "...)
		b = strconv.AppendUint(b, uint64(t.Priority), 10)
		b = append(b, ", "...)
		b = appendEtherType(b, t.Type)
		b = append(b, ", "...)
	}
	return b
}

// appendMAC appends a hardware address without allocating (net.HardwareAddr.String does).
func appendMAC(b []byte, mac []byte) []byte {
	const hex = "0123456789abcdef"
	for i, c := range mac {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[c>>4], hex[c&15])
	}
	return b
}

func appendHex(b []byte, v uint64, digits int) []byte {
	const hex = "0123456789abcdef"
	b = append(b, "0x"...)
	for i := digits - 1; i >= 0; i-- {
		b = append(b, hex[(v>>(4*uint(i)))&15])
	}
	return b
}

var etherTypeNames = map[layers.EthernetType]string{
	0x0800: "IPv4", 0x86dd: "IPv6", 0x0806: "ARP", 0x8035: "Reverse ARP", 0x8100: "802.1Q",
	0x88a8: "802.1Q-QinQ", 0x9100: "802.1Q-9100", 0x88cc: "LLDP", 0x8847: "MPLS unicast",
	0x8848: "MPLS multicast", 0x888e: "EAPOL", 0x8863: "PPPoE D", 0x8864: "PPPoE S", 0x88f7: "PTP",
}

func appendEtherType(b []byte, t layers.EthernetType) []byte {
	if t < 0x0600 {
		return append(b, "802.3"...)
	}
	b = append(b, "ethertype "...)
	if name, ok := etherTypeNames[t]; ok {
		b = append(b, name...)
	} else {
		b = append(b, "Unknown"...)
	}
	b = append(b, " ("...)
	b = appendHex(b, uint64(t), 4)
	return append(b, ')')
}

var ipProtoNames = map[layers.IPProtocol]string{1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP",
	41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6", 103: "PIM", 112: "VRRP", 132: "SCTP"}

func appendProtoName(b []byte, p layers.IPProtocol) []byte {
	if name, ok := ipProtoNames[p]; ok {
		b = append(b, name...)
	} else {
		b = append(b, "unknown"...)
	}
	b = append(b, " ("...)
	b = strconv.AppendUint(b, uint64(p), 10)
	return append(b, ')')
}

// offset returns where sub starts in the packet: both share the packet's backing array.
func (d *Decoder) offset(sub []byte) int { return cap(d.f.Packet.Data) - cap(sub) }

// l3 returns where the IP header starts and where the IP packet ends by its length field
// (which may be past the captured bytes).
func (d *Decoder) l3() (start, end int) {
	if d.f.Net == NetIPv4 {
		start = d.offset(d.ip4.Contents)
		return start, start + int(d.ip4.Length)
	}
	start = d.offset(d.ip6.Contents)
	return start, start + 40 + int(d.ip6.Length)
}

func (d *Decoder) appendIPv4(b []byte, st *Style, prefix bool) []byte {
	f, ip := &d.f, &d.ip4.IPv4
	if prefix {
		b = append(b, "IP "...)
	}
	if st.Verbose {
		b = append(b, "(tos "...)
		b = appendHexShort(b, uint64(ip.TOS))
		b = append(b, ", ttl "...)
		b = strconv.AppendUint(b, uint64(ip.TTL), 10)
		b = append(b, ", id "...)
		b = strconv.AppendUint(b, uint64(ip.Id), 10)
		b = append(b, ", offset "...)
		b = strconv.AppendUint(b, uint64(ip.FragOffset)*8, 10)
		b = append(b, ", flags ["...)
		switch {
		case ip.Flags&(layers.IPv4DontFragment|layers.IPv4MoreFragments|layers.IPv4EvilBit) == 0:
			b = append(b, "none"...)
		default:
			sep := false
			for _, fl := range [...]struct {
				bit  layers.IPv4Flag
				name string
			}{{layers.IPv4MoreFragments, "+"}, {layers.IPv4DontFragment, "DF"}, {layers.IPv4EvilBit, "rsvd"}} {
				if ip.Flags&fl.bit != 0 {
					if sep {
						b = append(b, ", "...)
					}
					b, sep = append(b, fl.name...), true
				}
			}
		}
		b = append(b, "], proto "...)
		b = appendProtoName(b, ip.Protocol)
		b = append(b, ", length "...)
		b = strconv.AppendUint(b, uint64(ip.Length), 10)
		if hdr := ip.Contents; len(hdr) >= 20 {
			if want := checksum(hdr[:10], hdr[12:], 0); want != ip.Checksum {
				b = append(b, ", bad cksum "...)
				b = strconv.AppendUint(b, uint64(ip.Checksum), 16)
				b = append(b, " (->"...)
				b = strconv.AppendUint(b, uint64(want), 16)
				b = append(b, ")!"...)
			}
		}
		b = append(b, ") "...)
	}
	if f.Fragment {
		b = appendAddr(b, f.Src)
		b = append(b, " > "...)
		b = appendAddr(b, f.Dst)
		b = append(b, ": ip-proto-"...)
		return strconv.AppendUint(b, uint64(ip.Protocol), 10)
	}
	return d.appendTransport(b, st, ip.Protocol)
}

// appendHexShort appends v as 0x%x.
func appendHexShort(b []byte, v uint64) []byte {
	b = append(b, "0x"...)
	return strconv.AppendUint(b, v, 16)
}

func (d *Decoder) appendIPv6(b []byte, st *Style, prefix bool) []byte {
	ip := &d.ip6.IPv6
	if prefix {
		b = append(b, "IP6 "...)
	}
	if st.Verbose {
		b = append(b, '(')
		if ip.TrafficClass != 0 {
			b = append(b, "class "...)
			b = appendHexShort(b, uint64(ip.TrafficClass))
			b = append(b, ", "...)
		}
		if ip.FlowLabel != 0 {
			b = append(b, "flowlabel "...)
			b = appendHex(b, uint64(ip.FlowLabel), 5)
			b = append(b, ", "...)
		}
		b = append(b, "hlim "...)
		b = strconv.AppendUint(b, uint64(ip.HopLimit), 10)
		b = append(b, ", next-header "...)
		b = appendProtoName(b, ip.NextHeader)
		b = append(b, " payload length: "...)
		b = strconv.AppendUint(b, uint64(ip.Length), 10)
		b = append(b, ") "...)
	}
	return d.appendTransport(b, st, ip.NextHeader)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, '?')
	}
	return a.AppendTo(b)
}

// appendEnds appends "src > dst: ", with ports when the transport has them.
func (d *Decoder) appendEnds(b []byte, sport, dport int) []byte {
	f := &d.f
	b = appendAddr(b, f.Src)
	if sport >= 0 {
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(sport), 10)
	}
	b = append(b, " > "...)
	b = appendAddr(b, f.Dst)
	if dport >= 0 {
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(dport), 10)
	}
	return append(b, ": "...)
}

// l4 returns the transport segment's wire length (from the IP length) and its bytes when
// the whole segment was captured (nil otherwise, so checksums are not judged on a part).
func (d *Decoder) l4(contents []byte) (int, []byte) {
	start := d.offset(contents)
	_, end := d.l3()
	n := end - start
	if n < 0 {
		n = 0
	}
	if end <= len(d.f.Packet.Data) && start <= end {
		return n, d.f.Packet.Data[start:end]
	}
	return n, nil
}

func (d *Decoder) appendTransport(b []byte, st *Style, proto layers.IPProtocol) []byte {
	f := &d.f
	switch {
	case f.has(layers.LayerTypeTCP):
		b = d.appendEnds(b, int(d.tcp.SrcPort), int(d.tcp.DstPort))
		return appendErr(d.appendTCP(b, st), f.Err)
	case f.has(layers.LayerTypeUDP):
		b = d.appendEnds(b, int(d.udp.SrcPort), int(d.udp.DstPort))
		return appendErr(d.appendUDP(b, st), f.Err)
	case f.has(layers.LayerTypeICMPv4):
		b = d.appendEnds(b, -1, -1)
		return appendErr(d.appendICMPv4(b, st), f.Err)
	case f.has(layers.LayerTypeICMPv6):
		b = d.appendEnds(b, -1, -1)
		return appendErr(d.appendICMPv6(b, st), f.Err)
	}
	b = d.appendEnds(b, -1, -1)
	if f.Err != nil {
		return appendErr(b[:len(b)-1], f.Err)
	}
	// What follows the IP header and any IPv6 extension headers decoded.
	_, end := d.l3()
	var start int
	switch last := f.Layers[len(f.Layers)-1]; {
	case last == layers.LayerTypeIPv4:
		start = d.offset(d.ip4.Payload)
	case last == layers.LayerTypeIPv6:
		start = d.offset(d.ip6.Payload)
		if ip := &d.ip6.IPv6; ip.HopByHop != nil {
			proto = ip.HopByHop.NextHeader
		}
	case last == layers.LayerTypeIPv6Fragment:
		start, proto = d.offset(d.frag6.Payload), d.frag6.NextHeader
	default: // another extension header
		start, proto = d.offset(d.ext.Payload), d.ext.NextHeader
	}
	b = append(b, "ip-proto-"...)
	b = strconv.AppendUint(b, uint64(proto), 10)
	b = append(b, ' ')
	return strconv.AppendInt(b, int64(max(end-start, 0)), 10)
}

// tcpFlags appends the flags in tcpdump's notation: F S R P . U E W, "none" for none.
func appendTCPFlags(b []byte, t *layers.TCP) []byte {
	n := len(b)
	for _, fl := range [...]struct {
		on bool
		c  byte
	}{{t.FIN, 'F'}, {t.SYN, 'S'}, {t.RST, 'R'}, {t.PSH, 'P'}, {t.ACK, '.'}, {t.URG, 'U'}, {t.ECE, 'E'}, {t.CWR, 'W'}} {
		if fl.on {
			b = append(b, fl.c)
		}
	}
	if len(b) == n {
		b = append(b, "none"...)
	}
	return b
}

// pseudo returns the sum of the IP pseudo-header for a transport segment of length n.
func (d *Decoder) pseudo(proto layers.IPProtocol, n int) uint32 {
	var s uint32
	if d.f.Net == NetIPv4 {
		s = sum16(d.ip4.SrcIP, 0)
		s = sum16(d.ip4.DstIP, s)
	} else {
		s = sum16(d.ip6.SrcIP, 0)
		s = sum16(d.ip6.DstIP, s)
	}
	return s + uint32(proto) + uint32(n>>16) + uint32(n&0xffff)
}

func (d *Decoder) appendTCP(b []byte, st *Style) []byte {
	t := &d.tcp
	n, seg := d.l4(t.Contents)
	plen := max(n-len(t.Contents), 0)
	b = append(b, "Flags ["...)
	b = appendTCPFlags(b, t)
	b = append(b, "], "...)
	if st.Verbose && seg != nil && len(seg) >= 18 {
		want := checksum(seg[:16], seg[18:], d.pseudo(layers.IPProtocolTCP, len(seg)))
		b = append(b, "cksum "...)
		b = appendHex(b, uint64(t.Checksum), 4)
		if want == t.Checksum {
			b = append(b, " (correct), "...)
		} else {
			b = append(b, " (incorrect -> "...)
			b = appendHex(b, uint64(want), 4)
			b = append(b, "), "...)
		}
	}
	if plen > 0 || t.SYN || t.FIN || t.RST {
		b = append(b, "seq "...)
		b = strconv.AppendUint(b, uint64(t.Seq), 10)
		if plen > 0 {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(t.Seq+uint32(plen)), 10)
		}
		b = append(b, ", "...)
	}
	if t.ACK {
		b = append(b, "ack "...)
		b = strconv.AppendUint(b, uint64(t.Ack), 10)
		b = append(b, ", "...)
	}
	b = append(b, "win "...)
	b = strconv.AppendUint(b, uint64(t.Window), 10)
	if t.URG {
		b = append(b, ", urg "...)
		b = strconv.AppendUint(b, uint64(t.Urgent), 10)
	}
	if len(t.Options) > 0 {
		b = append(b, ", options ["...)
		for i, o := range t.Options {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTCPOption(b, &o)
		}
		b = append(b, ']')
	}
	b = append(b, ", length "...)
	return strconv.AppendInt(b, int64(plen), 10)
}

func appendTCPOption(b []byte, o *layers.TCPOption) []byte {
	data := o.OptionData
	be := binary.BigEndian
	switch o.OptionType {
	case layers.TCPOptionKindEndList:
		return append(b, "eol"...)
	case layers.TCPOptionKindNop:
		return append(b, "nop"...)
	case layers.TCPOptionKindMSS:
		if len(data) == 2 {
			b = append(b, "mss "...)
			return strconv.AppendUint(b, uint64(be.Uint16(data)), 10)
		}
	case layers.TCPOptionKindWindowScale:
		if len(data) == 1 {
			b = append(b, "wscale "...)
			return strconv.AppendUint(b, uint64(data[0]), 10)
		}
	case layers.TCPOptionKindSACKPermitted:
		return append(b, "sackOK"...)
	case layers.TCPOptionKindSACK:
		if len(data)%8 == 0 {
			b = append(b, "sack "...)
			b = strconv.AppendInt(b, int64(len(data)/8), 10)
			b = append(b, ' ')
			for i := 0; i+8 <= len(data); i += 8 {
				b = append(b, '{')
				b = strconv.AppendUint(b, uint64(be.Uint32(data[i:])), 10)
				b = append(b, ':')
				b = strconv.AppendUint(b, uint64(be.Uint32(data[i+4:])), 10)
				b = append(b, '}')
			}
			return b
		}
	case layers.TCPOptionKindTimestamps:
		if len(data) == 8 {
			b = append(b, "TS val "...)
			b = strconv.AppendUint(b, uint64(be.Uint32(data)), 10)
			b = append(b, " ecr "...)
			return strconv.AppendUint(b, uint64(be.Uint32(data[4:])), 10)
		}
	}
	b = append(b, "opt-"...)
	return strconv.AppendUint(b, uint64(o.OptionType), 10)
}

func (d *Decoder) appendUDP(b []byte, st *Style) []byte {
	u := &d.udp
	n, seg := d.l4(u.Contents)
	if st.Verbose && seg != nil && int(u.Length) == len(seg) {
		switch {
		case u.Checksum == 0 && d.f.Net == NetIPv4:
			b = append(b, "[no cksum] "...)
		default:
			want := checksum(seg[:6], seg[8:], d.pseudo(layers.IPProtocolUDP, len(seg)))
			if want == 0 {
				want = 0xffff // a computed zero is sent as all ones (RFC 768)
			}
			if want == u.Checksum {
				b = append(b, "[udp sum ok] "...)
			} else {
				b = append(b, "[bad udp cksum "...)
				b = appendHex(b, uint64(u.Checksum), 4)
				b = append(b, " -> "...)
				b = appendHex(b, uint64(want), 4)
				b = append(b, "!] "...)
			}
		}
	}
	// A first fragment carries only part of the datagram its length field counts.
	frag := d.f.Net == NetIPv4 && d.ip4.Flags&layers.IPv4MoreFragments != 0
	if u.Length < 8 || int(u.Length) > n && !frag {
		b = append(b, "UDP, bad length "...)
		b = strconv.AppendUint(b, uint64(u.Length), 10)
		b = append(b, " > "...)
		return strconv.AppendInt(b, int64(n), 10)
	}
	b = append(b, "UDP, length "...)
	return strconv.AppendUint(b, uint64(u.Length-8), 10)
}

func (d *Decoder) appendICMPv4(b []byte, st *Style) []byte {
	ic := &d.icmp4
	n, seg := d.l4(ic.Contents)
	if st.Verbose && seg != nil {
		if want := checksum(seg[:2], seg[4:], 0); want != ic.Checksum {
			b = append(b, "[bad icmp cksum "...)
			b = appendHex(b, uint64(ic.Checksum), 4)
			b = append(b, " -> "...)
			b = appendHex(b, uint64(want), 4)
			b = append(b, "!] "...)
		}
	}
	b = append(b, "ICMP "...)
	typ, code := ic.TypeCode.Type(), ic.TypeCode.Code()
	switch typ {
	case layers.ICMPv4TypeEchoRequest, layers.ICMPv4TypeEchoReply:
		if typ == layers.ICMPv4TypeEchoRequest {
			b = append(b, "echo request, id "...)
		} else {
			b = append(b, "echo reply, id "...)
		}
		b = strconv.AppendUint(b, uint64(ic.Id), 10)
		b = append(b, ", seq "...)
		b = strconv.AppendUint(b, uint64(ic.Seq), 10)
	case layers.ICMPv4TypeDestinationUnreachable:
		b = appendUnreachable(b, code, ic.Payload, ic.Seq)
	case layers.ICMPv4TypeTimeExceeded:
		if code == 1 {
			b = append(b, "ip reassembly time exceeded"...)
		} else {
			b = append(b, "time exceeded in-transit"...)
		}
	default:
		b = append(b, "type "...)
		b = strconv.AppendUint(b, uint64(typ), 10)
		b = append(b, " code "...)
		b = strconv.AppendUint(b, uint64(code), 10)
	}
	b = append(b, ", length "...)
	return strconv.AppendInt(b, int64(n), 10)
}

// appendUnreachable describes a destination unreachable from the IP header it quotes, as
// tcpdump: "203.0.113.10 udp port 30000 unreachable".
func appendUnreachable(b []byte, code uint8, quoted []byte, mtu uint16) []byte {
	var dst netip.Addr
	var proto uint8
	dport := -1
	if len(quoted) >= 20 && quoted[0]>>4 == 4 {
		dst = netip.AddrFrom4([4]byte(quoted[16:20]))
		proto = quoted[9]
		if hl := int(quoted[0]&15) * 4; len(quoted) >= hl+4 {
			dport = int(binary.BigEndian.Uint16(quoted[hl+2:]))
		}
	}
	switch code {
	case 0:
		b = append(b, "net "...)
		b = appendAddr(b, dst)
		return append(b, " unreachable"...)
	case 1:
		b = append(b, "host "...)
		b = appendAddr(b, dst)
		return append(b, " unreachable"...)
	case 2:
		b = appendAddr(b, dst)
		b = append(b, " protocol "...)
		b = strconv.AppendUint(b, uint64(proto), 10)
		return append(b, " unreachable"...)
	case 3:
		b = appendAddr(b, dst)
		switch proto {
		case 6:
			b = append(b, " tcp port "...)
		case 17:
			b = append(b, " udp port "...)
		default:
			b = append(b, " port "...)
		}
		b = strconv.AppendInt(b, int64(dport), 10)
		return append(b, " unreachable"...)
	case 4:
		b = appendAddr(b, dst)
		b = append(b, " unreachable - need to frag (mtu "...)
		b = strconv.AppendUint(b, uint64(mtu), 10)
		return append(b, ')')
	}
	b = appendAddr(b, dst)
	b = append(b, " unreachable - code "...)
	return strconv.AppendUint(b, uint64(code), 10)
}

var icmp6Names = map[uint8]string{1: "destination unreachable", 2: "packet too big", 3: "time exceeded in-transit",
	4: "parameter problem", 128: "echo request", 129: "echo reply", 130: "multicast listener query",
	131: "multicast listener report", 133: "router solicitation", 134: "router advertisement",
	135: "neighbor solicitation", 136: "neighbor advertisement", 137: "redirect",
	143: "multicast listener report v2"}

func (d *Decoder) appendICMPv6(b []byte, st *Style) []byte {
	ic := &d.icmp6
	n, seg := d.l4(ic.Contents)
	if st.Verbose && seg != nil && len(seg) >= 4 {
		if want := checksum(seg[:2], seg[4:], d.pseudo(layers.IPProtocolICMPv6, len(seg))); want == ic.Checksum {
			b = append(b, "[icmp6 sum ok] "...)
		} else {
			b = append(b, "[bad icmp6 cksum "...)
			b = appendHex(b, uint64(ic.Checksum), 4)
			b = append(b, " -> "...)
			b = appendHex(b, uint64(want), 4)
			b = append(b, "!] "...)
		}
	}
	b = append(b, "ICMP6, "...)
	typ := ic.TypeCode.Type()
	if name, ok := icmp6Names[typ]; ok {
		b = append(b, name...)
	} else {
		b = append(b, "type "...)
		b = strconv.AppendUint(b, uint64(typ), 10)
	}
	switch typ {
	case layers.ICMPv6TypeEchoRequest, layers.ICMPv6TypeEchoReply:
		if d.f.has(layers.LayerTypeICMPv6Echo) {
			b = append(b, ", id "...)
			b = strconv.AppendUint(b, uint64(d.echo6.Identifier), 10)
			b = append(b, ", seq "...)
			b = strconv.AppendUint(b, uint64(d.echo6.SeqNumber), 10)
		}
	case layers.ICMPv6TypeNeighborSolicitation, layers.ICMPv6TypeNeighborAdvertisement:
		// The target address follows 4 reserved (or flag) bytes.
		if p := ic.Payload; len(p) >= 20 {
			if typ == layers.ICMPv6TypeNeighborSolicitation {
				b = append(b, ", who has "...)
			} else {
				b = append(b, ", tgt is "...)
			}
			b = netip.AddrFrom16([16]byte(p[4:20])).AppendTo(b)
		}
	}
	if st.Verbose {
		return b // as tcpdump -v, which prints the ICMPv6 length only without -v
	}
	b = append(b, ", length "...)
	return strconv.AppendInt(b, int64(n), 10)
}

func (d *Decoder) appendARP(b []byte, st *Style, prefix bool) []byte {
	a := &d.arp
	if prefix {
		b = append(b, "ARP, "...)
	}
	ethIP := a.AddrType == layers.LinkTypeEthernet && a.Protocol == layers.EthernetTypeIPv4 &&
		a.HwAddressSize == 6 && a.ProtAddressSize == 4
	if st.Verbose {
		if a.AddrType == layers.LinkTypeEthernet {
			b = append(b, "Ethernet"...)
		} else {
			b = append(b, "hardware "...)
			b = strconv.AppendUint(b, uint64(a.AddrType), 10)
		}
		b = append(b, " (len "...)
		b = strconv.AppendUint(b, uint64(a.HwAddressSize), 10)
		b = append(b, "), "...)
		if a.Protocol == layers.EthernetTypeIPv4 {
			b = append(b, "IPv4"...)
		} else {
			b = appendHexShort(b, uint64(a.Protocol))
		}
		b = append(b, " (len "...)
		b = strconv.AppendUint(b, uint64(a.ProtAddressSize), 10)
		b = append(b, "), "...)
	}
	switch {
	case ethIP && a.Operation == layers.ARPRequest:
		b = append(b, "Request who-has "...)
		b = appendAddr(b, d.f.Dst)
		if !allZero(a.DstHwAddress) {
			b = append(b, " ("...)
			b = appendMAC(b, a.DstHwAddress)
			b = append(b, ')')
		}
		b = append(b, " tell "...)
		b = appendAddr(b, d.f.Src)
	case ethIP && a.Operation == layers.ARPReply:
		b = append(b, "Reply "...)
		b = appendAddr(b, d.f.Src)
		b = append(b, " is-at "...)
		b = appendMAC(b, a.SourceHwAddress)
	default:
		b = append(b, "opcode "...)
		b = strconv.AppendUint(b, uint64(a.Operation), 10)
	}
	b = append(b, ", length "...)
	b = strconv.AppendInt(b, int64(d.f.Packet.Length-d.f.LinkLen), 10)
	return appendErr(b, d.f.Err)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// sum16 adds b as big-endian 16-bit words to s (an odd last byte is padded with zero).
func sum16(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// checksum is the Internet checksum of before, a zero checksum field, and after (both at
// even offsets), on top of the sum init (a pseudo-header).
func checksum(before, after []byte, init uint32) uint16 {
	s := sum16(after, sum16(before, init))
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// ---- JSON ----

// AppendJSON appends the last decoded frame as one JSON object and a newline, for scripts:
//
//	{"time_ns":..,"interface":"eth0","direction":"in","len":62,"caplen":62,"link":"EN10MB",
//	 "eth":{"src":..,"dst":..,"type":"0x0800"},"vlan":[100],
//	 "ip":{"version":4,"src":..,"dst":..,"ttl":64,"id":1,"len":48,"proto":17},
//	 "proto":"udp","sport":40000,"dport":30000,"length":20}
//
// TCP adds "flags" (tcpdump's notation), "seq", "ack", "win"; ICMP and ICMPv6 add
// "icmp":{"type","code"[,"id","seq"]}; ARP adds "arp":{"op","sender_mac","sender_ip",
// "target_mac","target_ip"}; a malformed packet has "malformed":"reason". "direction" is
// "in" or "out" (pcapng flags, or Linux cooked capture's packet type, which may also say "B",
// "M" or "P": broadcast, multicast, another host). "length" is the
// transport payload length as tcpdump prints it. Fields that are not known are left out.
func (d *Decoder) AppendJSON(b []byte) []byte {
	f := &d.f
	p := f.Packet
	b = append(b, `{"time_ns":`...)
	b = strconv.AppendInt(b, p.Timestamp, 10)
	if p.Interface != nil && p.Interface.Name != "" {
		b = append(b, `,"interface":`...)
		b = appendJSONString(b, p.Interface.Name)
	}
	if dir := d.direction(); dir != "" {
		b = append(b, `,"direction":"`...)
		switch dir {
		case "In":
			b = append(b, "in"...)
		case "Out":
			b = append(b, "out"...)
		default:
			b = append(b, dir...)
		}
		b = append(b, '"')
	}
	b = append(b, `,"len":`...)
	b = strconv.AppendInt(b, int64(p.Length), 10)
	b = append(b, `,"caplen":`...)
	b = strconv.AppendInt(b, int64(len(p.Data)), 10)
	b = append(b, `,"link":"`...)
	b = append(b, f.Link.String()...)
	b = append(b, '"')
	if f.Ether {
		b = append(b, `,"eth":{"src":"`...)
		b = appendMAC(b, f.SrcMAC)
		b = append(b, `","dst":"`...)
		b = appendMAC(b, f.DstMAC)
		b = append(b, `","type":"`...)
		b = appendHex(b, uint64(f.EtherType), 4)
		b = append(b, `"}`...)
	}
	if f.NTags > 0 {
		b = append(b, `,"vlan":[`...)
		for i := range f.NTags {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(f.Tags[i].ID), 10)
		}
		b = append(b, ']')
	}
	switch f.Net {
	case NetIPv4:
		ip := &d.ip4
		b = append(b, `,"ip":{"version":4,"src":"`...)
		b = appendAddr(b, f.Src)
		b = append(b, `","dst":"`...)
		b = appendAddr(b, f.Dst)
		b = append(b, `","ttl":`...)
		b = strconv.AppendUint(b, uint64(ip.TTL), 10)
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, uint64(ip.Id), 10)
		b = append(b, `,"len":`...)
		b = strconv.AppendUint(b, uint64(ip.Length), 10)
		b = append(b, `,"proto":`...)
		b = strconv.AppendUint(b, uint64(ip.Protocol), 10)
		if f.Fragment || ip.Flags&layers.IPv4MoreFragments != 0 {
			b = append(b, `,"frag_offset":`...)
			b = strconv.AppendUint(b, uint64(ip.FragOffset)*8, 10)
			b = append(b, `,"more_fragments":`...)
			b = strconv.AppendBool(b, ip.Flags&layers.IPv4MoreFragments != 0)
		}
		b = append(b, '}')
	case NetIPv6:
		ip := &d.ip6
		b = append(b, `,"ip":{"version":6,"src":"`...)
		b = appendAddr(b, f.Src)
		b = append(b, `","dst":"`...)
		b = appendAddr(b, f.Dst)
		b = append(b, `","hlim":`...)
		b = strconv.AppendUint(b, uint64(ip.HopLimit), 10)
		b = append(b, `,"flowlabel":`...)
		b = strconv.AppendUint(b, uint64(ip.FlowLabel), 10)
		b = append(b, `,"len":`...)
		b = strconv.AppendUint(b, uint64(ip.Length), 10)
		b = append(b, `,"proto":`...)
		b = strconv.AppendUint(b, uint64(ip.NextHeader), 10)
		b = append(b, '}')
	case NetARP:
		a := &d.arp
		b = append(b, `,"proto":"arp","arp":{"op":`...)
		switch a.Operation {
		case layers.ARPRequest:
			b = append(b, `"request"`...)
		case layers.ARPReply:
			b = append(b, `"reply"`...)
		default:
			b = strconv.AppendUint(b, uint64(a.Operation), 10)
		}
		b = append(b, `,"sender_mac":"`...)
		b = appendMAC(b, a.SourceHwAddress)
		b = append(b, `","target_mac":"`...)
		b = appendMAC(b, a.DstHwAddress)
		b = append(b, '"')
		if f.Src.IsValid() {
			b = append(b, `,"sender_ip":"`...)
			b = appendAddr(b, f.Src)
			b = append(b, `","target_ip":"`...)
			b = appendAddr(b, f.Dst)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	switch {
	case f.has(layers.LayerTypeTCP):
		t := &d.tcp
		n, _ := d.l4(t.Contents)
		b = d.appendJSONPorts(b, "tcp", int(t.SrcPort), int(t.DstPort))
		b = append(b, `,"flags":"`...)
		b = appendTCPFlags(b, t)
		b = append(b, `","seq":`...)
		b = strconv.AppendUint(b, uint64(t.Seq), 10)
		if t.ACK {
			b = append(b, `,"ack":`...)
			b = strconv.AppendUint(b, uint64(t.Ack), 10)
		}
		b = append(b, `,"win":`...)
		b = strconv.AppendUint(b, uint64(t.Window), 10)
		b = append(b, `,"length":`...)
		b = strconv.AppendInt(b, int64(max(n-len(t.Contents), 0)), 10)
	case f.has(layers.LayerTypeUDP):
		u := &d.udp
		b = d.appendJSONPorts(b, "udp", int(u.SrcPort), int(u.DstPort))
		b = append(b, `,"length":`...)
		b = strconv.AppendInt(b, max(int64(u.Length)-8, 0), 10)
	case f.has(layers.LayerTypeICMPv4):
		ic := &d.icmp4
		b = append(b, `,"proto":"icmp","icmp":{"type":`...)
		b = strconv.AppendUint(b, uint64(ic.TypeCode.Type()), 10)
		b = append(b, `,"code":`...)
		b = strconv.AppendUint(b, uint64(ic.TypeCode.Code()), 10)
		if t := ic.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
			b = append(b, `,"id":`...)
			b = strconv.AppendUint(b, uint64(ic.Id), 10)
			b = append(b, `,"seq":`...)
			b = strconv.AppendUint(b, uint64(ic.Seq), 10)
		}
		b = append(b, '}')
	case f.has(layers.LayerTypeICMPv6):
		ic := &d.icmp6
		b = append(b, `,"proto":"icmp6","icmp":{"type":`...)
		b = strconv.AppendUint(b, uint64(ic.TypeCode.Type()), 10)
		b = append(b, `,"code":`...)
		b = strconv.AppendUint(b, uint64(ic.TypeCode.Code()), 10)
		if f.has(layers.LayerTypeICMPv6Echo) {
			b = append(b, `,"id":`...)
			b = strconv.AppendUint(b, uint64(d.echo6.Identifier), 10)
			b = append(b, `,"seq":`...)
			b = strconv.AppendUint(b, uint64(d.echo6.SeqNumber), 10)
		}
		b = append(b, '}')
	case f.Net == NetIPv4 || f.Net == NetIPv6:
		b = append(b, `,"proto":`...)
		b = strconv.AppendUint(b, uint64(f.Proto), 10)
	}
	if f.Err != nil {
		b = append(b, `,"malformed":`...)
		b = appendJSONString(b, f.Err.Error())
	}
	return append(b, "}\n"...)
}

func (d *Decoder) appendJSONPorts(b []byte, proto string, sport, dport int) []byte {
	b = append(b, `,"proto":"`...)
	b = append(b, proto...)
	b = append(b, `","sport":`...)
	b = strconv.AppendInt(b, int64(sport), 10)
	b = append(b, `,"dport":`...)
	return strconv.AppendInt(b, int64(dport), 10)
}

// appendJSONString appends s as a JSON string; bytes that are not UTF-8 become U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		b = utf8.AppendRune(b, r) // RuneError for invalid bytes
		i += size
	}
	return append(b, '"')
}
