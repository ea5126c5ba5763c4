// A forwarded system call as a value, what a handler answers, and the
// narrow view of the guest a handler works through.
//
//   guest SYSCALL ─▶ exit ─▶ Monitor: Syscall::from_frame(frame)
//                             handler = syscall_handler(nr)   (syscalls/table.cc)
//                             Outcome o = handler(ctx, call)
//                             apply o: RAX = result | restart | leave | signal
//
// Handlers never touch KVM, the Machine or a Cpu directly: they see the
// guest through the interfaces below, which the monitor implements over KVM
// and the kernel (core/monitor_context.h) and unit tests implement with
// fakes (tests/unit/core_syscalls_test.cc). So every decision a handler makes
// can be tested on any machine.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "base/fd_set.h"
#include "base/lock.h"
#include "core/address_space_mirror.h"
#include "core/asm_offsets.h"
#include "core/served_files.h"
#include "core/signals.h"
#include "core/stats.h"
#include "dunk/address.h"
#include "dunk/result.h"
#include "guest/abi.h"

namespace dunk::core {

using guest::TrapFrame;

// The call the guest made: RAX and six arguments, as the SYSCALL convention
// passes them (RDI, RSI, RDX, R10, R8, R9). Laid out for
// dunk_forward_syscall (core/asm_offsets.h), which hands the kernel RAX as
// the program gave it.
struct Syscall {
  std::uint64_t rax = 0;
  std::array<std::uint64_t, 6> args{};

  static Syscall from_frame(const TrapFrame& f) noexcept {
    return Syscall{f.rax, {f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9}};
  }
  static Syscall make(long nr, std::array<std::uint64_t, 6> args = {}) noexcept {
    return Syscall{static_cast<std::uint64_t>(nr), args};
  }

  // The call's number as the kernel decodes it (do_syscall_64 takes the
  // low 32 bits of RAX, as a signed int): what dunk dispatches on.
  int nr() const noexcept { return static_cast<int>(rax); }

  std::uint64_t arg(unsigned i) const noexcept { return args[i]; }
  // The argument as the kernel's C prototype reads it: an int (a descriptor,
  // a signal number, flags) is the low 32 bits, sign-extended.
  int int_arg(unsigned i) const noexcept { return static_cast<int>(args[i]); }
  long long_arg(unsigned i) const noexcept { return static_cast<long>(args[i]); }
};
static_assert(offsetof(Syscall, rax) == SYSCALL_NR);
static_assert(offsetof(Syscall, args) == SYSCALL_ARGS);

// A signal the kernel forces on the caller when a call goes wrong in a way
// only a signal reports (force_sig: a bad rt_sigreturn frame, an IRET that
// would fault), with what its frame says: si_code, trapno and err.
struct ForcedSignal {
  int sig = 0;
  int code = 0x80;  // SI_KERNEL
  std::uint64_t trapno = 0;
  std::uint64_t err = 0;
  constexpr bool operator==(const ForcedSignal&) const noexcept = default;
};

// What the monitor does with the guest after a handler.
class Outcome {
 public:
  enum class Kind : std::uint8_t {
    kResult,   // the call returns `value` (RAX) to the instruction after SYSCALL
    kRestart,  // deliver pending signals, then execute the same SYSCALL again
    kLeave,    // resume the caller on the host, outside VM mode (leave())
    kSignal,   // the call returns `value`, and the thread takes `signal` at
               // once: its handler if it has one (and does not block it),
               // else death by it — the kernel's force_sig
  };

  static constexpr Outcome result(long value) noexcept { return Outcome(Kind::kResult, value, {}); }
  static constexpr Outcome restart() noexcept { return Outcome(Kind::kRestart, 0, {}); }
  static constexpr Outcome leave() noexcept { return Outcome(Kind::kLeave, 0, {}); }
  static constexpr Outcome signal(long value, ForcedSignal signal) noexcept {
    return Outcome(Kind::kSignal, value, signal);
  }

  constexpr Kind kind() const noexcept { return kind_; }
  constexpr long value() const noexcept { return value_; }
  constexpr const ForcedSignal& forced() const noexcept { return signal_; }
  constexpr bool operator==(const Outcome&) const noexcept = default;

 private:
  constexpr Outcome(Kind kind, long value, ForcedSignal signal) noexcept
      : kind_(kind), value_(value), signal_(signal) {}
  Kind kind_;
  long value_;
  ForcedSignal signal_;
};

// ---- The guest, as handlers see it -----------------------------------------

// The vCPU's registers beyond the trap frame.
class VcpuRegisters {
 public:
  virtual Result<std::uint64_t> fs_base() noexcept = 0;
  virtual Status set_fs_base(std::uint64_t base) noexcept = 0;
  // The program's GS base: parked in KERNEL_GS_BASE while the SYSCALL path
  // runs (its SWAPGS), which is where every handler finds the guest.
  virtual Result<std::uint64_t> user_gs_base() noexcept = 0;
  virtual Status set_user_gs_base(std::uint64_t base) noexcept = 0;
  // The FPU/SSE/AVX state as an XSAVE image (FpuFormat::size bytes).
  virtual Status save_fpu(std::byte* image) noexcept = 0;
  virtual Status load_fpu(const std::byte* image) noexcept = 0;

 protected:
  ~VcpuRegisters() = default;
};

// The program's memory, through the kernel's checks: a bad address is a
// failed copy, never a fault in the monitor.
class GuestMemory {
 public:
  virtual bool read(void* to, std::uint64_t from, std::size_t size) noexcept = 0;
  virtual bool write(std::uint64_t to, const void* from, std::size_t size) noexcept = 0;

 protected:
  ~GuestMemory() = default;
};

// The host kernel. `forward` performs the guest's call as the guest made it
// (it returns kRestartGuestSyscall, without making the call, when a signal
// the guest must see first came before it or interrupted it); `finish`
// performs it whatever arrives meanwhile, for the calls the thread does not
// come back from (exit, exit_group: the monitor has let go of the vCPU);
// `call` makes a system call on dunk's own behalf.
class HostKernel {
 public:
  virtual long forward(const Syscall& call) noexcept = 0;
  virtual long finish(const Syscall& call) noexcept = 0;
  virtual long call(long nr, long a0 = 0, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0,
                    long a5 = 0) noexcept = 0;

 protected:
  ~HostKernel() = default;
};

// The process's dirty state as handlers see it (core/dirty.h): the
// writes the kernel makes for the program, reported so that they count as
// the program's own stores (syscalls/kernel_writes.cc), and the soft-dirty
// view of the process's memory that dunk serves in place of the kernel's
// (syscalls/pagemap.cc, core/soft_dirty.h): bit 55 of /proc/self/pagemap
// from the guest's dirty bits, and clear_refs "4" as a clean of them.
class DirtyBits {
 public:
  // Whether a write must be reported at all: false until some reader has
  // cleaned (until then every page is dirty anyway). One load.
  virtual bool watching() noexcept = 0;
  // The kernel wrote [start, start + length) of the program's memory, and
  // has finished: the pages count as written.
  virtual void kernel_wrote(std::uint64_t start, std::uint64_t length) noexcept = 0;
  // The kernel may write [start, start + length) at any later time (an
  // io_submit buffer, the rseq area): always dirty.
  virtual void kernel_writes_later(std::uint64_t start, std::uint64_t length) noexcept = 0;
  // Writes that have finished but that dunk cannot bound: everything is
  // dirty at every reader's next pass.
  virtual void unseen_writes() noexcept = 0;
  // A writer dunk cannot follow from now on: everything is dirty for good.
  virtual void unbounded_writer() noexcept = 0;

  // Rewrites bit 55 ("soft-dirty", Linux Documentation/admin-guide/mm/
  // pagemap.rst) of `count` pagemap entries, those of the pages from page
  // number `first_page` (address / 4096) on: set for a page dunk knows or
  // must assume written since the last clear, clear otherwise. `entries`
  // hold the kernel's answer; every other bit stays the kernel's.
  virtual void soft_dirty(std::uint64_t first_page, std::uint64_t* entries, std::size_t count) noexcept = 0;
  // clear_refs "4": every page of the process clean from now on.
  virtual void clear_soft_dirty() noexcept = 0;
  // The descriptors served this way.
  virtual ServedFiles& served_files() noexcept = 0;

 protected:
  ~DirtyBits() = default;
};

// A clone-family call's child, as the kernel would start it.
struct CloneRequest {
  std::uint64_t flags = 0;  // CLONE_* | exit signal
  std::uint64_t stack = 0;  // the child's RSP (0: the parent's)
  std::uint64_t tls = 0;    // with CLONE_SETTLS
  // clone3's argument block, when the call is clone3 (the child's stack
  // is rewritten in a copy of it).
  std::uint64_t args3 = 0;
  std::uint64_t args3_size = 0;
  // CLONE_VM without CLONE_VFORK: a thread, on a vCPU of this VM.
  bool is_thread() const noexcept { return (flags & kCloneVm) != 0 && (flags & kCloneVfork) == 0; }
  static constexpr std::uint64_t kCloneVm = 0x100, kCloneVfork = 0x4000;  // linux/sched.h
};

// Threads and processes: what only the machine can do.
class ThreadOps {
 public:
  // Starts a thread on a vCPU of its own that resumes `child` (the parent's
  // frame with RAX 0 and its new stack) in VM mode. The call's result.
  virtual long start_thread(const Syscall& call, const CloneRequest& request, const TrapFrame& child) noexcept = 0;
  // Performs a fork-like call (own memory, or vfork): the child resumes
  // `child` outside this VM (in a VM of its own when the process follows
  // forks). The call's result in the parent.
  virtual long start_process(const Syscall& call, const CloneRequest& request, const TrapFrame& child) noexcept = 0;
  // The calling thread is about to exit (exit): its vCPU is reusable once
  // the kernel has reaped it. True when it was the process's last thread.
  virtual bool thread_exits() noexcept = 0;
  // The process is about to exit (exit_group, or its last thread's exit).
  virtual void process_exits() noexcept = 0;
  // Whether the process is exiting and may have closed its VM already:
  // a failing KVM call then ends the thread quietly instead of reporting.
  virtual bool process_exiting() const noexcept = 0;

 protected:
  ~ThreadOps() = default;
};

// The FPU state's format in this VM.
struct FpuFormat {
  std::size_t size = 0;          // XSAVE image bytes
  std::uint64_t xcr0 = 0;        // the guest's enabled components
  const std::byte* initial = nullptr;  // the initial state's image (a handler's start)
};

// What the process shares between its threads.
class LdtMirror;

struct ProcessState {
  FdSet& dunk_fds;           // dunk's own descriptors: not the program's
  SignalTable& actions;      // the program's signal actions
  Lock& action_lock;         // serialises changes to them
  Lock& rlimit_lock;         // RLIMIT_NOFILE vs. dunk's descriptor placement
  std::atomic<std::uint64_t>& brk;  // the program break as the monitor saw it last
  Stats& stats;
  FpuFormat fpu;
  long pid;
  LdtMirror* ldt = nullptr;  // the program's LDT as the vCPUs see it (ldt_mirror.h)
};

// What one thread (vCPU) owns.
struct ThreadState {
  CpuSignals& signals;
  std::byte* fpu_scratch;    // FpuFormat::size bytes, 64-byte aligned
  // The page-table root the vCPU runs on as the privileged API set it (its
  // area's; 0: the process's tree), which ring-0 code may change between
  // two exits.
  const std::uint64_t& page_table_root;
};

// Everything a handler may use.
struct SyscallContext {
  TrapFrame& frame;  // the caller's registers at the SYSCALL (RIP, RSP, flags)
  VcpuRegisters& vcpu;
  GuestMemory& memory;
  HostKernel& host;
  AddressSpaceMirror& mirror;
  ThreadOps& threads;
  ProcessState& process;
  ThreadState& thread;
  DirtyBits& dirty;
};

using SyscallHandler = Outcome (*)(SyscallContext& ctx, const Syscall& call) noexcept;

// The handler of every system call: an array lookup (syscalls/table.cc). A
// number no handler claims is forwarded unchanged.
SyscallHandler syscall_handler(const Syscall& call) noexcept;

// What the monitor does with a call: the descriptor check every call goes
// through (dunk's descriptors are not the program's), then its handler,
// then the report of what the kernel wrote (syscalls/kernel_writes.cc).
Outcome dispatch_syscall(SyscallContext& ctx, const Syscall& call) noexcept;

// The handler for calls dunk only forwards.
Outcome forward_unchanged(SyscallContext& ctx, const Syscall& call) noexcept;

}  // namespace dunk::core
