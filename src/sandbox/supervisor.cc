#include "sandbox/supervisor.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "abi/format.h"
#include "abi/names.h"
#include "base/proc_maps.h"
#include "base/syscall.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/ring3.h"
#include "sandbox/fs_view.h"
#include "sandbox/members.h"
#include "sandbox/test_switches.h"
#include "sandbox/user_access.h"

namespace dunk::sandbox {
namespace {

thread_local ProgramThread* tls_thread = nullptr;

// The highest canonical user address + 1 (47 bits).
constexpr std::uint64_t kUserTop = std::uint64_t{1} << 47;
constexpr std::size_t kSupervisorStack = 1 << 20;

// The program's memory, checked against the region, for the formatter; as
// the call being served copied it, where it did.
class ProgramMemory final : public abi::Memory {
 public:
  explicit ProgramMemory(const CallCopies* copies = nullptr) noexcept : copies_(copies) {}
  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override {
    if (copies_ != nullptr) {
      if (const std::size_t n = copies_->read_as_copied(address, out, size); n != 0) return n;
    }
    const Region& region = sandbox().region;
    if (!region.contains(address, 0) || address == region.end()) return 0;
    size = std::min<std::uint64_t>(size, region.end() - address);
    return copy_readable_prefix(out, address, size);
  }

 private:
  const CallCopies* copies_;
};

void answer(ProgramThread& t, long value) noexcept { t.frame.rax = static_cast<std::uint64_t>(value); }

// Calls that touch no descriptor and no memory: reports may wait across them.
bool touches_nothing(const abi::CallSpec* spec) noexcept {
  if (spec == nullptr) return false;
  for (unsigned i = 0; i < spec->arg_count; ++i) {
    if (spec->args[i].is_fd() || spec->args[i].is_pointer() || spec->args[i].kind == abi::Kind::kCommand) return false;
  }
  return true;
}

// open() and friends may reach /proc/PID/mem, through which the kernel
// writes any address of a process — the supervisor's included. Checked on
// the descriptor the call made, so no path trick gets around it.
bool is_process_memory_file(long fd) noexcept {
  struct statfs fs {};
  if (sys::call(SYS_fstatfs, fd, reinterpret_cast<long>(&fs)) != 0 || fs.f_type != PROC_SUPER_MAGIC) return false;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/thread-self/fd/%ld", fd);
  char path[256];
  const long n = sys::call(SYS_readlink, reinterpret_cast<long>(link), reinterpret_cast<long>(path), sizeof path - 1);
  if (n <= 0) return true;  // a /proc file that cannot be named: refuse it too
  path[n] = '\0';
  const std::size_t length = static_cast<std::size_t>(n);
  return length >= 4 && std::strcmp(path + length - 4, "/mem") == 0;
}

// TIOCSTI pushes characters into a terminal's input, TIOCLINUX pastes the
// console's selection into it: run on the terminal the sandbox was started
// from, they type commands into its user's shell once the sandbox ends
// (bubblewrap's CVE-2017-5226). Refused whatever the policy says; the
// request is an unsigned int, as the kernel reads it.
bool injects_terminal_input(int nr, std::uint64_t request) noexcept {
  const auto r = static_cast<std::uint32_t>(request);
  return nr == SYS_ioctl && (r == TIOCSTI || r == TIOCLINUX);
}

bool opens_files(int nr) noexcept {
  return nr == SYS_open || nr == SYS_openat || nr == SYS_openat2 || nr == SYS_open_by_handle_at;
}

// Calls that wait under a mask of the caller's choosing and put the
// thread's own mask back before they return.
bool waits_under_its_own_mask(int nr) noexcept {
  return nr == SYS_rt_sigsuspend || nr == SYS_ppoll || nr == SYS_pselect6 || nr == SYS_epoll_pwait ||
         nr == SYS_epoll_pwait2;
}

}  // namespace

Sandbox& sandbox() noexcept {
  alignas(Sandbox) static std::byte storage[sizeof(Sandbox)];
  static Sandbox* s = new (storage) Sandbox();
  return *s;
}

ProgramThread* current_thread() noexcept { return tls_thread; }
void set_current_thread(ProgramThread* t) noexcept { tls_thread = t; }

ProgramThread::ProgramThread() noexcept {
  const std::size_t size = (sandbox().fpu_size + 63) & ~std::size_t{63};
  fpu = static_cast<std::byte*>(std::aligned_alloc(64, size));
  fpu_scratch = static_cast<std::byte*>(std::aligned_alloc(64, size));
}

ProgramThread::~ProgramThread() {
  std::free(fpu);
  std::free(fpu_scratch);
}

bool read_program(void* to, std::uint64_t from, std::size_t size) noexcept {
  return size == 0 || (sandbox().region.contains(from, size) && copy_from_program(to, from, size));
}

bool write_program(std::uint64_t to, const void* from, std::size_t size) noexcept {
  return size == 0 || (sandbox().region.contains(to, size) && copy_to_program(to, from, size));
}

// ---- Reports ---------------------------------------------------------------

void report_call(ProgramThread& t, const abi::Call& call, const char* event, const char* answer_text,
                 const char* action, const char* rule, const char* detail, long result) noexcept {
  // The whole call as strace would print it with the answer it gets, from
  // the copies the call was decided on (the program's memory where there
  // are none); the report keeps what is between the parentheses.
  ProgramMemory memory(t.copies);
  char text[4096];
  abi::format_call(text, sizeof text, call, result, memory);
  const char* open = std::strchr(text, '(');
  const char* close = std::strstr(text, ") = ");
  char args[4096];
  if (open != nullptr && close != nullptr && close > open) {
    std::snprintf(args, sizeof args, "%.*s", static_cast<int>(close - open - 1), open + 1);
  } else {
    std::snprintf(args, sizeof args, "%s", open != nullptr ? open + 1 : "");
  }
  const char* name = abi::name_of(static_cast<std::uint32_t>(call.number));
  char unknown[32];
  if (name == nullptr) {
    std::snprintf(unknown, sizeof unknown, "syscall_%#" PRIx64, call.number);
    name = unknown;
  }
  ReportLine line;
  line.event = event;
  line.call = name;
  line.nr = abi::kernel_number(call.number);
  line.args = args;
  line.answer = answer_text;
  line.action = action;
  line.rule = rule;
  line.detail = detail;
  line.tid = t.tid;
  line.rip = t.frame.rip - kSyscallInsnLength;
  sandbox().reporter.add(line);
}

bool refuse_outside(ProgramThread& t, const abi::Call& call, std::uint64_t address, std::size_t size) noexcept {
  if (address == 0 || sandbox().region.contains(address, size)) return false;
  refuse(t, call, -EFAULT, "a pointer argument outside the program's memory (the untrusted region)");
  return true;
}

void refuse(ProgramThread& t, const abi::Call& call, long error, const char* why) noexcept {
  char text[64];
  const char* name = abi::errno_name(static_cast<int>(-error));
  std::snprintf(text, sizeof text, "-1 %s", name != nullptr ? name : "?");
  report_call(t, call, "refused", text, nullptr, nullptr, why, error);
  answer(t, error);
}

// ---- The policy --------------------------------------------------------------

namespace {

// The action after --on-violation.
Action effective(const Decision& d) noexcept {
  if (!denies(d.action)) return d.action;
  switch (sandbox().on_violation) {
    case OnViolation::kPolicy: return d.action;
    case OnViolation::kKill: return Action::kKillProcess;
    case OnViolation::kErrno: return Action::kErrno;
    case OnViolation::kLog: return Action::kLog;
  }
  return d.action;
}

std::uint16_t errno_for(const Decision& d) noexcept {
  if (d.action == Action::kErrno) return d.err;
  if (d.action == Action::kTrace) return ENOSYS;
  return EPERM;
}

// SIGSYS as seccomp's SECCOMP_RET_TRAP sends it (si_code SYS_SECCOMP, the
// call's address, number and architecture).
void trap_siginfo(std::uint8_t (&info)[abi::kSiginfoSize], const ProgramThread& t, int nr, int err) noexcept {
  std::memset(info, 0, sizeof info);
  const std::int32_t sig = SIGSYS, code = 1 /* SYS_SECCOMP */;
  std::memcpy(info + offsetof(siginfo_t, si_signo), &sig, 4);
  std::memcpy(info + offsetof(siginfo_t, si_errno), &err, 4);
  std::memcpy(info + offsetof(siginfo_t, si_code), &code, 4);
  const std::uint64_t call_addr = t.frame.rip;
  const std::uint32_t arch = 0xc000003e;  // AUDIT_ARCH_X86_64
  std::memcpy(info + offsetof(siginfo_t, si_call_addr), &call_addr, 8);
  std::memcpy(info + offsetof(siginfo_t, si_syscall), &nr, 4);
  std::memcpy(info + offsetof(siginfo_t, si_arch), &arch, 4);
}

void deny(ProgramThread& t, const abi::Call& call, const Decision& d, Action action) noexcept {
  const Sandbox& s = sandbox();
  const std::string_view rule = s.policy->describe_rule(d.rule);
  char rule_text[512];
  std::snprintf(rule_text, sizeof rule_text, "%.*s", static_cast<int>(rule.size()), rule.data());
  const int nr = abi::kernel_number(call.number);
  switch (action) {
    case Action::kKillProcess:
    case Action::kKillThread:
      report_call(t, call, "denied", "killed (SIGSYS)", action_name(d.action), rule_text, nullptr, -EPERM);
      die_by_signal(SIGSYS, nullptr);
    case Action::kTrap: {
      report_call(t, call, "denied", "SIGSYS", action_name(d.action), rule_text, nullptr, -ENOSYS);
      std::uint8_t info[abi::kSiginfoSize];
      trap_siginfo(info, t, nr, d.err);
      answer(t, -ENOSYS);
      force_signal(t, SIGSYS, 1, t.frame.rip, 0, 0, info);
      return;
    }
    default: {
      const int err = errno_for(d);
      char text[64];
      const char* name = abi::errno_name(err);
      std::snprintf(text, sizeof text, "-1 %s", name != nullptr ? name : "?");
      report_call(t, call, "denied", text, action_name(d.action), rule_text, nullptr, -err);
      answer(t, -err);
      return;
    }
  }
}

}  // namespace

// Signals the monitor took for this vCPU while ring 3 ran wait for an exit
// from ring 0 outside a handler: one cheap call makes it deliver them (to
// the supervisor's handler, which queues them for ring 3).
void take_monitor_signals() noexcept {
  const core::Cpu* cpu = core::current_cpu();
  if (cpu != nullptr && cpu->signals.pending()) sys::call(SYS_getppid);
}

namespace {

void serve_call(ProgramThread& t) noexcept {
  TrapFrame& f = t.frame;
  const abi::Call call{f.rax, {f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9}};
  // A signal that arrived while ring 3 ran is delivered before the call,
  // which runs again when the handler returns: as if it had arrived just
  // before the SYSCALL instruction.
  take_monitor_signals();
  if (!t.signals.empty()) {
    f.rip -= kSyscallInsnLength;
    return;
  }
  const int nr = abi::kernel_number(f.rax);
  Sandbox& s = sandbox();
  // limits/network: --learn notes every call the program makes (call_log.h).
  if (s.learn != nullptr) {
    s.learn->note(nr, Args{call.args[0], call.args[1], call.args[2], call.args[3], call.args[4], call.args[5]});
  }
  const Decision d = s.policy->decide(nr, Args{call.args[0], call.args[1], call.args[2], call.args[3],
                                                 call.args[4], call.args[5]});
  const Action action = effective(d);
  if (denies(action) && nr != test_switches().forward_denied) return deny(t, call, d, action);
  if (action == Action::kLog || (s.policy->log_flag() && d.action != Action::kAllow)) {
    const std::string_view rule = s.policy->describe_rule(d.rule);
    char rule_text[512];
    std::snprintf(rule_text, sizeof rule_text, "%.*s", static_cast<int>(rule.size()), rule.data());
    report_call(t, call, "logged", "allowed", action_name(d.action), rule_text, nullptr, 0);
  }
  if (injects_terminal_input(nr, call.args[1])) {
    return refuse(t, call, -EPERM, "it would push input into a terminal outside the sandbox");
  }
  // Signals stay among the sandbox's processes (members.h).
  if (confine_signal(t, call)) return;
  // Paths, the working directory and descriptor numbers under a
  // file-system view (fs_view.h).
  if (serve_in_view(t, call)) return;
  if (CallHandler handler = emulated(nr)) {
    if (!s.reporter.empty()) s.reporter.flush();
    handler(t, call);
    return;
  }
  answer_forwarded(t, call);
}

}  // namespace

long answer_forwarded(ProgramThread& t, const abi::Call& call) noexcept {
  const long ret = forward_with_copies(t, call);
  if (ret == kRestartForSignal) {
    // A signal for the program came first: its handler runs, then the
    // SYSCALL runs again (RAX still holds the number).
    t.frame.rip -= kSyscallInsnLength;
    return ret;
  }
  answer(t, ret);
  return ret;
}

long forward_with_copies(ProgramThread& t, const abi::Call& call) noexcept {
  return forward_with_copies(t, call, nullptr, nullptr);
}

long forward_with_copies(ProgramThread& t, const abi::Call& call, Perform perform, void* context) noexcept {
  Sandbox& s = sandbox();
  CallCopies copies(s.region, t.scratch);
  const CopiesInUse in_use(t, copies);
  abi::Call rewritten;
  const CallCopies::Entry entry = copies.enter(call, rewritten);
  if (entry.error != 0) {
    if (entry.why != nullptr) {
      refuse(t, call, entry.error, entry.why);
    }
    return entry.error;
  }
  if (entry.walk.completeness != abi::Completeness::kComplete || entry.walk.later_unbounded) {
    char why[256];
    std::snprintf(why, sizeof why, "the supervisor cannot check this call's memory (%s)",
                  entry.walk.reason != nullptr ? entry.walk.reason : "the kernel reaches memory later");
    refuse(t, call, -ENOSYS, why);
    return -ENOSYS;
  }
  // The number as the kernel decodes it: RAX's high half never reaches the
  // monitor (where dunk's private calls live).
  rewritten.number = static_cast<std::uint32_t>(call.number);
  // limits/network: --unshare-net, --allow-connect, --allow-bind, decided on the copies (network.h).
  if (s.network != nullptr) {
    if (const long err = decide_network(t, call, rewritten); err != 0) return err;
  }
  if (!s.reporter.empty() && !touches_nothing(entry.walk.call)) s.reporter.flush();
  long ret = perform != nullptr ? perform(t, call, rewritten, context)
                                : dunk_sandbox_forward(&rewritten, &t.signals.head, &t.signals.tail);
  if (ret == kRestartForSignal) return ret;
  const int nr = abi::kernel_number(call.number);
  if (waits_under_its_own_mask(nr)) {
    t.signals.taken_under_call_mask = t.signals.tail.load(std::memory_order_acquire);
  }
  ret = copies.leave(rewritten, ret);
  if (opens_files(nr) && ret >= 0 && is_process_memory_file(ret)) {
    sys::call(SYS_close, ret);
    refuse(t, call, -EACCES, "/proc/PID/mem reaches every address of a process, the supervisor's included");
    return -EACCES;
  }
  t.scratch.trim();
  return ret;
}

// ---- The emulated calls ----------------------------------------------------------

namespace {

void sys_rseq(ProgramThread& t, const abi::Call&) noexcept {
  // The kernel would read and write the registration behind every
  // preemption of the host thread, which runs the supervisor too: never
  // passed on. glibc runs without it (and says so in __rseq_size).
  answer(t, -ENOSYS);
}

void refuse_call(ProgramThread& t, const abi::Call& call, const char* why) noexcept { refuse(t, call, -EPERM, why); }

void sys_ptrace(ProgramThread& t, const abi::Call& call) noexcept {
  refuse_call(t, call, "ptrace would reach a sandboxed process's supervisor (its memory and registers)");
}
void sys_process_madvise(ProgramThread& t, const abi::Call& call) noexcept {
  refuse_call(t, call, "process_madvise acts on another process's memory, supervisor included");
}
void sys_pidfd_getfd(ProgramThread& t, const abi::Call& call) noexcept {
  refuse_call(t, call, "pidfd_getfd would take another sandbox's KVM descriptors");
}
void sys_seccomp(ProgramThread& t, const abi::Call& call) noexcept {
  refuse(t, call, -EINVAL, "a seccomp filter on the host thread would bind the supervisor's own calls");
}
void sys_prctl(ProgramThread& t, const abi::Call& call) noexcept {
  const int option = static_cast<int>(call.args[0]);
  if (option == PR_SET_SECCOMP) return sys_seccomp(t, call);
  if (option == PR_SET_MM) return refuse_call(t, call, "PR_SET_MM rewrites the host process's memory layout");
  answer_forwarded(t, call);
}
void sys_userfaultfd(ProgramThread& t, const abi::Call& call) noexcept {
  refuse_call(t, call, "userfaultfd would stall the supervisor's copies at the program's will");
}
void sys_modify_ldt(ProgramThread& t, const abi::Call& call) noexcept {
  // Reading (0, 2) is harmless; writing (1, 0x11) would give ring 3 code
  // segments of its own, whose events the guest's entry code does not know
  // as ring 3's (it knows the GDT's user selectors).
  const long func = static_cast<int>(call.args[0]);
  if (func == 1 || func == 0x11) {
    return refuse_call(t, call, "an LDT would give ring 3 code segments the supervisor does not know");
  }
  answer_forwarded(t, call);
}

struct Row {
  int nr;
  CallHandler handler;
};

constexpr Row kRows[] = {
    {SYS_mmap, &sys_mmap},
    {SYS_munmap, &sys_munmap},
    {SYS_mprotect, &sys_mprotect},
    {SYS_pkey_mprotect, &sys_mprotect},
    {SYS_mremap, &sys_mremap},
    {SYS_brk, &sys_brk},
    {SYS_shmat, &sys_shmat},
    {SYS_shmdt, &sys_shmdt},
    {SYS_clone, &sys_clone},
    {SYS_clone3, &sys_clone},
    {SYS_fork, &sys_clone},
    {SYS_vfork, &sys_clone},
    {SYS_exit, &sys_exit},
    {SYS_exit_group, &sys_exit_group},
    {SYS_execve, &sys_execve},
    {SYS_execveat, &sys_execve},
    {SYS_timer_create, &sys_timer_create},
    {SYS_timer_delete, &sys_timer_delete},
    {SYS_arch_prctl, &sys_arch_prctl},
    {SYS_set_tid_address, &sys_set_tid_address},
    {SYS_set_robust_list, &sys_set_robust_list},
    {SYS_get_robust_list, &sys_get_robust_list},
    {SYS_rseq, &sys_rseq},
    {SYS_close_range, &sys_close_range},
    {SYS_rt_sigaction, &sys_rt_sigaction},
    {SYS_rt_sigreturn, &sys_rt_sigreturn},
    {SYS_sigaltstack, &sys_sigaltstack},
    {SYS_ptrace, &sys_ptrace},
    {SYS_process_madvise, &sys_process_madvise},
    {SYS_pidfd_getfd, &sys_pidfd_getfd},
    {SYS_seccomp, &sys_seccomp},
    {SYS_prctl, &sys_prctl},
    {SYS_userfaultfd, &sys_userfaultfd},
    {SYS_modify_ldt, &sys_modify_ldt},
    // limits/network
    {SYS_getrlimit, &sys_prlimit},
    {SYS_setrlimit, &sys_prlimit},
    {SYS_prlimit64, &sys_prlimit},
};

constexpr unsigned kTableSize = 512;

struct Table {
  CallHandler handlers[kTableSize] = {};
  constexpr Table() {
    for (const Row& row : kRows) handlers[row.nr] = row.handler;
  }
};
constexpr Table kTable;

}  // namespace

CallHandler emulated(int nr) noexcept {
  return nr >= 0 && static_cast<unsigned>(nr) < kTableSize ? kTable.handlers[nr] : nullptr;
}

// ---- The loop ---------------------------------------------------------------------

namespace {

bool canonical_user(std::uint64_t address) noexcept { return address < kUserTop; }

}  // namespace

[[noreturn]] void run_thread(ProgramThread& t) noexcept {
  for (;;) {
    // Another thread's execve may be stopping the others (thread_stop.cc).
    park_if_stopping(t);
    if (!canonical_user(t.frame.rip)) {
      // What IRET would do with it natively: #GP, SIGSEGV at the return.
      force_signal(t, SIGSEGV, SI_KERNEL, 0, 13, 0);
      continue;
    }
    Ring3Options options;
    options.fpu = t.fpu_live ? t.fpu : nullptr;
    options.fpu_out = t.fpu;
    options.fs_base = t.fs_base;
    options.gs_base = t.gs_base;
    // A signal for the program stops ring 3 wherever it is (a loop that
    // makes no call included), as the kernel's would interrupt it.
    options.interruptible = true;
    auto exit = run_in_ring3(t.frame, options);
    if (!exit) {
      char why[160];
      std::snprintf(why, sizeof why, "cannot run ring 3: %s", exit.error().what);
      die_by_signal(SIGABRT, why);
    }
    t.frame = exit->frame;
    t.fs_base = exit->fs_base;
    t.gs_base = exit->gs_base;
    t.fpu_live = true;
    switch (exit->reason) {
      case Ring3Exit::kSyscall:
        serve_call(t);
        break;
      case Ring3Exit::kReturned: {
        // The number that ends a ring-3 run of the privileged API: no call of
        // the program's (it came in RAX like any other).
        const abi::Call call{t.frame.rax, {t.frame.rdi, t.frame.rsi, t.frame.rdx, t.frame.r10, t.frame.r8, t.frame.r9}};
        refuse(t, call, -ENOSYS, "not a system call (one of dunk's private numbers)");
        break;
      }
      case Ring3Exit::kFault:
        serve_fault(t);
        break;
      case Ring3Exit::kInterrupted:
        // The host handler queues the signal for the program here; the
        // program's handler frame is built just below.
        signal_point();
        break;
    }
    deliver_signals(t);
  }
}

namespace {

// Handed from the parent's supervisor to the child's; the child frees it.
struct ThreadStart {
  ProgramThread* thread;
  std::atomic<long> tid{0};
  std::atomic<int> go{0};
};

void* thread_main(void* arg) {
  auto* start = static_cast<ThreadStart*>(arg);
  ProgramThread* t = start->thread;
  t->tid = sys::call(SYS_gettid);
  set_current_thread(t);
  register_thread(*t);
  start->tid.store(t->tid, std::memory_order_release);
  start->tid.notify_one();
  // The parent writes CLONE_PARENT_SETTID before the child's first
  // instruction, as the kernel does.
  start->go.wait(0, std::memory_order_acquire);
  delete start;
  if (t->set_child_tid != 0) {
    const auto value = static_cast<std::int32_t>(t->tid);
    (void)write_program(t->set_child_tid, &value, sizeof value);
  }
  run_thread(*t);
}

}  // namespace

long start_program_thread(ProgramThread* t, std::uint64_t parent_tid) noexcept {
  if (Status s = t->scratch.init(); !s) return -s.error().err;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, kSupervisorStack);
  auto* start = new (std::nothrow) ThreadStart{t};
  if (start == nullptr) return -ENOMEM;
  pthread_t id;
  // The thread is counted already (claim_thread_slot).
  const int err = pthread_create(&id, &attr, thread_main, start);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    delete start;
    return -err;
  }
  start->tid.wait(0, std::memory_order_acquire);
  const long tid = start->tid.load(std::memory_order_acquire);
  if (parent_tid != 0) {
    const auto value = static_cast<std::int32_t>(tid);
    (void)write_program(parent_tid, &value, sizeof value);
  }
  start->go.store(1, std::memory_order_release);
  start->go.notify_one();
  return tid;
}

}  // namespace dunk::sandbox
