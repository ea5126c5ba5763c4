// `dunk check`, and the same probe `dunk exec` makes before starting
// anything: can this process enter VM mode here?
#pragma once

#include <string>

namespace dunk::cli {

// Enters VM mode and leaves it at once. Empty when that worked; otherwise
// dunk::describe()'s one line saying why not and what to do.
std::string vm_mode_unavailable();

// The KVM device dunk uses (DUNK_KVM_DEVICE, or /dev/kvm).
std::string kvm_device();

// Prints one line on whether VM mode works; returns 0 if it does, 1 if not.
int run_check();

}  // namespace dunk::cli
