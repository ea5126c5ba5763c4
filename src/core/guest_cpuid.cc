#include "core/guest_cpuid.h"

namespace dunk::core {
namespace {

constexpr std::uint32_t bits(std::initializer_list<unsigned> list) {
  std::uint32_t v = 0;
  for (unsigned b : list) v |= std::uint32_t{1} << b;
  return v;
}

// Bit positions from Intel SDM vol. 2A, CPUID, tables "Feature Information
// Returned in the ECX/EDX Register" and "Structured Extended Feature Flags
// Enumeration Leaf", and AMD's CPUID Specification (leaf 8000_0001h).
constexpr IsaFeatureMask kMasks[] = {
    // Leaf 1 ECX: SSE3 0, PCLMULQDQ 1, SSSE3 9, FMA 12, CMPXCHG16B 13, SSE4.1 19,
    // SSE4.2 20, MOVBE 22, POPCNT 23, AES 25, XSAVE 26, AVX 28, F16C 29, RDRAND 30.
    // EDX: FPU 0, TSC 4, CX8 8, CMOV 15, CLFSH 19, MMX 23, FXSR 24, SSE 25, SSE2 26.
    {0x1, 0, 0, 0, bits({0, 1, 9, 12, 13, 19, 20, 22, 23, 25, 26, 28, 29, 30}),
     bits({0, 4, 8, 15, 19, 23, 24, 25, 26})},
    // Leaf 7.0 EBX: FSGSBASE 0 (the program may use RDFSBASE), BMI1 3, AVX2 5, BMI2 8, ERMS 9, AVX512F 16,
    // AVX512DQ 17, RDSEED 18, ADX 19, AVX512_IFMA 21, CLFLUSHOPT 23, CLWB 24,
    // AVX512PF 26, AVX512ER 27, AVX512CD 28, SHA 29, AVX512BW 30, AVX512VL 31.
    // ECX: AVX512_VBMI 1, AVX512_VBMI2 6, GFNI 8, VAES 9, VPCLMULQDQ 10,
    // AVX512_VNNI 11, AVX512_BITALG 12, AVX512_VPOPCNTDQ 14, RDPID 22.
    // EDX: FSRM 4, AVX512_VP2INTERSECT 8, SERIALIZE 14, AVX512_FP16 23.
    {0x7, 0, 0, bits({0, 3, 5, 8, 9, 16, 17, 18, 19, 21, 23, 24, 26, 27, 28, 29, 30, 31}),
     bits({1, 6, 8, 9, 10, 11, 12, 14, 22}), bits({4, 8, 14, 23})},
    // Leaf 7.1 EAX: AVX_VNNI 4, AVX512_BF16 5.
    {0x7, 1, bits({4, 5}), 0, 0, 0},
    // Leaf 0Dh.1 EAX: XSAVEOPT 0, XSAVEC 1, XGETBV with ECX=1 2. ld.so's
    // lazy-binding trampoline saves registers with XSAVEC when the host has it.
    {0xd, 1, bits({0, 1, 2}), 0, 0, 0},
    // Leaf 8000_0001h ECX: LAHF/SAHF 0, ABM/LZCNT 5, SSE4A 6, MisAlignSse 7,
    // PREFETCHW 8, XOP 11, FMA4 16, TBM 21. EDX: SYSCALL 11, NX 20, MmxExt 22,
    // FFXSR 25, RDTSCP 27, LM 29.
    {0x8000'0001, 0, 0, 0, bits({0, 5, 6, 7, 8, 11, 16, 21}), bits({11, 20, 22, 25, 27, 29})},
};

}  // namespace

std::span<const IsaFeatureMask> isa_feature_masks() noexcept { return kMasks; }

}  // namespace dunk::core
