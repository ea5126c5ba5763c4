// The host layer (host_layer.h): Landlock rules for the file-system view.
#include "sandbox/host_layer.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>

#include "base/syscall.h"
#include "base/unique_fd.h"

namespace dunk::sandbox {
namespace {

using Access = std::uint64_t;

// ABI 3 (Linux 6.2) added the truncate right; Debian 12's headers predate it.
constexpr Access kTruncate = Access{1} << 14;

constexpr Access kReadFile = LANDLOCK_ACCESS_FS_READ_FILE;
constexpr Access kRead = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
// What a rule on a file (not a directory) may hold.
constexpr Access kFileRights =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | kTruncate;

// Every right the ABI knows: handled, so denied wherever no rule grants it.
Access handled_for(int abi) noexcept {
  Access all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: EXECUTE .. MAKE_SYM
  if (abi >= 2) all |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) all |= kTruncate;
  return all;
}

long add_rule(int ruleset, int fd, Access allowed) noexcept {
  landlock_path_beneath_attr attr{};
  attr.allowed_access = allowed;
  attr.parent_fd = fd;
  return sys::call(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, reinterpret_cast<long>(&attr), 0);
}

}  // namespace

int landlock_abi() noexcept {
  const long abi = sys::call(SYS_landlock_create_ruleset, 0, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

Status apply_landlock(const FsView& view, const std::string& extra_file) noexcept {
  const int abi = landlock_abi();
  if (abi == 0) return Error{"Landlock is not available", ENOSYS};
  const Access handled = handled_for(abi);
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = handled;
  const long ruleset = sys::call(SYS_landlock_create_ruleset, reinterpret_cast<long>(&attr), sizeof attr, 0);
  if (sys::failed(ruleset)) return errno_error("landlock_create_ruleset failed", ruleset);
  UniqueFd hold(static_cast<int>(ruleset));
  for (const FsView::Mount& m : view.mounts()) {
    Access allowed = m.skeleton ? (LANDLOCK_ACCESS_FS_READ_DIR | kReadFile) : m.writable ? handled : kRead;
    if (!m.directory) allowed &= kFileRights;
    if (const long err = add_rule(hold.get(), m.fd, allowed & handled); err != 0) {
      return errno_error("landlock_add_rule(a bind) failed", err);
    }
  }
  // dunk's own: listing /proc/self/fd (execve's close-on-exec) and reading
  // /proc/self/maps (a fork child's address-space mirror reads its own).
  // A rule names an inode, and every fork child's /proc/self is another,
  // so the rule is all of /proc, for reading only: nothing of /proc can be
  // opened for writing, /proc/PID/mem included.
  const long proc = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc"), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (!sys::failed(proc)) {
    UniqueFd proc_fd(static_cast<int>(proc));
    if (const long err = add_rule(hold.get(), proc_fd.get(), LANDLOCK_ACCESS_FS_READ_DIR | kReadFile); err != 0) {
      return errno_error("landlock_add_rule(/proc) failed", err);
    }
  }
  if (!extra_file.empty()) {
    const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(extra_file.c_str()), O_PATH | O_CLOEXEC);
    if (sys::failed(fd)) return errno_error("open(the statistics file) failed", fd);
    UniqueFd file(static_cast<int>(fd));
    const Access rw = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | (abi >= 3 ? kTruncate : 0);
    if (const long err = add_rule(hold.get(), file.get(), rw); err != 0) {
      return errno_error("landlock_add_rule(the statistics file) failed", err);
    }
  }
  // Landlock demands no_new_privs (or CAP_SYS_ADMIN); the sandbox never
  // executes a set-user-ID program anyway: execve is dunk's own loader.
  if (const long err = sys::call(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != 0) {
    return errno_error("prctl(PR_SET_NO_NEW_PRIVS) failed", err);
  }
  if (const long err = sys::call(SYS_landlock_restrict_self, hold.get(), 0); err != 0) {
    return errno_error("landlock_restrict_self failed", err);
  }
  return {};
}

}  // namespace dunk::sandbox
