// The monitor's soft-dirty view (core/syscall.h, DirtyBits): bit 55 of
// /proc/self/pagemap answered from the guest's dirty bits, clear_refs "4"
// served as a clean of them, without forwarding it (the kernel would
// write-protect the host's page tables and turn every first store of the
// program into a nested page fault). One reader of the dirty-tracking
// protocol (core/dirty.h), shared by the process's monitors.
#pragma once

#include "core/syscall.h"

namespace dunk::core {

// The process's view, for the monitor's system-call context.
DirtyBits& process_dirty_bits() noexcept;

}  // namespace dunk::core
