// The kernel's soft-dirty interface, served from dunk's dirty bits: a
// program that tracks the pages it writes through /proc/self/pagemap and
// /proc/self/clear_refs (the Boehm collector's incremental mode, CRIU's
// incremental dumps) gets the guest's hardware dirty bits unchanged, and
// clear_refs "4" never reaches the kernel (it would write-protect the
// host's page tables: every first store of the program would become a
// nested page fault).
//
// Exactly these calls are served (docs/GC.md, "Unmodified programs"):
//   open, openat, openat2 of this process's pagemap or clear_refs (any
//     path that leads there: /proc/self/..., /proc/PID/...,
//     /proc/thread-self/..., /proc/PID/task/TID/...): opened by the kernel
//     as usual; the monitor notes the descriptor (and the open file's
//     identity);
//   read and pread64 of such a pagemap descriptor: the kernel reads the
//     entries; bit 55 of each is replaced by dunk's (core/soft_dirty.h);
//     every other bit, the file position and the errors stay the kernel's;
//   write and pwrite64 of "4" (the kernel's syntax: at most 12 characters,
//     blanks around, base 10) to such a clear_refs descriptor: dunk cleans
//     its dirty bits and answers the byte count; any other value is the
//     kernel's.
// Everything else goes to the kernel unchanged: readv/preadv of pagemap
// (they read the kernel's soft-dirty bits, which dunk never clears: every
// page written since it was mapped reads dirty), writev of clear_refs (the
// kernel's clean: right, only slow), a duplicate of a served descriptor
// (dup, fcntl F_DUPFD: not noted), another process's files.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <algorithm>
#include <optional>

#include "core/syscalls/handlers.h"
#include "core/text.h"

namespace dunk::core::syscalls {
namespace {

constexpr std::size_t kEntryBytes = 8;      // one pagemap entry per page
constexpr std::size_t kChunkBytes = 16384;  // read from the kernel at once: 2048 pages

struct FileId {
  std::uint64_t dev, ino;
};

std::optional<FileId> identity(SyscallContext& ctx, int fd) noexcept {
  struct stat st {};
  if (ctx.host.call(SYS_fstat, fd, reinterpret_cast<long>(&st)) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// Notes `fd` when it is one of the files this family serves.
void note_if_served(SyscallContext& ctx, int fd) noexcept {
  char link[64];
  char path[128];
  TextBuffer(link, sizeof link).append("/proc/self/fd/").dec(fd);
  const long length = ctx.host.call(SYS_readlinkat, AT_FDCWD, reinterpret_cast<long>(link),
                                    reinterpret_cast<long>(path), sizeof path);
  if (length <= 0 || length >= static_cast<long>(sizeof path)) return;
  const auto kind = ServedFiles::classify({path, static_cast<std::size_t>(length)}, ctx.process.pid);
  if (!kind) {
    // The number may have named a served file before (closed since).
    ctx.dirty.served_files().forget(fd);
    return;
  }
  const auto id = identity(ctx, fd);
  if (!id) return;
  (void)ctx.dirty.served_files().add({fd, *kind, id->dev, id->ino});
}

// The served file `fd` names, if it still names it.
std::optional<ServedFiles::Kind> served(SyscallContext& ctx, int fd) noexcept {
  ServedFiles& files = ctx.dirty.served_files();
  if (files.empty()) return std::nullopt;
  const auto entry = files.find(fd);
  if (!entry) return std::nullopt;
  const auto id = identity(ctx, fd);
  if (!id || id->dev != entry->dev || id->ino != entry->ino) {
    files.forget(fd);  // closed, and the number reused
    return std::nullopt;
  }
  return entry->kind;
}

// Reads `count` bytes of pagemap at `position` (read(): from the file
// position, which the kernel's reads advance) into the guest's `buffer`,
// with dunk's bit 55.
Outcome read_pagemap(SyscallContext& ctx, const Syscall& call, int fd, std::uint64_t buffer, std::uint64_t count,
                     long position, bool positioned) noexcept {
  // The kernel refuses a position or size that is not whole entries.
  if (position < 0 || position % kEntryBytes != 0 || count % kEntryBytes != 0) {
    return Outcome::result(ctx.host.forward(call));
  }
  alignas(8) std::uint64_t entries[kChunkBytes / kEntryBytes];
  std::uint64_t done = 0;
  while (done < count) {
    const std::uint64_t want = std::min<std::uint64_t>(count - done, kChunkBytes);
    const long at = position + static_cast<long>(done);
    const long got = positioned ? ctx.host.call(SYS_pread64, fd, reinterpret_cast<long>(entries),
                                                static_cast<long>(want), at)
                                : ctx.host.call(SYS_read, fd, reinterpret_cast<long>(entries), static_cast<long>(want));
    if (got < 0) return Outcome::result(done > 0 ? static_cast<long>(done) : got);
    if (got == 0) break;
    ctx.dirty.soft_dirty(static_cast<std::uint64_t>(at) / kEntryBytes, entries,
                         static_cast<std::size_t>(got) / kEntryBytes);
    if (!ctx.memory.write(buffer + done, entries, static_cast<std::size_t>(got))) {
      return Outcome::result(done > 0 ? static_cast<long>(done) : -EFAULT);
    }
    done += static_cast<std::uint64_t>(got);
    if (static_cast<std::uint64_t>(got) < want) break;
  }
  return Outcome::result(static_cast<long>(done));
}

// Whether the first bytes of a write to clear_refs say "4" as the kernel
// reads them (fs/proc/task_mmu.c, clear_refs_write: at most PROC_NUMBUF - 1
// = 12 characters, whitespace stripped at both ends, kstrtoint base 10).
bool says_clear_soft_dirty(const char* text, std::size_t n) noexcept {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  std::size_t hi = 0;
  while (hi < n && text[hi] != '\0') ++hi;  // the kernel's string ends at a NUL
  std::size_t lo = 0;
  while (lo < hi && blank(text[lo])) ++lo;
  while (hi > lo && blank(text[hi - 1])) --hi;
  if (lo < hi && text[lo] == '+') ++lo;
  if (lo == hi) return false;
  long value = 0;
  for (std::size_t i = lo; i < hi; ++i) {
    if (text[i] < '0' || text[i] > '9' || value > 1000) return false;
    value = value * 10 + (text[i] - '0');
  }
  return value == 4;
}

Outcome write_clear_refs(SyscallContext& ctx, const Syscall& call, std::uint64_t buffer,
                         std::uint64_t count) noexcept {
  constexpr std::size_t kProcNumbuf = 13;
  char text[kProcNumbuf] = {};
  const std::size_t n = std::min<std::uint64_t>(count, kProcNumbuf - 1);
  if (n == 0 || !ctx.memory.read(text, buffer, n) || !says_clear_soft_dirty(text, n)) {
    return Outcome::result(ctx.host.forward(call));
  }
  ctx.dirty.clear_soft_dirty();
  return Outcome::result(static_cast<long>(count));
}

}  // namespace

Outcome open_proc_file(SyscallContext& ctx, const Syscall& call) noexcept {
  const long fd = ctx.host.forward(call);
  if (fd >= 0) note_if_served(ctx, static_cast<int>(fd));
  return Outcome::result(fd);
}

Outcome read_served(SyscallContext& ctx, const Syscall& call) noexcept {
  const int fd = call.int_arg(0);
  if (served(ctx, fd) != ServedFiles::Kind::kPagemap) return Outcome::result(ctx.host.forward(call));
  if (call.nr() == SYS_pread64) {
    return read_pagemap(ctx, call, fd, call.arg(1), call.arg(2), call.long_arg(3), /*positioned=*/true);
  }
  const long position = ctx.host.call(SYS_lseek, fd, 0, SEEK_CUR);
  if (position < 0) return Outcome::result(ctx.host.forward(call));
  return read_pagemap(ctx, call, fd, call.arg(1), call.arg(2), position, /*positioned=*/false);
}

Outcome write_served(SyscallContext& ctx, const Syscall& call) noexcept {
  const int fd = call.int_arg(0);
  if (served(ctx, fd) != ServedFiles::Kind::kClearRefs) return Outcome::result(ctx.host.forward(call));
  return write_clear_refs(ctx, call, call.arg(1), call.arg(2));
}

}  // namespace dunk::core::syscalls
