// An sthread's system call, checked in ring 0 before it reaches the host:
// the call against the context's call set, every descriptor against its
// grants, and every range of memory the kernel will read or write against
// the sthread's own view (abi::walk lists them all, nested ones included).
//
// The host kernel reads and writes the process's memory, not the view: a
// range the view maps elsewhere (a global the sthread has its own copy of)
// is copied to the worker's bounce buffer and the kernel is pointed there;
// structures holding pointers and strings are always copied, so that what
// was checked is what the kernel reads. Results are copied back into the
// view.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "abi/syscalls.h"
#include "abi/walk.h"
#include "dunk/ring3.h"
#include "sthread/internal.h"

namespace dunk::sthread {
namespace {

constexpr std::uint64_t kUserLimit = std::uint64_t{1} << 47;

// The sthread's memory as the walker reads it.
class ViewMemory final : public abi::Memory {
 public:
  explicit ViewMemory(Compartment& c) noexcept : c_(c) {}
  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override {
    std::size_t done = 0;
    while (done < size) {
      const std::uint64_t a = address + done;
      const std::size_t n = std::min<std::size_t>(size - done, kPage - (a & (kPage - 1)));
      if (!read_view(c_, a, static_cast<char*>(out) + done, n)) break;
      done += n;
    }
    return done;
  }

 private:
  Compartment& c_;
};

// Which rights a descriptor in argument `arg` of call `nr` needs:
// PROT_READ for calls that read from it, PROT_WRITE for those that write,
// 0 (any grant) otherwise.
int rights_needed(long nr, unsigned arg) noexcept {
  switch (nr) {
    case SYS_read: case SYS_pread64: case SYS_readv: case SYS_preadv: case SYS_preadv2:
    case SYS_recvfrom: case SYS_recvmsg: case SYS_recvmmsg: case SYS_getdents64:
      return PROT_READ;
    case SYS_write: case SYS_pwrite64: case SYS_writev: case SYS_pwritev: case SYS_pwritev2:
    case SYS_sendto: case SYS_sendmsg: case SYS_sendmmsg:
      return PROT_WRITE;
    case SYS_sendfile:  // out_fd, in_fd
      return arg == 0 ? PROT_WRITE : PROT_READ;
    case SYS_splice: case SYS_copy_file_range:  // fd_in, _, fd_out
      return arg == 0 ? PROT_READ : PROT_WRITE;
    case SYS_tee:
      return arg == 0 ? PROT_READ : PROT_WRITE;
    default:
      return 0;
  }
}

// Calls no context may grant: they change what the supervisor relies on
// (mappings, signal handlers, the thread's TLS and identity), create
// processes or threads, or let the kernel touch memory after the check.
bool never_allowed(const abi::CallSpec& spec) noexcept {
  constexpr std::uint16_t kFlags = abi::kNoReturn | abi::kChangesMappings | abi::kNewProcess | abi::kAsyncWriter |
                                   abi::kNeverComplete | abi::kLaterUnbounded;
  if ((spec.flags & kFlags) != 0) return true;
  switch (spec.number) {
    case SYS_rt_sigaction: case SYS_rt_sigprocmask: case SYS_sigaltstack: case SYS_arch_prctl:
    case SYS_set_tid_address: case SYS_set_robust_list: case SYS_rseq: case SYS_ptrace: case SYS_seccomp:
    case SYS_prctl: case SYS_modify_ldt: case SYS_unshare: case SYS_setns: case SYS_personality:
    case SYS_userfaultfd: case SYS_process_vm_readv: case SYS_process_vm_writev: case SYS_io_uring_setup:
      return true;
    default:
      return false;
  }
}

struct Copy {
  std::uint32_t id;
  std::uint64_t original;
  char* copy;
  std::uint64_t size;
  abi::Dir dir;
};

struct Rewrite {
  char* slot;
  std::uint64_t original;
};

class Checker final : public abi::Visitor {
 public:
  Checker(Run& run, const TrapFrame& f) noexcept
      : run_(run), c_(*run.current), memory_(*run.current), nr_(static_cast<long>(f.rax)),
        args_{f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9} {}

  const void* access(const abi::Access& a) noexcept override {
    if (refused_) return nullptr;
    if (a.remote() || a.async() || (a.flags & abi::kFollowedLater) != 0) {
      return refuse(EPERM, a.address, "the kernel would use the memory later or in another process");
    }
    if (a.size == 0) return nullptr;
    if (a.address + a.size < a.address || a.address + a.size > kUserLimit) {
      return refuse(EFAULT, a.address, "a range outside user memory");
    }
    const bool write = abi::writes(a.dir);
    bool identity = true;
    for (std::uint64_t p = a.address & ~(kPage - 1); p < a.address + a.size; p += kPage) {
      auto info = c_.view->lookup(reinterpret_cast<void*>(p));
      if (!info || (info->access & (kRead | kUser)) != (kRead | kUser)) {
        return refuse(EFAULT, std::max(p, a.address), "memory the sthread cannot read");
      }
      if (write && (info->access & kWrite) == 0) {
        if (!copy_on_write(c_, p)) return refuse(EFAULT, std::max(p, a.address), "memory the sthread cannot write");
        info = c_.view->lookup(reinterpret_cast<void*>(p));
        if (!info) return refuse(EFAULT, p, "memory the sthread cannot write");
      }
      const std::uint64_t physical_page = info->physical & ~(kPage - 1);
      identity &= host_address(physical_page) == reinterpret_cast<void*>(p);
    }
    const bool address_only = a.kind == abi::Kind::kAddress || a.dir == abi::Dir::kAddressOnly;
    if (address_only) {
      // The kernel uses the address itself (a futex key, madvise): it must
      // mean the same memory on the host.
      if (!identity) return refuse(EFAULT, a.address, "an address that is the supervisor's on the host");
      return nullptr;
    }
    const bool copy = !identity || a.shape != abi::Shape::kBytes || a.kind != abi::Kind::kMemory;
    if (!copy) {
      // The kernel writes the sthread's memory itself: stack pages it
      // writes must be cleared at the reset (dirty bits do not see it).
      if (write) note_kernel_write(c_, a.address, a.size);
      return nullptr;
    }
    if (ncopies_ == kMaxCopies) return refuse(E2BIG, a.address, "too many ranges to copy");
    const std::uint64_t need = (a.size + 15) & ~std::uint64_t{15};
    if (need > kBounceSize - used_) return refuse(ENOMEM, a.address, "a range of copied memory too large");
    char* dst = run_.bounce + used_;
    used_ += need;
    if (memory_.read(a.address, dst, a.size) != a.size) return refuse(EFAULT, a.address, "memory the sthread cannot read");
    if (a.terminator == abi::Terminator::kNul) dst[a.size - 1] = 0;
    if (a.terminator == abi::Terminator::kNullPointer && a.size >= 8) std::memset(dst + a.size - 8, 0, 8);
    if (a.where.in_register()) {
      if (a.where.arg < abi::kMaxArgs) args_[a.where.arg] = reinterpret_cast<std::uint64_t>(dst);
    } else {
      const Copy* parent = find(a.where.parent);
      if (parent == nullptr || a.where.offset + 8 > parent->size) {
        return refuse(EFAULT, a.address, "a nested pointer the supervisor cannot redirect");
      }
      char* slot = parent->copy + a.where.offset;
      std::uint64_t original;
      std::memcpy(&original, slot, 8);
      if (nrewrites_ == kMaxCopies) return refuse(E2BIG, a.address, "too many ranges to copy");
      rewrites_[nrewrites_++] = Rewrite{slot, original};
      const auto value = reinterpret_cast<std::uint64_t>(dst);
      std::memcpy(slot, &value, 8);
    }
    copies_[ncopies_++] = Copy{a.id, a.address, dst, a.size, a.dir};
    return dst;
  }

  void fd(const abi::FdUse& use) noexcept override {
    if (refused_) return;
    switch (use.role) {
      case abi::FdRole::kUse: {
        const int have = c_.policy.fd_rights(use.fd);
        const int need = use.where.in_register() ? rights_needed(nr_, use.where.arg) : 0;
        if (have < 0 || (have & need) != need) refuse(EBADF, 0, "a descriptor the context does not grant", use.fd);
        return;
      }
      case abi::FdRole::kDirFd:
      case abi::FdRole::kTarget:
        if (use.fd != AT_FDCWD && c_.policy.fd_rights(use.fd) < 0) {
          refuse(EBADF, 0, "a descriptor the context does not grant", use.fd);
        }
        return;
      case abi::FdRole::kNew:
        return;
      default:
        refuse(EPERM, 0, "descriptors the context cannot name", use.fd);
        return;
    }
  }

  // After the call: the copies the kernel may have written go back into the
  // view, with the sthread's own pointers back in the structures (a copy
  // holds what the view held where the kernel wrote nothing, so copying
  // all of it back is exact; some calls write on failure too).
  void finish(bool called) noexcept {
    for (unsigned i = nrewrites_; i-- > 0;) std::memcpy(rewrites_[i].slot, &rewrites_[i].original, 8);
    if (!called) return;
    for (unsigned i = 0; i < ncopies_; ++i) {
      if (abi::writes(copies_[i].dir)) (void)write_to_view(c_, copies_[i].original, copies_[i].copy, copies_[i].size);
    }
  }

  bool refused() const noexcept { return refused_; }
  const Violation& violation() const noexcept { return violation_; }
  const std::uint64_t* args() const noexcept { return args_; }
  abi::Memory& memory() noexcept { return memory_; }

 private:
  static constexpr unsigned kMaxCopies = 64;

  const void* refuse(int err, std::uint64_t address, const char* why, int fd = -1) noexcept {
    if (!refused_) violation_ = Violation{nr_, address, fd, err, why};
    refused_ = true;
    return nullptr;
  }
  const Copy* find(std::uint32_t id) const noexcept {
    for (unsigned i = 0; i < ncopies_; ++i) {
      if (copies_[i].id == id) return &copies_[i];
    }
    return nullptr;
  }

  Run& run_;
  Compartment& c_;
  ViewMemory memory_;
  long nr_;
  std::uint64_t args_[abi::kMaxArgs];
  Copy copies_[kMaxCopies];
  unsigned ncopies_ = 0;
  Rewrite rewrites_[kMaxCopies];
  unsigned nrewrites_ = 0;
  std::uint64_t used_ = 0;
  bool refused_ = false;
  Violation violation_;
};

// Descriptors the call created inside memory (pipe's pair, SCM_RIGHTS).
class NewFds final : public abi::Visitor {
 public:
  explicit NewFds(Policy& policy) noexcept : policy_(policy) {}
  const void* access(const abi::Access&) noexcept override { return nullptr; }
  void fd(const abi::FdUse& use) noexcept override {
    if (use.role == abi::FdRole::kNew && use.fd >= 0) policy_.add_fd(use.fd, PROT_READ | PROT_WRITE);
  }

 private:
  Policy& policy_;
};

void refuse_call(Run& run, TrapFrame& f, const Violation& v) noexcept {
  note_violation(run, v);
  f.rax = static_cast<std::uint64_t>(-static_cast<long>(v.err));
}

}  // namespace

void note_violation(Run& run, const Violation& v) noexcept {
  sthread_report& r = run.sthread->report;
  ++r.violations;
  r.last_call = v.call;
  r.last_address = v.address;
  r.last_fd = v.fd;
  r.last_errno = v.err;
  supervisor().counters.refused.fetch_add(1, std::memory_order_relaxed);
  const char* name = v.call >= 0 ? abi::name_of(static_cast<std::uint64_t>(v.call)) : nullptr;
  char line[256];
  std::snprintf(line, sizeof line, "%s%s refused (%s, address 0x%lx, fd %d): %s", run.depth > 0 ? "callgate: " : "",
                name != nullptr ? name : "call", v.why != nullptr ? v.why : "", static_cast<unsigned long>(v.address),
                v.fd, std::strerror(v.err));
  report_line(*run.sthread, line);
}

void serve_call(Run& run, TrapFrame& f) noexcept {
  Compartment& c = *run.current;
  const abi::CallSpec* spec = abi::lookup(f.rax);
  const long nr = static_cast<long>(f.rax);
  if (spec == nullptr) return refuse_call(run, f, Violation{nr, 0, -1, ENOSYS, "no such system call"});
  const unsigned number = spec->number;
  const bool granted = c.policy.allows_call(number) || number == SYS_read || number == SYS_write ||
                       (number == SYS_openat && c.policy.allows_call(SYS_open));
  if (!granted) return refuse_call(run, f, Violation{nr, 0, -1, EPERM, "not in the context's call set"});
  if (never_allowed(*spec)) return refuse_call(run, f, Violation{nr, 0, -1, EPERM, "not allowed in an sthread"});
  Checker checker(run, f);
  abi::Call call{f.rax, {f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9}};
  const abi::WalkResult walked = abi::walk(call, checker.memory(), checker, abi::Phase::kEntry);
  if (checker.refused()) {
    checker.finish(false);
    return refuse_call(run, f, checker.violation());
  }
  if (walked.completeness != abi::Completeness::kComplete || walked.unreadable) {
    checker.finish(false);
    return refuse_call(run, f, Violation{nr, 0, -1, walked.unreadable ? EFAULT : EPERM,
                                         walked.reason != nullptr ? walked.reason : "arguments the supervisor cannot check"});
  }
  TrapFrame g = f;
  const std::uint64_t* a = checker.args();
  g.rdi = a[0];
  g.rsi = a[1];
  g.rdx = a[2];
  g.r10 = a[3];
  g.r8 = a[4];
  g.r9 = a[5];
  const long ret = forward_syscall(g);
  checker.finish(true);
  if (!abi::failed(ret)) {
    if (number == SYS_close) c.policy.remove_fd(static_cast<int>(f.rdi));
    if (spec->has(abi::kReturnsFd)) {
      // dup's copy has the rights of the original; a new file every right.
      const int from = (number == SYS_dup || number == SYS_dup2 || number == SYS_dup3 ||
                        (number == SYS_fcntl && (f.rsi == F_DUPFD || f.rsi == F_DUPFD_CLOEXEC)))
                           ? c.policy.fd_rights(static_cast<int>(f.rdi))
                           : (PROT_READ | PROT_WRITE);
      c.policy.add_fd(static_cast<int>(ret), from < 0 ? 0 : from);
    }
    NewFds created(c.policy);
    ViewMemory memory(c);
    (void)abi::walk(call, memory, created, abi::Phase::kExit, ret);
  }
  supervisor().counters.checked.fetch_add(1, std::memory_order_relaxed);
  f.rax = static_cast<std::uint64_t>(ret);
}

}  // namespace dunk::sthread
