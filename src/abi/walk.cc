#include "abi/walk.h"

#include <cstring>

#include "abi/layouts.h"

namespace dunk::abi {
namespace {

namespace lay = layout;

// The bytes of an access, as the walker reads nested pointers from them:
// the visitor's copy when it made one, the program's memory otherwise.
struct Bytes {
  const std::byte* copy = nullptr;
  std::uint64_t address = 0;
  std::uint64_t size = 0;
  std::uint32_t id = Location::kArgument;
  bool valid = false;
};

// Control data the walker parses for descriptors, at most.
constexpr std::uint64_t kMaxControl = 1 << 20;

constexpr std::uint64_t div_round_up(std::uint64_t n, std::uint64_t d) noexcept { return n / d + (n % d != 0); }

// Shapes whose memory holds pointers the walker follows.
constexpr bool has_nested_memory(Shape s) noexcept {
  switch (s) {
    case Shape::kIovecs:
    case Shape::kMsghdr:
    case Shape::kMmsghdrs:
    case Shape::kSigaltstack:
    case Shape::kCloneArgs:
    case Shape::kIocbs:
    case Shape::kMqSigevent:
    case Shape::kFutexWaitv:
    case Shape::kStrings:
    case Shape::kPtrArray:
    case Shape::kSigsetPointer:
    case Shape::kSockFprog:
    case Shape::kPtraceIovec:
    case Shape::kIoUringFilesUpdate:
      return true;
    default:
      return false;
  }
}

// Whether an argument leads to memory the kernel may have written: what the
// exit phase lists.
constexpr bool writes_somewhere(const Arg& a) noexcept {
  return writes(a.dir) || writes(a.inner) || a.shape == Shape::kSigaltstack || a.shape == Shape::kIocbs ||
         a.shape == Shape::kCloneArgs;
}

class Walker {
 public:
  Walker(const Call& call, Memory& memory, Visitor& visitor, Phase phase, std::int64_t ret) noexcept
      : call_(call), memory_(memory), visitor_(visitor), phase_(phase), ret_(ret) {}

  WalkResult run() noexcept;

 private:
  bool entry() const noexcept { return phase_ == Phase::kEntry; }
  bool exit() const noexcept { return phase_ == Phase::kExit; }
  bool ok() const noexcept { return exit() && !failed(ret_); }
  std::uint64_t raw(unsigned i) const noexcept { return call_.args[i]; }

  // Reporting.
  Bytes emit(Access a) noexcept;
  void emit_fd(std::int64_t fd, FdRole role, Location where) noexcept;
  void incomplete(const char* why) noexcept;

  // Reading.
  bool load(const Bytes& b, std::uint64_t offset, void* out, std::size_t n) noexcept;
  template <class T>
  bool load_as(const Bytes& b, std::uint64_t offset, T& out) noexcept {
    return load(b, offset, &out, sizeof out);
  }
  bool read_memory(std::uint64_t address, void* out, std::size_t n) noexcept;
  std::uint64_t string_length(std::uint64_t address, std::uint64_t max, bool& terminated) noexcept;
  bool pointee(unsigned arg, std::uint32_t width, std::uint64_t& value) noexcept;

  // The arguments.
  void argument(unsigned i) noexcept;
  void ensure(unsigned i) noexcept;
  void memory_argument(unsigned i, const Arg& a) noexcept;
  bool within_limits(const Arg& a, std::uint64_t& size, std::uint64_t& count) noexcept;
  std::uint64_t top_written(const Arg& a, std::uint64_t size, std::uint64_t count) const noexcept;
  void check_self_size(const Arg& a, const Bytes& b) noexcept;
  void string_argument(unsigned i, const Arg& a) noexcept;
  void dirfds() noexcept;
  void result_fd() noexcept;
  bool capacity(unsigned i, const Arg& a, std::uint64_t& size) noexcept;
  std::uint64_t shape_capacity(unsigned i, const Arg& a, bool& known) noexcept;
  std::uint64_t written(const Arg& a, std::uint64_t size) const noexcept;

  // Shapes: the parent has been emitted, `b` holds its bytes.
  void nested(const Arg& a, const Bytes& b) noexcept;
  void iovec_array(const Bytes& b, std::uint64_t offset, std::uint64_t count, Dir data, std::uint8_t flags,
                   std::uint64_t* budget) noexcept;
  void msghdr(const Bytes& b, std::uint64_t base, bool receive, std::uint64_t* budget) noexcept;
  void mmsghdrs(const Bytes& b, bool receive) noexcept;
  void control(const Bytes& msg, std::uint64_t base, std::uint64_t address, std::uint64_t length,
               bool receive) noexcept;
  void rights(const Bytes& control, std::uint64_t length, FdRole role) noexcept;
  void pollfds(const Bytes& b) noexcept;
  void fd_set(const Bytes& b) noexcept;
  void sigaltstack(const Bytes& b) noexcept;
  void mq_sigevent(const Bytes& b) noexcept;
  void files_update(const Bytes& b) noexcept;
  void clone_args(const Bytes& b) noexcept;
  void iocbs(const Bytes& b, std::uint64_t count) noexcept;
  void iocb(const Bytes& b) noexcept;
  void strings(unsigned i) noexcept;
  void ints(const Bytes& b, FdRole role, bool skip_negative) noexcept;
  void int_at(const Bytes& b, std::uint64_t offset, std::size_t width, FdRole role) noexcept;
  void child(const Bytes& parent, std::uint64_t offset, std::uint64_t address, std::uint64_t size, Dir dir,
             std::uint8_t flags, std::uint64_t written_bytes, Shape shape = Shape::kBytes) noexcept;

  const Call& call_;
  Memory& memory_;
  Visitor& visitor_;
  const Phase phase_;
  const std::int64_t ret_;
  Resolved r_{};
  WalkResult result_{};
  std::uint32_t next_id_ = 0;
  Bytes args_[kMaxArgs]{};
  std::uint8_t started_ = 0;
};

// --- Reporting ---------------------------------------------------------

Bytes Walker::emit(Access a) noexcept {
  a.id = next_id_++;
  ++result_.accesses;
  if ((a.flags & kAsync) != 0) result_.async = true;
  if ((a.flags & kFollowedLater) != 0) result_.later_unbounded = true;
  const void* copy = visitor_.access(a);
  return Bytes{static_cast<const std::byte*>(copy), a.address, a.size, a.id, true};
}

void Walker::emit_fd(std::int64_t fd, FdRole role, Location where) noexcept {
  ++result_.fds;
  visitor_.fd(FdUse{static_cast<int>(fd), role, where});
}

void Walker::incomplete(const char* why) noexcept {
  if (result_.completeness != Completeness::kIncomplete) {
    result_.completeness = Completeness::kIncomplete;
    result_.reason = why;
  }
}

// --- Reading -----------------------------------------------------------

// A structure the walk decodes: if it cannot be read, what it points to
// cannot be listed, and the walk says so.
bool Walker::load(const Bytes& b, std::uint64_t offset, void* out, std::size_t n) noexcept {
  if (!b.valid || offset > b.size || n > b.size - offset) return false;
  if (b.copy != nullptr) {
    std::memcpy(out, b.copy + offset, n);
    return true;
  }
  if (read_memory(b.address + offset, out, n)) return true;
  incomplete("a structure the walker could not read");
  return false;
}

bool Walker::read_memory(std::uint64_t address, void* out, std::size_t n) noexcept {
  if (memory_.read(address, out, n) == n) return true;
  result_.unreadable = true;
  return false;
}

// Bytes up to and including the NUL, at most `max` (what the kernel reads).
std::uint64_t Walker::string_length(std::uint64_t address, std::uint64_t max, bool& terminated) noexcept {
  char chunk[256];
  std::uint64_t length = 0;
  terminated = false;
  while (length < max) {
    const std::size_t want = static_cast<std::size_t>(max - length < sizeof chunk ? max - length : sizeof chunk);
    const std::size_t got = memory_.read(address + length, chunk, want);
    const void* nul = std::memchr(chunk, '\0', got);
    if (nul != nullptr) {
      terminated = true;
      return length + static_cast<std::uint64_t>(static_cast<const char*>(nul) - chunk) + 1;
    }
    length += got;
    if (got < want) {
      // The kernel reads up to the byte it cannot: report that far, so that
      // no pointer the kernel follows goes unreported.
      result_.unreadable = true;
      return length + 1;
    }
  }
  return length;
}

// The integer a value-result argument points to: from the copy of that
// argument when it was made, so that the length the walk uses is the one
// the kernel will read.
bool Walker::pointee(unsigned arg, std::uint32_t width, std::uint64_t& value) noexcept {
  ensure(arg);
  value = 0;
  if (raw(arg) == 0) return false;
  Bytes b = args_[arg].valid ? args_[arg] : Bytes{nullptr, raw(arg), width, Location::kArgument, true};
  if (width == 4) {
    std::int32_t v;
    if (!load_as(b, 0, v)) return false;
    value = v < 0 ? 0 : static_cast<std::uint64_t>(v);
    return true;
  }
  return load_as(b, 0, value);
}

// --- Lengths -----------------------------------------------------------

bool Walker::capacity(unsigned i, const Arg& a, std::uint64_t& size) noexcept {
  const Length& len = a.length;
  size = 0;
  switch (len.from) {
    case LengthFrom::kNone:
      return false;
    case LengthFrom::kFixed:
      size = len.size;
      return true;
    case LengthFrom::kArg: {
      const Type type = r_.args[len.arg].type;
      // A negative count of a signed type: the kernel fails with EINVAL
      // before it touches the memory.
      if ((type == Type::kInt || type == Type::kLong) && as_signed(raw(len.arg), type) < 0) return true;
      const std::uint64_t n = as_unsigned(raw(len.arg), type);
      std::uint64_t product;
      if (__builtin_mul_overflow(n, std::uint64_t{len.size}, &product) ||
          __builtin_add_overflow(product, std::uint64_t{len.header}, &size)) {
        incomplete("a length that overflows the address space");
        return false;
      }
      // The kernel reads no more than a sockaddr_storage of an address (and
      // refuses a longer one).
      if (a.shape == Shape::kSockaddr && size > lay::kSockaddrMax) size = lay::kSockaddrMax;
      return true;
    }
    case LengthFrom::kPointee: {
      std::uint64_t v;
      if (!pointee(len.arg, len.size, v)) return false;
      // The kernel copies at most a sockaddr_storage of an address.
      size = a.shape == Shape::kSockaddr && v > lay::kSockaddrMax ? lay::kSockaddrMax : v;
      return true;
    }
    case LengthFrom::kNul:
      return false;  // strings: string_argument
    case LengthFrom::kBitsArg: {
      const std::int64_t bits = as_signed(raw(len.arg), r_.args[len.arg].type) - len.size;
      if (bits <= 0) return true;
      if (static_cast<std::uint64_t>(bits) > kMaxWalkElements) {
        incomplete("a bitmap larger than the walker decodes");
        return false;
      }
      size = div_round_up(static_cast<std::uint64_t>(bits), 64) * 8;
      return true;
    }
    case LengthFrom::kPagesArg:
      size = div_round_up(raw(len.arg), lay::kPageSize);
      return true;
    case LengthFrom::kShape: {
      bool known = true;
      size = shape_capacity(i, a, known);
      return known;
    }
  }
  return false;
}

// Structures that carry their own size: where the field is, and what the
// kernel reads for a value of it.
constexpr std::uint64_t size_field_offset(Shape s) noexcept {
  return s == Shape::kPerfEventAttr ? lay::kPerfAttrSizeField : 0;
}
constexpr std::uint64_t size_from_field(Shape s, std::uint32_t field) noexcept {
  switch (s) {
    case Shape::kSchedAttr:
      if (field == 0) return lay::kSchedAttrSizeVer0;
      // Outside these bounds the kernel reads the size field, writes back the
      // size it knows, and fails with E2BIG.
      if (field < lay::kSchedAttrSizeVer0 || field > lay::kSchedAttrSizeMax) return 4;
      return field;
    case Shape::kPerfEventAttr:
      if (field == 0) return lay::kPerfAttrSizeVer0;
      if (field < lay::kPerfAttrSizeVer0 || field > lay::kPageSize) return lay::kPerfAttrSizeField + 4;
      return field;
    case Shape::kFileHandle:
      if (field == 0 || field > lay::kMaxHandleSize) return lay::kFileHandleHeader;  // EINVAL after the header
      return lay::kFileHandleHeader + field;
    default:
      return 0;
  }
}

std::uint64_t Walker::shape_capacity(unsigned i, const Arg& a, bool& known) noexcept {
  if (a.shape == Shape::kCapData) {
    // The header (argument 0) has been walked: read its copy.
    std::uint32_t version = 0;
    ensure(0);
    if (!load_as(args_[0], 0, version)) return known = false, 0;
    if (version == lay::kCapVersion1) return lay::kCapDataSize;
    if (version == 0x20071026 || version == 0x20080522) return 2 * lay::kCapDataSize;
    return 0;  // EINVAL: the kernel writes its version into the header, not the data
  }
  std::uint32_t field = 0;
  const Bytes self{nullptr, raw(i), size_field_offset(a.shape) + 4, Location::kArgument, true};
  if (size_from_field(a.shape, 1) == 0) {
    incomplete("a structure whose size the walker does not know");
    return known = false, 0;
  }
  if (!load_as(self, size_field_offset(a.shape), field)) return known = false, 0;
  return size_from_field(a.shape, field);
}

std::uint64_t Walker::written(const Arg& a, std::uint64_t size) const noexcept {
  if (!exit()) return 0;
  const bool success = !failed(ret_);
  const std::uint64_t r = ret_ < 0 ? 0 : static_cast<std::uint64_t>(ret_);
  auto at_most = [size](std::uint64_t n) { return n < size ? n : size; };
  switch (a.written) {
    case Written::kNever:
      return 0;
    case Written::kOnSuccess:
    case Written::kPointee:
      return success ? size : 0;
    case Written::kAlways:
      return size;
    case Written::kOnFailure:
      return success ? 0 : size;
    case Written::kReturn:
      return success ? at_most(a.length.header + r) : 0;
    case Written::kReturnTimes: {
      std::uint64_t n;
      if (__builtin_mul_overflow(r, std::uint64_t{a.length.size}, &n)) return success ? size : 0;
      return success ? at_most(a.length.header + n) : 0;
    }
    case Written::kShape:
      return 0;
  }
  return 0;
}

// --- Arguments ---------------------------------------------------------

void Walker::ensure(unsigned i) noexcept {
  if ((started_ & (1u << i)) == 0) argument(i);
}

void Walker::argument(unsigned i) noexcept {
  started_ = static_cast<std::uint8_t>(started_ | (1u << i));
  const Arg& a = r_.args[i];
  const Location where{Location::kArgument, 0, static_cast<std::uint8_t>(i)};
  const std::int64_t value = as_signed(raw(i), a.type);
  switch (a.kind) {
    case Kind::kUnused:
    case Kind::kValue:
    case Kind::kPid:
    case Kind::kSignal:
    case Kind::kCommand:
    case Kind::kDirFd:  // dirfds(), once the paths are known
      return;
    case Kind::kFd:
      if (entry() && !((a.flags & kOptionalFd) != 0 && value < 0)) emit_fd(value, FdRole::kUse, where);
      return;
    case Kind::kFdTarget:
      if (entry()) emit_fd(value, FdRole::kTarget, where);
      return;
    case Kind::kFdFirst:
      if (entry()) emit_fd(value, FdRole::kRangeFirst, where);
      return;
    case Kind::kFdLast:
      if (entry()) emit_fd(value, FdRole::kRangeLast, where);
      return;
    case Kind::kRemoteFd:
      if (entry()) emit_fd(value, FdRole::kRemote, where);
      return;
    case Kind::kAddress: {
      std::uint64_t size;
      if (!entry() || !capacity(i, a, size)) return;
      Access acc;
      acc.address = raw(i);
      acc.size = size;
      acc.dir = Dir::kAddressOnly;
      acc.kind = Kind::kAddress;
      acc.where = where;
      args_[i] = emit(acc);
      return;
    }
    case Kind::kString:
    case Kind::kPath:
      string_argument(i, a);
      return;
    case Kind::kStrings:
      if (entry() && raw(i) != 0) strings(i);
      return;
    case Kind::kMemory:
      memory_argument(i, a);
      return;
  }
}

void Walker::string_argument(unsigned i, const Arg& a) noexcept {
  if (!entry() || raw(i) == 0) return;
  bool terminated;
  Access acc;
  acc.address = raw(i);
  acc.size = string_length(raw(i), a.length.size, terminated);
  acc.dir = Dir::kRead;
  acc.kind = a.kind;
  acc.terminator = terminated ? Terminator::kNul : Terminator::kNone;
  acc.where = Location{Location::kArgument, 0, static_cast<std::uint8_t>(i)};
  args_[i] = emit(acc);
}

void Walker::memory_argument(unsigned i, const Arg& a) noexcept {
  if (raw(i) == 0) return;
  if (exit() && !writes_somewhere(a)) return;
  std::uint64_t size;
  if (!capacity(i, a, size)) {
    // A pointer the kernel may follow, of a size the walker could not learn:
    // not describable, rather than silently left out.
    if (entry()) incomplete("the size of memory an argument points to could not be read");
    return;
  }
  std::uint64_t count = a.length.from == LengthFrom::kArg ? as_unsigned(raw(a.length.arg), r_.args[a.length.arg].type)
                                                          : 0;
  if (size == 0 || !within_limits(a, size, count)) return;
  // Nothing was registered by a call that failed.
  if (exit() && (a.flags & kAsync) != 0 && a.inner == Dir::kNone && failed(ret_)) return;

  Access acc;
  acc.address = raw(i);
  acc.size = size;
  acc.written = top_written(a, size, count);
  acc.dir = a.dir;
  acc.kind = Kind::kMemory;
  acc.shape = a.shape;
  // For a structure of pointers kAsync and kRemote are about what it points to.
  acc.flags = a.inner != Dir::kNone ? static_cast<std::uint8_t>(a.flags & ~(kAsync | kRemote)) : a.flags;
  acc.where = Location{Location::kArgument, 0, static_cast<std::uint8_t>(i)};
  const Bytes b = emit(acc);
  args_[i] = b;
  check_self_size(a, b);
  nested(a, b);
}

// The limits the kernel checks before it reads a structure: past them it
// fails, and the walker says it cannot describe the call rather than walk
// what the kernel would not. May lower `count` (and `size`) to what the
// kernel takes.
bool Walker::within_limits(const Arg& a, std::uint64_t& size, std::uint64_t& count) noexcept {
  switch (a.shape) {
    case Shape::kIovecs:
      if (count <= lay::kUioMaxIov) return true;
      incomplete("more iovecs than UIO_MAXIOV: the kernel refuses them");
      return false;
    case Shape::kMmsghdrs:
      // sendmmsg sends at most UIO_MAXIOV; recvmmsg has no limit of its own.
      if (!writes(a.inner) && count > lay::kUioMaxIov) count = lay::kUioMaxIov;
      size = count * lay::kMmsghdrSize;
      if (count <= kMaxWalkElements) return true;
      incomplete("more messages than the walker decodes");
      return false;
    case Shape::kCloneArgs:
      if (size >= lay::kCloneArgsSizeVer0 && size <= lay::kPageSize) return true;
      incomplete("a clone_args size the kernel refuses");
      return false;
    case Shape::kFutexWaitv:
      if (count <= 128) return true;
      incomplete("more futexes than FUTEX_WAITV_MAX: the kernel refuses them");
      return false;
    case Shape::kPollfds:
    case Shape::kIocbs:
    case Shape::kPtrArray:
    case Shape::kFds:
      if (count <= kMaxWalkElements) return true;
      incomplete("more elements than the walker decodes");
      return false;
    default:
      return true;
  }
}

// What the kernel wrote of an argument's own memory. For a structure of
// pointers, Written is about the memory they point to; the structure
// itself is written only where the kernel updates it (recvmsg's lengths,
// recvmmsg's msg_len, PTRACE_GETREGSET's iov_len). Memory the kernel
// writes later was not written by the call.
std::uint64_t Walker::top_written(const Arg& a, std::uint64_t size, std::uint64_t count) const noexcept {
  if (!exit()) return 0;
  switch (a.shape) {
    case Shape::kMsghdr:
    case Shape::kPtraceIovec:
      return writes(a.dir) && ok() ? size : 0;
    case Shape::kMmsghdrs: {
      const std::uint64_t done = ok() ? static_cast<std::uint64_t>(ret_) : 0;
      return (done < count ? done : count) * lay::kMmsghdrSize;
    }
    default:
      if (a.inner != Dir::kNone || (a.flags & kAsync) != 0) return 0;
      return written(a, size);
  }
}

// A structure that carries its own size may have changed between the read
// that sized the access and the visitor's copy; the kernel reads the copy.
void Walker::check_self_size(const Arg& a, const Bytes& b) noexcept {
  if (b.copy == nullptr || size_from_field(a.shape, 1) == 0) return;
  // Every such size covers its size field (size_from_field's minimums).
  std::uint32_t field = 0;
  std::memcpy(&field, b.copy + size_field_offset(a.shape), sizeof field);
  if (size_from_field(a.shape, field) != b.size) incomplete("the structure's size changed while it was copied");
}

void Walker::strings(unsigned i) noexcept {
  // Count the pointers up to the NULL, reading through the program's memory;
  // the copy the visitor makes must end with a NULL pointer (Terminator).
  const std::uint64_t base = raw(i);
  std::uint64_t count = 0;
  bool terminated = false;
  std::uint64_t chunk[32];
  while (count < kMaxWalkElements) {
    const std::size_t got = memory_.read(base + count * 8, chunk, sizeof chunk) / 8;
    for (std::size_t k = 0; k < got; ++k) {
      if (chunk[k] == 0) {
        terminated = true;
        break;
      }
      ++count;
    }
    if (terminated) break;
    if (got < std::size(chunk)) {
      result_.unreadable = true;
      break;
    }
  }
  if (!terminated && !result_.unreadable) return incomplete("more strings than the walker decodes");
  Access acc;
  acc.address = base;
  // Unterminated: up to the pointer the kernel could not read.
  acc.size = (count + 1) * 8;
  acc.dir = Dir::kRead;
  acc.kind = Kind::kStrings;
  acc.shape = Shape::kStrings;
  acc.terminator = terminated ? Terminator::kNullPointer : Terminator::kNone;
  acc.where = Location{Location::kArgument, 0, static_cast<std::uint8_t>(i)};
  const Bytes b = emit(acc);
  args_[i] = b;
  for (std::uint64_t k = 0; k < count; ++k) {
    std::uint64_t s;
    if (!load_as(b, k * 8, s) || s == 0) break;
    bool nul;
    Access str;
    str.address = s;
    str.size = string_length(s, lay::kMaxArgStrlen, nul);
    str.dir = Dir::kRead;
    str.kind = Kind::kString;
    str.terminator = nul ? Terminator::kNul : Terminator::kNone;
    str.where = Location{b.id, static_cast<std::uint32_t>(k * 8), static_cast<std::uint8_t>(i)};
    emit(str);
  }
}

// A dirfd matters only for a relative path: the kernel does not look an
// absolute one's dirfd up (but kDirFdAlways).
void Walker::dirfds() noexcept {
  if (!entry()) return;
  const unsigned n = r_.call->arg_count;
  for (unsigned i = 0; i < n; ++i) {
    if (r_.args[i].kind != Kind::kDirFd) continue;
    int path = -1;
    for (unsigned j = i + 1; j < n && path < 0; ++j) {
      if (r_.args[j].kind == Kind::kPath) path = static_cast<int>(j);
    }
    for (int j = static_cast<int>(i) - 1; j >= 0 && path < 0; --j) {
      if (r_.args[j].kind == Kind::kPath) path = j;
    }
    char first = 0;
    const bool absolute = path >= 0 && (r_.args[i].flags & kDirFdAlways) == 0 && args_[path].valid &&
                          load_as(args_[path], 0, first) && first == '/';
    if (!absolute) {
      emit_fd(as_signed(raw(i), r_.args[i].type), FdRole::kDirFd,
              Location{Location::kArgument, 0, static_cast<std::uint8_t>(i)});
    }
  }
}

void Walker::result_fd() noexcept {
  if (ok() && (r_.flags & kReturnsFd) != 0 && ret_ >= 0) {
    emit_fd(ret_, FdRole::kNew, Location{Location::kArgument, 0, Location::kReturnValue});
  }
}

// --- Shapes ------------------------------------------------------------

void Walker::child(const Bytes& parent, std::uint64_t offset, std::uint64_t address, std::uint64_t size, Dir dir,
                   std::uint8_t flags, std::uint64_t written_bytes, Shape shape) noexcept {
  if (address == 0 || size == 0) return;
  if (exit() && !writes(dir)) return;
  Access acc;
  acc.address = address;
  acc.size = size;
  acc.written = exit() ? written_bytes : 0;
  acc.dir = dir;
  acc.kind = Kind::kMemory;
  acc.shape = shape;
  acc.flags = flags;
  acc.where = Location{parent.id, static_cast<std::uint32_t>(offset), 0};
  emit(acc);
}

void Walker::nested(const Arg& a, const Bytes& b) noexcept {
  const std::uint64_t count = a.length.from == LengthFrom::kArg ? b.size / (a.length.size ? a.length.size : 1) : 0;
  const std::uint8_t inner_flags = static_cast<std::uint8_t>(a.flags & (kAsync | kRemote | kFollowedLater));
  switch (a.shape) {
    case Shape::kIovecs: {
      std::uint64_t budget = a.written == Written::kReturn && ok() ? static_cast<std::uint64_t>(ret_) : 0;
      iovec_array(b, 0, count, a.inner, inner_flags, &budget);
      return;
    }
    case Shape::kMsghdr: {
      std::uint64_t budget = ok() ? static_cast<std::uint64_t>(ret_) : 0;
      msghdr(b, 0, writes(a.inner), &budget);
      return;
    }
    case Shape::kMmsghdrs:
      mmsghdrs(b, writes(a.inner));
      return;
    case Shape::kPollfds:
      pollfds(b);
      return;
    case Shape::kFdSet:
      fd_set(b);
      return;
    case Shape::kSigaltstack:
      sigaltstack(b);
      return;
    case Shape::kCloneArgs:
      clone_args(b);
      return;
    case Shape::kIocbs:
      iocbs(b, count);
      return;
    case Shape::kMqSigevent:
      return mq_sigevent(b);
    case Shape::kFutexWaitv:
      for (std::uint64_t k = 0; k < count; ++k) {
        std::uint64_t uaddr;
        if (!load_as(b, k * lay::kFutexWaitvSize + lay::kFutexWaitvUaddr, uaddr)) return;
        child(b, k * lay::kFutexWaitvSize + lay::kFutexWaitvUaddr, uaddr, 4, Dir::kRead, kArgNone, 0);
      }
      return;
    case Shape::kPtrArray:
      for (std::uint64_t k = 0; k < count; ++k) {
        std::uint64_t address;
        if (!load_as(b, k * 8, address)) return;
        child(b, k * 8, address, 1, a.inner, inner_flags, 0);
      }
      return;
    case Shape::kSigsetPointer: {
      std::uint64_t set = 0, size = 0;
      if (load_as(b, 0, set) && load_as(b, 8, size)) child(b, 0, set, size, Dir::kRead, kArgNone, 0);
      return;
    }
    case Shape::kSockFprog: {
      std::uint16_t len = 0;
      std::uint64_t filter = 0;
      if (load_as(b, 0, len) && load_as(b, lay::kSockFprogFilter, filter)) {
        child(b, lay::kSockFprogFilter, filter, std::uint64_t{len} * lay::kSockFilterSize, Dir::kRead, kArgNone, 0);
      }
      return;
    }
    case Shape::kPtraceIovec: {
      std::uint64_t base = 0, len = 0;
      if (load_as(b, lay::kIovecBase, base) && load_as(b, lay::kIovecLen, len)) {
        child(b, lay::kIovecBase, base, len, a.inner, kArgNone, ok() ? len : 0);
      }
      return;
    }
    case Shape::kIoUringFilesUpdate:
      return files_update(b);
    case Shape::kFds:
      if (entry()) ints(b, FdRole::kUse, true);
      return;
    case Shape::kNewFds:
      if (ok()) ints(b, FdRole::kNew, true);
      return;
    case Shape::kPathBeneath:
      if (entry()) int_at(b, lay::kLandlockPathBeneathFd, 4, FdRole::kUse);
      return;
    case Shape::kFileCloneRange:
      if (entry()) int_at(b, 0, 8, FdRole::kUse);
      return;
    case Shape::kMountAttr: {
      std::uint64_t set = 0;
      if (entry() && load_as(b, 0, set) && (set & lay::kMountAttrIdmap) != 0) {
        int_at(b, lay::kMountAttrUsernsFd, 8, FdRole::kUse);
      }
      return;
    }
    default:
      return;
  }
}

// mq_notify with SIGEV_THREAD: sigev_signo is a netlink socket, and
// sigev_value points to the cookie the kernel sends on it.
void Walker::mq_sigevent(const Bytes& b) noexcept {
  std::int32_t notify = 0, signo = 0;
  std::uint64_t cookie = 0;
  if (!entry() || !load_as(b, lay::kSigeventNotify, notify) || notify != lay::kSigevThread) return;
  if (load_as(b, lay::kSigeventSigno, signo)) emit_fd(signo, FdRole::kUse, Location{b.id, lay::kSigeventSigno, 0});
  if (load_as(b, lay::kSigeventValue, cookie)) {
    child(b, lay::kSigeventValue, cookie, lay::kNotifyCookieLen, Dir::kRead, kArgNone, 0);
  }
}

// IORING_REGISTER_FILES_UPDATE: nr_args descriptors at the structure's
// pointer (-1 removes a slot, -2 skips it).
void Walker::files_update(const Bytes& b) noexcept {
  std::uint64_t fds = 0;
  if (!entry() || !load_as(b, lay::kIoUringFilesUpdateFds, fds) || fds == 0) return;
  const std::uint64_t n = as_unsigned(raw(3), Type::kUInt);
  if (n > kMaxWalkElements) return incomplete("more descriptors than the walker decodes");
  if (n == 0) return;
  Access acc;
  acc.address = fds;
  acc.size = n * 4;
  acc.dir = Dir::kRead;
  acc.shape = Shape::kFds;
  acc.where = Location{b.id, lay::kIoUringFilesUpdateFds, 0};
  ints(emit(acc), FdRole::kUse, true);
}

void Walker::iovec_array(const Bytes& b, std::uint64_t offset, std::uint64_t count, Dir data, std::uint8_t flags,
                         std::uint64_t* budget) noexcept {
  for (std::uint64_t k = 0; k < count; ++k) {
    const std::uint64_t at = offset + k * lay::kIovecSize;
    std::uint64_t base, len;
    if (!load_as(b, at + lay::kIovecBase, base) || !load_as(b, at + lay::kIovecLen, len)) return;
    std::uint64_t wrote = 0;
    if (budget != nullptr && writes(data)) {
      wrote = len < *budget ? len : *budget;
      *budget -= wrote;
    }
    child(b, at + lay::kIovecBase, base, len, data, flags, wrote);
  }
}

// A user_msghdr at `base` of `b`: its name, its iovecs and their buffers,
// its control data. `budget`: at exit, the bytes received into the iovecs.
void Walker::msghdr(const Bytes& b, std::uint64_t base, bool receive, std::uint64_t* budget) noexcept {
  std::uint64_t name, iov, iovlen, control_data, controllen;
  std::int32_t namelen;
  if (!load_as(b, base + lay::kMsghdrName, name) || !load_as(b, base + lay::kMsghdrNamelen, namelen) ||
      !load_as(b, base + lay::kMsghdrIov, iov) || !load_as(b, base + lay::kMsghdrIovlen, iovlen) ||
      !load_as(b, base + lay::kMsghdrControl, control_data) ||
      !load_as(b, base + lay::kMsghdrControllen, controllen)) {
    return;
  }
  // The name: at most a sockaddr_storage; after a receive, msg_namelen is
  // the address's length (the kernel wrote at most the room there was).
  std::uint64_t n = namelen < 0 ? 0 : static_cast<std::uint64_t>(namelen);
  if (n > lay::kSockaddrMax) n = lay::kSockaddrMax;
  child(b, base + lay::kMsghdrName, name, n, receive ? Dir::kWrite : Dir::kRead, kArgNone, ok() ? n : 0,
        Shape::kSockaddr);

  if (iovlen > lay::kUioMaxIov) return incomplete("a msghdr with more iovecs than UIO_MAXIOV");
  if (iov != 0 && iovlen != 0 && (entry() || receive)) {
    Access acc;
    acc.address = iov;
    acc.size = iovlen * lay::kIovecSize;
    acc.dir = Dir::kRead;
    acc.shape = Shape::kIovecs;
    acc.where = Location{b.id, static_cast<std::uint32_t>(base + lay::kMsghdrIov), 0};
    const Bytes vec = emit(acc);
    iovec_array(vec, 0, iovlen, receive ? Dir::kWrite : Dir::kRead, kArgNone, budget);
  }
  control(b, base, control_data, controllen, receive);
}

// Control data: what sendmsg passes (its SCM_RIGHTS descriptors are uses),
// or the room recvmsg fills (at exit msg_controllen says how much, and its
// SCM_RIGHTS descriptors are new).
void Walker::control(const Bytes& msg, std::uint64_t base, std::uint64_t address, std::uint64_t length,
                     bool receive) noexcept {
  if (address == 0 || length == 0) return;
  if (!receive && exit()) return;
  // The kernel copies control data into a buffer of at most optmem_max
  // (20 KiB by default) and fails with ENOBUFS beyond it.
  if (!receive && length > kMaxControl) return incomplete("more control data than the walker decodes");
  Access acc;
  acc.address = address;
  acc.size = length;
  acc.dir = receive ? Dir::kWrite : Dir::kRead;
  acc.written = receive && ok() ? length : 0;
  acc.where = Location{msg.id, static_cast<std::uint32_t>(base + lay::kMsghdrControl), 0};
  const Bytes c = emit(acc);
  if (!receive) {
    rights(c, length, FdRole::kUse);
  } else if (ok()) {
    rights(c, length, FdRole::kNew);
  }
}

// The descriptors of SCM_RIGHTS messages, walked as the kernel walks cmsgs.
void Walker::rights(const Bytes& c, std::uint64_t length, FdRole role) noexcept {
  std::uint64_t offset = 0;
  while (offset + lay::kCmsghdrSize <= length) {
    std::uint64_t cmsg_len;
    std::int32_t level, type;
    if (!load_as(c, offset, cmsg_len) || !load_as(c, offset + lay::kCmsgLevel, level) ||
        !load_as(c, offset + lay::kCmsgType, type)) {
      return;
    }
    if (cmsg_len < lay::kCmsghdrSize || cmsg_len > length - offset) return;
    if (level == static_cast<std::int32_t>(lay::kSolSocket) && type == static_cast<std::int32_t>(lay::kScmRights)) {
      for (std::uint64_t at = offset + lay::kCmsghdrSize; at + 4 <= offset + cmsg_len; at += 4) {
        int_at(c, at, 4, role);
      }
    }
    offset += lay::cmsg_align(cmsg_len);
  }
}

void Walker::mmsghdrs(const Bytes& b, bool receive) noexcept {
  const std::uint64_t count = b.size / lay::kMmsghdrSize;
  const std::uint64_t done = ok() ? static_cast<std::uint64_t>(ret_) : 0;
  for (std::uint64_t k = 0; k < count; ++k) {
    // At exit, message k's msg_len says how much it received.
    std::uint64_t budget = 0;
    std::uint32_t msg_len = 0;
    if (receive && k < done && load_as(b, k * lay::kMmsghdrSize + lay::kMmsghdrLen, msg_len)) budget = msg_len;
    if (exit() && k >= done) continue;
    msghdr(b, k * lay::kMmsghdrSize, receive, &budget);
  }
}

void Walker::pollfds(const Bytes& b) noexcept {
  if (!entry()) return;
  for (std::uint64_t at = 0; at + lay::kPollfdSize <= b.size; at += lay::kPollfdSize) {
    std::int32_t fd;
    if (!load_as(b, at, fd)) return;
    if (fd >= 0) emit_fd(fd, FdRole::kUse, Location{b.id, static_cast<std::uint32_t>(at), 0});
  }
}

void Walker::fd_set(const Bytes& b) noexcept {
  if (!entry()) return;
  const std::int64_t n = as_signed(raw(0), Type::kInt);
  for (std::uint64_t word = 0; word * 8 < b.size; ++word) {
    std::uint64_t bits;
    if (!load_as(b, word * 8, bits)) return;
    for (unsigned bit = 0; bits != 0 && bit < 64; ++bit, bits >>= 1) {
      const std::int64_t fd = static_cast<std::int64_t>(word * 64 + bit);
      if ((bits & 1) != 0 && fd < n) emit_fd(fd, FdRole::kUse, Location{b.id, static_cast<std::uint32_t>(fd / 8), 0});
    }
  }
}

// A registered alternate stack: the kernel writes signal frames there later.
void Walker::sigaltstack(const Bytes& b) noexcept {
  std::uint64_t sp, size;
  std::int32_t flags;
  if (!load_as(b, lay::kStackSp, sp) || !load_as(b, lay::kStackFlags, flags) ||
      !load_as(b, lay::kStackLength, size)) {
    return;
  }
  if ((flags & lay::kSsDisable) != 0 || (exit() && failed(ret_))) return;
  child(b, lay::kStackSp, sp, size, Dir::kWrite, kAsync, 0);
}

void Walker::clone_args(const Bytes& b) noexcept {
  std::uint64_t flags = 0, pidfd = 0, child_tid = 0, parent_tid = 0;
  if (!load_as(b, lay::kCloneArgsFlags, flags) || !load_as(b, lay::kCloneArgsPidfd, pidfd) ||
      !load_as(b, lay::kCloneArgsChildTid, child_tid) || !load_as(b, lay::kCloneArgsParentTid, parent_tid)) {
    return;
  }
  const bool parent = ok() && ret_ > 0;
  if ((flags & lay::kClonePidfd) != 0 && pidfd != 0) {
    child(b, lay::kCloneArgsPidfd, pidfd, 4, Dir::kWrite, kArgNone, parent ? 4 : 0, Shape::kNewFds);
    if (parent) {
      std::int32_t fd;
      if (read_memory(pidfd, &fd, sizeof fd)) emit_fd(fd, FdRole::kNew, Location{b.id, lay::kCloneArgsPidfd, 0});
    }
  }
  if ((flags & lay::kCloneParentSettid) != 0) {
    child(b, lay::kCloneArgsParentTid, parent_tid, 4, Dir::kWrite, kArgNone, parent ? 4 : 0);
  }
  if ((flags & (lay::kCloneChildSettid | lay::kCloneChildCleartid)) != 0 && !(exit() && failed(ret_))) {
    child(b, lay::kCloneArgsChildTid, child_tid, 4, Dir::kWrite, kAsync | kChildWrites, 0);
  }
  std::uint64_t set_tid = 0, set_tid_size = 0;
  if (b.size >= lay::kCloneArgsSizeVer1 && load_as(b, lay::kCloneArgsSetTid, set_tid) &&
      load_as(b, lay::kCloneArgsSetTidSize, set_tid_size) && set_tid_size != 0) {
    if (set_tid_size > 32) return incomplete("more set_tid levels than the kernel's 32");
    child(b, lay::kCloneArgsSetTid, set_tid, set_tid_size * 4, Dir::kRead, kArgNone, 0);
  }
  if ((flags & lay::kCloneIntoCgroup) != 0 && b.size >= lay::kCloneArgsSizeVer2 && entry()) {
    int_at(b, lay::kCloneArgsCgroup, 8, FdRole::kUse);
  }
}

// io_submit: `count` pointers to iocbs. The kernel writes each submitted
// iocb's aio_key now and reads or writes its buffers when the request runs.
void Walker::iocbs(const Bytes& b, std::uint64_t count) noexcept {
  const std::uint64_t submitted = ok() ? static_cast<std::uint64_t>(ret_) : 0;
  for (std::uint64_t k = 0; k < count; ++k) {
    std::uint64_t address;
    if (!load_as(b, k * 8, address)) return;
    if (address == 0) continue;
    if (exit() && k >= submitted) continue;
    Access acc;
    acc.address = address;
    acc.size = lay::kIocbSize;
    acc.dir = Dir::kReadWrite;
    acc.written = exit() ? lay::kIocbSize : 0;
    acc.where = Location{b.id, static_cast<std::uint32_t>(k * 8), 0};
    iocb(emit(acc));
  }
}

void Walker::iocb(const Bytes& b) noexcept {
  std::uint16_t opcode;
  std::uint64_t buf, nbytes;
  std::uint32_t flags;
  if (!load_as(b, lay::kIocbOpcode, opcode) || !load_as(b, lay::kIocbBuf, buf) ||
      !load_as(b, lay::kIocbNbytes, nbytes) || !load_as(b, lay::kIocbFlags, flags)) {
    return;
  }
  if (entry()) {
    int_at(b, lay::kIocbFildes, 4, FdRole::kUse);
    if ((flags & lay::kIocbFlagResfd) != 0) int_at(b, lay::kIocbResfd, 4, FdRole::kUse);
  }
  switch (opcode) {
    case lay::kIocbCmdPread:
      return child(b, lay::kIocbBuf, buf, nbytes, Dir::kWrite, kAsync, 0);
    case lay::kIocbCmdPwrite:
      return child(b, lay::kIocbBuf, buf, nbytes, Dir::kRead, kAsync, 0);
    case lay::kIocbCmdPreadv:
    case lay::kIocbCmdPwritev: {
      if (nbytes > lay::kUioMaxIov) return incomplete("an iocb with more iovecs than UIO_MAXIOV");
      const Dir data = opcode == lay::kIocbCmdPreadv ? Dir::kWrite : Dir::kRead;
      if (buf == 0 || nbytes == 0 || (exit() && !writes(data))) return;
      // The iovecs are read at submission; their buffers when the request runs.
      Access acc;
      acc.address = buf;
      acc.size = nbytes * lay::kIovecSize;
      acc.dir = Dir::kRead;
      acc.shape = Shape::kIovecs;
      acc.where = Location{b.id, lay::kIocbBuf, 0};
      iovec_array(emit(acc), 0, nbytes, data, kAsync, nullptr);
      return;
    }
    case lay::kIocbCmdFsync:
    case lay::kIocbCmdFdsync:
    case lay::kIocbCmdPoll:
    case lay::kIocbCmdNoop:
      return;
    default:
      return incomplete("an iocb opcode the walker does not know");
  }
}

void Walker::ints(const Bytes& b, FdRole role, bool skip_negative) noexcept {
  for (std::uint64_t at = 0; at + 4 <= b.size; at += 4) {
    std::int32_t fd;
    if (!load_as(b, at, fd)) return;
    if (!(skip_negative && fd < 0)) emit_fd(fd, role, Location{b.id, static_cast<std::uint32_t>(at), 0});
  }
}

void Walker::int_at(const Bytes& b, std::uint64_t offset, std::size_t width, FdRole role) noexcept {
  std::int64_t fd = 0;
  if (width == 8) {
    if (!load_as(b, offset, fd)) return;
  } else {
    std::int32_t narrow;
    if (!load_as(b, offset, narrow)) return;
    fd = narrow;
  }
  emit_fd(fd, role, Location{b.id, static_cast<std::uint32_t>(offset), 0});
}

WalkResult Walker::run() noexcept {
  if (lookup(call_.number) == nullptr) {
    result_.completeness = Completeness::kIncomplete;
    result_.reason = "not an x86-64 system call";
    return result_;
  }
  const CallSpec& spec = *lookup(call_.number);
  result_.call = &spec;
  if (spec.has(kNotImplemented)) return result_;  // ENOSYS: touches nothing
  r_ = resolve(spec, call_.args);
  result_.command = r_.command;
  result_.completeness = r_.completeness;
  result_.reason = r_.reason;
  if ((r_.flags & kLaterUnbounded) != 0) result_.later_unbounded = true;
  for (unsigned i = 0; i < spec.arg_count; ++i) ensure(i);
  dirfds();
  result_fd();
  return result_;
}

}  // namespace

WalkResult walk(const Call& call, Memory& memory, Visitor& visitor, Phase phase, std::int64_t ret) noexcept {
  return Walker(call, memory, visitor, phase, ret).run();
}

}  // namespace dunk::abi
