package csum

import (
	"bytes"
	"fmt"
	"testing"
)

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
// Deltas of several fields, added up once, update a checksum to what summing the changed
// data gives, as adjusting field by field does.
func FuzzDelta(f *testing.F) {
	f.Add([]byte{0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7, 0x9c, 0x40, 0, 53}, []byte{203, 0, 113, 1, 0xc0, 0xa8, 0, 0xc7, 0x04, 0, 0, 53}, []byte{0, 0x1e, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, old, new, rest []byte) {
		n := min(len(old), len(new)) &^ 1
		old, new = old[:n], new[:n]
		data := append(append([]byte(nil), old...), rest...)
		stored := Fold(Sum(data, 0))
		var d uint32
		for i := 0; i < n; i += 4 { // fields of up to 4 bytes, as addresses and ports are
			j := min(i+4, n)
			d = Delta(d, old[i:j], new[i:j])
		}
		copy(data, new)
		want := Fold(Sum(data, 0))
		if got := Fold(uint32(^stored) + d); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("delta update %#04x, summed afresh %#04x", got, want)
		}
		if got, byField := Fold(uint32(^stored)+d), Adjust(stored, old, new); got != byField {
			t.Fatalf("delta update %#04x, field by field %#04x", got, byField)
		}
	})
}

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

// Sum agrees with a plain 16-bit word sum on every length and alignment, and chains.
// plain is the ones'-complement sum as RFC 1071 spells it, 16 bits at a time.
func plain(b []byte, acc uint32) uint32 {
	s := uint64(acc) // 64 bits: a quarter of a megabyte of 0xffff words overflows 32
	for len(b) >= 2 {
		s += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint32(s)
}

func FuzzSum(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0xff}, 1500), uint32(0))
	f.Add([]byte{0x45, 0, 0, 0x73}, uint32(7))
	f.Fuzz(func(t *testing.T, b []byte, acc uint32) {
		acc >>= 8 // callers pass partial sums, far below 2^32
		want := Fold(plain(b, acc))
		if got := Fold(Sum(b, acc)); got != want {
			t.Fatalf("%d bytes: %#04x, want %#04x", len(b), got, want)
		}
		if got := Fold(sumChains(b, acc)); got != want {
			t.Fatalf("carry chains, %d bytes: %#04x, want %#04x", len(b), got, want)
		}
		if haveWide && len(b) >= 32 {
			if got := Fold(sumVector(b) + acc); got != want {
				t.Fatalf("vector sum, %d bytes: %#04x, want %#04x", len(b), got, want)
			}
		}
	})
}

func TestSumMatchesWordSum(t *testing.T) {
	b := make([]byte, 9100)
	for i := range b {
		b[i] = byte(i*131 + i>>8*7 + 0xf0)
	}
	for i := 0; i < 40; i++ {
		b[100+i*3] = 0xff // long runs of ones exercise the carries
	}
	for n := 0; n <= len(b); n += 1 + n/16 {
		for _, off := range []int{0, 1} {
			in := b[off : off+min(n, len(b)-off)]
			want := Fold(plain(in, 7))
			if got := Fold(Sum(in, 7)); got != want {
				t.Fatalf("%d bytes at offset %d: %#04x, want %#04x", len(in), off, got, want)
			}
			if got := Fold(sumChains(in, 7)); got != want {
				t.Fatalf("carry chains, %d bytes at offset %d: %#04x, want %#04x", len(in), off, got, want)
			}
			if got := Fold(sumVector(in) + 7); haveWide && len(in) >= 32 && got != want {
				t.Fatalf("vector sum, %d bytes at offset %d: %#04x, want %#04x", len(in), off, got, want)
			}
		}
	}
	ones := bytes.Repeat([]byte{0xff}, 1500)
	if got, want := Fold(Sum(ones, 0)), Fold(plain(ones, 0)); got != want {
		t.Fatalf("all ones: %#04x, want %#04x", got, want)
	}
}

// Long inputs go to sumWide in 64 KiB pieces; all ones make every lane as full as it gets.
func TestSumLong(t *testing.T) {
	for _, n := range []int{64 << 10, 64<<10 + 31, 64<<10 + 32, 200 << 10, 256<<10 + 5} {
		for _, fill := range []byte{0xff, 0x5a} {
			b := bytes.Repeat([]byte{fill}, n)
			b[n/3] = 0x01
			if got, want := Fold(Sum(b, 3)), Fold(plain(b, 3)); got != want {
				t.Fatalf("%d bytes of %#x: %#04x, want %#04x", n, fill, got, want)
			}
		}
	}
}

// Sum, whichever way it takes, against the carry chains alone (sumChains) and against
// the vector sum alone where there is one: the three agree, and wideMin is where the
// vector sum starts paying.
func BenchmarkSumLengths(b *testing.B) {
	for _, n := range []int{32, 64, 96, 128, 256, 576, 1480, 9000} {
		buf := bytes.Repeat([]byte{0xa5}, n)
		b.Run(fmt.Sprintf("%d/Sum", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				Sum(buf, 0)
			}
		})
		b.Run(fmt.Sprintf("%d/chains", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				sumChains(buf, 0)
			}
		})
		if haveWide {
			b.Run(fmt.Sprintf("%d/vector", n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					sumVector(buf)
				}
			})
		}
	}
}

func BenchmarkSum20(b *testing.B) {
	buf := make([]byte, 20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Sum(buf, 0)
	}
}

func BenchmarkSum1480(b *testing.B) {
	buf := make([]byte, 1480)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Sum(buf, 0)
	}
}
