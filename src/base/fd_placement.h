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
// them, exactly where it would natively), or else as close under the limit
// as possible.
#pragma once

namespace dunk {

// The highest number dunk places a descriptor at, plus one.
inline constexpr int kFdPlacementCeiling = 65536;

// Duplicates `fd` (close-on-exec) to a number out of the program's way,
// closes `fd` and returns the new number; returns `fd` unchanged when no
// such number is free. Raw system calls only: safe on monitor paths.
int move_out_of_program_range(int fd) noexcept;

}  // namespace dunk
