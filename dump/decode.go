// Package dump is stdpkt-dump: it prints one line (or one JSON object) per packet in the
// spirit of tcpdump -n, selects packets with a pcap-filter-like expression, and can sit
// anywhere in a chain forwarding every packet unchanged (--pass).
//
// Packets are decoded with gopacket's DecodingLayerParser into layers allocated once per
// Decoder, so decoding and filtering a packet does not allocate; lines are appended to a
// reused buffer.
package dump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/stdpkt/stdpkt/framing"
)

// MaxTags is how many stacked VLAN tags a Decoder follows; a frame with more is malformed.
const MaxTags = 8

// Tag is one 802.1Q / 802.1ad tag.
type Tag struct {
	TPID     layers.EthernetType // the ethertype that announced the tag (0x8100, 0x88a8, 0x9100)
	ID       uint16
	Priority uint8
	Type     layers.EthernetType // the ethertype after the tag
}

// NetKind says what the network layer of a frame is.
type NetKind uint8

// Network layers a Decoder knows.
const (
	NetNone NetKind = iota // not decoded: unknown ethertype or link type, or malformed
	NetIPv4
	NetIPv6
	NetARP
)

// Frame is what a Decoder found in one packet: the fields the filter and the printers need,
// plain values or slices into the packet's bytes. It is overwritten by the next Decode.
type Frame struct {
	Packet *framing.Packet
	Link   framing.LinkType

	// Known is false for a link type the Decoder cannot parse: only the lengths are known.
	Known bool
	// Ether is true when the frame has an Ethernet header (SrcMAC and DstMAC are set).
	Ether          bool
	SrcMAC, DstMAC net.HardwareAddr
	// EtherType is the first protocol type after the link header (an SLL protocol field, or
	// 0x0800 / 0x86dd for raw IP); InnerType is the one after every VLAN tag.
	EtherType, InnerType layers.EthernetType
	Tags                 [MaxTags]Tag
	NTags                int
	// LinkLen is the length of the link-layer header and tags.
	LinkLen int

	Net      NetKind
	Src, Dst netip.Addr // IP source and destination, or ARP sender and target protocol addresses
	// Proto is the IPv4 protocol or the IPv6 next header right after the fixed header;
	// FragNext is the next header of an IPv6 fragment header that comes right after it.
	// (pcap-filter's tcp, udp, icmp6 look exactly there.)
	Proto, FragNext layers.IPProtocol
	// Fragment is true for an IPv4 fragment other than the first: no transport header.
	Fragment bool
	// Ports are set (HasPorts) for TCP, UDP and SCTP where pcap-filter reads them: right after
	// the IPv4 header of a first fragment or the fixed IPv6 header.
	HasPorts         bool
	SrcPort, DstPort uint16

	// Layers lists what gopacket decoded, in order.
	Layers []gopacket.LayerType
	// Err is why decoding stopped early: the packet is malformed or truncated.
	Err error
}

// Decoder decodes packets into a Frame, reusing its layers for every packet.
type Decoder struct {
	f Frame

	eth   layers.Ethernet
	sll   layers.LinuxSLL
	sll2  layers.LinuxSLL2
	vlan  vlanLayer
	ip4   ip4Layer
	ip6   ip6Layer
	ext   extLayer
	frag6 layers.IPv6Fragment
	arp   layers.ARP
	tcp   layers.TCP
	udp   layers.UDP
	icmp4 layers.ICMPv4
	icmp6 layers.ICMPv6
	echo6 layers.ICMPv6Echo

	// One parser per first layer; they share the layers above.
	ethP, sllP, sll2P, ip4P, ip6P *gopacket.DecodingLayerParser
}

// NewDecoder returns a Decoder with its layers allocated.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.vlan.f = &d.f
	d.f.Layers = make([]gopacket.LayerType, 0, 16)
	// frag6 comes after ext so that it, not the skipper, decodes fragment headers: the
	// skipper would take the data of a later fragment for a transport header.
	all := []gopacket.DecodingLayer{&d.eth, &d.sll, &d.sll2, &d.vlan, &d.ip4, &d.ip6, &d.ext, &d.frag6, &d.arp,
		&d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.echo6}
	parser := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first, all...)
		// An unknown next layer (LLC, IGMP, an NDP message) ends decoding without error: the
		// printer says what it stopped at from the last layer decoded.
		p.IgnoreUnsupported = true
		return p
	}
	d.ethP, d.sllP, d.sll2P = parser(layers.LayerTypeEthernet), parser(layers.LayerTypeLinuxSLL), parser(layers.LayerTypeLinuxSLL2)
	d.ip4P, d.ip6P = parser(layers.LayerTypeIPv4), parser(layers.LayerTypeIPv6)
	return d
}

// vlanLayer records each tag as it is decoded: the parser reuses one Dot1Q for stacked tags.
type vlanLayer struct {
	layers.Dot1Q
	f *Frame
}

var errTooManyTags = fmt.Errorf("more than %d VLAN tags", MaxTags)

func (v *vlanLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if v.f.NTags == MaxTags {
		return errTooManyTags
	}
	if err := v.Dot1Q.DecodeFromBytes(data, df); err != nil {
		return err
	}
	// TPID is filled in by Decoder.fill: the link layer's ethertype is copied out after parsing.
	v.f.Tags[v.f.NTags] = Tag{ID: v.VLANIdentifier, Priority: v.Priority, Type: v.Type}
	v.f.NTags++
	v.f.InnerType = v.Type
	v.f.LinkLen += 4
	return nil
}

// transportOnly stops decoding at a tunnel (IP in IP): the parser would decode the inner
// header into the same layer and lose the outer one.
func transportOnly(t gopacket.LayerType) gopacket.LayerType {
	if t == layers.LayerTypeIPv4 || t == layers.LayerTypeIPv6 {
		return gopacket.LayerTypeZero
	}
	return t
}

// ip4Layer decodes the transport header of a first fragment too (gopacket stops at any
// fragment), as tcpdump prints it and pcap-filter reads its ports, and stops at tunnels.
type ip4Layer struct{ layers.IPv4 }

func (l *ip4Layer) NextLayerType() gopacket.LayerType {
	if l.FragOffset != 0 {
		return gopacket.LayerTypeFragment
	}
	return transportOnly(l.Protocol.LayerType())
}

// ip6Layer stops at tunnels, as ip4Layer does.
type ip6Layer struct{ layers.IPv6 }

func (l *ip6Layer) NextLayerType() gopacket.LayerType { return transportOnly(l.IPv6.NextLayerType()) }

// extLayer skips IPv6 extension headers other than fragments, and stops at tunnels.
type extLayer struct{ layers.IPv6ExtensionSkipper }

func (l *extLayer) NextLayerType() gopacket.LayerType {
	return transportOnly(l.IPv6ExtensionSkipper.NextLayerType())
}

// Frame returns the last decoded frame.
func (d *Decoder) Frame() *Frame { return &d.f }

// Decode decodes p and returns its Frame, valid until the next call. It never panics:
// gopacket's panics are turned into errors (DecodingLayerParser's default) and reported in
// Frame.Err like any malformed packet.
func (d *Decoder) Decode(p *framing.Packet) *Frame {
	f := &d.f
	layersBuf := f.Layers[:0]
	*f = Frame{Packet: p, Layers: layersBuf}
	if p.Interface != nil {
		f.Link = p.Interface.LinkType
	}
	data := p.Data
	var parser *gopacket.DecodingLayerParser
	f.Known = true
	switch f.Link {
	case framing.LinkEthernet:
		parser = d.ethP
	case framing.LinkLinuxSLL:
		parser = d.sllP
	case framing.LinkLinuxSLL2:
		parser = d.sll2P
	case framing.LinkIPv4:
		parser, f.EtherType = d.ip4P, layers.EthernetTypeIPv4
	case framing.LinkIPv6:
		parser, f.EtherType = d.ip6P, layers.EthernetTypeIPv6
	case framing.LinkRaw:
		// Raw IP: the version nibble says which.
		if len(data) == 0 {
			f.Err = errors.New("empty raw IP packet")
			return f
		}
		switch data[0] >> 4 {
		case 4:
			parser, f.EtherType = d.ip4P, layers.EthernetTypeIPv4
		case 6:
			parser, f.EtherType = d.ip6P, layers.EthernetTypeIPv6
		default:
			f.Err = errRawVersion
			return f
		}
	default:
		f.Known = false
		return f
	}
	f.Err = parser.DecodeLayers(data, &f.Layers)
	d.fill()
	return f
}

var errRawVersion = errors.New("raw IP packet with an IP version other than 4 or 6")

// fill copies what the filter needs out of the decoded layers.
func (d *Decoder) fill() {
	f := &d.f
	for _, t := range f.Layers {
		switch t {
		case layers.LayerTypeEthernet:
			f.Ether, f.SrcMAC, f.DstMAC = true, d.eth.SrcMAC, d.eth.DstMAC
			f.EtherType = d.eth.EthernetType
			f.LinkLen += len(d.eth.Contents)
		case layers.LayerTypeLinuxSLL:
			f.EtherType = d.sll.EthernetType
			f.LinkLen += len(d.sll.Contents)
		case layers.LayerTypeLinuxSLL2:
			f.EtherType = d.sll2.ProtocolType
			f.LinkLen += len(d.sll2.Contents)
		case layers.LayerTypeIPv4:
			f.Net = NetIPv4
			f.Src, _ = netip.AddrFromSlice(d.ip4.SrcIP)
			f.Dst, _ = netip.AddrFromSlice(d.ip4.DstIP)
			f.Proto = d.ip4.Protocol
			f.Fragment = d.ip4.FragOffset != 0
			if !f.Fragment {
				f.readPorts(d.ip4.Payload)
			}
		case layers.LayerTypeIPv6:
			f.Net = NetIPv6
			f.Src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
			f.Dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
			f.Proto = d.ip6.NextHeader
			if d.ip6.HopByHop == nil {
				f.readPorts(d.ip6.Payload)
				if f.Proto == layers.IPProtocolIPv6Fragment && len(d.ip6.Payload) > 0 {
					f.FragNext = layers.IPProtocol(d.ip6.Payload[0])
				}
			}
		case layers.LayerTypeARP:
			f.Net = NetARP
			// pcap-filter's host and net read the protocol addresses of Ethernet/IPv4 ARP.
			if d.arp.HwAddressSize == 6 && d.arp.ProtAddressSize == 4 {
				f.Src, _ = netip.AddrFromSlice(d.arp.SourceProtAddress)
				f.Dst, _ = netip.AddrFromSlice(d.arp.DstProtAddress)
			}
		}
	}
	if f.NTags == 0 {
		f.InnerType = f.EtherType
	}
	for i := range f.NTags {
		if i == 0 {
			f.Tags[i].TPID = f.EtherType
		} else {
			f.Tags[i].TPID = f.Tags[i-1].Type
		}
	}
}

// readPorts reads the transport ports where pcap-filter reads them: the first four bytes
// after the IP header, for TCP, UDP and SCTP.
func (f *Frame) readPorts(b []byte) {
	switch f.Proto {
	case layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolSCTP:
		if len(b) >= 4 {
			f.HasPorts = true
			f.SrcPort = binary.BigEndian.Uint16(b)
			f.DstPort = binary.BigEndian.Uint16(b[2:])
		}
	}
}

// has reports whether layer t was decoded.
func (f *Frame) has(t gopacket.LayerType) bool {
	for _, l := range f.Layers {
		if l == t {
			return true
		}
	}
	return false
}
