// Package csum computes the Internet checksum (RFC 1071) over byte slices, for the places
// that build or rewrite headers themselves: the generator and the NAT's translated frames.
package csum

// Sum adds b as big-endian 16-bit words to acc, unfolded, so sums of several pieces (a
// pseudo-header, then a segment) can be chained.
func Sum(b []byte, acc uint32) uint32 {
	for len(b) >= 2 {
		acc += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
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
	acc := uint32(^sum)
	for i := 0; i+1 < len(old); i += 2 {
		acc += uint32(^(uint16(old[i])<<8 | uint16(old[i+1])))
		acc += uint32(uint16(new[i])<<8 | uint16(new[i+1]))
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}
