// Every build but the test build: no switch is on (test_switches.h).
#include "sandbox/test_switches.h"

namespace dunk::sandbox {

const TestSwitches& test_switches() noexcept {
  static constexpr TestSwitches kOff{};
  return kOff;
}

}  // namespace dunk::sandbox
