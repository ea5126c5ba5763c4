// Names of values: flag sets and enumerations (syscalls.h: Names), signals
// and errors, as strace prints them. Static tables; no allocation.
#pragma once

#include <cstdint>
#include <span>

#include "abi/syscalls.h"

namespace dunk::abi {

// One name of a set: it applies when (value & mask) == bits. A plain flag
// has mask == bits; a field (O_ACCMODE, the socket type) a wider mask, and
// can name a zero value (O_RDONLY).
struct NamedBits {
  std::uint64_t bits;
  std::uint64_t mask;
  const char* name;
};

struct NameSet {
  Names id = Names::kNone;
  bool flags = false;  // a set of bits, or one value
  std::span<const NamedBits> names;
};

const NameSet* name_set(Names id) noexcept;

// The name of one value of an enumeration, or nullptr.
const char* value_name(Names id, std::uint64_t value) noexcept;

// "SIGTERM"; nullptr for 0, real-time signals and numbers above 64.
const char* signal_name(int sig) noexcept;
// "ENOENT" and "No such file or directory"; nullptr when the number has
// none.
const char* errno_name(int err) noexcept;
const char* errno_text(int err) noexcept;

}  // namespace dunk::abi
