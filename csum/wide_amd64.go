package csum

import "golang.org/x/sys/cpu"

// haveWide says whether sumWide may run: it needs AVX2, which the CPU and the kernel
// (saving the wide registers) both have to support; x/sys/cpu checks both. It is set once,
// before any caller, and never changes.
var haveWide = cpu.X86.HasAVX2

// wideMin is the length from which summing 32 bytes at a time in vector registers beats
// the carry chains (BenchmarkSumLengths): below it, the setup and the final horizontal
// add cost more than they save.
const wideMin = 96

// sumWide returns the sum of b as little-endian 16-bit words in 64 bits, unfolded. len(b)
// is a multiple of 32, at most 64 KiB, so no 32-bit lane can overflow.
//
//go:noescape
func sumWide(b []byte) uint64
