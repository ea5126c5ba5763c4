#include "base/fd_placement.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "base/lock.h"
#include "base/syscall.h"

namespace dunk {
namespace {

// Without room above the limit, dunk's descriptors take the top of the range
// below it — searching up from a quarter of it, at most this many, under it —
// and never higher than kBelowLimitCeiling: a limit in the millions (many
// containers' default) must not grow every process's descriptor table, which
// each fork copies, to the ceiling.
constexpr unsigned long kBelowLimitRoom = 256;
constexpr unsigned long kBelowLimitCeiling = 8192;
// Above the limit, not below this: a program that lowered its limit under
// descriptors it still holds (and probes those numbers: CPython's
// test_close_fds_when_max_fd_is_lowered) does not meet dunk's. FD_SETSIZE,
// the most a select() caller can use, and the usual default soft limit.
constexpr unsigned long kLowestAboveLimit = 1024;

// Serialises placements, which lift the soft limit for a moment, with each
// other and with the program's own RLIMIT_NOFILE calls (the monitor holds it
// around those): nobody sees or overwrites the lifted value.
Lock placement_lock;

long prlimit_nofile(const rlimit* set, rlimit* old) noexcept {
  return sys::call(SYS_prlimit64, 0, RLIMIT_NOFILE, reinterpret_cast<long>(set), reinterpret_cast<long>(old));
}

long duplicate_at_or_above(int fd, unsigned long lowest) noexcept {
  return sys::call(SYS_fcntl, fd, F_DUPFD_CLOEXEC, static_cast<long>(lowest));
}

}  // namespace

Lock& fd_placement_lock() noexcept { return placement_lock; }

int move_out_of_program_range(int fd) noexcept {
  if (fd < 0) return fd;
  LockGuard hold(placement_lock);
  rlimit limit{};
  if (sys::failed(prlimit_nofile(nullptr, &limit))) return fd;
  const unsigned long soft = limit.rlim_cur;
  const unsigned long usable = limit.rlim_max < kFdPlacementCeiling ? limit.rlim_max : kFdPlacementCeiling;
  long moved = -1;
  // Above the soft limit: F_DUPFD refuses numbers at or above it, so lift it
  // for the one call, then put it back.
  unsigned long lowest = soft > kLowestAboveLimit ? soft : kLowestAboveLimit;
  if (lowest >= usable) lowest = soft;  // a hard limit under 1024: just above the soft one
  if (lowest < usable) {
    rlimit lifted = limit;
    lifted.rlim_cur = usable;
    if (!sys::failed(prlimit_nofile(&lifted, nullptr))) {
      moved = duplicate_at_or_above(fd, lowest);
      prlimit_nofile(&limit, nullptr);
    }
  }
  if (sys::failed(moved)) {
    const unsigned long top = soft < kBelowLimitCeiling ? soft : kBelowLimitCeiling;
    const unsigned long room = top / 4 < kBelowLimitRoom ? top / 4 : kBelowLimitRoom;
    if (room > 0 && top - room > 2) moved = duplicate_at_or_above(fd, top - room);
  }
  if (sys::failed(moved) || moved < fd) {
    if (!sys::failed(moved)) sys::call(SYS_close, moved);
    return fd;
  }
  sys::call(SYS_close, fd);
  return static_cast<int>(moved);
}

}  // namespace dunk
