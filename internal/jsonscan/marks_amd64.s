//go:build !purego

#include "textflag.h"

// func classifyAVX2(src []byte, out []uint64)
// len(src) is a multiple of 64; out gets three words per 64-byte block:
// quote ('"'), special (a backslash or a byte < 0x20) and stop (special
// or a byte >= 0x80), bit k for byte k of the block.
TEXT ·classifyAVX2(SB), NOSPLIT, $0-48
	MOVQ src_base+0(FP), SI
	MOVQ src_len+8(FP), CX
	MOVQ out_base+24(FP), DI
	SHRQ $6, CX
	JZ   done

	MOVQ         $0x22, AX
	MOVQ         AX, X0
	VPBROADCASTB X0, Y0 // '"'
	MOVQ         $0x5c, AX
	MOVQ         AX, X1
	VPBROADCASTB X1, Y1 // '\\'
	MOVQ         $0x1f, AX
	MOVQ         AX, X2
	VPBROADCASTB X2, Y2 // 0x1f

loop:
	VMOVDQU (SI), Y3
	VMOVDQU 32(SI), Y4

	// quote
	VPCMPEQB  Y0, Y3, Y5
	VPCMPEQB  Y0, Y4, Y6
	VPMOVMSKB Y5, AX
	VPMOVMSKB Y6, DX
	SHLQ      $32, DX
	ORQ       DX, AX
	MOVQ      AX, (DI)

	// special: backslash, or x == min(x, 0x1f)
	VPCMPEQB  Y1, Y3, Y5
	VPMINUB   Y2, Y3, Y7
	VPCMPEQB  Y7, Y3, Y7
	VPOR      Y5, Y7, Y5
	VPCMPEQB  Y1, Y4, Y6
	VPMINUB   Y2, Y4, Y8
	VPCMPEQB  Y8, Y4, Y8
	VPOR      Y6, Y8, Y6
	VPMOVMSKB Y5, R8
	VPMOVMSKB Y6, DX
	SHLQ      $32, DX
	ORQ       DX, R8
	MOVQ      R8, 8(DI)

	// stop: special, or the bytes' top bits
	VPMOVMSKB Y3, AX
	VPMOVMSKB Y4, DX
	SHLQ      $32, DX
	ORQ       DX, AX
	ORQ       R8, AX
	MOVQ      AX, 16(DI)

	ADDQ $64, SI
	ADDQ $24, DI
	DECQ CX
	JNZ  loop

	VZEROUPPER

done:
	RET

// func classifyAVX512(src []byte, out []uint64)
// classifyAVX2 with AVX-512 (F, BW): one 64-byte load a block, each class
// one compare into a mask register, stored as the block's word.
TEXT ·classifyAVX512(SB), NOSPLIT, $0-48
	MOVQ src_base+0(FP), SI
	MOVQ src_len+8(FP), CX
	MOVQ out_base+24(FP), DI
	SHRQ $6, CX
	JZ   done512

	MOVL         $0x22, AX
	VPBROADCASTB AX, Z0 // '"'
	MOVL         $0x5c, AX
	VPBROADCASTB AX, Z1 // '\\'
	MOVL         $0x20, AX
	VPBROADCASTB AX, Z2 // 0x20

loop512:
	VMOVDQU64 (SI), Z3

	// quote
	VPCMPEQB Z0, Z3, K1
	KMOVQ    K1, (DI)

	// special: backslash, or x < 0x20 (unsigned)
	VPCMPEQB Z1, Z3, K2
	VPCMPUB  $1, Z2, Z3, K3
	KORQ     K2, K3, K2
	KMOVQ    K2, 8(DI)

	// stop: special, or the bytes' top bits
	VPMOVB2M Z3, K4
	KORQ     K2, K4, K4
	KMOVQ    K4, 16(DI)

	ADDQ $64, SI
	ADDQ $24, DI
	DECQ CX
	JNZ  loop512

	VZEROUPPER

done512:
	RET
