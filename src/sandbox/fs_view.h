// The sandbox's file-system view: bubblewrap's --ro-bind, --bind and
// --dev-bind (and --tmpfs, --dir, --symlink, --dev, --proc) without a mount
// namespace (docs/SANDBOX.md, "The file-system view").
//
//   FsView::build(binds)      in dunk, before the sandbox starts: every SRC
//                             opened (O_PATH, pinned for the sandbox's
//                             lifetime), the destinations checked, a small
//                             read-only directory tree ("the skeleton") made
//                             for "/" and the ancestors of the destinations
//   serve_in_view(t, call)    in ring 0, for every call that names a path:
//                             the path, as copied, resolved by dunk in the
//                             view — component by component, symlinks
//                             followed inside the view, ".." stopping at its
//                             root, magic links refused but the program's
//                             own /proc/self/fd/N — to a mount and a
//                             path beneath it; the kernel then gets that path
//                             from the mount's pinned descriptor with
//                             openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//                             RESOLVE_NO_MAGICLINKS), which it refuses if
//                             anything changed meanwhile, or a descriptor
//                             of the object that lookup pinned
//
// A path outside every bind does not exist (ENOENT); a change under a
// --ro-bind fails with EROFS. Landlock rules for the same trees back this
// up in the host kernel (host_layer.h).
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "abi/walk.h"
#include "base/lock.h"

namespace dunk::sandbox {

struct ProgramThread;

// One option of the command line that shapes the view, in command-line
// order (bubblewrap's spellings):
//   kBind     --ro-bind/--bind/--dev-bind SRC [DST]: SRC's tree at DST
//   kTmpfs    --tmpfs DST: an empty directory the program may write, dunk's
//             own, removed with everything in it when the sandbox ends
//   kDir      --dir DST: in a bind's tree, made there (on the host) if it is
//             not there and the bind is writable; elsewhere, as --tmpfs
//   kSymlink  --symlink TEXT DST: a symlink in the view's own tree, or in a
//             writable bind's (one with the same text may be there already)
//   kDev      --dev DST: null, zero, full, random, urandom and tty bound
//             from the host, stdin/stdout/stderr/fd symlinks into
//             /proc/self/fd, empty pts, and shm as --tmpfs
//   kProc     --proc DST: the host's /proc, read-only
//   kData     --file/--bind-data/--ro-bind-data FD DST: a file of dunk's
//             holding `data` (what was read from FD), bound at DST
//   kRemountRo  --remount-ro DST: the bind at DST becomes read-only
// (tools/sandbox.h's SandboxCommandOptions::Form names them in this order.)
struct BindSpec {
  enum class Kind : std::uint8_t { kBind, kTmpfs, kDir, kSymlink, kDev, kProc, kData, kRemountRo };
  std::string option{};       // its spelling, for messages
  std::string source{};       // kBind: relative to dunk's working directory; kSymlink: the text; kData: the FD
  std::string destination{};  // in the view; empty: the same as source (kBind)
  bool writable = false;
  Kind kind = Kind::kBind;
  bool optional = false;    // kBind (--*-bind-try): a source that does not exist is left out
  int perms = -1;           // --perms before kTmpfs, kDir, kData: the mode; -1: the default
  std::string data{};         // kData: the file's contents
};

class FsView {
 public:
  // A tree the program can reach.
  struct Mount {
    std::string destination;  // canonical view path: "/", "/usr/lib"
    std::string host;         // the source's canonical host path
    int fd = -1;              // O_PATH of the source, out of the program's range
    bool writable = false;
    bool directory = true;
    bool skeleton = false;    // dunk's tree for "/" and the destinations' ancestors
    bool own = false;         // a directory or file dunk made (--tmpfs, --dir, --dev, --file)
    // A host device node of --dev's: opened for writing, never changed
    // itself (chmod, chown, utimes, xattrs: EPERM), as in bubblewrap's /dev,
    // where the host's root is not root.
    bool device = false;
    std::string spec;         // the option as given ("--bind SRC DST"), for messages
  };

  // Opens every source (symlinks followed, as bubblewrap does), checks the
  // destinations and builds the skeleton. Null, with `why` (one line naming
  // the option), when a bind cannot be made.
  static std::unique_ptr<FsView> build(const std::vector<BindSpec>& binds, std::string& why);
  ~FsView();
  FsView(const FsView&) = delete;
  FsView& operator=(const FsView&) = delete;

  const std::vector<Mount>& mounts() const noexcept { return mounts_; }
  // The skeleton's directory on the host (empty when "/" is bound).
  const std::string& skeleton_path() const noexcept { return skeleton_; }
  // In dunk after the sandbox ended: removes the skeleton and the
  // directories of --tmpfs, --dir and --dev, with whatever the program left
  // in them (never following a symlink). False: something was left (its
  // path is own_path()).
  bool remove_own_trees() noexcept;
  const std::string& own_path() const noexcept { return own_root_; }
  // Whether the view has directories of dunk's that the program may write
  // (then what it leaves running must end before they go).
  bool has_own_trees() const noexcept;

  // ---- In the sandbox's process -------------------------------------------

  // Makes the mounts' descriptors the sandbox's own and moves the working
  // directory into the view: `cwd` (dunk's own, or --chdir) if it resolves
  // to a directory there, else the view's "/". -errno on failure.
  long start(const std::string& cwd) noexcept;

  // Resolution, for the calls (fs_calls.cc) and the loader.
  struct ResolveOptions {
    bool follow_last = true;   // follow a symlink in the last component
    bool must_exist = true;    // the last component must exist
    bool no_symlinks = false;  // RESOLVE_NO_SYMLINKS: no symlink at all
    bool beneath = false;      // RESOLVE_BENEATH from the start directory
    bool in_root = false;      // RESOLVE_IN_ROOT: the start directory is "/"
    bool no_magic_links = false;  // RESOLVE_NO_MAGICLINKS: not even /proc/self/fd/N
    // A final /proc/self/fd/N whose object has no path in the view (a pipe,
    // a socket, a file inherited from outside): resolved to the program's
    // descriptor N (Resolved::descriptor) instead of refused. For the calls
    // that can use it: opens (no more access than N has) and stat.
    bool descriptors = false;
  };
  struct Resolved {
    std::string view;      // the canonical view path
    int mount = -1;        // into mounts()
    std::string rel;       // beneath the mount's root; empty: the root itself
    bool exists = false;
    struct stat st {};     // the object's own (not followed) when it exists
    int object = -1;       // O_PATH | O_NOFOLLOW of it (owned: close it), or
                           // the mount's fd (not owned) when rel is empty
    bool owned = false;
    // With ResolveOptions::descriptors: the program's descriptor the path
    // leads to (then `mount` is -1, `object` is it, and `view` is empty).
    int descriptor = -1;
    // Why the resolution was refused where a native lookup would have gone
    // on (a magic link), for the report; null otherwise.
    const char* why = nullptr;
    Resolved() = default;
    Resolved(const Resolved&) = delete;
    Resolved& operator=(const Resolved&) = delete;
    Resolved(Resolved&& other) noexcept;
    Resolved& operator=(Resolved&& other) noexcept;
    ~Resolved();
  };
  // `path` from `start` (a view path; for relative paths). 0 or -errno.
  long resolve(const std::string& start, std::string_view path, const ResolveOptions& options,
               Resolved& out) noexcept;
  // The view path of the directory `dirfd` names (AT_FDCWD: the working
  // directory). 0, or -ENOTDIR (not a directory), -EACCES (a directory
  // outside the view), -errno.
  long locate(int dirfd, std::string& view) noexcept;
  // What the working directory is in the view, kept across chdir/fchdir.
  void set_cwd(std::string view) noexcept;
  void forget_cwd() noexcept;

  // The mount a view path lies in, and the path beneath its root.
  int mount_of(std::string_view view, std::string& rel) const noexcept;
  // Whether `view` is a bind's destination (a mount point).
  bool is_mount_point(std::string_view view) const noexcept;

  // Held by the calls that act on a descriptor the view opened for a
  // moment (an object's or a parent's, in the program's descriptor table)
  // and by the program's calls that free or replace a descriptor number
  // (close, close_range, dup2, dup3) and fork: no program thread can put
  // another file under that number between its opening and its use.
  Lock& numbers_lock() noexcept { return numbers_lock_; }

 private:
  FsView() = default;
  struct Lookup;
  long lookup(const std::string& view, Lookup& out) noexcept;
  long walk(const std::string& start, std::string_view path, const ResolveOptions& options, Resolved& out) noexcept;
  long fast(const std::string& start, std::string_view path, const ResolveOptions& options, Resolved& out) noexcept;
  bool make_skeleton(std::string& why);
  bool add_own_directory(const std::string& destination, const std::string& spec, bool writable, std::string& why,
                         int perms = -1);
  bool add_own_file(const BindSpec& b, const std::string& destination, const std::string& spec, std::string& why);
  bool add_own_mount(const std::string& host, const std::string& destination, const std::string& spec, bool writable,
                     bool directory, std::string& why);
  bool add_dev(const std::string& destination, const std::string& spec, std::string& why);
  bool make_in_binds(const BindSpec& b, const std::string& destination, const std::string& spec, std::string& why);
  bool own_directory_root(std::string& why);
  bool make_placeholders(std::string& why);
  long locate_host(int fd, const char* link, bool directory, std::string& view) noexcept;
  long follow_descriptor_link(int dirfd, std::string_view name, std::string& view, int& descriptor) noexcept;

  std::vector<Mount> mounts_;
  std::string skeleton_;
  // --symlink's in the skeleton: destination, text.
  std::vector<std::pair<std::string, std::string>> skeleton_links_;
  // dunk's directory for the skeleton and the --tmpfs/--dir/--dev trees.
  std::string own_root_;
  int own_count_ = 0;
  Lock cwd_lock_;
  std::string cwd_;  // the working directory's view path; empty: unknown
  Lock numbers_lock_;
};

// The view of this sandbox, or null (no --ro-bind/--bind given).
FsView* view() noexcept;
void set_view(FsView* view) noexcept;

// Serves `call` when it names a path (or changes the working directory or
// descriptor numbers) and the sandbox has a view: true when it did (the
// answer is in t.frame.rax). fs_calls.cc.
bool serve_in_view(ProgramThread& t, const abi::Call& call) noexcept;

// The calls the view makes on the kernel in place of the program's call
// `nr` (for the host filter, host_layer.h): up to two, -1 for none.
std::array<int, 2> view_calls_for(int nr) noexcept;
// Whether the view serves the program's call `nr` (then the kernel sees
// only view_calls_for(nr)).
bool served_by_view(int nr) noexcept;

// The loader's open of a program or interpreter: `path` through the view
// (relative to the working directory) when there is one, else as it is.
// The descriptor (O_RDONLY | O_CLOEXEC), or -errno (EACCES for anything
// but a regular file).
long open_for_exec(const std::string& path) noexcept;
// `object` (any descriptor, O_PATH ones too) opened for reading through its
// /proc link when it is a regular file; anything else is EACCES, as Linux
// answers an exec of a FIFO, socket, device or directory, without opening
// it (a FIFO's open would block). `path` opened O_PATH, then the same.
long open_exec_object(long object) noexcept;
long open_path_for_exec(const char* path) noexcept;

}  // namespace dunk::sandbox
