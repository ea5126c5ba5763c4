// Linux's x86-64 system-call ABI as data: what every system call does with
// its six arguments.
//
// The layer, file by file:
//   syscalls.h        the vocabulary: argument kinds, lengths, shapes, the
//                     row of one call; lookup by number (an array index)
//                     and by name
//   syscall_table.cc  the rows, one per name of asm/unistd_64.h, in number
//                     order: "what does dunk know about the arguments of
//                     call N" is one line there
//   commands.h/.cc    what an argument means by a command (ioctl, fcntl,
//                     futex, prctl, ...) or by flags (clone's CLONE_*TID,
//                     mmap's MAP_FIXED); resolve() applies them
//   layouts.h         sizes and offsets of the structures the walker reads
//   walk.h/.cc        every memory range and descriptor of one call
//   format.h/.cc      strace-style lines; names.h/.cc the names they use
//
// Every consumer asks the same table:
//
//   - the sandbox copies every range the kernel will read into memory the
//     program cannot touch, hands the kernel the copies, and copies back
//     what the kernel wrote: walk(kEntry) with a visitor that copies and
//     returns its copies (nested pointers are then read from them, and
//     Access::where says which register or which parent offset to point at
//     the copy), the call on the copies, walk(kExit) over the copies;
//     Completeness other than kComplete: deny;
//   - dirty tracking marks what the kernel wrote: walk(kExit, ret), each
//     Access with `written` bytes; Access::async and WalkResult::async /
//     later_unbounded name memory the kernel writes after the call;
//   - sthreads check every range of walk(kEntry), reads and writes, against
//     a compartment's view;
//   - the monitor treats dunk's own descriptors as closed: walk(kEntry)'s
//     FdUses (kUse, kDirFd, kTarget, the kRangeFirst/kRangeLast bounds),
//     in registers and inside structures;
//   - --strace and --stats: name_of(), format_entry() and format_exit().
//
// Everything here is constexpr data and pure functions: no system calls, no
// allocation, no exceptions, so the monitor may use it between two
// instructions of the program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dunk::abi {

inline constexpr unsigned kMaxArgs = 6;
// The highest x86-64 system-call number in Linux 6.1
// (set_mempolicy_home_node).
inline constexpr unsigned kMaxSyscall = 450;
// x32 calls share the entry point and set this bit in the number; they are
// a different ABI, which this table does not describe.
inline constexpr std::uint64_t kX32Bit = 0x40000000;

// The C type the kernel gives an argument: how many of the register's bits
// it reads, and whether they are signed (an int fd of -100 arrives as
// 0xffffff9c or as 0xffffffffffffff9c; the kernel sees -100 either way).
enum class Type : std::uint8_t { kInt, kUInt, kLong, kULong };

// The value of register `raw` as the kernel reads it for `type`, widened.
constexpr std::int64_t as_signed(std::uint64_t raw, Type type) noexcept {
  switch (type) {
    case Type::kInt: return static_cast<std::int32_t>(static_cast<std::uint32_t>(raw));
    case Type::kUInt: return static_cast<std::int64_t>(static_cast<std::uint32_t>(raw));
    case Type::kLong:
    case Type::kULong: return static_cast<std::int64_t>(raw);
  }
  return static_cast<std::int64_t>(raw);
}
constexpr std::uint64_t as_unsigned(std::uint64_t raw, Type type) noexcept {
  return (type == Type::kInt || type == Type::kUInt) ? (raw & 0xffffffffu) : raw;
}

// What an argument is.
enum class Kind : std::uint8_t {
  kUnused,     // the call has fewer arguments (or the command ignores this one)
  kValue,      // a number; Format says how to print it
  kFd,         // a descriptor of this process the call acts on
  kDirFd,      // a descriptor paths are relative to, or AT_FDCWD
  kFdTarget,   // dup2/dup3's new number: the call makes it a descriptor,
               // closing what was there
  kFdFirst,    // close_range: the first and last numbers of a range of
  kFdLast,     // descriptors the call closes or changes
  kRemoteFd,   // a descriptor number in another process's table
               // (pidfd_getfd): not one of ours
  kPid,        // a process, thread or process-group id
  kSignal,     // a signal number
  kAddress,    // a user address the kernel does not read or write
               // (mmap's hint, munmap's range); Length gives the range
  kMemory,     // a pointer to memory the kernel reads or writes
  kString,     // a NUL-terminated string the kernel reads
  kPath,       // a NUL-terminated path the kernel reads
  kStrings,    // a NULL-terminated array of strings (execve's argv, envp)
  kCommand,    // selects what the other arguments mean (ioctl's request,
               // fcntl's cmd, futex's op, ...): see commands.h
};

// How a number is printed (--strace).
enum class Format : std::uint8_t {
  kDec,    // decimal, signed or not as its Type
  kHex,    // 0x...
  kOct,    // 0644: file modes
  kPtr,    // NULL or 0x...
  kFlags,  // names of bits of a flag set (Names), the rest in hex
  kEnum,   // the name of the value (Names), or the number
};

// Named values and flag sets for Format::kFlags and kEnum (names.h).
enum class Names : std::uint8_t {
  kNone,
  kOpenFlags,    // O_RDONLY|O_CLOEXEC
  kFileFlags,    // the same without an access mode: O_CLOEXEC (pipe2, dup3)
  kProt,         // PROT_READ|PROT_WRITE
  kMapFlags,     // MAP_PRIVATE|MAP_ANONYMOUS
  kCloneFlags,   // CLONE_VM|...|SIGCHLD (the low byte is the exit signal)
  kUnshareFlags, // CLONE_NEWNS|CLONE_NEWUSER (unshare, setns)
  kAtFlags,      // AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH
  kWhence,       // SEEK_SET
  kClockId,      // CLOCK_MONOTONIC
  kAccessMode,   // F_OK, R_OK|W_OK
  kSocketFamily, // AF_UNIX
  kSocketType,   // SOCK_STREAM|SOCK_CLOEXEC
  kMsgFlags,     // MSG_DONTWAIT|MSG_NOSIGNAL
  kSigprocmaskHow,
  kWaitOptions,  // WNOHANG|__WALL
  kMremapFlags,
  kMadvise,
  kFdFlags,      // FD_CLOEXEC
};

// What the kernel does with memory.
enum class Dir : std::uint8_t {
  kNone,
  kRead,
  kWrite,
  kReadWrite,
  kAddressOnly,  // uses the range without reading or writing it: munmap,
                 // mprotect, a futex word used as a key
};
constexpr bool reads(Dir d) noexcept { return d == Dir::kRead || d == Dir::kReadWrite; }
constexpr bool writes(Dir d) noexcept { return d == Dir::kWrite || d == Dir::kReadWrite; }

// The layout of memory an argument points to: the walker decodes the
// shapes that hold pointers or descriptors; the others are bytes.
enum class Shape : std::uint8_t {
  kBytes,
  kIovecs,        // struct iovec[]: data direction in Arg::inner
  kMsghdr,        // struct user_msghdr: send (read) or receive (read/write)
  kMmsghdrs,      // struct mmsghdr[]
  kPollfds,       // struct pollfd[]: fds used, revents written
  kFdSet,         // fd_set bitmap: its set bits are descriptors used
  kEpollEvent,    // struct epoll_event (12 bytes, packed on x86-64)
  kSigaction,     // the kernel's struct sigaction (32 bytes)
  kSigaltstack,   // stack_t: registers a stack the kernel writes later
  kCloneArgs,     // struct clone_args (clone3)
  kIocbs,         // struct iocb *[] (io_submit): each iocb, its buffers
  kMqSigevent,    // mq_notify's struct sigevent: SIGEV_THREAD names a
                  // socket and a cookie the kernel reads
  kFutexWaitv,    // struct futex_waitv[]: each futex word read
  kSchedAttr,     // struct sched_attr: sized by its own u32 size field
  kPerfEventAttr, // struct perf_event_attr: sized by its own size field
  kFileHandle,    // struct file_handle: 8 bytes + handle_bytes
  kCapData,       // capget/capset data: 1 or 2 elements by the header's version
  kRobustList,    // struct robust_list_head: the kernel walks the list at exit
  kRseq,          // struct rseq: the kernel reads and writes it later
  kSockaddr,      // a socket address
  kNewFds,        // int[]: descriptors the call creates (pipe, socketpair)
  kFds,           // int[]: descriptors the call uses (io_uring registration)
  kSigsetPointer, // {const sigset_t *, size_t}: pselect6, io_pgetevents
  kSockFprog,     // struct sock_fprog: a BPF program of len instructions
  kStrings,       // a NULL-terminated array of strings
  kPtrArray,      // an array of addresses (move_pages): Arg::inner
  kMountAttr,     // struct mount_attr: userns_fd with MOUNT_ATTR_IDMAP
  kPathBeneath,   // struct landlock_path_beneath_attr: parent_fd
  kFileCloneRange,// struct file_clone_range: src_fd
  kPtraceIovec,   // PTRACE_GETREGSET/SETREGSET's struct iovec
  kIoUringFilesUpdate, // struct io_uring_files_update: fds at a pointer
  kTimespec,      // printed {tv_sec=..., tv_nsec=...}
};

// Where the size of memory comes from.
enum class LengthFrom : std::uint8_t {
  kNone,     // no memory, or the size is not known to the table
  kFixed,    // `size` bytes
  kArg,      // `header` bytes plus argument `arg` times `size` bytes
             // (size 1: a byte count; msgsnd: 8 + msgsz)
  kPointee,  // value-result: the `size`-byte integer argument `arg` points
             // to (socklen_t: 4; size_t: 8)
  kNul,      // up to and including a NUL; the kernel reads at most `size`
  kBitsArg,  // a bitmap of (argument `arg` - `size`) bits in longs
             // (fd_set: size 0; node masks: size 1)
  kPagesArg, // one byte per page of argument `arg` bytes (mincore)
  kShape,    // the shape knows (a structure with its own size field)
};

struct Length {
  LengthFrom from = LengthFrom::kNone;
  std::uint8_t arg = 0;
  std::uint16_t header = 0;
  std::uint32_t size = 0;

  static constexpr Length none() noexcept { return {}; }
  static constexpr Length fixed(std::uint32_t bytes) noexcept { return {LengthFrom::kFixed, 0, 0, bytes}; }
  static constexpr Length of_arg(unsigned a, std::uint32_t element = 1, std::uint16_t header = 0) noexcept {
    return {LengthFrom::kArg, static_cast<std::uint8_t>(a), header, element};
  }
  static constexpr Length pointee(unsigned a, std::uint32_t width = 4) noexcept {
    return {LengthFrom::kPointee, static_cast<std::uint8_t>(a), 0, width};
  }
  static constexpr Length nul(std::uint32_t max) noexcept { return {LengthFrom::kNul, 0, 0, max}; }
  static constexpr Length bits_arg(unsigned a, std::uint32_t minus = 0) noexcept {
    return {LengthFrom::kBitsArg, static_cast<std::uint8_t>(a), 0, minus};
  }
  static constexpr Length pages_arg(unsigned a) noexcept {
    return {LengthFrom::kPagesArg, static_cast<std::uint8_t>(a), 0, 0};
  }
  static constexpr Length by_shape() noexcept { return {LengthFrom::kShape, 0, 0, 0}; }
};

// How much of a range the kernel wrote, known after the call.
enum class Written : std::uint8_t {
  kNever,         // not written
  kOnSuccess,     // all of it, when the call succeeded
  kAlways,        // all of it, whatever the result (select's timeout)
  kOnFailure,     // all of it when the call failed (nanosleep's remainder
                  // on EINTR; over-approximates the other errors)
  kReturn,        // the first Length::header + ret bytes when ret >= 0
                  // (read: ret; msgrcv: 8 + ret), at most all of it
  kReturnTimes,   // the first header + ret * Length::size bytes
                  // (epoll_wait: ret events), at most all of it
  kPointee,       // value-result: as many bytes as the length argument
                  // holds after the call (see walk.h)
  kShape,         // the shape's decoder says
};

// Facts about an argument beyond its kind. For a structure of pointers
// (Arg::inner set), kAsync and kRemote are about the memory its pointers
// name, not the structure itself.
enum ArgFlags : std::uint8_t {
  kArgNone = 0,
  kAsync = 1 << 0,          // the kernel accesses the memory after the call
                            // returns (set_tid_address, io_submit's
                            // buffers, registered io_uring buffers)
  kFollowedLater = 1 << 1,  // ... and follows pointers it finds there then
                            // (robust lists, rseq): not describable
  kRemote = 1 << 2,         // in the address space of the process named by
                            // argument 0 (process_vm_readv's remote side),
                            // which may be this one
  kOptionalFd = 1 << 3,     // -1 (any negative) means "no descriptor"
  kChildWrites = 1 << 4,    // written by the new child in its own memory
                            // (CLONE_CHILD_SETTID): ours only with CLONE_VM
  kDirFdAlways = 1 << 5,    // a dirfd the kernel looks up even for an
                            // absolute path (openat2's RESOLVE_IN_ROOT)
};

// Command tables (commands.h).
enum class Commands : std::uint8_t {
  kNone,
  kIoctl,
  kFcntl,
  kFutex,
  kPrctl,
  kArchPrctl,
  kEpollCtl,
  kShmctl,
  kMsgctl,
  kSemctl,
  kKeyctl,
  kPtrace,
  kBpf,
  kSeccomp,
  kFsconfig,
  kSetsockopt,       // by level and option name
  kGetsockopt,
  kIoUringRegister,
  kReboot,
  kQuotactl,
  kSyslog,
  kModifyLdt,
  kKcmp,
  kWaitidType,       // P_PIDFD makes the id a descriptor
  kLandlockRuleType,
  kMmapFlags,        // MAP_FIXED: addr is a range; MAP_ANONYMOUS: no fd
  kMremapFlags,      // MREMAP_FIXED: new_address is a range
  kCloneFlags,       // CLONE_PARENT_SETTID, CLONE_CHILD_SETTID, ...
  kShmatAddress,     // a fixed address: the segment's size is the kernel's
  kRseqFlags,        // register or unregister
  kPerfFlags,        // PERF_FLAG_PID_CGROUP: pid is a cgroup descriptor
  kOpenFlags,        // open: the mode matters with O_CREAT or O_TMPFILE
  kOpenatFlags,      // openat: the same, one argument later
  kMqOpenFlags,      // mq_open: mode and attr with O_CREAT
  kCount,            // not a table: how many ids there are
};

struct Arg {
  const char* name = nullptr;
  Kind kind = Kind::kUnused;
  Type type = Type::kULong;
  Format format = Format::kDec;
  Names names = Names::kNone;
  Dir dir = Dir::kNone;          // kMemory: what the kernel does with it
  Dir inner = Dir::kNone;        // kMemory with nested pointers: what it
                                 // does with the memory they point to
  Shape shape = Shape::kBytes;
  Length length{};               // kMemory, kAddress, kString, kPath
  Written written = Written::kNever;
  std::uint8_t flags = kArgNone; // ArgFlags
  Commands commands = Commands::kNone;  // kCommand: its table

  constexpr bool used() const noexcept { return kind != Kind::kUnused; }
  constexpr bool is_fd() const noexcept {
    return kind == Kind::kFd || kind == Kind::kDirFd || kind == Kind::kFdTarget || kind == Kind::kFdFirst ||
           kind == Kind::kFdLast;
  }
  // The kernel dereferences it (or uses it as an address).
  constexpr bool is_pointer() const noexcept {
    return kind == Kind::kMemory || kind == Kind::kString || kind == Kind::kPath || kind == Kind::kStrings ||
           kind == Kind::kAddress;
  }
};

// Facts about a call as a whole.
enum CallFlags : std::uint16_t {
  kCallNone = 0,
  kNoReturn = 1 << 0,        // does not return to the caller on success
                             // (exit, exit_group, rt_sigreturn, execve)
  kReturnsFd = 1 << 1,       // a new descriptor
  kReturnsAddress = 1 << 2,  // an address (printed in hex): mmap, brk, ...
  kReturnsPid = 1 << 3,      // fork, clone: the child's id
  kAsyncWriter = 1 << 4,     // may register memory the kernel accesses
                             // after it returns (some argument says where)
  kNeverComplete = 1 << 5,   // the table cannot describe it (walk.h)
  kChangesMappings = 1 << 6, // changes the address space (mmap, brk, ...)
  kNewProcess = 1 << 7,      // creates a process or thread
  kNotImplemented = 1 << 8,  // Linux 6.1 answers ENOSYS on x86-64
  kBlocks = 1 << 9,          // may block for long (--strace prints the
                             // entry part before making it)
  kLaterUnbounded = 1 << 10, // the kernel later accesses memory no argument
                             // bounds (io_setup's completion ring,
                             // io_uring's shared rings and the buffers
                             // their entries name)
};

// A group of related calls, as strace classes them (for --stats and policies).
enum CallClass : std::uint16_t {
  kClassNone = 0,
  kClassFile = 1 << 0,     // takes a path
  kClassDesc = 1 << 1,     // takes or returns a descriptor
  kClassMemory = 1 << 2,   // changes or inspects the address space
  kClassProcess = 1 << 3,  // process lifetime
  kClassSignal = 1 << 4,
  kClassNetwork = 1 << 5,
  kClassIpc = 1 << 6,
  kClassTime = 1 << 7,
  kClassCreds = 1 << 8,
  kClassSystem = 1 << 9,   // machine-wide: mount, reboot, modules, ...
};

struct CallSpec {
  std::uint16_t number = 0;
  const char* name = nullptr;   // nullptr: no call has this number
  std::uint8_t arg_count = 0;
  Arg args[kMaxArgs]{};
  std::uint16_t flags = kCallNone;    // CallFlags
  std::uint16_t classes = kClassNone; // CallClass
  // Why the table cannot describe the call, when it never can.
  const char* incomplete = nullptr;

  constexpr bool exists() const noexcept { return name != nullptr; }
  constexpr bool has(CallFlags f) const noexcept { return (flags & f) != 0; }
};

// The number the kernel decodes from RAX at `syscall`: Linux 6.1 takes the
// low 32 bits as an int (entry_64.S: movslq %eax), so a RAX with high bits
// set still runs the call of its low half.
constexpr std::int32_t kernel_number(std::uint64_t rax) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(rax));
}

// The call the kernel runs for this RAX, or nullptr (no such x86-64 call:
// a hole, a number past the table, an x32 number). An array index.
const CallSpec* lookup(std::uint64_t rax) noexcept;
// The call with this name ("openat"), or nullptr. A binary search.
const CallSpec* lookup(std::string_view name) noexcept;
// Its name, or nullptr.
const char* name_of(std::uint64_t number) noexcept;
// Every call, in number order.
std::span<const CallSpec> all_calls() noexcept;

}  // namespace dunk::abi
