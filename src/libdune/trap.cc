// Dune's handlers on dunk's: exceptions in ring 0 through dunk/traps.h,
// interrupts through dunk/interrupts.h, and everything a ring-3 run raises
// through dunk/ring3.h (user.cc). Dune called the program's page-fault
// handler for every fault; dunk first resolves the faults that are its own
// (its mirror of the host's mappings) and passes on the rest.
#include <atomic>
#include <cerrno>

#include "dunk/interrupts.h"
#include "libdune/cpu-x86.h"
#include "libdune/internal.h"

namespace dunk::libdune {
namespace {

std::atomic<dune_intr_cb> intr_cbs[IDT_ENTRIES];
std::atomic<dune_pgflt_cb> pgflt_cb{nullptr};
std::atomic<dune_syscall_cb> syscall_cb{nullptr};

bool fatal_vector(unsigned vector) noexcept {
  return vector == T_NMI || vector == T_DBLFLT || vector == T_MCHK;
}

// The access a page-fault error code describes, against an entry's bits.
bool entry_allows(std::uint64_t entry, std::uint64_t error_code, bool user) noexcept {
  if (!(entry & PTE_P)) return false;
  if ((error_code & FEC_W) && !(entry & PTE_W)) return false;
  if ((error_code & FEC_I) && (entry & PTE_NX)) return false;
  if (user && !(entry & PTE_U)) return false;
  return true;
}

TrapAction on_ring0_exception(TrapFrame& frame) noexcept;

// dunk's handler for vector `vector` follows Dune's registrations: there
// when the program handles it (for a page fault, with either kind of
// handler), gone otherwise.
void update_exception_handler(unsigned vector) noexcept {
  bool wanted = intr_cbs[vector].load() != nullptr;
  if (vector == T_PGFLT) wanted = wanted || pgflt_cb.load() != nullptr;
  (void)set_trap_handler(vector, wanted ? on_ring0_exception : nullptr);
}

[[noreturn]] void unhandled(struct dune_tf& tf, const char* what, unsigned vector, std::uint64_t cr2) noexcept {
  dune_printf("dune: %s %u (error %#x, address %#lx): no handler\n", what, vector, tf.err,
              static_cast<unsigned long>(cr2));
  dune_dump_trap_frame(&tf);
  dune_die();
}

// A ring-0 exception with a Dune handler, on dunk's trap stack.
TrapAction on_ring0_exception(TrapFrame& frame) noexcept {
  const auto vector = static_cast<unsigned>(frame.vector);
  struct dune_tf tf;
  if (dune_intr_cb cb = intr_cbs[vector].load()) {
    to_dune(frame, tf, false);
    cb(&tf);
  } else if (dune_pgflt_cb fault = pgflt_cb.load(); fault != nullptr && vector == T_PGFLT) {
    if (!page_fault_is_programs(frame.cr2, frame.error_code, false)) return TrapAction::kResume;
    to_dune(frame, tf, false);
    fault(frame.cr2, frame.error_code, &tf);
  } else {
    return TrapAction::kDefault;  // unregistered meanwhile
  }
  from_dune(tf, frame, false);
  settle_handed_out();
  return TrapAction::kResume;
}

// An interrupt (ring 0 or ring 3), on dunk's trap stack. The program ends
// it with dune_apic_eoi(), as under Dune (manual_eoi). No lock may be taken
// here: the interrupted code may hold any.
void on_interrupt(TrapFrame& frame) noexcept {
  dune_intr_cb cb = intr_cbs[frame.vector & 0xff].load();
  if (cb == nullptr) return;
  struct dune_tf tf;
  to_dune(frame, tf, false);
  cb(&tf);
  from_dune(tf, frame, false);
}

}  // namespace

bool page_fault_is_programs(std::uint64_t address, std::uint64_t error_code, bool user) noexcept {
  // A reserved bit set in an entry: never dunk's (it writes none).
  if (error_code & FEC_RSV) return true;
  const auto* va = reinterpret_cast<const void*>(address);
  if (const std::uint64_t* entry = deciding_entry(va)) {
    const std::uint64_t e = *entry;
    // The entry allows the access now: a TLB entry was older (the fault
    // dropped it).
    if (entry_allows(e, error_code, user)) return false;
    if ((e & kEntryOwnerBits) == kEntryProgramOwned) return true;
    // dunk never opens its mirror to ring 3 page by page.
    if (user && (e & PTE_P) && !(e & PTE_U)) return true;
  }
  return !resolve_fault(va, (error_code & FEC_W) != 0, (error_code & FEC_I) != 0);
}

void handle_ring3_exception(struct dune_tf& tf, unsigned vector, std::uint64_t cr2) noexcept {
  if (dune_intr_cb cb = intr_cbs[vector].load()) return cb(&tf);
  if (vector == T_PGFLT) {
    if (dune_pgflt_cb cb = pgflt_cb.load()) return cb(cr2, tf.err, &tf);
    unhandled(tf, "page fault in ring 3, vector", vector, cr2);
  }
  unhandled(tf, "exception in ring 3, vector", vector, cr2);
}

void handle_ring3_syscall(struct dune_tf& tf) noexcept {
  if (dune_syscall_cb cb = syscall_cb.load()) return cb(&tf);
  dune_printf("dune: system call %lu in ring 3: no handler\n", static_cast<unsigned long>(tf.rax));
  dune_dump_trap_frame(&tf);
  dune_die();
}

void to_dune(const TrapFrame& f, struct dune_tf& tf, bool syscall) noexcept {
  tf.rdi = f.rdi;
  tf.rsi = f.rsi;
  tf.rdx = f.rdx;
  tf.rcx = syscall ? f.r10 : f.rcx;
  tf.r8 = f.r8;
  tf.r9 = f.r9;
  tf.r10 = f.r10;
  tf.r11 = f.r11;
  tf.rbx = f.rbx;
  tf.rbp = f.rbp;
  tf.r12 = f.r12;
  tf.r13 = f.r13;
  tf.r14 = f.r14;
  tf.r15 = f.r15;
  tf.rax = f.rax;
  tf.err = static_cast<std::uint32_t>(f.error_code);
  tf.pad1 = 0;
  tf.rip = f.rip;
  tf.cs = static_cast<std::uint16_t>(f.cs);
  tf.pad2[0] = tf.pad2[1] = tf.pad2[2] = 0;
  tf.rflags = f.rflags;
  tf.rsp = f.rsp;
  tf.ss = static_cast<std::uint16_t>(f.ss);
  tf.pad3[0] = tf.pad3[1] = tf.pad3[2] = 0;
}

void from_dune(const struct dune_tf& tf, TrapFrame& f, bool syscall) noexcept {
  f.rdi = tf.rdi;
  f.rsi = tf.rsi;
  f.rdx = tf.rdx;
  // A system call's RCX and R11 are what SYSCALL left there (the return
  // address, the flags), as the kernel returns them; its R10 stays.
  if (!syscall) {
    f.rcx = tf.rcx;
    f.r11 = tf.r11;
  }
  f.r8 = tf.r8;
  f.r9 = tf.r9;
  f.r10 = tf.r10;
  f.rbx = tf.rbx;
  f.rbp = tf.rbp;
  f.r12 = tf.r12;
  f.r13 = tf.r13;
  f.r14 = tf.r14;
  f.r15 = tf.r15;
  f.rax = tf.rax;
  f.rip = tf.rip;
  f.rflags = tf.rflags;
  f.rsp = tf.rsp;
  // CS and SS stay: a handler does not change rings by editing the frame.
}

}  // namespace dunk::libdune

using namespace dunk::libdune;

extern "C" {

int dune_register_intr_handler(int vec, dune_intr_cb cb) {
  if (vec < 0 || vec >= IDT_ENTRIES) return -EINVAL;
  const auto vector = static_cast<unsigned>(vec);
  if (vector < dunk::kFirstInterruptVector) {
    // NMI, double fault and machine check end the program under dunk.
    if (fatal_vector(vector)) return -EINVAL;
    intr_cbs[vector].store(cb);
    update_exception_handler(vector);
    return 0;
  }
  if (vector > dunk::kLastInterruptVector) return -EINVAL;  // dunk's shootdown and spurious vectors
  intr_cbs[vector].store(cb);
  dunk::Status s = dunk::set_interrupt_handler(vector, cb != nullptr ? on_interrupt : nullptr,
                                               dunk::InterruptOptions{.manual_eoi = true});
  return s ? 0 : -s.error().err;
}

int dune_register_signal_handler(int signum, dune_intr_cb cb) {
  return dune_register_intr_handler(DUNE_SIGNAL_INTR_BASE + signum, cb);
}

void dune_register_pgflt_handler(dune_pgflt_cb cb) {
  pgflt_cb.store(cb);
  update_exception_handler(T_PGFLT);
}

void dune_register_syscall_handler(dune_syscall_cb cb) { syscall_cb.store(cb); }

}  // extern "C"
