#include "textflag.h"

// func sumWide(b []byte) uint64
//
// Adds the 16-bit little-endian words of b, 64 bytes a step: each 32-bit lane of a load
// holds two words, taken apart with a mask and a shift and added into four accumulators
// of eight 32-bit lanes (two per load, so the adds of a step do not wait on each other).
// With at most 64 KiB, a lane gets at most 1024 words of at most 0xffff: no overflow.
// The lanes are then added in 64 bits.
TEXT ·sumWide(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPCMPEQD Y15, Y15, Y15
	VPSRLD $16, Y15, Y15 // 0x0000ffff in every lane

loop64:
	CMPQ CX, $64
	JB   last32
	VMOVDQU (SI), Y4
	VMOVDQU 32(SI), Y5
	VPAND   Y15, Y4, Y6
	VPSRLD  $16, Y4, Y4
	VPAND   Y15, Y5, Y7
	VPSRLD  $16, Y5, Y5
	VPADDD  Y6, Y0, Y0
	VPADDD  Y4, Y1, Y1
	VPADDD  Y7, Y2, Y2
	VPADDD  Y5, Y3, Y3
	ADDQ    $64, SI
	SUBQ    $64, CX
	JMP     loop64

last32:
	CMPQ CX, $32
	JB   reduce
	VMOVDQU (SI), Y4
	VPAND   Y15, Y4, Y6
	VPSRLD  $16, Y4, Y4
	VPADDD  Y6, Y0, Y0
	VPADDD  Y4, Y1, Y1

reduce:
	VPADDD       Y2, Y0, Y0
	VPADDD       Y3, Y1, Y1
	VPADDD       Y1, Y0, Y0   // lanes below 2^28
	VEXTRACTI128 $1, Y0, X1
	VPMOVZXDQ    X0, Y2       // four lanes to 64 bits
	VPMOVZXDQ    X1, Y3       // and the other four
	VPADDQ       Y3, Y2, Y2
	VEXTRACTI128 $1, Y2, X3
	VPADDQ       X3, X2, X2
	VPSHUFD      $0x4e, X2, X3 // the two halves swapped
	VPADDQ       X3, X2, X2
	VMOVQ        X2, AX
	VZEROUPPER
	MOVQ         AX, ret+24(FP)
	RET
