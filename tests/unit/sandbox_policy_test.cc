// The policy engine: parsing every construct of the OCI seccomp object and
// Docker's profile format, the exact refusal for each kind of bad input,
// each comparison at its boundaries, the built-in default, and --learn's
// writer. (sandbox_differential_test.cc compares decisions with libseccomp.)
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "sandbox/compile.h"
#include "sandbox/policy.h"
#include "sandbox/syscall_names.h"

namespace dunk::sandbox {
namespace {

constexpr std::uint64_t kMax = ~std::uint64_t{0};
constexpr std::uint64_t kCapSysAdmin = std::uint64_t{1} << 21;
constexpr std::uint64_t kCapSysBoot = std::uint64_t{1} << 22;

LoadOptions opts(std::uint64_t caps = 0, KernelVersion kernel = {6, 1}) {
  LoadOptions o;
  o.source = "p.json";
  o.capabilities = caps;
  o.kernel = kernel;
  return o;
}

int nr(const char* name) { return x86_64_number(name).value(); }

std::string fixture(const char* name) {
  std::ifstream in(std::string(DUNK_UNIT_DATA) + "/sandbox/" + name);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Policy load_ok(const std::string& text, const LoadOptions& o = opts()) {
  LoadResult r = load_policy_text(text, o);
  EXPECT_TRUE(r.ok()) << r.error();
  return r.ok() ? std::move(r).value() : Policy{};
}

std::string load_error(const std::string& text, const LoadOptions& o = opts()) {
  LoadResult r = load_policy_text(text, o);
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.error();
}

// A policy of one rule for `name` with these args.
std::string one_rule(const std::string& name, const std::string& args, const std::string& action = "SCMP_ACT_ALLOW") {
  return R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [")" + name + R"("], "action": ")" + action +
         R"(", "args": [)" + args + "]}]}";
}

Action action_of(const Policy& p, const char* name, Args args = {}) { return p.decide(nr(name), args).action; }

// ---- Names ---------------------------------------------------------------------------

TEST(SandboxNames, X86_64NamesAndNumbersAreTheKernels) {
  EXPECT_EQ(x86_64_number("read"), 0);
  EXPECT_EQ(x86_64_number("openat"), 257);
  EXPECT_EQ(x86_64_number("set_mempolicy_home_node"), 450);
  EXPECT_EQ(x86_64_number("_llseek"), std::nullopt);
  EXPECT_STREQ(x86_64_name(39), "getpid");
  EXPECT_EQ(x86_64_name(335), nullptr);  // a gap in the table
  EXPECT_EQ(x86_64_max_number(), 450);
  EXPECT_TRUE(is_other_linux_call("_llseek"));
  EXPECT_TRUE(is_other_linux_call("fchmodat2"));
  EXPECT_FALSE(is_other_linux_call("opne"));
  EXPECT_FALSE(is_other_linux_call("read"));
}

// ---- Comparisons ---------------------------------------------------------------------------

TEST(SandboxCompare, EveryOperatorAtItsBoundaries) {
  struct Case {
    const char* op;
    std::uint64_t value;
    std::uint64_t yes[3];
    std::uint64_t no[3];
  } cases[] = {
      {"SCMP_CMP_EQ", 5, {5, 5, 5}, {4, 6, 0x100000005}},
      {"SCMP_CMP_NE", 5, {4, 6, 0x100000005}, {5, 5, 5}},
      {"SCMP_CMP_LT", 5, {0, 4, 4}, {5, 6, kMax}},
      {"SCMP_CMP_LE", 5, {0, 4, 5}, {6, 0x100000000, kMax}},
      {"SCMP_CMP_GT", 5, {6, 0x100000000, kMax}, {0, 4, 5}},
      {"SCMP_CMP_GE", 5, {5, 6, kMax}, {0, 4, 4}},
      // 64-bit values: the high word counts (libseccomp compares all 64 bits).
      {"SCMP_CMP_GT", 0x100000000, {0x100000001, 0x200000000, kMax}, {0xffffffff, 0x100000000, 0}},
      {"SCMP_CMP_LT", 0x100000000, {0xffffffff, 0, 1}, {0x100000000, 0x100000001, kMax}},
      {"SCMP_CMP_LE", kMax, {0, 1, kMax}, {}},
      {"SCMP_CMP_GE", 0, {0, 1, kMax}, {}},
  };
  for (const Case& c : cases) {
    Policy p = load_ok(one_rule("read", R"({"index": 1, "value": )" + std::to_string(c.value) + R"(, "op": ")" + c.op + "\"}"));
    for (std::uint64_t v : c.yes) EXPECT_EQ(action_of(p, "read", {0, v}), Action::kAllow) << c.op << " " << v;
    if (c.no[0] == 0 && c.no[1] == 0 && c.no[2] == 0) continue;
    for (std::uint64_t v : c.no) EXPECT_EQ(action_of(p, "read", {0, v}), Action::kErrno) << c.op << " " << v;
  }
}

TEST(SandboxCompare, MaskedEqualCountsOnlyTheMasksBits) {
  // (arg & 0xf0) == (0x35 & 0xf0): valueTwo's bits outside the mask do not count.
  Policy p = load_ok(one_rule("read", R"({"index": 2, "value": 240, "valueTwo": 53, "op": "SCMP_CMP_MASKED_EQ"})"));
  for (std::uint64_t v : {0x30ull, 0x3full, 0x130ull, 0xffffffff0000003full}) {
    EXPECT_EQ(action_of(p, "read", {0, 0, v}), Action::kAllow) << v;
  }
  for (std::uint64_t v : {0x0ull, 0x20ull, 0x40ull, 0x35ull ^ 0x10}) {
    EXPECT_EQ(action_of(p, "read", {0, 0, v}), Action::kErrno) << v;
  }
  // The high word under a 64-bit mask.
  Policy q = load_ok(one_rule("read", R"({"index": 0, "value": 18446744069414584320, "valueTwo": 8589934592, "op": "SCMP_CMP_MASKED_EQ"})"));
  EXPECT_EQ(action_of(q, "read", {0x2'ffffffffull}), Action::kAllow);
  EXPECT_EQ(action_of(q, "read", {0x3'00000000ull}), Action::kErrno);
}

TEST(SandboxCompare, CommonValueFindsTheSmallestValueBothAccept) {
  Comparison gt{0, Compare::kGt, 10, 0}, lt{0, Compare::kLt, 20, 0}, eq{0, Compare::kEq, 15, 0};
  Comparison masked{0, Compare::kMaskedEq, 0xf0, 0x30};
  Comparison ne{0, Compare::kNe, 0x30, 0};
  EXPECT_EQ(common_value(&gt, &lt), 11u);
  EXPECT_EQ(common_value(&gt, &eq), 15u);
  EXPECT_EQ(common_value(&lt, &eq), 15u);
  EXPECT_EQ(common_value(&masked, &gt), 0x30u);
  EXPECT_EQ(common_value(&masked, &ne), 0x31u);
  Comparison big{0, Compare::kGt, 0x3f, 0};
  EXPECT_EQ(common_value(&masked, &big), 0x130u);  // the next value with 0x3_ in bits 4-7
  Comparison never{0, Compare::kLt, 0, 0};
  EXPECT_EQ(common_value(&never, nullptr), std::nullopt);
  Comparison eq20{0, Compare::kEq, 20, 0};
  EXPECT_EQ(common_value(&lt, &eq20), std::nullopt);
  Comparison m1{0, Compare::kMaskedEq, 0x3, 0x1}, m2{0, Compare::kMaskedEq, 0x6, 0x4};
  EXPECT_EQ(common_value(&m1, &m2), 0x5u);
  Comparison m3{0, Compare::kMaskedEq, 0x6, 0x0};
  EXPECT_EQ(common_value(&m1, &m3), 0x1u);
  Comparison m4{0, Compare::kMaskedEq, 0x1, 0x0};
  EXPECT_EQ(common_value(&m1, &m4), std::nullopt);
  Comparison top{0, Compare::kMaskedEq, kMax, kMax};
  Comparison below{0, Compare::kLt, kMax, 0};
  EXPECT_EQ(common_value(&top, &below), std::nullopt);
}

// ---- What a policy means ------------------------------------------------------------------

TEST(SandboxSemantics, TheFirstRuleWithoutConditionsDecidesItsCall) {
  Policy p = load_ok(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["read"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]},
      {"names": ["read", "write"], "action": "SCMP_ACT_LOG"},
      {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})");
  EXPECT_EQ(action_of(p, "read", {3}), Action::kLog);
  EXPECT_EQ(action_of(p, "read", {4}), Action::kLog);
  EXPECT_EQ(action_of(p, "write"), Action::kLog);
  ASSERT_EQ(p.rules_of(nr("read")).size(), 1u);
  EXPECT_EQ(p.rules_of(nr("read"))[0].source, 1);
  ASSERT_EQ(p.notes().size(), 2u);
  EXPECT_EQ(p.notes()[0], "syscalls[0]: read: never decides: syscalls[1] applies to every call of it");
  EXPECT_EQ(p.notes()[1], "syscalls[2]: read: never decides: syscalls[1] applies to every call of it");
}

TEST(SandboxSemantics, RulesWithTheDefaultActionChangeNothing) {
  // libseccomp refuses them and runc skips them: the ALLOW rule applies to
  // every read, fd 0 included.
  Policy p = load_ok(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5, "syscalls": [
      {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5, "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
      {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6, "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
      {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_NE"}]}]})");
  EXPECT_EQ(p.decide(nr("read"), {0}), (Decision{Action::kAllow, 0, 1}));
  EXPECT_EQ(p.decide(nr("read"), {1}), (Decision{Action::kErrno, 6, 0}));
  EXPECT_EQ(p.notes()[0], "syscalls[0]: its action is the default action: it changes nothing");
}

TEST(SandboxSemantics, ConditionsOfOneRuleAllHold) {
  Policy p = load_ok(one_rule("mmap", R"({"index": 2, "value": 4, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                                       {"index": 3, "value": 32, "valueTwo": 32, "op": "SCMP_CMP_MASKED_EQ"})"));
  EXPECT_EQ(action_of(p, "mmap", {0, 4096, 3, 0x22}), Action::kAllow);
  EXPECT_EQ(action_of(p, "mmap", {0, 4096, 7, 0x22}), Action::kErrno);  // PROT_EXEC
  EXPECT_EQ(action_of(p, "mmap", {0, 4096, 3, 0x02}), Action::kErrno);  // not anonymous
  EXPECT_EQ(p.describe_rule(0), "syscalls[0]: mmap: SCMP_ACT_ALLOW if arg2 & 4 == 0 and arg3 & 32 == 32");
}

TEST(SandboxSemantics, OneArgumentComparedTwiceMakesARuleOfEachAsRuncDoes) {
  Policy p = load_ok(one_rule("kill", R"({"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"})"));
  EXPECT_EQ(action_of(p, "kill", {1, 0}), Action::kAllow);
  EXPECT_EQ(action_of(p, "kill", {1, 15}), Action::kAllow);
  EXPECT_EQ(action_of(p, "kill", {1, 9}), Action::kErrno);
  EXPECT_EQ(p.rules().size(), 2u);
  EXPECT_EQ(p.notes()[0], "syscalls[0]: args compares one argument more than once: as runc does, each comparison "
                          "is a rule of its own (any one suffices)");
}

TEST(SandboxSemantics, ExclusiveRulesWithDifferentActionsEachDecideTheirArguments) {
  Policy p = load_ok(R"({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
      {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"}]},
      {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97, "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_EQ"}]},
      {"names": ["socket"], "action": "SCMP_ACT_LOG", "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_GT"}]}]})");
  EXPECT_EQ(p.decide(nr("socket"), {37}), (Decision{Action::kAllow, 0, 0}));
  EXPECT_EQ(p.decide(nr("socket"), {38}), (Decision{Action::kErrno, 97, 1}));
  EXPECT_EQ(p.decide(nr("socket"), {39}), (Decision{Action::kLog, 0, 2}));
  EXPECT_EQ(p.describe_rule(1), "syscalls[1]: socket: SCMP_ACT_ERRNO(97) if arg0 == 38");
}

TEST(SandboxSemantics, OtherAbisAndUnknownNumbers) {
  Policy p = load_ok(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": []})");
  EXPECT_EQ(p.decide(451, {}), (Decision{Action::kErrno, 38, kDefaultRule}));
  EXPECT_EQ(p.decide(0x3fffffff, {}), (Decision{Action::kErrno, 38, kDefaultRule}));
  EXPECT_EQ(p.decide(-1, {}), (Decision{Action::kErrno, 38, kDefaultRule}));
  EXPECT_EQ(p.decide(0x40000000, {}), (Decision{Action::kKillThread, 0, kForeignAbiRule}));
  EXPECT_EQ(p.decide(0x40000000 | 39, {}), (Decision{Action::kKillThread, 0, kForeignAbiRule}));
  EXPECT_EQ(p.decide(-2, {}), (Decision{Action::kKillThread, 0, kForeignAbiRule}));
  EXPECT_EQ(p.describe_rule(kDefaultRule), "defaultAction: SCMP_ACT_ERRNO(38)");
}

// ---- Every construct ----------------------------------------------------------------------

TEST(SandboxParse, EveryOciActionAndFlag) {
  Policy p = load_ok(fixture("oci_everything.json"));
  EXPECT_EQ(p.default_action(), Action::kKillProcess);
  EXPECT_TRUE(p.log_flag());
  EXPECT_EQ(p.decide(nr("read"), {}).action, Action::kAllow);
  EXPECT_EQ(p.decide(nr("getpid"), {}).action, Action::kLog);
  EXPECT_EQ(p.decide(nr("getppid"), {}), (Decision{Action::kTrap, 0, p.decide(nr("getppid"), {}).rule}));
  EXPECT_EQ(p.decide(nr("gettid"), {}).err, 7);
  EXPECT_EQ(p.decide(nr("gettid"), {}).action, Action::kTrace);
  EXPECT_EQ(p.decide(nr("getuid"), {}).err, 1);  // TRACE's message defaults to EPERM, as runc's
  EXPECT_EQ(p.decide(nr("getgid"), {}).action, Action::kKillThread);  // SCMP_ACT_KILL
  EXPECT_EQ(p.decide(nr("getegid"), {}).action, Action::kKillThread);
  EXPECT_EQ(p.decide(nr("geteuid"), {}), (Decision{Action::kErrno, 1, p.decide(nr("geteuid"), {}).rule}));
  EXPECT_EQ(p.decide(nr("sched_yield"), {}).err, 0);
  EXPECT_EQ(p.decide(nr("uname"), {}).err, 4094);
  EXPECT_EQ(p.decide(nr("dup"), {}).rule, kDefaultRule);
  // An empty mask is no condition: the rule decides every close.
  EXPECT_EQ(p.decide(nr("close"), {2}).action, Action::kAllow);
  EXPECT_EQ(p.decide(nr("fcntl"), {0, 0xffffffff00000001}).action, Action::kAllow);
  EXPECT_EQ(p.decide(nr("fcntl"), {0, 0xffffffff}), (Decision{Action::kErrno, 22, p.decide(nr("fcntl"), {0, 1}).rule}));
  EXPECT_EQ(p.decide(nr("fcntl"), {0, 0x100000000}).action, Action::kKillProcess);
  EXPECT_EQ(p.decide(nr("pread64"), {3, 0, 100, 4096}).action, Action::kAllow);
  EXPECT_EQ(p.decide(nr("pread64"), {2, 0, 100, 4096}).action, Action::kKillProcess);
  EXPECT_EQ(p.decide(nr("pread64"), {3, 0, 65536, 4096}).action, Action::kKillProcess);
  EXPECT_EQ(p.decide(nr("pread64"), {3, 0, 100, 4097}).action, Action::kKillProcess);
  EXPECT_EQ(p.decide(nr("mmap"), {0, 1, 7, 0x22}).err, 13);
}

TEST(SandboxParse, DockerProfileFormatWithoutCapabilities) {
  Policy p = load_ok(fixture("docker_constructs.json"), opts(0, {4, 4}));
  EXPECT_EQ(p.default_err(), 13);
  EXPECT_EQ(action_of(p, "getpid"), Action::kAllow);           // "name"
  EXPECT_EQ(action_of(p, "ptrace"), Action::kErrno);           // minKernel 4.8 > 4.4
  EXPECT_EQ(action_of(p, "mount"), Action::kErrno);            // CAP_SYS_ADMIN not held
  EXPECT_EQ(action_of(p, "clone", {0x11}), Action::kAllow);    // no namespace flag
  EXPECT_EQ(action_of(p, "clone", {0x10000000}), Action::kErrno);  // CLONE_NEWUSER
  EXPECT_EQ(p.decide(nr("clone3"), {}).err, 38);
  EXPECT_EQ(action_of(p, "arch_prctl"), Action::kAllow);       // arches amd64
  EXPECT_EQ(action_of(p, "getcwd"), Action::kErrno);           // arches ppc64le only
  EXPECT_EQ(p.decide(nr("socket"), {38}).err, 97);
  EXPECT_EQ(action_of(p, "socket", {40}), Action::kErrno);
  EXPECT_EQ(action_of(p, "reboot"), Action::kErrno);
  EXPECT_EQ(action_of(p, "io_uring_setup"), Action::kAllow);   // excluded from 6.0 on
  EXPECT_EQ(action_of(p, "getppid"), Action::kAllow);
  const std::vector<std::string> want = {
      "syscalls[0]: not x86-64 calls, ignored: fstat64, _llseek",
      "syscalls[2]: left out: syscalls[2].includes.minKernel: the kernel is 4.4",
      "syscalls[3]: left out: syscalls[3].includes.caps: CAP_SYS_ADMIN is not held",
      "syscalls[5]: left out: syscalls[5].includes.arches does not name amd64",
      "syscalls[6]: left out: syscalls[6].includes.caps: CAP_SYS_ADMIN is not held",
      "syscalls[9]: left out: syscalls[9].includes.arches does not name amd64",
      "syscalls[15]: args compares one argument more than once: as runc does, each comparison is a rule of its own "
      "(any one suffices)",
      "syscalls[16]: left out: syscalls[16].includes.caps: CAP_SYS_BOOT is not held",
      "syscalls[18]: not x86-64 calls, ignored: fchmodat2, mseal",
  };
  EXPECT_EQ(std::vector<std::string>(p.notes().begin(), p.notes().end()), want);
}

TEST(SandboxParse, DockerProfileFormatWithCapabilitiesAndANewKernel) {
  Policy p = load_ok(fixture("docker_constructs.json"), opts(kCapSysAdmin | kCapSysBoot, {6, 1}));
  EXPECT_EQ(action_of(p, "ptrace"), Action::kAllow);
  EXPECT_EQ(action_of(p, "mount"), Action::kAllow);
  EXPECT_EQ(action_of(p, "clone", {0x10000000}), Action::kAllow);  // the unconditional rule
  EXPECT_EQ(action_of(p, "clone3"), Action::kAllow);
  EXPECT_EQ(action_of(p, "reboot"), Action::kAllow);
  EXPECT_EQ(action_of(p, "io_uring_setup"), Action::kErrno);
}

// The Docker-format profile of the sandbox's parity table
// (tests/compat/sandbox/docker_profile.json, docs/compat/sandbox.md), read
// as for a default container: Docker's capability set (CapEff 0xa80425fb:
// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
TEST(SandboxParse, TheParityTablesDockerProfile) {
  constexpr std::uint64_t kDockerCaps = 0xa80425fb;
  std::ifstream in(std::string(DUNK_UNIT_DATA) + "/../../compat/sandbox/docker_profile.json");
  std::ostringstream text;
  text << in.rdbuf();
  ASSERT_FALSE(text.str().empty());
  Policy p = load_ok(text.str(), opts(kDockerCaps, {6, 1}));
  EXPECT_EQ(p.default_err(), 1);
  EXPECT_EQ(action_of(p, "read"), Action::kAllow);
  EXPECT_EQ(action_of(p, "clone", {0x3d0f00}), Action::kAllow);     // a thread
  EXPECT_EQ(action_of(p, "clone", {0x10000000}), Action::kErrno);  // CLONE_NEWUSER
  EXPECT_EQ(p.decide(nr("clone3"), {}).err, 38);
  EXPECT_EQ(action_of(p, "mount"), Action::kErrno);
  EXPECT_EQ(action_of(p, "unshare"), Action::kErrno);
  EXPECT_EQ(action_of(p, "socket", {2}), Action::kAllow);
  EXPECT_EQ(action_of(p, "socket", {40}), Action::kErrno);  // AF_VSOCK
  EXPECT_EQ(action_of(p, "personality", {0x400000}), Action::kErrno);  // READ_IMPLIES_EXEC
  EXPECT_EQ(action_of(p, "personality", {0xffffffff}), Action::kAllow);
  EXPECT_EQ(action_of(p, "chroot"), Action::kAllow);  // CAP_SYS_CHROOT is Docker's
  EXPECT_EQ(action_of(p, "reboot"), Action::kErrno);
  EXPECT_EQ(action_of(p, "ptrace"), Action::kAllow);  // minKernel 4.8
  EXPECT_EQ(action_of(p, "arch_prctl"), Action::kAllow);
  EXPECT_EQ(action_of(p, "io_uring_setup"), Action::kErrno);
  ASSERT_FALSE(p.notes().empty());
  EXPECT_EQ(p.notes()[0].find("syscalls[1]: not x86-64 calls, ignored: "), 0u) << p.notes()[0];
  // An older kernel, and a caller who holds CAP_SYS_ADMIN.
  EXPECT_EQ(action_of(load_ok(text.str(), opts(kDockerCaps, {4, 4})), "ptrace"), Action::kErrno);
  Policy admin = load_ok(text.str(), opts(kDockerCaps | kCapSysAdmin, {6, 1}));
  EXPECT_EQ(action_of(admin, "clone3"), Action::kAllow);
  EXPECT_EQ(action_of(admin, "mount"), Action::kAllow);
  EXPECT_EQ(action_of(admin, "clone", {0x10000000}), Action::kAllow);
}

TEST(SandboxParse, NullListsReadAsAbsent) {
  Policy p = load_ok(R"({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64",
      "subArchitectures": null}], "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "args": null,
      "includes": {"caps": null}, "excludes": {}}]})");
  EXPECT_EQ(action_of(p, "ptrace"), Action::kErrno);
  EXPECT_EQ(action_of(p, "read"), Action::kAllow);
}

// ---- Refusals, word for word ----------------------------------------------------------------

TEST(SandboxErrors, NotJson) {
  EXPECT_EQ(load_error("{\n  \"defaultAction\": SCMP_ACT_ALLOW\n}"),
            "p.json:2:20: not JSON: syntax error while parsing value - invalid literal; last read: "
            "'\"defaultAction\": S'");
  EXPECT_EQ(load_error("{\"defaultAction\": \"SCMP_ACT_ALLOW\""),
            "p.json:1:35: not JSON: syntax error while parsing object - unexpected end of input; expected '}'");
  EXPECT_EQ(load_error("[]"),
            "p.json:1:1: a policy is a JSON object (an OCI seccomp object or a Docker profile), not an array");
}

TEST(SandboxErrors, KeysMissingUnknownOrTwice) {
  EXPECT_EQ(load_error(R"({"syscalls": []})"), "p.json:1:1: \"defaultAction\" is missing");
  EXPECT_EQ(load_error("{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"sycalls\": []}"),
            "p.json:2:2: sycalls: unknown key (known here: defaultAction, defaultErrnoRet, architectures, archMap, "
            "flags, listenerPath, listenerMetadata, syscalls)");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultAction": "SCMP_ACT_LOG"})"),
            "p.json:1:37: defaultAction: the key appears twice in this object");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]})"),
            "p.json:1:50: syscalls[0]: \"action\" is missing");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_LOG"}]})"),
            "p.json:1:50: syscalls[0]: \"names\" is missing");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG", "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}]})"),
            "p.json:1:105: syscalls[0].args[0]: \"value\" is missing");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "value2": 3}]}]})"),
            "p.json:1:151: syscalls[0].args[0].value2: unknown key (known here: index, value, valueTwo, op)");
}

TEST(SandboxErrors, WrongTypes) {
  EXPECT_EQ(load_error(R"({"defaultAction": 1})"), "p.json:1:19: defaultAction: expected a string, found an integer");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}})"),
            "p.json:1:49: syscalls: expected an array of rules, found an object");
  EXPECT_EQ(load_error(one_rule("read", R"({"index": 0, "value": -1, "op": "SCMP_CMP_EQ"})")),
            "p.json:1:129: syscalls[0].args[0].value: expected an unsigned 64-bit integer, found -1");
  EXPECT_EQ(load_error(one_rule("read", R"({"index": 0, "value": 18446744073709551616, "op": "SCMP_CMP_EQ"})")),
            "p.json:1:129: syscalls[0].args[0].value: expected an unsigned 64-bit integer, found 1.8446744073709552e+19");
  EXPECT_EQ(load_error(one_rule("read", R"({"index": 0, "value": "5", "op": "SCMP_CMP_EQ"})")),
            "p.json:1:129: syscalls[0].args[0].value: expected an unsigned 64-bit integer, found a string");
}

TEST(SandboxErrors, UnknownActionsComparisonsCallsAndIndexes) {
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_DENY"})"),
            "p.json:1:19: defaultAction: unknown action \"SCMP_ACT_DENY\" (known: SCMP_ACT_KILL, "
            "SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_ERRNO, SCMP_ACT_TRACE, "
            "SCMP_ACT_ALLOW, SCMP_ACT_LOG, SCMP_ACT_NOTIFY)");
  EXPECT_EQ(load_error(one_rule("read", R"({"index": 0, "value": 1, "op": "SCMP_CMP_BETWEEN"})")),
            "p.json:1:138: syscalls[0].args[0].op: unknown comparison \"SCMP_CMP_BETWEEN\" (known: SCMP_CMP_NE, "
            "SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ)");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["read", "opne"], "action": "SCMP_ACT_ALLOW"}]})"),
            "p.json:2:35: syscalls[0].names[1]: unknown system call \"opne\"");
  EXPECT_EQ(load_error(one_rule("read", R"({"index": 6, "value": 1, "op": "SCMP_CMP_EQ"})")),
            "p.json:1:117: syscalls[0].args[0].index: 6 is not an argument index (0 to 5)");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]})"),
            "p.json:1:60: syscalls[0].names: no system call named: the list is empty");
}

TEST(SandboxErrors, WhatDunkCannotMeanIsRefusedWithTheReason) {
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_NOTIFY"})"),
            "p.json:1:19: defaultAction: SCMP_ACT_NOTIFY is not supported: it hands the call to a seccomp "
            "notification listener, and dunk's supervisor decides every call itself");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_NOTIFY"}]})"),
            "p.json:1:81: syscalls[0].action: SCMP_ACT_NOTIFY is not supported: it hands the call to a seccomp "
            "notification listener, and dunk's supervisor decides every call itself");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/seccomp.sock"})"),
            "p.json:1:53: listenerPath: not supported: a seccomp notification listener receives the calls of "
            "SCMP_ACT_NOTIFY rules, and dunk's supervisor decides every call itself");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]})"),
            "p.json:1:47: flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_NEW_LISTENER\" (known: "
            "SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW, "
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)");
}

TEST(SandboxErrors, ErrnoValues) {
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})"),
            "p.json:1:56: defaultErrnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return a value; the action here "
            "is SCMP_ACT_ALLOW");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4095})"),
            "p.json:1:56: defaultErrnoRet: 4095 is not an errno libseccomp accepts (0 to 4094)");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 65536})"),
            "p.json:1:56: defaultErrnoRet: 65536 does not fit the 16 bits a tracer reads");
}

TEST(SandboxErrors, DockerFormat) {
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": []})"),
            "p.json:1:87: archMap: both \"architectures\" and \"archMap\" are given; use one");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_AMD64"]})"),
            "p.json:1:55: architectures[0]: unknown architecture \"SCMP_ARCH_AMD64\"");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]})"),
            "p.json:1:50: syscalls[0]: both \"name\" and \"names\" are given; use \"names\"");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMN"]}}]})"),
            "p.json:1:120: syscalls[0].includes.caps[0]: unknown capability \"CAP_SYS_ADMN\"");
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["x86-64"]}}]})"),
            "p.json:1:122: syscalls[0].excludes.arches[0]: unknown architecture \"x86-64\"");
  for (const char* bad : {"4", "4.8.1", "0.0", "x.1", "4.-1", "256.1"}) {
    EXPECT_EQ(load_error(std::string(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": ")") + bad + "\"}}]}"),
              std::string("p.json:1:124: syscalls[0].includes.minKernel: \"") + bad +
                  "\" is not a kernel version \"<kernel>.<major>\"");
  }
}

TEST(SandboxErrors, AmbiguousRulesAreRefusedWithAnExample) {
  EXPECT_EQ(load_error(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
  {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LT"}]},
  {"names": ["socket"], "action": "SCMP_ACT_LOG", "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]})"),
            "p.json:3:3: syscalls[1]: rules syscalls[0] and syscalls[1] give socket different actions "
            "(SCMP_ACT_ALLOW, SCMP_ACT_LOG) for the same arguments, e.g. arg0 = 0, arg1 = 1: libseccomp would choose "
            "by its internal rule order, not the policy's; make their conditions exclusive");
}

TEST(SandboxErrors, UnreadableFile) {
  LoadResult r = load_policy_file("/nonexistent/policy.json", opts());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "/nonexistent/policy.json: cannot read the policy: No such file or directory");
  LoadResult f = load_policy_file(std::string(DUNK_UNIT_DATA) + "/sandbox/oci_everything.json", opts());
  EXPECT_TRUE(f.ok()) << f.error();
}

// ---- The built-in default -------------------------------------------------------------------

TEST(SandboxDefaultPolicy, LoadsAsPrintedAndAllowsOrdinaryPrograms) {
  LoadResult r = load_default_policy(opts());
  ASSERT_TRUE(r.ok()) << r.error();
  const Policy& p = r.value();
  EXPECT_TRUE(p.notes().empty()) << p.notes()[0];
  EXPECT_EQ(default_policy_text().substr(0, 1), "{");
  // What python3, gcc, git, sqlite3, coreutils and shells make.
  for (const char* name : {"read", "write", "openat", "newfstatat", "mmap", "mprotect", "brk", "execve", "wait4",
                           "rt_sigaction", "futex", "rseq", "set_robust_list", "prlimit64", "getrandom", "pipe2",
                           "dup2", "getdents64", "statx", "fcntl", "connect", "sendto", "fork", "vfork", "exit_group",
                           "clock_gettime", "madvise", "sched_getaffinity", "arch_prctl", "set_tid_address", "kill",
                           "memfd_create", "fsync", "rename", "unlinkat", "chdir", "umask", "sysinfo", "uname"}) {
    EXPECT_EQ(action_of(p, name), Action::kAllow) << name;
  }
  EXPECT_EQ(action_of(p, "clone", {0x3d0f00}), Action::kAllow);  // what pthread_create passes
  EXPECT_EQ(action_of(p, "clone", {0x1200011}), Action::kAllow);  // fork()
  EXPECT_EQ(action_of(p, "ioctl", {1, 0x5401}), Action::kAllow);  // TCGETS
  EXPECT_EQ(action_of(p, "ioctl", {1, 0x5413}), Action::kAllow);  // TIOCGWINSZ
  EXPECT_EQ(action_of(p, "ioctl", {1, 0x541b}), Action::kAllow);  // FIONREAD
  EXPECT_EQ(action_of(p, "ioctl", {1, 0x80086601}), Action::kAllow);
  for (std::uint64_t family : {1, 2, 10, 16}) EXPECT_EQ(action_of(p, "socket", {family, 1}), Action::kAllow);
  EXPECT_EQ(action_of(p, "personality", {0xffffffff}), Action::kAllow);
  EXPECT_EQ(action_of(p, "prctl", {15}), Action::kAllow);  // PR_SET_NAME
}

TEST(SandboxDefaultPolicy, DeniesWhatASandboxedProgramMustNotDo) {
  Policy p = load_ok(std::string(default_policy_text()));
  for (const char* name : {"ptrace", "process_vm_readv", "process_vm_writev", "bpf", "kexec_load", "kexec_file_load",
                           "mount", "umount2", "pivot_root", "keyctl", "add_key", "request_key", "userfaultfd",
                           "open_by_handle_at", "perf_event_open", "init_module", "finit_module", "unshare", "setns",
                           "modify_ldt", "iopl", "ioperm", "reboot", "swapon", "settimeofday", "clock_settime",
                           "fsopen", "move_mount", "pidfd_getfd", "kcmp", "chroot", "syslog", "set_thread_area"}) {
    EXPECT_EQ(p.decide(nr(name), {}), (Decision{Action::kErrno, 1, kDefaultRule})) << name;
  }
  for (const char* name : {"io_uring_setup", "io_uring_enter", "io_uring_register", "clone3", "seccomp",
                           "landlock_restrict_self", "memfd_secret"}) {
    EXPECT_EQ(p.decide(nr(name), {}).action, Action::kErrno) << name;
    EXPECT_EQ(p.decide(nr(name), {}).err, 38) << name;  // ENOSYS: programs fall back
  }
  EXPECT_EQ(action_of(p, "personality", {0x0400000}), Action::kErrno);  // READ_IMPLIES_EXEC
  EXPECT_EQ(action_of(p, "personality", {0x0040000}), Action::kErrno);  // ADDR_NO_RANDOMIZE
  EXPECT_EQ(action_of(p, "ioctl", {0, 0x5412}), Action::kErrno);        // TIOCSTI
  EXPECT_EQ(action_of(p, "ioctl", {0, 0x541c}), Action::kErrno);        // TIOCLINUX
  EXPECT_EQ(action_of(p, "prctl", {22}), Action::kErrno);               // PR_SET_SECCOMP
  for (std::uint64_t family : {17, 38, 40}) EXPECT_EQ(action_of(p, "socket", {family}), Action::kErrno);
  for (std::uint64_t flag : {0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000}) {
    EXPECT_EQ(action_of(p, "clone", {0x3d0f00 | flag}), Action::kErrno) << std::hex << flag;
  }
  const Decision d = p.decide(nr("clone"), {0x10000000});
  EXPECT_EQ(p.describe_rule(d.rule), "defaultAction: SCMP_ACT_ERRNO(1)");
  const Decision ok = p.decide(nr("clone"), {0x11});
  EXPECT_EQ(p.describe_rule(ok.rule), "syscalls[12]: clone: SCMP_ACT_ALLOW if arg0 & 0x7e020000 == 0");
}

// ---- --learn ----------------------------------------------------------------------------------

TEST(SandboxLearn, WritesTheSmallestPolicyThatLetsTheRunPassAndReadsBack) {
  Policy reference = load_ok(std::string(default_policy_text()));
  const std::vector<ObservedCall> run = {
      {nr("write"), {1, 0x1000, 6}}, {nr("read"), {0}},    {nr("write"), {2}}, {nr("exit_group"), {0}},
      {nr("ptrace"), {16, 1234}},    {nr("clone"), {0x10000000}}, {nr("openat"), {0xffffff9c}}, {451, {}},
  };
  const std::string text = learn_policy(run, &reference);
  EXPECT_EQ(text, R"({
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 1,
  "architectures": [
    "SCMP_ARCH_X86_64"
  ],
  "syscalls": [
    {
      "names": [
        "exit_group",
        "openat",
        "read",
        "write"
      ],
      "action": "SCMP_ACT_ALLOW",
      "comment": "the calls the learning run made; numbers without a name, which a policy cannot allow: 451"
    },
    {
      "names": [
        "clone",
        "ptrace"
      ],
      "action": "SCMP_ACT_ALLOW",
      "comment": "calls the learning run made that dunk's default policy denies with the arguments they were first made with"
    },
    {
      "names": [
        "futex"
      ],
      "action": "SCMP_ACT_ALLOW",
      "comment": "not made by the learning run, which made other threads or processes: their futex waits come with contention, which depends on timing"
    }
  ]
}
)");
  Policy learned = load_ok(text);
  for (const ObservedCall& c : run) {
    if (c.nr == 451) continue;
    EXPECT_EQ(learned.decide(c.nr, c.first_args).action, Action::kAllow) << x86_64_name(c.nr);
  }
  EXPECT_EQ(action_of(learned, "mmap"), Action::kErrno);
  // The same calls in another order make the same policy.
  std::vector<ObservedCall> reversed(run.rbegin(), run.rend());
  EXPECT_EQ(learn_policy(reversed, &reference), text);
  // Without a reference, one group; with no call, no rule.
  EXPECT_EQ(load_ok(learn_policy(run, nullptr)).rules().size(), 7u);  // futex: the run made a clone
  EXPECT_EQ(load_ok(learn_policy({}, nullptr)).rules().size(), 0u);
}

}  // namespace
}  // namespace dunk::sandbox
