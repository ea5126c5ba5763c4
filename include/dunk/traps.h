// Exception handlers: the program's own code runs, in guest ring 0, when the
// CPU raises an exception — delivered by the hardware through the guest's
// IDT, without a VM exit and without the host's signal machinery.
//
//   dunk::TrapAction on_ud(dunk::TrapFrame& f) noexcept {
//     f.rip += 2;                       // skip the ud2
//     return dunk::TrapAction::kResume;
//   }
//   dunk::set_trap_handler(dunk::kInvalidOpcode, on_ud);
//   asm volatile("ud2");                // comes back here, no signal, no exit
//
// A page-fault handler reads the address and error code from the frame,
// fixes the mapping (dunk/paging.h) and resumes:
//
//   dunk::TrapAction on_pf(dunk::TrapFrame& f) noexcept {
//     dunk::PageFault pf = dunk::page_fault(f);
//     if (!mine(pf.address)) return dunk::TrapAction::kDefault;
//     dunk::AddressSpace::current().protect(page_of(pf.address), 4096, dunk::kRead | dunk::kWrite);
//     dunk::flush_tlb(pf.address);
//     return dunk::TrapAction::kResume;  // the faulting instruction runs again
//   }
//
// Rules, and why:
// - Handlers are process-wide (one IDT serves every vCPU) and run on a
//   per-vCPU trap stack with interrupts disabled; the interrupted code's
//   registers, including its SSE/AVX state, are saved around them.
// - kDefault hands the exception to dunk: a page fault dunk's address-space
//   mirror can resolve (a growing stack, memory mapped behind the monitor's
//   back) is resolved; anything else ends the program as it would natively
//   (SIGSEGV, SIGILL, ...). So a page-fault handler must return kDefault for
//   addresses it does not own.
// - A handler must not fault. An exception inside a handler (other than a
//   page fault dunk resolves transparently) ends the program with a report
//   naming both exceptions; so does a double fault. Handlers do not nest.
// - Handlers may make system calls (each costs one exit, as anywhere in VM
//   mode) but should not call leave(), fork() or start threads.
#pragma once

#include <cstdint>

#include "dunk/result.h"
#include "dunk/trap_frame.h"

namespace dunk {

// Exception vectors (Intel SDM vol. 3A §6.3.1 "Vectors", Table 6-1
// "Protected-Mode Exceptions and Interrupts"; AMD APM vol. 2 §8.2).
enum Vector : unsigned {
  kDivideError = 0,
  kDebug = 1,
  kNmi = 2,
  kBreakpoint = 3,
  kOverflow = 4,
  kBoundRange = 5,
  kInvalidOpcode = 6,
  kDeviceNotAvailable = 7,
  kDoubleFault = 8,
  kInvalidTss = 10,
  kSegmentNotPresent = 11,
  kStackFault = 12,
  kGeneralProtection = 13,
  kPageFault = 14,
  kX87FloatingPoint = 16,
  kAlignmentCheck = 17,
  kMachineCheck = 18,
  kSimdFloatingPoint = 19,
  kControlProtection = 21,
};


// Installs `handler` for exception vector `vector` (0-31), replacing any
// earlier one; nullptr removes it. NMI (2), double fault (8) and machine
// check (18) cannot be handled: they end the program with a report. Works
// before and after enter(); takes effect on every vCPU at once.
Status set_trap_handler(unsigned vector, TrapHandler handler) noexcept;
TrapHandler trap_handler(unsigned vector) noexcept;

// A page fault's details (Intel SDM vol. 3A §4.7 "Page-Fault Exceptions",
// Figure 4-12 "Page-Fault Error Code").
struct PageFault {
  void* address = nullptr;  // CR2
  bool present = false;     // a protection violation (else: page not present)
  bool write = false;
  bool user = false;        // made by ring-3 code
  bool reserved_bit = false;
  bool fetch = false;       // an instruction fetch
};
PageFault page_fault(const TrapFrame& frame) noexcept;

// What kDefault does first for a page fault, for a handler that takes every
// page fault yet leaves dunk's own to dunk (Dune's libdune): asks the
// monitor to bring the address-space mirror up to date for an access to
// `address` (a stack growing, a mapping made behind its back, a TLB entry
// older than the tables). True when the access should now succeed; false
// when the fault is not dunk's to resolve (the page is the program's, or the
// host does not allow the access). One exit; VM mode only (false outside).
bool resolve_fault(const void* address, bool write, bool fetch) noexcept;

}  // namespace dunk
