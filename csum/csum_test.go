package csum

import "testing"

// The IPv4 header of RFC 1071's worked example style: a header whose stored checksum makes
// the whole sum fold to zero.
func TestIPv4Header(t *testing.T) {
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
		0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	c := Fold(Sum(h, 0))
	if c != 0xb861 {
		t.Fatalf("checksum %#04x, want 0xb861", c)
	}
	h[10], h[11] = byte(c>>8), byte(c)
	if Fold(Sum(h, 0)) != 0 {
		t.Error("a header with its checksum does not verify")
	}
	if Fold(Sum([]byte{0x01}, 0)) != ^uint16(0x0100) {
		t.Error("an odd byte is not padded with zero")
	}
}

// Adjusting a checksum for changed bytes gives what summing the changed data gives.
func TestAdjust(t *testing.T) {
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
		0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	c := Fold(Sum(h, 0))
	old := append([]byte(nil), h[12:16]...)
	copy(h[12:16], []byte{203, 0, 113, 1})
	if got, want := Adjust(c, old, h[12:16]), Fold(Sum(h, 0)); got != want {
		t.Errorf("adjusted %#04x, summed %#04x", got, want)
	}
}
