// The public face of interrupts (dunk/interrupts.h): handler registration
// and IPIs. Delivery is the trap path's (src/guest/trap_dispatch.S,
// src/guest/dispatch.cc); the local APICs are set up with the machine
// (Cpu::setup_interrupts, src/core/machine.cc).
#include "dunk/interrupts.h"

#include <atomic>
#include <cerrno>

#include "arch/x86_64/apic.h"
#include "arch/x86_64/registers.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "guest/dispatch.h"

namespace dunk {
namespace {

static_assert(kFirstInterruptVector == arch::apic::kFirstInterruptVector);
static_assert(kFirstInterruptVector == DUNK_FIRST_INTERRUPT_VECTOR);
static_assert(kTlbShootdownVector == DUNK_TLB_SHOOTDOWN_VECTOR);

bool valid_vector(unsigned vector) noexcept {
  return vector >= kFirstInterruptVector && vector <= kLastInterruptVector;
}

// What every send needs: ring 0 in VM mode, local APICs, a usable vector.
Status check_send(unsigned vector) noexcept {
  if (!in_vm()) return Error{"sending an IPI: the calling thread is not in VM mode", EPERM};
  if (!core::Machine::instance().interrupts()) {
    return Error{"sending an IPI: this process's VM has no local APICs (EnterOptions::interrupts must be given to "
                 "the first enter())",
                 ENODEV};
  }
  if (!valid_vector(vector)) return Error{"sending an IPI: not an interrupt vector a program may use (32-253)", EINVAL};
  return {};
}

void write_icr(std::uint64_t icr) noexcept {
  // x2APIC mode: the ICR is one 64-bit MSR and the write is the send (SDM
  // vol. 3A, "ICR Operation in x2APIC Mode"). KVM serves it in the kernel.
  asm volatile("wrmsr"
               :
               : "c"(arch::apic::msr::kIcr), "a"(static_cast<std::uint32_t>(icr)),
                 "d"(static_cast<std::uint32_t>(icr >> 32))
               : "memory");
}

}  // namespace

Status set_interrupt_handler(unsigned vector, InterruptHandler handler, InterruptOptions options) noexcept {
  if (!valid_vector(vector)) {
    return Error{"set_interrupt_handler: not an interrupt vector a program may use (32-253)", EINVAL};
  }
  // The flag first: an interrupt taken in between runs the new handler with
  // the new EOI rule, or the old handler (whose EOI the flag may then
  // mis-state for this one interrupt; registering while the vector is in
  // use is the program's race).
  std::atomic_ref<bool>(guest::dunk_interrupt_manual_eoi[vector]).store(options.manual_eoi, std::memory_order_relaxed);
  std::atomic_ref<InterruptHandler>(guest::dunk_interrupt_handlers[vector]).store(handler, std::memory_order_release);
  return {};
}

InterruptHandler interrupt_handler(unsigned vector) noexcept {
  if (vector >= 256) return nullptr;
  return std::atomic_ref<InterruptHandler>(guest::dunk_interrupt_handlers[vector]).load(std::memory_order_acquire);
}

bool interrupts_enabled() noexcept {
  core::Machine& machine = core::Machine::instance();
  return machine.created() && machine.interrupts();
}

int cpu_id() noexcept {
  const core::Cpu* cpu = core::current_cpu();
  return cpu == nullptr ? -1 : static_cast<int>(cpu->vcpu.id());
}

int cpu_id_of_thread(pid_t tid) noexcept {
  core::Machine& machine = core::Machine::instance();
  if (!machine.created()) return -1;
  const core::Cpu* cpu = machine.cpu_of_thread(tid);
  if (cpu == nullptr || cpu->owner_exited.load(std::memory_order_acquire)) return -1;
  return static_cast<int>(cpu->vcpu.id());
}

Status send_ipi(unsigned cpu, unsigned vector) noexcept {
  DUNK_TRY(check_send(vector));
  if (core::Machine::instance().live_cpu(cpu) == nullptr) return Error{"sending an IPI: no live thread owns that vCPU", ESRCH};
  write_icr(arch::apic::fixed_ipi(static_cast<std::uint8_t>(vector), cpu));
  return {};
}

Status send_ipi_self(unsigned vector) noexcept {
  DUNK_TRY(check_send(vector));
  write_icr(arch::apic::fixed_ipi_self(static_cast<std::uint8_t>(vector)));
  return {};
}

Status send_ipi_others(unsigned vector) noexcept {
  DUNK_TRY(check_send(vector));
  write_icr(arch::apic::fixed_ipi_others(static_cast<std::uint8_t>(vector)));
  return {};
}

Status flush_tlb_all_cpus() noexcept {
  if (!in_vm()) return Error{"flush_tlb_all_cpus: the calling thread is not in VM mode", EPERM};
  core::Machine& machine = core::Machine::instance();
  if (!machine.interrupts()) {
    return Error{"flush_tlb_all_cpus: this process's VM has no local APICs (EnterOptions::interrupts)", ENODEV};
  }
  std::uint64_t flags;
  asm volatile("pushfq; popq %0" : "=r"(flags));
  if ((flags & arch::rflags::kIF) == 0) {
    // Another vCPU's shootdown would wait for this one, which would wait
    // for it: the classic deadlock.
    return Error{"flush_tlb_all_cpus: interrupts are disabled (in a handler, or after cli)", EDEADLK};
  }
  // A locked add: a full barrier before the loads of the other vCPUs'
  // in_host below (the SYSCALL entry's MFENCE is the other half).
  const std::uint64_t generation =
      std::atomic_ref<std::uint64_t>(guest::dunk_tlb_generation).fetch_add(1, std::memory_order_seq_cst) + 1;
  write_icr(arch::apic::fixed_ipi_others(static_cast<std::uint8_t>(kTlbShootdownVector)));
  flush_tlb();
  core::Cpu* self = core::current_cpu();
  // This vCPU is flushed too: its next system call need not flush again.
  // (Only this vCPU writes its record; an interrupting shootdown may have
  // written a newer generation meanwhile.)
  std::atomic_ref<std::uint64_t> own(self->area->tlb_generation);
  if (own.load(std::memory_order_relaxed) < generation) own.store(generation, std::memory_order_release);
  for (unsigned i = 0, n = machine.cpu_count(); i < n; ++i) {
    core::Cpu* cpu = machine.cpu_at(i);
    if (cpu == self) continue;
    guest::VcpuArea& area = *cpu->area;
    // Until it has flushed, or is in (or on its way to) the host, where the
    // SYSCALL entry flushes on its way back; or has left VM mode, to come
    // back with the IPI pending (it enters with IF set).
    while (std::atomic_ref<std::uint64_t>(area.tlb_generation).load(std::memory_order_acquire) < generation &&
           std::atomic_ref<std::uint64_t>(area.in_host).load(std::memory_order_seq_cst) == 0 && cpu->in_guest &&
           !cpu->owner_exited.load(std::memory_order_acquire)) {
      __builtin_ia32_pause();
    }
  }
  return {};
}

void eoi() noexcept {
  if (in_vm() && guest::dunk_lapic_present) guest::lapic_eoi();
}

}  // namespace dunk
