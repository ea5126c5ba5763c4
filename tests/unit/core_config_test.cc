// The machine's configuration as a value (core/config.h).
#include "core/config.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

namespace dunk::core {
namespace {

std::map<std::string, std::string> environment;

MachineConfig from(std::map<std::string, std::string> env) {
  environment = std::move(env);
  return MachineConfig::from_environment([](const char* name) -> const char* {
    auto it = environment.find(name);
    return it == environment.end() ? nullptr : it->second.c_str();
  });
}

TEST(MachineConfig, AnEmptyEnvironmentGivesTheDefaults) {
  const MachineConfig c = from({});
  EXPECT_FALSE(c.trace);
  EXPECT_EQ(c.inherited_kvm_fd, -1);
  EXPECT_STREQ(c.kvm_device, "/dev/kvm");
  EXPECT_EQ(c.max_vcpus, 0u);
  EXPECT_EQ(c.gpa_bits, 0u);
  EXPECT_EQ(c.required_capability, -1);
  EXPECT_STREQ(c.stats_path, "");
  EXPECT_STREQ(c.gdb_address, "");
}

TEST(MachineConfig, EachVariableIsRead) {
  const MachineConfig c = from({{"DUNK_TRACE", "1"},
                                {"DUNK_KVM_FD", "1031"},
                                {"DUNK_KVM_DEVICE", "/dev/other"},
                                {"DUNK_MAX_VCPUS", "4"},
                                {"DUNK_GPA_BITS", "36"},
                                {"DUNK_REQUIRE_KVM_CAP", "0xe8"},
                                {"DUNK_STATS", "/tmp/stats"},
                                {"DUNK_GDB", "unix:/tmp/gdb.sock"}});
  EXPECT_TRUE(c.trace);
  EXPECT_EQ(c.inherited_kvm_fd, 1031);
  EXPECT_STREQ(c.kvm_device, "/dev/other");
  EXPECT_EQ(c.max_vcpus, 4u);
  EXPECT_EQ(c.gpa_bits, 36u);
  EXPECT_EQ(c.required_capability, 0xe8);
  EXPECT_STREQ(c.stats_path, "/tmp/stats");
  EXPECT_STREQ(c.gdb_address, "unix:/tmp/gdb.sock");
}

TEST(MachineConfig, ValuesThatDoNotParseAreIgnored) {
  const MachineConfig c = from({{"DUNK_TRACE", "0"},
                                {"DUNK_KVM_FD", "12x"},
                                {"DUNK_KVM_DEVICE", ""},
                                {"DUNK_MAX_VCPUS", "-3"},
                                {"DUNK_GPA_BITS", "12"},
                                {"DUNK_REQUIRE_KVM_CAP", "cap"},
                                {"DUNK_STATS", std::string(400, 'a')}});
  EXPECT_FALSE(c.trace);
  EXPECT_EQ(c.inherited_kvm_fd, -1);
  EXPECT_STREQ(c.kvm_device, "/dev/kvm");
  EXPECT_EQ(c.max_vcpus, 0u);
  EXPECT_EQ(c.gpa_bits, 0u);  // below what a 64-bit machine has
  EXPECT_EQ(c.required_capability, -1);
  EXPECT_STREQ(c.stats_path, "");  // too long for the value: not truncated into another path
}

}  // namespace
}  // namespace dunk::core
