#include "base/fd_placement.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "base/syscall.h"

namespace dunk {
namespace {

// Below the limit (when nothing is free above it), dunk's descriptors take
// the top of the range, searching up from this many numbers under it.
constexpr unsigned long kBelowLimitRoom = 256;
// Above the limit, not below this: a program that lowered its limit under
// descriptors it still holds (and probes those numbers: CPython's
// test_close_fds_when_max_fd_is_lowered) does not meet dunk's. FD_SETSIZE,
// the most a select() caller can use, and the usual default soft limit.
constexpr unsigned long kLowestAboveLimit = 1024;

long prlimit_nofile(const rlimit* set, rlimit* old) noexcept {
  return sys::call(SYS_prlimit64, 0, RLIMIT_NOFILE, reinterpret_cast<long>(set), reinterpret_cast<long>(old));
}

long duplicate_at_or_above(int fd, unsigned long lowest) noexcept {
  return sys::call(SYS_fcntl, fd, F_DUPFD_CLOEXEC, static_cast<long>(lowest));
}

}  // namespace

int move_out_of_program_range(int fd) noexcept {
  rlimit limit{};
  if (fd < 0 || sys::failed(prlimit_nofile(nullptr, &limit))) return fd;
  const unsigned long ceiling = kFdPlacementCeiling;
  long moved = -1;
  if (limit.rlim_cur < limit.rlim_max && limit.rlim_cur < ceiling) {
    // F_DUPFD refuses numbers at or above the soft limit: lift it for the
    // one call, then put it back. (A program thread reading its limit in
    // between sees the lifted value; one changing it in between loses its
    // change. dunk creates descriptors only when a VM or a vCPU is made.)
    rlimit lifted = limit;
    lifted.rlim_cur = limit.rlim_max < ceiling ? limit.rlim_max : ceiling;
    const unsigned long lowest = limit.rlim_cur > kLowestAboveLimit ? limit.rlim_cur : kLowestAboveLimit;
    if (lowest < lifted.rlim_cur && !sys::failed(prlimit_nofile(&lifted, nullptr))) {
      moved = duplicate_at_or_above(fd, lowest);
      prlimit_nofile(&limit, nullptr);
    }
  }
  if (sys::failed(moved)) {
    const unsigned long top = limit.rlim_cur < ceiling ? limit.rlim_cur : ceiling;
    if (top > kBelowLimitRoom + 3) moved = duplicate_at_or_above(fd, top - kBelowLimitRoom);
  }
  if (sys::failed(moved) || moved < fd) {
    if (!sys::failed(moved)) sys::call(SYS_close, moved);
    return fd;
  }
  sys::call(SYS_close, fd);
  return static_cast<int>(moved);
}

}  // namespace dunk
