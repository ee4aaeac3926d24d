package osinst

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
)

// linkMTU is the NICs' MTU. Large, so netstack never fragments what it forwards: a frame
// that came in goes out as one frame.
const linkMTU = 65535

// linkEP is a NIC's Ethernet link endpoint. What netstack writes on it goes to the output of
// the NIC's direction (the east NIC writes eastbound frames), at once: writes never queue
// or drop silently, and a refused write is counted books.Output. Inbound frames are handed
// to the dispatcher by Instance.route.
type linkEP struct {
	in   *Instance
	dir  books.Dir
	name string
	mac  tcpip.LinkAddress
	ifc  *framing.Interface // tags frames the instance generates on this NIC

	mu   sync.RWMutex
	disp stack.NetworkDispatcher
}

var _ stack.LinkEndpoint = (*linkEP)(nil)

func newLinkEP(in *Instance, dir books.Dir, name string, mac tcpip.LinkAddress) *linkEP {
	return &linkEP{in: in, dir: dir, name: name, mac: mac,
		ifc: &framing.Interface{Name: name, LinkType: framing.LinkEthernet}}
}

// MTU implements stack.LinkEndpoint.
func (e *linkEP) MTU() uint32 { return linkMTU }

// SetMTU implements stack.LinkEndpoint; the MTU is fixed.
func (e *linkEP) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint.
func (e *linkEP) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *linkEP) LinkAddress() tcpip.LinkAddress { return e.mac }

// SetLinkAddress implements stack.LinkEndpoint; the address is fixed.
func (e *linkEP) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint: Ethernet needs address resolution.
func (e *linkEP) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// Attach implements stack.LinkEndpoint.
func (e *linkEP) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.disp = d
	e.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (e *linkEP) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.disp != nil
}

// Wait implements stack.LinkEndpoint; there are no goroutines to wait for.
func (e *linkEP) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (e *linkEP) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.
func (e *linkEP) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.mac
	}
	eth.Encode(&header.EthernetFields{SrcAddr: src, DstAddr: pkt.EgressRoute.RemoteLinkAddress, Type: pkt.NetworkProtocolNumber})
}

// ParseHeader implements stack.LinkEndpoint.
func (e *linkEP) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Close implements stack.LinkEndpoint.
func (e *linkEP) Close() {}

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *linkEP) SetOnCloseAction(func()) {}

// deliver hands an inbound Ethernet frame to the stack; false if it has no dispatcher or the
// frame is too short.
func (e *linkEP) deliver(pkt *stack.PacketBuffer) bool {
	e.mu.RLock()
	d := e.disp
	e.mu.RUnlock()
	if d == nil || !e.ParseHeader(pkt) {
		return false
	}
	eth := header.Ethernet(pkt.LinkHeader().Slice())
	switch dst := eth.DestinationAddress(); {
	case dst == header.EthernetBroadcastAddress:
		pkt.PktType = tcpip.PacketBroadcast
	case header.IsMulticastEthernetAddress(dst):
		pkt.PktType = tcpip.PacketMulticast
	case dst == e.mac:
		pkt.PktType = tcpip.PacketHost
	default:
		pkt.PktType = tcpip.PacketOtherHost
	}
	d.DeliverNetworkPacket(eth.Type(), pkt)
	return true
}

// WritePackets implements stack.LinkEndpoint: each packet becomes a frame on the NIC's
// output, tagged as the input frame it was forwarded from, or as generated.
func (e *linkEP) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		size := pkt.Size()
		b := make([]byte, 0, size)
		for _, s := range pkt.AsSlices() {
			b = append(b, s...)
		}
		e.in.sent(e, b)
		n++
	}
	return n, nil
}
