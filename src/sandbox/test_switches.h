// Switches that break the sandbox on purpose, so that a test can show what
// the host layer alone stops (tests/cli/sandbox_host_layer_test.sh). Only
// dunk's test build turns them on: `dunk-test-switches` (tools/CMakeLists.txt)
// links its own test_switches() (tests/sandbox_test_switches.cc), which
// reads DUNK_SANDBOX_TEST_* from the environment; every other build links
// the one in test_switches.cc, which has them all off. That file holds
// nothing else, so the linker never takes it where the test build's
// definition is there.
#pragma once

namespace dunk::sandbox {

struct TestSwitches {
  // A ring-0 bug: this call number is passed on although the policy denies
  // it (-1: none).
  int forward_denied = -1;
  // A ring-0 bug: no file-system view in ring 0 (paths go to the kernel as
  // the program wrote them); Landlock still applies.
  bool view_off = false;
  // The host layer's parts left out, to show the bugs above are real.
  bool no_host_filter = false;
  bool no_landlock = false;
  // The host filter logs (SECCOMP_RET_LOG) what it would refuse, and lets
  // it run: the measurement of dunk's own calls (host_layer.cc).
  bool host_filter_logs = false;
};

const TestSwitches& test_switches() noexcept;

}  // namespace dunk::sandbox
