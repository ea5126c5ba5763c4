#include "tools/check.h"

#include <cstdio>
#include <cstdlib>

#include "dunk/dunk.h"

namespace dunk::cli {

std::string kvm_device() {
  const char* device = std::getenv("DUNK_KVM_DEVICE");
  return device != nullptr && *device != '\0' ? device : "/dev/kvm";
}

std::string vm_mode_unavailable() {
  if (Status entered = enter(); !entered) {
    char why[512];
    return describe(entered.error(), why, sizeof why);
  }
  // Holds by enter()'s contract; checked because this is the whole point
  // of the probe and costs nothing.
  bool entered = in_vm();
  leave();
  if (!entered) return "dunk::enter() succeeded but the thread is not in VM mode (a dunk bug)";
  if (in_vm()) return "dunk::leave() left the thread in VM mode (a dunk bug)";
  return {};
}

int run_check() {
  std::string why = vm_mode_unavailable();
  if (!why.empty()) {
    std::fprintf(stderr, "dunk: %s\n", why.c_str());
    return 1;
  }
  std::printf("dunk: VM mode works (KVM at %s)\n", kvm_device().c_str());
  return 0;
}

}  // namespace dunk::cli
