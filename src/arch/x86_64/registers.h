// Control registers, EFER, RFLAGS, XCR0, model-specific registers and segment
// selectors: the bits dunk sets when it puts a vCPU into 64-bit mode and the
// MSRs its guest runtime programs for `syscall`.
//
// Section numbers differ between editions of the Intel SDM, so each
// citation also gives the section's title.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/x86_64/bits.h"

namespace dunk::arch {

// CR0. Intel SDM vol. 3A §2.5 "Control Registers", Figure 2-7; AMD APM vol. 2
// §3.1.1 "CR0 Register".
namespace cr0 {
inline constexpr std::uint64_t kPE = bit(0);   // protection enable
inline constexpr std::uint64_t kMP = bit(1);   // monitor coprocessor
inline constexpr std::uint64_t kEM = bit(2);   // x87 emulation
inline constexpr std::uint64_t kTS = bit(3);   // task switched
inline constexpr std::uint64_t kET = bit(4);   // extension type (hard-wired 1)
inline constexpr std::uint64_t kNE = bit(5);   // native x87 error reporting
inline constexpr std::uint64_t kWP = bit(16);  // write protect in ring 0
inline constexpr std::uint64_t kAM = bit(18);  // alignment mask
inline constexpr std::uint64_t kNW = bit(29);  // not write-through
inline constexpr std::uint64_t kCD = bit(30);  // cache disable
inline constexpr std::uint64_t kPG = bit(31);  // paging
}  // namespace cr0

// CR4. Intel SDM vol. 3A §2.5 "Control Registers", Figure 2-7; AMD APM vol. 2
// §3.1.3 "CR4 Register".
namespace cr4 {
inline constexpr std::uint64_t kVME = bit(0);
inline constexpr std::uint64_t kPVI = bit(1);
inline constexpr std::uint64_t kTSD = bit(2);
inline constexpr std::uint64_t kDE = bit(3);
inline constexpr std::uint64_t kPSE = bit(4);
inline constexpr std::uint64_t kPAE = bit(5);
inline constexpr std::uint64_t kMCE = bit(6);
inline constexpr std::uint64_t kPGE = bit(7);
inline constexpr std::uint64_t kPCE = bit(8);
inline constexpr std::uint64_t kOSFXSR = bit(9);
inline constexpr std::uint64_t kOSXMMEXCPT = bit(10);
inline constexpr std::uint64_t kUMIP = bit(11);
inline constexpr std::uint64_t kLA57 = bit(12);
inline constexpr std::uint64_t kVMXE = bit(13);
inline constexpr std::uint64_t kSMXE = bit(14);
inline constexpr std::uint64_t kFSGSBASE = bit(16);
inline constexpr std::uint64_t kPCIDE = bit(17);
inline constexpr std::uint64_t kOSXSAVE = bit(18);
inline constexpr std::uint64_t kKL = bit(19);
inline constexpr std::uint64_t kSMEP = bit(20);
inline constexpr std::uint64_t kSMAP = bit(21);
inline constexpr std::uint64_t kPKE = bit(22);
inline constexpr std::uint64_t kCET = bit(23);
inline constexpr std::uint64_t kPKS = bit(24);
}  // namespace cr4

// IA32_EFER. Intel SDM vol. 3A §2.2.1 "Extended Feature Enable Register";
// AMD APM vol. 2 §3.1.7 "Extended Feature Enable Register (EFER)".
namespace efer {
inline constexpr std::uint64_t kSCE = bit(0);     // syscall/sysret enable
inline constexpr std::uint64_t kLME = bit(8);     // long mode enable
inline constexpr std::uint64_t kLMA = bit(10);    // long mode active
inline constexpr std::uint64_t kNXE = bit(11);    // execute-disable bit honoured
inline constexpr std::uint64_t kSVME = bit(12);   // AMD: SVM enable
inline constexpr std::uint64_t kLMSLE = bit(13);  // AMD: long mode segment limit enable
inline constexpr std::uint64_t kFFXSR = bit(14);  // AMD: fast fxsave/fxrstor
inline constexpr std::uint64_t kTCE = bit(15);    // AMD: translation cache extension
}  // namespace efer

// RFLAGS. Intel SDM vol. 1 §3.4.3 "EFLAGS Register", Figure 3-8; AMD APM
// vol. 2 §3.1.6 "RFLAGS Register".
namespace rflags {
inline constexpr std::uint64_t kCF = bit(0);
inline constexpr std::uint64_t kFixed1 = bit(1);  // reserved, always reads 1
inline constexpr std::uint64_t kPF = bit(2);
inline constexpr std::uint64_t kAF = bit(4);
inline constexpr std::uint64_t kZF = bit(6);
inline constexpr std::uint64_t kSF = bit(7);
inline constexpr std::uint64_t kTF = bit(8);
inline constexpr std::uint64_t kIF = bit(9);
inline constexpr std::uint64_t kDF = bit(10);
inline constexpr std::uint64_t kOF = bit(11);
inline constexpr std::uint64_t kIOPL = bit_mask(13, 12);
inline constexpr unsigned kIOPLShift = 12;
inline constexpr std::uint64_t kNT = bit(14);
inline constexpr std::uint64_t kRF = bit(16);
inline constexpr std::uint64_t kVM = bit(17);
inline constexpr std::uint64_t kAC = bit(18);
inline constexpr std::uint64_t kVIF = bit(19);
inline constexpr std::uint64_t kVIP = bit(20);
inline constexpr std::uint64_t kID = bit(21);
}  // namespace rflags

// XCR0 / IA32_XSS state components. Intel SDM vol. 1 §13.1 "XSAVE-Supported
// Features and State-Component Bitmaps"; AMD APM vol. 2 §11.5.2.
namespace xfeature {
inline constexpr std::uint64_t kX87 = bit(0);
inline constexpr std::uint64_t kSSE = bit(1);
inline constexpr std::uint64_t kAVX = bit(2);
inline constexpr std::uint64_t kBndregs = bit(3);
inline constexpr std::uint64_t kBndcsr = bit(4);
inline constexpr std::uint64_t kOpmask = bit(5);
inline constexpr std::uint64_t kZmmHi256 = bit(6);
inline constexpr std::uint64_t kHi16Zmm = bit(7);
inline constexpr std::uint64_t kPT = bit(8);  // supervisor (IA32_XSS)
inline constexpr std::uint64_t kPKRU = bit(9);
inline constexpr std::uint64_t kPasid = bit(10);  // supervisor
inline constexpr std::uint64_t kCetUser = bit(11);  // supervisor
inline constexpr std::uint64_t kCetSupervisor = bit(12);  // supervisor
inline constexpr std::uint64_t kHDC = bit(13);  // supervisor
inline constexpr std::uint64_t kUINTR = bit(14);  // supervisor
inline constexpr std::uint64_t kLBR = bit(15);  // supervisor
inline constexpr std::uint64_t kHWP = bit(16);  // supervisor
inline constexpr std::uint64_t kTileCfg = bit(17);
inline constexpr std::uint64_t kTileData = bit(18);

// Components managed through IA32_XSS, never XCR0: a bit here set in XCR0
// makes XSETBV fault, so a value copied from CPUID leaf 0xD must drop them.
inline constexpr std::uint64_t kSupervisorMask =
    kPT | kPasid | kCetUser | kCetSupervisor | kHDC | kUINTR | kLBR | kHWP;
inline constexpr std::uint64_t kRequired = kX87;
inline constexpr std::uint64_t kAvx512 = kOpmask | kZmmHi256 | kHi16Zmm;
inline constexpr std::uint64_t kMpx = kBndregs | kBndcsr;
inline constexpr std::uint64_t kAmx = kTileCfg | kTileData;

// The combinations XSETBV accepts (SDM vol. 1 §13.3 "Enabling the XSAVE
// Feature Set and XSAVE-Enabled Features"); a vCPU's XCR0 that violates them
// makes KVM_SET_XCRS fail.
constexpr bool all_or_none(std::uint64_t xcr0, std::uint64_t group) noexcept {
  return (xcr0 & group) == 0 || (xcr0 & group) == group;
}
constexpr bool valid_xcr0(std::uint64_t xcr0) noexcept {
  if ((xcr0 & kRequired) != kRequired) return false;
  if ((xcr0 & kSupervisorMask) != 0) return false;
  if ((xcr0 & kAVX) != 0 && (xcr0 & kSSE) == 0) return false;
  if ((xcr0 & kAvx512) != 0 && (xcr0 & (kSSE | kAVX)) != (kSSE | kAVX)) return false;
  return all_or_none(xcr0, kAvx512) && all_or_none(xcr0, kMpx) && all_or_none(xcr0, kAmx);
}
}  // namespace xfeature

// DR6, the debug status register (SDM vol. 3B §17.2.3, "Debug Status
// Register (DR6)"): what raised a #DB. Its bits are sticky; the handler
// writes the reset value back.
namespace dr6 {
inline constexpr std::uint64_t kBreakpoints = bit_mask(3, 0);  // B0-B3: DR0-DR3 matched
inline constexpr std::uint64_t kSingleStep = bit(14);          // BS: RFLAGS.TF
inline constexpr std::uint64_t kReset = 0xffff0ff0;            // its value after reset (RTM and BLD bits set)
}  // namespace dr6

// Model-specific register indices. Intel SDM vol. 4 "Model-Specific
// Registers", Table 2-2 "IA-32 Architectural MSRs"; AMD APM vol. 2
// Appendix A "MSR Cross-Reference".
namespace msr {
inline constexpr std::uint32_t kTsc = 0x10;
inline constexpr std::uint32_t kApicBase = 0x1b;
inline constexpr std::uint32_t kSysenterCs = 0x174;
inline constexpr std::uint32_t kSysenterEsp = 0x175;
inline constexpr std::uint32_t kSysenterEip = 0x176;
inline constexpr std::uint32_t kPat = 0x277;
inline constexpr std::uint32_t kXss = 0xda0;
inline constexpr std::uint32_t kEfer = 0xc0000080;
inline constexpr std::uint32_t kStar = 0xc0000081;
inline constexpr std::uint32_t kLstar = 0xc0000082;
inline constexpr std::uint32_t kCstar = 0xc0000083;
inline constexpr std::uint32_t kSfmask = 0xc0000084;  // Intel calls it IA32_FMASK
inline constexpr std::uint32_t kFmask = kSfmask;
inline constexpr std::uint32_t kFsBase = 0xc0000100;
inline constexpr std::uint32_t kGsBase = 0xc0000101;
inline constexpr std::uint32_t kKernelGsBase = 0xc0000102;
inline constexpr std::uint32_t kTscAux = 0xc0000103;
}  // namespace msr

// IA32_PAT's power-on value (SDM vol. 3A §13.12.4 "Programming the PAT"):
// entries WB, WT, UC-, UC repeated. With it, PAT/PCD/PWT = 0/0/0 is write-back.
inline constexpr std::uint64_t kPatPowerOn = 0x0007040600070406;

// The flags `syscall` clears on entry to dunk's ring 0 (SFMASK): interrupts
// stay off until the stub is on its own stack, TF would single-step the stub,
// DF/AC/NT set by user code must not leak into the kernel side.
inline constexpr std::uint64_t kSyscallFlagMask =
    rflags::kIF | rflags::kTF | rflags::kDF | rflags::kAC | rflags::kNT;

// A segment selector. Intel SDM vol. 3A §3.4.2 "Segment Selectors", Figure
// 3-6: bits 1:0 RPL, bit 2 TI (0 = GDT, 1 = LDT), bits 15:3 descriptor index.
class Selector {
 public:
  constexpr Selector() noexcept = default;
  constexpr explicit Selector(std::uint16_t raw) noexcept : raw_(raw) {}

  // The index is 13 bits and the RPL 2; wider values are truncated.
  static constexpr Selector make(unsigned index, unsigned rpl, bool ldt = false) noexcept {
    std::uint64_t raw = with_field(0, 15, 3, index);
    raw = with_bit(raw, 2, ldt);
    return Selector(static_cast<std::uint16_t>(with_field(raw, 1, 0, rpl)));
  }

  constexpr std::uint16_t raw() const noexcept { return raw_; }
  constexpr unsigned index() const noexcept { return static_cast<unsigned>(get_field(raw_, 15, 3)); }
  constexpr bool ldt() const noexcept { return get_bit(raw_, 2); }
  constexpr unsigned rpl() const noexcept { return static_cast<unsigned>(get_field(raw_, 1, 0)); }
  // Byte offset of the descriptor within its table.
  constexpr unsigned offset() const noexcept { return index() * 8; }
  constexpr Selector with_rpl(unsigned rpl) const noexcept { return make(index(), rpl, ldt()); }

  constexpr bool operator==(const Selector&) const noexcept = default;

 private:
  std::uint16_t raw_ = 0;
};
static_assert(sizeof(Selector) == 2);

// IA32_STAR. Intel SDM vol. 2B "SYSCALL" and "SYSRET"; AMD APM vol. 2 §6.1.1
// "SYSCALL and SYSRET". `syscall` loads CS from STAR[47:32] (RPL cleared) and
// SS from that + 8; a 64-bit `sysret` loads CS from STAR[63:48] + 16 and SS
// from STAR[63:48] + 8, both with RPL 3; a 32-bit `sysret` loads CS from
// STAR[63:48]. The GDT must be laid out to match, as Linux's is.
struct StarSelectors {
  Selector syscall_cs;
  Selector syscall_ss;
  Selector sysret_cs32;
  Selector sysret_cs64;
  Selector sysret_ss;
  constexpr bool operator==(const StarSelectors&) const noexcept = default;
};

constexpr std::uint64_t encode_star(Selector syscall_cs, Selector sysret_base) noexcept {
  return (std::uint64_t{sysret_base.raw()} << 48) | (std::uint64_t{syscall_cs.raw()} << 32);
}

constexpr StarSelectors decode_star(std::uint64_t star) noexcept {
  const auto syscall_base = static_cast<std::uint16_t>(get_field(star, 47, 32));
  const auto sysret_base = static_cast<std::uint16_t>(get_field(star, 63, 48));
  return StarSelectors{
      .syscall_cs = Selector(static_cast<std::uint16_t>(syscall_base & 0xfffc)),
      .syscall_ss = Selector(static_cast<std::uint16_t>(syscall_base + 8)),
      .sysret_cs32 = Selector(static_cast<std::uint16_t>(sysret_base | 3)),
      .sysret_cs64 = Selector(static_cast<std::uint16_t>((sysret_base + 16) | 3)),
      .sysret_ss = Selector(static_cast<std::uint16_t>((sysret_base + 8) | 3)),
  };
}

// STAR for a GDT with the given kernel and user selectors, or nullopt when
// the selectors are not placed the way syscall/sysret require (kernel SS
// right after kernel CS; user SS right after the 32-bit user CS and the
// 64-bit user CS right after user SS).
constexpr std::optional<std::uint64_t> make_star(Selector kernel_cs, Selector kernel_ss,
                                                 Selector user_cs32, Selector user_ss,
                                                 Selector user_cs64) noexcept {
  const std::uint64_t star = encode_star(kernel_cs.with_rpl(0), user_cs32.with_rpl(3));
  const StarSelectors want{kernel_cs.with_rpl(0), kernel_ss.with_rpl(0), user_cs32.with_rpl(3),
                           user_cs64.with_rpl(3), user_ss.with_rpl(3)};
  if (decode_star(star) != want) return std::nullopt;
  return star;
}

}  // namespace dunk::arch
