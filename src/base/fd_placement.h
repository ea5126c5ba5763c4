// Where dunk's own descriptors live: out of the program's way.
//
// A process in VM mode holds descriptors it never opened: /dev/kvm, the VM,
// one per vCPU, the address-space mirror's probe. Left where open() put them
// they take the program's lowest free numbers, and the program can tell: a
// program started with stdin closed gets /dev/kvm as fd 0 instead of its own
// first file, and every later open() returns a number higher than natively.
// So dunk moves each of them above the numbers the program's own calls can
// get: past the soft RLIMIT_NOFILE, and not below 1024, when the hard limit
// leaves room (the program's open() fails with EMFILE before it reaches
// them, exactly where it would natively), or else near the top of the range
// under the limit.
#pragma once

#include "base/lock.h"

namespace dunk {

// The highest number dunk places a descriptor at, plus one.
inline constexpr int kFdPlacementCeiling = 65536;

// Duplicates `fd` (close-on-exec) to a number out of the program's way,
// closes `fd` and returns the new number; returns `fd` unchanged when no
// such number is free. Raw system calls only: safe on monitor paths.
int move_out_of_program_range(int fd) noexcept;

// Held by every placement, which lifts the soft limit for a moment; the
// monitor holds it around the program's own RLIMIT_NOFILE calls, so that
// they neither see the lifted limit nor lose a change to it. A fork child
// resets it (another thread may have held it at the fork).
Lock& fd_placement_lock() noexcept;

}  // namespace dunk
