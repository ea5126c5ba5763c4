#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <thread>
#include <cstddef>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/fd_listing.h"
#include "base/fd_placement.h"

namespace dunk {
namespace {

TEST(FdDirectory, RecognisesTheProcessAndItsThreads) {
  EXPECT_TRUE(is_fd_directory_of("/proc/1234/fd", 1234));
  EXPECT_TRUE(is_fd_directory_of("/proc/1234/task/1240/fd", 1234));
  EXPECT_FALSE(is_fd_directory_of("/proc/1234/fd", 123));
  EXPECT_FALSE(is_fd_directory_of("/proc/12345/fd", 1234));
  EXPECT_TRUE(is_fd_directory_of("/proc/1234/fdinfo", 1234));
  EXPECT_TRUE(is_fd_directory_of("/proc/1234/task/1240/fdinfo", 1234));
  EXPECT_FALSE(is_fd_directory_of("/proc/1234/fdinfox", 1234));
  EXPECT_FALSE(is_fd_directory_of("/proc/1234/task//fd", 1234));
  EXPECT_FALSE(is_fd_directory_of("/proc/1234/fd/3", 1234));
  EXPECT_FALSE(is_fd_directory_of("/proc/self/fd", 1234));
  EXPECT_FALSE(is_fd_directory_of("/home/proc/1234/fd", 1234));
  EXPECT_FALSE(is_fd_directory_of("", 1234));
}

TEST(FdDirectory, PathsThatNameOneOfTheProcesssDescriptors) {
  EXPECT_EQ(fd_named_by_path("/proc/self/fd/1024", 77), 1024);
  EXPECT_EQ(fd_named_by_path("/proc/self/fdinfo/3", 77), 3);
  EXPECT_EQ(fd_named_by_path("/proc/thread-self/fd/5", 77), 5);
  EXPECT_EQ(fd_named_by_path("/proc/77/fd/9", 77), 9);
  EXPECT_EQ(fd_named_by_path("/proc/77/task/78/fdinfo/9", 77), 9);
  EXPECT_EQ(fd_named_by_path("/dev/fd/0", 77), 0);
  EXPECT_EQ(fd_named_by_path("/proc/self/fd/1024/", 77), 1024);  // whatever follows N
  EXPECT_EQ(fd_named_by_path("/proc/self/fd/4/x", 77), 4);
  EXPECT_FALSE(fd_named_by_path("/proc/78/fd/9", 77));          // another process
  EXPECT_FALSE(fd_named_by_path("/proc/self/fd", 77));          // the directory itself
  EXPECT_FALSE(fd_named_by_path("/proc/self/fd/", 77));
  EXPECT_FALSE(fd_named_by_path("/proc/self/fd/12a", 77));
  EXPECT_FALSE(fd_named_by_path("/proc/self/fd/99999999999", 77));
  EXPECT_FALSE(fd_named_by_path("/proc/self/maps", 77));
  EXPECT_FALSE(fd_named_by_path("proc/self/fd/3", 77));
  EXPECT_FALSE(fd_named_by_path("/proc/77/task/fd/3", 77));
}

TEST(FdDirectory, EntryNamesThatAreDescriptors) {
  EXPECT_EQ(fd_of_entry_name("0"), 0);
  EXPECT_EQ(fd_of_entry_name("1024"), 1024);
  EXPECT_EQ(fd_of_entry_name("2147483647"), 2147483647);
  EXPECT_EQ(fd_of_entry_name("."), std::nullopt);
  EXPECT_EQ(fd_of_entry_name(".."), std::nullopt);
  EXPECT_EQ(fd_of_entry_name(""), std::nullopt);
  EXPECT_EQ(fd_of_entry_name("012"), std::nullopt);
  EXPECT_EQ(fd_of_entry_name("12a"), std::nullopt);
  EXPECT_EQ(fd_of_entry_name("2147483648"), std::nullopt);
  EXPECT_EQ(fd_of_entry_name("99999999999999999999"), std::nullopt);
}

// A getdents64 result built by hand: the layout of getdents64(2).
struct Listing {
  alignas(8) std::array<std::byte, 1024> bytes{};
  std::size_t size = 0;

  void add(const char* name, std::int64_t off) {
    const std::size_t reclen = (kDirent64NameOffset + std::strlen(name) + 1 + 7) & ~std::size_t{7};
    std::byte* record = bytes.data() + size;
    const std::uint64_t ino = 100 + size;
    const auto length = static_cast<std::uint16_t>(reclen);
    std::memcpy(record, &ino, 8);
    std::memcpy(record + 8, &off, 8);
    std::memcpy(record + kDirent64ReclenOffset, &length, 2);
    record[18] = std::byte{DT_LNK};
    std::memcpy(record + kDirent64NameOffset, name, std::strlen(name) + 1);
    size += reclen;
  }

  std::vector<std::string> names(std::size_t upto) const {
    std::vector<std::string> out;
    for (std::size_t at = 0; at < upto;) {
      std::uint16_t reclen;
      std::memcpy(&reclen, bytes.data() + at + kDirent64ReclenOffset, 2);
      out.emplace_back(reinterpret_cast<const char*>(bytes.data() + at + kDirent64NameOffset));
      at += reclen;
    }
    return out;
  }
};

TEST(FdDirectory, DropsOnlyTheHiddenDescriptors) {
  Listing listing;
  for (const char* name : {".", "..", "0", "1", "2", "1024", "7", "1025", "longer-name-not-a-number"}) {
    listing.add(name, static_cast<std::int64_t>(listing.size + 1));
  }
  std::set<int> hidden = {1024, 1025, 5};
  std::size_t kept = drop_fd_entries(listing.bytes.data(), listing.size, [&](int fd) { return hidden.contains(fd); });
  EXPECT_EQ(listing.names(kept),
            (std::vector<std::string>{".", "..", "0", "1", "2", "7", "longer-name-not-a-number"}));
}

TEST(FdDirectory, EverythingHiddenLeavesNothing) {
  Listing listing;
  listing.add("1024", 1);
  listing.add("1025", 2);
  EXPECT_EQ(drop_fd_entries(listing.bytes.data(), listing.size, [](int fd) { return fd >= 1024; }), 0u);
}

TEST(FdDirectory, AMalformedTailIsKept) {
  Listing listing;
  listing.add("1024", 1);
  listing.add("3", 2);
  const std::size_t whole = listing.size;
  // The second record claims to run past the end.
  std::uint16_t too_long = 200;
  std::memcpy(listing.bytes.data() + 24 + kDirent64ReclenOffset, &too_long, 2);
  std::size_t kept = drop_fd_entries(listing.bytes.data(), whole, [](int fd) { return fd == 1024; });
  EXPECT_EQ(kept, whole - 24);
}

class FdPlacement : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0); }
  void TearDown() override { setrlimit(RLIMIT_NOFILE, &saved_); }

  // Sets the limit, opens a descriptor and places it; returns where it went
  // (-1 when something before the placement failed).
  static int place_under(rlimit limit) {
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -1 : move_out_of_program_range(fd);
  }

  rlimit saved_{};
};

// In the order of decreasing hard limits: an unprivileged process cannot
// raise its hard limit again, and running the binary runs them in one process.
TEST_F(FdPlacement, AHugeLimitWithoutRoomAboveStaysUnder8192) {
  // The table of descriptors grows to the highest number; every fork copies it.
  ASSERT_GE(saved_.rlim_max, 16384u) << "hard RLIMIT_NOFILE too low for this test";
  int moved = place_under({16384, 16384});
  EXPECT_GE(moved, 8192 - 256);
  EXPECT_LT(moved, 8192);
  close(moved);
}

TEST_F(FdPlacement, GoesAboveTheSoftLimitAndRestoresIt) {
  rlimit limit{1500, 4096};
  if (saved_.rlim_max < limit.rlim_max) limit.rlim_max = saved_.rlim_max;
  ASSERT_GT(limit.rlim_max, limit.rlim_cur + 16) << "hard RLIMIT_NOFILE too low for this test";
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  int moved = move_out_of_program_range(fd);
  EXPECT_GE(moved, 1500);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "the old number is closed";
  EXPECT_EQ(fcntl(moved, F_GETFD), FD_CLOEXEC);
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, 1500u);
  EXPECT_EQ(after.rlim_max, limit.rlim_max);
  // The program's next open gets the lowest free number, as natively.
  int next = open("/dev/null", O_RDONLY);
  EXPECT_EQ(next, fd);
  close(next);
  close(moved);
}

TEST_F(FdPlacement, ALowLimitStillPutsThemAt1024OrAbove) {
  // A program that lowered its limit under descriptors it still holds may
  // probe those numbers.
  rlimit limit{29, 4096};
  if (saved_.rlim_max < limit.rlim_max) limit.rlim_max = saved_.rlim_max;
  ASSERT_GT(limit.rlim_max, 1024u + 16) << "hard RLIMIT_NOFILE too low for this test";
  int moved = place_under(limit);
  EXPECT_GE(moved, 1024);
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, 29u);
  close(moved);
}

TEST_F(FdPlacement, WithoutRoomAboveGoesToTheTopBelowTheLimit) {
  int moved = place_under({1024, 1024});
  EXPECT_GE(moved, 1024 - 256);
  EXPECT_LT(moved, 1024);
  close(moved);
}

TEST_F(FdPlacement, AHardLimitUnder1024StillLeavesRoomAboveTheSoftOne) {
  int moved = place_under({256, 1000});
  EXPECT_GE(moved, 256);
  EXPECT_LT(moved, 1000);
  close(moved);
}

// The monitor holds the placement lock around the program's own
// RLIMIT_NOFILE calls; a placement must wait for it, and lift nothing
// meanwhile.
TEST_F(FdPlacement, WaitsForThePlacementLock) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::atomic<int> moved{-2};
  fd_placement_lock().lock();
  std::thread placer([&] { moved = move_out_of_program_range(fd); });
  usleep(100'000);
  EXPECT_EQ(moved.load(), -2) << "placed while the lock was held";
  rlimit during{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &during), 0);
  EXPECT_EQ(during.rlim_cur, limit.rlim_cur);
  fd_placement_lock().unlock();
  placer.join();
  EXPECT_GE(moved.load(), 0);
  close(moved.load());
}

TEST_F(FdPlacement, StaysWhenNothingIsFree) {
  rlimit limit{8, 8};
  std::vector<int> filler;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  for (int fd; (fd = open("/dev/null", O_RDONLY)) >= 0;) filler.push_back(fd);
  ASSERT_FALSE(filler.empty());
  int last = filler.back();
  filler.pop_back();
  EXPECT_EQ(move_out_of_program_range(last), last);
  EXPECT_EQ(fcntl(last, F_GETFD), 0) << "still open where it was";
  close(last);
  for (int fd : filler) close(fd);
}

}  // namespace
}  // namespace dunk
