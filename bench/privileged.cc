#include "bench/privileged.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "bench/probes.h"
#include "dunk/dirty.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "dunk/ring3.h"
#include "dunk/traps.h"

// Ring-3 code for the interception benchmark: RBX system calls (RAX =
// getpid each time), then the end of the run. Alone in its pages.
asm(R"(
  .pushsection dunk_bench_ring3, "ax", @progbits
  .p2align 12
  .globl dunk_bench_ring3_getpid_loop
dunk_bench_ring3_getpid_loop:
  testq %rbx, %rbx
  jz 2f
1:
  movl $39, %eax
  syscall
  decq %rbx
  jnz 1b
2:
  movabsq $0x64756e6b02, %rax
  syscall
  ud2
  .p2align 12
  .popsection
)");
extern "C" char dunk_bench_ring3_getpid_loop[];

namespace dunk::bench {

Result measure(const std::string& name, const std::string& mode, std::uint64_t n, bool vm, const Probes& probes,
               const std::function<void(std::uint64_t)>& loop) {
  Result r;
  r.name = name, r.mode = mode, r.iterations = n;
  auto run = [&](std::uint64_t k, std::uint64_t& ns) {
    Counters before = probes.read();
    if (vm && !enter()) return Counters{};
    std::uint64_t t0 = now_ns();
    loop(k);
    ns = now_ns() - t0;
    if (vm) leave();
    Counters after = probes.read();
    return Counters{after.userspace_exits - before.userspace_exits, after.kvm_exits - before.kvm_exits,
                    after.host_syscalls - before.host_syscalls};
  };
  std::uint64_t ns = 0, empty_ns = 0;
  Counters full = run(n, ns);
  Counters empty = run(0, empty_ns);
  auto per_op = [&](std::uint64_t a, std::uint64_t b) {
    return (static_cast<double>(a) - static_cast<double>(b)) / static_cast<double>(n);
  };
  r.ns_per_op = static_cast<double>(ns) / static_cast<double>(n);
  r.userspace_exits_per_op = vm ? per_op(full.userspace_exits, empty.userspace_exits) : 0;
  if (!vm) {
    r.kvm_exits_per_op = 0;
  } else if (probes.kvm_stats.valid()) {
    r.kvm_exits_per_op = per_op(full.kvm_exits, empty.kvm_exits);
  } else {
    r.note = probes.kvm_note;
  }
  if (probes.syscalls.valid()) {
    r.host_syscalls_per_op = per_op(full.host_syscalls, empty.host_syscalls);
  } else {
    r.note += (r.note.empty() ? "" : "; ") + probes.syscalls_note;
  }
  return r;
}

namespace {

constexpr std::size_t kPage = 4096;

char* fresh_pages(std::size_t n) {
  void* p = mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}

// A result for a way that could not run here, with the reason.
Result unavailable(const std::string& name, const std::string& mode, const std::string& why) {
  Result r;
  r.name = name, r.mode = mode, r.ns_per_op = -1, r.note = why;
  return r;
}

// --- page fault, page walk --------------------------------------------------

// First touch of fresh anonymous pages: the kernel (natively) or KVM (in VM
// mode, behind a guest mapping that already exists) supplies the page.
void page_fault_loop(std::uint64_t n) {
  char* p = fresh_pages(n);
  for (std::uint64_t i = 0; i < n; ++i) static_cast<volatile char*>(p)[i * kPage] = 1;
  munmap(p, n * kPage);
}

// Reads one byte of each page of a region larger than any TLB's reach, so
// that (nearly) every access walks the page tables: natively the host's
// 4-level walk, in VM mode the two-dimensional guest × nested walk.
constexpr std::size_t kWalkPages = 16384;  // 64 MiB
char* walk_region = nullptr;
void page_walk_loop(std::uint64_t n) {
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) sum += static_cast<volatile char*>(walk_region)[(i * 97 % kWalkPages) * kPage];
  asm volatile("" : : "r"(sum));
}

// --- trap delivery, appel1, appel2 --------------------------------------------
//
// The protected page is read by `movb (%rdi), %al` (2 bytes), which a trap
// handler may skip. Natively the handler is a SIGSEGV handler; in VM mode a
// page-fault handler in guest ring 0.

char* trap_page = nullptr;
char* appel_pages = nullptr;
std::size_t appel_count = 0;

void read_byte(const char* p) {
  asm volatile("movb (%0), %%al" : : "r"(p) : "rax", "memory");
}

bool in_range(const void* a, const char* start, std::size_t size) {
  auto* c = static_cast<const char*>(a);
  return c >= start && c < start + size;
}

void skip_on_sigsegv(int, siginfo_t*, void* uc) {
  static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RIP] += 2;
}

TrapAction skip_on_fault(TrapFrame& f) noexcept {
  if (!in_range(reinterpret_cast<void*>(f.cr2), trap_page, kPage)) return TrapAction::kDefault;
  f.rip += 2;
  return TrapAction::kResume;
}

void unprotect_on_sigsegv(int, siginfo_t* info, void*) {
  auto page = reinterpret_cast<std::uintptr_t>(info->si_addr) & ~(kPage - 1);
  mprotect(reinterpret_cast<void*>(page), kPage, PROT_READ | PROT_WRITE);
}

TrapAction unprotect_on_fault(TrapFrame& f) noexcept {
  if (!in_range(reinterpret_cast<void*>(f.cr2), appel_pages, appel_count * kPage)) return TrapAction::kDefault;
  void* page = reinterpret_cast<void*>(f.cr2 & ~(kPage - 1));
  (void)AddressSpace::current().protect(page, kPage, kRead | kWrite);
  flush_tlb(page);
  return TrapAction::kResume;
}

void set_sigsegv(void (*handler)(int, siginfo_t*, void*)) {
  struct sigaction sa {};
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, nullptr);
}

void trap_native(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) read_byte(trap_page);
}

// prot1 + trap + unprot (Appel & Li): protect one page, write it, the
// handler unprotects it.
void appel1_native(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) {
    mprotect(appel_pages, kPage, PROT_READ);
    static_cast<volatile char*>(appel_pages)[0] = 1;
  }
}
void appel1_vm(std::uint64_t n) {
  AddressSpace& as = AddressSpace::current();
  for (std::uint64_t i = 0; i < n; ++i) {
    (void)as.protect(appel_pages, kPage, kRead);
    flush_tlb(appel_pages);
    static_cast<volatile char*>(appel_pages)[0] = 1;
  }
}

// protN + trap + unprot: protect appel_count pages at once, then each
// write traps and unprotects its page. One operation is one page.
void appel2_native(std::uint64_t n) {
  for (std::uint64_t done = 0; done < n; done += appel_count) {
    mprotect(appel_pages, appel_count * kPage, PROT_READ);
    for (std::size_t i = 0; i < appel_count; ++i) static_cast<volatile char*>(appel_pages)[i * kPage] = 1;
  }
}
void appel2_vm(std::uint64_t n) {
  AddressSpace& as = AddressSpace::current();
  for (std::uint64_t done = 0; done < n; done += appel_count) {
    (void)as.protect(appel_pages, appel_count * kPage, kRead);
    flush_tlb();
    for (std::size_t i = 0; i < appel_count; ++i) static_cast<volatile char*>(appel_pages)[i * kPage] = 1;
  }
}

// --- system-call interception -------------------------------------------------
//
// Sandboxed code calls getpid n times; the supervisor answers each call
// itself (emulates it: 1234) without running it. Natively the sandbox is a
// child process (ptrace, seccomp) or the same thread (signals).

constexpr long kEmulatedPid = 1234;

Ring3Action emulate_getpid(TrapFrame& f, void*) noexcept {
  f.rax = kEmulatedPid;
  return Ring3Action::kResume;
}

char* ring3_stack = nullptr;
void intercept_dunk(std::uint64_t n) {
  TrapFrame start{};
  start.rip = reinterpret_cast<std::uint64_t>(dunk_bench_ring3_getpid_loop);
  start.rsp = reinterpret_cast<std::uint64_t>(ring3_stack + kPage - 64);
  start.rbx = n;
  Ring3Options options{.on_syscall = emulate_getpid};
  (void)run_in_ring3(start, options);
}

// Runs `child` in a forked process that reports its loop's time through a
// pipe; the time per call is the child's own measurement (the set-up, such
// as installing a filter, is not in it).
double time_in_child(std::uint64_t n, bool (*child)(std::uint64_t, std::uint64_t&)) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::uint64_t ns = 0;
    bool ok = child(n, ns);
    std::uint64_t out = ok ? ns : ~std::uint64_t{0};
    (void)!write(fds[1], &out, sizeof out);
    _exit(0);
  }
  close(fds[1]);
  std::uint64_t ns = ~std::uint64_t{0};
  if (read(fds[0], &ns, sizeof ns) != sizeof ns) ns = ~std::uint64_t{0};
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  return ns == ~std::uint64_t{0} ? -1 : static_cast<double>(ns) / static_cast<double>(n);
}

void getpid_checked(std::uint64_t n, bool& ok) {
  for (std::uint64_t i = 0; i < n; ++i) ok &= syscall(SYS_getpid) == kEmulatedPid;
}

// seccomp: every getpid of this thread trapped as `action`.
bool install_getpid_filter(std::uint32_t action, int* listener) {
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, action),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  unsigned flags = listener != nullptr ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
  long ret = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (ret < 0) return false;
  if (listener != nullptr) *listener = static_cast<int>(ret);
  return true;
}

void emulate_on_sigsys(int, siginfo_t*, void* uc) {
  static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RAX] = kEmulatedPid;
}

bool seccomp_trap_child(std::uint64_t n, std::uint64_t& ns) {
  struct sigaction sa {};
  sa.sa_sigaction = emulate_on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSYS, &sa, nullptr);
  if (!install_getpid_filter(SECCOMP_RET_TRAP, nullptr)) return false;
  bool ok = true;
  std::uint64_t t0 = now_ns();
  getpid_checked(n, ok);
  ns = now_ns() - t0;
  return ok;
}

std::atomic<int> notify_fd{-1};
void* answer_notifications(void*) {
  seccomp_notif req{};
  seccomp_notif_resp resp{};
  for (;;) {
    std::memset(&req, 0, sizeof req);
    if (ioctl(notify_fd.load(), SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
      if (errno == EINTR) continue;
      return nullptr;
    }
    resp = seccomp_notif_resp{};
    resp.id = req.id;
    resp.val = kEmulatedPid;
    ioctl(notify_fd.load(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
  }
}

bool seccomp_notify_child(std::uint64_t n, std::uint64_t& ns) {
  // The supervisor thread exists before the filter, so it is not filtered.
  pthread_t supervisor;
  int listener = -1;
  if (pthread_create(&supervisor, nullptr, [](void*) -> void* {
        while (notify_fd.load() < 0) usleep(100);
        return answer_notifications(nullptr);
      }, nullptr) != 0) {
    return false;
  }
  if (!install_getpid_filter(SECCOMP_RET_USER_NOTIF, &listener)) return false;
  notify_fd.store(listener);
  bool ok = true;
  std::uint64_t t0 = now_ns();
  getpid_checked(n, ok);
  ns = now_ns() - t0;
  return ok;
}

// Syscall User Dispatch (prctl(2) PR_SET_SYSCALL_USER_DISPATCH, Linux 5.11):
// with the selector byte at BLOCK every system call raises SIGSYS; the
// handler emulates it and sets ALLOW so that its own rt_sigreturn passes.
volatile char sud_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
void sud_on_sigsys(int, siginfo_t*, void* uc) {
  static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RAX] = kEmulatedPid;
  sud_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
}

bool sud_child(std::uint64_t n, std::uint64_t& ns) {
  struct sigaction sa {};
  sa.sa_sigaction = sud_on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSYS, &sa, nullptr);
  if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &sud_selector) != 0) return false;
  bool ok = true;
  std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) {
    sud_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
    ok &= syscall(SYS_getpid) == kEmulatedPid;
  }
  ns = now_ns() - t0;
  return ok;
}

// ptrace: the tracer stops the child at each call's entry, turns the call
// into one that does nothing (-1), and at its exit writes the answer.
double intercept_ptrace(std::uint64_t n) {
  pid_t pid = fork();
  if (pid == 0) {
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    raise(SIGSTOP);
    bool ok = true;
    getpid_checked(n, ok);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ptrace(PTRACE_SETOPTIONS, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL));
  std::uint64_t t0 = now_ns(), calls = 0;
  bool entry = true;
  for (;;) {
    if (ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr) != 0) break;
    if (waitpid(pid, &status, 0) != pid || WIFEXITED(status) || WIFSIGNALED(status)) break;
    if (!WIFSTOPPED(status) || WSTOPSIG(status) != (SIGTRAP | 0x80)) continue;
    user_regs_struct regs{};
    ptrace(PTRACE_GETREGS, pid, nullptr, &regs);
    if (entry && regs.orig_rax == SYS_getpid) {
      regs.orig_rax = static_cast<unsigned long long>(-1);  // skip it
      ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
      entry = false;
    } else if (!entry) {
      regs.rax = kEmulatedPid;
      ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
      entry = true;
      ++calls;
    }
  }
  std::uint64_t ns = now_ns() - t0;
  if (!WIFEXITED(status)) waitpid(pid, &status, 0);
  if (calls != n || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return static_cast<double>(ns) / static_cast<double>(n);
}

Result timed_only(const std::string& name, const std::string& mode, std::uint64_t n, double ns_per_op,
                  const char* why_missing) {
  if (ns_per_op < 0) return unavailable(name, mode, why_missing);
  Result r;
  r.name = name, r.mode = mode, r.iterations = n, r.ns_per_op = ns_per_op;
  r.userspace_exits_per_op = 0;
  r.kvm_exits_per_op = 0;
  r.note = "timed in a child process; counts not taken";
  return r;
}

// --- dirty-page tracking --------------------------------------------------------
//
// One operation: a round of a checkpointer or a collector over kDirtyPages
// pages — start tracking, the program writes kDirtyWrites of them, find out
// which.

constexpr std::size_t kDirtyPages = 1024;
constexpr std::size_t kDirtyWrites = 64;
char* dirty_region = nullptr;
std::size_t dirty_found = 0;

void write_some(std::uint64_t round) {
  for (std::size_t i = 0; i < kDirtyWrites; ++i) {
    std::size_t page = (round * 131 + i * 16) % kDirtyPages;
    static_cast<volatile char*>(dirty_region)[page * kPage] = static_cast<char>(i);
  }
}

void dirty_dunk(std::uint64_t n) {
  auto tracker = DirtyTracker::create(dirty_region, kDirtyPages * kPage);
  if (!tracker) return;
  void* pages[kDirtyPages];
  for (std::uint64_t r = 0; r < n; ++r) {
    tracker->reset();
    write_some(r);
    dirty_found += tracker->collect(pages, kDirtyPages, false);
  }
}

// mprotect + SIGSEGV: write-protect everything, the first write to a page
// traps, the handler records and unprotects it.
volatile std::size_t recorded = 0;  // written by the signal handler
void record_on_sigsegv(int, siginfo_t* info, void*) {
  recorded = recorded + 1;
  auto page = reinterpret_cast<std::uintptr_t>(info->si_addr) & ~(kPage - 1);
  mprotect(reinterpret_cast<void*>(page), kPage, PROT_READ | PROT_WRITE);
}
void dirty_mprotect(std::uint64_t n) {
  for (std::uint64_t r = 0; r < n; ++r) {
    mprotect(dirty_region, kDirtyPages * kPage, PROT_READ);
    recorded = 0;
    write_some(r);
    dirty_found += recorded;
  }
}

// Soft-dirty bits: "4" to /proc/self/clear_refs clears them, bit 55 of each
// /proc/self/pagemap entry reads them (Linux Documentation/admin-guide/mm/
// soft-dirty.rst, pagemap.rst).
int clear_refs_fd = -1, pagemap_fd = -1;
void dirty_soft(std::uint64_t n) {
  static std::uint64_t entries[kDirtyPages];
  const off_t offset = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(dirty_region) / kPage * 8);
  for (std::uint64_t r = 0; r < n; ++r) {
    (void)!pwrite(clear_refs_fd, "4", 1, 0);
    write_some(r);
    if (pread(pagemap_fd, entries, sizeof entries, offset) != static_cast<ssize_t>(sizeof entries)) return;
    for (std::uint64_t e : entries) dirty_found += (e >> 55) & 1;
  }
}

// userfaultfd write-protection (Linux 5.7 for anonymous memory): protect
// the region, a handler thread reads each write fault, records it and
// unprotects the page, which wakes the writer.
int uffd = -1;
pthread_t uffd_thread;
std::atomic<std::size_t> uffd_recorded{0};
int uffd_stop = -1;  // an eventfd: readable when the handler must end
void* uffd_handler(void*) {
  uffd_msg msg{};
  // A read blocked on the userfaultfd does not end when the descriptor is
  // closed: wait for either (the userfaultfd is non-blocking: poll reports
  // POLLERR for a blocking one, userfaultfd(2)).
  pollfd fds[2] = {{uffd, POLLIN, 0}, {uffd_stop, POLLIN, 0}};
  while (poll(fds, 2, -1) > 0 && (fds[1].revents & POLLIN) == 0) {
    if (read(uffd, &msg, sizeof msg) != static_cast<ssize_t>(sizeof msg)) continue;  // EAGAIN: woken meanwhile
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    uffd_recorded.fetch_add(1, std::memory_order_relaxed);
    uffdio_writeprotect wp{};
    wp.range.start = msg.arg.pagefault.address & ~(kPage - 1);
    wp.range.len = kPage;
    wp.mode = 0;  // unprotect and wake
    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
  }
  return nullptr;
}
void dirty_uffd(std::uint64_t n) {
  for (std::uint64_t r = 0; r < n; ++r) {
    uffdio_writeprotect wp{};
    wp.range.start = reinterpret_cast<std::uintptr_t>(dirty_region);
    wp.range.len = kDirtyPages * kPage;
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) return;
    const std::size_t before = uffd_recorded.load();
    write_some(r);
    dirty_found += uffd_recorded.load() - before;
  }
}

const char* setup_uffd() {
  long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd < 0) return "userfaultfd unavailable here (vm.unprivileged_userfaultfd, or no CONFIG_USERFAULTFD)";
  uffd = static_cast<int>(fd);
  uffdio_api api{.api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP, .ioctls = 0};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) return "userfaultfd write-protection unsupported (Linux 5.7+)";
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<std::uintptr_t>(dirty_region);
  reg.range.len = kDirtyPages * kPage;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return "UFFDIO_REGISTER (write-protect mode) failed";
  uffd_stop = eventfd(0, EFD_CLOEXEC);
  if (uffd_stop < 0 || pthread_create(&uffd_thread, nullptr, uffd_handler, nullptr) != 0) return "no handler thread";
  return nullptr;
}

// Ends the handler thread, then closes the descriptor (which unregisters
// the region): a thread outside VM mode would make every later dirty-bit
// collect report everything (dunk/dirty.h).
void teardown_uffd() {
  (void)!write(uffd_stop, "\1\0\0\0\0\0\0\0", 8);
  pthread_join(uffd_thread, nullptr);
  close(uffd_stop);
  close(uffd);
  uffd = uffd_stop = -1;
}

// A dirty-tracking result, with how many written pages each round found
// (kDirtyWrites is right).
Result dirty_result(const std::string& mode, std::uint64_t rounds, bool vm, const Probes& probes,
                    void (*loop)(std::uint64_t)) {
  dirty_found = 0;
  Result r = measure("dirty tracking", mode, rounds, vm, probes, loop);
  const double per_round = static_cast<double>(dirty_found) / static_cast<double>(rounds);
  r.note += fmt::format("{}found {:.1f} of {} written pages per round", r.note.empty() ? "" : "; ", per_round,
                        kDirtyWrites);
  return r;
}

std::uint64_t scaled(std::uint64_t iterations, std::uint64_t divisor) {
  std::uint64_t n = iterations / divisor;
  return n < 100 ? 100 : n;
}

}  // namespace

void run_privileged(std::uint64_t iterations, const Options& options, const Probes& probes, std::vector<Result>& out) {
  const std::uint64_t traps = scaled(iterations, 10);
  // page fault
  if (options.wants("page fault")) {
    const std::uint64_t faults = scaled(iterations, 25);
    out.push_back(measure("page fault", "native", faults, false, probes, page_fault_loop));
    out.push_back(measure("page fault", "vm", faults, true, probes, page_fault_loop));
  }
  // page walk
  if (options.wants("page walk")) {
    walk_region = static_cast<char*>(mmap(nullptr, kWalkPages * kPage, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
    madvise(walk_region, kWalkPages * kPage, MADV_NOHUGEPAGE);
    out.push_back(measure("page walk", "native", iterations, false, probes, page_walk_loop));
    out.push_back(measure("page walk", "vm", iterations, true, probes, page_walk_loop));
    munmap(walk_region, kWalkPages * kPage);
  }
  // trap delivery: a read of a page without access, skipped by the handler
  if (options.wants("trap")) {
    trap_page = fresh_pages(1);
    mprotect(trap_page, kPage, PROT_NONE);
    set_sigsegv(skip_on_sigsegv);
    out.push_back(measure("trap", "native", traps, false, probes, trap_native));
    (void)set_trap_handler(kPageFault, skip_on_fault);
    out.push_back(measure("trap", "vm", traps, true, probes, trap_native));
  }
  // appel1, appel2
  if (options.wants("appel")) {
    appel_count = 100;
    appel_pages = fresh_pages(appel_count);
    std::memset(appel_pages, 0, appel_count * kPage);
    set_sigsegv(unprotect_on_sigsegv);                      // outside VM mode
    (void)set_trap_handler(kPageFault, unprotect_on_fault);  // in VM mode
    out.push_back(measure("appel1", "native", traps, false, probes, appel1_native));
    out.push_back(measure("appel1", "vm", traps, true, probes, appel1_vm));
    out.push_back(measure("appel2", "native", traps, false, probes, appel2_native));
    out.push_back(measure("appel2", "vm", traps, true, probes, appel2_vm));
    (void)set_trap_handler(kPageFault, nullptr);
    signal(SIGSEGV, SIG_DFL);
    mprotect(appel_pages, appel_count * kPage, PROT_READ | PROT_WRITE);
  }
  // system-call interception
  if (options.wants("interception")) {
    const std::uint64_t calls = scaled(iterations, 10);
    if (enter()) {
      ring3_stack = fresh_pages(1);
      auto code = reinterpret_cast<char*>(dunk_bench_ring3_getpid_loop);
      (void)AddressSpace::current().protect(code, kPage, kRead | kExec | kUser);
      (void)AddressSpace::current().protect(ring3_stack, kPage, kRead | kWrite | kUser);
      flush_tlb();
      leave();
    }
    out.push_back(measure("interception", "dunk ring 3", calls, true, probes, intercept_dunk));
    const std::uint64_t slow = scaled(iterations, 100);
    out.push_back(timed_only("interception", "ptrace", slow, intercept_ptrace(slow), "ptrace failed"));
    out.push_back(timed_only("interception", "seccomp trap", calls, time_in_child(calls, seccomp_trap_child),
                             "seccomp(SECCOMP_RET_TRAP) unavailable"));
    out.push_back(timed_only("interception", "seccomp notify", slow, time_in_child(slow, seccomp_notify_child),
                             "seccomp user notification unavailable"));
    out.push_back(timed_only("interception", "syscall user dispatch", calls, time_in_child(calls, sud_child),
                             "Syscall User Dispatch unavailable (Linux 5.11+)"));
  }
  // dirty tracking
  if (options.wants("dirty tracking")) {
    const std::uint64_t rounds = iterations / 1000 < 10 ? 10 : iterations / 1000;
    dirty_region = fresh_pages(kDirtyPages);
    std::memset(dirty_region, 1, kDirtyPages * kPage);
    // Mirrored before the measurement: memory the guest first sees while
    // tracked is reported dirty once (dunk/dirty.h), whatever wrote it.
    if (enter()) {
      for (std::size_t i = 0; i < kDirtyPages; ++i) (void)static_cast<volatile char*>(dirty_region)[i * kPage];
      leave();
    }
    out.push_back(dirty_result("dunk dirty bits", rounds, true, probes, dirty_dunk));
    set_sigsegv(record_on_sigsegv);
    out.push_back(dirty_result("mprotect+SIGSEGV", rounds, false, probes, dirty_mprotect));
    signal(SIGSEGV, SIG_DFL);
    mprotect(dirty_region, kDirtyPages * kPage, PROT_READ | PROT_WRITE);
    clear_refs_fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (clear_refs_fd >= 0 && pagemap_fd >= 0) {
      out.push_back(dirty_result("soft-dirty", rounds, false, probes, dirty_soft));
    } else {
      out.push_back(unavailable("dirty tracking", "soft-dirty", "/proc/self/clear_refs or pagemap unavailable"));
    }
    if (const char* why = setup_uffd()) {
      out.push_back(unavailable("dirty tracking", "userfaultfd-wp", why));
    } else {
      out.push_back(dirty_result("userfaultfd-wp", rounds, false, probes, dirty_uffd));
      teardown_uffd();
    }
  }
}

}  // namespace dunk::bench
