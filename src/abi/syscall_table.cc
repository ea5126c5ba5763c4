// What dunk knows about the arguments of every x86-64 Linux system call:
// one row per name in the kernel's asm/unistd_64.h (Linux 6.1: 362 names,
// numbers 0-334 and 424-450), in number order.
//
// A row is call(number, name, {arguments}, call flags, classes[, why the
// table cannot describe it]). The argument vocabulary is in spec.h; the
// arguments a command selects (ioctl, fcntl, futex, prctl, ...) are in
// commands.cc; the structures the walker decodes are in walk.cc and their
// layouts in layouts.h.
//
// Conventions that hold throughout:
//   - out() memory is written when the call succeeds unless it says
//     otherwise; a length "of_arg(n)" is that argument's value in bytes,
//     "of_arg(n, size)" that many elements of `size` bytes;
//   - uid_t and gid_t are printed signed, so that "unchanged" shows as -1;
//   - a pointer the kernel only stores (a TLS base, a handler) is ptr().
#include <algorithm>
#include <array>

#include "abi/layouts.h"
#include "abi/spec.h"
#include "abi/syscalls.h"

namespace dunk::abi {
namespace {

using namespace spec;
using L = Length;
using W = Written;
namespace lay = layout;

// Classes, short.
constexpr std::uint16_t F = kClassFile, D = kClassDesc, M = kClassMemory, P = kClassProcess, S = kClassSignal,
                        N = kClassNetwork, I = kClassIpc, T = kClassTime, C = kClassCreds, Y = kClassSystem;

// Argument shapes that recur.
constexpr Arg buffer_in(const char* n, unsigned count_arg) { return in(n, L::of_arg(count_arg)); }
constexpr Arg buffer_out(const char* n, unsigned count_arg) {
  return out(n, L::of_arg(count_arg), W::kReturn);
}
constexpr Arg struct_in(const char* n, std::uint32_t size) { return in(n, L::fixed(size)); }
constexpr Arg struct_out(const char* n, std::uint32_t size) { return out(n, L::fixed(size)); }
constexpr Arg struct_inout(const char* n, std::uint32_t size) { return inout(n, L::fixed(size)); }
constexpr Arg stat_out(const char* n) { return struct_out(n, lay::kStatSize); }
constexpr Arg timespec_in(const char* n) { return in(n, L::fixed(lay::kTimespecSize), Shape::kTimespec); }
constexpr Arg timespec_out(const char* n) {
  return out(n, L::fixed(lay::kTimespecSize), W::kOnSuccess, Shape::kTimespec);
}
// A timeout the kernel updates with the time left, whatever the result.
constexpr Arg timespec_left(const char* n) {
  return inout(n, L::fixed(lay::kTimespecSize), W::kAlways, Shape::kTimespec);
}
constexpr Arg sigset_in(const char* n, unsigned size_arg) { return in(n, L::of_arg(size_arg)); }
constexpr Arg sigset_out(const char* n, unsigned size_arg) { return out(n, L::of_arg(size_arg)); }
constexpr Arg iovecs(const char* n, unsigned count_arg, Dir data, Written written = W::kNever) {
  return nested(n, Dir::kRead, Shape::kIovecs, L::of_arg(count_arg, lay::kIovecSize), data, written);
}
constexpr Arg fd_set(const char* n) {
  return nested(n, Dir::kReadWrite, Shape::kFdSet, L::bits_arg(0), Dir::kNone, W::kOnSuccess);
}
constexpr Arg pollfds(const char* n) {
  return nested(n, Dir::kReadWrite, Shape::kPollfds, L::of_arg(1, lay::kPollfdSize), Dir::kNone, W::kAlways);
}
constexpr Arg sockaddr_in(const char* n, unsigned len_arg) { return in(n, L::of_arg(len_arg), Shape::kSockaddr); }
// Value-result: *len_arg bytes of room before, the address's length after.
constexpr Arg sockaddr_out(const char* n, unsigned len_arg) {
  return out(n, L::pointee(len_arg), W::kPointee, Shape::kSockaddr);
}
constexpr Arg socklen(const char* n) { return struct_inout(n, 4); }
constexpr Arg epoll_events(const char* n) {
  return out(n, L::of_arg(2, lay::kEpollEventSize), W::kReturnTimes);
}
constexpr Arg io_events(const char* n) { return out(n, L::of_arg(2, lay::kIoEventSize), W::kReturnTimes); }
constexpr Arg nodemask_in(const char* n, unsigned maxnode_arg) { return in(n, L::bits_arg(maxnode_arg, 1)); }
constexpr Arg range(const char* n, unsigned len_arg) { return addr(n, L::of_arg(len_arg)); }
constexpr Arg new_fds(const char* n) { return out(n, L::fixed(8), W::kOnSuccess, Shape::kNewFds); }
constexpr Arg uid(const char* n) { return i32(n); }
constexpr Arg clockid(const char* n) { return named(n, Names::kClockId); }
constexpr Arg open_flags(const char* n) { return flags(n, Names::kOpenFlags, Type::kInt); }
// open's flags also say whether the mode is used.
constexpr Arg open_command(const char* n, Commands table) {
  return formatted(command(n, table), Format::kFlags, Names::kOpenFlags);
}
constexpr Arg at_flags(const char* n) { return flags(n, Names::kAtFlags, Type::kInt); }
constexpr Arg msg_flags(const char* n) { return flags(n, Names::kMsgFlags); }
constexpr Arg prot(const char* n) { return flags(n, Names::kProt, Type::kULong); }
constexpr Arg xattr_name(const char* n) { return str(n, lay::kXattrNameMax); }
// A string the kernel copies with no useful bound (module parameters).
constexpr Arg long_str(const char* n) { return str(n, 0x7fffffff); }
// struct msgbuf: a long, then msgsz bytes of text.
constexpr Arg msgbuf(const char* n, Dir dir, Written written) {
  return memory(n, dir, L::of_arg(2, 1, lay::kMsgbufHeader), written, Shape::kBytes);
}

constexpr const char* kNoEntry = nullptr;

// clang-format off
constexpr CallSpec kRows[] = {
  call(0, "read", {fd("fd"), buffer_out("buf", 2), u64("count")}, kBlocks, D),
  call(1, "write", {fd("fd"), buffer_in("buf", 2), u64("count")}, kBlocks, D),
  call(2, "open", {path("filename"), open_command("flags", Commands::kOpenFlags), mode("mode")}, kReturnsFd | kBlocks, F | D),
  call(3, "close", {fd("fd")}, kCallNone, D),
  call(4, "stat", {path("filename"), stat_out("statbuf")}, kCallNone, F),
  call(5, "fstat", {fd("fd"), stat_out("statbuf")}, kCallNone, D),
  call(6, "lstat", {path("filename"), stat_out("statbuf")}, kCallNone, F),
  call(7, "poll", {pollfds("fds"), u32("nfds"), i32("timeout")}, kBlocks, D),
  call(8, "lseek", {fd("fd"), i64("offset"), named("whence", Names::kWhence, Type::kUInt)}, kCallNone, D),
  call(9, "mmap", {ptr("addr"), u64("length"), prot("prot"),
                   formatted(command("flags", Commands::kMmapFlags, Type::kULong), Format::kFlags, Names::kMapFlags),
                   fd("fd"), hex64("offset")},
       kReturnsAddress | kChangesMappings, M | D),
  call(10, "mprotect", {range("addr", 1), u64("length"), prot("prot")}, kChangesMappings, M),
  call(11, "munmap", {range("addr", 1), u64("length")}, kChangesMappings, M),
  call(12, "brk", {addr("brk")}, kReturnsAddress | kChangesMappings, M),
  call(13, "rt_sigaction", {sig("signum"), in("act", L::fixed(lay::kSigactionSize), Shape::kSigaction),
                            out("oldact", L::fixed(lay::kSigactionSize), W::kOnSuccess, Shape::kSigaction),
                            u64("sigsetsize")}, kCallNone, S),
  call(14, "rt_sigprocmask", {named("how", Names::kSigprocmaskHow), sigset_in("set", 3), sigset_out("oldset", 3),
                              u64("sigsetsize")}, kCallNone, S),
  call(15, "rt_sigreturn", {}, kNoReturn | kNeverComplete, S,
       "reads the signal frame at the stack pointer, not at an argument"),
  call(16, "ioctl", {fd("fd"), formatted(command("request", Commands::kIoctl, Type::kUInt), Format::kHex),
                     hex64("arg")}, kBlocks, D),
  call(17, "pread64", {fd("fd"), buffer_out("buf", 2), u64("count"), i64("offset")}, kBlocks, D),
  call(18, "pwrite64", {fd("fd"), buffer_in("buf", 2), u64("count"), i64("offset")}, kBlocks, D),
  call(19, "readv", {fd("fd"), iovecs("iov", 2, Dir::kWrite, W::kReturn), u64("iovcnt")}, kBlocks, D),
  call(20, "writev", {fd("fd"), iovecs("iov", 2, Dir::kRead), u64("iovcnt")}, kBlocks, D),
  call(21, "access", {path("pathname"), flags("mode", Names::kAccessMode, Type::kInt)}, kCallNone, F),
  call(22, "pipe", {new_fds("pipefd")}, kCallNone, D),
  call(23, "select", {i32("nfds"), fd_set("readfds"), fd_set("writefds"), fd_set("exceptfds"),
                      inout("timeout", L::fixed(lay::kTimevalSize), W::kAlways)}, kBlocks, D),
  call(24, "sched_yield", {}, kCallNone, P),
  call(25, "mremap", {range("old_address", 1), u64("old_size"), u64("new_size"),
                      formatted(command("flags", Commands::kMremapFlags, Type::kULong), Format::kFlags,
                                Names::kMremapFlags),
                      ptr("new_address")}, kReturnsAddress | kChangesMappings, M),
  call(26, "msync", {range("addr", 1), u64("length"), hexflags("flags")}, kBlocks, M),
  call(27, "mincore", {range("addr", 1), u64("length"), out("vec", L::pages_arg(1))}, kCallNone, M),
  call(28, "madvise", {range("addr", 1), u64("length"), named("advice", Names::kMadvise)}, kCallNone, M),
  call(29, "shmget", {hex32("key"), u64("size"), hexflags("shmflg")}, kCallNone, I),
  call(30, "shmat", {i32("shmid"), formatted(command("shmaddr", Commands::kShmatAddress, Type::kULong), Format::kPtr),
                     hexflags("shmflg")}, kReturnsAddress | kChangesMappings, I | M),
  call(31, "shmctl", {i32("shmid"), command("cmd", Commands::kShmctl), ptr("buf")}, kCallNone, I),
  call(32, "dup", {fd("oldfd")}, kReturnsFd, D),
  call(33, "dup2", {fd("oldfd"), fd_target("newfd")}, kReturnsFd, D),
  call(34, "pause", {}, kBlocks, S),
  call(35, "nanosleep", {timespec_in("req"),
                         out("rem", L::fixed(lay::kTimespecSize), W::kOnFailure, Shape::kTimespec)}, kBlocks, T),
  call(36, "getitimer", {i32("which"), struct_out("curr_value", lay::kItimervalSize)}, kCallNone, T),
  call(37, "alarm", {u32("seconds")}, kCallNone, T),
  call(38, "setitimer", {i32("which"), struct_in("new_value", lay::kItimervalSize),
                         struct_out("old_value", lay::kItimervalSize)}, kCallNone, T),
  call(39, "getpid", {}, kCallNone, P),
  call(40, "sendfile", {fd("out_fd"), fd("in_fd"), inout("offset", L::fixed(8)), u64("count")}, kBlocks, D),
  call(41, "socket", {named("domain", Names::kSocketFamily), flags("type", Names::kSocketType, Type::kInt),
                      i32("protocol")}, kReturnsFd, N | D),
  call(42, "connect", {fd("sockfd"), sockaddr_in("addr", 2), i32("addrlen")}, kBlocks, N | D),
  call(43, "accept", {fd("sockfd"), sockaddr_out("addr", 2), socklen("addrlen")}, kReturnsFd | kBlocks, N | D),
  call(44, "sendto", {fd("sockfd"), buffer_in("buf", 2), u64("len"), msg_flags("flags"),
                      sockaddr_in("dest_addr", 5), i32("addrlen")}, kBlocks, N | D),
  call(45, "recvfrom", {fd("sockfd"), buffer_out("buf", 2), u64("len"), msg_flags("flags"),
                        sockaddr_out("src_addr", 5), socklen("addrlen")}, kBlocks, N | D),
  call(46, "sendmsg", {fd("sockfd"), nested("msg", Dir::kRead, Shape::kMsghdr, L::fixed(lay::kMsghdrSize), Dir::kRead),
                       msg_flags("flags")}, kBlocks, N | D),
  call(47, "recvmsg", {fd("sockfd"), nested("msg", Dir::kReadWrite, Shape::kMsghdr, L::fixed(lay::kMsghdrSize),
                                            Dir::kWrite, W::kReturn),
                       msg_flags("flags")}, kBlocks, N | D),
  call(48, "shutdown", {fd("sockfd"), i32("how")}, kCallNone, N | D),
  call(49, "bind", {fd("sockfd"), sockaddr_in("addr", 2), i32("addrlen")}, kCallNone, N | D),
  call(50, "listen", {fd("sockfd"), i32("backlog")}, kCallNone, N | D),
  call(51, "getsockname", {fd("sockfd"), sockaddr_out("addr", 2), socklen("addrlen")}, kCallNone, N | D),
  call(52, "getpeername", {fd("sockfd"), sockaddr_out("addr", 2), socklen("addrlen")}, kCallNone, N | D),
  call(53, "socketpair", {named("domain", Names::kSocketFamily), flags("type", Names::kSocketType, Type::kInt),
                          i32("protocol"), new_fds("sv")}, kCallNone, N | D),
  call(54, "setsockopt", {fd("sockfd"), command("level", Commands::kSetsockopt), i32("optname"),
                          buffer_in("optval", 4), i32("optlen")}, kCallNone, N | D),
  call(55, "getsockopt", {fd("sockfd"), command("level", Commands::kGetsockopt), i32("optname"),
                          out("optval", L::pointee(4), W::kPointee), socklen("optlen")}, kCallNone, N | D),
  call(56, "clone", {formatted(command("flags", Commands::kCloneFlags, Type::kULong), Format::kFlags,
                               Names::kCloneFlags),
                     ptr("stack"), ptr("parent_tid"), ptr("child_tid"), ptr("tls")},
       kReturnsPid | kNewProcess | kAsyncWriter, P),
  call(57, "fork", {}, kReturnsPid | kNewProcess, P),
  call(58, "vfork", {}, kReturnsPid | kNewProcess | kBlocks, P),
  call(59, "execve", {path("pathname"), strings("argv"), strings("envp")}, kNoReturn, F | P),
  call(60, "exit", {i32("status")}, kNoReturn, P),
  call(61, "wait4", {pid("pid"), struct_out("wstatus", 4), flags("options", Names::kWaitOptions, Type::kInt),
                     struct_out("rusage", lay::kRusageSize)}, kBlocks, P),
  call(62, "kill", {pid("pid"), sig("sig")}, kCallNone, S | P),
  call(63, "uname", {struct_out("buf", lay::kUtsnameSize)}, kCallNone, kClassNone),
  call(64, "semget", {hex32("key"), i32("nsems"), hexflags("semflg")}, kCallNone, I),
  call(65, "semop", {i32("semid"), in("sops", L::of_arg(2, lay::kSembufSize)), u32("nsops")}, kBlocks, I),
  call(66, "semctl", {i32("semid"), i32("semnum"), command("cmd", Commands::kSemctl), hex64("arg")}, kCallNone, I),
  call(67, "shmdt", {addr("shmaddr")}, kChangesMappings | kNeverComplete, I | M,
       "detaches a segment whose size is known only to the kernel"),
  call(68, "msgget", {hex32("key"), hexflags("msgflg")}, kCallNone, I),
  call(69, "msgsnd", {i32("msqid"), msgbuf("msgp", Dir::kRead, W::kNever), u64("msgsz"), hexflags("msgflg")},
       kBlocks, I),
  call(70, "msgrcv", {i32("msqid"), msgbuf("msgp", Dir::kWrite, W::kReturn), u64("msgsz"), i64("msgtyp"),
                      hexflags("msgflg")}, kBlocks, I),
  call(71, "msgctl", {i32("msqid"), command("cmd", Commands::kMsgctl), ptr("buf")}, kCallNone, I),
  call(72, "fcntl", {fd("fd"), command("cmd", Commands::kFcntl), hex64("arg")}, kBlocks, D),
  call(73, "flock", {fd("fd"), i32("operation")}, kBlocks, D),
  call(74, "fsync", {fd("fd")}, kBlocks, D),
  call(75, "fdatasync", {fd("fd")}, kBlocks, D),
  call(76, "truncate", {path("path"), i64("length")}, kCallNone, F),
  call(77, "ftruncate", {fd("fd"), i64("length")}, kCallNone, D),
  call(78, "getdents", {fd("fd"), buffer_out("dirp", 2), u32("count")}, kCallNone, D),
  call(79, "getcwd", {buffer_out("buf", 1), u64("size")}, kCallNone, F),
  call(80, "chdir", {path("path")}, kCallNone, F),
  call(81, "fchdir", {fd("fd")}, kCallNone, D),
  call(82, "rename", {path("oldpath"), path("newpath")}, kCallNone, F),
  call(83, "mkdir", {path("pathname"), mode("mode")}, kCallNone, F),
  call(84, "rmdir", {path("pathname")}, kCallNone, F),
  call(85, "creat", {path("pathname"), mode("mode")}, kReturnsFd, F | D),
  call(86, "link", {path("oldpath"), path("newpath")}, kCallNone, F),
  call(87, "unlink", {path("pathname")}, kCallNone, F),
  call(88, "symlink", {path("target"), path("linkpath")}, kCallNone, F),
  call(89, "readlink", {path("pathname"), buffer_out("buf", 2), i32("bufsiz")}, kCallNone, F),
  call(90, "chmod", {path("pathname"), mode("mode")}, kCallNone, F),
  call(91, "fchmod", {fd("fd"), mode("mode")}, kCallNone, D),
  call(92, "chown", {path("pathname"), uid("owner"), uid("group")}, kCallNone, F),
  call(93, "fchown", {fd("fd"), uid("owner"), uid("group")}, kCallNone, D),
  call(94, "lchown", {path("pathname"), uid("owner"), uid("group")}, kCallNone, F),
  call(95, "umask", {mode("mask")}, kCallNone, kClassNone),
  call(96, "gettimeofday", {struct_out("tv", lay::kTimevalSize), struct_out("tz", lay::kTimezoneSize)},
       kCallNone, T),
  call(97, "getrlimit", {i32("resource"), struct_out("rlim", lay::kRlimitSize)}, kCallNone, P),
  call(98, "getrusage", {i32("who"), struct_out("usage", lay::kRusageSize)}, kCallNone, P),
  call(99, "sysinfo", {struct_out("info", lay::kSysinfoSize)}, kCallNone, kClassNone),
  call(100, "times", {struct_out("buf", lay::kTmsSize)}, kCallNone, T),
  call(101, "ptrace", {command("request", Commands::kPtrace, Type::kLong), pid("pid"), ptr("addr"), ptr("data")},
       kCallNone, P),
  call(102, "getuid", {}, kCallNone, C),
  call(103, "syslog", {command("type", Commands::kSyslog), ptr("buf"), i32("len")}, kBlocks, Y),
  call(104, "getgid", {}, kCallNone, C),
  call(105, "setuid", {uid("uid")}, kCallNone, C),
  call(106, "setgid", {uid("gid")}, kCallNone, C),
  call(107, "geteuid", {}, kCallNone, C),
  call(108, "getegid", {}, kCallNone, C),
  call(109, "setpgid", {pid("pid"), pid("pgid")}, kCallNone, P),
  call(110, "getppid", {}, kCallNone, P),
  call(111, "getpgrp", {}, kCallNone, P),
  call(112, "setsid", {}, kCallNone, P),
  call(113, "setreuid", {uid("ruid"), uid("euid")}, kCallNone, C),
  call(114, "setregid", {uid("rgid"), uid("egid")}, kCallNone, C),
  call(115, "getgroups", {i32("size"), out("list", L::of_arg(0, 4), W::kReturnTimes)}, kCallNone, C),
  call(116, "setgroups", {i32("size"), in("list", L::of_arg(0, 4))}, kCallNone, C),
  call(117, "setresuid", {uid("ruid"), uid("euid"), uid("suid")}, kCallNone, C),
  call(118, "getresuid", {struct_out("ruid", 4), struct_out("euid", 4), struct_out("suid", 4)}, kCallNone, C),
  call(119, "setresgid", {uid("rgid"), uid("egid"), uid("sgid")}, kCallNone, C),
  call(120, "getresgid", {struct_out("rgid", 4), struct_out("egid", 4), struct_out("sgid", 4)}, kCallNone, C),
  call(121, "getpgid", {pid("pid")}, kCallNone, P),
  call(122, "setfsuid", {uid("fsuid")}, kCallNone, C),
  call(123, "setfsgid", {uid("fsgid")}, kCallNone, C),
  call(124, "getsid", {pid("pid")}, kCallNone, P),
  // The header says which version the data has: 1 element, or 2.
  call(125, "capget", {inout("hdrp", L::fixed(lay::kCapHeaderSize), W::kOnFailure),
                       out("datap", L::by_shape(), W::kOnSuccess, Shape::kCapData)}, kCallNone, C),
  call(126, "capset", {struct_in("hdrp", lay::kCapHeaderSize), in("datap", L::by_shape(), Shape::kCapData)},
       kCallNone, C),
  call(127, "rt_sigpending", {sigset_out("set", 1), u64("sigsetsize")}, kCallNone, S),
  call(128, "rt_sigtimedwait", {sigset_in("set", 3), struct_out("info", lay::kSiginfoSize), timespec_in("timeout"),
                                u64("sigsetsize")}, kBlocks, S),
  call(129, "rt_sigqueueinfo", {pid("tgid"), sig("sig"), struct_in("info", lay::kSiginfoSize)}, kCallNone, S),
  call(130, "rt_sigsuspend", {sigset_in("mask", 1), u64("sigsetsize")}, kBlocks, S),
  call(131, "sigaltstack", {in("ss", L::fixed(lay::kStackSize), Shape::kSigaltstack),
                            struct_out("old_ss", lay::kStackSize)}, kAsyncWriter, S),
  call(132, "utime", {path("filename"), struct_in("times", lay::kUtimbufSize)}, kCallNone, F),
  call(133, "mknod", {path("pathname"), mode("mode"), hex32("dev")}, kCallNone, F),
  call(134, "uselib", {path("library")}, kNotImplemented, F),
  call(135, "personality", {hex32("persona")}, kCallNone, P),
  call(136, "ustat", {hex32("dev"), struct_out("ubuf", lay::kUstatSize)}, kCallNone, F),
  call(137, "statfs", {path("path"), struct_out("buf", lay::kStatfsSize)}, kCallNone, F),
  call(138, "fstatfs", {fd("fd"), struct_out("buf", lay::kStatfsSize)}, kCallNone, D),
  call(139, "sysfs", {i32("option"), u64("arg1"), u64("arg2")}, kNeverComplete, Y,
       "option 2 writes a filesystem name of a length only the kernel knows"),
  call(140, "getpriority", {i32("which"), i32("who")}, kCallNone, P),
  call(141, "setpriority", {i32("which"), i32("who"), i32("prio")}, kCallNone, P),
  call(142, "sched_setparam", {pid("pid"), struct_in("param", lay::kSchedParamSize)}, kCallNone, P),
  call(143, "sched_getparam", {pid("pid"), struct_out("param", lay::kSchedParamSize)}, kCallNone, P),
  call(144, "sched_setscheduler", {pid("pid"), i32("policy"), struct_in("param", lay::kSchedParamSize)},
       kCallNone, P),
  call(145, "sched_getscheduler", {pid("pid")}, kCallNone, P),
  call(146, "sched_get_priority_max", {i32("policy")}, kCallNone, P),
  call(147, "sched_get_priority_min", {i32("policy")}, kCallNone, P),
  call(148, "sched_rr_get_interval", {pid("pid"), timespec_out("tp")}, kCallNone, P),
  call(149, "mlock", {range("addr", 1), u64("len")}, kCallNone, M),
  call(150, "munlock", {range("addr", 1), u64("len")}, kCallNone, M),
  call(151, "mlockall", {hexflags("flags")}, kCallNone, M),
  call(152, "munlockall", {}, kCallNone, M),
  call(153, "vhangup", {}, kCallNone, Y),
  call(154, "modify_ldt", {command("func", Commands::kModifyLdt), ptr("ptr"), u64("bytecount")}, kCallNone, M),
  call(155, "pivot_root", {path("new_root"), path("put_old")}, kCallNone, F | Y),
  call(156, "_sysctl", {ptr("args")}, kNotImplemented, Y),
  call(157, "prctl", {command("option", Commands::kPrctl), hex64("arg2"), hex64("arg3"), hex64("arg4"),
                      hex64("arg5")}, kCallNone, P),
  call(158, "arch_prctl", {command("code", Commands::kArchPrctl), hex64("addr")}, kCallNone, P),
  call(159, "adjtimex", {struct_inout("buf", lay::kTimexSize)}, kCallNone, T),
  call(160, "setrlimit", {i32("resource"), struct_in("rlim", lay::kRlimitSize)}, kCallNone, P),
  call(161, "chroot", {path("path")}, kCallNone, F),
  call(162, "sync", {}, kBlocks, kClassNone),
  call(163, "acct", {path("filename")}, kCallNone, F | Y),
  call(164, "settimeofday", {struct_in("tv", lay::kTimevalSize), struct_in("tz", lay::kTimezoneSize)}, kCallNone, T),
  // The kernel reads a page of filesystem options at `data`, tolerating a
  // fault in the page after the first.
  call(165, "mount", {str("source", lay::kPathMax), path("target"), str("filesystemtype", lay::kPageSize),
                      hex64("mountflags"), struct_in("data", lay::kPageSize)}, kCallNone, F | Y),
  call(166, "umount2", {path("target"), hexflags("flags")}, kCallNone, F | Y),
  call(167, "swapon", {path("path"), hexflags("swapflags")}, kCallNone, F | Y),
  call(168, "swapoff", {path("path")}, kCallNone, F | Y),
  call(169, "reboot", {hex32("magic"), hex32("magic2"), formatted(command("cmd", Commands::kReboot, Type::kUInt),
                                                                  Format::kHex),
                       ptr("arg")}, kCallNone, Y),
  call(170, "sethostname", {buffer_in("name", 1), i32("len")}, kCallNone, Y),
  call(171, "setdomainname", {buffer_in("name", 1), i32("len")}, kCallNone, Y),
  call(172, "iopl", {i32("level")}, kCallNone, Y),
  call(173, "ioperm", {hex64("from"), u64("num"), i32("turn_on")}, kCallNone, Y),
  call(174, "create_module", {}, kNotImplemented, Y),
  call(175, "init_module", {buffer_in("module_image", 1), u64("len"), long_str("param_values")}, kCallNone, Y),
  call(176, "delete_module", {str("name", 55), hexflags("flags")}, kCallNone, Y),
  call(177, "get_kernel_syms", {}, kNotImplemented, Y),
  call(178, "query_module", {}, kNotImplemented, Y),
  call(179, "quotactl", {formatted(command("cmd", Commands::kQuotactl), Format::kHex), path("special"), i32("id"),
                         ptr("addr")}, kCallNone, F | Y),
  call(180, "nfsservctl", {}, kNotImplemented, Y),
  call(181, "getpmsg", {}, kNotImplemented, kClassNone),
  call(182, "putpmsg", {}, kNotImplemented, kClassNone),
  call(183, "afs_syscall", {}, kNotImplemented, kClassNone),
  call(184, "tuxcall", {}, kNotImplemented, kClassNone),
  call(185, "security", {}, kNotImplemented, kClassNone),
  call(186, "gettid", {}, kCallNone, P),
  call(187, "readahead", {fd("fd"), i64("offset"), u64("count")}, kCallNone, D),
  call(188, "setxattr", {path("path"), xattr_name("name"), buffer_in("value", 3), u64("size"), hexflags("flags")},
       kCallNone, F),
  call(189, "lsetxattr", {path("path"), xattr_name("name"), buffer_in("value", 3), u64("size"), hexflags("flags")},
       kCallNone, F),
  call(190, "fsetxattr", {fd("fd"), xattr_name("name"), buffer_in("value", 3), u64("size"), hexflags("flags")},
       kCallNone, D),
  call(191, "getxattr", {path("path"), xattr_name("name"), buffer_out("value", 3), u64("size")}, kCallNone, F),
  call(192, "lgetxattr", {path("path"), xattr_name("name"), buffer_out("value", 3), u64("size")}, kCallNone, F),
  call(193, "fgetxattr", {fd("fd"), xattr_name("name"), buffer_out("value", 3), u64("size")}, kCallNone, D),
  call(194, "listxattr", {path("path"), buffer_out("list", 2), u64("size")}, kCallNone, F),
  call(195, "llistxattr", {path("path"), buffer_out("list", 2), u64("size")}, kCallNone, F),
  call(196, "flistxattr", {fd("fd"), buffer_out("list", 2), u64("size")}, kCallNone, D),
  call(197, "removexattr", {path("path"), xattr_name("name")}, kCallNone, F),
  call(198, "lremovexattr", {path("path"), xattr_name("name")}, kCallNone, F),
  call(199, "fremovexattr", {fd("fd"), xattr_name("name")}, kCallNone, D),
  call(200, "tkill", {pid("tid"), sig("sig")}, kCallNone, S),
  call(201, "time", {struct_out("tloc", 8)}, kCallNone, T),
  call(202, "futex", {ptr("uaddr"), command("futex_op", Commands::kFutex), u32("val"), ptr("timeout"),
                      ptr("uaddr2"), u32("val3")}, kBlocks, P),
  call(203, "sched_setaffinity", {pid("pid"), u32("cpusetsize"), buffer_in("mask", 1)}, kCallNone, P),
  call(204, "sched_getaffinity", {pid("pid"), u32("cpusetsize"), buffer_out("mask", 1)}, kCallNone, P),
  call(205, "set_thread_area", {ptr("u_info")}, kNotImplemented, P),
  // The kernel maps a completion ring for the context and fills it later.
  call(206, "io_setup", {u32("nr_events"), struct_inout("ctx_idp", 8)},
       kChangesMappings | kAsyncWriter | kLaterUnbounded, D),
  call(207, "io_destroy", {hex64("ctx_id")}, kChangesMappings | kBlocks, D),
  call(208, "io_getevents", {hex64("ctx_id"), i64("min_nr"), i64("nr"), io_events("events"),
                             timespec_in("timeout")}, kBlocks, D),
  call(209, "io_submit", {hex64("ctx_id"), i64("nr"),
                          nested("iocbpp", Dir::kRead, Shape::kIocbs, L::of_arg(1, 8), Dir::kRead)},
       kAsyncWriter, D),
  // Reads only the iocb's key; `result` has not been used since Linux 4.19.
  call(210, "io_cancel", {hex64("ctx_id"), struct_in("iocb", lay::kIocbSize), ptr("result")},
       kCallNone, D),
  call(211, "get_thread_area", {ptr("u_info")}, kNotImplemented, P),
  call(212, "lookup_dcookie", {hex64("cookie"), buffer_out("buffer", 2), u64("len")}, kCallNone, Y),
  call(213, "epoll_create", {i32("size")}, kReturnsFd, D),
  call(214, "epoll_ctl_old", {}, kNotImplemented, D),
  call(215, "epoll_wait_old", {}, kNotImplemented, D),
  call(216, "remap_file_pages", {range("addr", 1), u64("size"), prot("prot"), u64("pgoff"), hexflags("flags")},
       kChangesMappings, M),
  call(217, "getdents64", {fd("fd"), buffer_out("dirp", 2), u32("count")}, kCallNone, D),
  // Written with 0 when the thread exits.
  call(218, "set_tid_address", {async(out("tidptr", L::fixed(4), W::kNever))}, kAsyncWriter, P),
  call(219, "restart_syscall", {}, kNeverComplete | kBlocks, P,
       "continues an interrupted call with arguments the kernel saved"),
  call(220, "semtimedop", {i32("semid"), in("sops", L::of_arg(2, lay::kSembufSize)), u32("nsops"),
                           timespec_in("timeout")}, kBlocks, I),
  call(221, "fadvise64", {fd("fd"), i64("offset"), u64("len"), i32("advice")}, kCallNone, D),
  // The kernel keeps sigev_value as a value: no later access.
  call(222, "timer_create", {clockid("clockid"), struct_in("sevp", lay::kSigeventSize), struct_out("timerid", 4)},
       kCallNone, T),
  call(223, "timer_settime", {i32("timerid"), hexflags("flags"), struct_in("new_value", lay::kItimerspecSize),
                              struct_out("old_value", lay::kItimerspecSize)}, kCallNone, T),
  call(224, "timer_gettime", {i32("timerid"), struct_out("curr_value", lay::kItimerspecSize)}, kCallNone, T),
  call(225, "timer_getoverrun", {i32("timerid")}, kCallNone, T),
  call(226, "timer_delete", {i32("timerid")}, kCallNone, T),
  call(227, "clock_settime", {clockid("clockid"), timespec_in("tp")}, kCallNone, T),
  call(228, "clock_gettime", {clockid("clockid"), timespec_out("tp")}, kCallNone, T),
  call(229, "clock_getres", {clockid("clockid"), timespec_out("res")}, kCallNone, T),
  call(230, "clock_nanosleep", {clockid("clockid"), hexflags("flags"), timespec_in("request"),
                                out("remain", L::fixed(lay::kTimespecSize), W::kOnFailure, Shape::kTimespec)},
       kBlocks, T),
  call(231, "exit_group", {i32("status")}, kNoReturn, P),
  call(232, "epoll_wait", {fd("epfd"), epoll_events("events"), i32("maxevents"), i32("timeout")}, kBlocks, D),
  call(233, "epoll_ctl", {fd("epfd"), command("op", Commands::kEpollCtl), fd("fd"),
                          in("event", L::fixed(lay::kEpollEventSize), Shape::kEpollEvent)}, kCallNone, D),
  call(234, "tgkill", {pid("tgid"), pid("tid"), sig("sig")}, kCallNone, S),
  call(235, "utimes", {path("filename"), struct_in("times", 2 * lay::kTimevalSize)}, kCallNone, F),
  call(236, "vserver", {}, kNotImplemented, kClassNone),
  call(237, "mbind", {range("addr", 1), u64("len"), u64("mode"), nodemask_in("nodemask", 4), u64("maxnode"),
                      hexflags("flags")}, kCallNone, M),
  call(238, "set_mempolicy", {i32("mode"), nodemask_in("nodemask", 2), u64("maxnode")}, kCallNone, M),
  call(239, "get_mempolicy", {struct_out("mode", 4), out("nodemask", L::bits_arg(2, 1)), u64("maxnode"),
                              ptr("addr"), hexflags("flags")}, kCallNone, M),
  call(240, "mq_open", {str("name", lay::kPathMax), open_command("oflag", Commands::kMqOpenFlags), mode("mode"),
                        struct_in("attr", lay::kMqAttrSize)}, kReturnsFd, D | I),
  call(241, "mq_unlink", {str("name", lay::kPathMax)}, kCallNone, I),
  call(242, "mq_timedsend", {fd("mqdes"), buffer_in("msg_ptr", 2), u64("msg_len"), u32("msg_prio"),
                             timespec_in("abs_timeout")}, kBlocks, D | I),
  call(243, "mq_timedreceive", {fd("mqdes"), buffer_out("msg_ptr", 2), u64("msg_len"), struct_out("msg_prio", 4),
                                timespec_in("abs_timeout")}, kBlocks, D | I),
  call(244, "mq_notify", {fd("mqdes"), in("sevp", L::fixed(lay::kSigeventSize), Shape::kMqSigevent)},
       kCallNone, D | I),
  call(245, "mq_getsetattr", {fd("mqdes"), struct_in("newattr", lay::kMqAttrSize),
                              struct_out("oldattr", lay::kMqAttrSize)}, kCallNone, D | I),
  call(246, "kexec_load", {hex64("entry"), u64("nr_segments"), in("segments", L::of_arg(1, 32)), hexflags("flags")},
       kNeverComplete, Y, "each segment points to a buffer of its own"),
  call(247, "waitid", {command("idtype", Commands::kWaitidType), pid("id"), struct_out("infop", lay::kSiginfoSize),
                       flags("options", Names::kWaitOptions, Type::kInt), struct_out("rusage", lay::kRusageSize)},
       kBlocks, P),
  call(248, "add_key", {str("type", 32), str("description", lay::kPageSize), buffer_in("payload", 3), u64("plen"),
                        i32("keyring")}, kCallNone, kClassNone),
  call(249, "request_key", {str("type", 32), str("description", lay::kPageSize), str("callout_info", lay::kPageSize),
                            i32("dest_keyring")}, kBlocks, kClassNone),
  call(250, "keyctl", {command("operation", Commands::kKeyctl), hex64("arg2"), hex64("arg3"), hex64("arg4"),
                       hex64("arg5")}, kCallNone, kClassNone),
  call(251, "ioprio_set", {i32("which"), i32("who"), i32("ioprio")}, kCallNone, P),
  call(252, "ioprio_get", {i32("which"), i32("who")}, kCallNone, P),
  call(253, "inotify_init", {}, kReturnsFd, D),
  call(254, "inotify_add_watch", {fd("fd"), path("pathname"), hex32("mask")}, kCallNone, F | D),
  call(255, "inotify_rm_watch", {fd("fd"), i32("wd")}, kCallNone, D),
  call(256, "migrate_pages", {pid("pid"), u64("maxnode"), nodemask_in("old_nodes", 1), nodemask_in("new_nodes", 1)},
       kCallNone, M),
  call(257, "openat", {dirfd("dirfd"), path("pathname"), open_command("flags", Commands::kOpenatFlags), mode("mode")}, kReturnsFd | kBlocks,
       F | D),
  call(258, "mkdirat", {dirfd("dirfd"), path("pathname"), mode("mode")}, kCallNone, F | D),
  call(259, "mknodat", {dirfd("dirfd"), path("pathname"), mode("mode"), hex32("dev")}, kCallNone, F | D),
  call(260, "fchownat", {dirfd("dirfd"), path("pathname"), uid("owner"), uid("group"), at_flags("flags")},
       kCallNone, F | D),
  call(261, "futimesat", {dirfd("dirfd"), path("pathname"), struct_in("times", 2 * lay::kTimevalSize)}, kCallNone,
       F | D),
  call(262, "newfstatat", {dirfd("dirfd"), path("pathname"), stat_out("statbuf"), at_flags("flags")}, kCallNone,
       F | D),
  call(263, "unlinkat", {dirfd("dirfd"), path("pathname"), at_flags("flags")}, kCallNone, F | D),
  call(264, "renameat", {dirfd("olddirfd"), path("oldpath"), dirfd("newdirfd"), path("newpath")}, kCallNone, F | D),
  call(265, "linkat", {dirfd("olddirfd"), path("oldpath"), dirfd("newdirfd"), path("newpath"), at_flags("flags")},
       kCallNone, F | D),
  call(266, "symlinkat", {path("target"), dirfd("newdirfd"), path("linkpath")}, kCallNone, F | D),
  call(267, "readlinkat", {dirfd("dirfd"), path("pathname"), buffer_out("buf", 3), i32("bufsiz")}, kCallNone, F | D),
  call(268, "fchmodat", {dirfd("dirfd"), path("pathname"), mode("mode")}, kCallNone, F | D),
  call(269, "faccessat", {dirfd("dirfd"), path("pathname"), flags("mode", Names::kAccessMode, Type::kInt)},
       kCallNone, F | D),
  call(270, "pselect6", {i32("nfds"), fd_set("readfds"), fd_set("writefds"), fd_set("exceptfds"),
                         timespec_left("timeout"),
                         nested("sigmask", Dir::kRead, Shape::kSigsetPointer, L::fixed(16), Dir::kRead)},
       kBlocks, D),
  call(271, "ppoll", {pollfds("fds"), u32("nfds"), timespec_left("tmo_p"), sigset_in("sigmask", 4),
                      u64("sigsetsize")}, kBlocks, D),
  call(272, "unshare", {flags("flags", Names::kUnshareFlags, Type::kULong)}, kCallNone, P),
  // Registered for the thread's exit, when the kernel walks the list and
  // writes the futex words it finds.
  call(273, "set_robust_list", {with_flags(inout("head", L::of_arg(1), W::kNever, Shape::kRobustList),
                                           kAsync | kFollowedLater),
                                u64("len")}, kAsyncWriter, P),
  call(274, "get_robust_list", {pid("pid"), struct_out("head_ptr", 8), struct_out("len_ptr", 8)}, kCallNone, P),
  call(275, "splice", {fd("fd_in"), inout("off_in", L::fixed(8)), fd("fd_out"), inout("off_out", L::fixed(8)),
                       u64("len"), hexflags("flags")}, kBlocks, D),
  call(276, "tee", {fd("fd_in"), fd("fd_out"), u64("len"), hexflags("flags")}, kBlocks, D),
  call(277, "sync_file_range", {fd("fd"), i64("offset"), i64("nbytes"), hexflags("flags")}, kBlocks, D),
  // Into a pipe the kernel may reference the pages and read them when the
  // pipe is read; out of one it writes them now. Which one depends on the
  // descriptor.
  call(278, "vmsplice", {fd("fd"), with_flags(iovecs("iov", 2, Dir::kReadWrite, W::kReturn), kAsync),
                         u64("nr_segs"), hexflags("flags")}, kBlocks, D),
  call(279, "move_pages", {pid("pid"), u64("count"),
                           with_flags(nested("pages", Dir::kRead, Shape::kPtrArray, L::of_arg(1, 8),
                                             Dir::kAddressOnly), kRemote),
                           in("nodes", L::of_arg(1, 4)), out("status", L::of_arg(1, 4)), hexflags("flags")},
       kCallNone, M),
  call(280, "utimensat", {dirfd("dirfd"), path("pathname"), struct_in("times", 2 * lay::kTimespecSize),
                          at_flags("flags")}, kCallNone, F | D),
  call(281, "epoll_pwait", {fd("epfd"), epoll_events("events"), i32("maxevents"), i32("timeout"),
                            sigset_in("sigmask", 5), u64("sigsetsize")}, kBlocks, D),
  call(282, "signalfd", {optional_fd("fd"), sigset_in("mask", 2), u64("sizemask")}, kReturnsFd, D | S),
  call(283, "timerfd_create", {clockid("clockid"), hexflags("flags")}, kReturnsFd, D | T),
  call(284, "eventfd", {u32("initval")}, kReturnsFd, D),
  call(285, "fallocate", {fd("fd"), i32("mode"), i64("offset"), i64("len")}, kCallNone, D),
  call(286, "timerfd_settime", {fd("fd"), hexflags("flags"), struct_in("new_value", lay::kItimerspecSize),
                                struct_out("old_value", lay::kItimerspecSize)}, kCallNone, D | T),
  call(287, "timerfd_gettime", {fd("fd"), struct_out("curr_value", lay::kItimerspecSize)}, kCallNone, D | T),
  call(288, "accept4", {fd("sockfd"), sockaddr_out("addr", 2), socklen("addrlen"),
                        flags("flags", Names::kSocketType, Type::kInt)}, kReturnsFd | kBlocks, N | D),
  call(289, "signalfd4", {optional_fd("fd"), sigset_in("mask", 2), u64("sizemask"), hexflags("flags")}, kReturnsFd,
       D | S),
  call(290, "eventfd2", {u32("initval"), hexflags("flags")}, kReturnsFd, D),
  call(291, "epoll_create1", {hexflags("flags")}, kReturnsFd, D),
  call(292, "dup3", {fd("oldfd"), fd_target("newfd"), flags("flags", Names::kFileFlags, Type::kInt)}, kReturnsFd, D),
  call(293, "pipe2", {new_fds("pipefd"), flags("flags", Names::kFileFlags, Type::kInt)}, kCallNone, D),
  call(294, "inotify_init1", {hexflags("flags")}, kReturnsFd, D),
  call(295, "preadv", {fd("fd"), iovecs("iov", 2, Dir::kWrite, W::kReturn), u64("iovcnt"), u64("pos_l"),
                       u64("pos_h")}, kBlocks, D),
  call(296, "pwritev", {fd("fd"), iovecs("iov", 2, Dir::kRead), u64("iovcnt"), u64("pos_l"), u64("pos_h")}, kBlocks,
       D),
  call(297, "rt_tgsigqueueinfo", {pid("tgid"), pid("tid"), sig("sig"), struct_in("info", lay::kSiginfoSize)},
       kCallNone, S),
  // The kernel writes the size it knows back into attr on E2BIG.
  call(298, "perf_event_open", {inout("attr", L::by_shape(), W::kOnFailure, Shape::kPerfEventAttr), pid("pid"),
                                i32("cpu"), optional_fd("group_fd"),
                                formatted(command("flags", Commands::kPerfFlags, Type::kULong), Format::kHex)},
       kReturnsFd, D),
  call(299, "recvmmsg", {fd("sockfd"), nested("msgvec", Dir::kReadWrite, Shape::kMmsghdrs, L::of_arg(2, lay::kMmsghdrSize),
                                              Dir::kWrite, W::kReturn),
                         u32("vlen"), msg_flags("flags"), timespec_left("timeout")}, kBlocks, N | D),
  call(300, "fanotify_init", {hexflags("flags"), hexflags("event_f_flags")}, kReturnsFd, D),
  call(301, "fanotify_mark", {fd("fanotify_fd"), hexflags("flags"), hex64("mask"), dirfd("dirfd"),
                              path("pathname")}, kCallNone, F | D),
  call(302, "prlimit64", {pid("pid"), i32("resource"), struct_in("new_limit", lay::kRlimitSize),
                          struct_out("old_limit", lay::kRlimitSize)}, kCallNone, P),
  // handle_bytes too small: the kernel writes the size it needs, EOVERFLOW.
  call(303, "name_to_handle_at", {dirfd("dirfd"), path("pathname"),
                                  inout("handle", L::by_shape(), W::kAlways, Shape::kFileHandle),
                                  struct_out("mount_id", 4), at_flags("flags")}, kCallNone, F | D),
  call(304, "open_by_handle_at", {dirfd("mount_fd"), in("handle", L::by_shape(), Shape::kFileHandle),
                                  open_flags("flags")}, kReturnsFd, D),
  call(305, "clock_adjtime", {clockid("clk_id"), struct_inout("buf", lay::kTimexSize)}, kCallNone, T),
  call(306, "syncfs", {fd("fd")}, kBlocks, D),
  call(307, "sendmmsg", {fd("sockfd"), nested("msgvec", Dir::kReadWrite, Shape::kMmsghdrs,
                                              L::of_arg(2, lay::kMmsghdrSize), Dir::kRead, W::kReturn),
                         u32("vlen"), msg_flags("flags")}, kBlocks, N | D),
  call(308, "setns", {fd("fd"), flags("nstype", Names::kUnshareFlags, Type::kInt)}, kCallNone, P | D),
  call(309, "getcpu", {struct_out("cpu", 4), struct_out("node", 4), ptr("tcache")}, kCallNone, kClassNone),
  call(310, "process_vm_readv", {pid("pid"), iovecs("local_iov", 2, Dir::kWrite, W::kReturn), u64("liovcnt"),
                                 with_flags(iovecs("remote_iov", 4, Dir::kRead), kRemote), u64("riovcnt"),
                                 hexflags("flags")}, kCallNone, P),
  call(311, "process_vm_writev", {pid("pid"), iovecs("local_iov", 2, Dir::kRead), u64("liovcnt"),
                                  with_flags(iovecs("remote_iov", 4, Dir::kWrite, W::kReturn), kRemote),
                                  u64("riovcnt"), hexflags("flags")}, kCallNone, P),
  call(312, "kcmp", {pid("pid1"), pid("pid2"), command("type", Commands::kKcmp), u64("idx1"), u64("idx2")},
       kCallNone, P),
  call(313, "finit_module", {fd("fd"), long_str("param_values"), hexflags("flags")}, kCallNone, D | Y),
  // The kernel writes the size it knows back into attr on E2BIG.
  call(314, "sched_setattr", {pid("pid"), inout("attr", L::by_shape(), W::kOnFailure, Shape::kSchedAttr),
                              hexflags("flags")}, kCallNone, P),
  call(315, "sched_getattr", {pid("pid"), out("attr", L::of_arg(2)), u32("size"), hexflags("flags")}, kCallNone, P),
  call(316, "renameat2", {dirfd("olddirfd"), path("oldpath"), dirfd("newdirfd"), path("newpath"),
                          hexflags("flags")}, kCallNone, F | D),
  call(317, "seccomp", {command("operation", Commands::kSeccomp, Type::kUInt), hexflags("flags"), ptr("args")},
       kCallNone, P),
  call(318, "getrandom", {buffer_out("buf", 1), u64("buflen"), hexflags("flags")}, kBlocks, kClassNone),
  call(319, "memfd_create", {str("name", 250), hexflags("flags")}, kReturnsFd, D),
  call(320, "kexec_file_load", {fd("kernel_fd"), optional_fd("initrd_fd"), u64("cmdline_len"),
                                buffer_in("cmdline", 2), hexflags("flags")}, kCallNone, D | Y),
  call(321, "bpf", {command("cmd", Commands::kBpf), inout("attr", L::of_arg(2)), u32("size")}, kCallNone, D),
  call(322, "execveat", {dirfd("dirfd"), path("pathname"), strings("argv"), strings("envp"), at_flags("flags")},
       kNoReturn, F | D | P),
  call(323, "userfaultfd", {hexflags("flags")}, kReturnsFd, D),
  call(324, "membarrier", {i32("cmd"), hexflags("flags"), i32("cpu_id")}, kCallNone, kClassNone),
  call(325, "mlock2", {range("addr", 1), u64("len"), hexflags("flags")}, kCallNone, M),
  call(326, "copy_file_range", {fd("fd_in"), inout("off_in", L::fixed(8)), fd("fd_out"),
                                inout("off_out", L::fixed(8)), u64("len"), hexflags("flags")}, kBlocks, D),
  call(327, "preadv2", {fd("fd"), iovecs("iov", 2, Dir::kWrite, W::kReturn), u64("iovcnt"), u64("pos_l"),
                        u64("pos_h"), hexflags("flags")}, kBlocks, D),
  call(328, "pwritev2", {fd("fd"), iovecs("iov", 2, Dir::kRead), u64("iovcnt"), u64("pos_l"), u64("pos_h"),
                         hexflags("flags")}, kBlocks, D),
  call(329, "pkey_mprotect", {range("addr", 1), u64("len"), prot("prot"), i32("pkey")}, kChangesMappings, M),
  call(330, "pkey_alloc", {hexflags("flags"), hexflags("access_rights")}, kCallNone, M),
  call(331, "pkey_free", {i32("pkey")}, kCallNone, M),
  call(332, "statx", {dirfd("dirfd"), path("pathname"), at_flags("flags"), hex32("mask"),
                      struct_out("statxbuf", lay::kStatxSize)}, kCallNone, F | D),
  call(333, "io_pgetevents", {hex64("ctx_id"), i64("min_nr"), i64("nr"), io_events("events"), timespec_in("timeout"),
                              nested("usig", Dir::kRead, Shape::kSigsetPointer, L::fixed(lay::kAioSigsetSize),
                                     Dir::kRead)}, kBlocks, D),
  // Registered: the kernel writes the CPU numbers on every return to the
  // thread and reads rseq_cs, a pointer, on preemption.
  call(334, "rseq", {with_flags(inout("rseq", L::of_arg(1), W::kNever, Shape::kRseq), kAsync | kFollowedLater),
                     u32("rseq_len"), command("flags", Commands::kRseqFlags), hex32("sig")}, kAsyncWriter, P),
  call(424, "pidfd_send_signal", {fd("pidfd"), sig("sig"), struct_in("info", lay::kSiginfoSize), hexflags("flags")},
       kCallNone, S | D),
  call(425, "io_uring_setup", {u32("entries"), struct_inout("params", lay::kIoUringParamsSize)},
       kReturnsFd | kLaterUnbounded, D),
  call(426, "io_uring_enter", {fd("fd"), u32("to_submit"), u32("min_complete"), hexflags("flags"),
                               buffer_in("arg", 5), u64("argsz")}, kNeverComplete | kBlocks | kLaterUnbounded, D,
       "submission entries are read from memory shared with the kernel, with their buffers, asynchronously"),
  call(427, "io_uring_register", {fd("fd"), command("opcode", Commands::kIoUringRegister, Type::kUInt), ptr("arg"),
                                  u32("nr_args")}, kCallNone, D),
  call(428, "open_tree", {dirfd("dirfd"), path("pathname"), hexflags("flags")}, kReturnsFd, F | D | Y),
  call(429, "move_mount", {dirfd("from_dirfd"), path("from_pathname"), dirfd("to_dirfd"), path("to_pathname"),
                           hexflags("flags")}, kCallNone, F | D | Y),
  call(430, "fsopen", {str("fsname", lay::kPageSize), hexflags("flags")}, kReturnsFd, D | Y),
  call(431, "fsconfig", {fd("fd"), command("cmd", Commands::kFsconfig, Type::kUInt), ptr("key"), ptr("value"),
                         i32("aux")}, kCallNone, D | Y),
  call(432, "fsmount", {fd("fd"), hexflags("flags"), hexflags("attr_flags")}, kReturnsFd, D | Y),
  call(433, "fspick", {dirfd("dirfd"), path("pathname"), hexflags("flags")}, kReturnsFd, F | D | Y),
  call(434, "pidfd_open", {pid("pid"), hexflags("flags")}, kReturnsFd, P | D),
  call(435, "clone3", {nested("cl_args", Dir::kRead, Shape::kCloneArgs, L::of_arg(1), Dir::kWrite), u64("size")},
       kReturnsPid | kNewProcess | kAsyncWriter, P),
  call(436, "close_range", {fd_first("first"), fd_last("last"), hexflags("flags")}, kCallNone, D),
  call(437, "openat2", {with_flags(dirfd("dirfd"), kDirFdAlways), path("pathname"), in("how", L::of_arg(3)), u64("size")},
       kReturnsFd | kBlocks, F | D),
  // The descriptor is one of the other process's: not a use of ours.
  call(438, "pidfd_getfd", {fd("pidfd"), with_kind("targetfd", Kind::kRemoteFd), hexflags("flags")}, kReturnsFd,
       P | D),
  call(439, "faccessat2", {dirfd("dirfd"), path("pathname"), flags("mode", Names::kAccessMode, Type::kInt),
                           at_flags("flags")}, kCallNone, F | D),
  call(440, "process_madvise", {fd("pidfd"), with_flags(iovecs("iovec", 2, Dir::kAddressOnly), kRemote),
                                u64("vlen"), named("advice", Names::kMadvise), hexflags("flags")}, kCallNone, M | D),
  call(441, "epoll_pwait2", {fd("epfd"), epoll_events("events"), i32("maxevents"), timespec_in("timeout"),
                             sigset_in("sigmask", 5), u64("sigsetsize")}, kBlocks, D),
  call(442, "mount_setattr", {dirfd("dirfd"), path("pathname"), hexflags("flags"),
                              in("attr", L::of_arg(4), Shape::kMountAttr), u64("size")}, kCallNone, F | D | Y),
  call(443, "quotactl_fd", {fd("fd"), formatted(command("cmd", Commands::kQuotactl), Format::kHex), i32("id"),
                            ptr("addr")}, kCallNone, D | Y),
  call(444, "landlock_create_ruleset", {in("attr", L::of_arg(1)), u64("size"), hexflags("flags")}, kReturnsFd, D),
  call(445, "landlock_add_rule", {fd("ruleset_fd"), command("rule_type", Commands::kLandlockRuleType),
                                  ptr("rule_attr"), hexflags("flags")}, kCallNone, D),
  call(446, "landlock_restrict_self", {fd("ruleset_fd"), hexflags("flags")}, kCallNone, D),
  call(447, "memfd_secret", {hexflags("flags")}, kReturnsFd, D),
  call(448, "process_mrelease", {fd("pidfd"), hexflags("flags")}, kCallNone, P | D),
  call(449, "futex_waitv", {nested("waiters", Dir::kRead, Shape::kFutexWaitv, L::of_arg(1, lay::kFutexWaitvSize),
                                   Dir::kRead),
                            u32("nr_futexes"), hexflags("flags"), timespec_in("timeout"), clockid("clockid")},
       kBlocks, P),
  call(450, "set_mempolicy_home_node", {range("start", 1), u64("len"), u64("home_node"), hexflags("flags")},
       kCallNone, M),
};
// clang-format on

constexpr bool rows_in_number_order() {
  for (std::size_t i = 1; i < std::size(kRows); ++i) {
    if (kRows[i].number <= kRows[i - 1].number) return false;
  }
  return kRows[std::size(kRows) - 1].number == kMaxSyscall;
}
static_assert(rows_in_number_order(), "rows must be in strictly increasing number order, up to kMaxSyscall");
static_assert(std::size(kRows) == 362, "Linux 6.1's x86-64 table has 362 calls");

constexpr bool arg_counts_match() {
  for (const CallSpec& c : kRows) {
    for (unsigned i = 0; i < kMaxArgs; ++i) {
      if ((i < c.arg_count) != c.args[i].used()) return false;
    }
  }
  return true;
}
static_assert(arg_counts_match(), "every listed argument must be used, and only those");

// Index by number: holes are empty specs.
constexpr std::array<const CallSpec*, kMaxSyscall + 1> make_by_number() {
  std::array<const CallSpec*, kMaxSyscall + 1> table{};
  for (const CallSpec& c : kRows) table[c.number] = &c;
  return table;
}
constexpr auto kByNumber = make_by_number();

constexpr bool name_less(const CallSpec* a, const CallSpec* b) {
  return std::string_view(a->name) < std::string_view(b->name);
}
constexpr std::array<const CallSpec*, std::size(kRows)> make_by_name() {
  std::array<const CallSpec*, std::size(kRows)> index{};
  for (std::size_t i = 0; i < std::size(kRows); ++i) index[i] = &kRows[i];
  std::sort(index.begin(), index.end(), name_less);
  return index;
}
constexpr auto kByName = make_by_name();

constexpr bool names_unique() {
  for (std::size_t i = 1; i < kByName.size(); ++i) {
    if (!name_less(kByName[i - 1], kByName[i])) return false;
  }
  return true;
}
static_assert(names_unique(), "two rows have the same name");

}  // namespace

const CallSpec* lookup(std::uint64_t rax) noexcept {
  const std::int32_t number = kernel_number(rax);
  if (number < 0 || number > static_cast<std::int32_t>(kMaxSyscall)) return nullptr;
  return kByNumber[static_cast<unsigned>(number)];
}

const CallSpec* lookup(std::string_view name) noexcept {
  auto it = std::lower_bound(kByName.begin(), kByName.end(), name,
                             [](const CallSpec* c, std::string_view n) { return std::string_view(c->name) < n; });
  if (it == kByName.end() || std::string_view((*it)->name) != name) return nullptr;
  return *it;
}

const char* name_of(std::uint64_t number) noexcept {
  const CallSpec* c = lookup(number);
  return c != nullptr ? c->name : nullptr;
}

std::span<const CallSpec> all_calls() noexcept { return kRows; }

}  // namespace dunk::abi
