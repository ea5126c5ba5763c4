// One place for the guest's register state in each of its forms: the trap
// frame dunk's entry code pushes (guest/abi.h), KVM's kvm_regs, and the
// sigcontext of a signal frame (abi/signal.h). Every conversion between them
// is here, once, and unit-tested (tests/unit/core_guest_state_test.cc).
#pragma once

#include <linux/kvm.h>

#include "abi/signal.h"
#include "guest/abi.h"

namespace dunk::core {

using guest::TrapFrame;

// The general registers, RIP and RFLAGS. (CS and SS live in kvm_sregs.)
kvm_regs to_kvm_regs(const TrapFrame& frame) noexcept;
// Every field kvm_regs has; CS and SS as given (a frame needs them to say
// which ring it came from).
TrapFrame from_kvm_regs(const kvm_regs& regs, std::uint16_t cs, std::uint16_t ss) noexcept;

// The registers a signal handler's context shows (everything but the
// FPU image, the mask and the fault details, which the caller adds).
abi::Sigcontext to_sigcontext(const TrapFrame& frame) noexcept;
// The registers of a signal context as a frame, every flag included (a
// context the kernel wrote itself).
TrapFrame from_sigcontext(const abi::Sigcontext& context) noexcept;
// What rt_sigreturn restores from a context the program may have edited:
// the general registers, RSP and RIP, and only the flags the kernel lets a
// frame change (abi::kRestorableFlags); the rest of `frame` stays.
void restore_from_sigcontext(const abi::Sigcontext& context, TrapFrame& frame) noexcept;

}  // namespace dunk::core
