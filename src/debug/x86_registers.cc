#include "debug/x86_registers.h"

#include <cstring>

namespace dunk::debug {
namespace {

// FXSAVE's legacy region (Intel SDM vol. 1 Table 10-2, 64-bit format).
constexpr std::size_t kFcw = 0, kFsw = 2, kFtw = 4, kFop = 6, kFip = 8, kFcs = 12, kFdp = 16, kFds = 20,
                      kMxcsr = 24, kSt0 = 32, kStStride = 16;
// XSTATE_BV's bits for the components the registers come from.
constexpr std::uint64_t kX87Bit = 1, kSseBit = 2, kAvxBit = 4;
constexpr std::uint16_t kInitFcw = 0x37f;

constexpr const char* kNames[] = {
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
    "st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7",
    "fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop",
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
    "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
    "mxcsr", "orig_rax", "fs_base", "gs_base",
    "ymm0h", "ymm1h", "ymm2h", "ymm3h", "ymm4h", "ymm5h", "ymm6h", "ymm7h",
    "ymm8h", "ymm9h", "ymm10h", "ymm11h", "ymm12h", "ymm13h", "ymm14h", "ymm15h",
};
static_assert(sizeof kNames / sizeof kNames[0] == reg::kYmm0h + 16);

template <class T>
T load(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

std::uint64_t xstate_bv(const std::byte* image) noexcept { return load<std::uint64_t>(image + kXsaveHeaderOffset); }

// A component the image holds in its initial state is not in it: writing
// one of its registers puts the initial state in first.
void hold_component(std::byte* image, std::uint64_t bit) noexcept {
  if ((xstate_bv(image) & bit) != 0) return;
  if (bit == kX87Bit) {
    std::memset(image, 0, kMxcsr);
    std::memset(image + kSt0, 0, kXsaveLegacyX87End - kSt0);
    store<std::uint16_t>(image + kFcw, kInitFcw);
  } else if (bit == kSseBit) {
    std::memset(image + kXsaveXmmOffset, 0, 16 * 16);
  } else if (bit == kAvxBit) {
    std::memset(image + kXsaveAvxOffset, 0, 16 * 16);
  }
  store<std::uint64_t>(image + kXsaveHeaderOffset, xstate_bv(image) | bit);
}

// Appends to a fixed buffer; remembers overflowing.
class Writer {
 public:
  Writer(char* out, std::size_t capacity) noexcept : out_(out), capacity_(capacity) {}
  Writer& operator<<(std::string_view text) noexcept {
    if (length_ + text.size() > capacity_) {
      full_ = true;
      return *this;
    }
    std::memcpy(out_ + length_, text.data(), text.size());
    length_ += text.size();
    return *this;
  }
  Writer& operator<<(unsigned value) noexcept {
    char digits[12];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    char text[12];
    for (int i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
    return *this << std::string_view(text, static_cast<std::size_t>(n));
  }
  std::size_t length() const noexcept { return full_ ? 0 : length_; }

 private:
  char* out_;
  std::size_t capacity_;
  std::size_t length_ = 0;
  bool full_ = false;
};

void flag_fields(Writer& w, const char* id, const std::pair<const char*, unsigned>* fields, std::size_t n) {
  w << "<flags id=\"" << id << "\" size=\"4\">";
  for (std::size_t i = 0; i < n; ++i) {
    w << "<field name=\"" << fields[i].first << "\" start=\"" << fields[i].second << "\" end=\"" << fields[i].second
      << "\"/>";
  }
  w << "</flags>";
}

void reg_line(Writer& w, unsigned regno, unsigned bits, const char* type, const char* group = nullptr) {
  w << "<reg name=\"" << kNames[regno] << "\" bitsize=\"" << bits << "\" type=\"" << type << "\" regnum=\"" << regno
    << "\"";
  if (group != nullptr) w << " group=\"" << group << "\"";
  w << "/>";
}

}  // namespace

const char* RegisterLayout::name(unsigned regno) const noexcept { return regno < count() ? kNames[regno] : ""; }

unsigned RegisterLayout::size(unsigned regno) const noexcept {
  if (regno >= count()) return 0;
  if (regno < reg::kEflags) return 8;                    // GPRs, RIP
  if (regno < reg::kSt0) return 4;                       // eflags, selectors
  if (regno < reg::kFctrl) return 10;                    // st0-st7
  if (regno < reg::kXmm0) return 4;                      // x87 control registers
  if (regno < reg::kMxcsr) return 16;                    // xmm
  if (regno == reg::kMxcsr) return 4;
  if (regno < reg::kYmm0h) return 8;                     // orig_rax, fs_base, gs_base
  return 16;                                             // ymm upper halves
}

std::size_t RegisterLayout::total_size() const noexcept {
  std::size_t total = 0;
  for (unsigned r = 0; r < count(); ++r) total += size(r);
  return total;
}

std::size_t RegisterLayout::target_xml(char* out, std::size_t capacity) const noexcept {
  Writer w(out, capacity);
  w << "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\"><target>"
       "<architecture>i386:x86-64</architecture><osabi>GNU/Linux</osabi>";

  // RFLAGS and MXCSR bits: Intel SDM vol. 1 §3.4.3 Figure 3-8, §10.2.3 Figure 10-3.
  static constexpr std::pair<const char*, unsigned> kEflags[] = {
      {"CF", 0}, {"", 1},   {"PF", 2},  {"AF", 4},  {"ZF", 6},   {"SF", 7},   {"TF", 8},  {"IF", 9},  {"DF", 10},
      {"OF", 11}, {"NT", 14}, {"RF", 16}, {"VM", 17}, {"AC", 18}, {"VIF", 19}, {"VIP", 20}, {"ID", 21}};
  static constexpr std::pair<const char*, unsigned> kMxcsrBits[] = {
      {"IE", 0}, {"DE", 1}, {"ZE", 2},  {"OE", 3},  {"UE", 4},  {"PE", 5},  {"DAZ", 6}, {"IM", 7},
      {"DM", 8}, {"ZM", 9}, {"OM", 10}, {"UM", 11}, {"PM", 12}, {"FZ", 15}};

  w << "<feature name=\"org.gnu.gdb.i386.core\">";
  flag_fields(w, "i386_eflags", kEflags, sizeof kEflags / sizeof kEflags[0]);
  for (unsigned r = 0; r < reg::kRip; ++r) {
    reg_line(w, r, 64, r == reg::kRbp || r == reg::kRsp ? "data_ptr" : "int64");
  }
  reg_line(w, reg::kRip, 64, "code_ptr");
  reg_line(w, reg::kEflags, 32, "i386_eflags");
  for (unsigned r = reg::kEflags + 1; r < reg::kSt0; ++r) reg_line(w, r, 32, "int32");
  for (unsigned r = reg::kSt0; r < reg::kFctrl; ++r) reg_line(w, r, 80, "i387_ext");
  for (unsigned r = reg::kFctrl; r < reg::kXmm0; ++r) reg_line(w, r, 32, "int", "float");
  w << "</feature>";

  w << "<feature name=\"org.gnu.gdb.i386.sse\">"
       "<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/>"
       "<vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>"
       "<vector id=\"v16i8\" type=\"int8\" count=\"16\"/>"
       "<vector id=\"v8i16\" type=\"int16\" count=\"8\"/>"
       "<vector id=\"v4i32\" type=\"int32\" count=\"4\"/>"
       "<vector id=\"v2i64\" type=\"int64\" count=\"2\"/>"
       "<union id=\"vec128\"><field name=\"v4_float\" type=\"v4f\"/><field name=\"v2_double\" type=\"v2d\"/>"
       "<field name=\"v16_int8\" type=\"v16i8\"/><field name=\"v8_int16\" type=\"v8i16\"/>"
       "<field name=\"v4_int32\" type=\"v4i32\"/><field name=\"v2_int64\" type=\"v2i64\"/>"
       "<field name=\"uint128\" type=\"uint128\"/></union>";
  flag_fields(w, "i386_mxcsr", kMxcsrBits, sizeof kMxcsrBits / sizeof kMxcsrBits[0]);
  for (unsigned r = reg::kXmm0; r < reg::kMxcsr; ++r) reg_line(w, r, 128, "vec128");
  reg_line(w, reg::kMxcsr, 32, "i386_mxcsr", "vector");
  w << "</feature>";

  w << "<feature name=\"org.gnu.gdb.i386.linux\">";
  reg_line(w, reg::kOrigRax, 64, "int", "system");
  w << "</feature><feature name=\"org.gnu.gdb.i386.segments\">";
  reg_line(w, reg::kFsBase, 64, "int");
  reg_line(w, reg::kGsBase, 64, "int");
  w << "</feature>";

  if (avx_) {
    w << "<feature name=\"org.gnu.gdb.i386.avx\">";
    for (unsigned r = reg::kYmm0h; r < reg::kYmm0h + 16; ++r) reg_line(w, r, 128, "uint128");
    w << "</feature>";
  }
  w << "</target>";
  return w.length();
}

std::uint16_t full_x87_tag(std::uint8_t abridged, std::uint16_t status, const std::byte* st0) noexcept {
  const unsigned top = (status >> 11) & 7;
  std::uint16_t full = 0;
  for (unsigned physical = 0; physical < 8; ++physical) {
    unsigned tag = 3;  // empty
    if ((abridged >> physical & 1) != 0) {
      // Physical register R(i) is ST((i - TOP) mod 8), stored in stack order.
      const std::byte* value = st0 + kStStride * ((physical - top) & 7);
      const auto mantissa = load<std::uint64_t>(value);
      const auto exponent = static_cast<unsigned>(load<std::uint16_t>(value + 8) & 0x7fff);
      const bool integer_bit = (mantissa >> 63) != 0;
      if (exponent == 0x7fff) {
        tag = 2;  // infinity or NaN
      } else if (exponent == 0) {
        tag = mantissa == 0 ? 1 : 2;  // zero, or denormal
      } else {
        tag = integer_bit ? 0 : 2;  // valid, or unnormal
      }
    }
    full = static_cast<std::uint16_t>(full | tag << (2 * physical));
  }
  return full;
}

std::uint8_t abridged_x87_tag(std::uint16_t full) noexcept {
  std::uint8_t abridged = 0;
  for (unsigned physical = 0; physical < 8; ++physical) {
    if ((full >> (2 * physical) & 3) != 3) abridged = static_cast<std::uint8_t>(abridged | 1u << physical);
  }
  return abridged;
}

void read_register(const X86State& s, unsigned regno, std::byte* out) noexcept {
  const std::byte* image = s.xsave;
  const std::uint64_t held = xstate_bv(image);
  auto u32 = [&](std::uint32_t v) { store(out, v); };
  if (regno < reg::kRip) return store(out, s.gpr[regno]);
  if (regno == reg::kRip) return store(out, s.rip);
  if (regno == reg::kEflags) return u32(static_cast<std::uint32_t>(s.rflags));
  if (regno < reg::kSt0) return u32(s.segment[regno - reg::kEflags - 1]);
  const bool x87 = (held & kX87Bit) != 0;
  if (regno < reg::kFctrl) {
    if (x87) {
      std::memcpy(out, image + kSt0 + kStStride * (regno - reg::kSt0), 10);
    } else {
      std::memset(out, 0, 10);
    }
    return;
  }
  switch (regno) {
    case reg::kFctrl: return u32(x87 ? load<std::uint16_t>(image + kFcw) : kInitFcw);
    case reg::kFstat: return u32(x87 ? load<std::uint16_t>(image + kFsw) : 0);
    case reg::kFtag:
      return u32(x87 ? full_x87_tag(load<std::uint8_t>(image + kFtw), load<std::uint16_t>(image + kFsw), image + kSt0)
                     : 0xffff);
    case reg::kFiseg: return u32(x87 ? load<std::uint16_t>(image + kFcs) : 0);
    case reg::kFioff: return u32(x87 ? load<std::uint32_t>(image + kFip) : 0);
    case reg::kFoseg: return u32(x87 ? load<std::uint16_t>(image + kFds) : 0);
    case reg::kFooff: return u32(x87 ? load<std::uint32_t>(image + kFdp) : 0);
    case reg::kFop: return u32(x87 ? load<std::uint16_t>(image + kFop) & 0x7ffu : 0);
    case reg::kMxcsr: return u32(load<std::uint32_t>(image + kMxcsr));
    case reg::kOrigRax: return store(out, s.orig_rax);
    case reg::kFsBase: return store(out, s.fs_base);
    case reg::kGsBase: return store(out, s.gs_base);
    default: break;
  }
  if (regno < reg::kMxcsr) {
    const unsigned i = regno - reg::kXmm0;
    if ((held & kSseBit) != 0) {
      std::memcpy(out, image + kXsaveXmmOffset + 16 * i, 16);
    } else {
      std::memset(out, 0, 16);
    }
    return;
  }
  const unsigned i = regno - reg::kYmm0h;
  if (i < 16 && (held & kAvxBit) != 0) {
    std::memcpy(out, image + kXsaveAvxOffset + 16 * i, 16);
  } else {
    std::memset(out, 0, 16);
  }
}

void write_register(X86State& s, unsigned regno, const std::byte* in) noexcept {
  std::byte* image = s.xsave;
  const auto u32 = load<std::uint32_t>(in);
  if (regno < reg::kRip) {
    s.gpr[regno] = load<std::uint64_t>(in);
    return;
  }
  if (regno == reg::kRip) {
    s.rip = load<std::uint64_t>(in);
    return;
  }
  if (regno == reg::kEflags) {
    s.rflags = (s.rflags & ~std::uint64_t{0xffffffff}) | u32;
    return;
  }
  if (regno < reg::kSt0) {
    s.segment[regno - reg::kEflags - 1] = u32;
    return;
  }
  if (regno < reg::kXmm0) {
    hold_component(image, kX87Bit);
    if (regno < reg::kFctrl) {
      std::memcpy(image + kSt0 + kStStride * (regno - reg::kSt0), in, 10);
      return;
    }
    switch (regno) {
      case reg::kFctrl: return store(image + kFcw, static_cast<std::uint16_t>(u32));
      case reg::kFstat: return store(image + kFsw, static_cast<std::uint16_t>(u32));
      case reg::kFtag: return store(image + kFtw, abridged_x87_tag(static_cast<std::uint16_t>(u32)));
      case reg::kFiseg: return store(image + kFcs, static_cast<std::uint16_t>(u32));
      case reg::kFioff: return store(image + kFip, u32);
      case reg::kFoseg: return store(image + kFds, static_cast<std::uint16_t>(u32));
      case reg::kFooff: return store(image + kFdp, u32);
      case reg::kFop: return store(image + kFop, static_cast<std::uint16_t>(u32 & 0x7ff));
      default: return;
    }
  }
  if (regno < reg::kMxcsr) {
    hold_component(image, kSseBit);
    std::memcpy(image + kXsaveXmmOffset + 16 * (regno - reg::kXmm0), in, 16);
    return;
  }
  switch (regno) {
    case reg::kMxcsr:
      hold_component(image, kSseBit);
      return store(image + kMxcsr, u32);
    case reg::kOrigRax: s.orig_rax = load<std::uint64_t>(in); return;
    case reg::kFsBase: s.fs_base = load<std::uint64_t>(in); return;
    case reg::kGsBase: s.gs_base = load<std::uint64_t>(in); return;
    default: break;
  }
  if (regno < reg::kYmm0h + 16) {
    hold_component(image, kAvxBit);
    std::memcpy(image + kXsaveAvxOffset + 16 * (regno - reg::kYmm0h), in, 16);
  }
}

}  // namespace dunk::debug
