// The sandbox's file-system view without a VM: FsView::build and its
// resolution are ordinary system calls (src/sandbox/fs_view.h), so the
// view's answers for paths, symlinks, "..", magic links, mount points and
// descriptors are checked here on a real tree; which calls the view serves
// against the system-call schema; and which calls the host filter lets
// through (src/sandbox/host_layer.h).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "abi/syscalls.h"
#include "sandbox/fs_view.h"
#include "sandbox/host_layer.h"
#include "sandbox/policy.h"

namespace dunk::sandbox {
namespace {

// A tree under a fresh temporary directory:
//   in/file ("inside"), in/sub/, in/abs -> ROOT/outside/secret,
//   in/rel -> ../../../../../..ROOT/outside/secret, in/up -> ../ro/file,
//   in/loop -> loop, ro/file, outside/secret
class ViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/dunk-fs-view-test.XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    root_ = templ;
    for (const char* dir : {"in", "in/sub", "ro", "outside"}) ASSERT_EQ(mkdir((root_ + "/" + dir).c_str(), 0755), 0);
    write("in/file", "inside\n");
    write("ro/file", "read-only\n");
    write("outside/secret", "SECRET\n");
    link("in/abs", root_ + "/outside/secret");
    link("in/rel", "../../../../../.." + root_ + "/outside/secret");
    link("in/up", "../ro/file");
    link("in/loop", "loop");
  }
  void TearDown() override {
    if (view_) view_->remove_own_trees();
    view_.reset();
    ASSERT_EQ(std::system(("rm -rf " + root_).c_str()), 0);
  }

  void write(const std::string& rel, const std::string& text) { std::ofstream(root_ + "/" + rel) << text; }
  void link(const std::string& rel, const std::string& target) {
    ASSERT_EQ(symlink(target.c_str(), (root_ + "/" + rel).c_str()), 0);
  }

  // --bind ROOT/in /work --ro-bind ROOT/ro /ro (and `more`).
  FsView& build(std::vector<BindSpec> more = {}) {
    std::vector<BindSpec> binds = {{"--bind", root_ + "/in", "/work", true}, {"--ro-bind", root_ + "/ro", "/ro", false}};
    binds.insert(binds.end(), more.begin(), more.end());
    std::string why;
    view_ = FsView::build(binds, why);
    EXPECT_NE(view_, nullptr) << why;
    return *view_;
  }

  // The view path `path` resolves to from `start`, or the error's name.
  std::string resolve(const std::string& path, FsView::ResolveOptions options = {}, const std::string& start = "/") {
    FsView::Resolved r;
    const long err = view_->resolve(start, path, options, r);
    if (err != 0) return std::string("errno ") + std::to_string(-err);
    return r.exists ? r.view : r.view + " (absent)";
  }

  std::string root_;
  std::unique_ptr<FsView> view_;
};

TEST_F(ViewTest, PathsResolveInsideTheView) {
  build();
  EXPECT_EQ(resolve("/work/file"), "/work/file");
  EXPECT_EQ(resolve("/work/./sub/../file"), "/work/file");
  EXPECT_EQ(resolve("/work/up"), "/ro/file");  // a symlink followed inside the view
  EXPECT_EQ(resolve("/work/up", {.follow_last = false}), "/work/up");
  EXPECT_EQ(resolve("file", {}, "/work"), "/work/file");
  EXPECT_EQ(resolve("/work/new", {.must_exist = false}), "/work/new (absent)");
  EXPECT_EQ(resolve("/"), "/");
  EXPECT_EQ(resolve("/.."), "/");
}

TEST_F(ViewTest, NothingOutsideIsReachable) {
  build();
  const std::string enoent = "errno " + std::to_string(ENOENT);
  EXPECT_EQ(resolve(root_ + "/outside/secret"), enoent);
  EXPECT_EQ(resolve("/work/../../../../.." + root_ + "/outside/secret"), enoent);
  EXPECT_EQ(resolve("/work/abs"), enoent);  // an absolute host path, in the view
  EXPECT_EQ(resolve("/work/rel"), enoent);  // ".." stops at the view's /
  EXPECT_EQ(resolve("/etc/passwd"), enoent);
  EXPECT_EQ(resolve("/work/loop"), "errno " + std::to_string(ELOOP));
  EXPECT_EQ(resolve("/work/file/x"), "errno " + std::to_string(ENOTDIR));
}

TEST_F(ViewTest, OpenatTwoFlags) {
  build();
  EXPECT_EQ(resolve("../ro/file", {.beneath = true}, "/work"), "errno " + std::to_string(EXDEV));
  EXPECT_EQ(resolve("/file", {.beneath = true}, "/work"), "errno " + std::to_string(EXDEV));
  EXPECT_EQ(resolve("sub/../file", {.beneath = true}, "/work"), "/work/file");
  EXPECT_EQ(resolve("/file", {.in_root = true}, "/work"), "/work/file");
  EXPECT_EQ(resolve("../../file", {.in_root = true}, "/work"), "/work/file");
  EXPECT_EQ(resolve("/work/up", {.no_symlinks = true}), "errno " + std::to_string(ELOOP));
}

TEST_F(ViewTest, MagicLinksAreRefused) {
  build({{"--ro-bind", "/proc", "/proc", false}});
  FsView::Resolved r;
  EXPECT_EQ(view_->resolve("/", "/proc/self/root/etc/passwd", {}, r), -ELOOP);
  ASSERT_NE(r.why, nullptr);
  EXPECT_EQ(view_->resolve("/", "/proc/self/cwd", {}, r), -ELOOP);
  const int fd = open("/", O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(view_->resolve("/", "/proc/self/fd/" + std::to_string(fd) + "/etc", {}, r), -ELOOP);
  close(fd);
  // /proc's own symlinks ("self") are ordinary; a magic link itself can be
  // looked at without following it.
  EXPECT_EQ(resolve("/proc/self/comm").substr(0, 6), "/proc/");
  EXPECT_EQ(resolve("/proc/self/exe", {.follow_last = false}).substr(0, 6), "/proc/");
}

TEST_F(ViewTest, MountsAndTheSkeleton) {
  FsView& v = build({{"--ro-bind", root_ + "/in/file", "/etc/file", false}});
  std::string rel;
  EXPECT_EQ(v.mounts()[static_cast<std::size_t>(v.mount_of("/work/sub/x", rel))].destination, "/work");
  EXPECT_EQ(rel, "sub/x");
  EXPECT_TRUE(v.mounts()[static_cast<std::size_t>(v.mount_of("/", rel))].skeleton);
  EXPECT_TRUE(v.is_mount_point("/work"));
  EXPECT_FALSE(v.is_mount_point("/"));
  // The skeleton holds what a listing of / and /etc shows.
  ASSERT_FALSE(v.skeleton_path().empty());
  struct stat st {};
  EXPECT_EQ(stat((v.skeleton_path() + "/work").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(stat((v.skeleton_path() + "/etc/file").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(resolve("/etc/file"), "/etc/file");  // a bound file
  EXPECT_EQ(resolve("/etc/file/x"), "errno " + std::to_string(ENOTDIR));
  const std::string skeleton = v.skeleton_path();
  v.remove_own_trees();
  EXPECT_NE(stat(skeleton.c_str(), &st), 0);
}

TEST_F(ViewTest, DescriptorsAreLocated) {
  FsView& v = build();
  const int sub = open((root_ + "/in/sub").c_str(), O_RDONLY | O_DIRECTORY);
  const int outside = open((root_ + "/outside").c_str(), O_RDONLY | O_DIRECTORY);
  const int file = open((root_ + "/in/file").c_str(), O_RDONLY);
  std::string where;
  EXPECT_EQ(v.locate(sub, where), 0);
  EXPECT_EQ(where, "/work/sub");
  EXPECT_EQ(v.locate(outside, where), -EACCES);
  EXPECT_EQ(v.locate(file, where), -ENOTDIR);
  close(sub);
  close(outside);
  close(file);
}

// /proc/self/fd/N (and /proc/thread-self/fd/N) of the caller's own
// descriptor leads to N's object: on to its path in the view when it has
// one, else to N itself for the calls that ask for descriptors; never to
// a directory outside the view, another process's descriptor, or a closed
// number.
TEST_F(ViewTest, DescriptorLinksLeadToTheirObjectsInTheView) {
  build({{"--ro-bind", "/proc", "/proc", false}});
  const int sub = open((root_ + "/in/sub").c_str(), O_RDONLY | O_DIRECTORY);
  const int ro = open((root_ + "/ro/file").c_str(), O_RDONLY);
  const int outside_dir = open((root_ + "/outside").c_str(), O_RDONLY | O_DIRECTORY);
  const int secret = open((root_ + "/outside/secret").c_str(), O_RDONLY);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const std::string fd = "/proc/self/fd/";
  EXPECT_EQ(resolve(fd + std::to_string(sub)), "/work/sub");
  EXPECT_EQ(resolve(fd + std::to_string(sub) + "/../file"), "/work/file");  // ".." of the view's /work/sub
  EXPECT_EQ(resolve(fd + std::to_string(sub) + "/../../../../.." + root_ + "/outside/secret"),
            "errno " + std::to_string(ENOENT));
  EXPECT_EQ(resolve(fd + std::to_string(ro)), "/ro/file");
  EXPECT_EQ(resolve("/proc/thread-self/fd/" + std::to_string(ro)), "/ro/file");
  // Objects without a path in the view: refused, or N itself when asked.
  const std::string eloop = "errno " + std::to_string(ELOOP);
  EXPECT_EQ(resolve(fd + std::to_string(outside_dir) + "/secret"), eloop);
  EXPECT_EQ(resolve(fd + std::to_string(outside_dir) + "/secret", {.descriptors = true}), eloop);
  EXPECT_EQ(resolve(fd + std::to_string(secret)), eloop);
  for (const int n : {secret, pipe_fds[0], pipe_fds[1]}) {
    FsView::Resolved r;
    ASSERT_EQ(view_->resolve("/", fd + std::to_string(n), {.descriptors = true}, r), 0) << n;
    EXPECT_EQ(r.descriptor, n);
    EXPECT_EQ(r.object, n);
    EXPECT_EQ(r.mount, -1);
    EXPECT_FALSE(r.owned);
  }
  // openat2's flags follow no magic link; a closed number is not there.
  EXPECT_EQ(resolve(fd + std::to_string(ro), {.no_magic_links = true}), eloop);
  EXPECT_EQ(resolve(fd + std::to_string(ro), {.in_root = true}), eloop);
  EXPECT_EQ(resolve(fd + "999", {.descriptors = true}), "errno " + std::to_string(ENOENT));
  EXPECT_EQ(resolve(fd + std::to_string(pipe_fds[0]) + "/", {.descriptors = true}), "errno " + std::to_string(ENOTDIR));
  // Another process's descriptors (init's) are not followed.
  EXPECT_EQ(resolve("/proc/1/fd/0", {.descriptors = true}), eloop);
  for (const int n : {sub, ro, outside_dir, secret, pipe_fds[0], pipe_fds[1]}) close(n);
}

// bubblewrap's --tmpfs, --dir, --symlink and --dev, as the view makes them.
TEST_F(ViewTest, BubblewrapsOtherForms) {
  using Kind = BindSpec::Kind;
  FsView& v = build({{"--tmpfs", "", "/tmp", false, Kind::kTmpfs},
                     {"--dir", "", "/var/cache", false, Kind::kDir},
                     {"--dir", "", "/work/made", false, Kind::kDir},
                     {"--symlink", "work/file", "/f", false, Kind::kSymlink},
                     {"--symlink", "../ro/file", "/work/up", false, Kind::kSymlink},  // there already
                     {"--ro-bind", "/proc", "/proc", false, Kind::kProc},
                     {"--dev", "", "/dev", false, Kind::kDev},
                     {"--bind", root_ + "/in/sub", "/tmp/a/sub", true},
                     {"--dir", "", "/dev/mqueue", false, Kind::kDir}});
  std::string rel;
  const FsView::Mount& tmp = v.mounts()[static_cast<std::size_t>(v.mount_of("/tmp/x", rel))];
  EXPECT_EQ(tmp.destination, "/tmp");
  EXPECT_TRUE(tmp.writable);
  EXPECT_TRUE(tmp.own);
  EXPECT_TRUE(v.mounts()[static_cast<std::size_t>(v.mount_of("/var/cache", rel))].writable);
  EXPECT_FALSE(v.mounts()[static_cast<std::size_t>(v.mount_of("/var", rel))].writable);  // the skeleton
  struct stat st {};
  EXPECT_EQ(stat((root_ + "/in/made").c_str(), &st), 0);  // made in the writable bind, on the host
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(resolve("/f"), "/work/file");
  EXPECT_EQ(resolve("/f", {.follow_last = false}), "/f");
  EXPECT_EQ(resolve("/dev/null"), "/dev/null");
  EXPECT_TRUE(v.mounts()[static_cast<std::size_t>(v.mount_of("/dev/null", rel))].writable);
  EXPECT_FALSE(v.mounts()[static_cast<std::size_t>(v.mount_of("/dev", rel))].writable);
  EXPECT_TRUE(v.mounts()[static_cast<std::size_t>(v.mount_of("/dev/shm/x", rel))].writable);
  EXPECT_EQ(resolve("/dev/pts"), "/dev/pts");
  EXPECT_EQ(resolve("/dev/mqueue"), "/dev/mqueue");  // made in --dev's own directory
  EXPECT_TRUE(v.mounts()[static_cast<std::size_t>(v.mount_of("/dev/null", rel))].device);
  // A bind beneath --tmpfs shows in its listing.
  EXPECT_EQ(stat((tmp.host + "/a/sub").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(resolve("/tmp/a/sub"), "/tmp/a/sub");
  const int file = open((root_ + "/in/file").c_str(), O_RDONLY);
  EXPECT_EQ(resolve("/dev/fd/" + std::to_string(file)), "/work/file");  // /dev/fd -> /proc/self/fd
  close(file);
  FsView::Resolved stdin_link;
  ASSERT_EQ(view_->resolve("/", "/dev/stdin", {.follow_last = false}, stdin_link), 0);
  EXPECT_TRUE(S_ISLNK(stdin_link.st.st_mode));
  // What the program leaves in --tmpfs goes at the end; a symlink there to
  // a host tree is removed, not followed.
  const std::string tmp_host = tmp.host;
  std::ofstream(tmp_host + "/left") << "x";
  ASSERT_EQ(mkdir((tmp_host + "/d").c_str(), 0500), 0);
  ASSERT_EQ(symlink((root_ + "/outside").c_str(), (tmp_host + "/to_outside").c_str()), 0);
  const std::string own = tmp_host.substr(0, tmp_host.rfind('/'));
  v.remove_own_trees();
  EXPECT_NE(stat(own.c_str(), &st), 0);
  EXPECT_EQ(stat((root_ + "/outside/secret").c_str(), &st), 0);
}

// --*-bind-try, --file/--ro-bind-data with --perms, --remount-ro.
TEST_F(ViewTest, BubblewrapsDataTryAndRemountForms) {
  using Kind = BindSpec::Kind;
  FsView& v = build({{.option = "--ro-bind-try", .source = root_ + "/missing", .destination = "/missing", .optional = true},
                     {.option = "--bind-try", .source = root_ + "/in/sub", .destination = "/sub", .writable = true,
                      .optional = true},
                     {.option = "--remount-ro", .destination = "/sub", .kind = Kind::kRemountRo},
                     {.option = "--file", .source = "3", .destination = "/work/data", .writable = true,
                      .kind = Kind::kData, .perms = 0600, .data = "contents\n"},
                     {.option = "--tmpfs", .destination = "/t", .kind = Kind::kTmpfs, .perms = 01777}});
  EXPECT_EQ(resolve("/missing"), "errno " + std::to_string(ENOENT));
  std::string rel;
  const FsView::Mount& sub = v.mounts()[static_cast<std::size_t>(v.mount_of("/sub", rel))];
  EXPECT_EQ(sub.destination, "/sub");
  EXPECT_FALSE(sub.writable);  // --remount-ro
  const FsView::Mount& data = v.mounts()[static_cast<std::size_t>(v.mount_of("/work/data", rel))];
  EXPECT_EQ(data.destination, "/work/data");
  EXPECT_TRUE(data.writable);
  EXPECT_FALSE(data.directory);
  struct stat st {};
  ASSERT_EQ(stat(data.host.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 9);
  EXPECT_NE(stat((root_ + "/in/data").c_str(), &st), 0);  // nothing made in the bind's tree
  const FsView::Mount& t = v.mounts()[static_cast<std::size_t>(v.mount_of("/t", rel))];
  ASSERT_EQ(stat(t.host.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  std::string why;
  EXPECT_EQ(FsView::build({{.option = "--ro-bind", .source = root_ + "/missing", .destination = "/m"}}, why), nullptr);
  EXPECT_NE(why.find("cannot open the source"), std::string::npos) << why;
}

TEST_F(ViewTest, BubblewrapsFormsThatCannotBeMadeAreRefused) {
  using Kind = BindSpec::Kind;
  std::string why;
  const BindSpec work{"--bind", root_ + "/in", "/work", true}, ro{"--ro-bind", root_ + "/ro", "/ro", false};
  EXPECT_EQ(FsView::build({work, ro, {"--dir", "", "/ro/new", false, Kind::kDir}}, why), nullptr);
  EXPECT_EQ(why, "--dir /ro/new: /ro/new would be made in --ro-bind " + root_ + "/ro /ro, which is read-only");
  EXPECT_EQ(FsView::build({work, ro, {"--symlink", "elsewhere", "/work/up", false, Kind::kSymlink}}, why), nullptr);
  EXPECT_EQ(why, "--symlink elsewhere /work/up: /work/up is already there in --bind " + root_ +
                     "/in /work, not as this symlink");
  EXPECT_EQ(FsView::build({work, {"--symlink", "x", "/work", false, Kind::kSymlink}}, why), nullptr);
  EXPECT_EQ(FsView::build({work, {"--tmpfs", "", "tmp", false, Kind::kTmpfs}}, why), nullptr);
  EXPECT_EQ(why, "--tmpfs tmp: the destination must be an absolute path without '..'");
  EXPECT_EQ(FsView::build({work, {"--symlink", "a", "/l", false, Kind::kSymlink}, {"--tmpfs", "", "/l/x", false, Kind::kTmpfs}},
                          why),
            nullptr);
  EXPECT_FALSE(why.empty());
  struct stat st {};
  EXPECT_NE(lstat((root_ + "/ro/new").c_str(), &st), 0);
}

TEST_F(ViewTest, BadBindsAreRefused) {
  std::string why;
  EXPECT_EQ(FsView::build({{"--bind", root_ + "/missing", "/m", true}}, why), nullptr);
  EXPECT_NE(why.find("cannot open the source"), std::string::npos) << why;
  EXPECT_EQ(FsView::build({{"--bind", root_ + "/in", "relative", true}}, why), nullptr);
  EXPECT_NE(why.find("absolute path"), std::string::npos) << why;
  EXPECT_EQ(FsView::build({{"--bind", root_ + "/in/file", "/", true}}, why), nullptr);
  EXPECT_NE(why.find("only a directory"), std::string::npos) << why;
  EXPECT_EQ(FsView::build({{"--ro-bind", root_ + "/ro", "/ro", false}, {"--bind", root_ + "/in", "/ro/none/x", true}},
                          why),
            nullptr);
  EXPECT_NE(why.find("--bind " + root_ + "/in /ro/none/x: the destination's parent /ro/none is not a directory"),
            std::string::npos)
      << why;
}

// Every call the schema says takes a path or a directory descriptor is
// one the view serves (or refuses, or leaves to the loader): none reaches
// the kernel with the program's path.
TEST(FsViewCalls, EveryPathCallIsServed) {
  std::vector<std::string> missing;
  for (const abi::CallSpec& call : abi::all_calls()) {
    if (!call.exists()) continue;
    bool paths = false;
    for (unsigned i = 0; i < call.arg_count; ++i) {
      paths |= call.args[i].kind == abi::Kind::kPath || call.args[i].kind == abi::Kind::kDirFd;
    }
    if (paths && !served_by_view(call.number)) missing.emplace_back(call.name);
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " path calls the view does not serve, the first " << missing[0];
}

std::vector<int> filter(const char* policy_text, bool view, OnViolation on = OnViolation::kPolicy) {
  LoadResult policy = load_policy_text(policy_text, LoadOptions{});
  EXPECT_TRUE(policy.ok()) << policy.error();
  return host_filter_calls(policy.value(), on, HostFilterFor{.view = view});
}

bool has(const std::vector<int>& calls, int nr) { return std::binary_search(calls.begin(), calls.end(), nr); }

TEST(HostFilter, DefaultPolicy) {
  LoadResult policy = load_default_policy(LoadOptions{});
  ASSERT_TRUE(policy.ok()) << policy.error();
  const std::vector<int> calls = host_filter_calls(policy.value(), OnViolation::kPolicy, HostFilterFor{});
  ASSERT_TRUE(std::is_sorted(calls.begin(), calls.end()));
  // dunk's own and what the default allows.
  for (int nr : {SYS_ioctl, SYS_mmap, SYS_futex, SYS_read, SYS_openat, SYS_socket}) EXPECT_TRUE(has(calls, nr)) << nr;
  // What the default denies, and what ring 0 serves itself and never
  // passes on, whatever a policy says.
  for (int nr : {SYS_mount, SYS_umount2, SYS_pivot_root, SYS_ptrace, SYS_bpf, SYS_keyctl, SYS_add_key, SYS_unshare,
                 SYS_setns, SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_kexec_load, SYS_reboot,
                 SYS_execve, SYS_execveat, SYS_userfaultfd, SYS_io_uring_setup, SYS_open_by_handle_at,
                 SYS_perf_event_open, SYS_seccomp, SYS_fsopen, SYS_move_mount}) {
    EXPECT_FALSE(has(calls, nr)) << nr;
  }
}

TEST(HostFilter, AllowAllStillKeepsWhatRingZeroServes) {
  const std::vector<int> calls = filter(R"({"defaultAction": "SCMP_ACT_ALLOW"})", false);
  EXPECT_TRUE(has(calls, SYS_mount));  // a call the policy allows is the kernel's to refuse
  for (int nr : {SYS_execve, SYS_ptrace, SYS_seccomp, SYS_userfaultfd, SYS_set_tid_address}) EXPECT_FALSE(has(calls, nr));
  EXPECT_TRUE(filter(R"({"defaultAction": "SCMP_ACT_ERRNO"})", false, OnViolation::kLog).empty());
}

TEST(HostFilter, ArgumentRulesAndTheView) {
  // Allowed for some arguments: allowed at the host (ring 0 decides).
  const char* some = R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
    {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
    {"names": ["open", "mkdir"], "action": "SCMP_ACT_ALLOW"}]})";
  std::vector<int> calls = filter(some, false);
  EXPECT_TRUE(has(calls, SYS_socket));
  EXPECT_TRUE(has(calls, SYS_open));
  EXPECT_FALSE(has(calls, SYS_openat2));
  EXPECT_FALSE(has(calls, SYS_mkdirat));
  // With a view, open and mkdir reach the kernel as openat2 and mkdirat.
  calls = filter(some, true);
  EXPECT_TRUE(has(calls, SYS_openat2));
  EXPECT_TRUE(has(calls, SYS_mkdirat));
  EXPECT_FALSE(has(calls, SYS_mkdir));
  EXPECT_FALSE(has(calls, SYS_renameat2));
  // sendmmsg to an AF_UNIX path goes as one sendmsg per message.
  const char* mmsg = R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["sendmmsg"], "action": "SCMP_ACT_ALLOW"}]})";
  EXPECT_FALSE(has(filter(mmsg, false), SYS_sendmsg));
  EXPECT_TRUE(has(filter(mmsg, true), SYS_sendmsg));
  EXPECT_TRUE(has(filter(mmsg, true), SYS_sendmmsg));
}

TEST(HostFilter, TheNetworkOptionsAddWhatTheSupervisorAsksForListen) {
  LoadResult policy = load_policy_text(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
    {"names": ["socket", "bind", "listen"], "action": "SCMP_ACT_ALLOW"}]})", LoadOptions{});
  ASSERT_TRUE(policy.ok()) << policy.error();
  EXPECT_FALSE(has(host_filter_calls(policy.value(), OnViolation::kPolicy, HostFilterFor{}), SYS_getsockname));
  EXPECT_TRUE(has(host_filter_calls(policy.value(), OnViolation::kPolicy, HostFilterFor{.network = true}),
                  SYS_getsockname));
  // Without listen allowed, the supervisor never asks.
  EXPECT_FALSE(has(filter(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
    {"names": ["socket", "connect"], "action": "SCMP_ACT_ALLOW"}]})", false), SYS_getsockname));
}

}  // namespace
}  // namespace dunk::sandbox
