// Ring 3 runs (dunk/ring3.h) over the guest runtime's entry and exit
// (src/guest/user_mode.S) and its dispatcher (src/guest/dispatch.cc).
#include "dunk/ring3.h"

#include <cstring>

#include "arch/x86_64/registers.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "guest/user_mode.h"

namespace dunk {
namespace {

static_assert(kRing3ExitSyscall == DUNK_SYSCALL_USER_EXIT);

struct RunState {
  const Ring3Options* options;
  Ring3Exit::Reason reason = Ring3Exit::kReturned;
  std::uint64_t value = 0;
  std::uint64_t fs_base = 0;
  std::uint64_t gs_base = 0;
};

// The run stops: what ring 3 leaves besides its frame. The dispatcher saved
// its FPU state on top of the trap stack and its FS/GS bases in the area
// (trap_dispatch.S; without FSGSBASE they stay what run_in_ring3 put there).
guest::UserVerdict stop(guest::UserContext& context, RunState& state) noexcept {
  const guest::VcpuArea& area = *context.area;
  state.fs_base = area.user_fs;
  state.gs_base = area.user_gs;
  if (state.options->fpu_out != nullptr) {
    std::memcpy(state.options->fpu_out, reinterpret_cast<const void*>(area.trap_xsave),
                core::Machine::instance().xsave_size());
  }
  return guest::UserVerdict::kStop;
}

// Ring 0, on the trap stack: every event of the run.
guest::UserVerdict on_event(guest::UserContext& context, TrapFrame& frame) noexcept {
  auto& state = *static_cast<RunState*>(context.cookie);
  auto verdict = [](Ring3Action a) {
    return a == Ring3Action::kResume ? guest::UserVerdict::kResume : guest::UserVerdict::kStop;
  };
  if (frame.vector == DUNK_VECTOR_INTERRUPTED) {
    state.reason = Ring3Exit::kInterrupted;
    return stop(context, state);
  }
  if (frame.vector == DUNK_VECTOR_SYSCALL) {
    if (frame.rax == DUNK_SYSCALL_USER_EXIT) {
      state.reason = Ring3Exit::kReturned;
      state.value = frame.rdi;
      return stop(context, state);
    }
    state.reason = Ring3Exit::kSyscall;
    if (state.options->on_syscall == nullptr) return stop(context, state);
    if (verdict(state.options->on_syscall(frame, state.options->cookie)) == guest::UserVerdict::kResume) {
      return guest::UserVerdict::kResume;
    }
    return stop(context, state);
  }
  state.reason = Ring3Exit::kFault;
  if (state.options->on_fault == nullptr) return stop(context, state);
  if (verdict(state.options->on_fault(frame, state.options->cookie)) == guest::UserVerdict::kResume) {
    return guest::UserVerdict::kResume;
  }
  return stop(context, state);
}

// Ring 0 with CR4.FSGSBASE (VcpuArea::fsgsbase).
std::uint64_t read_fs_base() noexcept {
  std::uint64_t base;
  asm volatile("rdfsbase %0" : "=r"(base));
  return base;
}
std::uint64_t read_gs_base() noexcept {
  std::uint64_t base;
  asm volatile("rdgsbase %0" : "=r"(base));
  return base;
}

// The area of the ring-3 run whose event the calling handler serves.
Result<guest::VcpuArea*> run_area() noexcept {
  if (!in_vm()) return Error{"ring 3's FS base: needs VM mode", EPERM};
  guest::VcpuArea* area = core::current_cpu()->area;
  if (area->user_context == 0 || area->dispatching == 0) {
    return Error{"ring 3's FS base: only from a handler of a ring-3 run", EPERM};
  }
  if (area->fsgsbase == 0) return Error{"ring 3's FS base: the CPU lacks FSGSBASE", ENOTSUP};
  return area;
}

bool reachable(const void* p, unsigned need) noexcept {
  auto info = AddressSpace::current().lookup(p);
  return info && (info->access & need) == need;
}

// The page ring 3 returns to: user-executable, and nothing else on it.
Status open_return_page() noexcept {
  const void* page = guest::dunk_user_return_page;
  if (reachable(page, kUser | kExec)) return {};
  DUNK_TRY(AddressSpace::current().protect(const_cast<void*>(page), arch::kPageSize4K, kRead | kExec | kUser));
  flush_tlb(page);
  return {};
}

}  // namespace

Result<Ring3Exit> run_in_ring3(const TrapFrame& start, const Ring3Options& options) noexcept {
  if (!in_vm()) return Error{"run_in_ring3: needs VM mode", EPERM};
  guest::VcpuArea* area = core::current_cpu()->area;
  if (area->dispatching != 0 || area->exception_depth != 0 || area->user_mode != 0) {
    return Error{"run_in_ring3: not from an exception handler or another ring-3 run", EBUSY};
  }
  RunState state{&options};
  // Ring 3's FS/GS bases, which dunk_user_enter loads (without FSGSBASE it
  // loads nothing: ring 3 keeps the caller's).
  area->user_fs = options.fs_base.value_or(area->fsgsbase != 0 ? read_fs_base() : 0);
  area->user_gs = options.gs_base.value_or(area->fsgsbase != 0 ? read_gs_base() : 0);
  guest::UserContext context{};
  context.area = area;
  context.frame = start;
  context.fpu = options.fpu;
  context.frame.cs = DUNK_USER_CS;
  context.frame.ss = DUNK_USER_DS;
  // Interrupts on, I/O privilege 0 (every in/out, cli, sti faults), and
  // none of the flags that only the supervisor may set.
  constexpr std::uint64_t kRing3Flags = arch::rflags::kCF | arch::rflags::kPF | arch::rflags::kAF |
                                        arch::rflags::kZF | arch::rflags::kSF | arch::rflags::kTF |
                                        arch::rflags::kDF | arch::rflags::kOF | arch::rflags::kAC;
  context.frame.rflags = (start.rflags & kRing3Flags) | arch::rflags::kIF | arch::rflags::kFixed1;
  context.on_event = on_event;
  context.cookie = &state;
  area->interrupt_ring3 = 0;
  area->ring3_interruptible = options.interruptible ? 1 : 0;
  guest::dunk_user_enter(&context);
  Ring3Exit exit;
  exit.reason = state.reason;
  exit.value = state.value;
  exit.frame = context.frame;
  exit.fs_base = state.fs_base;
  exit.gs_base = state.gs_base;
  return exit;
}

std::size_t ring3_fpu_size() noexcept { return in_vm() ? core::Machine::instance().xsave_size() : 0; }

bool ring3_can_set_bases() noexcept {
  const core::Cpu* cpu = core::current_cpu();
  return cpu != nullptr && cpu->area->fsgsbase != 0;
}

Result<Ring3Exit> run_in_ring3(std::uint64_t (*fn)(std::uint64_t), std::uint64_t arg, void* stack,
                               std::size_t stack_size, const Ring3Options& options) noexcept {
  if (!in_vm()) return Error{"run_in_ring3: needs VM mode", EPERM};
  auto top = (reinterpret_cast<std::uint64_t>(stack) + stack_size) & ~std::uint64_t{15};
  if (stack_size < 64 || !reachable(reinterpret_cast<void*>(top - 8), kUser | kWrite)) {
    return Error{"run_in_ring3: the stack's top page is not writable from ring 3 (protect it kUser|kWrite)", EFAULT};
  }
  if (!reachable(reinterpret_cast<const void*>(fn), kUser | kExec)) {
    return Error{"run_in_ring3: the function's page is not executable from ring 3 (protect it kUser|kExec)", EFAULT};
  }
  DUNK_TRY(open_return_page());
  // A call's view: the return address on top, RSP + 8 16-byte aligned.
  top -= 8;
  *reinterpret_cast<std::uint64_t*>(top) = reinterpret_cast<std::uint64_t>(guest::dunk_user_return_page);
  TrapFrame start{};
  start.rip = reinterpret_cast<std::uint64_t>(fn);
  start.rsp = top;
  start.rdi = arg;
  return run_in_ring3(start, options);
}

Result<std::uint64_t> ring3_fs_base() noexcept {
  DUNK_ASSIGN_OR_RETURN(guest::VcpuArea * area, run_area());
  return area->user_fs;
}

Status set_ring3_fs_base(std::uint64_t base) noexcept {
  DUNK_ASSIGN_OR_RETURN(guest::VcpuArea * area, run_area());
  area->user_fs = base;
  return {};
}

void signal_point() noexcept {
  if (!in_vm()) return;
  // The monitor answers this call itself; on the way back it delivers
  // what waits for the thread.
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(DUNK_SYSCALL_PING) : "rcx", "r11", "memory");
  (void)ret;
}

long forward_syscall(const TrapFrame& f) noexcept {
  long ret;
  register long r10 asm("r10") = static_cast<long>(f.r10);
  register long r8 asm("r8") = static_cast<long>(f.r8);
  register long r9 asm("r9") = static_cast<long>(f.r9);
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(f.rax), "D"(f.rdi), "S"(f.rsi), "d"(f.rdx), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

}  // namespace dunk
