// Package framing is the stream between stdpkt stages: pcapng by default, classic pcap on
// request, read and written many packets at a time.
//
// A Reader detects the format from the first bytes of a non-seekable stream, so any tool that
// writes pcap or pcapng (tcpdump -w -, tshark -w -, editcap) can feed a stage, and any tool that
// reads them can consume a stage's output. Lengths read from the stream are checked against
// fixed limits before they are used, so a hostile stream cannot make a reader allocate.
package framing

import (
	"fmt"
	"strings"
)

// MaxRecord is the largest block (pcapng) or record (pcap) a reader accepts, in bytes.
// Anything longer is a FormatError: a length is never trusted to size an allocation.
const MaxRecord = 256 << 10

// LinkType is a pcap LINKTYPE_ value: what the first byte of a frame is.
type LinkType uint16

// Link types a stage can parse. Other link types are carried through unchanged by stages
// that only pass frames on.
const (
	LinkNull      LinkType = 0
	LinkEthernet  LinkType = 1
	LinkRaw       LinkType = 101 // raw IPv4 or IPv6, told apart by the version nibble
	LinkLinuxSLL  LinkType = 113
	LinkIPv4      LinkType = 228
	LinkIPv6      LinkType = 229
	LinkLinuxSLL2 LinkType = 276
)

// String names the link type as tcpdump's -L does.
func (l LinkType) String() string {
	switch l {
	case LinkNull:
		return "NULL"
	case LinkEthernet:
		return "EN10MB"
	case LinkRaw:
		return "RAW"
	case LinkLinuxSLL:
		return "LINUX_SLL"
	case LinkIPv4:
		return "IPV4"
	case LinkIPv6:
		return "IPV6"
	case LinkLinuxSLL2:
		return "LINUX_SLL2"
	}
	return fmt.Sprintf("LINKTYPE_%d", uint16(l))
}

// Direction is the pcapng epb_flags direction of a packet relative to the interface it is
// tagged with.
type Direction uint8

// Directions, with the values of the two low bits of pcapng's epb_flags.
const (
	DirUnknown  Direction = 0
	DirInbound  Direction = 1
	DirOutbound Direction = 2
)

// String returns "in", "out" or "" for an unknown direction.
func (d Direction) String() string {
	switch d {
	case DirInbound:
		return "in"
	case DirOutbound:
		return "out"
	}
	return ""
}

// Interface describes where packets were captured or where they should be sent.
//
// Interfaces are compared by pointer on the hot path: a Reader hands out one *Interface per
// interface it has seen, and a Writer writes one interface description per distinct
// (Name, LinkType) it is given.
type Interface struct {
	Name     string
	LinkType LinkType
	SnapLen  uint32 // 0: no limit
	// Turnaround marks the frames of a two-sided replay that entered from the east: every
	// stage passes them east untouched and the sink turns them around, west. A Reader sets
	// it for interfaces named with TurnaroundPrefix.
	Turnaround bool
}

// TurnaroundPrefix starts the interface name of frames travelling east only to be turned
// around by the sink; the rest of the name is the interface they were captured on.
const TurnaroundPrefix = "turnaround/"

// TurnaroundOf returns the interface that marks frames of ifc for the turnaround.
func TurnaroundOf(ifc *Interface) *Interface {
	name := ""
	link := LinkEthernet
	if ifc != nil {
		name, link = ifc.Name, ifc.LinkType
	}
	return &Interface{Name: TurnaroundPrefix + name, LinkType: link, Turnaround: true}
}

// Unturned returns the interface a turnaround interface stands for.
func Unturned(ifc *Interface) *Interface {
	return &Interface{Name: strings.TrimPrefix(ifc.Name, TurnaroundPrefix), LinkType: ifc.LinkType}
}

// Packet is one frame and what the stream says about it.
type Packet struct {
	// Data holds the captured bytes. A Reader's packets alias its buffer and stay valid
	// only until the next call to Read.
	Data []byte
	// Length is the frame's length on the wire; at least len(Data).
	Length int
	// Timestamp is in nanoseconds since the Unix epoch.
	Timestamp int64
	// Interface is never nil for packets from a Reader.
	Interface *Interface
	Direction Direction

	// block is the pcapng block Data was read from, when re-encoding the packet as it was
	// read would give that block byte for byte (see Reader.plainEPBs). A Writer sends such a
	// block on as it stands, Data changed in place included, when nothing else about the
	// packet changed: no encoding, and a run of them goes out without a copy.
	block []byte
}

// Bytes returns the captured bytes of pkts in all, what the books count.
func Bytes(pkts []Packet) int {
	n := 0
	for i := range pkts {
		n += len(pkts[i].Data)
	}
	return n
}
