// The machine's configuration: what the environment asks of dunk, read once
// into a value (MachineConfig::from_environment) that tests can also build
// themselves. The variables are documented in README.md ("Using dunk").
#pragma once

#include <cstddef>

namespace dunk::core {

struct MachineConfig {
  static constexpr std::size_t kPathMax = 256;

  bool trace = false;                  // DUNK_TRACE=1: report every exit on stderr
  int inherited_kvm_fd = -1;           // DUNK_KVM_FD: a KVM handle `dunk exec` passed down
  char kvm_device[kPathMax] = "/dev/kvm";  // DUNK_KVM_DEVICE
  unsigned max_vcpus = 0;              // DUNK_MAX_VCPUS: below KVM's limit (0: KVM's)
  unsigned gpa_bits = 0;               // DUNK_GPA_BITS: a guest-physical space narrower than the CPU's (0: the CPU's)
  long required_capability = -1;       // DUNK_REQUIRE_KVM_CAP: one more capability KVM must have
  char stats_path[kPathMax] = "";      // DUNK_STATS: the --stats file the process tree adds to
  int strace_fd = -1;                  // DUNK_STRACE_FD: where --strace lines go
  // DUNK_GDB: where `dunk exec --gdb` serves the program to gdb (PORT,
  // HOST:PORT or unix:PATH; src/debug/gdb_server.h). Empty: not debugged.
  char gdb_address[kPathMax] = "";

  // Reads the variables through `lookup` (getenv's contract: null when
  // unset). Values that do not parse are ignored, as if unset.
  using Lookup = const char* (*)(const char* name);
  static MachineConfig from_environment(Lookup lookup) noexcept;
  // The process's environment.
  static MachineConfig from_environment() noexcept;
};

}  // namespace dunk::core
