#include "core/guest_state.h"

namespace dunk::core {
namespace {

// The general registers shared by every form, copied member by member: the
// forms order them differently.
template <class To, class From>
void copy_gprs(To& to, const From& from) noexcept {
  to.rax = from.rax, to.rbx = from.rbx, to.rcx = from.rcx, to.rdx = from.rdx;
  to.rsi = from.rsi, to.rdi = from.rdi, to.rbp = from.rbp, to.rsp = from.rsp;
  to.r8 = from.r8, to.r9 = from.r9, to.r10 = from.r10, to.r11 = from.r11;
  to.r12 = from.r12, to.r13 = from.r13, to.r14 = from.r14, to.r15 = from.r15;
  to.rip = from.rip;
}

}  // namespace

kvm_regs to_kvm_regs(const TrapFrame& frame) noexcept {
  kvm_regs regs{};
  copy_gprs(regs, frame);
  regs.rflags = frame.rflags;
  return regs;
}

TrapFrame from_kvm_regs(const kvm_regs& regs, std::uint16_t cs, std::uint16_t ss) noexcept {
  TrapFrame frame{};
  copy_gprs(frame, regs);
  frame.rflags = regs.rflags;
  frame.cs = cs;
  frame.ss = ss;
  return frame;
}

abi::Sigcontext to_sigcontext(const TrapFrame& frame) noexcept {
  abi::Sigcontext context{};
  copy_gprs(context, frame);
  context.eflags = frame.rflags;
  context.cs = static_cast<std::uint16_t>(frame.cs);
  context.ss = static_cast<std::uint16_t>(frame.ss);
  return context;
}

TrapFrame from_sigcontext(const abi::Sigcontext& context) noexcept {
  TrapFrame frame{};
  copy_gprs(frame, context);
  frame.rflags = context.eflags;
  frame.cs = context.cs;
  frame.ss = context.ss;
  return frame;
}

void restore_from_sigcontext(const abi::Sigcontext& context, TrapFrame& frame) noexcept {
  copy_gprs(frame, context);
  frame.rflags = (frame.rflags & ~abi::kRestorableFlags) | (context.eflags & abi::kRestorableFlags);
}

}  // namespace dunk::core
