// The trap frame: the state of code interrupted by an exception, an
// interrupt or a system call, as dunk's ring-0 entry code saves it — and the
// signatures of the handlers that receive it.
//
// A vocabulary header like dunk/address.h and dunk/result.h: it depends on
// nothing, so that the ring-0 runtime (src/guest), which pushes this layout,
// and the public API (dunk/traps.h, dunk/interrupts.h, dunk/ring3.h), which
// hands it to the program, share one definition without the runtime
// depending on the API. The layout is the entry code's: src/guest/abi.h
// checks every offset against the assembly's.
#pragma once

#include <cstdint>

namespace dunk {

// The interrupted code's state. Every field may be changed; the change takes
// effect when the handler returns kResume (RIP and RSP included).
struct TrapFrame {
  std::uint64_t cr2;  // the faulting address of a page fault
  std::uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
  std::uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
  std::uint64_t vector;      // 0-255; 0x100 for a system call
  std::uint64_t error_code;  // 0 for vectors without one
  std::uint64_t rip, cs, rflags, rsp, ss;

  // Whether the interrupted code ran in ring 3 (dunk/ring3.h).
  bool from_ring3() const noexcept { return (cs & 3) == 3; }
};

// What an exception handler (dunk/traps.h) asks for.
enum class TrapAction {
  kResume,   // return to the interrupted code through the (edited) frame
  kDefault,  // let dunk handle it as if no handler were registered
};

using TrapHandler = TrapAction (*)(TrapFrame& frame) noexcept;

// An interrupt handler (dunk/interrupts.h): `frame.vector` is the
// interrupt's vector, `frame.rip` where the interrupted code resumes; the
// error code is 0.
using InterruptHandler = void (*)(TrapFrame& frame) noexcept;

}  // namespace dunk
