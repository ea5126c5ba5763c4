// /proc/self/maps without allocation. The monitor mirrors the host's
// mappings into the guest page tables between two guest instructions, where
// malloc, stdio and locks are off limits, so the reader works in a buffer
// the caller provides and reads the file with raw system calls.
//
// Line format (Linux fs/proc/task_mmu.c, Documentation/filesystems/proc.rst
// "/proc/PID/maps"):
//   start-end perms offset major:minor inode [spaces path]
// addresses, offset and device numbers in hex, inode in decimal; the path
// may contain spaces, carries " (deleted)" when the file was unlinked, and
// has newlines escaped as "\012"; pseudo-paths are [heap], [stack], [vdso],
// [vvar], [vsyscall], [anon:name], ...; anonymous mappings have no path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "base/unique_fd.h"
#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk {

struct MapEntry {
  Hva start;
  Hva end;  // exclusive
  bool read = false;
  bool write = false;
  bool exec = false;
  bool shared = false;  // 's' rather than 'p'
  std::uint64_t offset = 0;
  std::uint32_t dev_major = 0;
  std::uint32_t dev_minor = 0;
  std::uint64_t inode = 0;
  // As the kernel prints it, without the " (deleted)" suffix. Points into the
  // parsed text (for MapsReader: its buffer, valid until the next next()).
  std::string_view path;
  bool deleted = false;         // the path ended in " (deleted)"
  bool path_truncated = false;  // MapsReader: the line did not fit its buffer

  std::uint64_t size() const noexcept { return end - start; }
  bool contains(Hva a) const noexcept { return start <= a && a < end; }
};

// One line, without its newline. nullopt when the line is malformed.
std::optional<MapEntry> parse_maps_line(std::string_view line) noexcept;

// Yields the entries of a maps file one by one.
//
// Lines may cross read boundaries freely. A line longer than the buffer is
// not skipped (that would hide a mapping): its entry is reported with the
// path cut at the buffer's end and path_truncated set, and the rest of the
// line is discarded. The fixed fields take at most 90 bytes, so any buffer
// of kMinBuffer bytes or more parses every line; kFullLineBuffer holds any
// line with a PATH_MAX path whole.
//
// The file is read in several read() calls and the kernel does not make
// them atomic: a mapping changed meanwhile may be missing or seen twice.
class MapsReader {
 public:
  static constexpr std::size_t kMinBuffer = 128;
  static constexpr std::size_t kFullLineBuffer = 4096 + 256;

  MapsReader(char* buffer, std::size_t size) noexcept : buffer_(buffer), size_(size) {}
  MapsReader(const MapsReader&) = delete;
  MapsReader& operator=(const MapsReader&) = delete;

  // Opens `path` (read-only, close-on-exec) and reads from it.
  Status open(const char* path = "/proc/self/maps") noexcept;
  // Reads from `fd`, which the caller keeps open and owns.
  Status read_from(int fd) noexcept;

  // The next entry; false at the end of the file or on a read error
  // (status() tells which). Malformed lines are skipped and counted.
  bool next(MapEntry& entry) noexcept;

  // The read error that ended next(), if any.
  Status status() const noexcept { return status_; }
  std::size_t malformed_lines() const noexcept { return malformed_; }

 private:
  Status start(int fd) noexcept;
  bool fill() noexcept;
  bool skip_rest_of_line() noexcept;
  std::optional<std::string_view> take_line(bool& truncated) noexcept;

  char* buffer_;
  std::size_t size_;
  UniqueFd owned_;
  int fd_ = -1;
  std::size_t begin_ = 0;  // unconsumed data is buffer_[begin_, end_)
  std::size_t end_ = 0;
  bool eof_ = false;
  bool discarding_ = false;  // inside the tail of an over-long line
  std::size_t malformed_ = 0;
  Status status_;
};

}  // namespace dunk
