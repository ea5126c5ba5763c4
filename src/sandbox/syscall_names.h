// System-call names for policies: x86-64's names and numbers (the schema's,
// src/abi/syscalls.h), and the names of other architectures' calls that
// multi-architecture policies mention.
#pragma once

#include <optional>
#include <string_view>

namespace dunk::sandbox {

// The x86-64 number of a call ("openat" → 257), or nullopt.
std::optional<int> x86_64_number(std::string_view name) noexcept;
// The name of x86-64 call `number`, or nullptr.
const char* x86_64_name(int number) noexcept;
// The highest x86-64 call number the table knows.
int x86_64_max_number() noexcept;
// A Linux system call of another architecture (or one x86-64 gained after
// the table's kernel): a policy may name it, and on x86-64 it matches
// nothing.
bool is_other_linux_call(std::string_view name) noexcept;

}  // namespace dunk::sandbox
