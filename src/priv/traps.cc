// The public face of the program's exception handlers (dunk/traps.h); the
// dispatch itself is ring-0 runtime (src/guest/dispatch.cc).
#include "dunk/traps.h"

#include <atomic>

#include "arch/x86_64/vectors.h"
#include "base/syscall.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "guest/dispatch.h"

namespace dunk {

// The public names are the hardware's numbers (arch/x86_64/vectors.h).
static_assert(kDivideError == static_cast<unsigned>(arch::Vector::kDivideError));
static_assert(kNmi == static_cast<unsigned>(arch::Vector::kNmi));
static_assert(kInvalidOpcode == static_cast<unsigned>(arch::Vector::kInvalidOpcode));
static_assert(kDoubleFault == static_cast<unsigned>(arch::Vector::kDoubleFault));
static_assert(kGeneralProtection == static_cast<unsigned>(arch::Vector::kGeneralProtection));
static_assert(kPageFault == static_cast<unsigned>(arch::Vector::kPageFault));
static_assert(kMachineCheck == static_cast<unsigned>(arch::Vector::kMachineCheck));
static_assert(kControlProtection == static_cast<unsigned>(arch::Vector::kControlProtection));

Status set_trap_handler(unsigned vector, TrapHandler handler) noexcept {
  if (vector >= arch::kExceptionVectors) return Error{"set_trap_handler: not an exception vector (0-31)", EINVAL};
  if (guest::is_fatal_vector(vector)) {
    // They arrive on IST2 when the machine may be in any state; dunk ends
    // the program with a report instead.
    return Error{"set_trap_handler: NMI, double fault and machine check cannot be handled", EINVAL};
  }
  // A program that handles page faults must not see the faults that give a
  // chunk its guest-physical space on first touch: the mirror assigns at
  // mapping time from now on (a VM created later starts that way).
  if (handler != nullptr && vector == kPageFault && core::Machine::instance().created()) {
    core::Machine::instance().mirror().assign_eagerly();
  }
  // One aligned 64-bit store: a vCPU taking the exception right now sees the
  // old handler or the new one, never half of each.
  std::atomic_ref<TrapHandler>(guest::dunk_trap_handlers[vector]).store(handler, std::memory_order_release);
  return {};
}

TrapHandler trap_handler(unsigned vector) noexcept {
  if (vector >= arch::kExceptionVectors) return nullptr;
  return std::atomic_ref<TrapHandler>(guest::dunk_trap_handlers[vector]).load(std::memory_order_acquire);
}

PageFault page_fault(const TrapFrame& frame) noexcept {
  const arch::PageFaultError e = arch::decode_page_fault_error(frame.error_code);
  return PageFault{.address = reinterpret_cast<void*>(frame.cr2),
                   .present = e.present,
                   .write = e.write,
                   .user = e.user,
                   .reserved_bit = e.reserved_bit,
                   .fetch = e.instruction_fetch};
}

bool resolve_fault(const void* address, bool write, bool fetch) noexcept {
  if (!in_vm()) return false;
  const long how = (write ? 1 : 0) | (fetch ? 2 : 0);
  return sys::call(DUNK_SYSCALL_RESOLVE_FAULT, reinterpret_cast<long>(address), how) == 1;
}

}  // namespace dunk
