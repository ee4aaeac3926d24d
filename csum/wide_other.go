//go:build !amd64

package csum

// haveWide is false where there is no vector implementation.
const haveWide = false

const wideMin = 1 << 30

func sumWide(b []byte) uint64 { panic("csum: no vector sum on this architecture") }
