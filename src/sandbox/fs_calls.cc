// The calls a file-system view serves (fs_view.h): every call that names a
// path, the working directory, and the calls that change what a descriptor
// number refers to.
//
// Which argument is a path and which descriptor it is relative to comes
// from the system-call schema (abi/syscall_table.cc: Kind::kPath, and the
// kDirFd before it); the table below says only what each call does with the
// object the path names, which the schema does not know: whether it follows
// a final symlink (and which flag changes that), whether it changes the
// file system, and how the kernel gets the object dunk resolved:
//
//   kOpen     openat2(mount, path beneath it, RESOLVE_BENEATH |
//             RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): no descriptor of
//             the view's own reaches the program's table in between
//   kObject   the call itself (or its following form: lstat -> stat) on
//             "/proc/self/fd/N", N the O_PATH descriptor of the object the
//             resolution opened: the magic link leads to exactly that inode
//             (the kernel does not follow a symlink it reached that way, so
//             lchown of a symlink changes the symlink)
//   kEntry,   *at calls on (the parent's descriptor, one name): the kernel
//   kRename,  looks the name up there without following it, so nothing
//   kLink     another thread renames or swaps can lead it elsewhere
//
// A descriptor the view opens lives in the program's descriptor table for
// the length of the call; FsView::numbers_lock() keeps the program's close,
// dup2, dup3, close_range and fork from replacing it meanwhile.
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/openat2.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "abi/layouts.h"
#include "abi/syscalls.h"
#include "base/syscall.h"
#include "sandbox/copies.h"
#include "sandbox/fs_view.h"
#include "sandbox/supervisor.h"

namespace dunk::sandbox {
namespace {

enum class Op : std::uint8_t {
  kOpen,      // open, creat, openat, openat2
  kObject,    // an existing object: stat, access, xattrs, chmod, utimes, ...
  kReadlink,  // readlink, readlinkat
  kChdir,     // chdir
  kEntry,     // makes or removes one name: mkdir, mknod, unlink, rmdir, symlink
  kRename,    // rename, renameat, renameat2
  kLink,      // link, linkat
  kFchdir,    // fchdir: the working directory's view path is forgotten
  kGetcwd,    // getcwd: the view's path
  kNumbers,   // close, dup2, dup3, close_range: under numbers_lock
  kProcess,   // clone, fork, vfork, clone3: under numbers_lock
  kExec,      // execve, execveat: the loader (open_for_exec)
  kSocket,    // connect, bind, sendto, sendmsg, sendmmsg: an AF_UNIX address by path
  kRefuse,    // would reach the host's file system around the view
};

enum class Follow : std::uint8_t {
  kAlways,
  kNever,
  kUnlessAtFlag,   // unless AT_SYMLINK_NOFOLLOW in the flags argument
  kUnlessInotify,  // unless IN_DONT_FOLLOW in the mask
};

struct FileCall {
  int nr;
  Op op;
  Follow follow = Follow::kAlways;
  std::int8_t flags_arg = -1;  // the argument with the flags (or the mask)
  bool writes = false;         // changes the file system: EROFS under --ro-bind
  int follow_nr = -1;          // kObject: the call made on the object's /proc link
  bool empty_path = false;     // AT_EMPTY_PATH (or a NULL path): the call acts on the descriptor
};

constexpr FileCall kCalls[] = {
    {SYS_open, Op::kOpen},
    {SYS_creat, Op::kOpen},
    {SYS_openat, Op::kOpen},
    {SYS_openat2, Op::kOpen},
    {SYS_stat, Op::kObject},
    {SYS_lstat, Op::kObject, Follow::kNever, -1, false, SYS_stat},
    {SYS_newfstatat, Op::kObject, Follow::kUnlessAtFlag, 3, false, -1, true},
    {SYS_statx, Op::kObject, Follow::kUnlessAtFlag, 2, false, -1, true},
    {SYS_access, Op::kObject},
    {SYS_faccessat, Op::kObject},
    {SYS_faccessat2, Op::kObject, Follow::kUnlessAtFlag, 3, false, -1, true},
    {SYS_statfs, Op::kObject},
    {SYS_getxattr, Op::kObject},
    {SYS_lgetxattr, Op::kObject, Follow::kNever, -1, false, SYS_getxattr},
    {SYS_listxattr, Op::kObject},
    {SYS_llistxattr, Op::kObject, Follow::kNever, -1, false, SYS_listxattr},
    {SYS_setxattr, Op::kObject, Follow::kAlways, -1, true},
    {SYS_lsetxattr, Op::kObject, Follow::kNever, -1, true, SYS_setxattr},
    {SYS_removexattr, Op::kObject, Follow::kAlways, -1, true},
    {SYS_lremovexattr, Op::kObject, Follow::kNever, -1, true, SYS_removexattr},
    {SYS_chmod, Op::kObject, Follow::kAlways, -1, true},
    {SYS_fchmodat, Op::kObject, Follow::kAlways, -1, true},
    {SYS_chown, Op::kObject, Follow::kAlways, -1, true},
    {SYS_lchown, Op::kObject, Follow::kNever, -1, true, SYS_chown},
    {SYS_fchownat, Op::kObject, Follow::kUnlessAtFlag, 4, true, -1, true},
    {SYS_utime, Op::kObject, Follow::kAlways, -1, true},
    {SYS_utimes, Op::kObject, Follow::kAlways, -1, true},
    {SYS_futimesat, Op::kObject, Follow::kAlways, -1, true},
    {SYS_utimensat, Op::kObject, Follow::kUnlessAtFlag, 3, true, -1, true},
    {SYS_truncate, Op::kObject, Follow::kAlways, -1, true},
    {SYS_inotify_add_watch, Op::kObject, Follow::kUnlessInotify, 2},
    {SYS_readlink, Op::kReadlink, Follow::kNever},
    {SYS_readlinkat, Op::kReadlink, Follow::kNever, -1, false, -1, true},
    {SYS_chdir, Op::kChdir},
    {SYS_mkdir, Op::kEntry, Follow::kNever, -1, true},
    {SYS_mkdirat, Op::kEntry, Follow::kNever, -1, true},
    {SYS_mknod, Op::kEntry, Follow::kNever, -1, true},
    {SYS_mknodat, Op::kEntry, Follow::kNever, -1, true},
    {SYS_unlink, Op::kEntry, Follow::kNever, -1, true},
    {SYS_unlinkat, Op::kEntry, Follow::kNever, 2, true},
    {SYS_rmdir, Op::kEntry, Follow::kNever, -1, true},
    {SYS_symlink, Op::kEntry, Follow::kNever, -1, true},
    {SYS_symlinkat, Op::kEntry, Follow::kNever, -1, true},
    {SYS_rename, Op::kRename, Follow::kNever, -1, true},
    {SYS_renameat, Op::kRename, Follow::kNever, -1, true},
    {SYS_renameat2, Op::kRename, Follow::kNever, 4, true},
    {SYS_link, Op::kLink, Follow::kNever, -1, true},
    {SYS_linkat, Op::kLink, Follow::kNever, 4, true},
    {SYS_fchdir, Op::kFchdir},
    {SYS_getcwd, Op::kGetcwd},
    {SYS_close, Op::kNumbers},
    {SYS_dup2, Op::kNumbers},
    {SYS_dup3, Op::kNumbers},
    {SYS_close_range, Op::kNumbers},
    {SYS_clone, Op::kProcess},
    {SYS_clone3, Op::kProcess},
    {SYS_fork, Op::kProcess},
    {SYS_vfork, Op::kProcess},
    {SYS_execve, Op::kExec},
    {SYS_execveat, Op::kExec},
    // A socket's path is a file in the view: bind makes it, the others
    // reach it (following a symlink, as the kernel's lookup does).
    {SYS_connect, Op::kSocket},
    {SYS_sendto, Op::kSocket},
    {SYS_sendmsg, Op::kSocket},
    {SYS_sendmmsg, Op::kSocket},
    {SYS_bind, Op::kSocket, Follow::kNever, -1, true},
    // Mounts, root changes, handles, fanotify, accounting, swap, quotas:
    // each reaches files by a way the view cannot follow.
    {SYS_mount, Op::kRefuse},
    {SYS_umount2, Op::kRefuse},
    {SYS_pivot_root, Op::kRefuse},
    {SYS_chroot, Op::kRefuse},
    {SYS_acct, Op::kRefuse},
    {SYS_swapon, Op::kRefuse},
    {SYS_swapoff, Op::kRefuse},
    {SYS_quotactl, Op::kRefuse},
    {SYS_quotactl_fd, Op::kRefuse},
    {SYS_uselib, Op::kRefuse},
    {SYS_name_to_handle_at, Op::kRefuse},
    {SYS_open_by_handle_at, Op::kRefuse},
    {SYS_fanotify_mark, Op::kRefuse},
    {SYS_open_tree, Op::kRefuse},
    {SYS_move_mount, Op::kRefuse},
    {SYS_fsopen, Op::kRefuse},
    {SYS_fsconfig, Op::kRefuse},
    {SYS_fsmount, Op::kRefuse},
    {SYS_fspick, Op::kRefuse},
    {SYS_mount_setattr, Op::kRefuse},
};

const FileCall* classify(int nr) noexcept {
  for (const FileCall& c : kCalls) {
    if (c.nr == nr) return &c;
  }
  return nullptr;
}

// Whether the schema says the call takes a path or a directory descriptor.
bool names_paths(const abi::CallSpec* spec) noexcept {
  if (spec == nullptr) return false;
  for (unsigned i = 0; i < spec->arg_count; ++i) {
    if (spec->args[i].kind == abi::Kind::kPath || spec->args[i].kind == abi::Kind::kDirFd) return true;
  }
  return false;
}

// The schema's `which`-th path argument (0: the first), and the directory
// descriptor it is relative to (-1: the working directory).
struct PathArg {
  int path = -1;
  int dirfd = -1;
};
PathArg path_arg(const abi::CallSpec& spec, int which) noexcept {
  PathArg p;
  for (unsigned i = 0; i < spec.arg_count; ++i) {
    if (spec.args[i].kind != abi::Kind::kPath) continue;
    if (which-- > 0) continue;
    p.path = static_cast<int>(i);
    if (i > 0 && spec.args[i - 1].kind == abi::Kind::kDirFd) p.dirfd = static_cast<int>(i - 1);
    break;
  }
  return p;
}

const char* path_at(const abi::Call& copied, int arg) noexcept {
  return arg < 0 ? nullptr : reinterpret_cast<const char*>(copied.args[arg]);
}

int dirfd_at(const abi::Call& copied, int arg) noexcept {
  return arg < 0 ? AT_FDCWD : static_cast<int>(static_cast<std::uint32_t>(copied.args[arg]));
}

void proc_link(char (&out)[64], int fd) noexcept { std::snprintf(out, sizeof out, "/proc/thread-self/fd/%d", fd); }

// One host call of the view's; kRestartForSignal without making it when a
// signal for the program is queued (forward.S), as for any forwarded call.
long forward(abi::Call call) noexcept {
  ProgramThread& t = *current_thread();
  return dunk_sandbox_forward(&call, &t.signals.head, &t.signals.tail);
}

// What one call of the program needs while it is served.
struct Context {
  FsView& view;
  const FileCall& what;
  const abi::CallSpec& spec;
};

// Refuses with a report when the view refused something a native lookup
// would have followed (a magic link, a directory outside the view).
long refused(ProgramThread& t, const abi::Call& call, long err, const char* why) noexcept {
  if (why != nullptr) refuse(t, call, err, why);
  return err;
}

// The view path relative paths of `path` start from: `dirfd`'s, when the
// path is relative (or `always`, openat2's RESOLVE_BENEATH/IN_ROOT).
long start_of(ProgramThread& t, const abi::Call& call, FsView& v, int dirfd, const char* path, bool always,
              std::string& start) noexcept {
  if (path[0] == '/' && !always) return 0;
  const long err = v.locate(dirfd, start);
  if (err == -EACCES) return refused(t, call, err, "a directory outside the file-system view");
  return err;
}

// ---- Opens -------------------------------------------------------------------------

struct OpenRequest {
  std::uint64_t flags = 0, mode = 0, resolve = 0;
  int dirfd = AT_FDCWD;
  const char* path = nullptr;
};

OpenRequest open_request(int nr, const abi::Call& copied) noexcept {
  OpenRequest r;
  switch (nr) {
    case SYS_open:
      r.path = path_at(copied, 0);
      r.flags = static_cast<std::uint32_t>(copied.args[1]);
      r.mode = copied.args[2];
      break;
    case SYS_creat:
      r.path = path_at(copied, 0);
      r.flags = O_CREAT | O_WRONLY | O_TRUNC;
      r.mode = copied.args[1];
      break;
    case SYS_openat:
      r.dirfd = dirfd_at(copied, 0);
      r.path = path_at(copied, 1);
      r.flags = static_cast<std::uint32_t>(copied.args[2]);
      r.mode = copied.args[3];
      break;
    default: {  // openat2: the copy of its open_how
      r.dirfd = dirfd_at(copied, 0);
      r.path = path_at(copied, 1);
      open_how how{};
      std::memcpy(&how, reinterpret_cast<const void*>(copied.args[2]), std::min<std::uint64_t>(copied.args[3], sizeof how));
      r.flags = how.flags;
      r.mode = how.mode;
      r.resolve = how.resolve;
      break;
    }
  }
  // open(2) and openat(2) give O_LARGEFILE on x86-64 themselves.
  if (nr != SYS_openat2) r.flags |= O_LARGEFILE;
  return r;
}

// O_TMPFILE's own bit (the kernel's __O_TMPFILE; glibc's includes
// O_DIRECTORY).
constexpr std::uint64_t kTmpfile = 020000000;

bool opens_for_writing(std::uint64_t flags) noexcept {
  if ((flags & O_PATH) != 0) return false;
  return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_CREAT | kTmpfile)) != 0;
}

// The kernel's open of `rel` beneath mount `m`, the mount's own object when
// rel is empty.
long open_beneath(const FsView::Mount& m, const std::string& rel, std::uint64_t flags, std::uint64_t mode,
                  std::uint64_t resolve) noexcept {
  if (rel.empty() && !m.directory) {
    // A bound file: its pinned descriptor reopened through its /proc link.
    if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) return -EEXIST;
    char link[64];
    proc_link(link, m.fd);
    return forward(abi::Call{SYS_openat, {static_cast<std::uint64_t>(AT_FDCWD), reinterpret_cast<std::uint64_t>(link),
                                          flags & ~std::uint64_t{O_CREAT | O_EXCL | O_NOFOLLOW}, mode}});
  }
  open_how how{};
  how.flags = flags;
  how.mode = (flags & (O_CREAT | kTmpfile)) != 0 ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | resolve;
  const char* path = rel.empty() ? "." : rel.c_str();
  return forward(abi::Call{SYS_openat2, {static_cast<std::uint64_t>(m.fd), reinterpret_cast<std::uint64_t>(path),
                                         reinterpret_cast<std::uint64_t>(&how), sizeof how}});
}

// Under --ro-bind: nothing opened for writing; O_CREAT of a file that
// exists, without writing, opens it as the kernel does on a read-only
// mount. The lookup comes first, as in the kernel: a path whose directory
// does not exist is ENOENT, not EROFS.
long open_in_mount(const FsView::Mount& m, const std::string& rel, std::uint64_t flags, std::uint64_t mode,
                   std::uint64_t resolve) noexcept {
  if (m.writable || !opens_for_writing(flags)) return open_beneath(m, rel, flags, mode, resolve);
  const std::uint64_t nofollow = (flags & O_NOFOLLOW) != 0 || (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)
                                     ? O_NOFOLLOW : 0;
  const long probe = open_beneath(m, rel, O_PATH | O_CLOEXEC | nofollow, 0, resolve);
  if (probe == -ENOENT && (flags & O_CREAT) != 0) {
    // Creating: EROFS if the directory is there.
    const std::size_t slash = rel.rfind('/');
    const std::string dir = slash == std::string::npos ? std::string() : rel.substr(0, slash);
    const long parent = open_beneath(m, dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
    if (parent >= 0) sys::call(SYS_close, parent);
    return parent >= 0 ? -EROFS : parent;
  }
  if (probe < 0) return probe;
  sys::call(SYS_close, probe);
  const std::uint64_t writing = O_TRUNC | kTmpfile;
  if ((flags & O_CREAT) == 0 || (flags & O_ACCMODE) != O_RDONLY || (flags & writing) != 0) return -EROFS;
  if ((flags & O_EXCL) != 0) return -EEXIST;
  return open_beneath(m, rel, flags & ~std::uint64_t{O_CREAT | O_EXCL}, 0, resolve);
}

// An open of /proc/self/fd/N whose object has no path in the view (a pipe,
// a socket, a file inherited from outside; FsView::ResolveOptions::
// descriptors): the kernel reopens N's object through that link, for no
// more than N was opened for — the program could read or write it through
// N anyway, and gets nothing else. Under numbers_lock, so that no sibling
// thread puts another file under N between the check and the reopen.
long reopen_descriptor(ProgramThread& t, const abi::Call& call, FsView& v, int n, std::uint64_t flags,
                       std::uint64_t mode) noexcept {
  if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) return -EEXIST;
  LockGuard hold(v.numbers_lock());
  const long held = is_dunk_fd(n) ? -EBADF : sys::call(SYS_fcntl, n, F_GETFL);
  if (held < 0) return -ENOENT;  // closed meanwhile: the link is gone
  if ((flags & O_PATH) == 0) {
    const std::uint64_t wanted = flags & O_ACCMODE;
    const bool reads = wanted != O_WRONLY, writes = wanted != O_RDONLY || (flags & (O_TRUNC | kTmpfile)) != 0;
    const bool path_only = (held & O_PATH) != 0;
    const bool can_read = !path_only && (held & O_ACCMODE) != O_WRONLY;
    const bool can_write = !path_only && (held & O_ACCMODE) != O_RDONLY;
    if ((reads && !can_read) || (writes && !can_write)) {
      return refused(t, call, -EACCES,
                     "reopening a descriptor whose object is outside the file-system view for more than it was "
                     "opened for");
    }
  }
  // The calling thread's own table (proc_link's), which the checks above looked at.
  char link[64];
  proc_link(link, n);
  return forward(abi::Call{SYS_openat, {static_cast<std::uint64_t>(AT_FDCWD), reinterpret_cast<std::uint64_t>(link),
                                        flags & ~std::uint64_t{O_CREAT | O_EXCL}, mode}});
}

long perform_open(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  const OpenRequest r = open_request(c.what.nr, copied);
  if (r.path == nullptr) return -EFAULT;
  if (r.path[0] == '\0') return -ENOENT;
  if ((r.resolve & RESOLVE_CACHED) != 0) return -EAGAIN;  // the kernel may always say so
  FsView::ResolveOptions options;
  options.follow_last = (r.flags & O_NOFOLLOW) == 0 && (r.flags & (O_CREAT | O_EXCL)) != (O_CREAT | O_EXCL);
  options.must_exist = (r.flags & O_CREAT) == 0;
  options.no_symlinks = (r.resolve & RESOLVE_NO_SYMLINKS) != 0;
  options.beneath = (r.resolve & RESOLVE_BENEATH) != 0;
  options.in_root = (r.resolve & RESOLVE_IN_ROOT) != 0;
  options.no_magic_links = (r.resolve & RESOLVE_NO_MAGICLINKS) != 0;
  options.descriptors = true;
  std::string start;
  if (const long err = start_of(t, call, c.view, r.dirfd, r.path, options.beneath || options.in_root, start); err != 0) {
    return err;
  }
  const std::uint64_t extra = r.resolve & RESOLVE_NO_XDEV;
  const std::string_view path(r.path);
  // Most paths hold neither ".." nor a symlink: one openat2 of the path as
  // written, from the mount it lies in. The kernel refuses a symlink on the
  // way (ELOOP), and dunk walks it.
  if (!options.beneath && !options.in_root && path.find("..") == std::string_view::npos) {
    std::string lexical = path[0] == '/' ? std::string("/") : start, rel;
    std::size_t at = 0;
    while (at < path.size()) {
      std::size_t slash = path.find('/', at);
      if (slash == std::string_view::npos) slash = path.size();
      const std::string_view part = path.substr(at, slash - at);
      if (!part.empty() && part != ".") {
        if (lexical.size() > 1) lexical += '/';
        lexical += part;
      }
      at = slash + 1;
    }
    const int m = c.view.mount_of(lexical, rel);
    if (!rel.empty() && path.back() == '/') rel += '/';
    const long ret = open_in_mount(c.view.mounts()[static_cast<std::size_t>(m)], rel, r.flags, r.mode, extra);
    if (ret != -ELOOP && ret != -EXDEV) return ret;
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    FsView::Resolved resolved;
    if (const long err = c.view.resolve(start, path, options, resolved); err != 0) {
      return refused(t, call, err, resolved.why);
    }
    if (resolved.descriptor >= 0) return reopen_descriptor(t, call, c.view, resolved.descriptor, r.flags, r.mode);
    const auto& m = c.view.mounts()[static_cast<std::size_t>(resolved.mount)];
    const long ret = open_in_mount(m, resolved.rel, r.flags, r.mode, extra);
    if (ret != -ELOOP || (resolved.exists && S_ISLNK(resolved.st.st_mode))) return ret;
    // ELOOP where the walk saw no symlink: the tree changed meanwhile.
  }
  return -ELOOP;
}

// ---- Objects ---------------------------------------------------------------------------

bool follows(const FileCall& what, const abi::Call& copied) noexcept {
  switch (what.follow) {
    case Follow::kAlways: return true;
    case Follow::kNever: return false;
    case Follow::kUnlessAtFlag: return (copied.args[what.flags_arg] & AT_SYMLINK_NOFOLLOW) == 0;
    case Follow::kUnlessInotify: return (copied.args[what.flags_arg] & IN_DONT_FOLLOW) == 0;
  }
  return true;
}

bool writes(const FileCall& what, const abi::Call& copied, int path_index) noexcept {
  if (what.writes) return true;
  // access(), faccessat(), faccessat2(): asking for W_OK under --ro-bind is
  // EROFS, as on a read-only mount.
  const int nr = what.nr;
  if (nr == SYS_access || nr == SYS_faccessat || nr == SYS_faccessat2) {
    return (copied.args[path_index + 1] & W_OK) != 0;
  }
  return false;
}

// What the call does on a descriptor, without a path: AT_EMPTY_PATH with
// "", readlinkat's "", utimensat's NULL.
bool acts_on_descriptor(const FileCall& what, const abi::Call& copied, const char* path) noexcept {
  if (!what.empty_path) return false;
  if (path == nullptr) return what.nr == SYS_utimensat;
  if (path[0] != '\0') return false;
  if (what.nr == SYS_readlinkat) return true;
  return what.flags_arg >= 0 && (copied.args[what.flags_arg] & AT_EMPTY_PATH) != 0;
}

long perform_object(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  const PathArg arg = path_arg(c.spec, 0);
  const char* path = path_at(copied, arg.path);
  if (acts_on_descriptor(c.what, copied, path)) return forward(copied);
  if (path == nullptr) return -EFAULT;
  if (path[0] == '\0') return -ENOENT;
  std::string start;
  if (const long err = start_of(t, call, c.view, dirfd_at(copied, arg.dirfd), path, false, start); err != 0) return err;
  LockGuard hold(c.view.numbers_lock());
  FsView::ResolveOptions options;
  options.follow_last = follows(c.what, copied);
  const bool changes = writes(c.what, copied, arg.path);
  // stat, access and friends of /proc/self/fd/N look at N's object,
  // wherever it is; nothing changes it by that way.
  options.descriptors = c.what.op == Op::kObject && !c.what.writes;
  FsView::Resolved r;
  if (const long err = c.view.resolve(start, path, options, r); err != 0) return refused(t, call, err, r.why);
  if (r.descriptor < 0 && changes) {
    const FsView::Mount& m = c.view.mounts()[static_cast<std::size_t>(r.mount)];
    if (!m.writable) return -EROFS;
    // --dev's nodes are the host's: written to, never changed themselves.
    if (m.device && r.rel.empty() && c.what.writes) return -EPERM;
  }
  if (c.what.op == Op::kReadlink) {
    if (!S_ISLNK(r.st.st_mode)) return -EINVAL;
    abi::Call f{SYS_readlinkat, {static_cast<std::uint64_t>(r.object), reinterpret_cast<std::uint64_t>(""),
                                 copied.args[arg.path + 1], copied.args[arg.path + 2]}};
    return forward(f);
  }
  if (c.what.op == Op::kChdir) {
    if (!S_ISDIR(r.st.st_mode)) return -ENOTDIR;
    const long ret = forward(abi::Call{SYS_fchdir, {static_cast<std::uint64_t>(r.object)}});
    if (ret == 0) c.view.set_cwd(r.view);
    return ret;
  }
  // The call on the object's /proc link, following it: the kernel lands on
  // the very inode the resolution pinned.
  char link[64];
  proc_link(link, r.object);
  abi::Call f = copied;
  f.number = static_cast<std::uint64_t>(c.what.follow_nr >= 0 ? c.what.follow_nr : c.what.nr);
  if (arg.dirfd >= 0) f.args[arg.dirfd] = static_cast<std::uint64_t>(AT_FDCWD);
  f.args[arg.path] = reinterpret_cast<std::uint64_t>(link);
  if (c.what.follow == Follow::kUnlessAtFlag) f.args[c.what.flags_arg] &= ~std::uint64_t{AT_SYMLINK_NOFOLLOW};
  if (c.what.follow == Follow::kUnlessInotify) f.args[c.what.flags_arg] &= ~std::uint64_t{IN_DONT_FOLLOW};
  return forward(f);
}

// ---- Names ---------------------------------------------------------------------------------

// A path cut before its last component: "a/b/c" -> "a/b", "c"; "c" -> ".",
// "c"; "/c" -> "/", "c"; trailing slashes stay with the name ("a/b/" ->
// "a", "b/"), where the kernel checks them.
struct Split {
  std::string parent;
  std::string name;
};
Split split(std::string_view path) {
  std::size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;
  const std::string_view trimmed = path.substr(0, end);
  if (trimmed == "/") return Split{"/", ""};
  const std::size_t slash = trimmed.rfind('/');
  if (slash == std::string_view::npos) return Split{".", std::string(path)};
  std::size_t parent_end = slash;
  while (parent_end > 0 && trimmed[parent_end - 1] == '/') --parent_end;
  return Split{parent_end == 0 ? std::string("/") : std::string(trimmed.substr(0, parent_end)),
               std::string(path.substr(slash + 1))};
}

std::string_view bare(const std::string& name) {
  std::string_view n(name);
  while (n.size() > 1 && n.back() == '/') n.remove_suffix(1);
  return n;
}

bool is_dot(std::string_view name) { return name == "." || name == ".."; }

// A name resolved to its directory: the directory's descriptor (pinned by
// `dir`) and the mount the name lies in.
struct Entry {
  FsView::Resolved dir;
  std::string name;
  std::string view;  // the name's view path
  bool mount_point = false;
};

long resolve_entry(ProgramThread& t, const abi::Call& call, FsView& v, int dirfd, const char* path,
                   Entry& out) noexcept {
  if (path == nullptr) return -EFAULT;
  if (path[0] == '\0') return -ENOENT;
  std::string start;
  if (const long err = start_of(t, call, v, dirfd, path, false, start); err != 0) return err;
  Split s = split(path);
  if (s.name.empty()) {  // "/" itself
    out.name = ".";
    out.view = "/";
    out.mount_point = true;
  }
  if (const long err = v.resolve(start, s.parent, FsView::ResolveOptions{}, out.dir); err != 0) {
    return refused(t, call, err, out.dir.why);
  }
  if (!S_ISDIR(out.dir.st.st_mode)) return -ENOTDIR;
  if (!s.name.empty()) {
    out.name = std::move(s.name);
    const std::string_view n = bare(out.name);
    out.view = out.dir.view.size() > 1 ? out.dir.view + "/" + std::string(n) : "/" + std::string(n);
    out.mount_point = !is_dot(n) && v.is_mount_point(out.view);
  }
  return 0;
}

bool entry_writable(FsView& v, const Entry& e) noexcept {
  return v.mounts()[static_cast<std::size_t>(e.dir.mount)].writable;
}

std::uint64_t fd_arg(const FsView::Resolved& r) noexcept { return static_cast<std::uint64_t>(r.object); }
std::uint64_t str_arg(const std::string& s) noexcept { return reinterpret_cast<std::uint64_t>(s.c_str()); }

long perform_entry(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  const int nr = c.what.nr;
  const bool symlink = nr == SYS_symlink || nr == SYS_symlinkat;
  // symlink's first path is the link's text, not a path it reaches.
  const PathArg arg = path_arg(c.spec, symlink ? 1 : 0);
  const bool creates = nr == SYS_mkdir || nr == SYS_mkdirat || nr == SYS_mknod || nr == SYS_mknodat || symlink;
  LockGuard hold(c.view.numbers_lock());
  Entry e;
  if (const long err = resolve_entry(t, call, c.view, dirfd_at(copied, arg.dirfd), path_at(copied, arg.path), e);
      err != 0) {
    return err;
  }
  if (e.mount_point) return creates ? -EEXIST : -EBUSY;
  if (!entry_writable(c.view, e)) return -EROFS;
  abi::Call f{};
  switch (nr) {
    case SYS_mkdir:
    case SYS_mkdirat:
      f = abi::Call{SYS_mkdirat, {fd_arg(e.dir), str_arg(e.name), copied.args[arg.path + 1]}};
      break;
    case SYS_mknod:
    case SYS_mknodat:
      f = abi::Call{SYS_mknodat, {fd_arg(e.dir), str_arg(e.name), copied.args[arg.path + 1], copied.args[arg.path + 2]}};
      break;
    case SYS_unlink:
      f = abi::Call{SYS_unlinkat, {fd_arg(e.dir), str_arg(e.name), 0}};
      break;
    case SYS_rmdir:
      f = abi::Call{SYS_unlinkat, {fd_arg(e.dir), str_arg(e.name), AT_REMOVEDIR}};
      break;
    case SYS_unlinkat:
      f = abi::Call{SYS_unlinkat, {fd_arg(e.dir), str_arg(e.name), copied.args[2]}};
      break;
    default:  // symlink, symlinkat: the text as copied
      f = abi::Call{SYS_symlinkat, {copied.args[0], fd_arg(e.dir), str_arg(e.name)}};
      break;
  }
  return forward(f);
}

long perform_rename(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  const PathArg from = path_arg(c.spec, 0), to = path_arg(c.spec, 1);
  LockGuard hold(c.view.numbers_lock());
  Entry a, b;
  if (const long err = resolve_entry(t, call, c.view, dirfd_at(copied, from.dirfd), path_at(copied, from.path), a); err != 0) {
    return err;
  }
  if (const long err = resolve_entry(t, call, c.view, dirfd_at(copied, to.dirfd), path_at(copied, to.path), b); err != 0) {
    return err;
  }
  if (a.mount_point || b.mount_point) return -EBUSY;
  // The view's mounts are separate file systems, as bind mounts are.
  if (a.dir.mount != b.dir.mount) return -EXDEV;
  if (!entry_writable(c.view, a)) return -EROFS;
  const std::uint64_t flags = c.what.flags_arg >= 0 ? copied.args[c.what.flags_arg] : 0;
  return forward(abi::Call{SYS_renameat2, {fd_arg(a.dir), str_arg(a.name), fd_arg(b.dir), str_arg(b.name), flags}});
}

long perform_link(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  const PathArg from = path_arg(c.spec, 0), to = path_arg(c.spec, 1);
  const std::uint64_t flags = c.what.flags_arg >= 0 ? copied.args[c.what.flags_arg] : 0;
  const char* old_path = path_at(copied, from.path);
  LockGuard hold(c.view.numbers_lock());
  Entry b;
  if (const long err = resolve_entry(t, call, c.view, dirfd_at(copied, to.dirfd), path_at(copied, to.path), b); err != 0) {
    return err;
  }
  if (b.mount_point) return -EEXIST;
  if (!entry_writable(c.view, b)) return -EROFS;
  if ((flags & AT_EMPTY_PATH) != 0 && old_path != nullptr && old_path[0] == '\0') {
    // The program's own descriptor (the kernel asks CAP_DAC_READ_SEARCH).
    return forward(abi::Call{SYS_linkat, {copied.args[from.dirfd], copied.args[from.path], fd_arg(b.dir),
                                          str_arg(b.name), AT_EMPTY_PATH}});
  }
  if ((flags & AT_SYMLINK_FOLLOW) != 0) {
    std::string start;
    if (old_path == nullptr) return -EFAULT;
    if (old_path[0] == '\0') return -ENOENT;
    if (const long err = start_of(t, call, c.view, dirfd_at(copied, from.dirfd), old_path, false, start); err != 0) {
      return err;
    }
    FsView::Resolved r;
    if (const long err = c.view.resolve(start, old_path, FsView::ResolveOptions{}, r); err != 0) {
      return refused(t, call, err, r.why);
    }
    if (r.mount != b.dir.mount || r.rel.empty()) return -EXDEV;
    char link[64];
    proc_link(link, r.object);
    return forward(abi::Call{SYS_linkat, {static_cast<std::uint64_t>(AT_FDCWD), reinterpret_cast<std::uint64_t>(link),
                                          fd_arg(b.dir), str_arg(b.name), AT_SYMLINK_FOLLOW}});
  }
  Entry a;
  if (const long err = resolve_entry(t, call, c.view, dirfd_at(copied, from.dirfd), old_path, a); err != 0) return err;
  if (a.mount_point || a.dir.mount != b.dir.mount) return -EXDEV;
  return forward(abi::Call{SYS_linkat, {fd_arg(a.dir), str_arg(a.name), fd_arg(b.dir), str_arg(b.name), 0}});
}

// ---- Unix sockets by path ---------------------------------------------------------------------

// The path of a pathname AF_UNIX address (as copied, `size` bytes); empty
// for any other (abstract, unnamed, another family).
std::string unix_path(std::uint64_t address, std::uint64_t size) {
  constexpr std::size_t kPathAt = offsetof(sockaddr_un, sun_path);
  if (address == 0 || size <= kPathAt) return {};
  const auto* sa = reinterpret_cast<const sockaddr_un*>(address);
  if (sa->sun_family != AF_UNIX || sa->sun_path[0] == '\0') return {};
  const std::size_t max = std::min<std::uint64_t>(size - kPathAt, sizeof sa->sun_path);
  return std::string(sa->sun_path, strnlen(sa->sun_path, max));
}

// A descriptor the view opened, kept for a call that may block: a copy
// made the sandbox's own (under numbers_lock, so that no close or dup2 of
// the program's is half done over it), which the program's calls cannot
// name, so that the lock need not be held while the call waits. (Not moved
// out of the program's range: in VM mode that placement's prlimit64 is the
// monitor's to serve, under the lock the placement holds.)
class Pinned {
 public:
  // Call with `numbers` held.
  Pinned(Lock& numbers, int fd) noexcept : numbers_(numbers) {
    const long copy = sys::call(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0);
    if (sys::failed(copy)) return;
    fd_ = static_cast<int>(copy);
    add_sandbox_fd(fd_);
  }
  ~Pinned() {
    if (fd_ < 0) return;
    LockGuard hold(numbers_);
    sys::call(SYS_close, fd_);
    remove_sandbox_fd(fd_);
  }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  int fd() const noexcept { return fd_; }

 private:
  Lock& numbers_;
  int fd_ = -1;
};

long perform_socket(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  const int nr = c.what.nr;
  // Where the address is: a register pair, or msghdr's msg_name/msg_namelen.
  msghdr header{};
  std::uint64_t address = 0, size = 0;
  if (nr == SYS_sendmsg) {
    if (copied.args[1] == 0) return forward(copied);
    std::memcpy(&header, reinterpret_cast<const void*>(copied.args[1]), sizeof header);
    address = reinterpret_cast<std::uint64_t>(header.msg_name);
    size = static_cast<std::uint32_t>(header.msg_namelen);
  } else {
    const int at = nr == SYS_sendto ? 4 : 1;
    address = copied.args[at];
    size = static_cast<std::uint32_t>(copied.args[at + 1]);
  }
  const std::string path = unix_path(address, size);
  if (path.empty()) return forward(copied);
  // The file's /proc link — the socket's (connect, sendto, sendmsg), or
  // its directory's and its name (bind) — in an address of dunk's.
  sockaddr_un mine{};
  mine.sun_family = AF_UNIX;
  std::unique_ptr<Pinned> pinned;
  std::string name;
  {
    LockGuard hold(c.view.numbers_lock());
    if (c.what.writes) {
      Entry e;
      if (const long err = resolve_entry(t, call, c.view, AT_FDCWD, path.c_str(), e); err != 0) return err;
      if (e.mount_point) return -EADDRINUSE;
      if (!entry_writable(c.view, e)) return -EROFS;
      pinned = std::make_unique<Pinned>(c.view.numbers_lock(), e.dir.object);
      name = "/" + e.name;
    } else {
      std::string start;
      if (const long err = start_of(t, call, c.view, AT_FDCWD, path.c_str(), false, start); err != 0) return err;
      FsView::Resolved r;
      if (const long err = c.view.resolve(start, path, FsView::ResolveOptions{}, r); err != 0) {
        return refused(t, call, err, r.why);
      }
      pinned = std::make_unique<Pinned>(c.view.numbers_lock(), r.object);
    }
  }
  if (pinned->fd() < 0) return -EMFILE;
  const int n = std::snprintf(mine.sun_path, sizeof mine.sun_path, "/proc/thread-self/fd/%d%s", pinned->fd(), name.c_str());
  if (n < 0 || static_cast<std::size_t>(n) >= sizeof mine.sun_path) return -ENAMETOOLONG;
  const auto length = static_cast<std::uint64_t>(offsetof(sockaddr_un, sun_path) + static_cast<std::size_t>(n) + 1);
  abi::Call f = copied;
  if (nr == SYS_sendmsg) {
    header.msg_name = &mine;
    header.msg_namelen = static_cast<socklen_t>(length);
    f.args[1] = reinterpret_cast<std::uint64_t>(&header);
  } else {
    const int at = nr == SYS_sendto ? 4 : 1;
    f.args[at] = reinterpret_cast<std::uint64_t>(&mine);
    f.args[at + 1] = length;
  }
  return forward(f);
}

// sendmmsg: the kernel sends the messages one by one and answers how many
// went before the first error (that error when none did). When a message
// names an AF_UNIX path, the messages go the same way, each as the sendmsg
// above, which finds the path in the view.
long perform_sendmmsg(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  auto* messages = reinterpret_cast<mmsghdr*>(copied.args[1]);
  // As many as the kernel takes (UIO_MAXIOV), all of them copied.
  const unsigned count = std::min(static_cast<std::uint32_t>(copied.args[2]), abi::layout::kUioMaxIov);
  bool paths = false;
  for (unsigned i = 0; messages != nullptr && i < count && !paths; ++i) {
    const msghdr& m = messages[i].msg_hdr;
    paths = !unix_path(reinterpret_cast<std::uint64_t>(m.msg_name), m.msg_namelen).empty();
  }
  if (!paths) return forward(copied);
  Context one{c.view, *classify(SYS_sendmsg), c.spec};
  for (unsigned i = 0; i < count; ++i) {
    const abi::Call message{SYS_sendmsg, {copied.args[0], reinterpret_cast<std::uint64_t>(&messages[i].msg_hdr),
                                          copied.args[3]}};
    const long ret = perform_socket(t, call, message, one);
    if (ret < 0) return i == 0 ? ret : static_cast<long>(i);
    messages[i].msg_len = static_cast<unsigned>(ret);
  }
  return static_cast<long>(count);
}

// ---- The working directory -----------------------------------------------------------------

long perform_getcwd(ProgramThread& t, const abi::Call& call, const abi::Call& copied, Context& c) noexcept {
  std::string cwd;
  if (const long err = c.view.locate(AT_FDCWD, cwd); err != 0) {
    // Natively: the working directory is unreachable from the root.
    return err == -EACCES ? refused(t, call, -ENOENT, "a working directory outside the file-system view") : err;
  }
  const std::uint64_t size = copied.args[1];
  if (size < cwd.size() + 1) return -ERANGE;
  if (copied.args[0] == 0) return -EFAULT;
  std::memcpy(reinterpret_cast<void*>(copied.args[0]), cwd.c_str(), cwd.size() + 1);
  return static_cast<long>(cwd.size() + 1);
}

long perform_fchdir(ProgramThread&, const abi::Call&, const abi::Call& copied, Context& c) noexcept {
  const long ret = forward(copied);
  if (ret == 0) c.view.forget_cwd();
  return ret;
}

long perform(ProgramThread& t, const abi::Call& call, const abi::Call& copied, void* context) noexcept {
  auto& c = *static_cast<Context*>(context);
  switch (c.what.op) {
    case Op::kOpen: return perform_open(t, call, copied, c);
    case Op::kObject:
    case Op::kReadlink:
    case Op::kChdir: return perform_object(t, call, copied, c);
    case Op::kEntry: return perform_entry(t, call, copied, c);
    case Op::kRename: return perform_rename(t, call, copied, c);
    case Op::kLink: return perform_link(t, call, copied, c);
    case Op::kGetcwd: return perform_getcwd(t, call, copied, c);
    case Op::kFchdir: return perform_fchdir(t, call, copied, c);
    case Op::kSocket:
      return c.what.nr == SYS_sendmmsg ? perform_sendmmsg(t, call, copied, c) : perform_socket(t, call, copied, c);
    default: return forward(copied);
  }
}

void answer(ProgramThread& t, long ret) noexcept {
  if (ret == kRestartForSignal) {
    // As serve_call does: the SYSCALL runs again after the handler.
    t.frame.rip -= kSyscallInsnLength;
    return;
  }
  t.frame.rax = static_cast<std::uint64_t>(ret);
}

}  // namespace

std::array<int, 2> view_calls_for(int nr) noexcept {
  const FileCall* what = classify(nr);
  if (what == nullptr) return {-1, -1};
  switch (what->op) {
    // The kernel's open from a mount; a bound file through its /proc link.
    case Op::kOpen: return {SYS_openat2, SYS_openat};
    // The call (or its following form) on the object's /proc link; itself
    // when it acts on a descriptor.
    case Op::kObject: return {what->follow_nr >= 0 ? what->follow_nr : nr, nr};
    case Op::kReadlink: return {SYS_readlinkat, -1};
    case Op::kChdir: return {SYS_fchdir, -1};
    case Op::kEntry:
      switch (nr) {
        case SYS_mkdir:
        case SYS_mkdirat: return {SYS_mkdirat, -1};
        case SYS_mknod:
        case SYS_mknodat: return {SYS_mknodat, -1};
        case SYS_symlink:
        case SYS_symlinkat: return {SYS_symlinkat, -1};
        default: return {SYS_unlinkat, -1};
      }
    case Op::kRename: return {SYS_renameat2, -1};
    case Op::kLink: return {SYS_linkat, -1};
    // sendmmsg naming an AF_UNIX path: one sendmsg per message.
    case Op::kSocket: return {nr, nr == SYS_sendmmsg ? SYS_sendmsg : -1};
    case Op::kGetcwd:
    case Op::kRefuse:
    case Op::kExec:      // dunk's loader
    case Op::kProcess:   // dunk's own threads and forks
      return {-1, -1};
    default: return {nr, -1};  // fchdir, close, dup2, dup3, close_range: as they are
  }
}

bool served_by_view(int nr) noexcept { return classify(nr) != nullptr; }

bool serve_in_view(ProgramThread& t, const abi::Call& call) noexcept {
  FsView* v = view();
  if (v == nullptr) return false;
  const int nr = abi::kernel_number(call.number);
  const abi::CallSpec* spec = abi::lookup(call.number);
  const FileCall* what = classify(nr);
  if (what == nullptr) {
    if (nr == SYS_bpf && (static_cast<int>(call.args[0]) == BPF_OBJ_PIN || static_cast<int>(call.args[0]) == BPF_OBJ_GET)) {
      refuse(t, call, -EPERM, "bpf's pinned objects are files the file-system view does not reach");
      return true;
    }
    if (!names_paths(spec)) return false;
    // A call with a path the table does not know: never passed on as it is.
    refuse(t, call, -ENOSYS, "a path the file-system view does not serve for this call");
    return true;
  }
  switch (what->op) {
    case Op::kExec:
      return false;
    case Op::kRefuse:
      refuse(t, call, -EPERM, "it reaches files around the file-system view");
      return true;
    case Op::kNumbers: {
      LockGuard hold(v->numbers_lock());
      if (nr == SYS_close_range) {
        sandbox().reporter.flush();
        sys_close_range(t, call);
      } else {
        answer(t, forward_with_copies(t, call));
      }
      return true;
    }
    case Op::kProcess: {
      LockGuard hold(v->numbers_lock());
      sandbox().reporter.flush();
      sys_clone(t, call);
      return true;
    }
    default: {
      Context c{*v, *what, *spec};
      answer(t, forward_with_copies(t, call, &perform, &c));
      return true;
    }
  }
}

}  // namespace dunk::sandbox
