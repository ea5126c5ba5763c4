// Every memory range and descriptor one system call touches, from its
// number, its six argument registers and the schema (syscalls.h).
//
//   walk(call, memory, visitor, Phase::kEntry)        before the call
//   walk(call, memory, visitor, Phase::kExit, ret)    after it
//
// The walker reads the structures that hold further pointers (an iovec
// array, a msghdr, execve's argv, clone_args, ...) through `memory`, and
// hands each range to the visitor parents first: an Access says where the
// range is, how long, what the kernel does with it, and where its pointer is
// stored (an argument register, or an offset inside a parent access), so a
// sandbox can copy it and point the kernel at the copy. A visitor that
// copies a parent returns its copy, and the walker reads the nested
// pointers from that copy, not from the program's memory again: what the
// sandbox checks and what the kernel gets is the same data.
//
// At entry, every range the kernel may read or write is listed, writes at
// the size the kernel may write. At exit, the ranges the kernel may have
// written are listed with `written` set from the return value and from the
// lengths the kernel reported (read: ret bytes; recvmsg: ret bytes over its
// iovecs, msg_controllen of control data), together with the structures
// that lead to them; read-only leaves are left out. Access ids are in walk
// order and are not promised to match between the two phases.
//
// Descriptors: the ones a call uses are reported at entry (FdUse), the ones
// it creates at exit (role kNew: the result of open, the pair of pipe, the
// SCM_RIGHTS of recvmsg, clone's pidfd).
//
// No pointer the kernel may follow goes unreported: when the walker cannot
// size or decode one (an unknown command, an unreadable structure, a count
// past a limit the kernel checks first), the result is not kComplete, and
// a sandbox must not pass the call on as it is.
//
// No allocation, no system calls (Memory is the caller's), no exceptions:
// the monitor may walk a call between two instructions of the program.
#pragma once

#include <cstddef>
#include <cstdint>

#include "abi/commands.h"
#include "abi/syscalls.h"

namespace dunk::abi {

// The program's memory, as the caller can read it (the guest's memory, or a
// sandbox's copies).
class Memory {
 public:
  // Copies up to `size` bytes from `address`; returns how many could be
  // read, stopping at the first unreadable byte.
  virtual std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept = 0;

 protected:
  ~Memory() = default;
};

enum class Phase : std::uint8_t { kEntry, kExit };

// Where a pointer (or a descriptor number) is stored.
struct Location {
  static constexpr std::uint32_t kArgument = 0xffffffff;
  static constexpr std::uint8_t kReturnValue = 0xff;
  std::uint32_t parent = kArgument;  // id of the access that holds it, or
                                     // kArgument: the register `arg`
  std::uint32_t offset = 0;          // within the parent
  std::uint8_t arg = 0;              // in a register: which argument
                                     // (kReturnValue: the call's result)
  constexpr bool in_register() const noexcept { return parent == kArgument; }
  constexpr bool operator==(const Location&) const noexcept = default;
};

// What a copy of an access must end with for the kernel to read it the way
// the walk did (another thread may change the program's memory between the
// walk's read and the copy).
enum class Terminator : std::uint8_t {
  kNone,
  kNul,          // a string: the last byte is its NUL
  kNullPointer,  // a pointer array (argv): the last 8 bytes are NULL
};

struct Access {
  std::uint32_t id = 0;
  std::uint64_t address = 0;
  std::uint64_t size = 0;      // what the kernel may access
  std::uint64_t written = 0;   // kExit: the first `written` bytes were written
  Dir dir = Dir::kNone;
  Kind kind = Kind::kMemory;   // kMemory, kString, kPath, kStrings, kAddress
  Shape shape = Shape::kBytes;
  std::uint8_t flags = kArgNone;  // ArgFlags: kAsync, kFollowedLater, kRemote, kChildWrites
  Terminator terminator = Terminator::kNone;
  Location where{};

  constexpr bool async() const noexcept { return (flags & kAsync) != 0; }
  constexpr bool remote() const noexcept { return (flags & kRemote) != 0; }
};

enum class FdRole : std::uint8_t {
  kUse,         // the call acts on it: it must be open
  kDirFd,       // paths are resolved from it (AT_FDCWD is -100); reported
                // only when the path is relative
  kTarget,      // dup2/dup3's newfd: made to refer to oldfd's file
  kRangeFirst,  // close_range's bounds
  kRangeLast,
  kNew,         // the call created it (kExit)
  kRemote,      // a number in another process's table (pidfd_getfd, kcmp)
};

struct FdUse {
  int fd = -1;
  FdRole role = FdRole::kUse;
  Location where{};
};

class Visitor {
 public:
  // A range the call touches. A visitor may return a copy of its `size`
  // bytes for the walker to read nested pointers from; nullptr: the walker
  // reads the program's memory.
  virtual const void* access(const Access& access) noexcept = 0;
  virtual void fd(const FdUse& use) noexcept = 0;

 protected:
  ~Visitor() = default;
};

struct WalkResult {
  Completeness completeness = Completeness::kComplete;
  const char* reason = nullptr;       // why it is not complete
  const CallSpec* call = nullptr;     // nullptr: no such call
  const Command* command = nullptr;   // the command row that applied
  std::uint32_t accesses = 0;
  std::uint32_t fds = 0;
  bool async = false;            // some access happens after the call returns
  bool later_unbounded = false;  // the kernel will access memory later that no
                                 // access bounds (robust lists, rseq, io_uring)
  bool unreadable = false;       // memory the walk read could not be read
                                 // (the kernel would fail with EFAULT): a
                                 // string is listed up to and including the
                                 // first unreadable byte; a structure of
                                 // pointers makes the walk kIncomplete
};

// One system call: its number and argument registers (rdi, rsi, rdx, r10,
// r8, r9).
struct Call {
  std::uint64_t number = 0;
  std::uint64_t args[kMaxArgs]{};
};

// Largest arrays the walker decodes element by element (pollfds, iovecs
// beyond UIO_MAXIOV are refused by the kernel itself, argv); a call with
// more is reported incomplete rather than walked for ever.
inline constexpr std::uint64_t kMaxWalkElements = 1 << 17;

WalkResult walk(const Call& call, Memory& memory, Visitor& visitor, Phase phase,
                std::int64_t ret = 0) noexcept;

// Whether `ret` is an error return (-4095..-1).
constexpr bool failed(std::int64_t ret) noexcept { return ret < 0 && ret >= -4095; }

}  // namespace dunk::abi
