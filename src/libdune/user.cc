// Ring 3 the way Dune's programs run it: dune_jump_to_user starts ring 3 from
// a frame and returns what a handler passes to dune_ret_from_user, and a
// handler may itself jump to user (a sandbox's thread, Wedge's scheduler):
// the handler waits while the nested ring-3 code runs and continues when
// that ends.
//
// dunk runs one ring-3 run per vCPU at a time (dunk::run_in_ring3) and calls
// its handler for each event on a trap stack that every event reuses. So
// the outermost dune_jump_to_user is the dunk run, and Dune's levels are
// multiplexed inside it: each handler runs on libdune's own stack (below
// any handler that waits), and dunk's handler, when the program's returns
// or ends a level, tells dunk to resume whichever ring-3 context is now
// current (its registers copied into dunk's frame) or to stop the run.
//
// Handlers run on the process's page tables (pgroot), whatever ring 3 ran
// on, and ring 3 gets its own back when resumed (unless the handler loaded
// others with load_cr3). Ring 3 may run on tables in which the process's
// writable memory is replaced by private copies (Wedge's sthreads do that
// with dune_vm_clone): libdune's and dunk's own state, in that memory, is
// only what it is on pgroot. Until the switch, dunk's handler touches
// nothing but the frame, the vCPU's area and the run's stack.
#include <asm/prctl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>

#include "base/syscall.h"
#include "dunk/ring3.h"
#include "libdune/internal.h"

namespace dunk::libdune {
namespace {

// Handlers run here, not on dunk's 64 KiB trap stack (Dune's ran on stacks
// of 2 MiB).
constexpr std::size_t kHandlerStackSize = std::size_t{1} << 20;
constexpr std::uint64_t kRedZone = 128;

// What dunk's handler tells dunk once a context switches back to it.
enum : long { kResumeRing3 = 0, kStopRun = 1 };

// One dune_jump_to_user in progress.
struct Level {
  Level* outer = nullptr;
  // The page tables (CR3's address) ring 3 runs on.
  std::uint64_t root = 0;
  // Started from a handler, which waits in `caller` until this level ends.
  bool nested = false;
  LibduneContext caller;
  int result = 0;  // dune_ret_from_user's value
  // Ring 3's registers: where it starts, and where it was when its latest
  // event came (what the handler sees and edits, and what resumes).
  TrapFrame ring3{};
};

struct HandlerStack {
  std::byte* base = nullptr;
  ~HandlerStack() {
    if (base != nullptr) munmap(base - PGSIZE, kHandlerStackSize + PGSIZE);
  }
};

struct Thread {
  Level* top = nullptr;                // the innermost level
  LibduneContext* dispatch = nullptr;  // dunk's handler of the current ring-3 event, waiting
  bool in_handler = false;             // a handler of a ring-3 event runs
  std::uint64_t user_fs = 0;           // Dune's per-CPU FS base for ring 3
  bool user_fs_set = false;
};

thread_local Thread self;
thread_local HandlerStack handler_stack;

// The run's constants, on the outermost dune_jump_to_user's stack: what
// dunk's handler may read before it is back on the process's page tables.
struct Run {
  std::uint64_t process_root;
};

constexpr std::uint64_t kRootMask = PTE_ADDR(~0ul);

std::uint64_t current_root() noexcept {
  std::uint64_t cr3;
  asm volatile("movq %%cr3, %0" : "=r"(cr3));
  return cr3 & kRootMask;
}

// Makes the calling vCPU run on the page tables whose root is `root`.
void switch_tables(std::uint64_t root) noexcept {
  if (current_root() == root) return;
  if (root == AddressSpace::process().root()) {
    (void)AddressSpace::process().activate();
    return;
  }
  dune_load_cr3(root);
}

std::uint64_t current_fs() noexcept {
  unsigned long fs = 0;
  sys::call(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&fs));
  return fs;
}

bool ensure_handler_stack() noexcept {
  if (handler_stack.base != nullptr) return true;
  // A guard page below, left inaccessible.
  void* p = mmap(nullptr, kHandlerStackSize + PGSIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  mprotect(p, PGSIZE, PROT_NONE);
  handler_stack.base = static_cast<std::byte*>(p) + PGSIZE;
  return true;
}

// Where a new handler's stack starts: below the innermost waiting handler.
void* handler_stack_top() noexcept {
  std::uint64_t top = reinterpret_cast<std::uint64_t>(handler_stack.base) + kHandlerStackSize;
  for (const Level* l = self.top; l != nullptr; l = l->outer) {
    if (l->nested) {
      top = l->caller.rsp - kRedZone;
      break;
    }
  }
  return reinterpret_cast<void*>(top & ~std::uint64_t{15});
}

// Ring 3's starting state from Dune's frame: its registers, and flags with
// interrupts enabled and nothing ring 3 may not set (as dunk sets them).
void start_frame(const struct dune_tf& tf, TrapFrame& f) noexcept {
  f = TrapFrame{};
  from_dune(tf, f, false);
  f.cs = kRing3Cs;
  f.ss = kRing3Ss;
  constexpr std::uint64_t kAllowed = FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_TF | FL_DF | FL_OF | FL_AC;
  f.rflags = (tf.rflags & kAllowed) | FL_IF | 0x2;
}

// A system call's frame carries this vector (dunk/ring3.h).
constexpr std::uint64_t kSyscallVector = 0x100;
bool is_syscall(const TrapFrame& f) noexcept { return f.vector == kSyscallVector; }

// The program's handler for the top level's event, on libdune's stack.
[[noreturn]] void run_handler(void*) noexcept {
  Level* level = self.top;
  const bool syscall = is_syscall(level->ring3);
  struct dune_tf tf;
  to_dune(level->ring3, tf, syscall);
  self.in_handler = true;
  if (syscall) {
    handle_ring3_syscall(tf);
  } else {
    handle_ring3_exception(tf, static_cast<unsigned>(level->ring3.vector), level->ring3.cr2);
  }
  // Levels this handler started have ended: `level` is the top again.
  from_dune(tf, level->ring3, syscall);
  settle_handed_out();
  self.in_handler = false;
  libdune_resume(self.dispatch, kResumeRing3);
}

// dunk's handler for every event of the run, on dunk's trap stack.
Ring3Action on_event(TrapFrame& frame, void* cookie) noexcept {
  const Run& run = *static_cast<const Run*>(cookie);
  // dunk's own page faults first, on the tables ring 3 ran on (dunk's
  // monitor resolves them in those).
  if (frame.vector == kPageFault && !page_fault_is_programs(frame.cr2, frame.error_code, /*user=*/true)) {
    return Ring3Action::kResume;
  }
  const std::uint64_t ring3_root = current_root();
  if (ring3_root != run.process_root) (void)AddressSpace::process().activate();
  self.top->ring3 = frame;
  self.top->root = ring3_root;
  if (auto fs = ring3_fs_base(); fs.ok()) self.user_fs = *fs;
  LibduneContext here;
  self.dispatch = &here;
  if (libdune_start(&here, handler_stack_top(), run_handler, nullptr) == kStopRun) return Ring3Action::kStop;
  // The current level's ring 3, which may be another than the one whose
  // event this was (a level began or ended meanwhile), on its own tables
  // unless the handler chose others.
  frame = self.top->ring3;
  (void)set_ring3_fs_base(self.user_fs);
  if (current_root() == run.process_root) switch_tables(self.top->root);
  return Ring3Action::kResume;
}

// Whether a system call cannot be passed on from a handler of ring 3: a new
// thread, or a child sharing the memory (vfork), would start where the call
// was made, in the middle of the handler, on its stacks. A fork child has
// its own copy of them, and of the VM state (the handler, the ring-3 run):
// it returns from the call into its copy of the handler, whose return
// resumes its ring 3 with the call's result, 0. (clone3 is refused whatever
// its flags, which are in memory: glibc falls back to clone, which a
// supervisor emulates as Dune's sandbox does.)
bool starts_a_task(std::uint64_t nr, std::uint64_t clone_flags) noexcept {
  if (nr == SYS_clone) return (clone_flags & CLONE_VM) != 0;
  return nr == SYS_clone3 || nr == SYS_vfork;
}

}  // namespace

void thread_entered() noexcept {
  if (!self.user_fs_set) {
    self.user_fs = current_fs();
    self.user_fs_set = true;
  }
}

}  // namespace dunk::libdune

using namespace dunk::libdune;

extern "C" {

int dune_jump_to_user(struct dune_tf* tf) {
  if (!dunk::in_vm()) {
    report("dune_jump_to_user", dunk::Error{"the calling thread is not in VM mode (dune_enter)", EPERM});
    return -EPERM;
  }
  // Ring 3 runs on the tables current now; libdune's own code runs on
  // pgroot (see the top of this file), from here on.
  const std::uint64_t ring3_root = current_root();
  if (ring3_root != dunk::AddressSpace::process().root()) (void)dunk::AddressSpace::process().activate();
  settle_handed_out();
  tf->cs = kRing3Cs;
  tf->ss = kRing3Ss;
  Level level;
  level.outer = self.top;
  level.root = ring3_root;
  start_frame(*tf, level.ring3);
  if (self.in_handler) {
    // Nested: this handler waits; dunk's handler resumes ring 3 as `level`.
    level.nested = true;
    self.top = &level;
    self.in_handler = false;
    const long ret = libdune_switch(&level.caller, self.dispatch, kResumeRing3);
    self.in_handler = true;  // continued by dune_ret_from_user of `level`
    return static_cast<int>(ret);
  }
  if (self.top != nullptr || !ensure_handler_stack()) {
    report("dune_jump_to_user",
           dunk::Error{self.top != nullptr ? "ring 3 is running: only its handlers may start ring 3"
                                           : "no memory for the handlers' stack",
                       self.top != nullptr ? EBUSY : ENOMEM});
    return self.top != nullptr ? -EBUSY : -ENOMEM;
  }
  self.top = &level;
  const Run run{dunk::AddressSpace::process().root()};
  dunk::Ring3Options options;
  options.on_syscall = on_event;
  options.on_fault = on_event;
  options.cookie = const_cast<Run*>(&run);
  options.fs_base = dune_get_user_fs();
  switch_tables(level.root);
  auto exit = dunk::run_in_ring3(level.ring3, options);
  // Back on pgroot (dunk's handler switched), or on what a handler loaded.
  if (!exit.ok()) switch_tables(run.process_root);
  self.top = nullptr;
  self.in_handler = false;
  if (!exit.ok()) {
    report("dune_jump_to_user", exit.error());
    return exit.error().err != 0 ? -exit.error().err : -EIO;
  }
  if (exit->reason == dunk::Ring3Exit::kReturned) return static_cast<int>(exit->value);
  return level.result;
}

void dune_ret_from_user(int ret) {
  Level* level = self.top;
  if (!self.in_handler || level == nullptr) {
    dune_printf("dune: dune_ret_from_user outside a handler of ring 3\n");
    dune_die();
  }
  settle_handed_out();
  level->result = ret;
  self.top = level->outer;
  if (level->nested) libdune_resume(&level->caller, ret);  // the handler that started it goes on
  self.in_handler = false;
  libdune_resume(self.dispatch, kStopRun);
}

void dune_passthrough_syscall(struct dune_tf* tf) {
  if (self.in_handler && starts_a_task(tf->rax, tf->rdi)) {
    tf->rax = static_cast<std::uint64_t>(-ENOSYS);
    return;
  }
  dunk::TrapFrame f{};
  f.rax = tf->rax;
  f.rdi = tf->rdi;
  f.rsi = tf->rsi;
  f.rdx = tf->rdx;
  f.r10 = tf->rcx;  // Dune's frame has the fourth argument in rcx
  f.r8 = tf->r8;
  f.r9 = tf->r9;
  tf->rax = static_cast<std::uint64_t>(dunk::forward_syscall(f));
}

void dune_pop_trap_frame(struct dune_tf* tf) {
  if ((tf->cs & 3) == 3) {
    dune_jump_to_user(tf);
    dune_die();
  }
  libdune_pop_ring0(tf);
}

unsigned long dune_get_user_fs(void) { return self.user_fs_set ? self.user_fs : current_fs(); }

void dune_set_user_fs(unsigned long fs_base) {
  self.user_fs = fs_base;
  self.user_fs_set = true;
}

}  // extern "C"
