// The schema against the kernel: every number in the system's
// asm/unistd_64.h has its row (and nothing else does), and the rows agree
// with the kernel's prototypes (abi_kernel_facts.inc): argument counts,
// which arguments are pointers, and that `const` pointers are read-only.
#include <cstdint>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "abi/commands.h"
#include "abi/names.h"
#include "abi/syscalls.h"

namespace dunk::abi {
namespace {

struct KernelFacts {
  unsigned number;
  const char* name;
  unsigned args;
  unsigned pointers;
  unsigned const_pointers;
  unsigned descriptors;
};

constexpr KernelFacts kKernel[] = {
#include "abi_kernel_facts.inc"
};

constexpr const char* kUnistd = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

std::map<std::string, unsigned> header_numbers() {
  std::ifstream in(kUnistd);
  std::map<std::string, unsigned> numbers;
  if (!in) return numbers;
  const std::regex define(R"(^#define __NR_(\w+)\s+(\d+)\s*$)");
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, define)) numbers[m[1]] = static_cast<unsigned>(std::stoul(m[2]));
  }
  return numbers;
}

TEST(AbiTable, EveryNumberOfTheSystemHeaderHasItsRow) {
  const auto numbers = header_numbers();
  ASSERT_FALSE(numbers.empty()) << kUnistd << " is missing or lists no system calls: install linux-libc-dev";
  // Debian 12's header (Linux 6.1) lists 362; a newer one lists more, and
  // then the table is behind: this test says which calls it lacks.
  for (const auto& [name, number] : numbers) {
    const CallSpec* c = lookup(number);
    ASSERT_NE(c, nullptr) << "no row for " << name << " (" << number << ")";
    EXPECT_EQ(std::string(c->name), name) << number;
    EXPECT_EQ(c->number, number);
    EXPECT_EQ(lookup(std::string_view(name)), c) << name;
    EXPECT_EQ(std::string(name_of(number)), name);
  }
  std::set<unsigned> in_header;
  for (const auto& [name, number] : numbers) in_header.insert(number);
  for (const CallSpec& c : all_calls()) {
    EXPECT_TRUE(in_header.count(c.number)) << "row " << c.name << " (" << c.number << ") is not in " << kUnistd;
  }
  EXPECT_EQ(all_calls().size(), numbers.size());
  std::printf("checked %zu calls of %s\n", numbers.size(), kUnistd);
}

TEST(AbiTable, LookupIsAnIndexWithHoles) {
  EXPECT_EQ(std::string(lookup(0)->name), "read");
  EXPECT_EQ(std::string(lookup(450)->name), "set_mempolicy_home_node");
  for (unsigned n = 335; n < 424; ++n) EXPECT_EQ(lookup(n), nullptr) << n;
  EXPECT_EQ(lookup(451), nullptr);
  EXPECT_EQ(lookup(~std::uint64_t{0}), nullptr);
  EXPECT_EQ(lookup(kX32Bit | 0), nullptr);  // x32's read
  // The kernel reads the low 32 bits of RAX: high bits do not change the call.
  EXPECT_EQ(lookup(0xffffffff00000027), lookup(39));
  EXPECT_EQ(lookup(0x8000000000000000 | 1), lookup(1));
  EXPECT_EQ(lookup(0x00000000ffffffff), nullptr);  // -1
  EXPECT_EQ(lookup(std::string_view("no_such_call")), nullptr);
  EXPECT_EQ(lookup(std::string_view("")), nullptr);
  EXPECT_EQ(name_of(400), nullptr);
}

bool has_command(const CallSpec& c) {
  for (unsigned i = 0; i < c.arg_count; ++i) {
    if (c.args[i].kind == Kind::kCommand) return true;
  }
  return false;
}

// Every way a command can set argument i, and the call's own row.
std::vector<Arg> meanings(const CallSpec& c, unsigned i) {
  std::vector<Arg> all{c.args[i]};
  for (unsigned k = 0; k < c.arg_count; ++k) {
    if (c.args[k].kind != Kind::kCommand) continue;
    const CommandTable* t = command_table(c.args[k].commands);
    if (t == nullptr) continue;
    for (const Command& row : t->rows) {
      if ((row.overrides & (1u << i)) != 0) all.push_back(row.args[i]);
    }
  }
  return all;
}

TEST(AbiTable, AgreesWithTheKernelsPrototypes) {
  // Pointers the kernel declares and does not use: no access to describe.
  const std::set<std::string> unused_pointers = {
      "getcpu:2",     // struct getcpu_cache: unused since Linux 2.6.24
      "io_cancel:2",  // struct io_event *result: unused since Linux 4.19
  };
  std::set<unsigned> implemented;
  unsigned pointers = 0, consts = 0;
  for (const KernelFacts& k : kKernel) {
    implemented.insert(k.number);
    const CallSpec* c = lookup(k.number);
    ASSERT_NE(c, nullptr) << k.name;
    EXPECT_EQ(std::string(c->name), k.name);
    EXPECT_EQ(c->arg_count, k.args) << k.name << " declares " << k.args << " arguments";
    for (unsigned i = 0; i < k.args && i < kMaxArgs; ++i) {
      if ((k.pointers & (1u << i)) == 0) continue;
      ++pointers;
      const std::string key = std::string(k.name) + ":" + std::to_string(i);
      const Arg& a = c->args[i];
      EXPECT_TRUE(a.is_pointer() || has_command(*c) || unused_pointers.count(key))
          << key << " (" << (a.name ? a.name : "?") << ") is a __user pointer in the kernel's prototype";
      if ((k.const_pointers & (1u << i)) == 0) continue;
      ++consts;
      // Read-only in every meaning a command can give it.
      for (const Arg& m : meanings(*c, i)) {
        if (!m.is_pointer()) continue;
        EXPECT_TRUE(m.dir == Dir::kRead || m.dir == Dir::kAddressOnly)
            << key << " (" << (m.name ? m.name : "?") << ") points to const memory but is not read-only";
      }
    }
  }
  // Calls without an entry point answer ENOSYS, and the table says so.
  for (const CallSpec& c : all_calls()) {
    EXPECT_EQ(c.has(kNotImplemented), implemented.count(c.number) == 0) << c.name;
  }
  std::printf("checked %zu prototypes: %u pointer arguments, %u of them const\n", std::size(kKernel), pointers,
              consts);
  EXPECT_EQ(std::size(kKernel), 346u);
  EXPECT_GT(consts, 100u);
}

void check_arg(const std::string& where, const CallSpec& c, const Arg& a, unsigned i) {
  if (!a.used()) return;
  EXPECT_NE(a.name, nullptr) << where;
  if (a.kind == Kind::kMemory) {
    EXPECT_NE(a.length.from, LengthFrom::kNone) << where << ": memory without a length";
    EXPECT_NE(a.dir, Dir::kNone) << where;
    if (writes(a.dir) && a.inner == Dir::kNone && (a.flags & kAsync) == 0) {
      EXPECT_NE(a.written, Written::kNever) << where << ": written, but never?";
    }
    if (!writes(a.dir) && a.inner == Dir::kNone) {
      EXPECT_EQ(a.written, Written::kNever) << where;
    }
  }
  if (a.kind == Kind::kString || a.kind == Kind::kPath) {
    EXPECT_EQ(a.length.from, LengthFrom::kNul) << where;
    EXPECT_GT(a.length.size, 0u) << where;
  }
  const LengthFrom from = a.length.from;
  if (from == LengthFrom::kArg || from == LengthFrom::kPointee || from == LengthFrom::kBitsArg ||
      from == LengthFrom::kPagesArg) {
    ASSERT_LT(a.length.arg, c.arg_count) << where << ": length from a missing argument";
    EXPECT_NE(a.length.arg, i) << where;
    const Arg& len = c.args[a.length.arg];
    if (from == LengthFrom::kPointee) {
      EXPECT_EQ(len.kind, Kind::kMemory) << where << ": a value-result length must be a pointer";
      EXPECT_EQ(len.dir, Dir::kReadWrite) << where;
    } else {
      EXPECT_FALSE(len.is_pointer()) << where << ": length from a pointer argument";
    }
  }
  if (a.format == Format::kFlags || a.format == Format::kEnum) {
    EXPECT_NE(name_set(a.names), nullptr) << where << ": no such name set";
  }
  if (a.kind == Kind::kCommand) {
    EXPECT_NE(command_table(a.commands), nullptr) << where;
  }
}

// The descriptor arguments the kernel names as such are descriptors in the
// schema: checked against the kernel, not against the table itself.
TEST(AbiTable, DescriptorArgumentsAreTheKernels) {
  unsigned checked = 0;
  for (const KernelFacts& k : kKernel) {
    const CallSpec* c = lookup(k.number);
    ASSERT_NE(c, nullptr) << k.name;
    for (unsigned i = 0; i < k.args && i < kMaxArgs; ++i) {
      if ((k.descriptors & (1u << i)) == 0) continue;
      ++checked;
      const Arg& a = c->args[i];
      EXPECT_TRUE(a.is_fd() || a.kind == Kind::kRemoteFd)
          << k.name << " argument " << i << " (" << (a.name ? a.name : "?") << ") is a descriptor to the kernel";
    }
  }
  std::printf("checked %u descriptor arguments the kernel names\n", checked);
  EXPECT_GE(checked, 125u);
}

TEST(AbiTable, RowsAreWellFormed) {
  for (const CallSpec& c : all_calls()) {
    unsigned commands = 0;
    for (unsigned i = 0; i < c.arg_count; ++i) {
      check_arg(std::string(c.name) + " arg " + std::to_string(i), c, c.args[i], i);
      if (c.args[i].kind == Kind::kCommand) ++commands;
    }
    EXPECT_LE(commands, 1u) << c.name << ": one command argument at most";
    EXPECT_EQ(c.has(kNeverComplete), c.incomplete != nullptr) << c.name << ": say why it is never complete";
    for (unsigned i = 0; i < c.arg_count; ++i) {
      if (c.args[i].kind != Kind::kCommand) continue;
      const CommandTable* t = command_table(c.args[i].commands);
      ASSERT_NE(t, nullptr) << c.name;
      for (const Command& row : t->rows) {
        for (unsigned k = 0; k < kMaxArgs; ++k) {
          if ((row.overrides & (1u << k)) == 0) continue;
          EXPECT_LT(k, c.arg_count) << c.name << " " << row.name << " sets argument " << k;
          EXPECT_NE(k, i) << c.name << " " << row.name << " replaces its own command";
          check_arg(std::string(c.name) + " " + row.name + " arg " + std::to_string(k), c, row.args[k], k);
        }
      }
    }
  }
}

TEST(AbiTable, FlagsAndClassesOfKnownCalls) {
  EXPECT_TRUE(lookup(std::string_view("exit_group"))->has(kNoReturn));
  EXPECT_TRUE(lookup(std::string_view("openat"))->has(kReturnsFd));
  EXPECT_TRUE(lookup(std::string_view("mmap"))->has(kReturnsAddress));
  EXPECT_TRUE(lookup(std::string_view("set_tid_address"))->has(kAsyncWriter));
  EXPECT_TRUE(lookup(std::string_view("io_uring_enter"))->has(kNeverComplete));
  EXPECT_TRUE(lookup(std::string_view("uselib"))->has(kNotImplemented));
  EXPECT_TRUE(lookup(std::string_view("clone3"))->has(kNewProcess));
  EXPECT_EQ(lookup(std::string_view("connect"))->classes & kClassNetwork, kClassNetwork);
  // Every implemented call is in some class but a few machine-wide odd ones.
  unsigned unclassed = 0;
  for (const CallSpec& c : all_calls()) unclassed += c.classes == kClassNone;
  EXPECT_LT(unclassed, 30u);
}

}  // namespace
}  // namespace dunk::abi
