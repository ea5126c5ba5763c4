// The file-system view: its mounts, the skeleton, and path resolution
// (fs_view.h). The calls that use it are in fs_calls.cc.
//
// Resolution works on view paths: canonical absolute paths in the view,
// without symlinks, "." or "..". Each component is looked up from the pinned
// descriptor of the mount the path lies in, by the kernel, with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS):
// a path dunk believes free of symlinks is one, or the kernel refuses it. A
// symlink is followed by dunk: its text replaces it, an absolute one
// starting again at the view's "/". ".." is the view path's parent (the
// view's tree, as a chroot's), so it never leaves a mount for the host
// directory above it. Magic links (/proc/PID/fd/N, cwd, root, exe, ...)
// are refused as RESOLVE_NO_MAGICLINKS refuses them: what they lead to is
// not a path in the view.
//
// This runs in ring 0 as ordinary code of dunk's (it may allocate and lock)
// and, for build(), in dunk before the sandbox exists.
#include "sandbox/fs_view.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/fd_placement.h"
#include "base/syscall.h"
#include "sandbox/copies.h"

namespace dunk::sandbox {
namespace {

FsView* the_view = nullptr;

// Linux's limit of symlinks followed in one lookup (MAXSYMLINKS).
constexpr int kMaxLinks = 40;
// How often a resolution starts again when the kernel saw a symlink where
// the walk had seen none (another thread changed the tree meanwhile).
constexpr int kAttempts = 4;
// procfs's root directory (PROC_ROOT_INO): its symlinks ("self",
// "thread-self", "mounts", "net") are ordinary; all others are magic.
constexpr ino_t kProcRootIno = 1;
// Returned by fast() when the walk must decide.
constexpr long kSlow = 1;

constexpr std::uint64_t kBeneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

long openat2(int dirfd, const char* path, std::uint64_t flags, std::uint64_t mode, std::uint64_t resolve) noexcept {
  open_how how{};
  how.flags = flags;
  how.mode = mode;
  how.resolve = resolve;
  return sys::call(SYS_openat2, dirfd, reinterpret_cast<long>(path), reinterpret_cast<long>(&how), sizeof how);
}

long fstat_fd(int fd, struct stat& st) noexcept {
  return sys::call(SYS_newfstatat, fd, reinterpret_cast<long>(""), reinterpret_cast<long>(&st), AT_EMPTY_PATH);
}

bool is_proc(int fd) noexcept {
  struct statfs fs {};
  return sys::call(SYS_fstatfs, fd, reinterpret_cast<long>(&fs)) == 0 && fs.f_type == PROC_SUPER_MAGIC;
}

// Visits the components of `path` ("" and "." included as they come;
// empty ones from "//" skipped).
template <class F>
void each_component(std::string_view path, F&& f) {
  std::size_t at = 0;
  while (at < path.size()) {
    const std::size_t slash = path.find('/', at);
    const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
    if (end > at) f(path.substr(at, end - at));
    at = end + 1;
  }
}

std::string join(const std::string& dir, std::string_view name) {
  std::string out = dir;
  if (out.size() > 1) out += '/';
  out += name;
  return out;
}

std::string parent_of(const std::string& view) {
  const std::size_t slash = view.rfind('/');
  return slash == 0 || slash == std::string::npos ? std::string("/") : view.substr(0, slash);
}

bool ends_with_slash(std::string_view path) { return path.size() > 1 && path.back() == '/'; }

bool has_dotdot(std::string_view path) {
  bool found = false;
  each_component(path, [&](std::string_view c) { found = found || c == ".."; });
  return found;
}

// Whether `view` is `prefix` or lies beneath it.
bool beneath(std::string_view view, std::string_view prefix) {
  if (prefix == "/") return true;
  return view.starts_with(prefix) && (view.size() == prefix.size() || view[prefix.size()] == '/');
}

// `dst` as a canonical view path, or empty when it is not absolute or
// holds "..".
std::string canonical_destination(std::string_view dst) {
  if (dst.empty() || dst[0] != '/') return {};
  std::string out = "/";
  bool bad = false;
  each_component(dst, [&](std::string_view c) {
    if (c == ".") return;
    if (c == "..") bad = true;
    out = join(out, c);
  });
  return bad ? std::string() : out;
}

std::string host_path_of(int fd) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char path[PATH_MAX];
  const long n = sys::call(SYS_readlink, reinterpret_cast<long>(link), reinterpret_cast<long>(path), sizeof path - 1);
  if (n <= 0) return {};
  return std::string(path, static_cast<std::size_t>(n));
}

}  // namespace

FsView* view() noexcept { return the_view; }
void set_view(FsView* v) noexcept { the_view = v; }

// ---- Resolved ------------------------------------------------------------------

FsView::Resolved::Resolved(Resolved&& other) noexcept { *this = std::move(other); }

FsView::Resolved& FsView::Resolved::operator=(Resolved&& other) noexcept {
  if (this != &other) {
    if (owned && object >= 0) sys::call(SYS_close, object);
    view = std::move(other.view);
    mount = other.mount;
    rel = std::move(other.rel);
    exists = other.exists;
    st = other.st;
    object = std::exchange(other.object, -1);
    owned = std::exchange(other.owned, false);
    why = other.why;
  }
  return *this;
}

FsView::Resolved::~Resolved() {
  if (owned && object >= 0) sys::call(SYS_close, object);
}

// ---- Building --------------------------------------------------------------------

std::unique_ptr<FsView> FsView::build(const std::vector<BindSpec>& binds, std::string& why) {
  std::unique_ptr<FsView> v(new FsView());
  for (const BindSpec& b : binds) {
    const std::string& given = b.destination.empty() ? b.source : b.destination;
    const std::string name = b.option + " " + b.source + (b.destination.empty() ? "" : " " + b.destination);
    const std::string dst = canonical_destination(given);
    if (dst.empty()) {
      why = name + ": the destination must be an absolute path without '..'";
      return nullptr;
    }
    // As bubblewrap opens a source: symlinks followed, any kind of file.
    const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(b.source.c_str()), O_PATH | O_CLOEXEC);
    if (sys::failed(fd)) {
      why = name + ": cannot open the source: " + std::strerror(static_cast<int>(-fd));
      return nullptr;
    }
    Mount m;
    m.fd = move_out_of_program_range(static_cast<int>(fd));
    m.destination = dst;
    m.writable = b.writable;
    m.spec = name;
    struct stat st {};
    if (fstat_fd(m.fd, st) != 0 || (m.host = host_path_of(m.fd)).empty() || m.host[0] != '/') {
      sys::call(SYS_close, m.fd);
      why = name + ": the source has no path on this host";
      return nullptr;
    }
    m.directory = S_ISDIR(st.st_mode);
    if (dst == "/" && !m.directory) {
      sys::call(SYS_close, m.fd);
      why = name + ": only a directory can be the view's /";
      return nullptr;
    }
    v->mounts_.push_back(std::move(m));
  }
  const bool root_bound = std::any_of(v->mounts_.begin(), v->mounts_.end(), [](const Mount& m) { return m.destination == "/"; });
  if (!root_bound && !v->make_skeleton(why)) return nullptr;
  // The view cannot be enforced without openat2's RESOLVE_BENEATH.
  std::string root_rel;
  const long probe = openat2(v->mounts_[static_cast<std::size_t>(v->mount_of("/", root_rel))].fd, ".",
                             O_PATH | O_CLOEXEC, 0, kBeneath);
  if (probe == -ENOSYS) {
    why = "--ro-bind/--bind: this kernel has no openat2 (Linux 5.6): the file-system view cannot be enforced";
    return nullptr;
  }
  if (!sys::failed(probe)) sys::call(SYS_close, probe);
  // Every destination must hang in the view: its parent a directory there
  // (inside another bind, or the skeleton's).
  for (const Mount& m : v->mounts_) {
    if (m.skeleton || m.destination == "/") continue;
    Resolved parent;
    const long err = v->resolve("/", parent_of(m.destination), ResolveOptions{}, parent);
    if (err != 0 || !S_ISDIR(parent.st.st_mode)) {
      why = m.spec + ": the destination's parent " + parent_of(m.destination) +
            " is not a directory in the view (bind it, or a directory above it)";
      return nullptr;
    }
  }
  return v;
}

// The skeleton: a directory of dunk's for the view's "/" holding the path
// to every destination that no other bind provides — directories, and an
// empty file where a file is bound — so that listing "/" (or /home when
// only /home/u/work is bound) shows what is there, as a bubblewrap
// sandbox's tmpfs root does. Read-only in the view.
bool FsView::make_skeleton(std::string& why) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp") + "/dunk-view.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    why = "cannot make the view's root directory under " + templ + ": " + std::strerror(errno);
    return false;
  }
  skeleton_ = templ;
  // mkdtemp makes it 0700; the view's "/" reads like any root.
  chmod(skeleton_.c_str(), 0755);
  auto covered = [&](const std::string& node, const Mount& self) {
    return std::any_of(mounts_.begin(), mounts_.end(), [&](const Mount& other) {
      if (&other == &self) return false;
      return other.destination != node && beneath(node, other.destination);
    });
  };
  for (const Mount& m : mounts_) {
    std::string node;
    std::vector<std::string_view> parts;
    each_component(m.destination, [&](std::string_view c) { parts.push_back(c); });
    for (std::size_t i = 0; i < parts.size(); ++i) {
      node += '/';
      node += parts[i];
      if (covered(node, m)) break;
      const std::string host = skeleton_ + node;
      struct stat st {};
      if (stat(host.c_str(), &st) == 0) continue;
      const bool placeholder_file = i + 1 == parts.size() && !m.directory;
      bool made = false;
      if (placeholder_file) {
        const int fd = open(host.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        made = fd >= 0 && close(fd) == 0;
      } else {
        made = mkdir(host.c_str(), 0755) == 0;
      }
      if (!made) {
        why = "cannot make " + host + " for the view: " + std::strerror(errno);
        return false;
      }
      skeleton_entries_.push_back(host);
    }
  }
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(skeleton_.c_str()), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (sys::failed(fd)) {
    why = "cannot open the view's root " + skeleton_ + ": " + std::strerror(static_cast<int>(-fd));
    return false;
  }
  Mount root;
  root.fd = move_out_of_program_range(static_cast<int>(fd));
  root.destination = "/";
  root.host = host_path_of(root.fd);
  root.skeleton = true;
  // First: a bind of the same destination wins over it (mount_of).
  mounts_.insert(mounts_.begin(), std::move(root));
  return true;
}

void FsView::remove_skeleton() noexcept {
  if (skeleton_.empty()) return;
  for (auto it = skeleton_entries_.rbegin(); it != skeleton_entries_.rend(); ++it) {
    if (rmdir(it->c_str()) != 0) unlink(it->c_str());
  }
  rmdir(skeleton_.c_str());
  skeleton_entries_.clear();
  skeleton_.clear();
}

FsView::~FsView() {
  for (const Mount& m : mounts_) sys::call(SYS_close, m.fd);
}

// ---- Mounts ------------------------------------------------------------------------

int FsView::mount_of(std::string_view view_path, std::string& rel) const noexcept {
  int best = -1;
  std::size_t best_length = 0;
  for (std::size_t i = 0; i < mounts_.size(); ++i) {
    const std::string& d = mounts_[i].destination;
    if (!beneath(view_path, d)) continue;
    const std::size_t length = d == "/" ? 0 : d.size();
    if (best < 0 || length >= best_length) {  // deeper wins; the later of equals
      best = static_cast<int>(i);
      best_length = length;
    }
  }
  const std::string& d = mounts_[static_cast<std::size_t>(best)].destination;
  if (d == "/") {
    rel.assign(view_path.size() > 1 ? view_path.substr(1) : std::string_view());
  } else {
    rel.assign(view_path.size() == d.size() ? std::string_view() : view_path.substr(d.size() + 1));
  }
  return best;
}

bool FsView::is_mount_point(std::string_view view_path) const noexcept {
  return std::any_of(mounts_.begin(), mounts_.end(),
                     [&](const Mount& m) { return !m.skeleton && m.destination == view_path; });
}

// ---- Resolution ------------------------------------------------------------------------

struct FsView::Lookup {
  int fd = -1;
  bool owned = false;
  struct stat st {};
  int mount = -1;
  std::string rel;
  Lookup() = default;
  Lookup(const Lookup&) = delete;
  Lookup& operator=(const Lookup&) = delete;
  ~Lookup() {
    if (owned) sys::call(SYS_close, fd);
  }
  void move_into(Resolved& out, std::string view_path) {
    out.view = std::move(view_path);
    out.mount = mount;
    out.rel = std::move(rel);
    out.exists = true;
    out.st = st;
    out.object = fd;
    out.owned = owned;
    owned = false;
  }
};

// One view path, looked up from its mount without following anything.
// -EAGAIN: the kernel met a symlink in a path that had none (a race).
long FsView::lookup(const std::string& view_path, Lookup& out) noexcept {
  out.mount = mount_of(view_path, out.rel);
  const Mount& m = mounts_[static_cast<std::size_t>(out.mount)];
  if (out.rel.empty()) {
    out.fd = m.fd;
    out.owned = false;
  } else {
    const long fd = openat2(m.fd, out.rel.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, kBeneath);
    if (fd == -ELOOP || fd == -EXDEV) return -EAGAIN;
    if (sys::failed(fd)) return fd;
    out.fd = static_cast<int>(fd);
    out.owned = true;
  }
  return fstat_fd(out.fd, out.st);
}

long FsView::fast(const std::string& start, std::string_view path, const ResolveOptions& options,
                  Resolved& out) noexcept {
  if (options.beneath || options.in_root || has_dotdot(path)) return kSlow;
  std::string lexical = path[0] == '/' ? std::string("/") : start;
  each_component(path, [&](std::string_view c) {
    if (c != ".") lexical = join(lexical, c);
  });
  Lookup l;
  l.mount = mount_of(lexical, l.rel);
  const Mount& m = mounts_[static_cast<std::size_t>(l.mount)];
  if (l.rel.empty()) {
    l.fd = m.fd;
  } else {
    const std::string rel = ends_with_slash(path) ? l.rel + "/" : l.rel;
    const long fd = openat2(m.fd, rel.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, kBeneath);
    if (fd == -ELOOP || fd == -EXDEV) return kSlow;
    if (fd == -ENOENT && !options.must_exist) {
      out.view = lexical;
      out.mount = l.mount;
      out.rel = l.rel;
      out.exists = false;
      return 0;
    }
    if (sys::failed(fd)) return fd;
    l.fd = static_cast<int>(fd);
    l.owned = true;
  }
  if (const long err = fstat_fd(l.fd, l.st); err != 0) return err;
  if (S_ISLNK(l.st.st_mode) && options.follow_last) return kSlow;
  l.move_into(out, lexical);
  return 0;
}

long FsView::walk(const std::string& start, std::string_view path, const ResolveOptions& options,
                  Resolved& out) noexcept {
  const std::string root = options.in_root ? start : std::string("/");
  if (path[0] == '/' && options.beneath) return -EXDEV;
  std::string cur = path[0] == '/' ? root : start;
  // Components still to walk, the next one last.
  std::vector<std::string> pending;
  auto push_front = [&](std::string_view p) {
    std::vector<std::string> parts;
    each_component(p, [&](std::string_view c) { parts.emplace_back(c); });
    pending.insert(pending.end(), parts.rbegin(), parts.rend());
  };
  push_front(path);
  const bool trailing_slash = ends_with_slash(path);
  int links = 0;
  Lookup final;
  bool have_final = false;
  while (!pending.empty()) {
    const std::string c = std::move(pending.back());
    pending.pop_back();
    const bool last = pending.empty();
    if (c == ".") continue;
    if (c == "..") {
      // RESOLVE_BENEATH: never above the start; otherwise ".." of the
      // root (the view's, or RESOLVE_IN_ROOT's start) is the root.
      if (options.beneath && cur == start) return -EXDEV;
      if (cur != root) cur = parent_of(cur);
      continue;
    }
    std::string next = join(cur, c);
    Lookup l;
    const long err = lookup(next, l);
    if (err == -ENOENT && last && !options.must_exist) {
      out.view = std::move(next);
      out.mount = l.mount;
      out.rel = std::move(l.rel);
      out.exists = false;
      return 0;
    }
    if (err != 0) return err;
    if (S_ISLNK(l.st.st_mode) && (!last || options.follow_last || trailing_slash)) {
      if (options.no_symlinks) return -ELOOP;
      if (is_proc(l.fd)) {
        // Only procfs's root holds symlinks that are not magic.
        Lookup dir;
        if (lookup(cur, dir) != 0 || dir.st.st_ino != kProcRootIno || !is_proc(dir.fd)) {
          out.why = "a magic link of /proc (it leads to no path in the file-system view)";
          return -ELOOP;
        }
      }
      if (++links > kMaxLinks) return -ELOOP;
      char target[PATH_MAX];
      const long n = sys::call(SYS_readlinkat, l.fd, reinterpret_cast<long>(""), reinterpret_cast<long>(target),
                               sizeof target - 1);
      if (n < 0) return n;
      if (n == 0) return -ENOENT;
      const std::string_view text(target, static_cast<std::size_t>(n));
      if (text[0] == '/') {
        if (options.beneath) return -EXDEV;
        cur = root;
      }
      push_front(text);
      continue;
    }
    if (!last && !S_ISDIR(l.st.st_mode)) return -ENOTDIR;
    cur = std::move(next);
    if (last) {
      final.fd = std::exchange(l.fd, -1);
      final.owned = std::exchange(l.owned, false);
      final.st = l.st;
      final.mount = l.mount;
      final.rel = std::move(l.rel);
      have_final = true;
    }
  }
  if (!have_final) {
    if (const long err = lookup(cur, final); err != 0) return err;
  }
  if (trailing_slash && !S_ISDIR(final.st.st_mode)) return -ENOTDIR;
  final.move_into(out, std::move(cur));
  return 0;
}

long FsView::resolve(const std::string& start, std::string_view path, const ResolveOptions& options,
                     Resolved& out) noexcept {
  if (path.empty()) return -ENOENT;
  if (path.size() >= PATH_MAX) return -ENAMETOOLONG;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    out = Resolved();
    long err = fast(start, path, options, out);
    if (err == kSlow) {
      out = Resolved();
      err = walk(start, path, options, out);
    }
    if (err != -EAGAIN) return err;
  }
  return -ELOOP;
}

// ---- Where descriptors are ---------------------------------------------------------------

void FsView::set_cwd(std::string view_path) noexcept {
  LockGuard hold(cwd_lock_);
  cwd_ = std::move(view_path);
}

void FsView::forget_cwd() noexcept {
  LockGuard hold(cwd_lock_);
  cwd_.clear();
}

long FsView::locate(int dirfd, std::string& view_path) noexcept {
  if (dirfd == AT_FDCWD) {
    {
      LockGuard hold(cwd_lock_);
      if (!cwd_.empty()) {
        view_path = cwd_;
        return 0;
      }
    }
    const long err = locate_host(AT_FDCWD, "/proc/self/cwd", view_path);
    if (err == 0) set_cwd(view_path);
    return err;
  }
  if (dirfd < 0) return -EBADF;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
  return locate_host(dirfd, link, view_path);
}

// The directory's host path (its /proc link), mapped back through each
// mount whose source holds it — the most specific first, writable before
// read-only — and accepted when the view path leads to the same directory.
long FsView::locate_host(int dirfd, const char* link, std::string& view_path) noexcept {
  struct stat dir {};
  const long st = dirfd == AT_FDCWD
                      ? sys::call(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>("."), reinterpret_cast<long>(&dir), 0)
                      : fstat_fd(dirfd, dir);
  if (st != 0) return st;
  if (!S_ISDIR(dir.st_mode)) return -ENOTDIR;
  char buffer[PATH_MAX];
  const long n = sys::call(SYS_readlink, reinterpret_cast<long>(link), reinterpret_cast<long>(buffer), sizeof buffer - 1);
  if (n <= 0 || buffer[0] != '/') return -EACCES;
  const std::string host(buffer, static_cast<std::size_t>(n));
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < mounts_.size(); ++i) {
    if (mounts_[i].directory && beneath(host, mounts_[i].host)) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const Mount &x = mounts_[a], &y = mounts_[b];
    if (x.host.size() != y.host.size()) return x.host.size() > y.host.size();
    return x.writable && !y.writable;
  });
  for (std::size_t i : order) {
    const Mount& m = mounts_[i];
    std::string candidate = m.destination;
    const std::string_view below = m.host == "/" ? std::string_view(host).substr(1)
                                                 : std::string_view(host).substr(std::min(host.size(), m.host.size() + 1));
    each_component(below, [&](std::string_view c) { candidate = join(candidate, c); });
    Lookup l;
    if (lookup(candidate, l) == 0 && l.st.st_dev == dir.st_dev && l.st.st_ino == dir.st_ino) {
      view_path = std::move(candidate);
      return 0;
    }
  }
  return -EACCES;
}

// ---- The sandbox's start --------------------------------------------------------------------

long FsView::start(const std::string& cwd) noexcept {
  for (const Mount& m : mounts_) add_sandbox_fd(m.fd);
  Resolved r;
  if (!cwd.empty() && resolve("/", cwd, ResolveOptions{}, r) == 0 && S_ISDIR(r.st.st_mode)) {
    if (const long err = sys::call(SYS_fchdir, r.object); err != 0) return err;
    set_cwd(r.view);
    return 0;
  }
  std::string rel;
  const Mount& root = mounts_[static_cast<std::size_t>(mount_of("/", rel))];
  if (const long err = sys::call(SYS_fchdir, root.fd); err != 0) return err;
  set_cwd("/");
  return 0;
}

long open_for_exec(const std::string& path) noexcept {
  FsView* v = view();
  if (v == nullptr) return sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path.c_str()), O_RDONLY | O_CLOEXEC);
  std::string cwd;
  if (path.empty()) return -ENOENT;
  if (path[0] != '/') {
    if (const long err = v->locate(AT_FDCWD, cwd); err != 0) return err;
  }
  FsView::Resolved r;
  if (const long err = v->resolve(cwd, path, FsView::ResolveOptions{}, r); err != 0) return err;
  if (S_ISDIR(r.st.st_mode)) return -EACCES;
  // The object the lookup pinned, opened for reading through its /proc
  // link: what was checked is what gets loaded.
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", r.object);
  return sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(link), O_RDONLY | O_CLOEXEC);
}

}  // namespace dunk::sandbox
