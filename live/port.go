// Package live reads and writes frames on real network interfaces through AF_PACKET: a
// memory-mapped TPACKET_V2 receive ring (per-frame status, so an idle link adds no block
// timeout to latency), promiscuous, never capturing its own transmissions.
package live

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/stdpkt/stdpkt/framing"
)

// Ring geometry: 4 KiB frames hold a 1500-byte MTU frame with room to spare; frames larger
// than that (offloads left on: GRO, TSO) arrive truncated and are dropped and counted.
const (
	frameSize  = 4096
	blockSize  = 1 << 20
	blockCount = 8
	numFrames  = blockSize / frameSize * blockCount
	// Where tpacket2_hdr's sockaddr_ll sits in a ring frame, and its packet type byte.
	sllOffset     = 32
	pkttypeOffset = sllOffset + 10
	sllEnd        = sllOffset + 20
)

// Port is one interface, opened for capture and injection.
type Port struct {
	name  string
	iface *framing.Interface
	fd    int
	wake  int // eventfd that ends a blocked Read when the port closes
	ring  []byte

	next      int // the ring slot to look at next
	held      int // slots handed out by the last Read, given back to the kernel at the next
	truncated atomic.Uint64
	overruns  atomic.Uint64
	closeOnce sync.Once
	closed    atomic.Bool
	writeMu   sync.Mutex
}

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("port closed")

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Open opens interface name for capture and injection. Missing interfaces and missing
// privilege give errors that say what to do.
func Open(name string) (*Port, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w here (ip link lists them)", name, ErrNoInterface)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("interface %q: opening a packet socket needs the CAP_NET_RAW capability (run as root, or setcap cap_net_raw+ep on the binary): %w", name, err)
		}
		return nil, fmt.Errorf("interface %q: packet socket: %w", name, err)
	}
	p := &Port{name: name, fd: fd, wake: -1,
		iface: &framing.Interface{Name: name, LinkType: framing.LinkEthernet, SnapLen: frameSize}}
	if err := p.setup(ifc.Index); err != nil {
		p.Close()
		return nil, fmt.Errorf("interface %q: %w", name, err)
	}
	return p, nil
}

func (p *Port) setup(index int) error {
	// Frames we send must not come back to us: a loop otherwise, on every chain.
	if err := unix.SetsockoptInt(p.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("PACKET_IGNORE_OUTGOING (Linux 4.20 or later): %w", err)
	}
	if err := unix.SetsockoptInt(p.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return fmt.Errorf("TPACKET_V2: %w", err)
	}
	req := unix.TpacketReq{Block_size: blockSize, Block_nr: blockCount, Frame_size: frameSize, Frame_nr: numFrames}
	if err := unix.SetsockoptTpacketReq(p.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("PACKET_RX_RING: %w", err)
	}
	ring, err := unix.Mmap(p.fd, 0, blockSize*blockCount, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping the ring: %w", err)
	}
	p.ring = ring
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index}
	if err := unix.Bind(p.fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(p.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fmt.Errorf("promiscuous mode: %w", err)
	}
	if p.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	return nil
}

// ErrNoInterface is wrapped by Open's error when the interface does not exist.
var ErrNoInterface = errors.New("no such interface")

// OpenAll opens every named interface, or none: on an error the ones opened are released.
func OpenAll(names []string) ([]*Port, error) {
	var ports []*Port
	for _, name := range names {
		p, err := Open(name)
		if err != nil {
			for _, q := range ports {
				q.Release()
			}
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// Name returns the interface name.
func (p *Port) Name() string { return p.name }

// Interface returns the stream interface that frames from this port are tagged with.
func (p *Port) Interface() *framing.Interface { return p.iface }

func (p *Port) slot(i int) (*unix.Tpacket2Hdr, []byte) {
	f := p.ring[i*frameSize : (i+1)*frameSize]
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&f[0])), f
}

// Read fills pkts with captured frames, blocking until there is at least one, and returns
// how many. The frames alias the ring and stay valid until the next Read. Frames the ring
// cut short are dropped here and counted (Truncated).
func (p *Port) Read(pkts []framing.Packet) (int, error) {
	for i := 0; i < p.held; i++ {
		h, _ := p.slot((p.next - p.held + i + numFrames) % numFrames)
		atomic.StoreUint32(&h.Status, unix.TP_STATUS_KERNEL)
	}
	p.held = 0
	n := 0
	for n < len(pkts) {
		h, f := p.slot(p.next)
		status := atomic.LoadUint32(&h.Status)
		if status&unix.TP_STATUS_USER == 0 {
			if n > 0 {
				break
			}
			if err := p.wait(); err != nil {
				return 0, err
			}
			continue
		}
		p.next = (p.next + 1) % numFrames
		p.held++
		if status&unix.TP_STATUS_LOSING != 0 {
			p.countOverruns()
		}
		if f[pkttypeOffset] == unix.PACKET_OUTGOING {
			continue
		}
		if h.Snaplen < h.Len {
			p.truncated.Add(1)
			continue
		}
		mac := int(h.Mac)
		data := f[mac : mac+int(h.Snaplen)]
		if status&unix.TP_STATUS_VLAN_VALID != 0 && mac >= sllEnd+4 {
			// The kernel took the VLAN tag out; put it back in the room before the frame.
			copy(f[mac-4:], f[mac:mac+12])
			tpid := h.Vlan_tpid
			if tpid == 0 {
				tpid = 0x8100
			}
			binary.BigEndian.PutUint16(f[mac+8:], tpid)
			binary.BigEndian.PutUint16(f[mac+10:], h.Vlan_tci)
			data = f[mac-4 : mac+int(h.Snaplen)]
		}
		pk := &pkts[n]
		pk.Data = data[:len(data):len(data)]
		pk.Length = len(data) + int(h.Len-h.Snaplen)
		pk.Timestamp = int64(h.Sec)*1e9 + int64(h.Nsec)
		pk.Interface = p.iface
		pk.Direction = framing.DirInbound
		n++
	}
	return n, nil
}

// wait blocks until the ring has a frame or the port closes.
func (p *Port) wait() error {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}, {Fd: int32(p.wake), Events: unix.POLLIN}}
	for {
		if p.closed.Load() {
			return ErrClosed
		}
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: poll: %w", p.name, err)
		}
		if fds[1].Revents != 0 || p.closed.Load() {
			return ErrClosed
		}
		if fds[0].Revents&unix.POLLERR != 0 {
			return fmt.Errorf("%s: the interface went away", p.name)
		}
		return nil
	}
}

// Write sends frames out of the interface and returns how many it sent and their bytes. A
// frame the interface refuses (too big for its MTU, the link down) is not sent and not an
// error: one bad frame must not stop a chain.
func (p *Port) Write(pkts []framing.Packet) (sent, bytes int, err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if p.fd < 0 {
		return 0, 0, ErrClosed
	}
	for i := range pkts {
		if _, werr := unix.Write(p.fd, pkts[i].Data); werr == nil {
			sent++
			bytes += len(pkts[i].Data)
		}
	}
	return sent, bytes, nil
}

func (p *Port) countOverruns() {
	if st, err := unix.GetsockoptTpacketStats(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		p.overruns.Add(uint64(st.Drops)) // the kernel resets its counters on every read
	}
}

// TakeDrops returns the frames lost since the last call: the ring was full (overruns), or a
// frame was larger than a ring slot (truncated).
func (p *Port) TakeDrops() (overruns, truncated uint64) {
	p.countOverruns()
	return p.overruns.Swap(0), p.truncated.Swap(0)
}

// Close ends a blocked Read and releases the socket and ring.
func (p *Port) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		if p.wake >= 0 {
			var one [8]byte
			one[0] = 1
			_, _ = unix.Write(p.wake, one[:])
		}
	})
	return nil
}

// Release frees the socket and ring once no Read or Write can be running.
func (p *Port) Release() {
	p.Close()
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if p.ring != nil {
		_ = unix.Munmap(p.ring)
		p.ring = nil
	}
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
	if p.wake >= 0 {
		unix.Close(p.wake)
		p.wake = -1
	}
}
