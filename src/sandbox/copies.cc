#include "sandbox/copies.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>

#include "base/fd_set.h"
#include "base/syscall.h"
#include "core/machine.h"
#include "sandbox/user_access.h"

namespace dunk::sandbox {
namespace {

constexpr std::size_t kCommitStep = 256 * 1024;
// Memory committed for copies that stays committed between calls.
constexpr std::size_t kKeptCommitted = 1 << 20;
// Output buffers up to this size start as the program's bytes, so that a
// kernel writing less than the schema allows leaves the rest as it was.
constexpr std::size_t kPrefillLimit = 64 * 1024;

FdSet sandbox_fds;

// futex(2)'s words and futex_waitv's: the address is the wait queue's key.
constexpr std::uint64_t kFutex = 202, kFutexWaitv = 449;

bool used_in_place(std::uint64_t number, const abi::Access& a) noexcept {
  if (a.kind == abi::Kind::kAddress || a.dir == abi::Dir::kAddressOnly) return true;
  if ((a.flags & (abi::kAsync | abi::kRemote | abi::kChildWrites | abi::kFollowedLater)) != 0) return true;
  if (number == kFutex && a.where.in_register() && (a.where.arg == 0 || a.where.arg == 4)) return true;
  if (number == kFutexWaitv && !a.where.in_register()) return true;
  return false;
}

// The program's memory as the entry walk reads it: inside the region only,
// through fault-safe copies.
class ProgramMemory final : public abi::Memory {
 public:
  explicit ProgramMemory(const Region& region) noexcept : region_(region) {}
  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override {
    if (!region_.contains(address, 0) || address == region_.end()) return 0;
    size = std::min<std::uint64_t>(size, region_.end() - address);
    return copy_readable_prefix(out, address, size);
  }

 private:
  const Region& region_;
};

}  // namespace

bool is_dunk_fd(int fd) noexcept { return core::Machine::instance().dunk_fds().contains(fd) || sandbox_fds.contains(fd); }

void add_sandbox_fd(int fd) noexcept { sandbox_fds.add(fd); }
void remove_sandbox_fd(int fd) noexcept { sandbox_fds.remove(fd); }

void for_each_sandbox_fd(void (*each)(int, void*), void* cookie) noexcept {
  for (int fd = 0; fd < FdSet::kLimit; ++fd) {
    if (sandbox_fds.contains(fd)) each(fd, cookie);
  }
}

// ---- Scratch ------------------------------------------------------------

std::size_t CopiesMemory::read(std::uint64_t address, void* out, std::size_t size) noexcept {
  if (!scratch_.contains(address, size)) return 0;
  std::memcpy(out, reinterpret_cast<const void*>(address), size);
  return size;
}

Scratch::~Scratch() {
  if (base_ != nullptr) sys::call(SYS_munmap, reinterpret_cast<long>(base_), kReserve);
}

Status Scratch::init() noexcept {
  const long ret = sys::call(SYS_mmap, 0, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sys::failed(ret)) return errno_error("mmap(a thread's copy buffer) failed", ret);
  base_ = reinterpret_cast<std::byte*>(ret);
  return {};
}

std::byte* Scratch::take(std::size_t size) noexcept {
  const std::size_t start = (used_ + 15) & ~std::size_t{15};
  if (size > kReserve || start > kReserve - size) return nullptr;
  const std::size_t end = start + size;
  if (end > committed_) {
    const std::size_t want = std::min(kReserve, (end + kCommitStep - 1) & ~(kCommitStep - 1));
    const long ret = sys::call(SYS_mprotect, reinterpret_cast<long>(base_ + committed_),
                               static_cast<long>(want - committed_), PROT_READ | PROT_WRITE);
    if (ret != 0) return nullptr;
    committed_ = want;
  }
  used_ = end;
  return base_ + start;
}

void Scratch::trim() noexcept {
  if (committed_ <= kKeptCommitted) return;
  sys::call(SYS_mmap, reinterpret_cast<long>(base_ + kKeptCommitted), static_cast<long>(committed_ - kKeptCommitted),
            PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  committed_ = kKeptCommitted;
}

// ---- Entry ----------------------------------------------------------------

class CallCopies::EntryVisitor final : public abi::Visitor {
 public:
  EntryVisitor(CallCopies& copies, abi::Call& rewritten) noexcept : c_(copies), call_(rewritten) {}

  const void* access(const abi::Access& a) noexcept override {
    c_.records_.push_back(Record{a.address, a.size, nullptr, 0, 0});
    if (error_ != 0 || a.size == 0) return nullptr;
    if (!c_.region_.contains(a.address, a.size)) {
      return fail(-EFAULT, "a pointer argument outside the program's memory (the untrusted region)");
    }
    if (used_in_place(c_.number_, a)) return nullptr;
    std::byte* copy = c_.scratch_.take(a.size);
    if (copy == nullptr) return fail(-ENOMEM, "more memory than the supervisor copies for one call (64 MiB)");
    const bool kernel_reads = abi::reads(a.dir) || a.kind == abi::Kind::kString || a.kind == abi::Kind::kPath ||
                              a.kind == abi::Kind::kStrings;
    if (kernel_reads || a.size <= kPrefillLimit) {
      if (!copy_from_program(copy, a.address, a.size)) {
        if (kernel_reads) return fail(-EFAULT, nullptr);
        std::memset(copy, 0, a.size);
      }
    }
    if (abi::writes(a.dir) && !program_writable(a.address, a.size)) return fail(-EFAULT, nullptr);
    // What the walk measured is what the kernel reads, even if the program
    // changed the bytes after the walk looked.
    if (a.terminator == abi::Terminator::kNul) copy[a.size - 1] = std::byte{0};
    if (a.terminator == abi::Terminator::kNullPointer && a.size >= 8) std::memset(copy + a.size - 8, 0, 8);
    if (!point_at(a, copy)) return nullptr;
    c_.records_.back().copy = copy;
    return copy;
  }

  void fd(const abi::FdUse& use) noexcept override {
    if (error_ != 0) return;
    switch (use.role) {
      case abi::FdRole::kNew:
      case abi::FdRole::kRemote:
      case abi::FdRole::kRangeFirst:  // close_range: split around dunk's by its handler
      case abi::FdRole::kRangeLast:
        return;
      default:
        if (use.fd >= 0 && is_dunk_fd(use.fd)) fail(-EBADF, "a descriptor of dunk's own (KVM, the sandbox's log)");
    }
  }

  long error_ = 0;
  const char* why_ = nullptr;

 private:
  const void* fail(long error, const char* why) noexcept {
    if (error_ == 0) {
      error_ = error;
      why_ = why;
    }
    return nullptr;
  }

  // The kernel is pointed at the copy: in its register, or in the parent's
  // copy (which the walker then reads the next pointers from).
  bool point_at(const abi::Access& a, std::byte* copy) noexcept {
    const auto value = reinterpret_cast<std::uint64_t>(copy);
    if (a.where.in_register()) {
      call_.args[a.where.arg] = value;
      return true;
    }
    if (a.where.parent >= c_.records_.size()) return fail(-EFAULT, "a nested pointer without its parent"), false;
    Record& parent = c_.records_[a.where.parent];
    if (parent.copy == nullptr || a.where.offset + 8 > parent.size) {
      // A structure used in place holds a pointer to memory that must be
      // copied: nothing the schema describes today.
      return fail(-ENOSYS, "a pointer inside memory the kernel uses in place"), false;
    }
    std::memcpy(parent.copy + a.where.offset, &value, 8);
    c_.rewrites_.push_back(Rewrite{a.where.parent, a.where.offset, a.address});
    return true;
  }

  CallCopies& c_;
  abi::Call& call_;
};

CallCopies::Entry CallCopies::enter(const abi::Call& call, abi::Call& rewritten) noexcept {
  records_.clear();
  rewrites_.clear();
  scratch_.reset();
  number_ = static_cast<std::uint32_t>(call.number);
  rewritten = call;
  ProgramMemory memory(region_);
  EntryVisitor visitor(*this, rewritten);
  Entry entry;
  entry.walk = abi::walk(call, memory, visitor, abi::Phase::kEntry);
  entry.error = visitor.error_;
  entry.why = visitor.why_;
  return entry;
}

// ---- Exit -----------------------------------------------------------------

class CallCopies::ExitVisitor final : public abi::Visitor {
 public:
  explicit ExitVisitor(CallCopies& copies) noexcept : c_(copies) {}

  const void* access(const abi::Access& a) noexcept override {
    if (!c_.scratch_.contains(a.address, a.size)) return nullptr;  // used in place
    if (a.written == 0) return reinterpret_cast<const void*>(a.address);
    const Record* r = record_of(a.address);
    if (r == nullptr) return reinterpret_cast<const void*>(a.address);
    const std::uint64_t offset = a.address - reinterpret_cast<std::uint64_t>(r->copy);
    const std::uint64_t length = std::min<std::uint64_t>(a.written, r->size - offset);
    if (!copy_back(*r, offset, length)) faulted_ = true;
    return reinterpret_cast<const void*>(a.address);
  }
  void fd(const abi::FdUse&) noexcept override {}

  bool faulted_ = false;

 private:
  const Record* record_of(std::uint64_t address) const noexcept {
    for (const Record& r : c_.records_) {
      const auto copy = reinterpret_cast<std::uint64_t>(r.copy);
      if (r.copy != nullptr && address >= copy && address < copy + r.size) return &r;
    }
    return nullptr;
  }

  // The kernel's bytes, with the pointers the entry put into this copy
  // replaced by the program's own again; the copy itself stays as the
  // kernel left it (the walk reads the next pointers from it).
  bool copy_back(const Record& r, std::uint64_t offset, std::uint64_t length) noexcept {
    const auto index = static_cast<std::uint32_t>(&r - c_.records_.data());
    bool patched = false;
    for (const Rewrite& w : c_.rewrites_) patched |= w.record == index && w.offset + 8 > offset && w.offset < offset + length;
    if (!patched) return copy_to_program(r.address + offset, r.copy + offset, length);
    std::byte* staging = c_.scratch_.take(length);
    if (staging == nullptr) return false;
    std::memcpy(staging, r.copy + offset, length);
    for (const Rewrite& w : c_.rewrites_) {
      if (w.record != index) continue;
      for (unsigned byte = 0; byte < 8; ++byte) {
        const std::uint64_t at = w.offset + byte;
        if (at >= offset && at < offset + length) staging[at - offset] = static_cast<std::byte>(w.original >> (8 * byte));
      }
    }
    return copy_to_program(r.address + offset, staging, length);
  }

  CallCopies& c_;
};

long CallCopies::leave(const abi::Call& rewritten, long ret) noexcept {
  CopiesMemory memory(scratch_);
  ExitVisitor visitor(*this);
  (void)abi::walk(rewritten, memory, visitor, abi::Phase::kExit, ret);
  if (visitor.faulted_ && !abi::failed(ret)) return -EFAULT;
  return ret;
}

std::size_t CallCopies::read_as_copied(std::uint64_t address, void* out, std::size_t size) const noexcept {
  for (std::uint32_t index = 0; index < records_.size(); ++index) {
    const Record& r = records_[index];
    if (r.copy == nullptr || address < r.address || address - r.address >= r.size) continue;
    const std::uint64_t offset = address - r.address;
    const std::size_t length = std::min<std::uint64_t>(size, r.size - offset);
    auto* bytes = static_cast<std::byte*>(out);
    std::memcpy(bytes, r.copy + offset, length);
    for (const Rewrite& w : rewrites_) {
      if (w.record != index) continue;
      for (unsigned byte = 0; byte < 8; ++byte) {
        const std::uint64_t at = w.offset + byte;
        if (at >= offset && at < offset + length) bytes[at - offset] = static_cast<std::byte>(w.original >> (8 * byte));
      }
    }
    return length;
  }
  return 0;
}

}  // namespace dunk::sandbox
