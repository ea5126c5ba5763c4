// project-dune's x2APIC calls on dunk's interrupts (dunk/interrupts.h):
// every vCPU has a local APIC in x2APIC mode whose ID is its vCPU number, and
// an IPI is one WRMSR that KVM delivers in the kernel.
//
// project-dune's programs pin each thread to a host CPU and route IPIs by
// it: a thread records its APIC ID under its CPU (dune_apic_init_rt_entry),
// senders look it up (dune_apic_id_for_cpu). The table is keyed by the host
// CPU the getcpu system call reports: what sched_getcpu() answers in the
// guest too (glibc's rseq area, or the vDSO, whose CPUNODE segment and
// TSC_AUX dunk sets to the host CPU before every entry), never the vCPU.
#include <sys/syscall.h>
#include <sys/sysinfo.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <new>

#include "base/syscall.h"
#include "dunk/interrupts.h"
#include "libdune/internal.h"
#include "libdune/local.h"

namespace {

std::atomic<int>* routing = nullptr;
int routing_entries = 0;

}  // namespace

extern "C" {

bool dune_setup_apic(void) {
  if (routing != nullptr) return true;
  const int n = get_nprocs_conf();
  auto* table = static_cast<std::atomic<int>*>(std::malloc(sizeof(std::atomic<int>) * static_cast<std::size_t>(n)));
  if (table == nullptr) return false;
  for (int i = 0; i < n; ++i) new (&table[i]) std::atomic<int>(-1);
  routing_entries = n;
  routing = table;
  return true;
}

void dune_apic_free(void) {
  std::free(routing);
  routing = nullptr;
  routing_entries = 0;
}

uint32_t dune_apic_id(void) { return static_cast<uint32_t>(dunk::cpu_id()); }

void dune_apic_init_rt_entry(void) {
  unsigned cpu = 0;
  if (dunk::sys::call(SYS_getcpu, reinterpret_cast<long>(&cpu), 0, 0) != 0) return;
  if (routing == nullptr || cpu >= static_cast<unsigned>(routing_entries)) return;
  routing[cpu].store(static_cast<int>(dune_apic_id()), std::memory_order_release);
}

uint32_t dune_apic_id_for_cpu(uint32_t cpu, bool* error) {
  if (routing == nullptr || cpu >= static_cast<uint32_t>(routing_entries)) {
    if (error != nullptr) *error = true;
    return 0;
  }
  return static_cast<uint32_t>(routing[cpu].load(std::memory_order_acquire));
}

void dune_apic_send_ipi(uint8_t vector, uint32_t destination_apic_id) {
  // Vector 2 meant an NMI under Dune; dunk cannot handle NMIs (and takes no
  // vector below 32 as an interrupt): refused, with a word on stderr.
  if (dunk::Status s = dunk::send_ipi(destination_apic_id, vector); !s) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true)) dunk::libdune::report("dune_apic_send_ipi", s.error());
  }
}

void dune_apic_eoi(void) { dunk::eoi(); }

}  // extern "C"
