// Hiding dunk's own descriptors from a listing of /proc/PID/fd.
//
// The program reads its descriptor directory with getdents64 (ls, Python's
// os.listdir, every closefrom fallback). What the kernel returns holds
// dunk's descriptors too; the monitor drops their entries, so the listing is
// what the program would see natively. Pure functions, for the monitor
// (no libc, no allocation) and for unit tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dunk {

// Whether `path` (a readlink of the listed directory) is one of PID's
// descriptor directories: "/proc/PID/fd" or "/proc/PID/task/TID/fd", or
// their "fdinfo" twins.
inline bool is_fd_directory_of(std::string_view path, long pid) noexcept {
  auto take_number = [&path]() -> std::optional<long> {
    long value = 0;
    std::size_t digits = 0;
    while (digits < path.size() && path[digits] >= '0' && path[digits] <= '9' && digits < 18) {
      value = value * 10 + (path[digits] - '0');
      ++digits;
    }
    if (digits == 0) return std::nullopt;
    path.remove_prefix(digits);
    return value;
  };
  auto take = [&path](std::string_view prefix) {
    if (!path.starts_with(prefix)) return false;
    path.remove_prefix(prefix.size());
    return true;
  };
  if (!take("/proc/") || take_number() != pid) return false;
  if (take("/task/") && !take_number()) return false;
  return path == "/fd" || path == "/fdinfo";
}

// The descriptor a path names through /proc when it is one of PID's own:
// "/proc/self/fd/N", "/proc/thread-self/fdinfo/N", "/proc/PID/fd/N",
// "/proc/PID/task/TID/fd/N" (fd or fdinfo), or "/dev/fd/N" — whatever
// follows N. For a path of another process, or no such path: nullopt.
inline std::optional<int> fd_named_by_path(std::string_view path, long pid) noexcept {
  auto take = [&path](std::string_view prefix) {
    if (!path.starts_with(prefix)) return false;
    path.remove_prefix(prefix.size());
    return true;
  };
  auto take_number = [&path]() -> std::optional<long> {
    long value = 0;
    std::size_t digits = 0;
    while (digits < path.size() && path[digits] >= '0' && path[digits] <= '9' && digits < 10) {
      value = value * 10 + (path[digits] - '0');
      ++digits;
    }
    if (digits == 0 || (digits < path.size() && path[digits] >= '0' && path[digits] <= '9')) return std::nullopt;
    path.remove_prefix(digits);
    return value;
  };
  if (!take("/dev/fd/")) {
    if (!take("/proc/")) return std::nullopt;
    if (!take("self/") && !take("thread-self/")) {
      if (take_number() != pid || !take("/")) return std::nullopt;
      if (take("task/") && (!take_number() || !take("/"))) return std::nullopt;
    }
    if (!take("fd/") && !take("fdinfo/")) return std::nullopt;
  }
  const std::optional<long> fd = take_number();
  if (!fd || *fd > 0x7fffffff || (!path.empty() && path.front() != '/')) return std::nullopt;
  return static_cast<int>(*fd);
}

// The descriptor number an entry named `name` stands for, if it is one.
inline std::optional<int> fd_of_entry_name(const char* name) noexcept {
  long value = 0;
  if (*name == '\0' || (*name == '0' && name[1] != '\0')) return std::nullopt;
  for (; *name != '\0'; ++name) {
    if (*name < '0' || *name > '9' || value > (1L << 31)) return std::nullopt;
    value = value * 10 + (*name - '0');
  }
  if (value > 0x7fffffff) return std::nullopt;
  return static_cast<int>(value);
}

// struct linux_dirent64 (getdents64(2)): u64 d_ino, s64 d_off, u16 d_reclen,
// u8 d_type, then the NUL-terminated name; records are 8-byte aligned.
inline constexpr std::size_t kDirent64ReclenOffset = 16;
inline constexpr std::size_t kDirent64NameOffset = 19;

// Removes, in place, the entries of a getdents64 result `buffer[0, size)`
// whose name is a descriptor `hidden(fd)` says to drop; returns the new
// size. The kept entries keep their d_off: a later getdents64 resumes after
// the last one read, hidden or not.
template <class Hidden>
std::size_t drop_fd_entries(std::byte* buffer, std::size_t size, Hidden hidden) noexcept {
  std::size_t read = 0, kept = 0;
  while (read + kDirent64NameOffset < size) {
    std::uint16_t reclen;
    std::memcpy(&reclen, buffer + read + kDirent64ReclenOffset, sizeof reclen);
    if (reclen < kDirent64NameOffset + 1 || read + reclen > size) break;  // malformed: keep the rest
    const auto* name = reinterpret_cast<const char*>(buffer + read + kDirent64NameOffset);
    std::optional<int> fd = fd_of_entry_name(name);
    if (!fd || !hidden(*fd)) {
      if (kept != read) std::memmove(buffer + kept, buffer + read, reclen);
      kept += reclen;
    }
    read += reclen;
  }
  if (read < size) {  // a malformed tail is passed on as it was
    std::memmove(buffer + kept, buffer + read, size - read);
    kept += size - read;
  }
  return kept;
}

}  // namespace dunk
