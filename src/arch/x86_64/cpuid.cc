#include "arch/x86_64/cpuid.h"

#include <cstring>

#include "arch/x86_64/bits.h"
#include "arch/x86_64/registers.h"

namespace dunk::arch {
namespace {

constexpr std::uint32_t kExtendedBase = 0x80000000;
constexpr std::uint32_t kLeafAddressSizes = 0x80000008;
constexpr std::uint32_t kLeafXsave = 0xd;
constexpr std::uint32_t kLeafStructuredFeatures = 0x7;

std::uint32_t reg_of(const CpuidEntry& e, CpuidReg reg) noexcept {
  switch (reg) {
    case CpuidReg::kEax: return e.eax;
    case CpuidReg::kEbx: return e.ebx;
    case CpuidReg::kEcx: return e.ecx;
    case CpuidReg::kEdx: return e.edx;
  }
  return 0;
}

// Leaf 0: the vendor string is EBX, EDX, ECX in that order.
Vendor decode_vendor(const CpuidEntry* leaf0) noexcept {
  if (leaf0 == nullptr) return Vendor::kOther;
  char name[12];
  std::memcpy(name, &leaf0->ebx, 4);
  std::memcpy(name + 4, &leaf0->edx, 4);
  std::memcpy(name + 8, &leaf0->ecx, 4);
  if (std::memcmp(name, "GenuineIntel", 12) == 0) return Vendor::kIntel;
  if (std::memcmp(name, "AuthenticAMD", 12) == 0) return Vendor::kAmd;
  if (std::memcmp(name, "HygonGenuine", 12) == 0) return Vendor::kAmd;
  return Vendor::kOther;
}

// SDM vol. 2A CPUID, "Processor Signature": the extended model applies to
// families 6 and 15 on Intel, to family 15 only on AMD.
void decode_signature(std::uint32_t eax, CpuFeatures& f) noexcept {
  const auto base_family = static_cast<unsigned>(get_field(eax, 11, 8));
  const auto base_model = static_cast<unsigned>(get_field(eax, 7, 4));
  const auto ext_model = static_cast<unsigned>(get_field(eax, 19, 16));
  f.family = base_family == 0xf ? base_family + static_cast<unsigned>(get_field(eax, 27, 20)) : base_family;
  const bool extend = base_family == 0xf || (base_family == 6 && f.vendor == Vendor::kIntel);
  f.model = extend ? (ext_model << 4) + base_model : base_model;
  f.stepping = static_cast<unsigned>(get_field(eax, 3, 0));
}

// SDM vol. 3A §4.1.4 "Enumeration of Paging Features by CPUID": without
// leaf 0x80000008, MAXPHYADDR is 36 with PAE and 32 without.
void decode_address_sizes(std::span<const CpuidEntry> entries, CpuFeatures& f) noexcept {
  const CpuidEntry* sizes =
      f.max_extended_leaf >= kLeafAddressSizes ? find_cpuid(entries, kLeafAddressSizes) : nullptr;
  if (sizes != nullptr) {
    f.phys_bits = static_cast<unsigned>(get_field(sizes->eax, 7, 0));
    f.linear_bits = static_cast<unsigned>(get_field(sizes->eax, 15, 8));
    return;
  }
  f.phys_bits = has_feature(entries, cpuid_bit::kPae) ? 36 : 32;
  f.linear_bits = f.long_mode ? 48 : 32;
}

void decode_xsave(std::span<const CpuidEntry> entries, CpuFeatures& f) noexcept {
  namespace b = cpuid_bit;
  f.fxsr = has_feature(entries, b::kFxsr);
  f.xsave = has_feature(entries, b::kXsave);
  f.osxsave = has_feature(entries, b::kOsxsave);
  f.avx = has_feature(entries, b::kAvx);
  f.avx2 = has_feature(entries, b::kAvx2);
  if (!f.xsave) return;
  f.xsaveopt = has_feature(entries, b::kXsaveopt);
  f.xsavec = has_feature(entries, b::kXsavec);
  f.xsaves = has_feature(entries, b::kXsaves);
  if (const CpuidEntry* e = find_cpuid(entries, kLeafXsave, 0)) {
    // Only the components XCR0 can hold; supervisor ones go to IA32_XSS.
    f.xcr0_supported = ((std::uint64_t{e->edx} << 32) | e->eax) & ~xfeature::kSupervisorMask;
    f.xsave_size_enabled = e->ebx;
    f.xsave_size_max = e->ecx;
  }
}

void decode_flags(std::span<const CpuidEntry> entries, CpuFeatures& f) noexcept {
  namespace b = cpuid_bit;
  auto has = [entries](CpuidBit bit) { return has_feature(entries, bit); };
  f.gib_pages = has(b::kGibPages);
  f.nx = has(b::kNx);
  f.pge = has(b::kPge);
  f.pat = has(b::kPat);
  f.pcid = has(b::kPcid);
  f.invpcid = has(b::kInvpcid);
  f.fsgsbase = has(b::kFsgsbase);
  f.smep = has(b::kSmep);
  f.smap = has(b::kSmap);
  f.umip = has(b::kUmip);
  f.pku = has(b::kPku);
  f.ospke = has(b::kOspke);
  f.la57 = has(b::kLa57);
  f.syscall = has(b::kSyscall);
  f.long_mode = has(b::kLongMode);
  f.rdpid = has(b::kRdpid);
  f.rdtscp = has(b::kRdtscp);
  f.x2apic = has(b::kX2apic);
  f.hypervisor = has(b::kHypervisor);
  f.vmx = has(b::kVmx);
  f.svm = has(b::kSvm);
}

}  // namespace

const CpuidEntry* find_cpuid(std::span<const CpuidEntry> entries, std::uint32_t function,
                             std::uint32_t index) noexcept {
  for (const CpuidEntry& e : entries) {
    if (e.function != function) continue;
    if ((e.flags & kCpuidSignificantIndex) != 0 && e.index != index) continue;
    return &e;
  }
  return nullptr;
}

bool has_feature(std::span<const CpuidEntry> entries, CpuidBit b) noexcept {
  const CpuidEntry* e = find_cpuid(entries, b.function, b.index);
  return e != nullptr && get_bit(reg_of(*e, b.reg), b.bit);
}

CpuFeatures decode_cpu_features(std::span<const CpuidEntry> entries) noexcept {
  CpuFeatures f;
  const CpuidEntry* leaf0 = find_cpuid(entries, 0);
  f.vendor = decode_vendor(leaf0);
  f.max_basic_leaf = leaf0 != nullptr ? leaf0->eax : 0;
  const CpuidEntry* ext0 = find_cpuid(entries, kExtendedBase);
  f.max_extended_leaf = ext0 != nullptr ? ext0->eax : 0;
  if (const CpuidEntry* leaf1 = find_cpuid(entries, 1)) decode_signature(leaf1->eax, f);
  decode_flags(entries, f);
  decode_address_sizes(entries, f);
  decode_xsave(entries, f);
  return f;
}

CpuidEntry host_cpuid(std::uint32_t function, std::uint32_t index) noexcept {
  CpuidEntry e{.function = function, .index = index};
  asm volatile("cpuid" : "=a"(e.eax), "=b"(e.ebx), "=c"(e.ecx), "=d"(e.edx) : "a"(function), "c"(index));
  return e;
}

namespace {

class EntryWriter {
 public:
  explicit EntryWriter(std::span<CpuidEntry> out) noexcept : out_(out) {}
  void add(std::uint32_t function, std::uint32_t index, bool indexed) noexcept {
    if (count_ == out_.size()) return;
    CpuidEntry e = host_cpuid(function, index);
    e.flags = indexed ? kCpuidSignificantIndex : 0;
    out_[count_++] = e;
  }
  std::size_t count() const noexcept { return count_; }

 private:
  std::span<CpuidEntry> out_;
  std::size_t count_ = 0;
};

// Leaf 0xD sub-leaves 2..63 describe one state component each: only those
// the CPU supports (XCR0 or IA32_XSS bits) exist.
void add_xsave_leaves(EntryWriter& w) noexcept {
  const CpuidEntry sub0 = host_cpuid(kLeafXsave, 0);
  const CpuidEntry sub1 = host_cpuid(kLeafXsave, 1);
  const std::uint64_t components = ((std::uint64_t{sub0.edx} << 32) | sub0.eax) |
                                   ((std::uint64_t{sub1.edx} << 32) | sub1.ecx);
  w.add(kLeafXsave, 0, true);
  w.add(kLeafXsave, 1, true);
  for (unsigned i = 2; i < 64; ++i) {
    if (get_bit(components, i)) w.add(kLeafXsave, i, true);
  }
}

void add_range(EntryWriter& w, std::uint32_t first, std::uint32_t last) noexcept {
  for (std::uint32_t leaf = first; leaf <= last && leaf - first < 0x100; ++leaf) {
    if (leaf == kLeafXsave) {
      add_xsave_leaves(w);
    } else if (leaf == kLeafStructuredFeatures) {
      const std::uint32_t subleaves = host_cpuid(leaf, 0).eax;
      for (std::uint32_t i = 0; i <= subleaves && i < 8; ++i) w.add(leaf, i, true);
    } else {
      w.add(leaf, 0, false);
    }
  }
}

}  // namespace

std::size_t host_cpuid_entries(std::span<CpuidEntry> out) noexcept {
  EntryWriter w(out);
  add_range(w, 0, host_cpuid(0).eax);
  const std::uint32_t max_extended = host_cpuid(kExtendedBase).eax;
  if (max_extended >= kExtendedBase) add_range(w, kExtendedBase, max_extended);
  return w.count();
}

}  // namespace dunk::arch
