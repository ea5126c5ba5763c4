// strace-style lines, compared with the exact text strace prints for the
// same calls (where dunk decodes less than strace, the address instead).
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

#include <array>
#include <cstring>
#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

#include "abi/format.h"
#include "abi_test_support.h"

namespace dunk::abi {
namespace {

using testing::addr_of;
using testing::FakeMemory;

class AbiFormat : public ::testing::Test {
 protected:
  static Call make(std::uint64_t nr, std::initializer_list<std::uint64_t> args) {
    Call c;
    c.number = nr;
    unsigned i = 0;
    for (std::uint64_t a : args) c.args[i++] = a;
    return c;
  }
  std::string line(std::uint64_t nr, std::initializer_list<std::uint64_t> args, std::int64_t ret,
                   FormatOptions options = {}) {
    char out[1024];
    format_call(out, sizeof out, make(nr, args), ret, memory, options);
    return out;
  }
  std::string entry(std::uint64_t nr, std::initializer_list<std::uint64_t> args) {
    char out[1024];
    format_entry(out, sizeof out, make(nr, args), memory);
    return out;
  }
  std::string exit(std::uint64_t nr, std::initializer_list<std::uint64_t> args, std::int64_t ret) {
    char out[1024];
    format_exit(out, sizeof out, make(nr, args), ret, memory);
    return out;
  }
  std::uint64_t str(const char* s) {
    memory.add_string(s);
    return addr_of(s);
  }
  static std::string hex(std::uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
  }

  FakeMemory memory;
};

TEST_F(AbiFormat, OpenatAsStracePrintsIt) {
  const std::uint64_t path = str("/etc/passwd");
  EXPECT_EQ(line(SYS_openat, {static_cast<std::uint64_t>(AT_FDCWD), path, O_RDONLY | O_CLOEXEC}, 3),
            "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 3");
  // The mode is shown only when the flags make the kernel use it.
  const std::uint64_t out = str("out.txt");
  EXPECT_EQ(line(SYS_openat, {static_cast<std::uint64_t>(AT_FDCWD), out, O_WRONLY | O_CREAT | O_TRUNC, 0644}, 4),
            "openat(AT_FDCWD, \"out.txt\", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 4");
  EXPECT_EQ(line(SYS_openat, {5, out, O_RDWR | O_SYNC | O_NONBLOCK, 0}, 6),
            "openat(5, \"out.txt\", O_RDWR|O_NONBLOCK|O_SYNC) = 6");
}

TEST_F(AbiFormat, ErrorsAreNamedAndExplained) {
  const std::uint64_t path = str("/nonexistent");
  EXPECT_EQ(line(SYS_openat, {static_cast<std::uint64_t>(AT_FDCWD), path, O_RDONLY}, -ENOENT),
            "openat(AT_FDCWD, \"/nonexistent\", O_RDONLY) = -1 ENOENT (No such file or directory)");
  EXPECT_EQ(line(SYS_close, {99}, -EBADF), "close(99) = -1 EBADF (Bad file descriptor)");
}

TEST_F(AbiFormat, ReadShowsWhatWasReadAtExit) {
  static char buf[4096];
  std::memset(buf, 0, sizeof buf);
  std::strcpy(buf, "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534");
  memory.add(buf);
  const std::uint64_t b = addr_of(buf);
  EXPECT_EQ(entry(SYS_read, {3, b, 4096}), "read(3, ");
  EXPECT_EQ(exit(SYS_read, {3, b, 4096}, 1024), "\"root:x:0:0:root:/root:/bin/bash\\n\"..., 4096) = 1024");
  EXPECT_EQ(line(SYS_read, {3, b, 4096}, 10), "read(3, \"root:x:0:0\", 4096) = 10");
  EXPECT_EQ(line(SYS_read, {3, b, 4096}, 10, FormatOptions{.string_limit = 4}), "read(3, \"root\"..., 4096) = 10");
  EXPECT_EQ(line(SYS_read, {3, b, 4096}, -EAGAIN),
            "read(3, " + hex(b) + ", 4096) = -1 EAGAIN (Resource temporarily unavailable)");
}

TEST_F(AbiFormat, WriteShowsItsBufferAtEntryWithStracesEscapes) {
  static const char data[] = "a\"b\\c\td\n\001\0017\377";
  memory.add(data);
  EXPECT_EQ(line(SYS_write, {1, addr_of(data), sizeof data - 1}, 12),
            "write(1, \"a\\\"b\\\\c\\td\\n\\1\\0017\\377\", 12) = 12");
}

TEST_F(AbiFormat, LongLimitsReadInChunksAndEscapeAcrossThem) {
  static unsigned char data[1000];
  std::memset(data, 'x', sizeof data);
  data[255] = 1;    // the last byte of the first chunk...
  data[256] = '7';  // ...is followed by a digit in the next
  memory.add(data);
  const std::string shown =
      std::string(255, 'x') + "\\0017" + std::string(299 - 256, 'x');
  EXPECT_EQ(line(SYS_write, {1, addr_of(data), sizeof data}, 1000, FormatOptions{.string_limit = 300}),
            "write(1, \"" + shown + "\"..., 1000) = 1000");
}

TEST_F(AbiFormat, MmapAndMunmap) {
  EXPECT_EQ(line(SYS_mmap, {0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            static_cast<std::uint64_t>(-1), 0},
                 0x7f0000001000),
            "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000001000");
  EXPECT_EQ(line(SYS_mmap, {0x7f0000000000, 4096, PROT_NONE, MAP_SHARED | MAP_FIXED, 3, 0x2000}, 0x7f0000000000),
            "mmap(0x7f0000000000, 4096, PROT_NONE, MAP_SHARED|MAP_FIXED, 3, 0x2000) = 0x7f0000000000");
  EXPECT_EQ(line(SYS_munmap, {0x7f0000001000, 8192}, 0), "munmap(0x7f0000001000, 8192) = 0");
  EXPECT_EQ(line(SYS_mprotect, {0x1000, 4096, PROT_READ | 0x100}, 0), "mprotect(0x1000, 4096, PROT_READ|0x100) = 0");
}

TEST_F(AbiFormat, ExecveShowsArgvAndCountsEnvp) {
  static const char* args[] = {"ls", "-l", nullptr};
  memory.add_string(args[0]);
  memory.add_string(args[1]);
  memory.add(args);
  static const char* env[] = {"HOME=/root", "PATH=/bin", nullptr};
  memory.add(env);
  const std::uint64_t path = str("/usr/bin/ls");
  EXPECT_EQ(line(SYS_execve, {path, addr_of(args), addr_of(env)}, 0),
            "execve(\"/usr/bin/ls\", [\"ls\", \"-l\"], " + hex(addr_of(env)) + " /* 2 vars */) = 0");
}

TEST_F(AbiFormat, WritevAndReadv) {
  static char a[] = "hello ", b[] = "world";
  static iovec iov[2] = {{a, 6}, {b, 5}};
  memory.add(a);
  memory.add(b);
  memory.add(iov);
  EXPECT_EQ(line(SYS_writev, {1, addr_of(iov), 2}, 11),
            "writev(1, [{iov_base=\"hello \", iov_len=6}, {iov_base=\"world\", iov_len=5}], 2) = 11");
  EXPECT_EQ(line(SYS_readv, {0, addr_of(iov), 2}, 8),
            "readv(0, [{iov_base=\"hello \", iov_len=6}, {iov_base=\"wo\", iov_len=5}], 2) = 8");
}

TEST_F(AbiFormat, CommandsAreNamed) {
  EXPECT_EQ(line(SYS_fcntl, {3, F_GETFL}, 0x8002), "fcntl(3, F_GETFL) = 32770");
  EXPECT_EQ(line(SYS_fcntl, {3, F_SETFD, FD_CLOEXEC}, 0), "fcntl(3, F_SETFD, FD_CLOEXEC) = 0");
  EXPECT_EQ(line(SYS_fcntl, {3, F_DUPFD_CLOEXEC, 10}, 10), "fcntl(3, F_DUPFD_CLOEXEC, 10) = 10");
  static int word = 0;
  memory.add(word);
  EXPECT_EQ(line(SYS_futex, {addr_of(&word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1}, 0),
            "futex(" + hex(addr_of(&word)) + ", FUTEX_WAKE_PRIVATE, 1) = 0");
  EXPECT_EQ(line(SYS_futex, {addr_of(&word), FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME, 0, 0, 0,
                             0xffffffff},
                 -EAGAIN),
            "futex(" + hex(addr_of(&word)) +
                ", FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, 0, NULL, 0xffffffff) = -1 EAGAIN (Resource "
                "temporarily unavailable)");
  EXPECT_EQ(line(SYS_ioctl, {1, TCGETS, 0x7ffc0000}, 0), "ioctl(1, TCGETS, 0x7ffc0000) = 0");
  EXPECT_EQ(line(SYS_ioctl, {3, FIOCLEX}, 0), "ioctl(3, FIOCLEX) = 0");
  EXPECT_EQ(line(SYS_ioctl, {3, _IOR('x', 0x30, int), 0x1000}, -ENOTTY),
            "ioctl(3, _IOC(_IOC_READ, 0x78, 0x30, 0x4), 0x1000) = -1 ENOTTY (Inappropriate ioctl for device)");
  EXPECT_EQ(line(SYS_arch_prctl, {0x1002, 0x7f0000000740}, 0), "arch_prctl(ARCH_SET_FS, 0x7f0000000740) = 0");
}

TEST_F(AbiFormat, CloneFlagsEndWithTheExitSignal) {
  EXPECT_EQ(line(SYS_clone, {CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID | SIGCHLD, 0, 0, 0x7f0000000a10, 0}, 1234),
            "clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, NULL, NULL, 0x7f0000000a10, NULL) = 1234");
  EXPECT_EQ(line(SYS_unshare, {CLONE_NEWUSER | CLONE_NEWNS}, 0), "unshare(CLONE_NEWNS|CLONE_NEWUSER) = 0");
}

TEST_F(AbiFormat, TimespecsPipesSignalsAndAddresses) {
  static timespec ts{1, 500000000};
  memory.add(ts);
  EXPECT_EQ(line(SYS_nanosleep, {addr_of(&ts), 0}, 0), "nanosleep({tv_sec=1, tv_nsec=500000000}, NULL) = 0");
  EXPECT_EQ(line(SYS_clock_gettime, {CLOCK_MONOTONIC, addr_of(&ts)}, 0),
            "clock_gettime(CLOCK_MONOTONIC, {tv_sec=1, tv_nsec=500000000}) = 0");
  static int fds[2] = {3, 4};
  memory.add(fds);
  EXPECT_EQ(line(SYS_pipe2, {addr_of(fds), O_CLOEXEC}, 0), "pipe2([3, 4], O_CLOEXEC) = 0");
  EXPECT_EQ(line(SYS_kill, {1234, SIGTERM}, 0), "kill(1234, SIGTERM) = 0");
  EXPECT_EQ(line(SYS_tgkill, {10, 11, 35}, 0), "tgkill(10, 11, SIGRTMIN+3) = 0");
  EXPECT_EQ(line(SYS_brk, {0}, 0x555555559000), "brk(NULL) = 0x555555559000");
  EXPECT_EQ(line(SYS_getpid, {}, 77), "getpid() = 77");
  EXPECT_EQ(line(SYS_exit_group, {0}, 0), "exit_group(0) = 0");
  EXPECT_EQ(line(SYS_lseek, {3, 0, SEEK_END}, 4096), "lseek(3, 0, SEEK_END) = 4096");
  EXPECT_EQ(line(SYS_umask, {022}, 022), "umask(022) = 18");
  const std::uint64_t dir = str("d");
  EXPECT_EQ(line(SYS_mkdir, {dir, 0}, 0), "mkdir(\"d\", 000) = 0");
  EXPECT_EQ(line(SYS_mkdir, {dir, 07}, 0), "mkdir(\"d\", 007) = 0");
  EXPECT_EQ(line(SYS_mkdir, {dir, 01777}, 0), "mkdir(\"d\", 01777) = 0");
}

TEST_F(AbiFormat, TheCallTheKernelRunsForHighBitsInRax) {
  EXPECT_EQ(line(0xffffffff00000000 | SYS_getpid, {}, 5), "getpid() = 5");
}

TEST_F(AbiFormat, UnknownNumbersPrintTheirRegisters) {
  EXPECT_EQ(line(500, {1, 2, 3, 4, 5, 6}, -ENOSYS),
            "syscall_500(0x1, 0x2, 0x3, 0x4, 0x5, 0x6) = -1 ENOSYS (Function not implemented)");
  EXPECT_EQ(line(0x40000000 | 1, {1, 0, 0, 0, 0, 0}, -ENOSYS),
            "syscall_1073741825(0x1, 0, 0, 0, 0, 0) = -1 ENOSYS (Function not implemented)");
}

TEST_F(AbiFormat, LongPathsArePrintedWholeAndUnreadableOnesAsAddresses) {
  static char path[300];
  std::memset(path, 'a', sizeof path - 1);
  path[0] = '/';
  memory.add(path);
  const std::string expect = "chdir(\"" + std::string(path) + "\") = 0";
  EXPECT_EQ(line(SYS_chdir, {addr_of(path)}, 0), expect);
  EXPECT_EQ(line(SYS_chdir, {0x1000}, -EFAULT), "chdir(0x1000) = -1 EFAULT (Bad address)");
}

TEST_F(AbiFormat, ASmallBufferCutsTheLineButKeepsItTerminated) {
  char out[16];
  const std::uint64_t path = str("/etc/passwd");
  const std::size_t n =
      format_call(out, sizeof out, make(SYS_openat, {static_cast<std::uint64_t>(AT_FDCWD), path, 0}), 3, memory);
  EXPECT_EQ(n, 15u);
  EXPECT_EQ(std::string(out), "openat(AT_FDCWD");
}

}  // namespace
}  // namespace dunk::abi
