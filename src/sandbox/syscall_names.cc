// System-call names for policies. x86-64's come from the system-call schema
// (src/abi/syscalls.h), the one table of them. The list here is of the
// names Linux gives system calls of other architectures (and x86-64 calls
// newer than the schema's Linux 6.1), which multi-architecture policies such
// as Docker's name: a policy may name them, and on x86-64 they match
// nothing, as libseccomp and runc treat them.
#include "sandbox/syscall_names.h"

#include "abi/syscalls.h"

#include <algorithm>
#include <array>

namespace dunk::sandbox {
namespace {

// Names of other architectures' calls and of x86-64 calls after Linux 6.1,
// sorted (binary search).
constexpr std::string_view kOtherNames[] = {
    "_llseek", "_newselect", "arm_fadvise64_64", "arm_sync_file_range", "atomic_barrier",
    "atomic_cmpxchg_32", "bdflush", "break", "breakpoint", "cachectl", "cacheflush", "cachestat",
    "chown32", "clock_adjtime64", "clock_getres_time64", "clock_gettime64",
    "clock_nanosleep_time64", "clock_settime64", "fadvise64_64", "fchmodat2", "fchown32", "fcntl64",
    "file_getattr", "file_setattr", "fstat64", "fstatat64", "fstatfs64", "ftime", "ftruncate64",
    "futex_requeue", "futex_time64", "futex_wait", "futex_wake", "get_tls", "getegid32",
    "geteuid32", "getgid32", "getgroups32", "getpagesize", "getresgid32", "getresuid32", "getuid32",
    "getxattrat", "gtty", "idle", "io_pgetevents_time64", "ipc", "lchown32", "listmount", "listns",
    "listxattrat", "lock", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "lstat64",
    "map_shadow_stack", "mmap2", "mpx", "mq_timedreceive_time64", "mq_timedsend_time64", "mseal",
    "multiplexer", "nice", "oldfstat", "oldlstat", "oldolduname", "oldstat", "olduname",
    "open_tree_attr", "pciconfig_iobase", "pciconfig_read", "pciconfig_write", "ppoll_time64",
    "prof", "profil", "pselect6_time64", "readdir", "recv", "recvmmsg_time64", "removexattrat",
    "riscv_flush_icache", "riscv_hwprobe", "rseq_slice_yield", "rt_sigtimedwait_time64", "rtas",
    "s390_guarded_storage", "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr",
    "s390_sthyi", "sched_rr_get_interval_time64", "semtimedop_time64", "send", "sendfile64",
    "set_tls", "setfsgid32", "setfsuid32", "setgid32", "setgroups32", "setregid32", "setresgid32",
    "setresuid32", "setreuid32", "setuid32", "setxattrat", "sgetmask", "sigaction", "signal",
    "sigpending", "sigprocmask", "sigreturn", "sigsuspend", "socketcall", "spu_create", "spu_run",
    "ssetmask", "stat64", "statfs64", "statmount", "stime", "stty", "subpage_prot", "swapcontext",
    "switch_endian", "sync_file_range2", "sys_debug_setcontext", "syscall", "sysmips",
    "timer_gettime64", "timer_settime64", "timerfd", "timerfd_gettime64", "timerfd_settime64",
    "truncate64", "ugetrlimit", "ulimit", "umount", "uprobe", "uretprobe", "usr26", "usr32",
    "utimensat_time64", "vm86", "vm86old", "waitpid",
};

}  // namespace

std::optional<int> x86_64_number(std::string_view name) noexcept {
  const abi::CallSpec* call = abi::lookup(name);
  if (call == nullptr) return std::nullopt;
  return call->number;
}

const char* x86_64_name(int number) noexcept { return number < 0 ? nullptr : abi::name_of(static_cast<unsigned>(number)); }

int x86_64_max_number() noexcept { return static_cast<int>(abi::kMaxSyscall); }

bool is_other_linux_call(std::string_view name) noexcept {
  return std::binary_search(std::begin(kOtherNames), std::end(kOtherNames), name);
}

}  // namespace dunk::sandbox
