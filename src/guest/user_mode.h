// Ring 3 under a ring-0 supervisor: the state dunk_user_enter saves before it
// drops to ring 3 and dunk_user_exit restores when the run ends, shared by
// the assembly (user_mode.S) and C++ (user_mode.cc, src/priv/ring3.cc).
//
// A run starts with a call: dunk_user_enter saves the caller's callee-saved
// registers, stack pointer, flags and FPU control words in a UserContext,
// then IRETQs to ring 3 with the context's frame. Every way back to ring 0
// (a system call, an exception, an interrupt) enters the common exception
// path, whose dispatcher (dispatch.cc) hands ring-3 events to the run's
// handlers. When a handler (or the run's end) says stop, dunk_user_exit
// makes dunk_user_enter return, as longjmp would, and the frame holds ring
// 3's registers at that moment.
#pragma once

#define UCTX_RBX 0x00
#define UCTX_RBP 0x08
#define UCTX_R12 0x10
#define UCTX_R13 0x18
#define UCTX_R14 0x20
#define UCTX_R15 0x28
#define UCTX_RSP 0x30
#define UCTX_RIP 0x38
#define UCTX_RFLAGS 0x40
#define UCTX_MXCSR 0x48
#define UCTX_FCW 0x4c
#define UCTX_DEPTH 0x50
#define UCTX_IST1 0x58
#define UCTX_AREA 0x60
#define UCTX_FRAME 0x68
#define UCTX_FPU 0x120

#ifndef __ASSEMBLER__

#include <cstddef>
#include <cstdint>

#include "guest/abi.h"

namespace dunk::guest {

struct UserContext;

// What a ring-3 event handler decides (ring3.h maps the public API onto it).
enum class UserVerdict { kResume, kStop };
using UserEventHandler = UserVerdict (*)(UserContext& context, TrapFrame& frame) noexcept;

struct UserContext {
  // -- saved by dunk_user_enter, restored by dunk_user_exit --
  std::uint64_t rbx, rbp, r12, r13, r14, r15;
  std::uint64_t rsp, rip, rflags;
  std::uint32_t mxcsr;
  std::uint16_t fcw;
  std::uint16_t padding;
  std::uint64_t exception_depth;  // of the area, when the run started
  std::uint64_t ist1;             // the area's IST1, when the run started
  VcpuArea* area;
  // Ring 3's registers: where the run starts; where it stopped, afterwards.
  TrapFrame frame;
  // The XSAVE image (standard form) ring 3 starts with; null: the initial
  // FPU state.
  const void* fpu;
  // -- C++ only --
  UserEventHandler on_event = nullptr;  // every system call and exception of the run
  void* cookie = nullptr;               // for on_event
};

static_assert(offsetof(UserContext, rbx) == UCTX_RBX);
static_assert(offsetof(UserContext, rbp) == UCTX_RBP);
static_assert(offsetof(UserContext, r12) == UCTX_R12);
static_assert(offsetof(UserContext, r13) == UCTX_R13);
static_assert(offsetof(UserContext, r14) == UCTX_R14);
static_assert(offsetof(UserContext, r15) == UCTX_R15);
static_assert(offsetof(UserContext, rsp) == UCTX_RSP);
static_assert(offsetof(UserContext, rip) == UCTX_RIP);
static_assert(offsetof(UserContext, rflags) == UCTX_RFLAGS);
static_assert(offsetof(UserContext, mxcsr) == UCTX_MXCSR);
static_assert(offsetof(UserContext, fcw) == UCTX_FCW);
static_assert(offsetof(UserContext, exception_depth) == UCTX_DEPTH);
static_assert(offsetof(UserContext, ist1) == UCTX_IST1);
static_assert(offsetof(UserContext, area) == UCTX_AREA);
static_assert(offsetof(UserContext, frame) == UCTX_FRAME);
static_assert(offsetof(UserContext, fpu) == UCTX_FPU);

extern "C" {
// Runs ring 3 from context->frame until a handler stops the run; returns
// the value passed to dunk_user_exit. Call with the area's exception depth
// at 0 and no program handler running.
long dunk_user_enter(UserContext* context);
// Ends the run of `context` (from its event handler, on the trap stack):
// dunk_user_enter returns `value`.
[[noreturn]] void dunk_user_exit(UserContext* context, long value);
// One page of code ring 3 may execute: it ends the run by making the
// DUNK_SYSCALL_USER_EXIT call with RAX (a function's return value) as
// argument. A ring-3 function's return address.
extern const unsigned char dunk_user_return_page[];
}

}  // namespace dunk::guest

#endif  // __ASSEMBLER__
