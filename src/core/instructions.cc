// Instructions an ordinary process may execute that behave differently at
// CPL 0 in a VM, and what the monitor makes of them so that the program sees
// what it would natively (docs/compat/x86-selftests.md has the diagnosis
// behind each):
//
//   `in`/`out`      exit to the monitor for every port; the host's I/O
//                   permission decides (port_io.h)
//   `int $n`        reaches dunk's IDT stub (the gates' DPL 0 does not stop
//                   CPL 0); natively #GP(n << 3 | 2), or for 0x80 a 32-bit
//                   system call
//   `sysenter`      KVM cannot emulate it in 64-bit mode and exits with an
//                   emulation error after queueing the #UD the CPU raises
//   `lsl`/`rdpid`   of the CPU number (the vDSO's getcpu): dunk keeps the
//                   vCPU's answer equal to the host CPU's
//   `mov ..., %ss`  with one of the program's (DPL 3) stack segments: #GP
//   `lss`           at CPL 0; the thread leaves VM mode and the host runs it
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>

#include "arch/x86_64/descriptors.h"
#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "core/monitor.h"
#include "core/port_io.h"
#include "core/signal_frame.h"
#include "core/text.h"

namespace dunk::core {
namespace {

constexpr std::uint64_t kInt80Vector = 0x80;
constexpr std::uint8_t kIntOpcode = 0xcd;

// 32-bit system calls (arch/x86/entry/syscalls/syscall_32.tbl) that act on
// what dunk keeps for the program — its mappings, signal actions, threads,
// descriptors, segments — whose 64-bit twins the system-call table
// intercepts. Through `int $0x80` dunk would have to intercept them too;
// it refuses them instead, loudly.
bool ia32_needs_dunk(std::uint32_t nr) noexcept {
  switch (nr) {
    case 2: case 190: case 120: case 435:                // fork, vfork, clone, clone3
    case 119: case 173: case 174: case 67: case 48:      // sigreturn, rt_sigreturn, rt_sigaction, sigaction, signal
    case 186:                                            // sigaltstack
    case 90: case 192: case 91: case 125: case 380:      // mmap, mmap2, munmap, mprotect, pkey_mprotect
    case 163: case 45: case 219: case 117: case 397: case 398:  // mremap, brk, madvise, ipc, shmat, shmdt
    case 6: case 436: case 220: case 340: case 76: case 191: case 75:  // close, close_range, getdents64, *rlimit*
    case 384: case 243: case 123:                        // arch_prctl, set_thread_area, modify_ldt
      return true;
    default:
      return false;
  }
}
constexpr std::uint32_t kIa32Exit = 1, kIa32ExitGroup = 252;

}  // namespace

bool Monitor::software_interrupt_before(std::uint64_t rip, std::uint64_t vector) noexcept {
  std::uint8_t before[2];
  return memory_.read(before, rip - 2, sizeof before) && before[0] == kIntOpcode && before[1] == vector;
}

bool Monitor::handle_software_interrupt(TrapFrame& f) noexcept {
  using arch::Vector;
  const std::uint64_t vector = f.vector;
  // #BP and #OF have gates of DPL 3 natively too (`int3`, `int $3`,
  // `int $4`): they are the exceptions they look like.
  if (vector == static_cast<std::uint64_t>(Vector::kBreakpoint) ||
      vector == static_cast<std::uint64_t>(Vector::kOverflow)) {
    return false;
  }
  if (arch::pushes_error_code(static_cast<unsigned>(vector)) && vector < DUNK_FIRST_INTERRUPT_VECTOR) {
    // A software `int $n` of a vector the CPU pushes an error code for
    // pushed none: the stub read the frame one slot off, its "error code"
    // is the RIP and its CS the next slot's. Put the frame back in order.
    // (dunk_trap_hook declined it for this reason: a CS that is neither
    // of dunk's code selectors; the real CS is in the RIP slot.)
    if (f.cs == DUNK_KERNEL_CS || f.cs == DUNK_USER_CS || f.rip != DUNK_KERNEL_CS) return false;
    if (!software_interrupt_before(f.error_code, vector)) return false;
    const TrapFrame shifted = f;
    f.rip = shifted.error_code;
    f.cs = shifted.rip;
    f.rflags = shifted.cs;
    f.rsp = shifted.rflags;
    f.ss = shifted.rsp;  // the slot above the CPU's frame: the stub's IRETQ reads it there
  } else if (!software_interrupt_before(f.rip, vector)) {
    return false;  // the exception it looks like (or a stray interrupt)
  }
  if (vector == kInt80Vector) {
    serve_int80(f);
    return true;
  }
  // Natively a gate of DPL 0 refuses CPL 3: #GP with the gate's selector
  // (IDT bit set), at the INT instruction.
  f.rip -= 2;
  f.error_code = (vector << 3) | 2;
  f.vector = static_cast<std::uint64_t>(Vector::kGeneralProtection);
  return false;  // the #GP goes on like any other exception
}

void Monitor::serve_int80(TrapFrame& f) noexcept {
  // The 32-bit convention: EAX, then EBX, ECX, EDX, ESI, EDI, EBP.
  const auto nr = static_cast<std::uint32_t>(f.rax);
  const Syscall call{nr, {f.rbx & 0xffffffff, f.rcx & 0xffffffff, f.rdx & 0xffffffff, f.rsi & 0xffffffff,
                          f.rdi & 0xffffffff, f.rbp & 0xffffffff}};
  if (ia32_needs_dunk(nr)) {
    char line[200];
    TextBuffer text(line, sizeof line);
    text.append("dunk: the 32-bit system call ").dec(nr);
    text.append(" (int $0x80) is not supported in VM mode: it changes what dunk keeps for the program\n");
    write_stderr(text.c_str());
    f.rax = static_cast<std::uint64_t>(-ENOSYS);
    return;
  }
  // An exit is made whatever signal arrives meanwhile: the vCPU is let go
  // of first (HostKernel::finish).
  static constexpr std::uint32_t kNever = 0;
  const bool exits = nr == kIa32Exit || nr == kIa32ExitGroup;
  if (nr == kIa32Exit && threads_.thread_exits()) threads_.process_exits();
  if (nr == kIa32ExitGroup) threads_.process_exits();
  const long ret = dunk_int80(&call, exits ? &kNever : &cpu_.signals.arrived);
  // Like a forwarded call the kernel would restart after a handler: the
  // handler runs first, then the guest's INT again (also 2 bytes).
  if (ret == kRestartGuestSyscall) {
    f.rip -= 2;
    return;
  }
  f.rax = static_cast<std::uint64_t>(ret);
}

namespace {

// Whether `code` (read at a RIP) is an instruction that loads SS from a
// selector: MOV Sreg (8E /2) or LSS (0F B2), after any prefixes.
bool loads_stack_segment(const std::uint8_t* code, std::size_t size) noexcept {
  std::size_t i = 0;
  auto is_prefix = [](std::uint8_t b) {
    return b == 0x66 || b == 0x67 || b == 0xf0 || b == 0xf2 || b == 0xf3 || b == 0x2e || b == 0x36 ||
           b == 0x3e || b == 0x26 || b == 0x64 || b == 0x65 || (b & 0xf0) == 0x40;  // REX
  };
  while (i < size && is_prefix(code[i])) ++i;
  if (i + 1 >= size) return false;
  if (code[i] == 0x8e) return ((code[i + 1] >> 3) & 7) == 2;  // ModRM.reg 2: SS
  return code[i] == 0x0f && code[i + 1] == 0xb2;
}

// VERW: a selector the host thread (CPL 3) can load into SS, i.e. a present
// writable data segment of DPL 3.
bool host_can_load_stack_segment(std::uint16_t selector) noexcept {
  bool writable = false;
  asm("verw %1\n\tsetz %0" : "=q"(writable) : "r"(selector) : "cc");
  return writable;
}

}  // namespace

bool Monitor::leave_for_stack_segment(const TrapFrame& f) noexcept {
  if (f.vector != static_cast<std::uint64_t>(arch::Vector::kGeneralProtection)) return false;
  // #GP(selector): the index and TI bit of the selector refused (an RPL of
  // 3, which is not the CPL, is one reason); bits 0-1 clear for a selector.
  if (f.error_code == 0 || (f.error_code & 3) != 0 || f.error_code > 0xffff) return false;
  const auto selector = static_cast<std::uint16_t>(f.error_code | 3);
  // At most an instruction's 15 bytes, and none of the next page's.
  std::uint8_t code[15];
  const std::size_t size = std::min<std::size_t>(sizeof code, 4096 - (f.rip & 4095));
  if (!memory_.read(code, f.rip, size) || !loads_stack_segment(code, size)) return false;
  if (!host_can_load_stack_segment(selector)) return false;
  char line[256];
  TextBuffer text(line, sizeof line);
  text.append("dunk: thread ").dec(sys::call(SYS_gettid)).append(" loads SS with selector ").hex(selector);
  text.append(", a stack segment of DPL 3, which CPL 0 cannot use: it leaves VM mode and runs on natively\n");
  write_stderr(text.c_str());
  leave_to_host(f, false);
}

void Monitor::serve_port_io(const Exit& exit) noexcept {
  kvm_run& run = *cpu_.vcpu.run_page();
  auto* data = reinterpret_cast<std::byte*>(&run) + run.io.data_offset;
  if (perform_port_io(exit.port, run.io.size, run.io.direction == KVM_EXIT_IO_OUT, run.io.count, data)) {
    return;  // KVM completes the instruction at the next KVM_RUN
  }
  // Denied: #GP(0) at the instruction, SIGSEGV. A handler's RIP cancels
  // KVM's completion (it checks the RIP is still the instruction's).
  PendingSignal p{};
  if (take_synchronous_signal(process_.actions, host_, p, SIGSEGV, SI_KERNEL, 0)) {
    p.trapno = static_cast<std::uint64_t>(arch::Vector::kGeneralProtection);
    deliver_at_vcpu(&p, 0);
    return;
  }
  // No handler: the host repeats the instruction and the kernel kills the
  // program as natively.
  TrapFrame f{};
  if (!frame_from_vcpu(f)) fatal("cannot read the guest's registers after denied port I/O", &exit);
  cpu_.refaulting = true;
  leave_to_host(f, false);
}

bool Monitor::emulation_failed_into_exception(const Exit& exit) noexcept {
  // KVM intercepts #UD to emulate what it can; what it cannot (SYSENTER
  // in 64-bit mode, on AMD) it reports as an emulation error after queueing
  // the #UD for the guest. Entering again delivers it, and dunk's usual
  // path gives the program its SIGILL.
  if (exit.hardware_reason != KVM_INTERNAL_ERROR_EMULATION) return false;
  kvm_regs r{};
  kvm_vcpu_events events{};
  if (!cpu_.vcpu.get_regs(r) || !cpu_.vcpu.get_events(events) || in_dunk_code(r.rip)) return false;
  return (events.exception.pending != 0 || events.exception.injected != 0) &&
         events.exception.nr == static_cast<std::uint8_t>(arch::Vector::kInvalidOpcode);
}

void Monitor::load_ldt() noexcept {
  const LdtMirror& ldt = machine_.ldt();
  const std::uint64_t generation = ldt.generation();
  const std::uint32_t bytes = ldt.bytes();
  const Gva base(reinterpret_cast<std::uint64_t>(ldt.table()));
  kvm_sregs sregs{};
  if (!cpu_.vcpu.get_sregs(sregs)) fatal("cannot read the guest's segments to load its LDT");
  sregs.ldt = kvm_segment{};
  sregs.ldt.type = static_cast<std::uint8_t>(arch::SystemType::kLdt);
  if (bytes == 0) {
    sregs.ldt.unusable = 1;
  } else {
    // The GDT's LDT descriptor too, for code that loads LDTR itself.
    const arch::SystemDescriptor descriptor = arch::ldt_descriptor(base, bytes);
    cpu_.area->gdt[arch::gdt::kLdtIndex] = descriptor.low();
    cpu_.area->gdt[arch::gdt::kLdtIndex + 1] = arch::SegmentDescriptor(descriptor.high());
    sregs.ldt.base = base.value();
    sregs.ldt.limit = bytes - 1;
    sregs.ldt.selector = arch::gdt::kLdt.raw();
    sregs.ldt.present = 1;
  }
  if (!cpu_.vcpu.set_sregs(sregs)) fatal("cannot load the program's LDT into the guest");
  cpu_.ldt_generation = generation;
}

void Monitor::follow_host_cpu() noexcept {
  // The CPU and node the host thread runs on, as the host's vDSO reads them:
  // the limit of the per-CPU segment (arch/x86/include/asm/segment.h,
  // vdso_read_cpunode).
  std::uint32_t limit = 0;
  asm volatile("lsl %1, %0" : "=r"(limit) : "r"(static_cast<std::uint32_t>(arch::gdt::kCpuNode.raw())));
  if (limit == cpu_.cpunode_limit) return;
  cpu_.cpunode_limit = limit;
  const arch::CpuNode where = arch::decode_cpunode_limit(limit);
  cpu_.area->gdt[arch::gdt::kCpuNodeIndex] = arch::cpunode_segment(where);
  const kvm_msr_entry tsc_aux{arch::msr::kTscAux, 0, arch::encode_cpunode_limit(where)};
  (void)cpu_.vcpu.set_msrs({&tsc_aux, 1});
}

}  // namespace dunk::core
