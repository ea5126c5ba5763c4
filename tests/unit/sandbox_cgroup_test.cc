// The --cgroup-* limits' cgroup found from /proc/self/cgroup and
// /proc/self/mountinfo as the kernel writes them (no cgroup is made here).
#include <gtest/gtest.h>

#include <string>

#include "sandbox/cgroup.h"

namespace dunk::sandbox {
namespace {

constexpr const char* kUnified =
    "22 1 0:21 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    "23 1 0:22 / /proc rw,relatime shared:12 - proc proc rw\n";

TEST(SandboxCgroup, TheRootCgroup) {
  std::string why;
  EXPECT_EQ(cgroup_directory("0::/\n", kUnified, why), "/sys/fs/cgroup");
  EXPECT_EQ(why, "");
}

TEST(SandboxCgroup, ANestedCgroup) {
  std::string why;
  EXPECT_EQ(cgroup_directory("0::/user.slice/user-1000.slice/session-2.scope\n", kUnified, why),
            "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope");
}

// A hybrid system: v1 hierarchies, and cgroup2 at /sys/fs/cgroup/unified.
TEST(SandboxCgroup, Hybrid) {
  const char* mounts =
      "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n"
      "31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n";
  std::string why;
  EXPECT_EQ(cgroup_directory("4:memory:/a\n0::/a/b\n", mounts, why), "/sys/fs/cgroup/unified/a/b");
}

// A mount of part of the hierarchy (a container's bind mount): its root is
// cut from the path; the longest root holding the path wins; escapes are
// decoded.
TEST(SandboxCgroup, APartOfTheHierarchyMounted) {
  const char* mounts =
      "40 1 0:21 / /host\\040cgroup rw - cgroup2 cgroup2 rw\n"
      "41 1 0:21 /docker/abc /sys/fs/cgroup rw master:1 - cgroup2 cgroup2 rw\n";
  std::string why;
  EXPECT_EQ(cgroup_directory("0::/docker/abc/inner\n", mounts, why), "/sys/fs/cgroup/inner");
  EXPECT_EQ(cgroup_directory("0::/docker/abc\n", mounts, why), "/sys/fs/cgroup");
  EXPECT_EQ(cgroup_directory("0::/other\n", mounts, why), "/host cgroup/other");
}

TEST(SandboxCgroup, NoneWithTheReason) {
  std::string why;
  EXPECT_EQ(cgroup_directory("0::/\n", "23 1 0:22 / /proc rw - proc proc rw\n", why), "");
  EXPECT_EQ(why, "no cgroup v2 file system is mounted (e.g. mount -t cgroup2 none /sys/fs/cgroup)");
  EXPECT_EQ(cgroup_directory("4:memory:/a\n", kUnified, why), "");
  EXPECT_EQ(why, "this process is in no cgroup v2 (no \"0::\" line in /proc/self/cgroup)");
  const char* partial = "41 1 0:21 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(cgroup_directory("0::/elsewhere\n", partial, why), "");
  EXPECT_EQ(why, "no cgroup2 mount holds this process's cgroup /elsewhere");
}

TEST(SandboxCgroup, Limits) {
  CgroupLimits none;
  EXPECT_FALSE(none.any());
  CgroupLimits pids;
  pids.pids_max = 8;
  EXPECT_TRUE(pids.any());
}

}  // namespace
}  // namespace dunk::sandbox
