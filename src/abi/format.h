// strace-style lines for a system call, from the schema:
//
//   openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3
//   read(3, "root:x:0:0:root:/root:/bin/bash\n"..., 4096) = 1024
//   openat(AT_FDCWD, "/nonexistent", O_RDONLY) = -1 ENOENT (No such file or directory)
//
// In two parts, as strace prints them: the entry part holds the arguments
// known before the call ("read(3, "), the exit part what the call filled in
// and the result ("\"root...\"..., 4096) = 1024"), so a call that blocks
// can be shown as it starts. Joined, they make the line.
//
// Strings are read through the caller's Memory and cut after
// FormatOptions::string_limit bytes with "..." after the quote; paths are
// printed whole. Structures the formatter does not decode are printed as
// their address. Writes into the caller's buffer only: no allocation, no
// stdio, usable by the monitor.
#pragma once

#include <cstddef>
#include <cstdint>

#include "abi/walk.h"

namespace dunk::abi {

struct FormatOptions {
  unsigned string_limit = 32;  // strace's -s
  unsigned array_limit = 32;   // elements of argv, iovecs
};

// Each returns the length of the text written (always NUL-terminated;
// cut short when the buffer is too small).
std::size_t format_entry(char* out, std::size_t size, const Call& call, Memory& memory,
                         const FormatOptions& options = {}) noexcept;
std::size_t format_exit(char* out, std::size_t size, const Call& call, std::int64_t ret, Memory& memory,
                        const FormatOptions& options = {}) noexcept;
std::size_t format_call(char* out, std::size_t size, const Call& call, std::int64_t ret, Memory& memory,
                        const FormatOptions& options = {}) noexcept;

// "ENOENT (No such file or directory)"-style text for -err, as a result.
std::size_t format_result(char* out, std::size_t size, const Call& call, std::int64_t ret) noexcept;

}  // namespace dunk::abi
