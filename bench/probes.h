// What a measurement counts besides time: dunk's returns from KVM_RUN,
// KVM's own exit count, the host system calls of the thread.
#pragma once

#include <cstdint>
#include <string>

#include "base/unique_fd.h"
#include "core/machine.h"
#include "kvm/kvm.h"

namespace dunk::bench {

struct Counters {
  std::uint64_t userspace_exits = 0;
  std::uint64_t kvm_exits = 0;
  std::uint64_t host_syscalls = 0;
};

struct Probes {
  UniqueFd syscalls;  // invalid when unavailable
  UniqueFd kvm_stats;
  std::string syscalls_note;
  std::string kvm_note;

  Counters read() const {
    Counters c;
    c.userspace_exits = core::Machine::instance().created() ? core::Machine::instance().stats().kvm_runs.load() : 0;
    if (kvm_stats.valid()) {
      if (auto v = kvm::read_stat(kvm_stats.get(), "exits")) c.kvm_exits = *v;
    }
    if (syscalls.valid()) {
      std::uint64_t n = 0;
      if (::read(syscalls.get(), &n, sizeof n) == sizeof n) c.host_syscalls = n;
    }
    return c;
  }
};

// Counts the system calls this thread makes (raw_syscalls:sys_enter, via
// perf_event_open); with `inherit`, those of the threads and processes it
// starts from now on too (each child's once it has exited); `filter` (a
// tracepoint filter such as "id == 16") counts only the calls it matches.
// Invalid, with `why`, when tracefs or perf events are unavailable.
UniqueFd open_syscall_counter(std::string& why, bool inherit = false, const char* filter = nullptr);
// The counter's value; 0 for an invalid counter.
std::uint64_t read_counter(const UniqueFd& counter);

}  // namespace dunk::bench
