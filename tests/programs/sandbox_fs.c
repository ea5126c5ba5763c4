// The file-system view of `dunk sandbox` under attack and in use
// (tests/cli/sandbox_fs_test.sh): run inside a view set up by the script,
//
//   /work     --bind     WORK/in        (read-write)
//   /ro       --ro-bind  WORK/ro        (read-only)
//   /work2    --bind     WORK/in2       (another read-write bind)
//   WORK/race --bind     WORK/race      (the same path as on the host)
//   /proc, /usr, /lib, /lib64, /bin     --ro-bind of the host's
//
// while WORK/outside/secret (the text "SECRET") is reachable on the host
// and not in the view. Each case prints "NAME: ok (what happened)" when
// the view behaved as it must, "NAME: FAIL ..." otherwise, and "ESCAPED"
// if it ever read the secret.
//
//   sandbox_fs paths OUTSIDE_DIR    every path case, one line each
//   sandbox_fs races OUTSIDE_DIR ROUNDS
//                                   the symlink-swap and rename races
//   sandbox_fs one CASE OUTSIDE_DIR a single path case
//   sandbox_fs call mkdir|read|write PATH
//                                   one call (tests/cli/sandbox_host_layer_test.sh)
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static const char* outside;   // the host directory holding "secret"
static int failures;

static void report(const char* name, int ok, const char* what) {
  printf("%s: %s (%s)\n", name, ok ? "ok" : "FAIL", what);
  if (!ok) failures++;
}

// Reads a file's first bytes; the errno (negative) when it cannot.
static int read_file(const char* path, char* out, size_t size) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, out, size - 1);
  int err = errno;
  close(fd);
  if (n < 0) return -err;
  out[n] = '\0';
  if (strstr(out, "SECRET") != NULL) {
    printf("ESCAPED: read the secret through %s\n", path);
    fflush(stdout);
  }
  return (int)n;
}

// Expects that reading `path` fails with `err`.
static void expect_unreadable(const char* name, const char* path, int err) {
  char buf[256], what[512];
  int n = read_file(path, buf, sizeof buf);
  snprintf(what, sizeof what, "open(%s): %s", path, n >= 0 ? "read it" : strerror(-n));
  report(name, n == -err, what);
}

static void expect_errno(const char* name, long ret, int err, const char* call) {
  char what[512];
  snprintf(what, sizeof what, "%s: %s", call, ret >= 0 ? "succeeded" : strerror(errno));
  report(name, ret < 0 && errno == err, what);
}

static void expect_ok(const char* name, long ret, const char* call) {
  char what[512];
  snprintf(what, sizeof what, "%s: %s", call, ret >= 0 ? "succeeded" : strerror(errno));
  report(name, ret >= 0, what);
}

static long openat2_call(int dirfd, const char* path, unsigned long long flags, unsigned long long resolve) {
  struct open_how how = {.flags = flags, .resolve = resolve};
  return syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

// ---- Paths -----------------------------------------------------------------------

static void case_inside(void) {
  char buf[64];
  int n = read_file("/work/file", buf, sizeof buf);
  report("read_inside", n > 0 && strcmp(buf, "inside\n") == 0, "/work/file is the bound file's text");
  n = read_file("/ro/file", buf, sizeof buf);
  report("read_ro", n > 0 && strcmp(buf, "read-only\n") == 0, "/ro/file is readable");
}

static void case_outside(void) {
  char path[4096];
  expect_unreadable("unbound_path", "/etc/passwd", ENOENT);
  snprintf(path, sizeof path, "%s/secret", outside);
  expect_unreadable("host_path_outside", path, ENOENT);
  snprintf(path, sizeof path, "/work/../../../../../../..%s/secret", outside);
  expect_unreadable("dotdot_from_bind", path, ENOENT);
  snprintf(path, sizeof path, "/../../..%s/secret", outside);
  expect_unreadable("dotdot_above_root", path, ENOENT);
  struct stat root, above;
  report("dotdot_of_root", stat("/", &root) == 0 && stat("/..", &above) == 0 && root.st_ino == above.st_ino,
         "/.. is /, as in a chroot");
  int dir = open("/work", O_RDONLY | O_DIRECTORY);
  snprintf(path, sizeof path, "../../../../../..%s/secret", outside);
  errno = 0;
  int fd = openat(dir, path, O_RDONLY);
  expect_errno("dotdot_from_dirfd", fd, ENOENT, "openat(/work, ../..OUTSIDE/secret)");
  if (fd >= 0) close(fd);
  close(dir);
}

static void case_symlinks(void) {
  char buf[64];
  expect_unreadable("symlink_absolute_escape", "/work/abs_escape", ENOENT);
  expect_unreadable("symlink_relative_escape", "/work/rel_escape", ENOENT);
  int n = read_file("/work/to_ro", buf, sizeof buf);
  report("symlink_inside", n > 0 && strcmp(buf, "read-only\n") == 0, "/work/to_ro -> /ro/file read");
  expect_unreadable("symlink_loop", "/work/loop", ELOOP);
  struct stat st;
  report("lstat_symlink", lstat("/work/abs_escape", &st) == 0 && S_ISLNK(st.st_mode), "lstat sees the link itself");
  char target[4096];
  ssize_t len = readlink("/work/abs_escape", target, sizeof target - 1);
  report("readlink", len > 0, "readlink reads the link's text");
}

static void case_magic_links(void) {
  char path[4096];
  int dir = open("/work", O_RDONLY | O_DIRECTORY);
  // /proc/self/fd/N of a directory in the view is that directory in the
  // view: ".." climbs the view, never the host.
  snprintf(path, sizeof path, "/proc/self/fd/%d/../../../../..%s/secret", dir, outside);
  expect_unreadable("proc_self_fd", path, ENOENT);
  snprintf(path, sizeof path, "/proc/self/fd/%d/file", dir);
  char text[64];
  int n = read_file(path, text, sizeof text);
  report("proc_self_fd_inside", n > 0 && strcmp(text, "inside\n") == 0, "/proc/self/fd/N/file is /work/file");
  snprintf(path, sizeof path, "/proc/self/root%s/secret", outside);
  expect_unreadable("proc_self_root", path, ELOOP);
  snprintf(path, sizeof path, "/proc/thread-self/root%s/secret", outside);
  expect_unreadable("proc_thread_self_root", path, ELOOP);
  if (chdir("/work") == 0) {
    snprintf(path, sizeof path, "/proc/self/cwd/../../../..%s/secret", outside);
    expect_unreadable("proc_self_cwd", path, ELOOP);
    snprintf(path, sizeof path, "/proc/%d/cwd/file", getpid());
    expect_unreadable("proc_pid_cwd", path, ELOOP);
    chdir("/");
  }
  char buf[64];
  report("proc_self_ordinary", read_file("/proc/self/comm", buf, sizeof buf) > 0,
         "/proc/self (an ordinary symlink) is followed");
  close(dir);
}

// Reopening descriptors through /proc/self/fd/N (what `cat /dev/stdin`
// and a shell's <(...) do): a pipe, for what the descriptor was opened
// for; a file of the view, as its path in the view (so /ro stays
// read-only); fd 4, a file outside the view the program was given, for
// reading as it holds it and not for writing; dunk's own descriptors (the
// sources', listed in /proc/self/fd) not at all.
static void case_descriptor_links(void) {
  char path[64], text[64];
  int p[2];
  if (pipe(p) != 0 || write(p[1], "piped\n", 6) != 6) {
    report("proc_self_fd_pipe", 0, "pipe() failed");
    return;
  }
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
  int n = read_file(path, text, sizeof text);
  report("proc_self_fd_pipe", n == 6 && strcmp(text, "piped\n") == 0, "a pipe's read end reopened and read");
  expect_errno("proc_self_fd_pipe_write", open(path, O_WRONLY), EACCES, "open(a pipe's read end, O_WRONLY)");
  struct stat st;
  report("proc_self_fd_stat_pipe", stat(path, &st) == 0 && S_ISFIFO(st.st_mode), "stat(/proc/self/fd/N) of a pipe");
  close(p[0]);
  close(p[1]);
  expect_errno("proc_self_fd_closed", open(path, O_RDONLY), ENOENT, "open(/proc/self/fd/N) of a closed N");

  int ro = open("/ro/file", O_RDONLY);
  snprintf(path, sizeof path, "/dev/fd/%d", ro);  // /dev is not bound: no /dev/fd
  expect_errno("dev_fd_unbound", open(path, O_RDONLY), ENOENT, "open(/dev/fd/N) without /dev");
  snprintf(path, sizeof path, "/proc/self/fd/%d", ro);
  expect_errno("proc_self_fd_ro_write", open(path, O_WRONLY), EROFS, "open(/proc/self/fd/N of /ro/file, O_WRONLY)");
  n = read_file(path, text, sizeof text);
  report("proc_self_fd_ro_read", n > 0 && strcmp(text, "read-only\n") == 0, "/ro/file reopened for reading");
  close(ro);

  n = read_file("/proc/self/fd/4", text, sizeof text);
  report("proc_self_fd_held_read", n > 0 && strcmp(text, "held outside\n") == 0,
         "fd 4 (a file outside the view, given to the program) reopened for reading");
  expect_errno("proc_self_fd_held_write", open("/proc/self/fd/4", O_RDWR), EACCES,
               "open(/proc/self/fd/4, O_RDWR) of a file held only for reading");
  expect_errno("proc_self_fd_held_chmod", chmod("/proc/self/fd/4", 0666), ELOOP, "chmod(/proc/self/fd/4)");

  // dunk's descriptors: listed, refused to the program's calls, and not
  // reachable through their links either.
  int tried = 0, opened = 0;
  DIR* fds = opendir("/proc/self/fd");
  struct dirent* e;
  while (fds != NULL && (e = readdir(fds)) != NULL) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == dirfd(fds) || fcntl(fd, F_GETFD) >= 0) continue;  // the program's own
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    tried++;
    int got = open(path, O_RDONLY);
    int got_path = open(path, O_PATH);
    opened += got >= 0 || got_path >= 0;
    if (got >= 0) close(got);
    if (got_path >= 0) close(got_path);
  }
  if (fds != NULL) closedir(fds);
  char what[128];
  snprintf(what, sizeof what, "%d of dunk's descriptors tried, %d opened", tried, opened);
  report("proc_self_fd_dunks", tried > 0 && opened == 0, what);
}

static void case_read_only(void) {
  expect_errno("ro_open_write", open("/ro/file", O_WRONLY), EROFS, "open(/ro/file, O_WRONLY)");
  expect_errno("ro_open_trunc", open("/ro/file", O_RDONLY | O_TRUNC), EROFS, "open(O_TRUNC)");
  expect_errno("ro_creat", open("/ro/new", O_WRONLY | O_CREAT, 0644), EROFS, "creat(/ro/new)");
  int fd = open("/ro/file", O_RDONLY | O_CREAT, 0644);
  expect_ok("ro_creat_existing_readonly", fd, "open(/ro/file, O_RDONLY|O_CREAT)");
  if (fd >= 0) close(fd);
  expect_errno("ro_creat_excl_existing", open("/ro/file", O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST,
               "open(/ro/file, O_CREAT|O_EXCL)");
  expect_errno("ro_mkdir", mkdir("/ro/dir", 0755), EROFS, "mkdir(/ro/dir)");
  expect_errno("ro_unlink", unlink("/ro/file"), EROFS, "unlink(/ro/file)");
  expect_errno("ro_rmdir", rmdir("/ro/sub"), EROFS, "rmdir(/ro/sub)");
  expect_errno("ro_rename", rename("/ro/file", "/ro/moved"), EROFS, "rename(/ro/file, /ro/moved)");
  expect_errno("ro_link", link("/ro/file", "/ro/linked"), EROFS, "link(/ro/file, /ro/linked)");
  expect_errno("ro_symlink", symlink("file", "/ro/sym"), EROFS, "symlink(file, /ro/sym)");
  expect_errno("ro_chmod", chmod("/ro/file", 0600), EROFS, "chmod(/ro/file)");
  expect_errno("ro_truncate", truncate("/ro/file", 0), EROFS, "truncate(/ro/file)");
  expect_errno("ro_utimes", utimes("/ro/file", NULL), EROFS, "utimes(/ro/file)");
  expect_errno("ro_access_write", access("/ro/file", W_OK), EROFS, "access(/ro/file, W_OK)");
  expect_ok("ro_access_read", access("/ro/file", R_OK), "access(/ro/file, R_OK)");
  expect_errno("ro_via_symlink", open("/work/to_ro", O_WRONLY), EROFS, "open(/work/to_ro -> /ro/file, O_WRONLY)");
  expect_errno("root_mkdir", mkdir("/newdir", 0755), EROFS, "mkdir(/newdir) in the view's /");
  expect_errno("mount_point_rmdir", rmdir("/work"), EBUSY, "rmdir(/work), a bind's destination");
}

static void case_read_write(void) {
  int fd = open("/work/made", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int ok = fd >= 0 && write(fd, "made\n", 5) == 5;
  if (fd >= 0) close(fd);
  report("rw_create", ok, "open(/work/made, O_CREAT) and write");
  expect_ok("rw_mkdir", mkdir("/work/dir", 0755), "mkdir(/work/dir)");
  expect_ok("rw_rename", rename("/work/made", "/work/dir/moved"), "rename(/work/made, /work/dir/moved)");
  expect_ok("rw_symlink", symlink("dir/moved", "/work/sym"), "symlink(dir/moved, /work/sym)");
  expect_ok("rw_link", link("/work/dir/moved", "/work/hard"), "link(/work/dir/moved, /work/hard)");
  expect_ok("rw_chmod", chmod("/work/sym", 0600), "chmod(/work/sym) (its target)");
  expect_ok("rw_unlink", unlink("/work/hard"), "unlink(/work/hard)");
  expect_errno("rename_across_binds", rename("/work/dir/moved", "/work2/moved"), EXDEV,
               "rename(/work/dir/moved, /work2/moved)");
  char path[4096];
  snprintf(path, sizeof path, "%s/secret", outside);
  expect_errno("hardlink_from_outside", link(path, "/work/stolen"), ENOENT, "link(OUTSIDE/secret, /work/stolen)");
  snprintf(path, sizeof path, "%s/planted", outside);
  expect_errno("create_outside", open(path, O_WRONLY | O_CREAT, 0644), ENOENT, "creat(OUTSIDE/planted)");
}

static void case_cwd(void) {
  char cwd[4096];
  int ok = chdir("/work/dir") == 0 && getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, "/work/dir") == 0;
  report("getcwd_view_path", ok, "chdir(/work/dir); getcwd says /work/dir, not the host's path");
  char buf[64];
  int n = read_file("moved", buf, sizeof buf);
  report("relative_open", n > 0 && strcmp(buf, "made\n") == 0, "open(moved) in /work/dir");
  char path[4096];
  snprintf(path, sizeof path, "../../../../../..%s/secret", outside);
  expect_unreadable("relative_dotdot", path, ENOENT);
  int dir = open(".", O_RDONLY | O_DIRECTORY);
  ok = chdir("/") == 0 && fchdir(dir) == 0 && getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, "/work/dir") == 0;
  report("fchdir", ok, "fchdir back to /work/dir");
  close(dir);
  expect_errno("chdir_outside", chdir("/etc"), ENOENT, "chdir(/etc)");
  ok = chdir("/") == 0 && chdir("..") == 0 && getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, "/") == 0;
  report("chdir_dotdot_at_root", ok, "chdir(..) at / stays at /");
}

static void case_openat2(void) {
  int dir = open("/work", O_RDONLY | O_DIRECTORY | O_PATH);
  long fd = openat2_call(dir, "../ro/file", O_RDONLY, RESOLVE_BENEATH);
  expect_errno("openat2_beneath", fd, EXDEV, "openat2(/work, ../ro/file, RESOLVE_BENEATH)");
  fd = openat2_call(dir, "/file", O_RDONLY, RESOLVE_IN_ROOT);
  expect_ok("openat2_in_root", fd, "openat2(/work, /file, RESOLVE_IN_ROOT)");
  if (fd >= 0) close((int)fd);
  fd = openat2_call(dir, "to_ro", O_RDONLY, RESOLVE_NO_SYMLINKS);
  expect_errno("openat2_no_symlinks", fd, ELOOP, "openat2(/work, to_ro, RESOLVE_NO_SYMLINKS)");
  close(dir);
}

static void case_refused(void) {
  struct {
    struct file_handle h;
    unsigned char bytes[128];
  } handle = {.h = {.handle_bytes = 128}};
  int mount_id;
  expect_errno("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/work", &handle, &mount_id, 0), EPERM,
               "name_to_handle_at(/work)");
  expect_errno("chroot", chroot("/work"), EPERM, "chroot(/work)");
}

// A descriptor the program inherited from outside the view (fd 3): paths
// relative to it are refused.
static void case_inherited_dirfd(void) {
  struct stat st;
  if (fstat(3, &st) != 0 || !S_ISDIR(st.st_mode)) {
    report("inherited_dirfd", 0, "fd 3 is not the inherited directory");
    return;
  }
  int fd = openat(3, "secret", O_RDONLY);
  expect_errno("inherited_dirfd", fd, EACCES, "openat(inherited OUTSIDE, secret)");
}

// AF_UNIX sockets by path, in SOCKETS (a tmpfs directory: the nested test
// VM's shared /tmp cannot hold sockets), named by the environment's
// DUNK_FS_SOCKETS: a listener the program binds in /sockets (SOCKETS/in)
// takes its connection; SOCKETS/outside/sock (a listener of the test's,
// outside the view) and a symlink to it are not there; bind under
// --ro-bind is EROFS.
static int unix_socket(int type) { return socket(AF_UNIX, type | SOCK_CLOEXEC, 0); }

static struct sockaddr_un unix_address(const char* path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  return a;
}

static void case_unix_sockets(void) {
  const char* sockets = getenv("DUNK_FS_SOCKETS");
  if (sockets == NULL) {
    report("unix_sockets", 0, "no DUNK_FS_SOCKETS");
    return;
  }
  struct sockaddr_un a = unix_address("/sockets/srv");
  int server = unix_socket(SOCK_STREAM);
  int ok = bind(server, (struct sockaddr*)&a, sizeof a) == 0 && listen(server, 4) == 0;
  report("unix_bind_inside", ok, "bind(/sockets/srv) and listen");
  int client = unix_socket(SOCK_STREAM);
  ok = connect(client, (struct sockaddr*)&a, sizeof a) == 0;
  int conn = ok ? accept(server, NULL, NULL) : -1;
  char buf[16] = "";
  ok = conn >= 0 && write(client, "ping", 4) == 4 && read(conn, buf, sizeof buf - 1) == 4 && strcmp(buf, "ping") == 0;
  report("unix_connect_inside", ok, "connect(/sockets/srv), accept, a message through");
  close(conn);
  close(client);
  close(server);
  char path[4096];
  snprintf(path, sizeof path, "%s/outside/sock", sockets);
  a = unix_address(path);
  client = unix_socket(SOCK_STREAM);
  expect_errno("unix_connect_outside", connect(client, (struct sockaddr*)&a, sizeof a), ENOENT,
               "connect(SOCKETS/outside/sock)");
  close(client);
  a = unix_address("/sockets/sock_link");
  client = unix_socket(SOCK_STREAM);
  expect_errno("unix_connect_symlink", connect(client, (struct sockaddr*)&a, sizeof a), ENOENT,
               "connect(/sockets/sock_link -> SOCKETS/outside/sock)");
  close(client);
  snprintf(path, sizeof path, "%s/outside/dgram", sockets);
  a = unix_address(path);
  client = unix_socket(SOCK_DGRAM);
  expect_errno("unix_sendto_outside", sendto(client, "x", 1, 0, (struct sockaddr*)&a, sizeof a), ENOENT,
               "sendto(SOCKETS/outside/dgram)");
  // sendmmsg names each message's address: the same paths, the same view.
  struct iovec iov = {.iov_base = "x", .iov_len = 1};
  struct mmsghdr outside = {.msg_hdr = {.msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &iov, .msg_iovlen = 1}};
  expect_errno("unix_sendmmsg_outside", sendmmsg(client, &outside, 1, 0), ENOENT, "sendmmsg(SOCKETS/outside/dgram)");
  struct sockaddr_un in = unix_address("/sockets/dgram");
  int receiver = unix_socket(SOCK_DGRAM);
  struct iovec two[2] = {{.iov_base = "one", .iov_len = 3}, {.iov_base = "two", .iov_len = 3}};
  struct mmsghdr inside[2] = {
      {.msg_hdr = {.msg_name = &in, .msg_namelen = sizeof in, .msg_iov = &two[0], .msg_iovlen = 1}},
      {.msg_hdr = {.msg_name = &in, .msg_namelen = sizeof in, .msg_iov = &two[1], .msg_iovlen = 1}}};
  char got[8] = "", got2[8] = "";
  ok = bind(receiver, (struct sockaddr*)&in, sizeof in) == 0 && sendmmsg(client, inside, 2, 0) == 2 &&
       inside[0].msg_len == 3 && inside[1].msg_len == 3 && recv(receiver, got, sizeof got - 1, 0) == 3 &&
       recv(receiver, got2, sizeof got2 - 1, 0) == 3 && strcmp(got, "one") == 0 && strcmp(got2, "two") == 0;
  report("unix_sendmmsg_inside", ok, "sendmmsg of two messages to /sockets/dgram, both received");
  close(receiver);
  close(client);
  a = unix_address("/ro/srv");
  server = unix_socket(SOCK_STREAM);
  expect_errno("unix_bind_read_only", bind(server, (struct sockaddr*)&a, sizeof a), EROFS, "bind(/ro/srv)");
  close(server);
}

struct path_case {
  const char* name;
  void (*run)(void);
};
static const struct path_case path_cases[] = {
    {"inside", case_inside},         {"outside", case_outside},   {"symlinks", case_symlinks},
    {"magic_links", case_magic_links}, {"descriptor_links", case_descriptor_links}, {"read_only", case_read_only}, {"read_write", case_read_write},
    {"cwd", case_cwd},               {"openat2", case_openat2},   {"refused", case_refused},
    {"inherited_dirfd", case_inherited_dirfd}, {"unix_sockets", case_unix_sockets},
};

// ---- Races -----------------------------------------------------------------------

static atomic_int stop;
static atomic_long moves;
static char race_dir[4096];

// Swaps RACE/dir (a directory whose "file" says "inside") with RACE/link (a
// symlink to OUTSIDE, whose "file" says SECRET) as fast as it can: with
// RENAME_EXCHANGE, or where the file system has none (9p), in three
// renames, which leave "dir" a symlink as often.
static void* swapper(void* arg) {
  (void)arg;
  char a[4200], b[4200], c[4200];
  snprintf(a, sizeof a, "%s/dir", race_dir);
  snprintf(b, sizeof b, "%s/link", race_dir);
  snprintf(c, sizeof c, "%s/swap", race_dir);
  while (!atomic_load(&stop)) {
    if (syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */) == 0) {
      atomic_fetch_add(&moves, 1);
    } else if (errno == EINVAL && rename(a, c) == 0 && rename(b, a) == 0 && rename(c, b) == 0) {
      atomic_fetch_add(&moves, 1);
    }
  }
  return NULL;
}

// Moves RACE/deep/a/b up and back, so that a path through it has a
// different number of levels above it from one moment to the next.
static void* mover(void* arg) {
  (void)arg;
  char a[4200], b[4200];
  snprintf(a, sizeof a, "%s/deep/a/b", race_dir);
  snprintf(b, sizeof b, "%s/b", race_dir);
  while (!atomic_load(&stop)) {
    if (rename(a, b) == 0 && rename(b, a) == 0) atomic_fetch_add(&moves, 1);
  }
  return NULL;
}

static void race(const char* name, void* (*attacker)(void*), const char* victim, long rounds) {
  pthread_t thread;
  atomic_store(&stop, 0);
  atomic_store(&moves, 0);
  pthread_create(&thread, NULL, attacker, NULL);
  long inside = 0, refused = 0, secret = 0;
  for (long i = 0; i < rounds; i++) {
    char buf[64];
    int n = read_file(victim, buf, sizeof buf);
    if (n < 0) {
      refused++;
    } else if (strstr(buf, "SECRET") != NULL) {
      secret++;
    } else {
      inside++;
    }
  }
  atomic_store(&stop, 1);
  pthread_join(thread, NULL);
  char what[256];
  const long moved = atomic_load(&moves);
  snprintf(what, sizeof what, "%ld rounds: %ld read inside, %ld failed, %ld read the secret; %ld swaps or moves", rounds,
           inside, refused, secret, moved);
  report(name, secret == 0 && inside > 0 && refused > 0 && moved > 0, what);
}

static void races(long rounds) {
  char victim[4200];
  snprintf(victim, sizeof victim, "%s/dir/file", race_dir);
  race("symlink_swap_race", swapper, victim, rounds);
  // In the view, RACE/deep/a/b/../../file is RACE/deep/file ("inside"),
  // or nothing while b is away. A lookup that took ".." on the host from
  // wherever b is at that moment would reach, from RACE/b, the file above
  // RACE (WORK/file: "SECRET"), outside the view.
  char deep[4200];
  snprintf(deep, sizeof deep, "%s/deep/a/b/../../file", race_dir);
  race("rename_race", mover, deep, rounds);
}

// ---- Single calls (the host layer's tests) ----------------------------------------

// `call mkdir PATH`: the mkdir system call itself; `call read PATH`: the
// file's first line; `call write PATH`: opens PATH for writing. Prints what
// happened; the status is 0 when the call succeeded.
static int single_call(const char* what, const char* path) {
  long ret = -1;
  char buf[256] = "";
  if (strcmp(what, "mkdir") == 0) {
    ret = syscall(SYS_mkdir, path, 0755);
  } else if (strcmp(what, "read") == 0) {
    ret = read_file(path, buf, sizeof buf);
    if (ret < 0) errno = (int)-ret;
  } else if (strcmp(what, "write") == 0) {
    ret = open(path, O_WRONLY);
  } else {
    fprintf(stderr, "no call %s\n", what);
    return 2;
  }
  if (ret < 0) {
    printf("%s %s: %s\n", what, path, strerror(errno));
    return 1;
  }
  printf("%s %s: ok%s%s", what, path, buf[0] != '\0' ? ": " : "\n", buf);
  return 0;
}

// The view's calls once the process's first thread has ended (main called
// pthread_exit and another thread goes on): opens through the view, a
// directory descriptor, /proc/self/status, a pipe reopened through
// /proc/thread-self/fd/N (the supervisor names its own descriptors through
// /proc/thread-self, which the first thread's end does not take away).
static void* first_thread_gone_worker(void* unused) {
  (void)unused;
  char buf[256], path[64];
  usleep(100000);  // the first thread has gone by now
  int n = read_file("/work/file", buf, sizeof buf);
  report("gone_open", n > 0 && strcmp(buf, "inside\n") == 0, "open(/work/file)");
  int dir = open("/work", O_RDONLY | O_DIRECTORY);
  int fd = dir >= 0 ? openat(dir, "file", O_RDONLY) : -1;
  report("gone_openat", fd >= 0, "openat(/work, file)");
  n = read_file("/proc/self/status", buf, sizeof buf);
  report("gone_proc_status", n > 0 && strncmp(buf, "Name:", 5) == 0, "/proc/self/status read");
  int p[2];
  if (pipe(p) == 0 && write(p[1], "piped\n", 6) == 6) {
    // (/proc/self/fd is the first thread's, gone: natively too, only the
    // thread's own names the table.)
    snprintf(path, sizeof path, "/proc/thread-self/fd/%d", p[0]);
    n = read_file(path, buf, sizeof buf);
    report("gone_reopen_pipe", n == 6, "a pipe reopened through /proc/thread-self/fd/N");
  }
  exit(failures == 0 ? 0 : 1);
}

static int first_thread_gone(void) {
  pthread_t worker;
  if (pthread_create(&worker, NULL, first_thread_gone_worker, NULL) != 0) return 2;
  pthread_exit(NULL);
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 2 && strcmp(argv[1], "first_thread_gone") == 0) return first_thread_gone();
  if (argc == 4 && strcmp(argv[1], "call") == 0) return single_call(argv[2], argv[3]);
  if (argc < 3) {
    fprintf(stderr, "usage: %s paths|races|one CASE ... OUTSIDE [ROUNDS]\n", argv[0]);
    return 2;
  }
  if (strcmp(argv[1], "paths") == 0) {
    outside = argv[2];
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) path_cases[i].run();
  } else if (strcmp(argv[1], "races") == 0 && argc >= 5) {
    outside = argv[2];
    snprintf(race_dir, sizeof race_dir, "%s", argv[3]);
    races(atol(argv[4]));
  } else if (strcmp(argv[1], "one") == 0 && argc >= 4) {
    outside = argv[3];
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
      if (strcmp(path_cases[i].name, argv[2]) == 0) path_cases[i].run();
    }
  } else {
    fprintf(stderr, "%s: unknown mode %s\n", argv[0], argv[1]);
    return 2;
  }
  return failures == 0 ? 0 : 1;
}
