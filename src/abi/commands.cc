// The command tables: per command value, the arguments it gives meaning to
// (by index in the call's argument list). Values and structure sizes are
// those of Linux 6.1's uapi headers; an unlisted command is what the
// table's `unknown` says.
#include "abi/commands.h"

#include <algorithm>
#include <array>
#include <initializer_list>

#include "abi/layouts.h"
#include "abi/spec.h"

namespace dunk::abi {
namespace {

using namespace spec;
using L = Length;
using W = Written;
namespace lay = layout;

struct Set {
  unsigned index;
  Arg arg;
};

constexpr Command row(std::uint64_t value, const char* name, std::initializer_list<Set> sets = {},
                      std::uint16_t flags = 0, const char* incomplete = nullptr) {
  Command c;
  c.value = value;
  c.name = name;
  for (const Set& s : sets) {
    c.overrides = static_cast<std::uint8_t>(c.overrides | (1u << s.index));
    c.args[s.index] = s.arg;
  }
  c.flags = flags;
  c.incomplete = incomplete;
  return c;
}
// A command whose arguments the table cannot describe.
constexpr Command opaque(std::uint64_t value, const char* name, const char* why) {
  return row(value, name, {}, 0, why);
}

constexpr Arg struct_in(const char* n, std::uint32_t size) { return in(n, L::fixed(size)); }
constexpr Arg struct_out(const char* n, std::uint32_t size) { return out(n, L::fixed(size)); }
constexpr Arg struct_inout(const char* n, std::uint32_t size) { return inout(n, L::fixed(size)); }
constexpr Arg int_in(const char* n) { return struct_in(n, 4); }
constexpr Arg int_out(const char* n) { return struct_out(n, 4); }
constexpr Arg long_out(const char* n) { return struct_out(n, 8); }
constexpr Arg timespec_in(const char* n) { return in(n, L::fixed(lay::kTimespecSize), Shape::kTimespec); }
constexpr Arg futex_word_in(const char* n) { return in(n, L::fixed(4)); }
constexpr Arg futex_word_rw(const char* n) { return inout(n, L::fixed(4)); }
constexpr Arg futex_key(const char* n) { return addr(n, L::fixed(4)); }
constexpr Arg fprog(const char* n) {
  return nested(n, Dir::kRead, Shape::kSockFprog, L::fixed(lay::kSockFprogSize), Dir::kRead);
}

// ioctl: the request is argument 1, its argument 2.
constexpr Command ioctl_none(std::uint32_t request, const char* name, std::uint16_t flags = 0) {
  return row(request, name, {{2, unused()}}, flags);
}
constexpr Command ioctl_value(std::uint32_t request, const char* name, Arg a) { return row(request, name, {{2, a}}); }
constexpr Command ioctl_in(std::uint32_t request, const char* name, std::uint32_t size) {
  return row(request, name, {{2, struct_in("argp", size)}});
}
constexpr Command ioctl_out(std::uint32_t request, const char* name, std::uint32_t size) {
  return row(request, name, {{2, struct_out("argp", size)}});
}
constexpr Command ioctl_inout(std::uint32_t request, const char* name, std::uint32_t size) {
  return row(request, name, {{2, struct_inout("argp", size)}});
}

// The terminal, socket and file ioctls programs use without knowing it
// (isatty, a pty, a nonblocking socket). Sizes: the kernel's termios (36),
// termio (18), winsize (8), ifreq (40); old timeval/timespec (16).
constexpr std::uint32_t kTermioSize = 18;
constexpr Command kIoctls[] = {
    ioctl_value(1, "FIBMAP", struct_inout("argp", 4)),
    ioctl_out(2, "FIGETBSZ", 4),
    ioctl_out(0x5401, "TCGETS", lay::kTermiosSize),
    ioctl_in(0x5402, "TCSETS", lay::kTermiosSize),
    ioctl_in(0x5403, "TCSETSW", lay::kTermiosSize),
    ioctl_in(0x5404, "TCSETSF", lay::kTermiosSize),
    ioctl_out(0x5405, "TCGETA", kTermioSize),
    ioctl_in(0x5406, "TCSETA", kTermioSize),
    ioctl_in(0x5407, "TCSETAW", kTermioSize),
    ioctl_in(0x5408, "TCSETAF", kTermioSize),
    ioctl_value(0x5409, "TCSBRK", i32("arg")),
    ioctl_value(0x540A, "TCXONC", i32("arg")),
    ioctl_value(0x540B, "TCFLSH", i32("arg")),
    ioctl_none(0x540C, "TIOCEXCL"),
    ioctl_none(0x540D, "TIOCNXCL"),
    ioctl_value(0x540E, "TIOCSCTTY", i32("arg")),
    ioctl_out(0x540F, "TIOCGPGRP", 4),
    ioctl_in(0x5410, "TIOCSPGRP", 4),
    ioctl_out(0x5411, "TIOCOUTQ", 4),
    ioctl_in(0x5412, "TIOCSTI", 1),
    ioctl_out(0x5413, "TIOCGWINSZ", lay::kWinsizeSize),
    ioctl_in(0x5414, "TIOCSWINSZ", lay::kWinsizeSize),
    ioctl_out(0x5415, "TIOCMGET", 4),
    ioctl_in(0x5416, "TIOCMBIS", 4),
    ioctl_in(0x5417, "TIOCMBIC", 4),
    ioctl_in(0x5418, "TIOCMSET", 4),
    ioctl_out(0x5419, "TIOCGSOFTCAR", 4),
    ioctl_in(0x541A, "TIOCSSOFTCAR", 4),
    ioctl_out(0x541B, "FIONREAD", 4),
    ioctl_none(0x541D, "TIOCCONS"),
    ioctl_in(0x5420, "TIOCPKT", 4),
    ioctl_in(0x5421, "FIONBIO", 4),
    ioctl_none(0x5422, "TIOCNOTTY"),
    ioctl_in(0x5423, "TIOCSETD", 4),
    ioctl_out(0x5424, "TIOCGETD", 4),
    ioctl_value(0x5425, "TCSBRKP", i32("arg")),
    ioctl_none(0x5427, "TIOCSBRK"),
    ioctl_none(0x5428, "TIOCCBRK"),
    ioctl_out(0x5429, "TIOCGSID", 4),
    ioctl_out(0x802C542A, "TCGETS2", lay::kTermios2Size),
    ioctl_in(0x402C542B, "TCSETS2", lay::kTermios2Size),
    ioctl_in(0x402C542C, "TCSETSW2", lay::kTermios2Size),
    ioctl_in(0x402C542D, "TCSETSF2", lay::kTermios2Size),
    ioctl_out(0x80045430, "TIOCGPTN", 4),
    ioctl_in(0x40045431, "TIOCSPTLCK", 4),
    ioctl_out(0x80045432, "TIOCGDEV", 4),
    // Encoded as _IOW(int), but the signal is the argument itself.
    ioctl_value(0x40045436, "TIOCSIG", sig("sig")),
    ioctl_none(0x5437, "TIOCVHANGUP"),
    ioctl_out(0x80045438, "TIOCGPKT", 4),
    ioctl_out(0x80045439, "TIOCGPTLCK", 4),
    ioctl_out(0x80045440, "TIOCGEXCL", 4),
    // Opens the pty's peer: the argument is open flags, the result a descriptor.
    row(0x5441, "TIOCGPTPEER", {{2, flags("flags", Names::kOpenFlags, Type::kInt)}}, kReturnsFd),
    ioctl_none(0x5450, "FIONCLEX"),
    ioctl_none(0x5451, "FIOCLEX"),
    ioctl_in(0x5452, "FIOASYNC", 4),
    ioctl_out(0x5456, "TIOCGLCKTRMIOS", lay::kTermiosSize),
    ioctl_in(0x5457, "TIOCSLCKTRMIOS", lay::kTermiosSize),
    ioctl_out(0x5459, "TIOCSERGETLSR", 4),
    ioctl_out(0x5460, "FIOQSIZE", 8),
    ioctl_in(0x8901, "FIOSETOWN", 4),
    ioctl_in(0x8902, "SIOCSPGRP", 4),
    ioctl_out(0x8903, "FIOGETOWN", 4),
    ioctl_out(0x8904, "SIOCGPGRP", 4),
    ioctl_out(0x8905, "SIOCATMARK", 4),
    ioctl_out(0x8906, "SIOCGSTAMP", 16),
    ioctl_out(0x8907, "SIOCGSTAMPNS", 16),
    ioctl_inout(0x8910, "SIOCGIFNAME", lay::kIfreqSize),
    opaque(0x8912, "SIOCGIFCONF", "struct ifconf points to a buffer of its own"),
    ioctl_inout(0x8913, "SIOCGIFFLAGS", lay::kIfreqSize),
    ioctl_in(0x8914, "SIOCSIFFLAGS", lay::kIfreqSize),
    ioctl_inout(0x8915, "SIOCGIFADDR", lay::kIfreqSize),
    ioctl_inout(0x8917, "SIOCGIFDSTADDR", lay::kIfreqSize),
    ioctl_inout(0x8919, "SIOCGIFBRDADDR", lay::kIfreqSize),
    ioctl_inout(0x891B, "SIOCGIFNETMASK", lay::kIfreqSize),
    ioctl_inout(0x891D, "SIOCGIFMETRIC", lay::kIfreqSize),
    ioctl_inout(0x8921, "SIOCGIFMTU", lay::kIfreqSize),
    ioctl_inout(0x8927, "SIOCGIFHWADDR", lay::kIfreqSize),
    ioctl_inout(0x8933, "SIOCGIFINDEX", lay::kIfreqSize),
    ioctl_inout(0x8942, "SIOCGIFTXQLEN", lay::kIfreqSize),
    ioctl_out(0x894B, "SIOCOUTQNSD", 4),
    // The kernel reads and writes an int, whatever the encoded size says.
    ioctl_out(0x80086601, "FS_IOC_GETFLAGS", 4),
    ioctl_in(0x40086602, "FS_IOC_SETFLAGS", 4),
    ioctl_out(0x80087601, "FS_IOC_GETVERSION", 4),
    ioctl_in(0x40087602, "FS_IOC_SETVERSION", 4),
    // Encoded as _IOW(int), but the source descriptor is the argument itself.
    ioctl_value(0x40049409, "FICLONE", fd("src_fd")),
    ioctl_value(0x4020940D, "FICLONERANGE",
                in("argp", L::fixed(lay::kFileCloneRangeSize), Shape::kFileCloneRange)),
    opaque(0xC0189436, "FIDEDUPERANGE", "holds a descriptor per destination, as many as it says"),
    opaque(0xC020660B, "FS_IOC_FIEMAP", "its length is in its fm_extent_count field"),
    ioctl_inout(0xC0045877, "FIFREEZE", 4),
    ioctl_inout(0xC0045878, "FITHAW", 4),
    ioctl_out(0x80081272, "BLKGETSIZE64", 8),
    // _IO-encoded, but they write through the argument.
    ioctl_out(0x1260, "BLKGETSIZE", 8),
    ioctl_out(0x1268, "BLKSSZGET", 4),
    ioctl_out(0x80045200, "RNDGETENTCNT", 4),
};

constexpr Command kFcntls[] = {
    row(0, "F_DUPFD", {{2, i32("minfd")}}, kReturnsFd),
    row(1, "F_GETFD", {{2, unused()}}),
    row(2, "F_SETFD", {{2, flags("flags", Names::kFdFlags, Type::kInt)}}),
    row(3, "F_GETFL", {{2, unused()}}),
    row(4, "F_SETFL", {{2, flags("flags", Names::kOpenFlags, Type::kInt)}}),
    row(5, "F_GETLK", {{2, struct_inout("lock", lay::kFlockSize)}}),
    row(6, "F_SETLK", {{2, struct_in("lock", lay::kFlockSize)}}),
    row(7, "F_SETLKW", {{2, struct_in("lock", lay::kFlockSize)}}, kBlocks),
    row(8, "F_SETOWN", {{2, pid("owner")}}),
    row(9, "F_GETOWN", {{2, unused()}}),
    row(10, "F_SETSIG", {{2, sig("sig")}}),
    row(11, "F_GETSIG", {{2, unused()}}),
    row(15, "F_SETOWN_EX", {{2, struct_in("owner", lay::kFOwnerExSize)}}),
    row(16, "F_GETOWN_EX", {{2, struct_out("owner", lay::kFOwnerExSize)}}),
    row(17, "F_GETOWNER_UIDS", {{2, struct_out("uids", 8)}}),
    row(36, "F_OFD_GETLK", {{2, struct_inout("lock", lay::kFlockSize)}}),
    row(37, "F_OFD_SETLK", {{2, struct_in("lock", lay::kFlockSize)}}),
    row(38, "F_OFD_SETLKW", {{2, struct_in("lock", lay::kFlockSize)}}, kBlocks),
    row(1024, "F_SETLEASE", {{2, i32("type")}}),
    row(1025, "F_GETLEASE", {{2, unused()}}),
    row(1026, "F_NOTIFY", {{2, hex32("events")}}),
    row(1030, "F_DUPFD_CLOEXEC", {{2, i32("minfd")}}, kReturnsFd),
    row(1031, "F_SETPIPE_SZ", {{2, i32("size")}}),
    row(1032, "F_GETPIPE_SZ", {{2, unused()}}),
    row(1033, "F_ADD_SEALS", {{2, hex32("seals")}}),
    row(1034, "F_GET_SEALS", {{2, unused()}}),
    row(1035, "F_GET_RW_HINT", {{2, long_out("hint")}}),
    row(1036, "F_SET_RW_HINT", {{2, struct_in("hint", 8)}}),
    row(1037, "F_GET_FILE_RW_HINT", {{2, long_out("hint")}}),
    row(1038, "F_SET_FILE_RW_HINT", {{2, struct_in("hint", 8)}}),
};

// futex(uaddr, op, val, timeout or val2, uaddr2, val3). A word used only as
// a key (the wakers) is an address the kernel does not read.
constexpr Command kFutexes[] = {
    row(0, "FUTEX_WAIT", {{0, futex_word_in("uaddr")}, {3, timespec_in("timeout")}, {4, unused()}, {5, unused()}}),
    row(1, "FUTEX_WAKE", {{0, futex_key("uaddr")}, {3, unused()}, {4, unused()}, {5, unused()}}),
    row(3, "FUTEX_REQUEUE", {{0, futex_key("uaddr")}, {3, u32("val2")}, {4, futex_key("uaddr2")}, {5, unused()}}),
    row(4, "FUTEX_CMP_REQUEUE",
        {{0, futex_word_in("uaddr")}, {3, u32("val2")}, {4, futex_key("uaddr2")}, {5, u32("val3")}}),
    row(5, "FUTEX_WAKE_OP",
        {{0, futex_key("uaddr")}, {3, u32("val2")}, {4, futex_word_rw("uaddr2")}, {5, hex32("val3")}}),
    row(6, "FUTEX_LOCK_PI",
        {{0, futex_word_rw("uaddr")}, {2, unused()}, {3, timespec_in("timeout")}, {4, unused()}, {5, unused()}}),
    row(7, "FUTEX_UNLOCK_PI", {{0, futex_word_rw("uaddr")}, {2, unused()}, {3, unused()}, {4, unused()}, {5, unused()}}),
    row(8, "FUTEX_TRYLOCK_PI",
        {{0, futex_word_rw("uaddr")}, {2, unused()}, {3, unused()}, {4, unused()}, {5, unused()}}),
    row(9, "FUTEX_WAIT_BITSET",
        {{0, futex_word_in("uaddr")}, {3, timespec_in("timeout")}, {4, unused()}, {5, hex32("val3")}}),
    row(10, "FUTEX_WAKE_BITSET", {{0, futex_key("uaddr")}, {3, unused()}, {4, unused()}, {5, hex32("val3")}}),
    row(11, "FUTEX_WAIT_REQUEUE_PI",
        {{0, futex_word_in("uaddr")}, {3, timespec_in("timeout")}, {4, futex_word_rw("uaddr2")}, {5, unused()}}),
    row(12, "FUTEX_CMP_REQUEUE_PI",
        {{0, futex_word_in("uaddr")}, {3, u32("val2")}, {4, futex_word_rw("uaddr2")}, {5, u32("val3")}}),
    row(13, "FUTEX_LOCK_PI2",
        {{0, futex_word_rw("uaddr")}, {2, unused()}, {3, timespec_in("timeout")}, {4, unused()}, {5, unused()}}),
};

// prctl(option, arg2, arg3, arg4, arg5): arguments 1-4. Options x86-64
// does not implement fail with EINVAL before touching anything.
constexpr Command kPrctls[] = {
    row(1, "PR_SET_PDEATHSIG", {{1, sig("sig")}}),
    row(2, "PR_GET_PDEATHSIG", {{1, int_out("sig")}}),
    row(3, "PR_GET_DUMPABLE"),
    row(4, "PR_SET_DUMPABLE", {{1, u64("dumpable")}}),
    row(5, "PR_GET_UNALIGN"),
    row(6, "PR_SET_UNALIGN"),
    row(7, "PR_GET_KEEPCAPS"),
    row(8, "PR_SET_KEEPCAPS", {{1, u64("keep")}}),
    row(9, "PR_GET_FPEMU"),
    row(10, "PR_SET_FPEMU"),
    row(11, "PR_GET_FPEXC"),
    row(12, "PR_SET_FPEXC"),
    row(13, "PR_GET_TIMING"),
    row(14, "PR_SET_TIMING", {{1, u64("timing")}}),
    row(15, "PR_SET_NAME", {{1, str("name", lay::kTaskCommLen - 1)}}),
    row(16, "PR_GET_NAME", {{1, struct_out("name", lay::kTaskCommLen)}}),
    row(19, "PR_GET_ENDIAN"),
    row(20, "PR_SET_ENDIAN"),
    row(21, "PR_GET_SECCOMP"),
    // Strict mode must pass NULL, filter mode a struct sock_fprog.
    row(22, "PR_SET_SECCOMP", {{1, u64("mode")}, {2, fprog("filter")}}),
    row(23, "PR_CAPBSET_READ", {{1, u64("cap")}}),
    row(24, "PR_CAPBSET_DROP", {{1, u64("cap")}}),
    row(25, "PR_GET_TSC", {{1, int_out("state")}}),
    row(26, "PR_SET_TSC", {{1, u64("state")}}),
    row(27, "PR_GET_SECUREBITS"),
    row(28, "PR_SET_SECUREBITS", {{1, hex64("bits")}}),
    row(29, "PR_SET_TIMERSLACK", {{1, u64("slack")}}),
    row(30, "PR_GET_TIMERSLACK"),
    row(31, "PR_TASK_PERF_EVENTS_DISABLE"),
    row(32, "PR_TASK_PERF_EVENTS_ENABLE"),
    row(33, "PR_MCE_KILL", {{1, u64("option")}, {2, u64("policy")}}),
    row(34, "PR_MCE_KILL_GET"),
    opaque(35, "PR_SET_MM", "PR_SET_MM_MAP reads a structure with a pointer; others take descriptors"),
    row(36, "PR_SET_CHILD_SUBREAPER", {{1, u64("set")}}),
    row(37, "PR_GET_CHILD_SUBREAPER", {{1, int_out("set")}}),
    row(38, "PR_SET_NO_NEW_PRIVS", {{1, u64("set")}}),
    row(39, "PR_GET_NO_NEW_PRIVS"),
    row(40, "PR_GET_TID_ADDRESS", {{1, long_out("addr")}}),
    row(41, "PR_SET_THP_DISABLE", {{1, u64("disable")}}),
    row(42, "PR_GET_THP_DISABLE"),
    row(43, "PR_MPX_ENABLE_MANAGEMENT"),
    row(44, "PR_MPX_DISABLE_MANAGEMENT"),
    row(45, "PR_SET_FP_MODE"),
    row(46, "PR_GET_FP_MODE"),
    row(47, "PR_CAP_AMBIENT", {{1, u64("op")}, {2, u64("cap")}}),
    row(50, "PR_SVE_SET_VL"),
    row(51, "PR_SVE_GET_VL"),
    row(52, "PR_GET_SPECULATION_CTRL", {{1, u64("which")}}),
    row(53, "PR_SET_SPECULATION_CTRL", {{1, u64("which")}, {2, hex64("control")}}),
    row(54, "PR_PAC_RESET_KEYS"),
    row(55, "PR_SET_TAGGED_ADDR_CTRL"),
    row(56, "PR_GET_TAGGED_ADDR_CTRL"),
    row(57, "PR_SET_IO_FLUSHER", {{1, u64("set")}}),
    row(58, "PR_GET_IO_FLUSHER"),
    // The kernel reads the selector byte on every later system call; the
    // [offset, offset + len) range is code it does not dispatch from.
    row(59, "PR_SET_SYSCALL_USER_DISPATCH",
        {{1, u64("mode")}, {2, addr("offset", L::of_arg(3))}, {3, u64("len")}, {4, async(struct_in("selector", 1))}}),
    row(60, "PR_PAC_SET_ENABLED_KEYS"),
    row(61, "PR_PAC_GET_ENABLED_KEYS"),
    // PR_SCHED_CORE_GET writes the cookie at arg5; the others want it NULL.
    row(62, "PR_SCHED_CORE", {{1, u64("cmd")}, {2, pid("pid")}, {3, u64("type")}, {4, long_out("cookie")}}),
    row(63, "PR_SME_SET_VL"),
    row(64, "PR_SME_GET_VL"),
    row(0x53564d41, "PR_SET_VMA",
        {{1, u64("attr")}, {2, addr("addr", L::of_arg(3))}, {3, u64("size")}, {4, str("name", 80)}}),
    row(0x59616d61, "PR_SET_PTRACER", {{1, pid("pid")}}),
};

constexpr Command kArchPrctls[] = {
    row(0x1001, "ARCH_SET_GS", {{1, ptr("addr")}}),
    row(0x1002, "ARCH_SET_FS", {{1, ptr("addr")}}),
    row(0x1003, "ARCH_GET_FS", {{1, long_out("addr")}}),
    row(0x1004, "ARCH_GET_GS", {{1, long_out("addr")}}),
    row(0x1011, "ARCH_GET_CPUID", {{1, unused()}}),
    row(0x1012, "ARCH_SET_CPUID", {{1, u64("enable")}}),
    row(0x1021, "ARCH_GET_XCOMP_SUPP", {{1, long_out("features")}}),
    row(0x1022, "ARCH_GET_XCOMP_PERM", {{1, long_out("features")}}),
    row(0x1023, "ARCH_REQ_XCOMP_PERM", {{1, u64("feature")}}),
    row(0x1024, "ARCH_GET_XCOMP_GUEST_PERM", {{1, long_out("features")}}),
    row(0x1025, "ARCH_REQ_XCOMP_GUEST_PERM", {{1, u64("feature")}}),
    row(0x2001, "ARCH_MAP_VDSO_X32", {{1, ptr("addr")}}, kChangesMappings, "maps the vDSO, of the kernel's size"),
    row(0x2002, "ARCH_MAP_VDSO_32", {{1, ptr("addr")}}, kChangesMappings, "maps the vDSO, of the kernel's size"),
    row(0x2003, "ARCH_MAP_VDSO_64", {{1, ptr("addr")}}, kChangesMappings, "maps the vDSO, of the kernel's size"),
};

constexpr Command kEpollCtls[] = {
    row(1, "EPOLL_CTL_ADD"),
    row(2, "EPOLL_CTL_DEL", {{3, ptr("event")}}),
    row(3, "EPOLL_CTL_MOD"),
};

// System V IPC: the buffer is argument 2 (shmctl, msgctl) or 3 (semctl).
constexpr Command kShmctls[] = {
    row(0, "IPC_RMID"),
    row(1, "IPC_SET", {{2, struct_in("buf", lay::kShmidDsSize)}}),
    row(2, "IPC_STAT", {{2, struct_out("buf", lay::kShmidDsSize)}}),
    row(3, "IPC_INFO", {{2, struct_out("buf", lay::kShminfoSize)}}),
    row(11, "SHM_LOCK"),
    row(12, "SHM_UNLOCK"),
    row(13, "SHM_STAT", {{2, struct_out("buf", lay::kShmidDsSize)}}),
    row(14, "SHM_INFO", {{2, struct_out("buf", lay::kShmInfoSize)}}),
    row(15, "SHM_STAT_ANY", {{2, struct_out("buf", lay::kShmidDsSize)}}),
};
constexpr Command kMsgctls[] = {
    row(0, "IPC_RMID"),
    row(1, "IPC_SET", {{2, struct_in("buf", lay::kMsqidDsSize)}}),
    row(2, "IPC_STAT", {{2, struct_out("buf", lay::kMsqidDsSize)}}),
    row(3, "IPC_INFO", {{2, struct_out("buf", lay::kMsginfoSize)}}),
    row(11, "MSG_STAT", {{2, struct_out("buf", lay::kMsqidDsSize)}}),
    row(12, "MSG_INFO", {{2, struct_out("buf", lay::kMsginfoSize)}}),
    row(13, "MSG_STAT_ANY", {{2, struct_out("buf", lay::kMsqidDsSize)}}),
};
constexpr const char* kSemArray = "the array has one element per semaphore of the set, a count only the kernel knows";
constexpr Command kSemctls[] = {
    row(0, "IPC_RMID", {{3, unused()}}),
    row(1, "IPC_SET", {{3, struct_in("buf", lay::kSemidDsSize)}}),
    row(2, "IPC_STAT", {{3, struct_out("buf", lay::kSemidDsSize)}}),
    row(3, "IPC_INFO", {{3, struct_out("buf", lay::kSeminfoSize)}}),
    row(11, "GETPID", {{3, unused()}}),
    row(12, "GETVAL", {{3, unused()}}),
    opaque(13, "GETALL", kSemArray),
    row(14, "GETNCNT", {{3, unused()}}),
    row(15, "GETZCNT", {{3, unused()}}),
    row(16, "SETVAL", {{3, i32("val")}}),
    opaque(17, "SETALL", kSemArray),
    row(18, "SEM_STAT", {{3, struct_out("buf", lay::kSemidDsSize)}}),
    row(19, "SEM_INFO", {{3, struct_out("buf", lay::kSeminfoSize)}}),
    row(20, "SEM_STAT_ANY", {{3, struct_out("buf", lay::kSemidDsSize)}}),
};

// keyctl(operation, arg2, arg3, arg4, arg5): arguments 1-4.
constexpr const char* kKeyParams = "its parameter structures hold further pointers";
constexpr Arg key(const char* n) { return i32(n); }
constexpr Command kKeyctls[] = {
    row(0, "KEYCTL_GET_KEYRING_ID", {{1, key("id")}, {2, i32("create")}}),
    row(1, "KEYCTL_JOIN_SESSION_KEYRING", {{1, str("name", lay::kPageSize)}}),
    row(2, "KEYCTL_UPDATE", {{1, key("key")}, {2, in("payload", L::of_arg(3))}, {3, u64("plen")}}),
    row(3, "KEYCTL_REVOKE", {{1, key("key")}}),
    row(4, "KEYCTL_CHOWN", {{1, key("key")}, {2, i32("uid")}, {3, i32("gid")}}),
    row(5, "KEYCTL_SETPERM", {{1, key("key")}, {2, hex32("perm")}}),
    row(6, "KEYCTL_DESCRIBE",
        {{1, key("key")}, {2, out("buffer", L::of_arg(3), W::kReturn)}, {3, u64("buflen")}}),
    row(7, "KEYCTL_CLEAR", {{1, key("keyring")}}),
    row(8, "KEYCTL_LINK", {{1, key("key")}, {2, key("keyring")}}),
    row(9, "KEYCTL_UNLINK", {{1, key("key")}, {2, key("keyring")}}),
    row(10, "KEYCTL_SEARCH",
        {{1, key("keyring")}, {2, str("type", 32)}, {3, str("description", lay::kPageSize)}, {4, key("dest")}}),
    row(11, "KEYCTL_READ", {{1, key("key")}, {2, out("buffer", L::of_arg(3), W::kReturn)}, {3, u64("buflen")}}),
    row(12, "KEYCTL_INSTANTIATE",
        {{1, key("key")}, {2, in("payload", L::of_arg(3))}, {3, u64("plen")}, {4, key("keyring")}}),
    row(13, "KEYCTL_NEGATE", {{1, key("key")}, {2, u64("timeout")}, {3, key("keyring")}}),
    row(14, "KEYCTL_SET_REQKEY_KEYRING", {{1, i32("reqkey_defl")}}),
    row(15, "KEYCTL_SET_TIMEOUT", {{1, key("key")}, {2, u64("timeout")}}),
    row(16, "KEYCTL_ASSUME_AUTHORITY", {{1, key("key")}}),
    row(17, "KEYCTL_GET_SECURITY",
        {{1, key("key")}, {2, out("buffer", L::of_arg(3), W::kReturn)}, {3, u64("buflen")}}),
    row(18, "KEYCTL_SESSION_TO_PARENT"),
    row(19, "KEYCTL_REJECT", {{1, key("key")}, {2, u64("timeout")}, {3, u64("error")}, {4, key("keyring")}}),
    row(20, "KEYCTL_INSTANTIATE_IOV",
        {{1, key("key")},
         {2, nested("payload_iov", Dir::kRead, Shape::kIovecs, L::of_arg(3, lay::kIovecSize), Dir::kRead)},
         {3, u64("ioc")},
         {4, key("keyring")}}),
    row(21, "KEYCTL_INVALIDATE", {{1, key("key")}}),
    row(22, "KEYCTL_GET_PERSISTENT", {{1, i32("uid")}, {2, key("keyring")}}),
    opaque(23, "KEYCTL_DH_COMPUTE", kKeyParams),
    opaque(24, "KEYCTL_PKEY_QUERY", kKeyParams),
    opaque(25, "KEYCTL_PKEY_ENCRYPT", kKeyParams),
    opaque(26, "KEYCTL_PKEY_DECRYPT", kKeyParams),
    opaque(27, "KEYCTL_PKEY_SIGN", kKeyParams),
    opaque(28, "KEYCTL_PKEY_VERIFY", kKeyParams),
    row(29, "KEYCTL_RESTRICT_KEYRING",
        {{1, key("keyring")}, {2, str("type", 32)}, {3, str("restriction", lay::kPageSize)}}),
    row(30, "KEYCTL_MOVE", {{1, key("key")}, {2, key("from")}, {3, key("to")}, {4, hexflags("flags")}}),
    row(31, "KEYCTL_CAPABILITIES", {{1, out("buffer", L::of_arg(2), W::kReturn)}, {2, u64("buflen")}}),
    row(32, "KEYCTL_WATCH_KEY", {{1, key("key")}, {2, optional_fd("watch_queue_fd")}, {3, i32("watch_id")}}),
};

// ptrace(request, pid, addr, data). Addresses in the tracee are values to
// us; what the kernel reads or writes in our memory is at `data`.
constexpr Arg tracee_addr(const char* n) { return ptr(n); }
constexpr Command kPtraces[] = {
    row(0, "PTRACE_TRACEME"),
    row(1, "PTRACE_PEEKTEXT", {{2, tracee_addr("addr")}, {3, long_out("data")}}),
    row(2, "PTRACE_PEEKDATA", {{2, tracee_addr("addr")}, {3, long_out("data")}}),
    row(3, "PTRACE_PEEKUSER", {{2, hex64("offset")}, {3, long_out("data")}}),
    row(4, "PTRACE_POKETEXT", {{2, tracee_addr("addr")}, {3, hex64("data")}}),
    row(5, "PTRACE_POKEDATA", {{2, tracee_addr("addr")}, {3, hex64("data")}}),
    row(6, "PTRACE_POKEUSER", {{2, hex64("offset")}, {3, hex64("data")}}),
    row(7, "PTRACE_CONT", {{3, sig("sig")}}),
    row(8, "PTRACE_KILL"),
    row(9, "PTRACE_SINGLESTEP", {{3, sig("sig")}}),
    row(12, "PTRACE_GETREGS", {{3, struct_out("data", lay::kUserRegsSize)}}),
    row(13, "PTRACE_SETREGS", {{3, struct_in("data", lay::kUserRegsSize)}}),
    row(14, "PTRACE_GETFPREGS", {{3, struct_out("data", lay::kUserFpregsSize)}}),
    row(15, "PTRACE_SETFPREGS", {{3, struct_in("data", lay::kUserFpregsSize)}}),
    row(16, "PTRACE_ATTACH"),
    row(17, "PTRACE_DETACH", {{3, sig("sig")}}),
    row(21, "PTRACE_OLDSETOPTIONS", {{3, hex64("options")}}),
    row(24, "PTRACE_SYSCALL", {{3, sig("sig")}}),
    row(25, "PTRACE_GET_THREAD_AREA", {{2, u64("index")}, {3, struct_out("data", lay::kUserDescSize)}}),
    row(26, "PTRACE_SET_THREAD_AREA", {{2, u64("index")}, {3, struct_in("data", lay::kUserDescSize)}}),
    opaque(30, "PTRACE_ARCH_PRCTL", "reads or writes at addr by the arch_prctl code in data"),
    row(31, "PTRACE_SYSEMU", {{3, sig("sig")}}),
    row(32, "PTRACE_SYSEMU_SINGLESTEP", {{3, sig("sig")}}),
    row(33, "PTRACE_SINGLEBLOCK", {{3, sig("sig")}}),
    row(0x4200, "PTRACE_SETOPTIONS", {{3, hex64("options")}}),
    row(0x4201, "PTRACE_GETEVENTMSG", {{3, long_out("data")}}),
    row(0x4202, "PTRACE_GETSIGINFO", {{3, struct_out("data", lay::kSiginfoSize)}}),
    row(0x4203, "PTRACE_SETSIGINFO", {{3, struct_in("data", lay::kSiginfoSize)}}),
    // The kernel reads the iovec, fills or reads its buffer, and writes
    // back the length it used.
    row(0x4204, "PTRACE_GETREGSET",
        {{2, u64("type")},
         {3, nested("data", Dir::kReadWrite, Shape::kPtraceIovec, L::fixed(lay::kIovecSize), Dir::kWrite,
                    W::kOnSuccess)}}),
    row(0x4205, "PTRACE_SETREGSET",
        {{2, u64("type")},
         {3, nested("data", Dir::kReadWrite, Shape::kPtraceIovec, L::fixed(lay::kIovecSize), Dir::kRead,
                    W::kOnSuccess)}}),
    row(0x4206, "PTRACE_SEIZE", {{3, hex64("options")}}),
    row(0x4207, "PTRACE_INTERRUPT"),
    row(0x4208, "PTRACE_LISTEN"),
    opaque(0x4209, "PTRACE_PEEKSIGINFO", "the buffer's size is in the structure at addr"),
    row(0x420a, "PTRACE_GETSIGMASK", {{2, u64("size")}, {3, out("data", L::of_arg(2))}}),
    row(0x420b, "PTRACE_SETSIGMASK", {{2, u64("size")}, {3, in("data", L::of_arg(2))}}),
    opaque(0x420c, "PTRACE_SECCOMP_GET_FILTER", "the filter's length is known only to the kernel"),
    row(0x420d, "PTRACE_SECCOMP_GET_METADATA", {{2, u64("size")}, {3, inout("data", L::of_arg(2))}}),
    row(0x420e, "PTRACE_GET_SYSCALL_INFO", {{2, u64("size")}, {3, out("data", L::of_arg(2))}}),
    row(0x420f, "PTRACE_GET_RSEQ_CONFIGURATION", {{2, u64("size")}, {3, out("data", L::of_arg(2))}}),
};

constexpr const char* kBpfAttr = "bpf_attr holds pointers and descriptors whose meaning depends on the command";
constexpr Command kBpfs[] = {
    opaque(0, "BPF_MAP_CREATE", kBpfAttr),           opaque(1, "BPF_MAP_LOOKUP_ELEM", kBpfAttr),
    opaque(2, "BPF_MAP_UPDATE_ELEM", kBpfAttr),      opaque(3, "BPF_MAP_DELETE_ELEM", kBpfAttr),
    opaque(4, "BPF_MAP_GET_NEXT_KEY", kBpfAttr),     opaque(5, "BPF_PROG_LOAD", kBpfAttr),
    opaque(6, "BPF_OBJ_PIN", kBpfAttr),              opaque(7, "BPF_OBJ_GET", kBpfAttr),
    opaque(8, "BPF_PROG_ATTACH", kBpfAttr),          opaque(9, "BPF_PROG_DETACH", kBpfAttr),
    opaque(10, "BPF_PROG_TEST_RUN", kBpfAttr),       opaque(11, "BPF_PROG_GET_NEXT_ID", kBpfAttr),
    opaque(12, "BPF_MAP_GET_NEXT_ID", kBpfAttr),     opaque(13, "BPF_PROG_GET_FD_BY_ID", kBpfAttr),
    opaque(14, "BPF_MAP_GET_FD_BY_ID", kBpfAttr),    opaque(15, "BPF_OBJ_GET_INFO_BY_FD", kBpfAttr),
    opaque(16, "BPF_PROG_QUERY", kBpfAttr),          opaque(17, "BPF_RAW_TRACEPOINT_OPEN", kBpfAttr),
    opaque(18, "BPF_BTF_LOAD", kBpfAttr),            opaque(19, "BPF_BTF_GET_FD_BY_ID", kBpfAttr),
    opaque(20, "BPF_TASK_FD_QUERY", kBpfAttr),       opaque(21, "BPF_MAP_LOOKUP_AND_DELETE_ELEM", kBpfAttr),
    opaque(22, "BPF_MAP_FREEZE", kBpfAttr),          opaque(23, "BPF_BTF_GET_NEXT_ID", kBpfAttr),
    opaque(24, "BPF_MAP_LOOKUP_BATCH", kBpfAttr),    opaque(25, "BPF_MAP_LOOKUP_AND_DELETE_BATCH", kBpfAttr),
    opaque(26, "BPF_MAP_UPDATE_BATCH", kBpfAttr),    opaque(27, "BPF_MAP_DELETE_BATCH", kBpfAttr),
    opaque(28, "BPF_LINK_CREATE", kBpfAttr),         opaque(29, "BPF_LINK_UPDATE", kBpfAttr),
    opaque(30, "BPF_LINK_GET_FD_BY_ID", kBpfAttr),   opaque(31, "BPF_LINK_GET_NEXT_ID", kBpfAttr),
    opaque(32, "BPF_ENABLE_STATS", kBpfAttr),        opaque(33, "BPF_ITER_CREATE", kBpfAttr),
    opaque(34, "BPF_LINK_DETACH", kBpfAttr),         opaque(35, "BPF_PROG_BIND_MAP", kBpfAttr),
};

constexpr Command kSeccomps[] = {
    row(0, "SECCOMP_SET_MODE_STRICT", {{2, unused()}}),
    // With SECCOMP_FILTER_FLAG_NEW_LISTENER the result is a descriptor,
    // without it 0: not flagged kReturnsFd.
    row(1, "SECCOMP_SET_MODE_FILTER", {{2, fprog("args")}}),
    row(2, "SECCOMP_GET_ACTION_AVAIL", {{2, int_in("action")}}),
    row(3, "SECCOMP_GET_NOTIF_SIZES", {{2, struct_out("sizes", lay::kSeccompNotifSizesSize)}}),
};

// fsconfig(fd, cmd, key, value, aux): arguments 2-4.
constexpr Arg fs_key() { return str("key", 256); }
constexpr Command kFsconfigs[] = {
    row(0, "FSCONFIG_SET_FLAG", {{2, fs_key()}}),
    row(1, "FSCONFIG_SET_STRING", {{2, fs_key()}, {3, str("value", 256)}}),
    row(2, "FSCONFIG_SET_BINARY", {{2, fs_key()}, {3, in("value", L::of_arg(4))}, {4, i32("size")}}),
    row(3, "FSCONFIG_SET_PATH", {{2, fs_key()}, {3, path("value")}, {4, dirfd("dirfd")}}),
    row(4, "FSCONFIG_SET_PATH_EMPTY", {{2, fs_key()}, {3, path("value")}, {4, dirfd("dirfd")}}),
    row(5, "FSCONFIG_SET_FD", {{2, fs_key()}, {4, fd("fd")}}),
    row(6, "FSCONFIG_CMD_CREATE"),
    row(7, "FSCONFIG_CMD_RECONFIGURE"),
};

// Socket options: key = level << 32 | optname. What is not listed is
// plain bytes for the levels sockopt_completeness() trusts.
constexpr std::uint64_t sockopt(std::uint32_t level, std::uint32_t name) {
  return (std::uint64_t{level} << 32) | name;
}
constexpr std::uint32_t kSolSocket = 1, kSolIp = 0, kSolTcp = 6, kSolIpv6 = 41, kSolXdp = 283;
constexpr Arg bpf_fd_in() { return in("optval", L::fixed(4), Shape::kFds); }
constexpr const char* kNetfilterTable = "the netfilter table holds a pointer to its counters";
constexpr Command kSetsockopts[] = {
    row(sockopt(kSolIp, 64), "IPT_SO_SET_REPLACE", {}, 0, kNetfilterTable),
    row(sockopt(kSolIp, 96), "ARPT_SO_SET_REPLACE", {}, 0, kNetfilterTable),
    row(sockopt(kSolIp, 128), "EBT_SO_SET_ENTRIES", {}, 0, kNetfilterTable),
    row(sockopt(kSolIp, 129), "EBT_SO_SET_COUNTERS", {}, 0, kNetfilterTable),
    row(sockopt(kSolSocket, 26), "SO_ATTACH_FILTER", {{3, fprog("optval")}}),
    row(sockopt(kSolSocket, 50), "SO_ATTACH_BPF", {{3, bpf_fd_in()}}),
    row(sockopt(kSolSocket, 51), "SO_ATTACH_REUSEPORT_CBPF", {{3, fprog("optval")}}),
    row(sockopt(kSolSocket, 52), "SO_ATTACH_REUSEPORT_EBPF", {{3, bpf_fd_in()}}),
    row(sockopt(kSolIpv6, 64), "IP6T_SO_SET_REPLACE", {}, 0, kNetfilterTable),
    row(sockopt(kSolXdp, 4), "XDP_UMEM_REG", {}, 0, "registers memory the kernel accesses later"),
};
constexpr Command kGetsockopts[] = {
    // Maps received pages at an address in the structure.
    row(sockopt(kSolTcp, 35), "TCP_ZEROCOPY_RECEIVE", {}, kChangesMappings,
        "maps received pages at an address the structure holds"),
};

// io_uring_register(fd, opcode, arg, nr_args).
constexpr const char* kIoUringRsrc = "io_uring_rsrc_register holds pointers to arrays of its own";
constexpr Command kIoUringRegisters[] = {
    // Registered buffers are read and written by later requests.
    row(0, "IORING_REGISTER_BUFFERS",
        {{2, async(nested("arg", Dir::kRead, Shape::kIovecs, L::of_arg(3, lay::kIovecSize), Dir::kReadWrite))}},
        kAsyncWriter),
    row(1, "IORING_UNREGISTER_BUFFERS"),
    row(2, "IORING_REGISTER_FILES", {{2, in("arg", L::of_arg(3, 4), Shape::kFds)}}),
    row(3, "IORING_UNREGISTER_FILES"),
    row(4, "IORING_REGISTER_EVENTFD", {{2, in("arg", L::fixed(4), Shape::kFds)}}),
    row(5, "IORING_UNREGISTER_EVENTFD"),
    row(6, "IORING_REGISTER_FILES_UPDATE",
        {{2, nested("arg", Dir::kRead, Shape::kIoUringFilesUpdate, L::fixed(lay::kIoUringFilesUpdateSize),
                    Dir::kRead)}}),
    row(7, "IORING_REGISTER_EVENTFD_ASYNC", {{2, in("arg", L::fixed(4), Shape::kFds)}}),
    row(8, "IORING_REGISTER_PROBE",
        {{2, inout("arg", L::of_arg(3, lay::kIoUringProbeOpSize, lay::kIoUringProbeSize))}}),
    row(9, "IORING_REGISTER_PERSONALITY"),
    row(10, "IORING_UNREGISTER_PERSONALITY"),
    row(11, "IORING_REGISTER_RESTRICTIONS", {{2, in("arg", L::of_arg(3, 16))}}),
    row(12, "IORING_REGISTER_ENABLE_RINGS"),
    opaque(13, "IORING_REGISTER_FILES2", kIoUringRsrc),
    opaque(14, "IORING_REGISTER_FILES_UPDATE2", kIoUringRsrc),
    opaque(15, "IORING_REGISTER_BUFFERS2", kIoUringRsrc),
    opaque(16, "IORING_REGISTER_BUFFERS_UPDATE", kIoUringRsrc),
    row(17, "IORING_REGISTER_IOWQ_AFF", {{2, in("arg", L::of_arg(3))}}),
    row(18, "IORING_UNREGISTER_IOWQ_AFF"),
    row(19, "IORING_REGISTER_IOWQ_MAX_WORKERS", {{2, inout("arg", L::of_arg(3, 4))}}),
    opaque(20, "IORING_REGISTER_RING_FDS", "io_uring_rsrc_update entries hold descriptors"),
    opaque(21, "IORING_UNREGISTER_RING_FDS", "io_uring_rsrc_update entries hold descriptors"),
    opaque(22, "IORING_REGISTER_PBUF_RING", "registers a ring of buffers the kernel uses later"),
    opaque(23, "IORING_UNREGISTER_PBUF_RING", "names a buffer ring registered before"),
    opaque(24, "IORING_REGISTER_SYNC_CANCEL", "cancels requests with buffers of their own"),
    row(25, "IORING_REGISTER_FILE_ALLOC_RANGE", {{2, struct_in("arg", 16)}}),
};

// reboot(magic, magic2, cmd, arg).
constexpr Command kReboots[] = {
    row(0, "LINUX_REBOOT_CMD_CAD_OFF"),
    row(0x01234567, "LINUX_REBOOT_CMD_RESTART"),
    row(0x4321FEDC, "LINUX_REBOOT_CMD_POWER_OFF"),
    row(0x45584543, "LINUX_REBOOT_CMD_KEXEC"),
    row(0x89ABCDEF, "LINUX_REBOOT_CMD_CAD_ON"),
    row(0xA1B2C3D4, "LINUX_REBOOT_CMD_RESTART2", {{3, str("arg", 255)}}),
    row(0xCDEF0123, "LINUX_REBOOT_CMD_HALT"),
    row(0xD000FCE2, "LINUX_REBOOT_CMD_SW_SUSPEND"),
};

// quotactl(cmd, special, id, addr) and quotactl_fd(fd, cmd, id, addr):
// cmd = subcommand << 8 | quota type. Sizes: if_dqinfo 24, if_dqblk 72,
// if_nextdqblk 80.
constexpr Command kQuotactls[] = {
    row(0x80000100, "Q_SYNC"),
    row(0x80000200, "Q_QUOTAON", {{3, path("quota_file")}}),
    row(0x80000300, "Q_QUOTAOFF"),
    row(0x80000400, "Q_GETFMT", {{3, int_out("format")}}),
    row(0x80000500, "Q_GETINFO", {{3, struct_out("info", 24)}}),
    row(0x80000600, "Q_SETINFO", {{3, struct_in("info", 24)}}),
    row(0x80000700, "Q_GETQUOTA", {{3, struct_out("dqblk", 72)}}),
    row(0x80000800, "Q_SETQUOTA", {{3, struct_in("dqblk", 72)}}),
    row(0x80000900, "Q_GETNEXTQUOTA", {{3, struct_out("dqblk", 80)}}),
};

constexpr Command kSyslogs[] = {
    row(0, "SYSLOG_ACTION_CLOSE"),
    row(1, "SYSLOG_ACTION_OPEN"),
    row(2, "SYSLOG_ACTION_READ", {{1, out("buf", L::of_arg(2), W::kReturn)}}, kBlocks),
    row(3, "SYSLOG_ACTION_READ_ALL", {{1, out("buf", L::of_arg(2), W::kReturn)}}),
    row(4, "SYSLOG_ACTION_READ_CLEAR", {{1, out("buf", L::of_arg(2), W::kReturn)}}),
    row(5, "SYSLOG_ACTION_CLEAR"),
    row(6, "SYSLOG_ACTION_CONSOLE_OFF"),
    row(7, "SYSLOG_ACTION_CONSOLE_ON"),
    row(8, "SYSLOG_ACTION_CONSOLE_LEVEL"),
    row(9, "SYSLOG_ACTION_SIZE_UNREAD"),
    row(10, "SYSLOG_ACTION_SIZE_BUFFER"),
};

// modify_ldt(func, ptr, bytecount): reads copy out at most bytecount bytes
// and return how many.
constexpr Command kModifyLdts[] = {
    row(0, "read", {{1, out("ptr", L::of_arg(2), W::kReturn)}}),
    row(1, "write_old", {{1, in("ptr", L::of_arg(2))}}),
    row(2, "read_default", {{1, out("ptr", L::of_arg(2), W::kReturn)}}),
    row(0x11, "write", {{1, in("ptr", L::of_arg(2))}}),
};

// kcmp(pid1, pid2, type, idx1, idx2): descriptors of pid1 and pid2.
constexpr Command kKcmps[] = {
    row(0, "KCMP_FILE", {{3, with_kind("fd1", Kind::kRemoteFd)}, {4, with_kind("fd2", Kind::kRemoteFd)}}),
    row(1, "KCMP_VM"),
    row(2, "KCMP_FILES"),
    row(3, "KCMP_FS"),
    row(4, "KCMP_SIGHAND"),
    row(5, "KCMP_IO"),
    row(6, "KCMP_SYSVSEM"),
    // struct kcmp_epoll_slot {u32 efd, tfd, toff}: descriptors of pid2.
    row(7, "KCMP_EPOLL_TFD", {{3, with_kind("fd1", Kind::kRemoteFd)}, {4, struct_in("slot", 12)}}),
};

constexpr Command kWaitidTypes[] = {
    row(0, "P_ALL", {{1, u32("id")}}),
    row(1, "P_PID"),
    row(2, "P_PGID"),
    row(3, "P_PIDFD", {{1, fd("pidfd")}}),
};

constexpr Command kLandlockRuleTypes[] = {
    row(1, "LANDLOCK_RULE_PATH_BENEATH",
        {{2, in("rule_attr", L::fixed(lay::kLandlockPathBeneathSize), Shape::kPathBeneath)}}),
};

// Flag tables: each row applies when all its bits are set.
constexpr Command kMmapFlags[] = {
    row(0x10, "MAP_FIXED", {{0, addr("addr", L::of_arg(1))}}),
    row(0x100000, "MAP_FIXED_NOREPLACE", {{0, addr("addr", L::of_arg(1))}}),
    row(0x20, "MAP_ANONYMOUS", {{4, i32("fd")}}),
};
constexpr Command kMremapFlags[] = {
    row(2, "MREMAP_FIXED", {{4, addr("new_address", L::of_arg(2))}}),
};
// CLONE_PARENT_SETTID is written before the call returns; CHILD_SETTID by
// the child as it starts and CHILD_CLEARTID as it exits, in the child's
// memory (ours with CLONE_VM).
constexpr Arg child_tid() {
  return with_flags(out("child_tid", L::fixed(4), W::kNever), kAsync | kChildWrites);
}
constexpr Command kCloneFlagRows[] = {
    row(lay::kCloneParentSettid, "CLONE_PARENT_SETTID", {{2, struct_out("parent_tid", 4)}}),
    row(lay::kClonePidfd, "CLONE_PIDFD", {{2, out("pidfd", L::fixed(4), W::kOnSuccess, Shape::kNewFds)}}),
    row(lay::kCloneChildSettid, "CLONE_CHILD_SETTID", {{3, child_tid()}}),
    row(lay::kCloneChildCleartid, "CLONE_CHILD_CLEARTID", {{3, child_tid()}}),
};
constexpr Command kPerfFlags[] = {
    row(4, "PERF_FLAG_PID_CGROUP", {{1, fd("cgroup_fd")}}),
};
// shmat: only a kernel-chosen address is describable.
constexpr Command kShmatAddresses[] = {
    row(0, "NULL"),
};
// Without O_CREAT or O_TMPFILE the kernel ignores the mode (and mq_open
// its attributes): a row of value 0 applies always, the others after it.
constexpr std::uint64_t kOCreat = 0100, kOTmpfile = 020000000;
constexpr Command kOpenModes[] = {
    row(0, "", {{2, unused()}}),
    row(kOCreat, "O_CREAT", {{2, mode("mode")}}),
    row(kOTmpfile, "O_TMPFILE", {{2, mode("mode")}}),
};
constexpr Command kOpenatModes[] = {
    row(0, "", {{3, unused()}}),
    row(kOCreat, "O_CREAT", {{3, mode("mode")}}),
    row(kOTmpfile, "O_TMPFILE", {{3, mode("mode")}}),
};
constexpr Command kMqOpenModes[] = {
    row(0, "", {{2, unused()}, {3, unused()}}),
    row(kOCreat, "O_CREAT", {{2, mode("mode")}, {3, struct_in("attr", lay::kMqAttrSize)}}),
};
constexpr Command kRseqFlags[] = {
    row(0, "0"),
    // Unregistering clears the CPU fields now; nothing later.
    row(lay::kRseqFlagUnregister, "RSEQ_FLAG_UNREGISTER", {{0, out("rseq", L::of_arg(1))}}),
};

// Exact tables are searched by value: sorted here, so that rows can be
// written in the order that reads best.
template <std::size_t N>
constexpr std::array<Command, N> sorted(const Command (&rows)[N]) {
  std::array<Command, N> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = rows[i];
  std::sort(out.begin(), out.end(), [](const Command& a, const Command& b) { return a.value < b.value; });
  return out;
}
constexpr auto kIoctlsSorted = sorted(kIoctls);
constexpr auto kFcntlsSorted = sorted(kFcntls);
constexpr auto kPrctlsSorted = sorted(kPrctls);
constexpr auto kArchPrctlsSorted = sorted(kArchPrctls);
constexpr auto kPtracesSorted = sorted(kPtraces);
constexpr auto kSetsockoptsSorted = sorted(kSetsockopts);
constexpr auto kRebootsSorted = sorted(kReboots);

constexpr std::uint64_t k32 = 0xffffffffu;

constexpr CommandTable kTables[] = {
    {Commands::kIoctl, k32, Match::kExact, -1, kIoctlsSorted, Completeness::kIncomplete, "unknown ioctl request"},
    {Commands::kFcntl, k32, Match::kExact, -1, kFcntlsSorted, Completeness::kIncomplete, "unknown fcntl command"},
    // FUTEX_PRIVATE_FLAG (128) and FUTEX_CLOCK_REALTIME (256) do not select.
    {Commands::kFutex, k32 & ~std::uint64_t{0x180}, Match::kExact, -1, kFutexes, Completeness::kIncomplete,
     "unknown futex operation"},
    {Commands::kPrctl, k32, Match::kExact, -1, kPrctlsSorted, Completeness::kIncomplete, "unknown prctl option"},
    {Commands::kArchPrctl, k32, Match::kExact, -1, kArchPrctlsSorted, Completeness::kIncomplete, "unknown arch_prctl code"},
    {Commands::kEpollCtl, k32, Match::kExact, -1, kEpollCtls, Completeness::kIncomplete, "unknown epoll_ctl op"},
    // IPC_64 (0x100) does not select.
    {Commands::kShmctl, k32 & ~std::uint64_t{0x100}, Match::kExact, -1, kShmctls, Completeness::kIncomplete,
     "unknown shmctl command"},
    {Commands::kMsgctl, k32 & ~std::uint64_t{0x100}, Match::kExact, -1, kMsgctls, Completeness::kIncomplete,
     "unknown msgctl command"},
    {Commands::kSemctl, k32 & ~std::uint64_t{0x100}, Match::kExact, -1, kSemctls, Completeness::kIncomplete,
     "unknown semctl command"},
    {Commands::kKeyctl, k32, Match::kExact, -1, kKeyctls, Completeness::kIncomplete, "unknown keyctl operation"},
    {Commands::kPtrace, ~std::uint64_t{0}, Match::kExact, -1, kPtracesSorted, Completeness::kIncomplete,
     "unknown ptrace request"},
    {Commands::kBpf, k32, Match::kExact, -1, kBpfs, Completeness::kIncomplete, kBpfAttr},
    {Commands::kSeccomp, k32, Match::kExact, -1, kSeccomps, Completeness::kIncomplete, "unknown seccomp operation"},
    {Commands::kFsconfig, k32, Match::kExact, -1, kFsconfigs, Completeness::kIncomplete, "unknown fsconfig command"},
    {Commands::kSetsockopt, ~std::uint64_t{0}, Match::kExact, 2, kSetsockoptsSorted, Completeness::kComplete, nullptr},
    {Commands::kGetsockopt, ~std::uint64_t{0}, Match::kExact, 2, kGetsockopts, Completeness::kComplete, nullptr},
    {Commands::kIoUringRegister, k32, Match::kExact, -1, kIoUringRegisters, Completeness::kIncomplete,
     "unknown io_uring_register opcode"},
    {Commands::kReboot, k32, Match::kExact, -1, kRebootsSorted, Completeness::kIncomplete, "unknown reboot command"},
    {Commands::kQuotactl, 0xffffff00u, Match::kExact, -1, kQuotactls, Completeness::kIncomplete,
     "quota subcommand not described"},
    {Commands::kSyslog, k32, Match::kExact, -1, kSyslogs, Completeness::kIncomplete, "unknown syslog action"},
    {Commands::kModifyLdt, k32, Match::kExact, -1, kModifyLdts, Completeness::kIncomplete,
     "unknown modify_ldt function"},
    {Commands::kKcmp, k32, Match::kExact, -1, kKcmps, Completeness::kIncomplete, "unknown kcmp type"},
    {Commands::kWaitidType, k32, Match::kExact, -1, kWaitidTypes, Completeness::kIncomplete, "unknown idtype"},
    {Commands::kLandlockRuleType, k32, Match::kExact, -1, kLandlockRuleTypes, Completeness::kIncomplete,
     "unknown landlock rule type"},
    {Commands::kMmapFlags, ~std::uint64_t{0}, Match::kBits, -1, kMmapFlags, Completeness::kComplete, nullptr},
    {Commands::kMremapFlags, ~std::uint64_t{0}, Match::kBits, -1, kMremapFlags, Completeness::kComplete, nullptr},
    {Commands::kCloneFlags, ~std::uint64_t{0}, Match::kBits, -1, kCloneFlagRows, Completeness::kComplete, nullptr},
    {Commands::kShmatAddress, ~std::uint64_t{0}, Match::kExact, -1, kShmatAddresses, Completeness::kIncomplete,
     "a fixed address: the segment's size is known only to the kernel"},
    {Commands::kRseqFlags, k32, Match::kExact, -1, kRseqFlags, Completeness::kIncomplete, "unknown rseq flags"},
    {Commands::kPerfFlags, ~std::uint64_t{0}, Match::kBits, -1, kPerfFlags, Completeness::kComplete, nullptr},
    {Commands::kOpenFlags, k32, Match::kBits, -1, kOpenModes, Completeness::kComplete, nullptr},
    {Commands::kOpenatFlags, k32, Match::kBits, -1, kOpenatModes, Completeness::kComplete, nullptr},
    {Commands::kMqOpenFlags, k32, Match::kBits, -1, kMqOpenModes, Completeness::kComplete, nullptr},
};

constexpr bool exact_tables_sorted() {
  for (const CommandTable& t : kTables) {
    if (t.match != Match::kExact) continue;
    for (std::size_t i = 1; i < t.rows.size(); ++i) {
      if (t.rows[i].value <= t.rows[i - 1].value) return false;
    }
  }
  return true;
}
static_assert(exact_tables_sorted(), "exact command rows must be in increasing value order, without duplicates");

// Socket options of an unlisted name: the levels whose options are plain
// bytes in Linux 6.1 (SOL_IP/SOL_IPV6 below the netfilter range) are
// complete; an unknown level may hide pointers.
Completeness sockopt_completeness(std::uint32_t level, std::uint32_t name) noexcept {
  constexpr std::uint32_t kSolUdp = 17, kSolRaw = 255, kSolPacket = 263, kSolNetlink = 270;
  switch (level) {
    case kSolSocket:
    case kSolTcp:
    case kSolUdp:
    case kSolRaw:
    case kSolPacket:
    case kSolNetlink:
      return Completeness::kComplete;
    case kSolIp:
    case kSolIpv6:
      return name < 64 ? Completeness::kComplete : Completeness::kDirectOnly;
    default:
      return Completeness::kDirectOnly;
  }
}

// Completeness only ever gets worse: a call that is incomplete by itself
// stays so whatever its command says.
void weaken(Resolved& r, Completeness c, const char* reason) noexcept {
  if (static_cast<int>(c) > static_cast<int>(r.completeness)) {
    r.completeness = c;
    r.reason = reason;
  }
}

void apply(Resolved& r, const Command& c) noexcept {
  for (unsigned i = 0; i < kMaxArgs; ++i) {
    if ((c.overrides & (1u << i)) != 0) r.args[i] = c.args[i];
  }
  r.flags = static_cast<std::uint16_t>(r.flags | c.flags);
  if (c.incomplete != nullptr) weaken(r, Completeness::kIncomplete, c.incomplete);
}

// An ioctl request no row lists: _IOC bits that say the kernel reads or
// writes `size` bytes at the argument describe it directly; a request
// without them may be a legacy one that takes a pointer anyway.
void resolve_unknown_ioctl(Resolved& r, std::uint32_t request) noexcept {
  const unsigned dir = ioc::dir(request);
  const unsigned size = ioc::size(request);
  if (dir == ioc::kNone || size == 0) {
    weaken(r, Completeness::kIncomplete, "unknown ioctl request");
    return;
  }
  const Dir d = dir == ioc::kWrite ? Dir::kRead : dir == ioc::kRead ? Dir::kWrite : Dir::kReadWrite;
  r.args[2] = memory("argp", d, L::fixed(size), writes(d) ? W::kOnSuccess : W::kNever, Shape::kBytes);
  weaken(r, Completeness::kDirectOnly, "a driver's ioctl, described by its _IOC direction and size only");
}

// By id: an index.
constexpr unsigned kCommandIds = static_cast<unsigned>(Commands::kCount);
constexpr std::array<const CommandTable*, kCommandIds> make_by_id() {
  std::array<const CommandTable*, kCommandIds> by_id{};
  for (const CommandTable& t : kTables) by_id[static_cast<unsigned>(t.id)] = &t;
  return by_id;
}
constexpr auto kById = make_by_id();

constexpr bool every_id_has_its_table() {
  for (unsigned id = 1; id < kCommandIds; ++id) {
    if (kById[id] == nullptr) return false;
  }
  return kById[0] == nullptr;
}
static_assert(every_id_has_its_table(), "every Commands value but kNone needs its table");

}  // namespace

const CommandTable* command_table(Commands id) noexcept {
  const auto index = static_cast<unsigned>(id);
  return index < kCommandIds ? kById[index] : nullptr;
}

const Command* find_command(const CommandTable& table, std::uint64_t key) noexcept {
  auto it = std::lower_bound(table.rows.begin(), table.rows.end(), key,
                             [](const Command& c, std::uint64_t k) { return c.value < k; });
  if (it == table.rows.end() || it->value != key) return nullptr;
  return &*it;
}

Resolved resolve(const CallSpec& call, const std::uint64_t (&raw)[kMaxArgs]) noexcept {
  Resolved r;
  r.call = &call;
  for (unsigned i = 0; i < kMaxArgs; ++i) r.args[i] = call.args[i];
  r.flags = call.flags;
  if (call.has(kNeverComplete)) {
    r.completeness = Completeness::kIncomplete;
    r.reason = call.incomplete;
  }
  for (unsigned i = 0; i < call.arg_count; ++i) {
    const Arg& a = call.args[i];
    if (a.kind != Kind::kCommand) continue;
    const CommandTable* table = command_table(a.commands);
    if (table == nullptr) continue;
    std::uint64_t key = as_unsigned(raw[i], a.type) & table->mask;
    if (table->second_arg >= 0) key = (key << 32) | (raw[table->second_arg] & 0xffffffffu);
    r.command_value = key;
    if (table->match == Match::kBits) {
      for (const Command& c : table->rows) {
        if ((key & c.value) == c.value) apply(r, c);
      }
      continue;
    }
    if (const Command* c = find_command(*table, key)) {
      r.command = c;
      apply(r, *c);
    } else if (a.commands == Commands::kIoctl) {
      resolve_unknown_ioctl(r, static_cast<std::uint32_t>(key));
    } else if (a.commands == Commands::kSetsockopt || a.commands == Commands::kGetsockopt) {
      weaken(r, sockopt_completeness(static_cast<std::uint32_t>(key >> 32), static_cast<std::uint32_t>(key)),
             "a socket option of a level dunk does not know");
    } else {
      weaken(r, table->unknown, table->unknown_reason);
    }
  }
  return r;
}

}  // namespace dunk::abi
