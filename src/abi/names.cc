#include "abi/names.h"

#include <string.h>

namespace dunk::abi {
namespace {

constexpr NamedBits flag(std::uint64_t bits, const char* name) { return {bits, bits, name}; }
constexpr NamedBits field(std::uint64_t bits, std::uint64_t mask, const char* name) { return {bits, mask, name}; }
constexpr NamedBits value(std::uint64_t v, const char* name) { return {v, ~std::uint64_t{0}, name}; }

// open(2) flags, x86-64 values (asm-generic/fcntl.h). O_SYNC and O_TMPFILE
// include another flag's bit; the formatter prefers the wider name.
constexpr NamedBits kOpenFlags[] = {
    field(0, 3, "O_RDONLY"),       field(1, 3, "O_WRONLY"),       field(2, 3, "O_RDWR"),
    flag(0100, "O_CREAT"),         flag(0200, "O_EXCL"),          flag(0400, "O_NOCTTY"),
    flag(01000, "O_TRUNC"),        flag(02000, "O_APPEND"),       flag(04000, "O_NONBLOCK"),
    flag(04010000, "O_SYNC"),      flag(010000, "O_DSYNC"),       flag(020000, "O_ASYNC"),
    flag(040000, "O_DIRECT"),      flag(0100000, "O_LARGEFILE"),  flag(020200000, "O_TMPFILE"),
    flag(0200000, "O_DIRECTORY"),  flag(0400000, "O_NOFOLLOW"),   flag(01000000, "O_NOATIME"),
    flag(02000000, "O_CLOEXEC"),   flag(010000000, "O_PATH"),
};

constexpr NamedBits kFileFlags[] = {
    flag(04000, "O_NONBLOCK"),  flag(040000, "O_DIRECT"),   flag(02000000, "O_CLOEXEC"),
};

constexpr NamedBits kProt[] = {
    value(0, "PROT_NONE"),     flag(1, "PROT_READ"), flag(2, "PROT_WRITE"), flag(4, "PROT_EXEC"),
    flag(8, "PROT_SEM"),       flag(0x01000000, "PROT_GROWSDOWN"), flag(0x02000000, "PROT_GROWSUP"),
};

constexpr NamedBits kMapFlags[] = {
    field(1, 0xf, "MAP_SHARED"),          field(2, 0xf, "MAP_PRIVATE"),     field(3, 0xf, "MAP_SHARED_VALIDATE"),
    flag(0x10, "MAP_FIXED"),              flag(0x20, "MAP_ANONYMOUS"),      flag(0x40, "MAP_32BIT"),
    flag(0x100, "MAP_GROWSDOWN"),         flag(0x800, "MAP_DENYWRITE"),     flag(0x1000, "MAP_EXECUTABLE"),
    flag(0x2000, "MAP_LOCKED"),           flag(0x4000, "MAP_NORESERVE"),    flag(0x8000, "MAP_POPULATE"),
    flag(0x10000, "MAP_NONBLOCK"),        flag(0x20000, "MAP_STACK"),       flag(0x40000, "MAP_HUGETLB"),
    flag(0x80000, "MAP_SYNC"),            flag(0x100000, "MAP_FIXED_NOREPLACE"),
    flag(0x4000000, "MAP_UNINITIALIZED"),
};

// The namespace and sharing flags clone, unshare and setns have in common.
#define DUNK_CLONE_BITS                                                                                     \
  flag(0x100, "CLONE_VM"), flag(0x200, "CLONE_FS"), flag(0x400, "CLONE_FILES"), flag(0x800, "CLONE_SIGHAND"), \
      flag(0x1000, "CLONE_PIDFD"), flag(0x2000, "CLONE_PTRACE"), flag(0x4000, "CLONE_VFORK"),                \
      flag(0x8000, "CLONE_PARENT"), flag(0x10000, "CLONE_THREAD"), flag(0x20000, "CLONE_NEWNS"),            \
      flag(0x40000, "CLONE_SYSVSEM"), flag(0x80000, "CLONE_SETTLS"), flag(0x100000, "CLONE_PARENT_SETTID"),  \
      flag(0x200000, "CLONE_CHILD_CLEARTID"), flag(0x400000, "CLONE_DETACHED"),                             \
      flag(0x800000, "CLONE_UNTRACED"), flag(0x1000000, "CLONE_CHILD_SETTID"),                              \
      flag(0x2000000, "CLONE_NEWCGROUP"), flag(0x4000000, "CLONE_NEWUTS"), flag(0x8000000, "CLONE_NEWIPC"),  \
      flag(0x10000000, "CLONE_NEWUSER"), flag(0x20000000, "CLONE_NEWPID"), flag(0x40000000, "CLONE_NEWNET"), \
      flag(0x80000000, "CLONE_IO"), flag(0x100000000, "CLONE_CLEAR_SIGHAND"),                               \
      flag(0x200000000, "CLONE_INTO_CGROUP")
// clone's low byte is the exit signal: the formatter prints it by name.
constexpr NamedBits kCloneFlags[] = {DUNK_CLONE_BITS};
constexpr NamedBits kUnshareFlags[] = {DUNK_CLONE_BITS, flag(0x80, "CLONE_NEWTIME")};
#undef DUNK_CLONE_BITS

constexpr NamedBits kAtFlags[] = {
    flag(0x100, "AT_SYMLINK_NOFOLLOW"), flag(0x200, "AT_REMOVEDIR"),       flag(0x400, "AT_SYMLINK_FOLLOW"),
    flag(0x800, "AT_NO_AUTOMOUNT"),     flag(0x1000, "AT_EMPTY_PATH"),     flag(0x2000, "AT_STATX_FORCE_SYNC"),
    flag(0x4000, "AT_STATX_DONT_SYNC"), flag(0x8000, "AT_RECURSIVE"),
};

constexpr NamedBits kWhence[] = {
    value(0, "SEEK_SET"), value(1, "SEEK_CUR"), value(2, "SEEK_END"), value(3, "SEEK_DATA"), value(4, "SEEK_HOLE"),
};

constexpr NamedBits kClockIds[] = {
    value(0, "CLOCK_REALTIME"),        value(1, "CLOCK_MONOTONIC"),       value(2, "CLOCK_PROCESS_CPUTIME_ID"),
    value(3, "CLOCK_THREAD_CPUTIME_ID"), value(4, "CLOCK_MONOTONIC_RAW"), value(5, "CLOCK_REALTIME_COARSE"),
    value(6, "CLOCK_MONOTONIC_COARSE"), value(7, "CLOCK_BOOTTIME"),       value(8, "CLOCK_REALTIME_ALARM"),
    value(9, "CLOCK_BOOTTIME_ALARM"),   value(11, "CLOCK_TAI"),
};

constexpr NamedBits kAccessMode[] = {
    value(0, "F_OK"), flag(4, "R_OK"), flag(2, "W_OK"), flag(1, "X_OK"),
};

constexpr NamedBits kSocketFamilies[] = {
    value(0, "AF_UNSPEC"),  value(1, "AF_UNIX"),   value(2, "AF_INET"),      value(10, "AF_INET6"),
    value(15, "AF_KEY"),    value(16, "AF_NETLINK"), value(17, "AF_PACKET"), value(31, "AF_BLUETOOTH"),
    value(38, "AF_ALG"),    value(40, "AF_VSOCK"), value(44, "AF_XDP"),
};

constexpr NamedBits kSocketTypes[] = {
    field(1, 0xf, "SOCK_STREAM"),    field(2, 0xf, "SOCK_DGRAM"), field(3, 0xf, "SOCK_RAW"),
    field(4, 0xf, "SOCK_RDM"),       field(5, 0xf, "SOCK_SEQPACKET"), field(6, 0xf, "SOCK_DCCP"),
    field(10, 0xf, "SOCK_PACKET"),   flag(04000, "SOCK_NONBLOCK"), flag(02000000, "SOCK_CLOEXEC"),
};

constexpr NamedBits kMsgFlags[] = {
    flag(0x1, "MSG_OOB"),          flag(0x2, "MSG_PEEK"),        flag(0x4, "MSG_DONTROUTE"),
    flag(0x8, "MSG_CTRUNC"),       flag(0x10, "MSG_PROXY"),      flag(0x20, "MSG_TRUNC"),
    flag(0x40, "MSG_DONTWAIT"),    flag(0x80, "MSG_EOR"),        flag(0x100, "MSG_WAITALL"),
    flag(0x200, "MSG_FIN"),        flag(0x400, "MSG_SYN"),       flag(0x800, "MSG_CONFIRM"),
    flag(0x1000, "MSG_RST"),       flag(0x2000, "MSG_ERRQUEUE"), flag(0x4000, "MSG_NOSIGNAL"),
    flag(0x8000, "MSG_MORE"),      flag(0x10000, "MSG_WAITFORONE"), flag(0x40000, "MSG_BATCH"),
    flag(0x4000000, "MSG_ZEROCOPY"), flag(0x20000000, "MSG_FASTOPEN"), flag(0x40000000, "MSG_CMSG_CLOEXEC"),
};

constexpr NamedBits kSigprocmaskHow[] = {
    value(0, "SIG_BLOCK"), value(1, "SIG_UNBLOCK"), value(2, "SIG_SETMASK"),
};

constexpr NamedBits kWaitOptions[] = {
    flag(1, "WNOHANG"),       flag(2, "WSTOPPED"),         flag(4, "WEXITED"),  flag(8, "WCONTINUED"),
    flag(0x1000000, "WNOWAIT"), flag(0x20000000, "__WNOTHREAD"), flag(0x40000000, "__WALL"),
    flag(0x80000000, "__WCLONE"),
};

constexpr NamedBits kMremapFlags[] = {
    flag(1, "MREMAP_MAYMOVE"), flag(2, "MREMAP_FIXED"), flag(4, "MREMAP_DONTUNMAP"),
};

constexpr NamedBits kMadvise[] = {
    value(0, "MADV_NORMAL"),       value(1, "MADV_RANDOM"),       value(2, "MADV_SEQUENTIAL"),
    value(3, "MADV_WILLNEED"),     value(4, "MADV_DONTNEED"),     value(8, "MADV_FREE"),
    value(9, "MADV_REMOVE"),       value(10, "MADV_DONTFORK"),    value(11, "MADV_DOFORK"),
    value(12, "MADV_MERGEABLE"),   value(13, "MADV_UNMERGEABLE"), value(14, "MADV_HUGEPAGE"),
    value(15, "MADV_NOHUGEPAGE"),  value(16, "MADV_DONTDUMP"),    value(17, "MADV_DODUMP"),
    value(18, "MADV_WIPEONFORK"),  value(19, "MADV_KEEPONFORK"),  value(20, "MADV_COLD"),
    value(21, "MADV_PAGEOUT"),     value(22, "MADV_POPULATE_READ"), value(23, "MADV_POPULATE_WRITE"),
    value(24, "MADV_DONTNEED_LOCKED"), value(25, "MADV_COLLAPSE"), value(100, "MADV_HWPOISON"),
    value(101, "MADV_SOFT_OFFLINE"),
};

constexpr NamedBits kFdFlags[] = {flag(1, "FD_CLOEXEC")};

constexpr NameSet kSets[] = {
    {Names::kOpenFlags, true, kOpenFlags},
    {Names::kFileFlags, true, kFileFlags},
    {Names::kProt, true, kProt},
    {Names::kMapFlags, true, kMapFlags},
    {Names::kCloneFlags, true, kCloneFlags},
    {Names::kUnshareFlags, true, kUnshareFlags},
    {Names::kAtFlags, true, kAtFlags},
    {Names::kWhence, false, kWhence},
    {Names::kClockId, false, kClockIds},
    {Names::kAccessMode, true, kAccessMode},
    {Names::kSocketFamily, false, kSocketFamilies},
    {Names::kSocketType, true, kSocketTypes},
    {Names::kMsgFlags, true, kMsgFlags},
    {Names::kSigprocmaskHow, false, kSigprocmaskHow},
    {Names::kWaitOptions, true, kWaitOptions},
    {Names::kMremapFlags, true, kMremapFlags},
    {Names::kMadvise, false, kMadvise},
    {Names::kFdFlags, true, kFdFlags},
};

constexpr const char* kSignals[] = {
    nullptr,   "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",  "SIGTRAP", "SIGABRT", "SIGBUS",
    "SIGFPE",  "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG",
    "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR",  "SIGSYS",
};

}  // namespace

const NameSet* name_set(Names id) noexcept {
  for (const NameSet& s : kSets) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

const char* value_name(Names id, std::uint64_t v) noexcept {
  const NameSet* set = name_set(id);
  if (set == nullptr) return nullptr;
  for (const NamedBits& n : set->names) {
    if ((v & n.mask) == n.bits) return n.name;
  }
  return nullptr;
}

const char* signal_name(int sig) noexcept {
  if (sig <= 0 || sig >= static_cast<int>(std::size(kSignals))) return nullptr;
  return kSignals[sig];
}

// glibc's tables: plain lookups, no locale, no allocation.
const char* errno_name(int err) noexcept { return ::strerrorname_np(err); }
const char* errno_text(int err) noexcept { return ::strerrordesc_np(err); }

}  // namespace dunk::abi
