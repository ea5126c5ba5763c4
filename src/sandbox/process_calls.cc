// Threads, processes and what the kernel keeps per thread, served by the
// supervisor: a program thread is a host thread of the supervisor's own
// (a pthread, in VM mode on a vCPU of its own, its TLS the supervisor's)
// running the program's registers in ring 3 with the program's TLS as FS
// base; a fork child is the supervisor's fork, in a VM of its own from its
// first instruction (follow_fork). Nothing the program registers for the
// kernel to write later (clear_child_tid, robust lists, rseq) ever reaches
// the host thread, which the supervisor runs on too.
#include <asm/prctl.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "base/syscall.h"
#include "core/machine.h"
#include "sandbox/fs_view.h"
#include "sandbox/members.h"
#include "sandbox/supervisor.h"

namespace dunk::sandbox {
namespace {

void answer(ProgramThread& t, long value) noexcept { t.frame.rax = static_cast<std::uint64_t>(value); }

// The first address beyond user space, as arch_prctl checks FS/GS bases.
constexpr std::uint64_t kTaskSizeMax = (std::uint64_t{1} << 47) - 4096;

struct CloneRequest {
  std::uint64_t flags = 0;  // CLONE_* without the exit signal
  int exit_signal = 0;
  std::uint64_t stack = 0;  // the child's RSP (0: the parent's)
  std::uint64_t parent_tid = 0, child_tid = 0, tls = 0;
  std::uint64_t pidfd = 0;
};

bool decode(ProgramThread& t, const abi::Call& call, CloneRequest& r) noexcept {
  switch (abi::kernel_number(call.number)) {
    case SYS_fork:
      r.exit_signal = SIGCHLD;
      return true;
    case SYS_vfork:
      r.flags = CLONE_VM | CLONE_VFORK;
      r.exit_signal = SIGCHLD;
      return true;
    case SYS_clone:
      // clone(flags, stack, parent_tid, child_tid, tls) on x86-64.
      r.flags = call.args[0] & ~std::uint64_t{CSIGNAL};
      r.exit_signal = static_cast<int>(call.args[0] & CSIGNAL);
      r.stack = call.args[1];
      r.parent_tid = call.args[2];
      r.child_tid = call.args[3];
      r.tls = call.args[4];
      if ((r.flags & CLONE_PIDFD) != 0) r.pidfd = call.args[2];
      return true;
    default: {  // clone3
      clone_args args{};
      const std::uint64_t size = call.args[1];
      if (size < CLONE_ARGS_SIZE_VER0 || size > 4096) return answer(t, -EINVAL), false;
      if (!read_program(&args, call.args[0], std::min<std::uint64_t>(size, sizeof args))) return answer(t, -EFAULT), false;
      // Fields past what dunk reads must be zero, as the kernel demands of
      // fields past what it knows.
      if (size > sizeof args) {
        for (std::uint64_t at = sizeof args; at < size; ++at) {
          char byte;
          if (!read_program(&byte, call.args[0] + at, 1)) return answer(t, -EFAULT), false;
          if (byte != 0) return answer(t, -E2BIG), false;
        }
      }
      if (args.set_tid_size != 0 || (args.flags & CLONE_INTO_CGROUP) != 0) return answer(t, -EINVAL), false;
      r.flags = args.flags;
      r.exit_signal = static_cast<int>(args.exit_signal);
      if (args.stack != 0) r.stack = args.stack + args.stack_size;
      r.parent_tid = args.parent_tid;
      r.child_tid = args.child_tid;
      r.tls = args.tls;
      r.pidfd = args.pidfd;
      return true;
    }
  }
}

// The flags a thread may have, and a fork child: anything else is refused
// until the supervisor serves it.
constexpr std::uint64_t kThreadFlags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                                       CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID |
                                       CLONE_CHILD_SETTID | CLONE_DETACHED;
constexpr std::uint64_t kForkFlags = CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID | CLONE_VM |
                                     CLONE_VFORK;

void start_thread(ProgramThread& t, const abi::Call& call, const CloneRequest& r) noexcept {
  const std::uint64_t needed = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD;
  if ((r.flags & needed) != needed || (r.flags & ~kThreadFlags) != 0 || r.exit_signal != 0) {
    return refuse(t, call, -EINVAL, "clone flags the sandbox does not serve (threads share VM, SIGHAND, THREAD)");
  }
  if (r.stack == 0) return answer(t, -EINVAL);
  const Region& region = sandbox().region;
  if (!region.contains(r.stack, 0) || ((r.flags & CLONE_PARENT_SETTID) != 0 && !region.contains(r.parent_tid, 4)) ||
      ((r.flags & (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID)) != 0 && !region.contains(r.child_tid, 4))) {
    return refuse(t, call, -EFAULT, "a thread's stack or tid pointer outside the program's memory");
  }
  if ((r.flags & CLONE_SETTLS) != 0 && r.tls >= kTaskSizeMax) return answer(t, -EPERM);
  if (!claim_thread_slot(t, call)) return;  // --max-threads (limits.h)
  auto* child = new (std::nothrow) ProgramThread();
  if (child == nullptr || child->fpu == nullptr) {
    delete child;
    release_thread_slot();
    return answer(t, -ENOMEM);
  }
  // The parent's registers at the SYSCALL, RAX 0, the new stack; the FPU
  // state as the parent has it; no alternate stack (the kernel clears it
  // for a CLONE_VM child).
  child->frame = t.frame;
  child->frame.rax = 0;
  child->frame.rsp = r.stack;
  child->fs_base = (r.flags & CLONE_SETTLS) != 0 ? r.tls : t.fs_base;
  child->gs_base = t.gs_base;
  std::memcpy(child->fpu, t.fpu, sandbox().fpu_size);
  child->fpu_live = t.fpu_live;
  child->clear_child_tid = (r.flags & CLONE_CHILD_CLEARTID) != 0 ? r.child_tid : 0;
  child->set_child_tid = (r.flags & CLONE_CHILD_SETTID) != 0 ? r.child_tid : 0;
  const long tid = start_program_thread(child, (r.flags & CLONE_PARENT_SETTID) != 0 ? r.parent_tid : 0);
  if (tid < 0) {
    delete child;
    release_thread_slot();
    return answer(t, tid);
  }
  answer(t, tid);
}

void fork_process(ProgramThread& t, const abi::Call& call, const CloneRequest& r) noexcept {
  // vfork (and posix_spawn's CLONE_VM|CLONE_VFORK) runs as fork: the child
  // gets a copy of the memory rather than the parent's, which a child that
  // only executes a program or exits cannot tell.
  const bool vfork_like = (r.flags & (CLONE_VM | CLONE_VFORK)) == (CLONE_VM | CLONE_VFORK);
  if ((r.flags & ~kForkFlags) != 0 || ((r.flags & CLONE_VM) != 0 && !vfork_like) || r.exit_signal != SIGCHLD) {
    return refuse(t, call, -EINVAL, "clone flags the sandbox does not serve for a new process (only fork's)");
  }
  const Region& region = sandbox().region;
  if (((r.flags & CLONE_PARENT_SETTID) != 0 && !region.contains(r.parent_tid, 4)) ||
      ((r.flags & (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID)) != 0 && !region.contains(r.child_tid, 4))) {
    return refuse(t, call, -EFAULT, "a tid pointer outside the program's memory");
  }
  Sandbox& s = sandbox();
  s.reporter.flush();
  // Locks another thread may hold across the fork are taken first, so that
  // the child finds them free and consistent.
  s.region.lock().lock();
  s.signal_lock.lock();
  s.limits.lock().lock();
  const pid_t pid = fork();
  if (pid != 0) {
    s.limits.lock().unlock();
    s.signal_lock.unlock();
    s.region.lock().unlock();
    if (pid < 0) return answer(t, -errno);
    // A member of the sandbox before the program hears of it (members.h):
    // one the table cannot take does not run.
    if (Members* m = members(); m != nullptr && !m->add(pid)) {
      sys::call(SYS_kill, pid, SIGKILL);
      sys::call(SYS_wait4, pid, 0, __WALL, 0);
      return refuse(t, call, -EAGAIN, "the table of the sandbox's processes is full");
    }
    if ((r.flags & CLONE_PARENT_SETTID) != 0) {
      const std::int32_t value = pid;
      (void)write_program(r.parent_tid, &value, sizeof value);
    }
    return answer(t, pid);
  }
  // The child: one thread, a VM of its own.
  s.signal_lock.reset_after_fork();
  s.region.lock().reset_after_fork();
  s.limits.reset_after_fork();
  s.timers_lock.reset_after_fork();
  s.timers.clear();  // timers are the parent's alone
  s.threads.store(1);
  reset_thread_stop_after_fork(t);
  s.pid = static_cast<std::uint64_t>(sys::call(SYS_getpid));
  s.reporter.reset_after_fork(static_cast<long>(s.pid));
  t.tid = sys::call(SYS_gettid);
  t.main = true;
  if (r.stack != 0) t.frame.rsp = r.stack;
  if ((r.flags & CLONE_CHILD_SETTID) != 0) {
    const auto value = static_cast<std::int32_t>(t.tid);
    (void)write_program(r.child_tid, &value, sizeof value);
  }
  t.clear_child_tid = (r.flags & CLONE_CHILD_CLEARTID) != 0 ? r.child_tid : 0;
  answer(t, 0);
}

// What the kernel does for a thread's CLONE_CHILD_CLEARTID at its exit.
void clear_child_tid(ProgramThread& t) noexcept {
  if (t.clear_child_tid == 0) return;
  const std::int32_t zero = 0;
  if (write_program(t.clear_child_tid, &zero, sizeof zero)) {
    sys::call(SYS_futex, static_cast<long>(t.clear_child_tid), FUTEX_WAKE, 1, 0, 0, 0);
  }
}

}  // namespace

void sys_clone(ProgramThread& t, const abi::Call& call) noexcept {
  CloneRequest r;
  if (!decode(t, call, r)) return;
  if ((r.flags & CLONE_VM) != 0 && (r.flags & CLONE_VFORK) == 0) return start_thread(t, call, r);
  fork_process(t, call, r);
}

void sys_exit(ProgramThread& t, const abi::Call& call) noexcept {
  Sandbox& s = sandbox();
  const long status = static_cast<long>(call.args[0] & 0xff);
  clear_child_tid(t);
  unregister_thread(t);
  if (s.threads.fetch_sub(1) == 1) {
    // The last thread: the process ends with its status.
    s.reporter.flush();
    sys::call(SYS_exit_group, status);
  }
  if (t.host_leader) {
    // The host process's first thread: its host thread ends; glibc's
    // bookkeeping of it does not matter any more. (The thread a new program
    // runs on after an execve is the program's first thread, t.main, and
    // may be a pthread of dunk's: it ends below, its stack freed.)
    set_current_thread(nullptr);
    sys::call(SYS_exit, status);
  }
  set_current_thread(nullptr);
  delete &t;
  pthread_exit(nullptr);
}

void sys_exit_group(ProgramThread&, const abi::Call& call) noexcept {
  sandbox().reporter.flush();
  sys::call(SYS_exit_group, static_cast<long>(call.args[0] & 0xff));
  __builtin_unreachable();
}

void sys_arch_prctl(ProgramThread& t, const abi::Call& call) noexcept {
  const int code = static_cast<int>(call.args[0]);
  const std::uint64_t address = call.args[1];
  switch (code) {
    case ARCH_SET_FS:
    case ARCH_SET_GS:
      if (address >= kTaskSizeMax) return answer(t, -EPERM);
      (code == ARCH_SET_FS ? t.fs_base : t.gs_base) = address;
      return answer(t, 0);
    case ARCH_GET_FS:
    case ARCH_GET_GS: {
      const std::uint64_t base = code == ARCH_GET_FS ? t.fs_base : t.gs_base;
      return answer(t, write_program(address, &base, sizeof base) ? 0 : -EFAULT);
    }
    case ARCH_GET_CPUID:
      return answer(t, 1);  // CPUID runs (KVM answers it)
    case ARCH_SET_CPUID:
      return answer(t, -ENODEV);  // no CPUID faulting for ring 3
    default:
      answer_forwarded(t, call);
      return;
  }
}

void sys_set_tid_address(ProgramThread& t, const abi::Call& call) noexcept {
  // An address the kernel would write at the thread's exit: natively never
  // refused, here refused outside the program's memory (an escape attempt).
  if (call.args[0] != 0 && !sandbox().region.contains(call.args[0], 4)) {
    return refuse(t, call, -EFAULT, "an address the kernel writes later, outside the program's memory");
  }
  t.clear_child_tid = call.args[0];
  answer(t, t.tid);
}

void sys_set_robust_list(ProgramThread& t, const abi::Call& call) noexcept {
  // struct robust_list_head is 24 bytes; the kernel would walk the list at
  // the host thread's exit and write into whatever it names. Kept, not
  // walked: a robust mutex's owner dying does not mark it.
  if (call.args[1] != 24) return answer(t, -EINVAL);
  if (call.args[0] != 0 && !sandbox().region.contains(call.args[0], 24)) {
    return refuse(t, call, -EFAULT, "a list the kernel walks later, outside the program's memory");
  }
  t.robust_list = call.args[0];
  t.robust_list_size = call.args[1];
  answer(t, 0);
}

void sys_get_robust_list(ProgramThread& t, const abi::Call& call) noexcept {
  const long pid = static_cast<int>(call.args[0]);
  if (pid != 0 && pid != t.tid) return answer(t, -EPERM);
  const std::uint64_t head = t.robust_list, size = 24;
  if (!write_program(call.args[1], &head, sizeof head) || !write_program(call.args[2], &size, sizeof size)) {
    return answer(t, -EFAULT);
  }
  answer(t, 0);
}

void sys_close_range(ProgramThread& t, const abi::Call& call) noexcept {
  // Closed around the sandbox's own descriptors (the monitor keeps dunk's
  // KVM descriptors itself).
  const auto first = static_cast<std::uint32_t>(call.args[0]), last = static_cast<std::uint32_t>(call.args[1]);
  if (first > last) return answer(t, -EINVAL);
  struct Split {
    std::uint32_t next;
    std::uint32_t last;
    std::uint64_t flags;
    long ret;
  } split{first, last, call.args[2], 0};
  for_each_sandbox_fd(
      [](int fd, void* cookie) {
        auto& s = *static_cast<Split*>(cookie);
        const auto f = static_cast<std::uint32_t>(fd);
        if (s.ret != 0 || f < s.next || f > s.last) return;
        if (f > s.next) s.ret = sys::call(SYS_close_range, s.next, f - 1, static_cast<long>(s.flags));
        s.next = f + 1;
      },
      &split);
  if (split.ret == 0 && split.next <= split.last && split.next >= first) {
    split.ret = sys::call(SYS_close_range, split.next, split.last, static_cast<long>(split.flags));
  }
  answer(t, split.ret);
}

namespace {

// execve's arguments, read from the call's copies (copies.h): the path as
// the kernel would open it, argv and envp.
struct ExecRequest {
  std::string path;
  std::vector<std::string> argv, envp;
  int fd = -1;  // execveat's AT_EMPTY_PATH under a file-system view: the program's descriptor
};

void strings_of(std::uint64_t array, std::vector<std::string>& out) {
  if (array == 0) return;
  for (const auto* p = reinterpret_cast<const std::uint64_t*>(array); *p != 0; ++p) {
    out.emplace_back(reinterpret_cast<const char*>(*p));
  }
}

long read_exec_request(ProgramThread& t, const abi::Call& call, ExecRequest& r) noexcept {
  const bool at = abi::kernel_number(call.number) == SYS_execveat;
  CallCopies copies(sandbox().region, t.scratch);
  const CopiesInUse in_use(t, copies);
  abi::Call rewritten;
  const CallCopies::Entry entry = copies.enter(call, rewritten);
  if (entry.error != 0) {
    if (entry.why != nullptr) refuse(t, call, entry.error, entry.why);
    return entry.error;
  }
  if (entry.walk.completeness != abi::Completeness::kComplete) return -EFAULT;
  const unsigned path_arg = at ? 1 : 0;
  const std::uint64_t path = rewritten.args[path_arg];
  if (path == 0) return -EFAULT;
  std::string name(reinterpret_cast<const char*>(path));
  if (at) {
    const int dirfd = static_cast<int>(call.args[0]);
    const int flags = static_cast<int>(call.args[4]);
    if ((flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) != 0) return -EINVAL;
    // The descriptor's file by its /proc name, which the loader opens like
    // any path (the descriptor was checked against dunk's by the walk).
    if (name.empty()) {
      if ((flags & AT_EMPTY_PATH) == 0) return -ENOENT;
      name = "/proc/thread-self/fd/" + std::to_string(dirfd);
      // A view resolves paths, and refuses /proc's magic links: the
      // descriptor is opened as the program's own.
      if (view() != nullptr) r.fd = dirfd;
    } else if (name[0] != '/' && dirfd != AT_FDCWD) {
      if (FsView* v = view()) {
        std::string dir;
        if (const long err = v->locate(dirfd, dir); err != 0) return err;
        name = (dir == "/" ? std::string() : dir) + "/" + name;
      } else {
        name = "/proc/thread-self/fd/" + std::to_string(dirfd) + "/" + name;
      }
    }
  }
  if (name.empty()) return -ENOENT;
  r.path = std::move(name);
  strings_of(rewritten.args[path_arg + 1], r.argv);
  strings_of(rewritten.args[path_arg + 2], r.envp);
  return 0;
}

// What execve closes: the descriptors marked close-on-exec (but dunk's).
void close_on_exec() noexcept {
  const long dir = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/thread-self/fd"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (sys::failed(dir)) return;
  std::vector<int> doomed;
  alignas(8) char buffer[4096];
  for (;;) {
    const long n = sys::call(SYS_getdents64, dir, reinterpret_cast<long>(buffer), sizeof buffer);
    if (n <= 0) break;
    for (long at = 0; at < n;) {
      const auto* d = reinterpret_cast<const dirent64*>(buffer + at);
      at += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      const int fd = std::atoi(d->d_name);
      if (fd == dir || is_dunk_fd(fd)) continue;
      if ((sys::call(SYS_fcntl, fd, F_GETFD) & FD_CLOEXEC) != 0) doomed.push_back(fd);
    }
  }
  sys::call(SYS_close, dir);
  for (int fd : doomed) sys::call(SYS_close, fd);
}

// The signals queued for `t` and not delivered, sent to host thread `tid`
// instead: after an execve they meet the new program's dispositions (a
// handler's signal now has its default action), as natively a signal
// pending across execve does.
void send_queued_signals(ProgramThread& t, long tid) noexcept {
  SignalQueue& q = t.signals;
  while (!q.empty()) {
    const std::uint32_t head = q.head.load(std::memory_order_relaxed);
    const int sig = signal_of(q.slots[head % SignalQueue::kSize].info);
    q.head.store(head + 1, std::memory_order_release);
    sys::call(SYS_tgkill, static_cast<long>(sandbox().pid), tid, sig);
  }
  q.taken_under_call_mask = q.tail.load(std::memory_order_relaxed);
}

// The point of no return of execve, on the thread that goes on as the
// process's only one: the old image goes, the new one comes into the same
// region, the same process (pid, descriptors, mask, ignored signals).
void replace_image(ProgramThread& t, const ExecRequest& request) noexcept {
  Sandbox& s = sandbox();
  s.reporter.flush();
  {
    // The old program's timers would signal the new one (Linux deletes them).
    LockGuard hold(s.timers_lock);
    for (const int id : s.timers) sys::call(SYS_timer_delete, id);
    s.timers.clear();
  }
  {
    LockGuard hold(s.region.lock());
    s.region.clear();
    s.shm.clear();
  }
  close_on_exec();
  {
    LockGuard hold(s.signal_lock);
    for (int sig = 1; sig <= abi::kMaxSignal; ++sig) {
      if (sig == SIGKILL || sig == SIGSTOP) continue;
      const abi::Sigaction old = s.actions.get(sig);
      if (!abi::is_handler(old.handler)) continue;
      s.actions.set(sig, abi::Sigaction{});
      install_host_action(sig, abi::Sigaction{});
    }
  }
  t.altstack = abi::kNoSignalStack;
  t.clear_child_tid = t.robust_list = t.robust_list_size = 0;
  t.fs_base = t.gs_base = 0;
  t.fpu_live = false;
  t.main = true;
  const std::size_t slash = request.path.rfind('/');
  const std::string comm = request.path.substr(slash == std::string::npos ? 0 : slash + 1, 15);
  sys::call(SYS_prctl, PR_SET_NAME, reinterpret_cast<long>(comm.c_str()));
  LoadedProgram program;
  LoadFailure why;
  if (!load_program(request.path, request.argv, request.envp, program, why, request.fd)) {
    // Natively a failure past the point of no return kills the process.
    die_by_signal(SIGSEGV, ("execve of " + request.path + " failed after the old program was gone: " + why.what).c_str());
  }
  t.frame = TrapFrame{};
  t.frame.rip = program.entry;
  t.frame.rsp = program.stack_pointer;
  t.frame.rflags = 0x202;
  take_monitor_signals();
  send_queued_signals(t, t.tid);
}

// An execve handed to the process's first thread by the thread that made
// it, with that thread's signal mask.
struct Handover {
  ExecRequest request;
  std::uint64_t mask = 0;
};

void run_handed_over(ProgramThread& t, void* context) noexcept {
  auto* handover = static_cast<Handover*>(context);
  wait_for_ended_threads(t);
  const ExecRequest request = std::move(handover->request);
  const std::uint64_t mask = handover->mask;
  delete handover;
  replace_image(t, request);
  // Signals sent here while the thread was parked (the caller's queued
  // ones among them) now meet the new dispositions.
  set_signal_mask(mask);
}

ProgramThread* first_thread_parked() noexcept {
  ThreadStop& x = sandbox().stop;
  LockGuard hold(x.lock);
  for (ProgramThread* p : x.threads) {
    if (p->main) return p;
  }
  return nullptr;
}

}  // namespace

void sys_timer_create(ProgramThread& t, const abi::Call& call) noexcept {
  std::int32_t id = 0;
  if (answer_forwarded(t, call) == 0 && read_program(&id, call.args[2], sizeof id)) {
    Sandbox& s = sandbox();
    LockGuard hold(s.timers_lock);
    s.timers.push_back(id);
  }
}

void sys_timer_delete(ProgramThread& t, const abi::Call& call) noexcept {
  if (answer_forwarded(t, call) == 0) {
    Sandbox& s = sandbox();
    LockGuard hold(s.timers_lock);
    std::erase(s.timers, static_cast<int>(call.args[0]));
  }
}

namespace {

// An execve whose stop of the other threads ended without them: EAGAIN,
// reported with why.
void refuse_stop(ProgramThread& t, const abi::Call& call, StopOutcome outcome, long blocker) noexcept {
  char why[200];
  const char* stops = "with which the supervisor stops the other threads of an execve";
  if (outcome == StopOutcome::kBlocked) {
    std::snprintf(why, sizeof why, "thread %ld blocks signal %d, %s", blocker, kStopSignal, stops);
  } else if (outcome == StopOutcome::kNoQueue) {
    std::snprintf(why, sizeof why, "signal %d, %s, cannot be queued to thread %ld (the signal queue limit, "
                  "RLIMIT_SIGPENDING)", kStopSignal, stops, blocker);
  } else {
    std::snprintf(why, sizeof why, "thread %ld did not stop for the execve within %ld s (no thread stopped meanwhile)",
                  blocker, kStopPatienceNs / 1'000'000'000);
  }
  refuse(t, call, -EAGAIN, why);
}

}  // namespace

void sys_execve(ProgramThread& t, const abi::Call& call) noexcept {
  Sandbox& s = sandbox();
  ExecRequest request;
  if (long err = read_exec_request(t, call, request); err != 0) return answer(t, err);
  // What fails before the point of no return fails the call, as natively:
  // the file must be there and executable.
  if (long fd = open_executable(request.path, request.fd); sys::failed(fd)) {
    return answer(t, fd);
  } else {
    sys::call(SYS_close, fd);
  }
  if (s.threads.load() > 1) {
    // The other threads end first (thread_stop.cc).
    long blocker = 0;
    switch (const StopOutcome outcome = stop_other_threads(t, blocker)) {
      case StopOutcome::kBusy:
        // Another thread's execve goes first: this thread parks, and makes
        // its call again if that one fails.
        t.frame.rip -= kSyscallInsnLength;
        return;
      case StopOutcome::kBlocked:
      case StopOutcome::kNoQueue:
      case StopOutcome::kTimedOut:
        return refuse_stop(t, call, outcome, blocker);
      case StopOutcome::kStopped:
        break;
    }
    if (ProgramThread* first = t.main ? nullptr : first_thread_parked(); first != nullptr) {
      // The new program runs on the first thread, whose tid is the pid;
      // this one ends, its undelivered signals sent there (blocked until
      // the new dispositions are in place).
      auto* handover = new (std::nothrow) Handover{std::move(request), block_signals(kAllSignals)};
      if (handover == nullptr) die_by_signal(SIGKILL, "out of memory at an execve's point of no return");
      take_monitor_signals();
      send_queued_signals(t, first->tid);
      end_other_threads(t, first, &run_handed_over, handover);
      __builtin_unreachable();
    }
    // The first thread has ended (its host thread is gone): the new
    // program runs here, with this thread's tid.
    end_other_threads(t, nullptr, nullptr, nullptr);
    wait_for_ended_threads(t);
  }
  replace_image(t, request);
}

}  // namespace dunk::sandbox
