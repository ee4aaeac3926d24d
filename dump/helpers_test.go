package dump

import (
	"encoding/binary"
	"os"
	"os/exec"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/stdpkt/stdpkt/dump/dumptest"
)

// trace returns the shared mixed trace.
func trace(t testing.TB) []dumptest.Frame {
	t.Helper()
	frames, err := dumptest.Trace()
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// writePcap writes frames as classic pcap with nanosecond timestamps, by gopacket's writer.
func writePcap(t testing.TB, path string, link layers.LinkType, frames []dumptest.Frame) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65536, link); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.TS, CaptureLength: len(fr.Data), Length: len(fr.Data)}
		if err := w.WritePacket(ci, fr.Data); err != nil {
			t.Fatal(err)
		}
	}
}

// needTool skips the test, loudly, when a real tool it compares against is missing.
func needTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("SKIPPED, NOT TESTED: %s is not installed (`make test` installs it when run as root)", tool)
	}
}

// sll wraps an Ethernet frame's payload (what follows its 14-byte header) in a Linux cooked
// (SLL) header with packet type pkttype and the frame's source MAC.
func sll(frame []byte, pkttype uint16) []byte {
	h := make([]byte, 16, 16+len(frame))
	binary.BigEndian.PutUint16(h[0:], pkttype)
	binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(h[4:], 6)
	copy(h[6:], frame[6:12])
	copy(h[14:], frame[12:14])
	return append(h, frame[14:]...)
}

// sll2 wraps it in an SLL2 header with interface index ifindex.
func sll2(frame []byte, pkttype uint8, ifindex uint32) []byte {
	h := make([]byte, 20, 20+len(frame))
	copy(h[0:], frame[12:14])
	binary.BigEndian.PutUint32(h[4:], ifindex)
	binary.BigEndian.PutUint16(h[8:], 1)
	h[10], h[11] = pkttype, 6
	copy(h[12:], frame[6:12])
	return append(h, frame[14:]...)
}

// relink rewraps the untagged IP and ARP frames of the trace for another link type.
func relink(frames []dumptest.Frame, wrap func([]byte) []byte) []dumptest.Frame {
	var out []dumptest.Frame
	for _, fr := range frames {
		if et := binary.BigEndian.Uint16(fr.Data[12:]); et != 0x0800 && et != 0x86dd && et != 0x0806 {
			continue
		}
		if w := wrap(fr.Data); w != nil {
			out = append(out, dumptest.Frame{TS: fr.TS, Data: w, Note: fr.Note})
		}
	}
	return out
}

// rawIP returns what follows the Ethernet header of an IP frame, nil for anything else;
// the padding Ethernet added to short frames is cut by the IP length.
func rawIP(frame []byte) []byte {
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		n := int(binary.BigEndian.Uint16(frame[16:]))
		return append([]byte(nil), frame[14:14+n]...)
	case 0x86dd:
		n := 40 + int(binary.BigEndian.Uint16(frame[18:]))
		return append([]byte(nil), frame[14:14+n]...)
	}
	return nil
}
