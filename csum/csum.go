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
