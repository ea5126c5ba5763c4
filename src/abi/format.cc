#include "abi/format.h"

#include <cstring>

#include "abi/commands.h"
#include "abi/layouts.h"
#include "abi/names.h"

namespace dunk::abi {
namespace {

namespace lay = layout;

// Text into a fixed buffer; what does not fit is dropped, the rest stays
// NUL-terminated.
class Text {
 public:
  Text(char* out, std::size_t size) noexcept : out_(out), size_(size) {
    if (size_ != 0) out_[0] = '\0';
  }
  void put(char c) noexcept {
    if (length_ + 1 < size_) {
      out_[length_++] = c;
      out_[length_] = '\0';
    }
  }
  void put(const char* s) noexcept {
    while (*s != '\0') put(*s++);
  }
  void udec(std::uint64_t v) noexcept {
    char digits[20];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) put(digits[--n]);
  }
  void dec(std::int64_t v) noexcept {
    if (v < 0) {
      put('-');
      udec(0 - static_cast<std::uint64_t>(v));
    } else {
      udec(static_cast<std::uint64_t>(v));
    }
  }
  void hex(std::uint64_t v) noexcept {
    put("0x");
    digits(v, 4, 1);
  }
  // printf's "%#03o": a leading 0, at least three characters.
  void mode(std::uint64_t v) noexcept {
    int length = 1;  // "0" alone, or the leading 0 before the digits
    for (std::uint64_t rest = v; rest != 0; rest >>= 3) ++length;
    for (int pad = length; pad < 3; ++pad) put('0');
    if (v != 0) put('0');
    digits(v, 3, 1);
  }
  std::size_t length() const noexcept { return length_; }

 private:
  void digits(std::uint64_t v, unsigned shift, int min_digits) noexcept {
    char d[22];
    int n = 0;
    do {
      d[n++] = "0123456789abcdef"[v & ((1u << shift) - 1)];
      v >>= shift;
    } while (v != 0);
    while (n < min_digits) d[n++] = '0';
    while (n > 0) put(d[--n]);
  }

  char* out_;
  std::size_t size_;
  std::size_t length_ = 0;
};

void pointer(Text& t, std::uint64_t v) noexcept {
  if (v == 0) {
    t.put("NULL");
  } else {
    t.hex(v);
  }
}

// strace's quoting: C escapes for the common controls, octal for other
// bytes (three digits when a digit follows, so that it reads back).
// `next`: the byte after these, or -1.
void escaped(Text& t, const unsigned char* bytes, std::size_t n, int next) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = bytes[i];
    switch (c) {
      case '"': t.put("\\\""); continue;
      case '\\': t.put("\\\\"); continue;
      case '\t': t.put("\\t"); continue;
      case '\n': t.put("\\n"); continue;
      case '\v': t.put("\\v"); continue;
      case '\f': t.put("\\f"); continue;
      case '\r': t.put("\\r"); continue;
      default: break;
    }
    if (c >= 0x20 && c < 0x7f) {
      t.put(static_cast<char>(c));
      continue;
    }
    const int following = i + 1 < n ? bytes[i + 1] : next;
    const bool digit_follows = following >= '0' && following <= '7';
    t.put('\\');
    if (digit_follows || c >= 0100) t.put(static_cast<char>('0' + (c >> 6)));
    if (digit_follows || c >= 010) t.put(static_cast<char>('0' + ((c >> 3) & 7)));
    t.put(static_cast<char>('0' + (c & 7)));
  }
}

void quoted(Text& t, const unsigned char* bytes, std::size_t n, bool cut) noexcept {
  t.put('"');
  escaped(t, bytes, n, -1);
  t.put('"');
  if (cut) t.put("...");
}

// A buffer of `n` bytes at `address`, at most `limit` shown, read in
// chunks (the limit may be large; the stack is not).
void buffer(Text& t, Memory& memory, std::uint64_t address, std::uint64_t n, unsigned limit) noexcept {
  const std::uint64_t show = n < limit ? n : limit;
  unsigned char chunk[257];
  std::uint64_t done = 0;
  std::size_t first = static_cast<std::size_t>(show < 256 ? show : 256);
  std::size_t got = memory.read(address, chunk, first + (show > first ? 1 : 0));
  if (got < first) return pointer(t, address);
  t.put('"');
  while (true) {
    const std::size_t here = static_cast<std::size_t>(show - done < 256 ? show - done : 256);
    const bool more = done + here < show;
    escaped(t, chunk, here, more && got > here ? chunk[here] : -1);
    done += here;
    if (!more) break;
    const std::size_t want = static_cast<std::size_t>(show - done < 256 ? show - done : 256);
    got = memory.read(address + done, chunk, want + (done + want < show ? 1 : 0));
    if (got < want) break;  // became unreadable: show what there was
  }
  t.put('"');
  if (n > show) t.put("...");
}

// A NUL-terminated string, at most `limit` characters shown.
void string(Text& t, Memory& memory, std::uint64_t address, std::size_t limit) noexcept {
  if (address == 0) return t.put("NULL");
  unsigned char bytes[lay::kPathMax];
  if (limit > sizeof bytes - 1) limit = sizeof bytes - 1;
  // One byte more than shown tells whether the string goes on.
  const std::size_t got = memory.read(address, bytes, limit + 1);
  const void* nul = std::memchr(bytes, '\0', got);
  if (nul == nullptr && got <= limit) return pointer(t, address);  // unreadable before its end
  const std::size_t n = nul != nullptr ? static_cast<std::size_t>(static_cast<const unsigned char*>(nul) - bytes)
                                       : limit;
  quoted(t, bytes, n, nul == nullptr);
}

void signal(Text& t, std::int64_t sig) noexcept {
  if (const char* name = signal_name(static_cast<int>(sig))) return t.put(name);
  if (sig >= 32 && sig <= 64) {
    t.put("SIGRTMIN");
    if (sig > 32) {
      t.put('+');
      t.dec(sig - 32);
    }
    return;
  }
  t.dec(sig);
}

// Names of the bits of `v`, wider names first (O_SYNC before O_DSYNC), in
// the table's order; what no name covers in hex.
void flags(Text& t, const NameSet& set, std::uint64_t v) noexcept {
  bool matched[64] = {};
  std::uint64_t left = v;
  const std::size_t n = set.names.size() < 64 ? set.names.size() : 64;
  for (int width = 64; width >= 0; --width) {
    for (std::size_t i = 0; i < n; ++i) {
      const NamedBits& b = set.names[i];
      if (__builtin_popcountll(b.mask) != width || matched[i]) continue;
      // A field is taken whole; a flag only while its bits are still free.
      if ((v & b.mask) == b.bits && (b.bits & left) == b.bits) {
        matched[i] = true;
        left &= ~b.mask;
      }
    }
  }
  bool first = true;
  for (std::size_t i = 0; i < n; ++i) {
    if (!matched[i]) continue;
    if (!first) t.put('|');
    t.put(set.names[i].name);
    first = false;
  }
  if (left != 0 || first) {
    if (!first) t.put('|');
    t.hex(left);
  }
}

void clone_flags(Text& t, const NameSet& set, std::uint64_t v) noexcept {
  const std::uint64_t sig = v & 0xff;
  if ((v & ~std::uint64_t{0xff}) != 0 || sig == 0) flags(t, set, v & ~std::uint64_t{0xff});
  if (sig == 0) return;
  if ((v & ~std::uint64_t{0xff}) != 0) t.put('|');
  signal(t, static_cast<std::int64_t>(sig));
}

void number(Text& t, const Arg& a, std::uint64_t raw) noexcept {
  const std::uint64_t u = as_unsigned(raw, a.type);
  switch (a.format) {
    case Format::kDec:
      if (a.type == Type::kInt || a.type == Type::kLong) return t.dec(as_signed(raw, a.type));
      return t.udec(u);
    case Format::kHex:
      return u == 0 ? t.put('0') : t.hex(u);
    case Format::kOct:
      return t.mode(u);
    case Format::kPtr:
      return pointer(t, u);
    case Format::kFlags:
      if (const NameSet* set = name_set(a.names)) {
        return a.names == Names::kCloneFlags ? clone_flags(t, *set, u) : flags(t, *set, u);
      }
      return u == 0 ? t.put('0') : t.hex(u);
    case Format::kEnum:
      if (const char* name = value_name(a.names, u)) return t.put(name);
      return t.dec(as_signed(raw, a.type));
  }
}

// ioctl requests no table lists, as strace spells them.
void ioc(Text& t, std::uint32_t request) noexcept {
  if (ioc::dir(request) == ioc::kNone && ioc::size(request) == 0) return t.hex(request);
  static constexpr const char* kDirs[] = {"_IOC_NONE", "_IOC_WRITE", "_IOC_READ", "_IOC_READ|_IOC_WRITE"};
  t.put("_IOC(");
  t.put(kDirs[ioc::dir(request)]);
  t.put(", ");
  t.hex(ioc::type(request));
  t.put(", ");
  t.hex(ioc::nr(request));
  t.put(", ");
  t.hex(ioc::size(request));
  t.put(')');
}

void command(Text& t, const Resolved& r, const Arg& a, std::uint64_t raw) noexcept {
  const std::uint64_t u = as_unsigned(raw, a.type);
  if (a.commands == Commands::kFutex && r.command != nullptr) {
    t.put(r.command->name);
    if ((u & 128) != 0) t.put("_PRIVATE");
    if ((u & 256) != 0) t.put("|FUTEX_CLOCK_REALTIME");
    return;
  }
  if (a.commands == Commands::kSetsockopt || a.commands == Commands::kGetsockopt) {
    return u == lay::kSolSocket ? t.put("SOL_SOCKET") : t.dec(as_signed(raw, a.type));
  }
  if (r.command != nullptr && a.format != Format::kFlags) {
    t.put(r.command->name);
    const CommandTable* table = command_table(a.commands);
    if (table != nullptr && (u & ~table->mask) != 0) {
      t.put('|');
      if (a.commands == Commands::kShmctl || a.commands == Commands::kMsgctl || a.commands == Commands::kSemctl) {
        t.put("IPC_64");
      } else {
        t.hex(u & ~table->mask);
      }
    }
    return;
  }
  if (a.commands == Commands::kIoctl) return ioc(t, static_cast<std::uint32_t>(u));
  number(t, a, raw);
}

// Where a string-like buffer is: a byte count in another argument.
bool is_byte_buffer(const Arg& a) noexcept {
  return a.shape == Shape::kBytes && a.length.from == LengthFrom::kArg && a.length.size == 1 &&
         a.length.header == 0;
}

void iovecs(Text& t, Memory& memory, std::uint64_t address, std::uint64_t count, std::uint64_t* budget,
            const FormatOptions& o) noexcept {
  t.put('[');
  for (std::uint64_t k = 0; k < count; ++k) {
    if (k != 0) t.put(", ");
    if (k == o.array_limit) {
      t.put("...");
      break;
    }
    std::uint64_t v[2];
    if (memory.read(address + k * lay::kIovecSize, v, sizeof v) != sizeof v) {
      t.put("...");
      break;
    }
    t.put("{iov_base=");
    std::uint64_t shown = v[1];
    if (budget != nullptr) {
      shown = v[1] < *budget ? v[1] : *budget;
      *budget -= shown;
    }
    buffer(t, memory, v[0], shown, o.string_limit);
    t.put(", iov_len=");
    t.udec(v[1]);
    t.put('}');
  }
  t.put(']');
}

void strings(Text& t, Memory& memory, std::uint64_t address, bool abbreviate, const FormatOptions& o) noexcept {
  std::uint64_t count = 0;
  for (;; ++count) {
    std::uint64_t p;
    if (memory.read(address + count * 8, &p, sizeof p) != sizeof p) return pointer(t, address);
    if (p == 0) break;
    if (count == kMaxWalkElements) break;
  }
  if (abbreviate) {
    pointer(t, address);
    t.put(" /* ");
    t.udec(count);
    t.put(count == 1 ? " var */" : " vars */");
    return;
  }
  t.put('[');
  for (std::uint64_t k = 0; k < count; ++k) {
    if (k != 0) t.put(", ");
    if (k == o.array_limit) {
      t.put("...");
      break;
    }
    std::uint64_t p = 0;
    memory.read(address + k * 8, &p, sizeof p);
    string(t, memory, p, o.string_limit);
  }
  t.put(']');
}

void timespec(Text& t, Memory& memory, std::uint64_t address) noexcept {
  std::int64_t v[2];
  if (memory.read(address, v, sizeof v) != sizeof v) return pointer(t, address);
  t.put("{tv_sec=");
  t.dec(v[0]);
  t.put(", tv_nsec=");
  t.dec(v[1]);
  t.put('}');
}

void int_pair(Text& t, Memory& memory, std::uint64_t address, std::uint64_t size) noexcept {
  std::int32_t v[2];
  const std::size_t n = size >= 8 ? 2 : 1;
  if (memory.read(address, v, n * 4) != n * 4) return pointer(t, address);
  t.put('[');
  t.dec(v[0]);
  if (n == 2) {
    t.put(", ");
    t.dec(v[1]);
  }
  t.put(']');
}

// The memory an argument points to, as far as the formatter decodes it.
void memory_arg(Text& t, const Call& call, const Resolved& r, unsigned i, Memory& memory, bool after,
                std::int64_t ret, const FormatOptions& o) noexcept {
  const Arg& a = r.args[i];
  const std::uint64_t address = call.args[i];
  if (address == 0) return t.put("NULL");
  const bool wrote = writes(a.dir) || writes(a.inner);
  if (after && wrote && failed(ret)) return pointer(t, address);
  const std::uint64_t count =
      a.length.from == LengthFrom::kArg ? as_unsigned(call.args[a.length.arg], r.args[a.length.arg].type) : 0;
  if (is_byte_buffer(a)) {
    if (!after || a.written != Written::kReturn) return buffer(t, memory, address, count, o.string_limit);
    const std::uint64_t n = static_cast<std::uint64_t>(ret) < count ? static_cast<std::uint64_t>(ret) : count;
    return buffer(t, memory, address, n, o.string_limit);
  }
  switch (a.shape) {
    case Shape::kIovecs: {
      if (count > lay::kUioMaxIov) break;
      std::uint64_t budget = static_cast<std::uint64_t>(ret);
      return iovecs(t, memory, address, count, after && writes(a.inner) ? &budget : nullptr, o);
    }
    case Shape::kTimespec:
      return timespec(t, memory, address);
    case Shape::kNewFds:
      if (after) return int_pair(t, memory, address, a.length.size);
      break;
    default:
      break;
  }
  pointer(t, address);
}

void argument(Text& t, const Call& call, const Resolved& r, unsigned i, Memory& memory, bool after, std::int64_t ret,
              const FormatOptions& o) noexcept {
  const Arg& a = r.args[i];
  const std::uint64_t raw = call.args[i];
  // setsockopt's option name is the second half of its command's key.
  if (r.command != nullptr && i == 2 && a.kind == Kind::kValue && r.call->args[1].kind == Kind::kCommand &&
      (r.call->args[1].commands == Commands::kSetsockopt || r.call->args[1].commands == Commands::kGetsockopt)) {
    return t.put(r.command->name);
  }
  switch (a.kind) {
    case Kind::kUnused:
      return;
    case Kind::kValue:
      return number(t, a, raw);
    case Kind::kFd:
    case Kind::kFdTarget:
    case Kind::kFdFirst:
    case Kind::kFdLast:
    case Kind::kRemoteFd:
    case Kind::kPid:
      return a.type == Type::kUInt || a.type == Type::kULong ? t.udec(as_unsigned(raw, a.type))
                                                             : t.dec(as_signed(raw, a.type));
    case Kind::kDirFd:
      return as_signed(raw, a.type) == -100 ? t.put("AT_FDCWD") : t.dec(as_signed(raw, a.type));
    case Kind::kSignal:
      return raw == 0 ? t.put('0') : signal(t, as_signed(raw, a.type));
    case Kind::kCommand:
      return command(t, r, a, raw);
    case Kind::kAddress:
      return pointer(t, raw);
    case Kind::kPath:
      return string(t, memory, raw, lay::kPathMax - 1);
    case Kind::kString:
      return string(t, memory, raw, o.string_limit);
    case Kind::kStrings:
      return raw == 0 ? t.put("NULL") : strings(t, memory, raw, std::strcmp(a.name, "envp") == 0, o);
    case Kind::kMemory:
      return memory_arg(t, call, r, i, memory, after, ret, o);
  }
}

// An argument whose text depends on what the call wrote goes in the exit
// part, and so does every argument after it.
bool shown_after(const Arg& a) noexcept {
  return a.kind == Kind::kMemory && (a.dir == Dir::kWrite || (a.inner != Dir::kNone && writes(a.inner)));
}

struct Plan {
  Resolved r;
  unsigned first_after = 0;  // index of the first argument of the exit part
  unsigned count = 0;
  bool known = false;
};

Plan plan(const Call& call) noexcept {
  Plan p;
  const CallSpec* spec = lookup(call.number);
  if (spec == nullptr) {
    p.count = kMaxArgs;
    p.first_after = kMaxArgs;
    return p;
  }
  p.known = true;
  p.r = resolve(*spec, call.args);
  p.count = spec->arg_count;
  p.first_after = p.count;
  for (unsigned i = 0; i < p.count; ++i) {
    if (p.r.args[i].used() && shown_after(p.r.args[i])) {
      p.first_after = i;
      break;
    }
  }
  return p;
}

// Arguments [from, to) with their separators; `any` says whether one was
// printed before.
void arguments(Text& t, const Call& call, const Plan& p, unsigned from, unsigned to, Memory& memory, bool after,
               std::int64_t ret, const FormatOptions& o, bool& any) noexcept {
  for (unsigned i = from; i < to; ++i) {
    if (p.known && !p.r.args[i].used()) continue;
    if (any) t.put(", ");
    any = true;
    if (!p.known) {
      call.args[i] == 0 ? t.put('0') : t.hex(call.args[i]);
      continue;
    }
    argument(t, call, p.r, i, memory, after, ret, o);
  }
}

void result(Text& t, const Plan& p, std::int64_t ret) noexcept {
  if (failed(ret)) {
    const int err = static_cast<int>(-ret);
    t.put("-1 ");
    const char* name = errno_name(err);
    if (name == nullptr) {
      t.put("E");
      t.dec(err);
      return;
    }
    t.put(name);
    if (const char* text = errno_text(err)) {
      t.put(" (");
      t.put(text);
      t.put(')');
    }
    return;
  }
  if (p.known && (p.r.flags & kReturnsAddress) != 0) return t.hex(static_cast<std::uint64_t>(ret));
  t.dec(ret);
}

void entry_part(Text& t, const Call& call, const Plan& p, Memory& memory, const FormatOptions& o) noexcept {
  if (p.known) {
    t.put(p.r.call->name);
  } else {
    t.put("syscall_");
    t.udec(call.number);
  }
  t.put('(');
  bool any = false;
  arguments(t, call, p, 0, p.first_after, memory, false, 0, o, any);
  bool more = false;
  for (unsigned i = p.first_after; i < p.count && !more; ++i) more = !p.known || p.r.args[i].used();
  if (any && more) t.put(", ");
}

void exit_part(Text& t, const Call& call, const Plan& p, std::int64_t ret, Memory& memory,
               const FormatOptions& o) noexcept {
  bool any = false;
  arguments(t, call, p, p.first_after, p.count, memory, true, ret, o, any);
  t.put(") = ");
  result(t, p, ret);
}

}  // namespace

std::size_t format_entry(char* out, std::size_t size, const Call& call, Memory& memory,
                         const FormatOptions& options) noexcept {
  Text t(out, size);
  entry_part(t, call, plan(call), memory, options);
  return t.length();
}

std::size_t format_exit(char* out, std::size_t size, const Call& call, std::int64_t ret, Memory& memory,
                        const FormatOptions& options) noexcept {
  Text t(out, size);
  exit_part(t, call, plan(call), ret, memory, options);
  return t.length();
}

std::size_t format_call(char* out, std::size_t size, const Call& call, std::int64_t ret, Memory& memory,
                        const FormatOptions& options) noexcept {
  Text t(out, size);
  const Plan p = plan(call);
  entry_part(t, call, p, memory, options);
  exit_part(t, call, p, ret, memory, options);
  return t.length();
}

std::size_t format_result(char* out, std::size_t size, const Call& call, std::int64_t ret) noexcept {
  Text t(out, size);
  result(t, plan(call), ret);
  return t.length();
}

}  // namespace dunk::abi
