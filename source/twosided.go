package source

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/stdpkt/stdpkt/framing"
)

// Sides says which frames of a capture entered from the east, for a two-sided replay:
// those captured on an interface of that name, or sent from an address in that prefix.
type Sides struct {
	Iface string
	Src   netip.Prefix
}

// ParseSides parses --from-east: "iface=NAME" or "src=PREFIX".
func ParseSides(s string) (Sides, error) {
	key, val, ok := strings.Cut(s, "=")
	switch {
	case ok && key == "iface" && val != "":
		return Sides{Iface: val}, nil
	case ok && key == "src":
		if !strings.Contains(val, "/") {
			val += map[bool]string{true: "/128", false: "/32"}[strings.Contains(val, ":")]
		}
		p, err := netip.ParsePrefix(val)
		if err == nil {
			return Sides{Src: p.Masked()}, nil
		}
	}
	return Sides{}, fmt.Errorf("--from-east %q: want iface=NAME or src=PREFIX (e.g. src=203.0.113.0/24)", s)
}

// fromEast reports whether p entered from the east.
func (s Sides) fromEast(p *framing.Packet) bool {
	if s.Iface != "" {
		return p.Interface != nil && p.Interface.Name == s.Iface
	}
	src, ok := sourceAddr(p)
	return ok && s.Src.Contains(src)
}

// sourceAddr returns the IP source address of an IP frame: Ethernet (behind any VLAN
// tags), Linux cooked (SLL, SLL2) or raw IP. Only an IP EtherType or protocol counts: a
// BPDU or an LLDP frame whose payload happens to start with the nibble 4 has no source.
func sourceAddr(p *framing.Packet) (netip.Addr, bool) {
	b := p.Data
	link := framing.LinkEthernet
	if p.Interface != nil {
		link = p.Interface.LinkType
	}
	var proto uint16 // the EtherType, where the link header has one
	switch link {
	case framing.LinkEthernet:
		if len(b) < 14 {
			return netip.Addr{}, false
		}
		et, off := binary.BigEndian.Uint16(b[12:]), 14
		for (et == 0x8100 || et == 0x88a8) && len(b) >= off+4 {
			et, off = binary.BigEndian.Uint16(b[off+2:]), off+4
		}
		proto, b = et, b[off:]
	case framing.LinkLinuxSLL: // 16-byte header, the protocol at 14
		if len(b) < 16 {
			return netip.Addr{}, false
		}
		proto, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case framing.LinkLinuxSLL2: // 20-byte header, the protocol first
		if len(b) < 20 {
			return netip.Addr{}, false
		}
		proto, b = binary.BigEndian.Uint16(b[0:]), b[20:]
	case framing.LinkRaw, framing.LinkIPv4, framing.LinkIPv6:
	default:
		return netip.Addr{}, false
	}
	switch {
	case len(b) >= 20 && b[0]>>4 == 4 && (proto == 0 || proto == 0x0800):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case len(b) >= 40 && b[0]>>4 == 6 && (proto == 0 || proto == 0x86dd):
		return netip.AddrFrom16([16]byte(b[8:24])), true
	}
	return netip.Addr{}, false
}

// twoSided sends a batch of a two-sided replay: frames from the west go east as usual;
// a frame from the east goes east marked for the turnaround, and the next frame waits until
// it has come home (or until wait has passed: a stage dropped it), so every stage meets the
// conversation in trace order.
type twoSided struct {
	sides  Sides
	home   func() uint64 // frames come home so far
	wait   time.Duration
	marked map[*framing.Interface]*framing.Interface
}

func (ts *twoSided) send(ctx context.Context, pkts []framing.Packet, write func([]framing.Packet) error, flush func() error) error {
	from := 0
	for i := range pkts {
		if !ts.sides.fromEast(&pkts[i]) {
			continue
		}
		if err := write(pkts[from:i]); err != nil {
			return err
		}
		ifc := pkts[i].Interface
		if ts.marked[ifc] == nil {
			ts.marked[ifc] = framing.TurnaroundOf(ifc)
		}
		pkts[i].Interface = ts.marked[ifc]
		before := ts.home()
		if err := write(pkts[i : i+1]); err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
		deadline := time.Now().Add(ts.wait)
		for ts.home() == before && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Microsecond)
		}
		from = i + 1
	}
	return write(pkts[from:])
}
