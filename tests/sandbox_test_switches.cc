// The test build's switches (src/sandbox/test_switches.h), from the
// environment of `dunk-test-switches`:
//   DUNK_SANDBOX_TEST_FORWARD=NAME        ring 0 passes NAME on although the policy denies it
//   DUNK_SANDBOX_TEST_VIEW_OFF=1          ring 0 has no file-system view
//   DUNK_SANDBOX_TEST_NO_HOST_FILTER=1    no seccomp filter on the host
//   DUNK_SANDBOX_TEST_NO_LANDLOCK=1       no Landlock rules
//   DUNK_SANDBOX_TEST_HOST_FILTER_LOG=1   the host filter logs instead of killing
#include <cstdlib>
#include <cstring>

#include "abi/syscalls.h"
#include "sandbox/test_switches.h"

namespace dunk::sandbox {

const TestSwitches& test_switches() noexcept {
  static const TestSwitches switches = [] {
    TestSwitches s;
    auto on = [](const char* name) {
      const char* value = std::getenv(name);
      return value != nullptr && std::strcmp(value, "1") == 0;
    };
    if (const char* name = std::getenv("DUNK_SANDBOX_TEST_FORWARD"); name != nullptr) {
      if (const abi::CallSpec* call = abi::lookup(name)) s.forward_denied = call->number;
    }
    s.view_off = on("DUNK_SANDBOX_TEST_VIEW_OFF");
    s.no_host_filter = on("DUNK_SANDBOX_TEST_NO_HOST_FILTER");
    s.no_landlock = on("DUNK_SANDBOX_TEST_NO_LANDLOCK");
    s.host_filter_logs = on("DUNK_SANDBOX_TEST_HOST_FILTER_LOG");
    return s;
  }();
  return switches;
}

}  // namespace dunk::sandbox
