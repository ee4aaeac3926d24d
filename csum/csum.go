// Package csum computes the Internet checksum (RFC 1071) over byte slices, for the places
// that build or rewrite headers themselves: the generator and the NAT's translated frames.
package csum

import (
	"encoding/binary"
	"math/bits"
)

// Sum adds b as big-endian 16-bit words to acc, unfolded, so sums of several pieces (a
// pseudo-header, then a segment) can be chained. acc stays below 2^17 plus what the caller
// passed in.
func Sum(b []byte, acc uint32) uint32 {
	if len(b) < 32 {
		return acc + sumShort(b)
	}
	if haveWide && len(b) >= wideMin {
		return acc + sumVector(b)
	}
	return sumChains(b, acc)
}

// sumChains is Sum with carry chains, for any length.
func sumChains(b []byte, acc uint32) uint32 {
	// Eight bytes at a time with end-around carry: 2^16 is 1 modulo 2^16-1, so the
	// ones'-complement sum of 64-bit big-endian words folds to that of the 16-bit ones.
	// Two carry chains, one for each half of a 32-byte step, so the CPU can run them side
	// by side; their sums are added at the end.
	var s, c, s2, c2 uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		s2, c2 = bits.Add64(s2, binary.BigEndian.Uint64(b[8:]), c2)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[16:]), c)
		s2, c2 = bits.Add64(s2, binary.BigEndian.Uint64(b[24:]), c2)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	// Join the chains: s plus s2 plus both carries, the carries out of that (up to two)
	// added back end-around; one that wraps s leaves it below 2, so adding 1 cannot.
	s, c = bits.Add64(s, s2, c)
	s, c2 = bits.Add64(s, c2, 0)
	c += c2
	s += c
	if s < c {
		s++
	}
	// Fold to 32 bits, then add the tail of 0 to 7 bytes as 16-bit words.
	t := s>>32 + s&0xffffffff
	for len(b) >= 2 {
		t += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		t += uint64(b[0]) << 8
	}
	for t > 0xffff {
		t = t>>16 + t&0xffff
	}
	return acc + uint32(t)
}

// sumVector sums b (32 bytes or more) with sumWide, 64 KiB at a time, and the tail of
// under 32 bytes with sumShort. sumWide adds little-endian words: the ones'-complement
// sum of byte-swapped words is the byte-swapped sum (RFC 1071, byte order independence),
// so its folded sum is swapped back.
func sumVector(b []byte) uint32 {
	var s uint64
	for len(b) >= 32 {
		n := min(len(b), 64<<10) &^ 31
		s += sumWide(b[:n])
		b = b[n:]
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint32(s>>8|s<<8&0xff00) + sumShort(b)
}

// Fold folds an accumulated sum to 16 bits and complements it: the checksum to store.
func Fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}

// Adjust updates a stored checksum for 16-bit-aligned bytes that changed from old to new
// (RFC 1624: HC' = ~(~HC + ~m + m')), without summing the rest of the data again. old and
// new have the same even length.
func Adjust(sum uint16, old, new []byte) uint16 {
	return Fold(uint32(^sum) + Delta(0, old, new))
}

// Delta adds to acc what changing old into new adds to a ones'-complement sum (~m + m'
// for each 16-bit word), folded to 16 bits: the deltas of several fields add up, and
// Fold(uint32(^sum) + delta) is the updated checksum, as Adjust field by field gives it.
// old and new have the same even length.
func Delta(acc uint32, old, new []byte) uint32 {
	for i := 0; i+1 < len(old); i += 2 {
		acc += uint32(^(uint16(old[i])<<8 | uint16(old[i+1])))
		acc += uint32(uint16(new[i])<<8 | uint16(new[i+1]))
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return acc
}

// sumShort sums fewer than 32 bytes, a header or a pseudo-header, as big-endian 32-bit
// words in a 64-bit accumulator (2^32 is 1 modulo 2^16-1, as 2^16 is): no carries to
// track, a few loads and adds where the carry chains above cost more to set up and join.
func sumShort(b []byte) uint32 {
	var s uint64
	if len(b) >= 16 {
		s = uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:])) +
			uint64(binary.BigEndian.Uint32(b[8:])) + uint64(binary.BigEndian.Uint32(b[12:]))
		b = b[16:]
	}
	for len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return Reduce(s)
}

// Reduce folds a sum of big-endian 32-bit words kept in 64 bits (fewer than 2^32 of them)
// to a 16-bit partial sum, for callers that add a few header words themselves: it inlines,
// where a call to Sum costs more than the adding.
func Reduce(s uint64) uint32 {
	s = s>>32 + s&0xffffffff // below 2^32 + 2^32
	s = s>>16 + s&0xffff     // below 2^17
	s = s>>16 + s&0xffff     // at most 0xffff
	return uint32(s)
}
