// System-call names, in ONE place.
//
// TEMPORARY (x86-64 part): until the system-call schema of src/abi
// (abi::lookup(name), abi::name_of(number)) lands, the x86-64 names and
// numbers below stand in for it. They are asm/unistd_64.h of Linux 6.1
// (Debian 12), the table the schema describes. When the schema is here,
// x86_64_number() and x86_64_name() become calls to it and kX86_64 goes.
//
// The second list stays: names Linux gives system calls of other
// architectures (and x86-64 calls newer than Linux 6.1), which multi-
// architecture policies such as Docker's name. A policy may name them; on
// x86-64 they match nothing, as libseccomp and runc treat them.
#include "sandbox/syscall_names.h"

#include <algorithm>
#include <array>

namespace dunk::sandbox {
namespace {

struct NumberedName {
  int number;
  std::string_view name;
};

// asm/unistd_64.h (Linux 6.1), in number order.
constexpr NumberedName kX86_64[] = {
    {0, "read"}, {1, "write"}, {2, "open"}, {3, "close"}, {4, "stat"}, {5, "fstat"}, {6, "lstat"},
    {7, "poll"}, {8, "lseek"}, {9, "mmap"}, {10, "mprotect"}, {11, "munmap"}, {12, "brk"},
    {13, "rt_sigaction"}, {14, "rt_sigprocmask"}, {15, "rt_sigreturn"}, {16, "ioctl"},
    {17, "pread64"}, {18, "pwrite64"}, {19, "readv"}, {20, "writev"}, {21, "access"}, {22, "pipe"},
    {23, "select"}, {24, "sched_yield"}, {25, "mremap"}, {26, "msync"}, {27, "mincore"},
    {28, "madvise"}, {29, "shmget"}, {30, "shmat"}, {31, "shmctl"}, {32, "dup"}, {33, "dup2"},
    {34, "pause"}, {35, "nanosleep"}, {36, "getitimer"}, {37, "alarm"}, {38, "setitimer"},
    {39, "getpid"}, {40, "sendfile"}, {41, "socket"}, {42, "connect"}, {43, "accept"},
    {44, "sendto"}, {45, "recvfrom"}, {46, "sendmsg"}, {47, "recvmsg"}, {48, "shutdown"},
    {49, "bind"}, {50, "listen"}, {51, "getsockname"}, {52, "getpeername"}, {53, "socketpair"},
    {54, "setsockopt"}, {55, "getsockopt"}, {56, "clone"}, {57, "fork"}, {58, "vfork"},
    {59, "execve"}, {60, "exit"}, {61, "wait4"}, {62, "kill"}, {63, "uname"}, {64, "semget"},
    {65, "semop"}, {66, "semctl"}, {67, "shmdt"}, {68, "msgget"}, {69, "msgsnd"}, {70, "msgrcv"},
    {71, "msgctl"}, {72, "fcntl"}, {73, "flock"}, {74, "fsync"}, {75, "fdatasync"},
    {76, "truncate"}, {77, "ftruncate"}, {78, "getdents"}, {79, "getcwd"}, {80, "chdir"},
    {81, "fchdir"}, {82, "rename"}, {83, "mkdir"}, {84, "rmdir"}, {85, "creat"}, {86, "link"},
    {87, "unlink"}, {88, "symlink"}, {89, "readlink"}, {90, "chmod"}, {91, "fchmod"}, {92, "chown"},
    {93, "fchown"}, {94, "lchown"}, {95, "umask"}, {96, "gettimeofday"}, {97, "getrlimit"},
    {98, "getrusage"}, {99, "sysinfo"}, {100, "times"}, {101, "ptrace"}, {102, "getuid"},
    {103, "syslog"}, {104, "getgid"}, {105, "setuid"}, {106, "setgid"}, {107, "geteuid"},
    {108, "getegid"}, {109, "setpgid"}, {110, "getppid"}, {111, "getpgrp"}, {112, "setsid"},
    {113, "setreuid"}, {114, "setregid"}, {115, "getgroups"}, {116, "setgroups"},
    {117, "setresuid"}, {118, "getresuid"}, {119, "setresgid"}, {120, "getresgid"},
    {121, "getpgid"}, {122, "setfsuid"}, {123, "setfsgid"}, {124, "getsid"}, {125, "capget"},
    {126, "capset"}, {127, "rt_sigpending"}, {128, "rt_sigtimedwait"}, {129, "rt_sigqueueinfo"},
    {130, "rt_sigsuspend"}, {131, "sigaltstack"}, {132, "utime"}, {133, "mknod"}, {134, "uselib"},
    {135, "personality"}, {136, "ustat"}, {137, "statfs"}, {138, "fstatfs"}, {139, "sysfs"},
    {140, "getpriority"}, {141, "setpriority"}, {142, "sched_setparam"}, {143, "sched_getparam"},
    {144, "sched_setscheduler"}, {145, "sched_getscheduler"}, {146, "sched_get_priority_max"},
    {147, "sched_get_priority_min"}, {148, "sched_rr_get_interval"}, {149, "mlock"},
    {150, "munlock"}, {151, "mlockall"}, {152, "munlockall"}, {153, "vhangup"}, {154, "modify_ldt"},
    {155, "pivot_root"}, {156, "_sysctl"}, {157, "prctl"}, {158, "arch_prctl"}, {159, "adjtimex"},
    {160, "setrlimit"}, {161, "chroot"}, {162, "sync"}, {163, "acct"}, {164, "settimeofday"},
    {165, "mount"}, {166, "umount2"}, {167, "swapon"}, {168, "swapoff"}, {169, "reboot"},
    {170, "sethostname"}, {171, "setdomainname"}, {172, "iopl"}, {173, "ioperm"},
    {174, "create_module"}, {175, "init_module"}, {176, "delete_module"}, {177, "get_kernel_syms"},
    {178, "query_module"}, {179, "quotactl"}, {180, "nfsservctl"}, {181, "getpmsg"},
    {182, "putpmsg"}, {183, "afs_syscall"}, {184, "tuxcall"}, {185, "security"}, {186, "gettid"},
    {187, "readahead"}, {188, "setxattr"}, {189, "lsetxattr"}, {190, "fsetxattr"},
    {191, "getxattr"}, {192, "lgetxattr"}, {193, "fgetxattr"}, {194, "listxattr"},
    {195, "llistxattr"}, {196, "flistxattr"}, {197, "removexattr"}, {198, "lremovexattr"},
    {199, "fremovexattr"}, {200, "tkill"}, {201, "time"}, {202, "futex"},
    {203, "sched_setaffinity"}, {204, "sched_getaffinity"}, {205, "set_thread_area"},
    {206, "io_setup"}, {207, "io_destroy"}, {208, "io_getevents"}, {209, "io_submit"},
    {210, "io_cancel"}, {211, "get_thread_area"}, {212, "lookup_dcookie"}, {213, "epoll_create"},
    {214, "epoll_ctl_old"}, {215, "epoll_wait_old"}, {216, "remap_file_pages"}, {217, "getdents64"},
    {218, "set_tid_address"}, {219, "restart_syscall"}, {220, "semtimedop"}, {221, "fadvise64"},
    {222, "timer_create"}, {223, "timer_settime"}, {224, "timer_gettime"},
    {225, "timer_getoverrun"}, {226, "timer_delete"}, {227, "clock_settime"},
    {228, "clock_gettime"}, {229, "clock_getres"}, {230, "clock_nanosleep"}, {231, "exit_group"},
    {232, "epoll_wait"}, {233, "epoll_ctl"}, {234, "tgkill"}, {235, "utimes"}, {236, "vserver"},
    {237, "mbind"}, {238, "set_mempolicy"}, {239, "get_mempolicy"}, {240, "mq_open"},
    {241, "mq_unlink"}, {242, "mq_timedsend"}, {243, "mq_timedreceive"}, {244, "mq_notify"},
    {245, "mq_getsetattr"}, {246, "kexec_load"}, {247, "waitid"}, {248, "add_key"},
    {249, "request_key"}, {250, "keyctl"}, {251, "ioprio_set"}, {252, "ioprio_get"},
    {253, "inotify_init"}, {254, "inotify_add_watch"}, {255, "inotify_rm_watch"},
    {256, "migrate_pages"}, {257, "openat"}, {258, "mkdirat"}, {259, "mknodat"}, {260, "fchownat"},
    {261, "futimesat"}, {262, "newfstatat"}, {263, "unlinkat"}, {264, "renameat"}, {265, "linkat"},
    {266, "symlinkat"}, {267, "readlinkat"}, {268, "fchmodat"}, {269, "faccessat"},
    {270, "pselect6"}, {271, "ppoll"}, {272, "unshare"}, {273, "set_robust_list"},
    {274, "get_robust_list"}, {275, "splice"}, {276, "tee"}, {277, "sync_file_range"},
    {278, "vmsplice"}, {279, "move_pages"}, {280, "utimensat"}, {281, "epoll_pwait"},
    {282, "signalfd"}, {283, "timerfd_create"}, {284, "eventfd"}, {285, "fallocate"},
    {286, "timerfd_settime"}, {287, "timerfd_gettime"}, {288, "accept4"}, {289, "signalfd4"},
    {290, "eventfd2"}, {291, "epoll_create1"}, {292, "dup3"}, {293, "pipe2"},
    {294, "inotify_init1"}, {295, "preadv"}, {296, "pwritev"}, {297, "rt_tgsigqueueinfo"},
    {298, "perf_event_open"}, {299, "recvmmsg"}, {300, "fanotify_init"}, {301, "fanotify_mark"},
    {302, "prlimit64"}, {303, "name_to_handle_at"}, {304, "open_by_handle_at"},
    {305, "clock_adjtime"}, {306, "syncfs"}, {307, "sendmmsg"}, {308, "setns"}, {309, "getcpu"},
    {310, "process_vm_readv"}, {311, "process_vm_writev"}, {312, "kcmp"}, {313, "finit_module"},
    {314, "sched_setattr"}, {315, "sched_getattr"}, {316, "renameat2"}, {317, "seccomp"},
    {318, "getrandom"}, {319, "memfd_create"}, {320, "kexec_file_load"}, {321, "bpf"},
    {322, "execveat"}, {323, "userfaultfd"}, {324, "membarrier"}, {325, "mlock2"},
    {326, "copy_file_range"}, {327, "preadv2"}, {328, "pwritev2"}, {329, "pkey_mprotect"},
    {330, "pkey_alloc"}, {331, "pkey_free"}, {332, "statx"}, {333, "io_pgetevents"}, {334, "rseq"},
    {424, "pidfd_send_signal"}, {425, "io_uring_setup"}, {426, "io_uring_enter"},
    {427, "io_uring_register"}, {428, "open_tree"}, {429, "move_mount"}, {430, "fsopen"},
    {431, "fsconfig"}, {432, "fsmount"}, {433, "fspick"}, {434, "pidfd_open"}, {435, "clone3"},
    {436, "close_range"}, {437, "openat2"}, {438, "pidfd_getfd"}, {439, "faccessat2"},
    {440, "process_madvise"}, {441, "epoll_pwait2"}, {442, "mount_setattr"}, {443, "quotactl_fd"},
    {444, "landlock_create_ruleset"}, {445, "landlock_add_rule"}, {446, "landlock_restrict_self"},
    {447, "memfd_secret"}, {448, "process_mrelease"}, {449, "futex_waitv"},
    {450, "set_mempolicy_home_node"},
};

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

// The name lookup is a linear scan at load time only (a policy names a few
// hundred calls); decide() never uses names.
}  // namespace

std::optional<int> x86_64_number(std::string_view name) noexcept {
  for (const NumberedName& n : kX86_64) {
    if (n.name == name) return n.number;
  }
  return std::nullopt;
}

const char* x86_64_name(int number) noexcept {
  // The table is in number order with gaps: a binary search on the number.
  const auto* it = std::lower_bound(std::begin(kX86_64), std::end(kX86_64), number,
                                    [](const NumberedName& n, int nr) { return n.number < nr; });
  if (it == std::end(kX86_64) || it->number != number) return nullptr;
  return it->name.data();  // the literals are NUL-terminated
}

int x86_64_max_number() noexcept { return std::end(kX86_64)[-1].number; }

bool is_other_linux_call(std::string_view name) noexcept {
  return std::binary_search(std::begin(kOtherNames), std::end(kOtherNames), name);
}

}  // namespace dunk::sandbox
