// Calls whose arguments mean different things by a command: ioctl's
// request, fcntl's cmd, futex's op, prctl's option, ..., and flags that
// turn arguments into pointers (clone's CLONE_*TID, mmap's MAP_FIXED).
//
// A command table (commands.cc) lists, per command value, the arguments the
// command gives a meaning to; resolve() applies the matching row to the
// call's own row and says how complete the result is. Every consumer works
// on the resolved arguments, so a command's meaning is written once.
#pragma once

#include <cstdint>
#include <span>

#include "abi/syscalls.h"

namespace dunk::abi {

enum class Completeness : std::uint8_t {
  kComplete,    // every memory access and descriptor of the call is listed
  kDirectOnly,  // the argument's memory is listed as the request encodes it
                // (an _IOC ioctl, a socket option of an unlisted level);
                // what a driver does with pointers inside it is unknown
  kIncomplete,  // the table cannot describe the call (an unknown command,
                // a structure whose length only the kernel knows, ...)
};

struct Command {
  std::uint64_t value = 0;
  const char* name = nullptr;
  std::uint8_t overrides = 0;    // bit i: args[i] replaces the call's argument i
  Arg args[kMaxArgs]{};
  std::uint16_t flags = 0;       // CallFlags the command adds (kReturnsFd, ...)
  const char* incomplete = nullptr;  // why the table cannot describe it
};

enum class Match : std::uint8_t {
  kExact,  // one row: the one whose value equals the command & mask
  kBits,   // every row whose bits are all set, in order (flags); a row
           // of value 0 applies always, before the rows after it
};

struct CommandTable {
  Commands id = Commands::kNone;
  std::uint64_t mask = ~std::uint64_t{0};  // bits of the command that select
  Match match = Match::kExact;
  // A second argument that forms the key with the command (setsockopt's
  // optname after its level): key = command << 32 | second. -1: none.
  std::int8_t second_arg = -1;
  std::span<const Command> rows;
  Completeness unknown = Completeness::kIncomplete;  // an unlisted command
  const char* unknown_reason = nullptr;
};

const CommandTable* command_table(Commands id) noexcept;

// The row of an exact-match table for `key`, or nullptr.
const Command* find_command(const CommandTable& table, std::uint64_t key) noexcept;

// A call with its commands applied.
struct Resolved {
  const CallSpec* call = nullptr;
  Arg args[kMaxArgs]{};
  std::uint16_t flags = 0;            // the call's CallFlags and the command's
  const Command* command = nullptr;   // the matching row of an exact table
  std::uint64_t command_value = 0;    // the command as the table keys it
  Completeness completeness = Completeness::kComplete;
  const char* reason = nullptr;       // why it is not complete
};

// Applies the call's command table, if it has one, to `raw` (the six
// argument registers).
Resolved resolve(const CallSpec& call, const std::uint64_t (&raw)[kMaxArgs]) noexcept;

// ioctl request numbers: _IOC(dir, type, nr, size) (asm-generic/ioctl.h).
namespace ioc {
inline constexpr unsigned kNone = 0;
inline constexpr unsigned kWrite = 1;  // the program writes: the kernel reads
inline constexpr unsigned kRead = 2;   // the program reads: the kernel writes
constexpr unsigned dir(std::uint32_t request) noexcept { return (request >> 30) & 3; }
constexpr unsigned size(std::uint32_t request) noexcept { return (request >> 16) & 0x3fff; }
constexpr unsigned type(std::uint32_t request) noexcept { return (request >> 8) & 0xff; }
constexpr unsigned nr(std::uint32_t request) noexcept { return request & 0xff; }
constexpr std::uint32_t make(unsigned d, unsigned t, unsigned n, unsigned s) noexcept {
  return (d << 30) | (s << 16) | (t << 8) | n;
}
}  // namespace ioc

}  // namespace dunk::abi
