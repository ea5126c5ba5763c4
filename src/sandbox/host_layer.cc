// The host layer (host_layer.h): Landlock rules for the file-system view,
// and the system calls the host filter lets through.
#include "sandbox/host_layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <iterator>

#include "base/syscall.h"
#include "abi/syscalls.h"
#include "base/unique_fd.h"
#include "sandbox/copies.h"
#include "sandbox/supervisor.h"

namespace dunk::sandbox {
namespace {

using Access = std::uint64_t;

// ABI 3 (Linux 6.2) added the truncate right; Debian 12's headers predate it.
constexpr Access kTruncate = Access{1} << 14;

constexpr Access kReadFile = LANDLOCK_ACCESS_FS_READ_FILE;
constexpr Access kRead = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
// What a rule on a file (not a directory) may hold.
constexpr Access kFileRights =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | kTruncate;

// Every right the ABI knows: handled, so denied wherever no rule grants it.
Access handled_for(int abi) noexcept {
  Access all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: EXECUTE .. MAKE_SYM
  if (abi >= 2) all |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) all |= kTruncate;
  return all;
}

long add_rule(int ruleset, int fd, Access allowed) noexcept {
  landlock_path_beneath_attr attr{};
  attr.allowed_access = allowed;
  attr.parent_fd = fd;
  return sys::call(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, reinterpret_cast<long>(&attr), 0);
}

// The files (not directories) the program holds when it starts — its
// stdin redirected from a file, its stdout to one, a terminal — each for
// what its descriptor was opened for: the view lets the program reopen
// them through /proc/self/fd/N (`cat /dev/stdin`) for that much, and the
// host kernel must agree. A directory is left out: a rule on it would
// reach its whole tree, which the view does not.
long add_held_files(int ruleset, Access handled) noexcept {
  const long list = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/thread-self/fd"),
                              O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (sys::failed(list)) return list;
  UniqueFd listing(static_cast<int>(list));
  alignas(8) char buffer[4096];
  for (long n; (n = sys::call(SYS_getdents64, listing.get(), reinterpret_cast<long>(buffer), sizeof buffer)) > 0;) {
    for (long at = 0; at < n;) {
      const auto* entry = reinterpret_cast<const struct dirent64*>(buffer + at);
      at += entry->d_reclen;
      if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
      const int fd = std::atoi(entry->d_name);
      if (fd == listing.get() || is_dunk_fd(fd)) continue;
      struct stat st {};
      if (sys::call(SYS_newfstatat, fd, reinterpret_cast<long>(""), reinterpret_cast<long>(&st), AT_EMPTY_PATH) != 0 ||
          !(S_ISREG(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
        continue;
      }
      const long flags = sys::call(SYS_fcntl, fd, F_GETFL);
      if (flags < 0 || (flags & O_PATH) != 0) continue;
      Access allowed = 0;
      if ((flags & O_ACCMODE) != O_WRONLY) allowed |= LANDLOCK_ACCESS_FS_READ_FILE;
      if ((flags & O_ACCMODE) != O_RDONLY) allowed |= LANDLOCK_ACCESS_FS_WRITE_FILE | kTruncate;
      // A file of an internal mount (a memfd) takes no rule (EBADFD):
      // Landlock does not govern it, and the view reopens it as a descriptor.
      if (const long err = add_rule(ruleset, fd, allowed & handled); err != 0 && err != -EBADFD) return err;
    }
  }
  return 0;
}

}  // namespace

int landlock_abi() noexcept {
  const long abi = sys::call(SYS_landlock_create_ruleset, 0, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

Status apply_landlock(const FsView& view, const std::string& extra_file) noexcept {
  const int abi = landlock_abi();
  if (abi == 0) return Error{"Landlock is not available", ENOSYS};
  const Access handled = handled_for(abi);
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = handled;
  const long ruleset = sys::call(SYS_landlock_create_ruleset, reinterpret_cast<long>(&attr), sizeof attr, 0);
  if (sys::failed(ruleset)) return errno_error("landlock_create_ruleset failed", ruleset);
  UniqueFd hold(static_cast<int>(ruleset));
  for (const FsView::Mount& m : view.mounts()) {
    Access allowed = m.skeleton ? (LANDLOCK_ACCESS_FS_READ_DIR | kReadFile) : m.writable ? handled : kRead;
    if (!m.directory) allowed &= kFileRights;
    if (const long err = add_rule(hold.get(), m.fd, allowed & handled); err != 0) {
      return errno_error("landlock_add_rule(a bind) failed", err);
    }
  }
  if (const long err = add_held_files(hold.get(), handled); err != 0) {
    return errno_error("landlock_add_rule(a file the program holds) failed", err);
  }
  // dunk's own: listing /proc/self/fd (execve's close-on-exec) and reading
  // /proc/self/maps (a fork child's address-space mirror reads its own).
  // A rule names an inode, and every fork child's /proc/self is another,
  // so the rule is all of /proc, for reading only: nothing of /proc can be
  // opened for writing, /proc/PID/mem included.
  const long proc = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc"), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (!sys::failed(proc)) {
    UniqueFd proc_fd(static_cast<int>(proc));
    if (const long err = add_rule(hold.get(), proc_fd.get(), LANDLOCK_ACCESS_FS_READ_DIR | kReadFile); err != 0) {
      return errno_error("landlock_add_rule(/proc) failed", err);
    }
  }
  if (!extra_file.empty()) {
    const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(extra_file.c_str()), O_PATH | O_CLOEXEC);
    if (sys::failed(fd)) return errno_error("open(the statistics file) failed", fd);
    UniqueFd file(static_cast<int>(fd));
    const Access rw = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | (abi >= 3 ? kTruncate : 0);
    if (const long err = add_rule(hold.get(), file.get(), rw); err != 0) {
      return errno_error("landlock_add_rule(the statistics file) failed", err);
    }
  }
  // Landlock demands no_new_privs (or CAP_SYS_ADMIN); the sandbox never
  // executes a set-user-ID program anyway: execve is dunk's own loader.
  if (const long err = sys::call(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != 0) {
    return errno_error("prctl(PR_SET_NO_NEW_PRIVS) failed", err);
  }
  if (const long err = sys::call(SYS_landlock_restrict_self, hold.get(), 0); err != 0) {
    return errno_error("landlock_restrict_self failed", err);
  }
  return {};
}

// ---- seccomp -------------------------------------------------------------------

namespace {

// What dunk's own code asks of the host kernel once the program runs,
// whatever the program does: read off the code that makes them (the
// supervisor's, the monitor's, the kvm layer's) and measured by running
// programs under a filter that logs what it would refuse
// (tests/cli/sandbox_host_layer_test.sh's header has the command; the
// measurement found modify_ldt, the process_vm_* pair and readlinkat).
// One entry per reason; dunk needs every call listed here whatever the
// policy says, so none of them is ever stopped by this filter.
constexpr int kDunkCalls[] = {
    // The VM: KVM_RUN and every other KVM ioctl (the vCPUs of new threads,
    // a fork child's new VM), the vCPU's run area.
    SYS_ioctl, SYS_mmap, SYS_munmap, SYS_mprotect, SYS_madvise, SYS_mremap, SYS_brk,
    // Threads: a program thread is a pthread of dunk's (stack, TLS, robust
    // list, rseq as glibc registers them), parked on futexes.
    SYS_clone, SYS_clone3, SYS_futex, SYS_set_robust_list, SYS_rseq, SYS_exit, SYS_exit_group,
    SYS_sched_yield, SYS_gettid, SYS_getpid,
    // Signals: the supervisor's host handlers, their masks, their returns,
    // the cheap call that lets the monitor deliver them (getppid), the
    // signal that ends the process as the program's did.
    SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_sigaltstack, SYS_getppid, SYS_tgkill, SYS_kill,
    // An execve stopping the other threads: the signal that asks each to
    // park (with a cookie in its siginfo), their masks and their ends read
    // from /proc/self/task (thread_stop.cc).
    SYS_rt_tgsigqueueinfo,
    // Reports and statistics.
    SYS_write, SYS_writev,
    // Descriptors: dunk's placed out of the program's range (fcntl,
    // prlimit64), closed, listed at execve (getdents64 of /proc/self/fd).
    // prlimit64 also serves the program's getrlimit, setrlimit and
    // prlimit64 (limits.cc) and drops the core-dump limit before the
    // process dies of the program's fatal signal.
    SYS_close, SYS_fcntl, SYS_dup3, SYS_prlimit64, SYS_getdents64,
    // The loader (at execve): the program's files, AT_RANDOM, auxv's ids,
    // the process's name.
    SYS_openat, SYS_read, SYS_pread64, SYS_fstat, SYS_newfstatat, SYS_faccessat2, SYS_access, SYS_getrandom,
    SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid, SYS_prctl, SYS_getrlimit,
    // /proc: a fork child's mirror reads /proc/self/maps; a /proc/PID/mem
    // descriptor is recognised by its link and file system.
    SYS_readlink, SYS_fstatfs,
    // The monitor reads and writes the process's own memory through the
    // kernel, so that a bad pointer fails a copy instead of faulting it
    // (core/monitor_context.h): signal frames, the old masks and sets it
    // answers. It names a descriptor by its /proc link (getdents64 of
    // /proc/self/fd hides dunk's).
    SYS_process_vm_readv, SYS_process_vm_writev, SYS_readlinkat, SYS_lseek,
    // A fork child's VM: the LDT it mirrors (read), the FS and GS bases it
    // resumes with, the address-space mirror's probe file.
    SYS_modify_ldt, SYS_arch_prctl, SYS_memfd_create, SYS_pwrite64, SYS_clock_gettime,
    // System V segments the program attaches are attached by dunk.
    SYS_shmat, SYS_shmdt,
    // A fork child's first call in VM mode; restarted calls.
    SYS_restart_syscall,
    // The old program's POSIX timers, deleted at an execve.
    SYS_timer_delete,
    // A fork child the table of the sandbox's processes could not take,
    // killed and reaped before the program hears of it (members.h).
    SYS_wait4,
};

// What the file-system view adds: its lookups (openat2 from the pinned
// descriptors, fstat, readlinkat of symlinks, fstatfs for /proc), the
// working directory it enters.
constexpr int kViewCalls[] = {SYS_openat2, SYS_newfstatat, SYS_readlinkat, SYS_fstatfs, SYS_close, SYS_fchdir};

// Whether some rule or the default lets `nr` run for some arguments: the
// rules in decide()'s order, until one without comparisons decides every
// call left.
bool may_allow(const Policy& policy, int nr) noexcept {
  for (const Rule& r : policy.rules_of(nr)) {
    if (!denies(r.action)) return true;
    if (r.count == 0) return false;
  }
  return !denies(policy.default_action());
}

// The calls the supervisor serves itself never reach the kernel as the
// program made them (execve loads in ring 0, clone starts dunk's threads,
// ptrace is refused, ...): the policy allowing them lets none through.
// prctl, modify_ldt and close_range are served by passing some on;
// timer_create and timer_delete are passed on (their ids kept).
bool served_by_supervisor(int nr) noexcept {
  return emulated(nr) != nullptr && nr != SYS_prctl && nr != SYS_modify_ldt && nr != SYS_close_range &&
         nr != SYS_timer_create && nr != SYS_timer_delete;
}

}  // namespace

std::vector<int> host_filter_calls(const Policy& policy, OnViolation on_violation, HostFilterFor with) {
  if (on_violation == OnViolation::kLog) return {};
  const bool view = with.view;
  std::vector<int> calls(std::begin(kDunkCalls), std::end(kDunkCalls));
  if (view) calls.insert(calls.end(), std::begin(kViewCalls), std::end(kViewCalls));
  // listen is decided on the address the socket is bound to, which the
  // supervisor asks the host for (network.cc).
  if (with.network && may_allow(policy, SYS_listen)) calls.push_back(SYS_getsockname);
  for (int nr = 0; nr <= static_cast<int>(abi::kMaxSyscall); ++nr) {
    if (abi::lookup(static_cast<std::uint64_t>(nr)) == nullptr || !may_allow(policy, nr)) continue;
    if (view && served_by_view(nr)) {
      for (int issued : view_calls_for(nr)) {
        if (issued >= 0) calls.push_back(issued);
      }
    } else if (!served_by_supervisor(nr)) {
      calls.push_back(nr);
    }
  }
  std::sort(calls.begin(), calls.end());
  calls.erase(std::unique(calls.begin(), calls.end()), calls.end());
  return calls;
}

Status install_host_filter(const void* program, std::size_t count) noexcept {
  if (count == 0 || count > BPF_MAXINSNS) return Error{"a host filter of no or too many instructions", EINVAL};
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(count);
  prog.filter = static_cast<sock_filter*>(const_cast<void*>(program));
  if (const long err = sys::call(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != 0) {
    return errno_error("prctl(PR_SET_NO_NEW_PRIVS) failed", err);
  }
  const long ret = sys::call(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, reinterpret_cast<long>(&prog));
  if (ret != 0) return errno_error("seccomp(SECCOMP_SET_MODE_FILTER) failed", ret < 0 ? ret : -ESRCH);
  return {};
}

}  // namespace dunk::sandbox
