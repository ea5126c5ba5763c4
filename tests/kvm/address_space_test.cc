// Section 4: every host mapping is reachable in VM mode, including memory
// mapped after entry, anywhere in the 47-bit user address space.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

constexpr std::size_t kMiB = 1 << 20;

// Fills [p, p + size) with a pattern derived from the address and checks it.
void fill(volatile std::uint8_t* p, std::size_t size, std::uint8_t seed) {
  for (std::size_t i = 0; i < size; i += 4096) p[i] = static_cast<std::uint8_t>(seed + i / 4096);
}
bool check(const volatile std::uint8_t* p, std::size_t size, std::uint8_t seed) {
  for (std::size_t i = 0; i < size; i += 4096) {
    if (p[i] != static_cast<std::uint8_t>(seed + i / 4096)) return false;
  }
  return true;
}

TEST(AddressSpace, FixedMappingsFarApartAfterEntry) {
  test::enter_or_fail();
  for (std::uintptr_t where : {std::uintptr_t{0x10'0000'0000}, std::uintptr_t{0x7e00'0000'0000}}) {
    void* p = mmap(reinterpret_cast<void*>(where), 4 * kMiB, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    ASSERT_EQ(p, reinterpret_cast<void*>(where)) << std::hex << where;
    auto* bytes = static_cast<volatile std::uint8_t*>(p);
    fill(bytes, 4 * kMiB, 7);
    EXPECT_TRUE(check(bytes, 4 * kMiB, 7));
    ASSERT_EQ(munmap(p, 4 * kMiB), 0);
  }
  leave();
}

TEST(AddressSpace, MremapMovesAndGrowsWithContents) {
  test::enter_or_fail();
  void* p = mmap(nullptr, 2 * kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  fill(static_cast<volatile std::uint8_t*>(p), 2 * kMiB, 3);
  void* q = mremap(p, 2 * kMiB, 16 * kMiB, MREMAP_MAYMOVE);
  ASSERT_NE(q, MAP_FAILED);
  auto* bytes = static_cast<volatile std::uint8_t*>(q);
  EXPECT_TRUE(check(bytes, 2 * kMiB, 3));
  bytes[16 * kMiB - 1] = 0x5a;  // the grown part is usable
  EXPECT_EQ(bytes[16 * kMiB - 1], 0x5a);
  // Shrinking in place leaves the head usable.
  ASSERT_EQ(mremap(q, 16 * kMiB, kMiB, 0), q);
  EXPECT_TRUE(check(bytes, kMiB, 3));
  ASSERT_EQ(munmap(q, kMiB), 0);
  leave();
}

TEST(AddressSpace, BrkGrowsBySeveralMegabytes) {
  test::enter_or_fail();
  auto* start = static_cast<std::uint8_t*>(sbrk(0));
  ASSERT_NE(sbrk(8 * kMiB), reinterpret_cast<void*>(-1));
  fill(start, 8 * kMiB, 11);
  EXPECT_TRUE(check(start, 8 * kMiB, 11));
  ASSERT_NE(sbrk(-static_cast<intptr_t>(8 * kMiB)), reinterpret_cast<void*>(-1));
  leave();
}

// Files live on tmpfs: in the nested test VM /tmp is a 9p share whose
// cache=mmap mode keeps read() apart from the page cache mmap uses.
TEST(AddressSpace, FileMappingsReadAndWriteThrough) {
  char path[] = "/dev/shm/dunk-map-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  std::string text(3 * 4096 + 100, 'x');
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + i % 26);
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));

  test::enter_or_fail();
  void* p = mmap(nullptr, text.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  EXPECT_EQ(std::memcmp(p, text.data(), text.size()), 0);
  static_cast<char*>(p)[5000] = '!';
  ASSERT_EQ(msync(p, text.size(), MS_SYNC), 0);
  ASSERT_EQ(munmap(p, text.size()), 0);
  leave();

  char c = 0;
  ASSERT_EQ(pread(fd, &c, 1, 5000), 1);
  EXPECT_EQ(c, '!');
  close(fd);
}

TEST(AddressSpace, SharedMemoryIsSeenByAnotherProcess) {
  auto* shared = static_cast<volatile std::uint64_t*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  shared[0] = 0;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t watcher = fork();
  if (watcher == 0) {
    // A native process: waits for the VM-mode parent's write.
    char byte;
    if (read(go[0], &byte, 1) != 1) _exit(2);
    _exit(shared[0] == 0x64756e6b ? 0 : 1);
  }
  test::enter_or_fail();
  shared[0] = 0x64756e6b;
  ASSERT_EQ(write(go[1], "x", 1), 1);
  leave();
  int status = 0;
  ASSERT_EQ(waitpid(watcher, &status, 0), watcher);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Touches `depth` bytes of stack below the current frame, a page at a time.
__attribute__((noinline)) std::uint64_t touch_stack(std::size_t depth) {
  volatile std::uint8_t* block = static_cast<volatile std::uint8_t*>(alloca(depth));
  for (std::size_t i = 0; i < depth; i += 4096) block[i] = static_cast<std::uint8_t>(i >> 12);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < depth; i += 4096) sum += block[i];
  return sum;
}

TEST(AddressSpace, MainStackGrowsBySeveralMegabytes) {
  constexpr std::size_t kDepth = 6 * kMiB;
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < kDepth; i += 4096) expected += static_cast<std::uint8_t>(i >> 12);
  test::enter_or_fail();
  EXPECT_EQ(touch_stack(kDepth), expected);
  leave();
}

TEST(AddressSpace, MappingsMadeBeforeEntryAreReachable) {
  void* p = mmap(nullptr, 3 * kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  fill(static_cast<volatile std::uint8_t*>(p), 3 * kMiB, 21);
  test::enter_or_fail();
  EXPECT_TRUE(check(static_cast<volatile std::uint8_t*>(p), 3 * kMiB, 21));
  leave();
  munmap(p, 3 * kMiB);
}

// What a SIGSEGV handler saw, reported through a pipe by a child.
struct FaultReport {
  int signal;
  int code;
  std::uintptr_t address;
  bool in_guest;  // the handler ran in VM mode
};

int report_fd = -1;

void report_fault(int sig, siginfo_t* info, void*) {
  FaultReport r{sig, info->si_code, reinterpret_cast<std::uintptr_t>(info->si_addr), test::in_guest_ring0()};
  (void)!write(report_fd, &r, sizeof r);
  _exit(0);
}

// Runs `touch` in a child that entered VM mode, with a SIGSEGV/SIGBUS
// handler that reports what it got.
FaultReport fault_in_child(void (*touch)()) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    report_fd = fds[1];
    struct sigaction sa {};
    sa.sa_sigaction = report_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    if (!enter()) _exit(3);
    touch();
    _exit(4);  // the access did not fault
  }
  close(fds[1]);
  FaultReport r{};
  EXPECT_EQ(read(fds[0], &r, sizeof r), static_cast<ssize_t>(sizeof r));
  close(fds[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_TRUE(r.in_guest) << "the handler ran outside VM mode";
  return r;
}

constexpr std::uintptr_t kUnmapped = 0x6d75'6e6b'0000;  // never mapped by anyone

TEST(AddressSpace, UnmappedAccessIsSigsegvAtTheAddress) {
  FaultReport r = fault_in_child([] { *reinterpret_cast<volatile int*>(kUnmapped + 8) = 1; });
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_EQ(r.code, SEGV_MAPERR);
  EXPECT_EQ(r.address, kUnmapped + 8);
}

TEST(AddressSpace, WriteToReadOnlyMemoryIsSigsegvAccerr) {
  static void* page;
  page = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  FaultReport r = fault_in_child([] { *static_cast<volatile int*>(page) = 1; });
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_EQ(r.code, SEGV_ACCERR);
  EXPECT_EQ(r.address, reinterpret_cast<std::uintptr_t>(page));
}

TEST(AddressSpace, AccessAfterMunmapIsSigsegv) {
  FaultReport r = fault_in_child([] {
    auto* p = static_cast<volatile int*>(
        mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    p[0] = 1;
    munmap(const_cast<int*>(p), 8192);
    report_fd = report_fd;  // keep the store below from being reordered before munmap
    p[1024] = 2;
  });
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_EQ(r.code, SEGV_MAPERR);
}

TEST(AddressSpace, ProtectionChangesAfterEntryApply) {
  FaultReport r = fault_in_child([] {
    auto* p = static_cast<volatile int*>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    p[0] = 1;
    mprotect(const_cast<int*>(p), 4096, PROT_READ);
    if (p[0] != 1) _exit(5);
    p[0] = 2;
  });
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_EQ(r.code, SEGV_ACCERR);
}

TEST(AddressSpace, FileMappingBeyondEndOfFileIsSigbus) {
  static void* page;
  char path[] = "/dev/shm/dunk-bus-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  page = mmap(nullptr, 8192, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(page, MAP_FAILED);
  close(fd);
  FaultReport r = fault_in_child([] { (void)static_cast<volatile char*>(page)[4096]; });
  EXPECT_EQ(r.signal, SIGBUS);
  EXPECT_EQ(r.address, reinterpret_cast<std::uintptr_t>(page) + 4096);
}

}  // namespace
}  // namespace dunk
