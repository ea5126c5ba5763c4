// Segment descriptors, the 64-bit TSS, IDT gates and the GDTR/IDTR
// pseudo-descriptor, plus dunk's GDT layout.
//
// Intel SDM vol. 3A (section and figure numbers differ between editions,
// so each citation also names the section or figure by its title):
//   §3.4.5 "Segment Descriptors", Figure 3-8 "Segment Descriptor";
//   §3.4.5.1 Table 3-1 "Code- and Data-Segment Types";
//   §3.5 Table 3-2 "System-Segment and Gate-Descriptor Types";
//   §5.2.1 "Code-Segment Descriptors in 64-bit Mode";
//   §6.14.1 "64-Bit Mode IDT", Figure 6-8 "64-Bit IDT Gate Descriptors";
//   §8.2.3 "TSS Descriptor in 64-bit mode", Figure 8-4 "Format of TSS and
//   LDT Descriptors in 64-bit Mode";
//   §8.7 "Task Management in 64-bit Mode", Figure 8-11 "64-Bit TSS Format";
//   §3.5.1 "Segment Descriptor Tables", Figure 3-11 "Pseudo-Descriptor Formats".
// AMD APM vol. 2 §4.8 "Long-Mode Segment Descriptors", §12.2.5 "64-Bit Task
// State Segment".
//
// Every structure has an encoder from plain fields and a decoder back to
// them; decode(encode(f)) == f for every f whose values fit their fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "arch/x86_64/bits.h"
#include "arch/x86_64/registers.h"
#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk::arch {

// Type field of a code or data descriptor (S = 1), Table 3-1.
namespace segment_type {
inline constexpr std::uint8_t kAccessed = 0x1;
inline constexpr std::uint8_t kDataWritable = 0x2;
inline constexpr std::uint8_t kDataExpandDown = 0x4;
inline constexpr std::uint8_t kCode = 0x8;
inline constexpr std::uint8_t kCodeReadable = 0x2;
inline constexpr std::uint8_t kCodeConforming = 0x4;
}  // namespace segment_type

// Type field of a system descriptor (S = 0) in IA-32e mode, Table 3-2.
enum class SystemType : std::uint8_t {
  kLdt = 0x2,
  kTssAvailable = 0x9,
  kTssBusy = 0xb,
  kCallGate = 0xc,
  kInterruptGate = 0xe,
  kTrapGate = 0xf,
};

// ---------------------------------------------------------------------------
// 8-byte code/data segment descriptor (Figure 3-8).
//   15:0 limit 15:0 | 39:16 base 23:0 | 43:40 type | 44 S | 46:45 DPL | 47 P
//   51:48 limit 19:16 | 52 AVL | 53 L | 54 D/B | 55 G | 63:56 base 31:24

struct SegmentFields {
  std::uint32_t base = 0;
  std::uint32_t limit = 0;  // 20 bits; in 4 KiB units when granularity is set
  std::uint8_t type = 0;    // 4 bits
  bool code_or_data = true;  // S: false for system descriptors
  std::uint8_t dpl = 0;      // 2 bits
  bool present = false;
  bool available = false;    // AVL, free for software
  bool long_mode = false;    // L: 64-bit code segment
  bool default_big = false;  // D/B; must be 0 when L is set (KVM_RUN fails otherwise)
  bool granularity = false;  // G
  constexpr bool operator==(const SegmentFields&) const noexcept = default;
};

class SegmentDescriptor {
 public:
  constexpr SegmentDescriptor() noexcept = default;
  constexpr explicit SegmentDescriptor(std::uint64_t raw) noexcept : raw_(raw) {}

  static constexpr SegmentDescriptor encode(const SegmentFields& f) noexcept {
    std::uint64_t r = with_field(0, 15, 0, f.limit);
    r = with_field(r, 51, 48, f.limit >> 16);
    r = with_field(r, 39, 16, f.base);
    r = with_field(r, 63, 56, f.base >> 24);
    r = with_field(r, 43, 40, f.type);
    r = with_bit(r, 44, f.code_or_data);
    r = with_field(r, 46, 45, f.dpl);
    r = with_bit(r, 47, f.present);
    r = with_bit(r, 52, f.available);
    r = with_bit(r, 53, f.long_mode);
    r = with_bit(r, 54, f.default_big);
    return SegmentDescriptor(with_bit(r, 55, f.granularity));
  }

  constexpr SegmentFields decode() const noexcept {
    return SegmentFields{.base = base(),
                         .limit = limit(),
                         .type = type(),
                         .code_or_data = code_or_data(),
                         .dpl = dpl(),
                         .present = present(),
                         .available = available(),
                         .long_mode = long_mode(),
                         .default_big = default_big(),
                         .granularity = granularity()};
  }

  constexpr std::uint64_t raw() const noexcept { return raw_; }
  constexpr std::uint32_t base() const noexcept {
    return static_cast<std::uint32_t>(get_field(raw_, 39, 16) | (get_field(raw_, 63, 56) << 24));
  }
  constexpr std::uint32_t limit() const noexcept {
    return static_cast<std::uint32_t>(get_field(raw_, 15, 0) | (get_field(raw_, 51, 48) << 16));
  }
  // The limit as `lsl` reports it and the CPU checks it: scaled by G.
  constexpr std::uint32_t byte_limit() const noexcept {
    return granularity() ? (limit() << 12) | 0xfff : limit();
  }
  constexpr std::uint8_t type() const noexcept { return static_cast<std::uint8_t>(get_field(raw_, 43, 40)); }
  constexpr bool code_or_data() const noexcept { return get_bit(raw_, 44); }
  constexpr std::uint8_t dpl() const noexcept { return static_cast<std::uint8_t>(get_field(raw_, 46, 45)); }
  constexpr bool present() const noexcept { return get_bit(raw_, 47); }
  constexpr bool available() const noexcept { return get_bit(raw_, 52); }
  constexpr bool long_mode() const noexcept { return get_bit(raw_, 53); }
  constexpr bool default_big() const noexcept { return get_bit(raw_, 54); }
  constexpr bool granularity() const noexcept { return get_bit(raw_, 55); }
  constexpr bool is_code() const noexcept { return code_or_data() && (type() & segment_type::kCode) != 0; }

  constexpr bool operator==(const SegmentDescriptor&) const noexcept = default;

 private:
  std::uint64_t raw_ = 0;
};
static_assert(sizeof(SegmentDescriptor) == 8);

// Flat segments as the CPU expects them in long mode. The accessed bit is
// preset so the CPU never writes to the GDT when it loads a selector.
constexpr SegmentDescriptor code64_segment(unsigned dpl) noexcept {
  return SegmentDescriptor::encode(
      {.limit = 0xfffff,
       .type = segment_type::kCode | segment_type::kCodeReadable | segment_type::kAccessed,
       .dpl = static_cast<std::uint8_t>(dpl),
       .present = true,
       .long_mode = true,
       .granularity = true});
}

// Compatibility-mode code (Linux's __USER32_CS); `sysret` to 32-bit code uses it.
constexpr SegmentDescriptor code32_segment(unsigned dpl) noexcept {
  return SegmentDescriptor::encode(
      {.limit = 0xfffff,
       .type = segment_type::kCode | segment_type::kCodeReadable | segment_type::kAccessed,
       .dpl = static_cast<std::uint8_t>(dpl),
       .present = true,
       .default_big = true,
       .granularity = true});
}

constexpr SegmentDescriptor data_segment(unsigned dpl) noexcept {
  return SegmentDescriptor::encode(
      {.limit = 0xfffff,
       .type = segment_type::kDataWritable | segment_type::kAccessed,
       .dpl = static_cast<std::uint8_t>(dpl),
       .present = true,
       .default_big = true,
       .granularity = true});
}

// ---------------------------------------------------------------------------
// 16-byte system descriptor for a TSS or LDT in 64-bit mode (Figure 8-4):
// the first 8 bytes as a segment descriptor with S = 0, then base 63:32 in
// bits 31:0 of the second 8 bytes; the rest of those is reserved and, at
// bits 12:8, must be zero (the CPU checks that this is not another descriptor).

struct SystemSegmentFields {
  Gva base{};
  std::uint32_t limit = 0;  // 20 bits
  SystemType type = SystemType::kTssAvailable;
  std::uint8_t dpl = 0;
  bool present = false;
  bool available = false;
  bool granularity = false;
  constexpr bool operator==(const SystemSegmentFields&) const noexcept = default;
};

class alignas(8) SystemDescriptor {
 public:
  constexpr SystemDescriptor() noexcept = default;
  constexpr SystemDescriptor(SegmentDescriptor low, std::uint64_t high) noexcept : low_(low), high_(high) {}

  static constexpr SystemDescriptor encode(const SystemSegmentFields& f) noexcept {
    const std::uint64_t base = f.base.value();
    const SegmentDescriptor low = SegmentDescriptor::encode(
        {.base = static_cast<std::uint32_t>(base),
         .limit = f.limit,
         .type = static_cast<std::uint8_t>(f.type),
         .code_or_data = false,
         .dpl = f.dpl,
         .present = f.present,
         .available = f.available,
         .granularity = f.granularity});
    return SystemDescriptor(low, get_field(base, 63, 32));
  }

  constexpr SystemSegmentFields decode() const noexcept {
    return SystemSegmentFields{.base = base(),
                               .limit = low_.limit(),
                               .type = type(),
                               .dpl = low_.dpl(),
                               .present = low_.present(),
                               .available = low_.available(),
                               .granularity = low_.granularity()};
  }

  constexpr SegmentDescriptor low() const noexcept { return low_; }
  constexpr std::uint64_t high() const noexcept { return high_; }
  constexpr Gva base() const noexcept { return Gva(low_.base() | (get_field(high_, 31, 0) << 32)); }
  constexpr SystemType type() const noexcept { return static_cast<SystemType>(low_.type()); }
  constexpr std::uint32_t byte_limit() const noexcept { return low_.byte_limit(); }

  constexpr bool operator==(const SystemDescriptor&) const noexcept = default;

 private:
  SegmentDescriptor low_;
  std::uint64_t high_ = 0;
};
static_assert(sizeof(SystemDescriptor) == 16);

// ---------------------------------------------------------------------------
// 16-byte IDT gate in 64-bit mode (Figure 6-8):
//   first 8 bytes:  15:0 offset 15:0 | 31:16 selector | 34:32 IST | 39:35 zero
//                   43:40 type | 44 zero | 46:45 DPL | 47 P | 63:48 offset 31:16
//   second 8 bytes: 31:0 offset 63:32 | 63:32 reserved

enum class GateType : std::uint8_t {
  kInterrupt = static_cast<std::uint8_t>(SystemType::kInterruptGate),  // clears IF
  kTrap = static_cast<std::uint8_t>(SystemType::kTrapGate),            // leaves IF alone
};

struct GateFields {
  Gva offset{};  // the handler's address
  Selector selector{};
  std::uint8_t ist = 0;  // 0 = no stack switch by IST, 1-7 = TSS.ist1-7
  GateType type = GateType::kInterrupt;
  std::uint8_t dpl = 0;  // the CPL `int n` needs to use this gate
  bool present = false;
  constexpr bool operator==(const GateFields&) const noexcept = default;
};

class alignas(8) IdtGate {
 public:
  constexpr IdtGate() noexcept = default;
  constexpr IdtGate(std::uint64_t low, std::uint64_t high) noexcept : low_(low), high_(high) {}

  static constexpr IdtGate encode(const GateFields& f) noexcept {
    const std::uint64_t offset = f.offset.value();
    std::uint64_t low = with_field(0, 15, 0, offset);
    low = with_field(low, 31, 16, f.selector.raw());
    low = with_field(low, 34, 32, f.ist);
    low = with_field(low, 43, 40, static_cast<std::uint8_t>(f.type));
    low = with_field(low, 46, 45, f.dpl);
    low = with_bit(low, 47, f.present);
    low = with_field(low, 63, 48, offset >> 16);
    return IdtGate(low, get_field(offset, 63, 32));
  }

  constexpr GateFields decode() const noexcept {
    return GateFields{.offset = offset(),
                      .selector = selector(),
                      .ist = ist(),
                      .type = type(),
                      .dpl = dpl(),
                      .present = present()};
  }

  constexpr std::uint64_t low() const noexcept { return low_; }
  constexpr std::uint64_t high() const noexcept { return high_; }
  constexpr Gva offset() const noexcept {
    return Gva(get_field(low_, 15, 0) | (get_field(low_, 63, 48) << 16) | (get_field(high_, 31, 0) << 32));
  }
  constexpr Selector selector() const noexcept { return Selector(static_cast<std::uint16_t>(get_field(low_, 31, 16))); }
  constexpr std::uint8_t ist() const noexcept { return static_cast<std::uint8_t>(get_field(low_, 34, 32)); }
  constexpr GateType type() const noexcept { return static_cast<GateType>(get_field(low_, 43, 40)); }
  constexpr std::uint8_t dpl() const noexcept { return static_cast<std::uint8_t>(get_field(low_, 46, 45)); }
  constexpr bool present() const noexcept { return get_bit(low_, 47); }

  constexpr bool operator==(const IdtGate&) const noexcept = default;

 private:
  std::uint64_t low_ = 0;
  std::uint64_t high_ = 0;
};
static_assert(sizeof(IdtGate) == 16);

inline constexpr unsigned kIdtEntries = 256;
inline constexpr unsigned kMaxIst = 7;

constexpr IdtGate make_gate(GateType type, Gva handler, Selector cs, unsigned ist, unsigned dpl) noexcept {
  return IdtGate::encode({.offset = handler,
                          .selector = cs,
                          .ist = static_cast<std::uint8_t>(ist),
                          .type = type,
                          .dpl = static_cast<std::uint8_t>(dpl),
                          .present = true});
}

// ---------------------------------------------------------------------------
// 64-bit TSS (Figure 8-11 "64-Bit TSS Format"). Only the stack pointers and
// the I/O map base are used in long mode. rsp0 sits at offset 4, so the
// structure is packed; keep instances inside one page (the CPU reads them
// with linear accesses that should not straddle a page boundary).

struct __attribute__((packed)) Tss64 {
  std::uint32_t reserved0 = 0;
  std::uint64_t rsp[3] = {};  // stack for a privilege change to ring 0, 1, 2
  std::uint64_t reserved1 = 0;
  std::uint64_t ist[kMaxIst] = {};  // ist[0] is IST1
  std::uint64_t reserved2 = 0;
  std::uint16_t reserved3 = 0;
  std::uint16_t iomap_base = 0;  // offset of the I/O permission bitmap

  constexpr std::uint64_t ist_stack(unsigned n) const noexcept { return ist[n - 1]; }  // n in 1..7
  constexpr void set_ist_stack(unsigned n, std::uint64_t top) noexcept { ist[n - 1] = top; }
};
static_assert(sizeof(Tss64) == 104);
static_assert(offsetof(Tss64, rsp) == 0x04);
static_assert(offsetof(Tss64, rsp) + 8 == 0x0c);   // RSP1
static_assert(offsetof(Tss64, rsp) + 16 == 0x14);  // RSP2
static_assert(offsetof(Tss64, ist) == 0x24);
static_assert(offsetof(Tss64, ist) + 6 * 8 == 0x54);  // IST7
static_assert(offsetof(Tss64, iomap_base) == 0x66);

// An I/O map base at or beyond the TSS limit means "no bitmap": every port
// access from CPL > IOPL faults.
inline constexpr std::uint16_t kTssNoIoBitmap = sizeof(Tss64);
inline constexpr std::uint32_t kTssLimit = sizeof(Tss64) - 1;

// A TSS descriptor for `tss`. Busy is what `ltr` leaves in the GDT and what
// KVM_SET_SREGS loads into TR (type 0xb), so a GDT built with busy = true
// matches the state the vCPU starts in.
constexpr SystemDescriptor tss_descriptor(Gva tss, bool busy) noexcept {
  return SystemDescriptor::encode({.base = tss,
                                   .limit = kTssLimit,
                                   .type = busy ? SystemType::kTssBusy : SystemType::kTssAvailable,
                                   .present = true});
}

// An LDT descriptor for `bytes` bytes of descriptors at `ldt` (a multiple of
// 8, at least 8).
constexpr SystemDescriptor ldt_descriptor(Gva ldt, std::uint32_t bytes) noexcept {
  return SystemDescriptor::encode({.base = ldt, .limit = bytes - 1, .type = SystemType::kLdt, .present = true});
}

// ---------------------------------------------------------------------------
// GDTR/IDTR operand of lgdt/lidt/sgdt/sidt in 64-bit mode (Figure 3-11).

struct __attribute__((packed)) PseudoDescriptor {
  std::uint16_t limit = 0;  // size in bytes minus one
  std::uint64_t base = 0;   // linear address
};
static_assert(sizeof(PseudoDescriptor) == 10);
static_assert(offsetof(PseudoDescriptor, base) == 2);

constexpr PseudoDescriptor make_pseudo_descriptor(Gva base, std::size_t bytes) noexcept {
  return PseudoDescriptor{static_cast<std::uint16_t>(bytes - 1), base.value()};
}

// ---------------------------------------------------------------------------
// dunk's GDT. It follows Linux's x86-64 layout, so that STAR/`sysret` work as
// they do natively and so that code reading selectors (the vDSO's getcpu, a
// debugger, a signal frame) finds the values it expects.
namespace gdt {
inline constexpr unsigned kEntries = 16;
inline constexpr unsigned kKernelCodeIndex = 2;
inline constexpr unsigned kKernelDataIndex = 3;
inline constexpr unsigned kUser32CodeIndex = 4;
inline constexpr unsigned kUserDataIndex = 5;
inline constexpr unsigned kUserCodeIndex = 6;
inline constexpr unsigned kTssIndex = 8;  // 16 bytes: entries 8 and 9
inline constexpr unsigned kLdtIndex = 10;  // 16 bytes: entries 10 and 11
inline constexpr unsigned kCpuNodeIndex = 15;

inline constexpr Selector kKernelCode = Selector::make(kKernelCodeIndex, 0);   // 0x10
inline constexpr Selector kKernelData = Selector::make(kKernelDataIndex, 0);   // 0x18
inline constexpr Selector kUser32Code = Selector::make(kUser32CodeIndex, 3);   // 0x23
inline constexpr Selector kUserData = Selector::make(kUserDataIndex, 3);       // 0x2b
inline constexpr Selector kUserCode = Selector::make(kUserCodeIndex, 3);       // 0x33
inline constexpr Selector kTss = Selector::make(kTssIndex, 0);                 // 0x40
inline constexpr Selector kLdt = Selector::make(kLdtIndex, 0);                 // 0x50
inline constexpr Selector kCpuNode = Selector::make(kCpuNodeIndex, 3);         // 0x7b

static_assert(kKernelCode.raw() == 0x10 && kKernelData.raw() == 0x18);
static_assert(kUser32Code.raw() == 0x23 && kUserData.raw() == 0x2b && kUserCode.raw() == 0x33);
static_assert(kTss.raw() == 0x40 && kLdt.raw() == 0x50 && kCpuNode.raw() == 0x7b);

// STAR for this layout; compile-time proof that it suits syscall/sysret.
inline constexpr std::uint64_t kStar = *make_star(kKernelCode, kKernelData, kUser32Code, kUserData, kUserCode);

inline constexpr std::size_t kBytes = kEntries * sizeof(SegmentDescriptor);
}  // namespace gdt

// The per-CPU segment. Without RDPID, the vDSO's getcpu() runs `lsl` on
// selector 0x7b and splits the limit: cpu = limit & 0xfff, node = limit >> 12.
// Byte granularity (G = 0) so that `lsl` returns the 20-bit value unscaled.
inline constexpr unsigned kMaxCpuNodeCpu = 0xfff;
inline constexpr unsigned kMaxCpuNodeNode = 0xff;

struct CpuNode {
  unsigned cpu = 0;
  unsigned node = 0;
  constexpr bool operator==(const CpuNode&) const noexcept = default;
};

// The same value belongs in IA32_TSC_AUX, where RDPID/RDTSCP read it.
constexpr std::uint32_t encode_cpunode_limit(CpuNode c) noexcept { return (c.node << 12) | c.cpu; }
constexpr CpuNode decode_cpunode_limit(std::uint32_t limit) noexcept {
  return CpuNode{limit & 0xfff, (limit >> 12) & 0xff};
}

constexpr SegmentDescriptor cpunode_segment(CpuNode c) noexcept {
  return SegmentDescriptor::encode({.limit = encode_cpunode_limit(c),
                                    .type = segment_type::kAccessed,  // read-only data
                                    .dpl = 3,
                                    .present = true,
                                    .default_big = true});
}

// Fills `table` with dunk's GDT for one vCPU whose TSS lives at `tss`.
// Fails (and leaves `table` untouched) when cpu or node do not fit the
// per-CPU segment's limit.
Status fill_gdt(std::span<SegmentDescriptor, gdt::kEntries> table, Gva tss, CpuNode where) noexcept;

}  // namespace dunk::arch
