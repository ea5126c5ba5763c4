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
// directory above it. Magic links (/proc/PID/cwd, root, exe, ...) are
// refused as RESOLVE_NO_MAGICLINKS refuses them: what they lead to is not
// a path in the view. The exception is the program's own descriptors'
// /proc/self/fd/N: followed to the view path of N's object when it has
// one, else (a pipe, a file from outside) N itself, for the calls that
// can use it (ResolveOptions::descriptors).
//
// This runs in ring 0 as ordinary code of dunk's (it may allocate and lock)
// and, for build(), in dunk before the sandbox exists.
#include "sandbox/fs_view.h"

#include <dirent.h>
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
#include <string>
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
  std::snprintf(link, sizeof link, "/proc/thread-self/fd/%d", fd);
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
    descriptor = std::exchange(other.descriptor, -1);
    why = other.why;
  }
  return *this;
}

FsView::Resolved::~Resolved() {
  if (owned && object >= 0) sys::call(SYS_close, object);
}

// ---- Building --------------------------------------------------------------------

std::unique_ptr<FsView> FsView::build(const std::vector<BindSpec>& specs, std::string& why) {
  std::unique_ptr<FsView> v(new FsView());
  // A view that cannot be made leaves nothing of dunk's behind.
  struct Undo {
    FsView* view;
    ~Undo() {
      if (view != nullptr) view->remove_own_trees();
    }
  } undo{v.get()};
  // --dir and --symlink inside a bind's tree: made there once the view stands.
  std::vector<std::pair<const BindSpec*, std::string>> in_binds;
  for (const BindSpec& b : specs) {
    using Kind = BindSpec::Kind;
    const bool sourced = b.kind == Kind::kBind || b.kind == Kind::kSymlink || b.kind == Kind::kData;
    const std::string& given = b.kind == Kind::kBind && b.destination.empty() ? b.source : b.destination;
    const std::string name = b.option + (sourced ? " " + b.source : "") +
                             (b.kind == Kind::kBind && b.destination.empty() ? "" : " " + b.destination);
    const std::string dst = canonical_destination(given);
    if (dst.empty()) {
      why = name + ": the destination must be an absolute path without '..'";
      return nullptr;
    }
    const bool in_a_bind = std::any_of(v->mounts_.begin(), v->mounts_.end(),
                                       [&](const Mount& m) { return beneath(dst, m.destination); });
    switch (b.kind) {
      case Kind::kTmpfs:
        if (!v->add_own_directory(dst, name, true, why, b.perms)) return nullptr;
        continue;
      case Kind::kData:
        if (!v->add_own_file(b, dst, name, why)) return nullptr;
        continue;
      case Kind::kRemountRo: {
        // The bind that DST shows (the last of its destination), as
        // bubblewrap remounts the mount at DST.
        auto it = std::find_if(v->mounts_.rbegin(), v->mounts_.rend(), [&](const Mount& m) { return m.destination == dst; });
        if (it == v->mounts_.rend()) {
          why = name + ": no bind before it has " + dst + " as its destination";
          return nullptr;
        }
        it->writable = false;
        continue;
      }
      case Kind::kDev:
        if (!v->add_dev(dst, name, why)) return nullptr;
        continue;
      case Kind::kDir:
        if (in_a_bind) {
          in_binds.emplace_back(&b, dst);
        } else if (!v->add_own_directory(dst, name, true, why, b.perms)) {
          return nullptr;
        }
        continue;
      case Kind::kSymlink:
        if (dst == "/") {
          why = name + ": the view's / cannot be a symlink";
          return nullptr;
        }
        if (in_a_bind) {
          in_binds.emplace_back(&b, dst);
        } else {
          v->skeleton_links_.emplace_back(dst, b.source);
        }
        continue;
      case Kind::kBind:
      case Kind::kProc:
        break;
    }
    // As bubblewrap opens a source: symlinks followed, any kind of file.
    const std::string& source = b.kind == Kind::kProc ? std::string("/proc") : b.source;
    const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(source.c_str()), O_PATH | O_CLOEXEC);
    if (fd == -ENOENT && b.optional) continue;  // --*-bind-try: left out, as bubblewrap does
    if (sys::failed(fd)) {
      why = name + ": cannot open the source" + (b.kind == Kind::kProc ? " /proc" : "") + ": " +
            std::strerror(static_cast<int>(-fd));
      return nullptr;
    }
    Mount m;
    m.fd = move_out_of_program_range(static_cast<int>(fd));
    m.destination = dst;
    m.writable = b.writable && b.kind == Kind::kBind;
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
  for (const auto& [b, dst] : in_binds) {
    if (!v->make_in_binds(*b, dst, b->option + (b->kind == BindSpec::Kind::kSymlink ? " " + b->source : "") + " " +
                                       b->destination, why)) {
      return nullptr;
    }
  }
  // A bind beneath a directory of dunk's (--tmpfs /a --bind X /a/b) shows
  // in its listing, as in the skeleton.
  if (!v->make_placeholders(why)) return nullptr;
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
  undo.view = nullptr;
  return v;
}

// The path to each destination inside a directory of dunk's that holds it
// (not the skeleton, which makes its own): directories, and an empty file
// where a file is bound.
bool FsView::make_placeholders(std::string& why) {
  for (const Mount& m : mounts_) {
    if (m.skeleton || m.destination == "/") continue;
    std::string rel;
    const int holder = mount_of(parent_of(m.destination), rel);
    const Mount& h = mounts_[static_cast<std::size_t>(holder)];
    if (!h.own || !h.directory || h.destination == m.destination) continue;
    std::string node = h.host;
    const std::string below = m.destination.substr(h.destination == "/" ? 1 : h.destination.size() + 1);
    std::vector<std::string_view> parts;
    each_component(below, [&](std::string_view c) { parts.push_back(c); });
    for (std::size_t i = 0; i < parts.size(); ++i) {
      node += '/';
      node += parts[i];
      struct stat st {};
      if (lstat(node.c_str(), &st) == 0) continue;
      bool made = false;
      if (i + 1 == parts.size() && !m.directory) {
        const int fd = open(node.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        made = fd >= 0 && close(fd) == 0;
      } else {
        made = mkdir(node.c_str(), 0755) == 0;
      }
      if (!made) {
        why = m.spec + ": cannot make " + node + " for the view: " + std::strerror(errno);
        return false;
      }
    }
  }
  return true;
}

bool FsView::has_own_trees() const noexcept {
  return std::any_of(mounts_.begin(), mounts_.end(), [](const Mount& m) { return m.own && m.writable; });
}

// dunk's directory for the skeleton and the directories --tmpfs, --dir and
// --dev make: $TMPDIR/dunk-view.XXXXXX, removed when the sandbox ends.
bool FsView::own_directory_root(std::string& why) {
  if (!own_root_.empty()) return true;
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp") + "/dunk-view.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    why = "cannot make the view's directory under " + templ + ": " + std::strerror(errno);
    return false;
  }
  // mkdtemp's 0700 stays: what the program writes in --tmpfs is no other
  // user's business (the program reaches it through pinned descriptors).
  own_root_ = templ;
  return true;
}

// A directory of dunk's at `destination`: empty, and writable by the
// program when `writable` (--tmpfs; a bubblewrap tmpfs is writable too).
bool FsView::add_own_directory(const std::string& destination, const std::string& spec, bool writable,
                               std::string& why, int perms) {
  if (!own_directory_root(why)) return false;
  const std::string host = own_root_ + "/" + std::to_string(++own_count_);
  // The mode as given (--perms), whatever dunk's umask.
  if (mkdir(host.c_str(), 0700) != 0 || chmod(host.c_str(), perms >= 0 ? static_cast<mode_t>(perms) : 0755) != 0) {
    why = spec + ": cannot make " + host + ": " + std::strerror(errno);
    return false;
  }
  return add_own_mount(host, destination, spec, writable, true, why);
}

// What dunk made at `host`, pinned (O_PATH) and bound at `destination`.
bool FsView::add_own_mount(const std::string& host, const std::string& destination, const std::string& spec,
                           bool writable, bool directory, std::string& why) {
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(host.c_str()),
                            O_PATH | O_NOFOLLOW | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (sys::failed(fd)) {
    why = spec + ": cannot open " + host + ": " + std::strerror(static_cast<int>(-fd));
    return false;
  }
  Mount m;
  m.fd = move_out_of_program_range(static_cast<int>(fd));
  m.destination = destination;
  m.host = host_path_of(m.fd);
  m.writable = writable;
  m.directory = directory;
  m.own = true;
  m.spec = spec;
  mounts_.push_back(std::move(m));
  return true;
}

// --file, --bind-data, --ro-bind-data: a file of dunk's holding the data
// read from FD, bound at `destination` (read-write but for --ro-bind-data;
// mode 0644, or --perms).
bool FsView::add_own_file(const BindSpec& b, const std::string& destination, const std::string& spec,
                          std::string& why) {
  if (!own_directory_root(why)) return false;
  const std::string host = own_root_ + "/" + std::to_string(++own_count_);
  const int out = open(host.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  bool written = out >= 0;
  for (std::size_t at = 0; written && at < b.data.size();) {
    const ssize_t n = write(out, b.data.data() + at, b.data.size() - at);
    written = n > 0;
    at += written ? static_cast<std::size_t>(n) : 0;
  }
  written = written && fchmod(out, b.perms >= 0 ? static_cast<mode_t>(b.perms) : 0644) == 0;
  const int err = errno;
  if (out >= 0) close(out);
  if (!written) {
    why = spec + ": cannot write " + host + ": " + std::strerror(err);
    return false;
  }
  return add_own_mount(host, destination, spec, b.writable, false, why);
}

// bubblewrap's --dev: a read-only directory of dunk's holding the host's
// harmless device nodes (each bound, usable for writing), the symlinks
// programs expect, an empty pts and a writable shm.
bool FsView::add_dev(const std::string& destination, const std::string& spec, std::string& why) {
  if (!add_own_directory(destination, spec, false, why)) return false;
  const std::string dir = mounts_.back().host;
  auto fail = [&](const std::string& what) {
    why = spec + ": cannot make " + dir + "/" + what + ": " + std::strerror(errno);
    return false;
  };
  for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"}) {
    const std::string source = std::string("/dev/") + node;
    struct stat st {};
    if (stat(source.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) continue;  // the host has none: neither has the view
    const int placeholder = open((dir + "/" + node).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (placeholder < 0) return fail(node);
    close(placeholder);
    const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(source.c_str()), O_PATH | O_CLOEXEC);
    if (sys::failed(fd)) {
      why = spec + ": cannot open " + source + ": " + std::strerror(static_cast<int>(-fd));
      return false;
    }
    Mount m;
    m.fd = move_out_of_program_range(static_cast<int>(fd));
    m.destination = join(destination, node);
    m.host = source;
    m.writable = true;
    m.directory = false;
    m.device = true;
    m.spec = spec;
    mounts_.push_back(std::move(m));
  }
  constexpr std::pair<const char*, const char*> kLinks[] = {
      {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
      {"fd", "/proc/self/fd"},      {"core", "/proc/kcore"},       {"ptmx", "pts/ptmx"},
  };
  for (const auto& [name, text] : kLinks) {
    if (symlink(text, (dir + "/" + name).c_str()) != 0) return fail(name);
  }
  if (mkdir((dir + "/pts").c_str(), 0755) != 0) return fail("pts");
  if (mkdir((dir + "/shm").c_str(), 0755) != 0) return fail("shm");
  return add_own_directory(join(destination, "shm"), spec, true, why);
}

// --dir or --symlink whose destination lies in a bind's tree: made there,
// on the host, as bubblewrap does, when the bind is writable; accepted as
// it is when already there (a directory; a symlink with the same text).
bool FsView::make_in_binds(const BindSpec& b, const std::string& destination, const std::string& spec,
                           std::string& why) {
  const std::string parent_path = parent_of(destination);
  const std::string name = destination.substr(destination.rfind('/') + 1);
  Resolved parent;
  if (destination == "/" || resolve("/", parent_path, ResolveOptions{}, parent) != 0 || !S_ISDIR(parent.st.st_mode)) {
    why = spec + ": the destination's parent " + parent_path + " is not a directory in the view";
    return false;
  }
  const Mount& m = mounts_[static_cast<std::size_t>(parent.mount)];
  const bool link = b.kind == BindSpec::Kind::kSymlink;
  struct stat st {};
  if (sys::call(SYS_newfstatat, parent.object, reinterpret_cast<long>(name.c_str()), reinterpret_cast<long>(&st),
                AT_SYMLINK_NOFOLLOW) == 0) {
    if (!link && S_ISDIR(st.st_mode)) return true;
    if (link && S_ISLNK(st.st_mode)) {
      char text[PATH_MAX];
      const long n = sys::call(SYS_readlinkat, parent.object, reinterpret_cast<long>(name.c_str()),
                               reinterpret_cast<long>(text), sizeof text);
      if (n >= 0 && std::string_view(text, static_cast<std::size_t>(n)) == b.source) return true;
    }
    why = spec + ": " + destination + " is already there in " + (m.skeleton ? "the view's own tree" : m.spec) +
          (link ? ", not as this symlink" : ", not as a directory");
    return false;
  }
  if (!m.writable && !m.own) {  // dunk's own (--dev's directory) takes them, as bubblewrap's /dev tmpfs
    why = spec + ": " + destination + " would be made in " + (m.skeleton ? "the view's own tree" : m.spec) +
          ", which is read-only";
    return false;
  }
  const long err = link ? sys::call(SYS_symlinkat, reinterpret_cast<long>(b.source.c_str()), parent.object,
                                    reinterpret_cast<long>(name.c_str()))
                        : sys::call(SYS_mkdirat, parent.object, reinterpret_cast<long>(name.c_str()),
                                    b.perms >= 0 ? b.perms : 0755);
  if (err != 0) {
    why = spec + ": cannot make " + destination + " in " + m.spec + ": " + std::strerror(static_cast<int>(-err));
    return false;
  }
  return true;
}

// The skeleton: a directory of dunk's for the view's "/" holding the path
// to every destination that no other bind provides — directories, and an
// empty file where a file is bound — so that listing "/" (or /home when
// only /home/u/work is bound) shows what is there, as a bubblewrap
// sandbox's tmpfs root does, and --symlink's links. Read-only in the view.
bool FsView::make_skeleton(std::string& why) {
  if (!own_directory_root(why)) return false;
  skeleton_ = own_root_ + "/root";
  if (mkdir(skeleton_.c_str(), 0755) != 0) {
    why = "cannot make the view's root directory " + skeleton_ + ": " + std::strerror(errno);
    return false;
  }
  // The path to `destination` in the skeleton, up to where another mount
  // provides it; `last` makes its final component. False: `why` is set.
  auto make_path = [&](const std::string& destination, const Mount* self, auto&& last) {
    std::string node;
    std::vector<std::string_view> parts;
    each_component(destination, [&](std::string_view c) { parts.push_back(c); });
    for (std::size_t i = 0; i < parts.size(); ++i) {
      node += '/';
      node += parts[i];
      const bool covered = std::any_of(mounts_.begin(), mounts_.end(), [&](const Mount& other) {
        return &other != self && other.destination != node && beneath(node, other.destination);
      });
      if (covered) return true;
      const std::string host = skeleton_ + node;
      const bool final = i + 1 == parts.size();
      struct stat st {};
      if (lstat(host.c_str(), &st) == 0) {
        if (!final || self != nullptr) continue;
        why = "cannot make " + host + " for the view: it is there already";  // a --symlink onto another destination
        return false;
      }
      if (!(final ? last(host) : mkdir(host.c_str(), 0755) == 0)) {
        why = "cannot make " + host + " for the view: " + std::strerror(errno);
        return false;
      }
    }
    return true;
  };
  for (const Mount& m : mounts_) {
    const bool made = make_path(m.destination, &m, [&](const std::string& host) {
      if (m.directory) return mkdir(host.c_str(), 0755) == 0;
      const int fd = open(host.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
      return fd >= 0 && close(fd) == 0;
    });
    if (!made) return false;
  }
  for (const auto& [destination, text] : skeleton_links_) {
    const bool made = make_path(destination, nullptr, [&text](const std::string& host) {
      return symlink(text.c_str(), host.c_str()) == 0;
    });
    if (!made) {
      why = "--symlink " + text + " " + destination + ": " + why;
      return false;
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

namespace {

// Removes `name` in `dirfd` and everything beneath it, never following a
// symlink: a directory is opened with O_NOFOLLOW (O_PATH first, so that one
// the program made unreadable can be made readable through that very
// descriptor) and emptied through its own descriptor, so nothing a program
// left, or swaps in meanwhile, leads the removal elsewhere. A tree deeper
// than kDepth is moved up into `top` (dunk's own directory) piece by piece
// and removed from there; the passes over a directory are bounded, so a
// process still writing there cannot keep dunk at it.
constexpr int kDepth = 64;
constexpr int kPasses = 64;

bool remove_tree_at(int dirfd, const char* name, int depth, int top, unsigned& moved) noexcept {
  if (sys::call(SYS_unlinkat, dirfd, reinterpret_cast<long>(name), 0) == 0) return true;
  if (depth >= kDepth) {
    char to[32];
    std::snprintf(to, sizeof to, ".deep.%u", moved++);
    return sys::call(SYS_renameat, dirfd, reinterpret_cast<long>(name), top, reinterpret_cast<long>(to)) == 0;
  }
  const long path = sys::call(SYS_openat, dirfd, reinterpret_cast<long>(name), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sys::failed(path)) return false;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/thread-self/fd/%ld", path);
  // dunk's own tree, owned by the user dunk runs as: a mode the program set
  // (000, 0300) does not keep it from being emptied.
  sys::call(SYS_chmod, reinterpret_cast<long>(link), 0700);
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(link), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  sys::call(SYS_close, path);
  if (sys::failed(fd)) return false;
  alignas(8) char buffer[4096];
  bool removed = true;
  for (int pass = 0; removed && pass < kPasses; ++pass) {
    // The entries removed shift the directory's offsets: each pass reads
    // it from the start, until a pass removes nothing.
    removed = false;
    sys::call(SYS_lseek, fd, 0, SEEK_SET);
    for (long n; (n = sys::call(SYS_getdents64, fd, reinterpret_cast<long>(buffer), sizeof buffer)) > 0;) {
      for (long at = 0; at < n;) {
        const auto* entry = reinterpret_cast<const struct dirent64*>(buffer + at);
        at += entry->d_reclen;
        const std::string_view entry_name(entry->d_name);
        if (entry_name == "." || entry_name == "..") continue;
        removed = remove_tree_at(static_cast<int>(fd), entry->d_name, depth + 1, top, moved) || removed;
      }
    }
  }
  sys::call(SYS_close, fd);
  return sys::call(SYS_unlinkat, dirfd, reinterpret_cast<long>(name), AT_REMOVEDIR) == 0;
}

}  // namespace

bool FsView::remove_own_trees() noexcept {
  if (own_root_.empty()) return true;
  const long top = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(own_root_.c_str()),
                             O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  unsigned moved = 0;
  bool gone = false;
  // What was moved up from deep trees is removed by the next round.
  for (int round = 0; !gone && round < kPasses && !sys::failed(top); ++round) {
    const unsigned before = moved;
    gone = remove_tree_at(AT_FDCWD, own_root_.c_str(), 0, static_cast<int>(top), moved);
    if (!gone && moved == before) break;
  }
  if (!sys::failed(top)) sys::call(SYS_close, top);
  if (!gone) return false;
  own_root_.clear();
  skeleton_.clear();
  return true;
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
          // Magic. /proc/self/fd/N of the program's own descriptor N leads
          // to N's object: to its path in the view when it has one (then
          // on as a symlink to that path), else, as the last component and
          // for a call that can use it, to N itself. Nothing else.
          // openat2 follows no magic link under these flags.
          if (options.beneath || options.in_root || options.no_magic_links) return -ELOOP;
          std::string target;
          int descriptor = -1;
          const long followed = dir.fd >= 0 ? follow_descriptor_link(dir.fd, c, target, descriptor) : -ELOOP;
          if (followed == -ENOENT) return followed;  // N is not open: as natively
          if (followed == 0 && target.empty() && last && options.descriptors) {
            out.view.clear();
            out.mount = -1;
            out.exists = true;
            out.object = descriptor;
            out.owned = false;
            out.descriptor = descriptor;
            if (const long st = fstat_fd(descriptor, out.st); st != 0) return st;
            if (trailing_slash && !S_ISDIR(out.st.st_mode)) return -ENOTDIR;
            return 0;
          }
          if (followed != 0 || target.empty()) {
            out.why = followed == 0 ? "a descriptor's object that has no path in the file-system view"
                               : "a magic link of /proc (it leads to no path in the file-system view)";
            return -ELOOP;
          }
          if (++links > kMaxLinks) return -ELOOP;
          cur = root;
          push_front(target);
          continue;
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
    const long err = locate_host(AT_FDCWD, "/proc/thread-self/cwd", true, view_path);
    if (err == 0) set_cwd(view_path);
    return err;
  }
  if (dirfd < 0) return -EBADF;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/thread-self/fd/%d", dirfd);
  return locate_host(dirfd, link, true, view_path);
}

// The object's host path (its /proc link), mapped back through each mount
// whose source holds it — the most specific first, writable before
// read-only — and accepted when the view path leads to the same object.
// `directory`: it must be a directory (else -ENOTDIR).
long FsView::locate_host(int fd, const char* link, bool directory, std::string& view_path) noexcept {
  struct stat dir {};
  const long st = fd == AT_FDCWD
                      ? sys::call(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>("."), reinterpret_cast<long>(&dir), 0)
                      : fstat_fd(fd, dir);
  if (st != 0) return st;
  if (directory && !S_ISDIR(dir.st_mode)) return -ENOTDIR;
  char buffer[PATH_MAX];
  const long n = sys::call(SYS_readlink, reinterpret_cast<long>(link), reinterpret_cast<long>(buffer), sizeof buffer - 1);
  if (n <= 0 || buffer[0] != '/') return -EACCES;
  const std::string host(buffer, static_cast<std::size_t>(n));
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < mounts_.size(); ++i) {
    if ((mounts_[i].directory || mounts_[i].host == host) && beneath(host, mounts_[i].host)) order.push_back(i);
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

// `name` in the /proc directory `dirfd`: when that is the fd directory of
// the calling thread's own process (/proc/PID/fd, /proc/PID/task/TID/fd
// with TID the caller) and `name` one of the program's descriptors, sets
// `descriptor` and `view_path` to the view path of its object (empty when
// it has none). -ENOENT: no descriptor of that number is open; -ELOOP:
// anything else (another process's, dunk's own descriptor, not fd/).
long FsView::follow_descriptor_link(int dirfd, std::string_view name, std::string& view_path,
                                    int& descriptor) noexcept {
  if (name.empty() || name.size() > 9 || !std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return -ELOOP;
  }
  const std::string dir = host_path_of(dirfd);
  const std::string pid = std::to_string(sys::call(SYS_getpid));
  const std::string tid = std::to_string(sys::call(SYS_gettid));
  if (dir != "/proc/" + pid + "/fd" && dir != "/proc/" + pid + "/task/" + tid + "/fd") return -ELOOP;
  const int n = std::atoi(std::string(name).c_str());
  if (is_dunk_fd(n)) return -ELOOP;
  if (sys::call(SYS_fcntl, n, F_GETFD) < 0) return -ENOENT;
  descriptor = n;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/thread-self/fd/%d", n);
  if (locate_host(n, link, false, view_path) != 0) view_path.clear();
  return 0;
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

long open_exec_object(long object) noexcept {
  // Linux refuses to open anything but a regular file for exec (EACCES,
  // may_open): a FIFO opened for reading would block here for ever, out
  // of reach of the signal that stops threads (thread_stop.cc).
  struct stat st {};
  if (const long err = sys::call(SYS_fstat, object, reinterpret_cast<long>(&st)); err != 0) return err;
  if (!S_ISREG(st.st_mode)) return -EACCES;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/thread-self/fd/%ld", object);
  return sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(link), O_RDONLY | O_CLOEXEC);
}

long open_path_for_exec(const char* path) noexcept {
  const long object = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_PATH | O_CLOEXEC);
  if (sys::failed(object)) return object;
  const long fd = open_exec_object(object);
  sys::call(SYS_close, object);
  return fd;
}

long open_for_exec(const std::string& path) noexcept {
  FsView* v = view();
  if (v == nullptr) return open_path_for_exec(path.c_str());
  std::string cwd;
  if (path.empty()) return -ENOENT;
  if (path[0] != '/') {
    if (const long err = v->locate(AT_FDCWD, cwd); err != 0) return err;
  }
  FsView::Resolved r;
  if (const long err = v->resolve(cwd, path, FsView::ResolveOptions{}, r); err != 0) return err;
  // The object the lookup pinned, opened for reading through its /proc
  // link once it is known to be a regular file: what was checked is what
  // gets loaded.
  return open_exec_object(r.object);
}

}  // namespace dunk::sandbox
