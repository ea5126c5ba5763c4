// dunk's own descriptors (/dev/kvm, the VM, vCPUs, the mirror's probe) stay
// out of the program's sight and way: its open() calls get the numbers they
// would natively, a listing of /proc/self/fd shows only its own, it cannot
// close them, and fork children sharing the descriptor table (CLONE_FILES)
// each get a VM without disturbing the parent's.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

// The descriptors a listing of `directory` shows, each with what it names.
std::map<int, std::string> listed_descriptors(const char* directory) {
  std::map<int, std::string> out;
  DIR* dir = opendir(directory);
  if (dir == nullptr) return out;
  const int own = dirfd(dir);
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd == own) continue;
    char target[256] = {};
    std::string link = std::string(directory) + "/" + entry->d_name;
    ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    out[fd] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
  }
  closedir(dir);
  return out;
}

bool names_kvm_or_dunk(const std::string& target) {
  return target.find("kvm") != std::string::npos || target.find("dunk") != std::string::npos;
}

// Descriptors naming KVM objects or dunk's probe. In VM mode the program
// sees none of them (not in listings, not by name): the calling thread
// looks from outside VM mode, for a moment.
std::vector<int> kvm_descriptors_in_table() {
  const bool was_in_vm = in_vm();
  if (was_in_vm) leave();
  std::vector<int> out;
  DIR* dir = opendir("/proc/self/fdinfo");
  if (dir == nullptr) return out;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    char target[256] = {};
    std::string link = std::string("/proc/self/fd/") + entry->d_name;
    ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    if (n > 0 && names_kvm_or_dunk(target)) out.push_back(std::atoi(entry->d_name));
  }
  closedir(dir);
  if (was_in_vm) test::enter_or_fail();
  return out;
}

TEST(Descriptors, TheProgramsNextOpenGetsTheNumberItWouldNatively) {
  int before = open("/dev/null", O_RDONLY);
  ASSERT_GE(before, 0);
  ASSERT_EQ(close(before), 0);
  test::enter_or_fail();
  int after = open("/dev/null", O_RDONLY);
  EXPECT_EQ(after, before);
  close(after);
  leave();
}

TEST(Descriptors, AProgramWithoutStdinGetsItsFirstFileAsZero) {
  test::ChildResult r = test::run_in_child([] {
    close(0);
    if (!enter()) return 10;
    int fd = open("/dev/null", O_RDONLY);
    return fd == 0 && test::in_guest_ring0() ? 0 : 20 + fd;
  });
  EXPECT_TRUE(r.exited) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// The program's own descriptors in a listing made outside VM mode (where an
// earlier test of this process may have left a VM).
std::map<int, std::string> programs_own(std::map<int, std::string> listing) {
  std::erase_if(listing, [](const auto& entry) { return names_kvm_or_dunk(entry.second); });
  return listing;
}

TEST(Descriptors, ListingProcSelfFdShowsWhatItShowsNatively) {
  const auto native = programs_own(listed_descriptors("/proc/self/fd"));
  char task_fd[64];
  std::snprintf(task_fd, sizeof task_fd, "/proc/self/task/%ld/fd", static_cast<long>(gettid()));
  const auto native_task = programs_own(listed_descriptors(task_fd));
  test::enter_or_fail();
  const auto in_vm_mode = listed_descriptors("/proc/self/fd");
  const auto in_vm_mode_task = listed_descriptors(task_fd);
  leave();
  EXPECT_EQ(in_vm_mode, native);
  EXPECT_EQ(in_vm_mode_task, native_task);
  for (const auto& [fd, target] : in_vm_mode) EXPECT_FALSE(names_kvm_or_dunk(target)) << fd << " -> " << target;
  // They are there all the same, past the program's numbers.
  ASSERT_TRUE(enter());
  // /dev/kvm, the VM, the probe, this thread's vCPU
  EXPECT_GE(kvm_descriptors_in_table().size(), 4u);
  leave();
}

TEST(Descriptors, TheProgramCannotCloseThem) {
  test::enter_or_fail();
  const std::vector<int> own = kvm_descriptors_in_table();
  EXPECT_GE(own.size(), 4u);
  for (int fd : own) {
    errno = 0;
    EXPECT_EQ(close(fd), -1) << fd;
    EXPECT_EQ(errno, EBADF) << fd;
  }
  EXPECT_EQ(syscall(SYS_close_range, 3u, ~0u, 0u), 0);
  EXPECT_EQ(kvm_descriptors_in_table(), own);
  EXPECT_TRUE(test::in_guest_ring0());
  std::thread([] { EXPECT_TRUE(test::in_guest_ring0()); }).join();
  leave();
}

// Every call that takes a descriptor treats dunk's as closed, and so does
// /proc: a number of dunk's behaves in VM mode exactly as a number the
// program never opened behaves natively.
TEST(Descriptors, EveryCallTreatsThemAsClosed) {
  test::enter_or_fail();
  const std::vector<int> own = kvm_descriptors_in_table();
  ASSERT_GE(own.size(), 4u);
  // A pidfd of this very process: pidfd_getfd looks numbers up in its table.
  const int self = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  ASSERT_GE(self, 0) << std::strerror(errno);
  for (int fd : own) {
    SCOPED_TRACE("descriptor " + std::to_string(fd));
    char byte;
    struct stat st {};
    errno = 0;
    EXPECT_EQ(read(fd, &byte, 1), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(dup(fd), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(dup2(fd, 100), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(fcntl(fd, F_GETFD), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(fstat(fd, &st), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(fstatat(fd, "", &st, AT_EMPTY_PATH), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(ioctl(fd, FIONREAD, &st), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0), MAP_FAILED);
    EXPECT_EQ(errno, EBADF);
    const std::string by_name = "/proc/self/fd/" + std::to_string(fd);
    const std::string info = "/proc/self/fdinfo/" + std::to_string(fd);
    errno = 0;
    EXPECT_EQ(open(by_name.c_str(), O_RDONLY), -1);
    EXPECT_EQ(errno, ENOENT);
    errno = 0;
    EXPECT_EQ(open(info.c_str(), O_RDONLY), -1);
    EXPECT_EQ(errno, ENOENT);
    char target[64];
    errno = 0;
    EXPECT_EQ(readlink(by_name.c_str(), target, sizeof target), -1);
    EXPECT_EQ(errno, ENOENT);
    pollfd entry{fd, POLLIN, 0};
    EXPECT_EQ(poll(&entry, 1, 0), 1);
    EXPECT_EQ(entry.revents, POLLNVAL);
    errno = 0;
    EXPECT_EQ(syscall(SYS_pidfd_getfd, self, fd, 0), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, fd, 0), -1);
    EXPECT_EQ(errno, EBADF);
  }
  close(self);
  // Nor do listings of /proc/self/fdinfo show them.
  for (const auto& [fd, target] : listed_descriptors("/proc/self/fdinfo")) {
    EXPECT_FALSE(std::find(own.begin(), own.end(), fd) != own.end()) << fd;
  }
  EXPECT_TRUE(test::in_guest_ring0());
  leave();
}

int clone_files_child(void*) { return test::in_guest_ring0() ? 0 : 1; }

// stress-ng's clone stressor makes such children: their own memory (so a VM
// of their own) but the parent's descriptor table.
TEST(Descriptors, CloneFilesChildrenEachGetAVmAndLeaveNoDescriptorBehind) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  const std::vector<int> kvm_before = kvm_descriptors_in_table();
  constexpr int kRounds = 6, kAtOnce = 6, kStack = 256 * 1024;
  std::vector<char> stacks(kAtOnce * kStack);
  int failed = 0;
  for (int round = 0; round < kRounds; ++round) {
    pid_t pids[kAtOnce];
    for (int i = 0; i < kAtOnce; ++i) {
      pids[i] = clone(clone_files_child, stacks.data() + (i + 1) * kStack, CLONE_FILES | SIGCHLD, nullptr);
      ASSERT_GT(pids[i], 0);
    }
    for (pid_t pid : pids) {
      int status = 0;
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
  }
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(kvm_descriptors_in_table(), kvm_before);
  // The parent's VM is whole: a new thread gets a vCPU from it.
  bool thread_in_vm = false;
  std::thread([&] { thread_in_vm = test::in_guest_ring0(); }).join();
  EXPECT_TRUE(thread_in_vm);
  EXPECT_TRUE(test::in_guest_ring0());
  leave();
}

// dunk lifts the soft RLIMIT_NOFILE for a moment to place each descriptor
// it creates (a VM, each new thread's vCPU); the program never sees the
// lifted value, whatever its threads do meanwhile.
TEST(Descriptors, TheProgramNeverSeesItsLimitLifted) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  test::enter_or_fail();
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0}, wrong{0};
  std::thread reader([&] {
    while (!stop.load()) {
      rlimit now{};
      if (getrlimit(RLIMIT_NOFILE, &now) != 0 || now.rlim_cur != limit.rlim_cur) wrong.fetch_add(1);
      reads.fetch_add(1);
    }
  });
  // Threads alive at once need vCPUs of their own: each new one is placed.
  // (The lifted window is short: this catches a missing lock often, not
  // always.)
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int i = 0; i < 48; ++i) {
    threads.emplace_back([&go] {
      while (!go.load()) (void)getpid();
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  stop = true;
  reader.join();
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  leave();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(after.rlim_cur, limit.rlim_cur);
  EXPECT_EQ(after.rlim_max, limit.rlim_max);
}

}  // namespace
}  // namespace dunk
