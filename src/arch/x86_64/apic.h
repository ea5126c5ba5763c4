// The local APIC in x2APIC mode: its MSR numbers, the interrupt command
// register (ICR) that sends inter-processor interrupts, IA32_APIC_BASE and
// the spurious-interrupt vector register. Pure encoders and decoders; the
// guest runtime writes the values with WRMSR, which KVM's in-kernel local
// APIC serves without leaving the kernel.
//
// Intel SDM vol. 3A chapter "Advanced Programmable Interrupt Controller
// (APIC)": §"Interrupt Command Register (ICR)" (Figure "Interrupt Command
// Register"), §"x2APIC Register Address Space" (Table "Local APIC Register
// Address Map Supported by x2APIC"), §"ICR Operation in x2APIC Mode",
// §"Spurious Interrupt" (Figure "Spurious-Interrupt Vector Register"), and
// §"Local APIC Status and Location" (Figure "IA32_APIC_BASE MSR"). AMD APM
// vol. 2 §16.4 "Interprocessor Interrupts (IPI)" and §16.11 "x2APIC".
// Chapter numbers moved between editions (10 in older SDMs, 11 or 12 in
// newer ones), hence the titles.
#pragma once

#include <cstdint>

#include "arch/x86_64/bits.h"

namespace dunk::arch::apic {

// IA32_APIC_BASE (MSR 0x1b): bit 8 BSP, bit 10 EXTD (x2APIC mode), bit 11
// EN (APIC global enable), bits MAXPHYADDR-1:12 the xAPIC page's base. x2APIC
// mode needs EN and EXTD both set.
inline constexpr std::uint64_t kBaseBsp = bit(8);
inline constexpr std::uint64_t kBaseExtd = bit(10);
inline constexpr std::uint64_t kBaseEnable = bit(11);
// The architectural default xAPIC page; unused in x2APIC mode, but the field
// keeps its reset value.
inline constexpr std::uint64_t kDefaultBase = 0xfee0'0000;

constexpr std::uint64_t x2apic_base(bool bsp) noexcept {
  return kDefaultBase | kBaseEnable | kBaseExtd | (bsp ? kBaseBsp : 0);
}

// x2APIC registers are MSRs 0x800 + (xAPIC MMIO offset >> 4).
inline constexpr std::uint32_t kMsrBase = 0x800;
constexpr std::uint32_t msr_of_offset(std::uint32_t mmio_offset) noexcept { return kMsrBase + (mmio_offset >> 4); }

namespace msr {
inline constexpr std::uint32_t kId = msr_of_offset(0x020);       // 0x802, read-only in x2APIC mode
inline constexpr std::uint32_t kVersion = msr_of_offset(0x030);  // 0x803
inline constexpr std::uint32_t kTpr = msr_of_offset(0x080);      // 0x808, task priority
inline constexpr std::uint32_t kEoi = msr_of_offset(0x0b0);      // 0x80b, write 0
inline constexpr std::uint32_t kSvr = msr_of_offset(0x0f0);      // 0x80f, spurious-interrupt vector
inline constexpr std::uint32_t kIsr0 = msr_of_offset(0x100);     // 0x810..0x817, in-service bits 32 at a time
inline constexpr std::uint32_t kIrr0 = msr_of_offset(0x200);     // 0x820..0x827, requested bits
inline constexpr std::uint32_t kIcr = msr_of_offset(0x300);      // 0x830, one 64-bit register in x2APIC mode
inline constexpr std::uint32_t kLvtLint0 = msr_of_offset(0x350); // 0x835
inline constexpr std::uint32_t kLvtLint1 = msr_of_offset(0x360); // 0x836
inline constexpr std::uint32_t kSelfIpi = msr_of_offset(0x3f0);  // 0x83f, x2APIC only
}  // namespace msr

// The in-service (ISR) or request (IRR) MSR that holds `vector`'s bit, and
// the bit within it: eight 32-bit registers, vector v in register v / 32.
constexpr std::uint32_t isr_msr(unsigned vector) noexcept { return msr::kIsr0 + ((vector & 0xff) >> 5); }
constexpr std::uint32_t irr_msr(unsigned vector) noexcept { return msr::kIrr0 + ((vector & 0xff) >> 5); }
constexpr unsigned vector_bit(unsigned vector) noexcept { return vector & 31; }

// The same registers in the xAPIC register page (what KVM_GET_LAPIC and
// KVM_SET_LAPIC exchange, `struct kvm_lapic_state`): 32-bit registers every
// 16 bytes (SDM vol. 3A Table 11-1, "Local APIC Register Address Map").
inline constexpr std::uint32_t kPageIsr0 = 0x100;
inline constexpr std::uint32_t kPageIrr0 = 0x200;
constexpr std::uint32_t irr_page_offset(unsigned vector) noexcept { return kPageIrr0 + 0x10 * ((vector & 0xff) >> 5); }

// Spurious-interrupt vector register: bits 7:0 the spurious vector, bit 8
// APIC software enable (interrupts are accepted only with it set), bit 12
// EOI-broadcast suppression.
inline constexpr std::uint64_t kSvrEnable = bit(8);
constexpr std::uint64_t make_svr(unsigned spurious_vector) noexcept {
  return with_field(kSvrEnable, 7, 0, spurious_vector);
}

// LVT entries: bit 16 masks the entry.
inline constexpr std::uint64_t kLvtMasked = bit(16);

// ICR fields. In x2APIC mode the ICR is one 64-bit MSR: bits 63:32 the
// destination's x2APIC ID (xAPIC's 8-bit field at 63:56 is gone), the
// delivery-status bit 12 reads as 0 and the write is the send.
enum class DeliveryMode : std::uint8_t {  // bits 10:8
  kFixed = 0,
  kLowestPriority = 1,
  kSmi = 2,
  kNmi = 4,
  kInit = 5,
  kStartUp = 6,
};

enum class Shorthand : std::uint8_t {  // bits 19:18
  kNone = 0,                           // the destination field says who
  kSelf = 1,
  kAllIncludingSelf = 2,
  kAllExcludingSelf = 3,
};

struct Icr {
  std::uint8_t vector = 0;                             // 7:0
  DeliveryMode delivery = DeliveryMode::kFixed;        // 10:8
  bool logical = false;                                // 11: destination mode (0 physical)
  bool assert_level = true;                            // 14: level (1 except INIT de-assert)
  bool level_triggered = false;                        // 15: trigger mode (0 edge)
  Shorthand shorthand = Shorthand::kNone;              // 19:18
  std::uint32_t destination = 0;                       // 63:32: x2APIC ID

  constexpr bool operator==(const Icr&) const noexcept = default;
};

constexpr std::uint64_t encode_icr(const Icr& icr) noexcept {
  std::uint64_t raw = with_field(0, 7, 0, icr.vector);
  raw = with_field(raw, 10, 8, static_cast<std::uint64_t>(icr.delivery));
  raw = with_bit(raw, 11, icr.logical);
  raw = with_bit(raw, 14, icr.assert_level);
  raw = with_bit(raw, 15, icr.level_triggered);
  raw = with_field(raw, 19, 18, static_cast<std::uint64_t>(icr.shorthand));
  return with_field(raw, 63, 32, icr.destination);
}

constexpr Icr decode_icr(std::uint64_t raw) noexcept {
  return Icr{.vector = static_cast<std::uint8_t>(get_field(raw, 7, 0)),
             .delivery = static_cast<DeliveryMode>(get_field(raw, 10, 8)),
             .logical = get_bit(raw, 11),
             .assert_level = get_bit(raw, 14),
             .level_triggered = get_bit(raw, 15),
             .shorthand = static_cast<Shorthand>(get_field(raw, 19, 18)),
             .destination = static_cast<std::uint32_t>(get_field(raw, 63, 32))};
}

// The ICR bits x2APIC reserves (must be zero): 13, 17:16, 31:20. KVM
// raises #GP for them on newer kernels.
inline constexpr std::uint64_t kIcrReserved = bit(13) | bit_mask(17, 16) | bit_mask(31, 20);

// The three IPIs dunk sends: a fixed, edge-triggered interrupt of `vector`
// to one x2APIC ID, to the sender itself, or to every other CPU.
constexpr std::uint64_t fixed_ipi(std::uint8_t vector, std::uint32_t destination) noexcept {
  return encode_icr(Icr{.vector = vector, .destination = destination});
}
constexpr std::uint64_t fixed_ipi_self(std::uint8_t vector) noexcept {
  return encode_icr(Icr{.vector = vector, .shorthand = Shorthand::kSelf});
}
constexpr std::uint64_t fixed_ipi_others(std::uint8_t vector) noexcept {
  return encode_icr(Icr{.vector = vector, .shorthand = Shorthand::kAllExcludingSelf});
}

// A vector below 16 is illegal for a fixed interrupt (the APIC reports a
// "send illegal vector" error); 16-31 are the CPU's exceptions, which an
// interrupt must not impersonate.
inline constexpr unsigned kFirstInterruptVector = 32;

}  // namespace dunk::arch::apic
