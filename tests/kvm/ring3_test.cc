// Ring 3 under a ring-0 supervisor (dunk/ring3.h): functions run and return,
// system calls reach the supervisor's handler (deny, emulate, change, pass
// on), and every escape attempt faults to ring 0 and changes nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "dunk/ring3.h"
#include "guest/abi.h"
#include "support.h"

// The code ring 3 may run: one section, page-aligned, opened to ring 3 as a
// whole (GNU ld provides __start_/__stop_ for it). Each escape attempt is a
// label the run starts at; the instruction there must fault.
asm(R"(
  .pushsection ring3_text, "ax", @progbits
  .p2align 12
  .globl r3_cli, r3_sti, r3_hlt, r3_out_dunk_port, r3_in, r3_lgdt, r3_lidt, r3_mov_cr3, r3_read_cr3, r3_wrmsr
  .globl r3_rdmsr, r3_invlpg, r3_swapgs, r3_sysret, r3_int80, r3_iret_to_ring0, r3_load_kernel_ds, r3_ltr
  .globl r3_iretq_insn, r3_mov_ds_insn, r3_ltr_insn
  .globl r3_read_at_rdi, r3_write_own_code, r3_syscall, r3_int3, r3_wrfsbase_then_syscall, r3_far_jump_at_rdi
  .globl r3_fork_then_getpid, r3_spin_until_flag
r3_cli: cli
r3_sti: sti
r3_hlt: hlt
r3_out_dunk_port: outb %al, $0xd0
r3_in: inb $0x60, %al
r3_lgdt: lgdt (%rsp)
r3_lidt: lidt (%rsp)
r3_mov_cr3: movq %rax, %cr3
r3_read_cr3: movq %cr3, %rax
r3_wrmsr: wrmsr
r3_rdmsr: rdmsr
r3_invlpg: invlpg (%rsp)
r3_swapgs: swapgs
r3_sysret: sysretq
r3_int80: int $0x80
r3_iret_to_ring0:
  pushq $0x18
  pushq %rsp
  pushq $0x2
  pushq $0x10
  leaq r3_cli(%rip), %rax
  pushq %rax
r3_iretq_insn: iretq
r3_load_kernel_ds:
  movl $0x18, %eax
r3_mov_ds_insn: movl %eax, %ds
r3_ltr:
  movw $0x40, %ax
r3_ltr_insn: ltr %ax
r3_read_at_rdi: movb (%rdi), %al
r3_write_own_code:
  leaq r3_cli(%rip), %rax
  movb $0x90, (%rax)
r3_syscall:
  syscall
  movq %rax, %rdi
  movabsq $0x64756e6b02, %rax     # kRing3ExitSyscall: end the run, value = the result
  syscall
  ud2
r3_int3:
  int3
  movq $7, %rax
  ret
r3_wrfsbase_then_syscall:
  wrfsbase %rdi
  movl $39, %eax
  syscall
  rdfsbase %rax
  ret
r3_far_jump_at_rdi:
  ljmpl *(%rdi)
r3_fork_then_getpid:
  movl $57, %eax                  # fork: R12 = its result
  syscall
  movq %rax, %r12
  movl $39, %eax                  # getpid: the run's value
  syscall
  movq %rax, %rdi
  movabsq $0x64756e6b02, %rax     # kRing3ExitSyscall
  syscall
  ud2
# Spins until the byte at RDI is nonzero, counting in RCX, with a value in
# XMM5 and one in R12 that must survive whatever stops the loop on the way;
# ends the run with the count, or 0 if either value was lost.
r3_spin_until_flag:
  movabsq $0x1122334455667788, %rax
  movq %rax, %xmm5
  movq %rax, %r12
  xorl %ecx, %ecx
1:
  incq %rcx
  cmpb $0, (%rdi)
  je 1b
  movq %xmm5, %rsi
  movabsq $0x1122334455667788, %rax
  xorl %edi, %edi
  cmpq %rax, %rsi
  jne 2f
  cmpq %rax, %r12
  jne 2f
  movq %rcx, %rdi
2:
  movabsq $0x64756e6b02, %rax     # kRing3ExitSyscall
  syscall
  ud2
  .popsection
)");

// Ring-0 code for the test of a signal on a null SS: spins until the int
// at RDI is nonzero, making no system call, on the null selector in SS if
// ESI is nonzero (CPL 0 may load it in 64-bit mode), and returns the SS the
// loop started on. The SS it was called with comes back at the end.
asm(R"(
  .pushsection .text
  .globl spin_on_stack_segment
  .type spin_on_stack_segment, @function
spin_on_stack_segment:
  movw %ss, %r8w
  testl %esi, %esi
  jz 1f
  xorl %eax, %eax
  movw %ax, %ss
1:
  movw %ss, %ax
  movzwl %ax, %eax
2:
  cmpl $0, (%rdi)
  jne 3f
  pause
  jmp 2b
3:
  movw %r8w, %ss
  ret
  .size spin_on_stack_segment, . - spin_on_stack_segment
  .popsection
)");

extern "C" {
extern char __start_ring3_text[], __stop_ring3_text[];
extern char r3_cli[], r3_sti[], r3_hlt[], r3_out_dunk_port[], r3_in[], r3_lgdt[], r3_lidt[], r3_mov_cr3[],
    r3_read_cr3[], r3_wrmsr[], r3_rdmsr[], r3_invlpg[], r3_swapgs[], r3_sysret[], r3_int80[], r3_iret_to_ring0[],
    r3_load_kernel_ds[], r3_ltr[], r3_read_at_rdi[], r3_write_own_code[], r3_syscall[], r3_int3[],
    r3_wrfsbase_then_syscall[], r3_iretq_insn[], r3_mov_ds_insn[], r3_ltr_insn[], r3_far_jump_at_rdi[],
    r3_fork_then_getpid[], r3_spin_until_flag[];
std::uint32_t spin_on_stack_segment(volatile int* flag, int load_null);
}

// A compiled function for ring 3: no calls, no TLS (no stack protector).
__attribute__((section("ring3_text"), noinline, no_stack_protector)) std::uint64_t r3_sum_of_squares(std::uint64_t n) {
  std::uint64_t s = 0;
  for (std::uint64_t i = 1; i <= n; ++i) s += i * i;
  return s;
}

namespace dunk {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kStackSize = 4 * kPage;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

// Opens the ring-3 code and a ring-3 stack; returns the stack.
char* prepare() {
  test::enter_or_fail();
  AddressSpace& as = AddressSpace::process();
  auto start = reinterpret_cast<std::uintptr_t>(__start_ring3_text);
  auto end = (reinterpret_cast<std::uintptr_t>(__stop_ring3_text) + kPage - 1) & ~(kPage - 1);
  EXPECT_EQ(start % kPage, 0u);
  EXPECT_TRUE(as.protect(reinterpret_cast<void*>(start), end - start, kRead | kExec | kUser));
  auto* stack = static_cast<char*>(
      mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  EXPECT_NE(stack, MAP_FAILED);
  EXPECT_TRUE(as.protect(stack, kStackSize, kRead | kWrite | kUser));
  flush_tlb();
  return stack;
}

TrapFrame at(const char* rip, char* stack) {
  TrapFrame f{};
  f.rip = reinterpret_cast<std::uint64_t>(rip);
  f.rsp = reinterpret_cast<std::uint64_t>(stack + kStackSize - 64);
  return f;
}

TEST(Ring3, FunctionRunsInRingThreeAndReturns) {
  char* stack = prepare();
  auto exit = run_in_ring3(r3_sum_of_squares, 10, stack, kStackSize);
  leave();
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, Ring3Exit::kReturned);
  EXPECT_EQ(exit->value, 385u);
  EXPECT_EQ(exit->frame.cs & 3, 3u);  // it really ran in ring 3
}

TEST(Ring3, RefusesUnreachableStackOrCode) {
  test::enter_or_fail();
  char stack[kStackSize];  // supervisor-only memory
  auto exit = run_in_ring3(r3_sum_of_squares, 1, stack, kStackSize);
  leave();
  ASSERT_FALSE(exit);
  EXPECT_EQ(exit.error().err, EFAULT);
}

struct Escape {
  const char* name;
  char* code;
  std::uint64_t vector;
  char* faulting = nullptr;  // where it must fault, if not at `code`
};

TEST(Ring3, PrivilegedInstructionsFaultToRingZeroAndChangeNothing) {
  char* stack = prepare();
  const Escape escapes[] = {
      {"cli", r3_cli, 13},           {"sti", r3_sti, 13},           {"hlt", r3_hlt, 13},
      {"out to dunk's port", r3_out_dunk_port, 13},                 {"in", r3_in, 13},
      {"lgdt", r3_lgdt, 13},         {"lidt", r3_lidt, 13},         {"mov to cr3", r3_mov_cr3, 13},
      {"mov from cr3", r3_read_cr3, 13},                            {"wrmsr", r3_wrmsr, 13},
      {"rdmsr", r3_rdmsr, 13},       {"invlpg", r3_invlpg, 13},     {"swapgs", r3_swapgs, 13},
      {"sysret", r3_sysret, 13},     {"int $0x80", r3_int80, 13},   {"ltr", r3_ltr, 13, r3_ltr_insn},
      {"iretq to ring 0", r3_iret_to_ring0, 13, r3_iretq_insn},
      {"load a kernel data selector", r3_load_kernel_ds, 13, r3_mov_ds_insn},
  };
  std::uint64_t cr3_before, cr3_after;
  asm volatile("movq %%cr3, %0" : "=r"(cr3_before));
  struct __attribute__((packed)) {
    std::uint16_t limit;
    std::uint64_t base;
  } gdt_before{}, gdt_after{}, idt_before{}, idt_after{};
  asm volatile("sgdt %0; sidt %1" : "=m"(gdt_before), "=m"(idt_before));
  const std::uint64_t runs_before = kvm_runs();
  for (const Escape& e : escapes) {
    TrapFrame start = at(e.code, stack);
    start.rax = 0x1234'5000;  // a would-be CR3 / MSR value
    start.rcx = 0xc000'0082;  // LSTAR, for wrmsr/rdmsr
    const std::uint64_t runs = kvm_runs();
    auto exit = run_in_ring3(start);
    EXPECT_EQ(kvm_runs(), runs) << e.name << " reached the monitor";
    ASSERT_TRUE(exit) << e.name;
    EXPECT_EQ(exit->reason, Ring3Exit::kFault) << e.name;
    EXPECT_EQ(exit->frame.vector, e.vector) << e.name << " rip " << std::hex << exit->frame.rip << " cr2 " << exit->frame.cr2
                                            << " error " << exit->frame.error_code << " code " << (void*)e.code;
    EXPECT_EQ(exit->frame.rip, reinterpret_cast<std::uint64_t>(e.faulting != nullptr ? e.faulting : e.code))
        << e.name << ": did not fault where expected";
    EXPECT_EQ(exit->frame.cs & 3, 3u) << e.name;
  }
  const std::uint64_t runs_after = kvm_runs();
  asm volatile("movq %%cr3, %0" : "=r"(cr3_after));
  asm volatile("sgdt %0; sidt %1" : "=m"(gdt_after), "=m"(idt_after));
  std::uint64_t rflags;
  asm volatile("pushfq; popq %0" : "=r"(rflags));
  long pid = syscall(SYS_getpid);  // the monitor still answers
  leave();
  EXPECT_EQ(runs_after - runs_before, 0u) << "an escape attempt reached the monitor";
  EXPECT_EQ(cr3_before, cr3_after);
  EXPECT_EQ(gdt_before.base, gdt_after.base);
  EXPECT_EQ(idt_before.base, idt_after.base);
  EXPECT_NE(rflags & (1u << 9), 0u) << "interrupts left disabled";
  EXPECT_EQ(pid, getpid());
}

// Ring 3 may enter compatibility mode through the GDT's 32-bit user code
// selector (0x23) as Linux programs may; what it does there comes back to
// the supervisor as ring 3's exceptions: SYSCALL as #UD (Intel raises it
// itself; on AMD it reaches CSTAR, which makes it one), int $0x80 as #GP.
// Never the monitor.
TEST(Ring3, CompatibilityModeSystemCallsAreRingThreeFaults) {
  char* stack = prepare();
  // 32-bit code must lie below 4 GiB.
  auto* code = static_cast<unsigned char*>(
      mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT | MAP_POPULATE, -1, 0));
  ASSERT_NE(code, MAP_FAILED);
  const unsigned char syscall_ud2[] = {0x0f, 0x05, 0x0f, 0x0b}, int80_ud2[] = {0xcd, 0x80, 0x0f, 0x0b};
  std::memcpy(code, syscall_ud2, sizeof syscall_ud2);
  std::memcpy(code + 16, int80_ud2, sizeof int80_ud2);
  ASSERT_TRUE(AddressSpace::process().protect(code, kPage, kRead | kExec | kUser));
  flush_tlb();
  struct {
    const unsigned char* insn;
    std::uint64_t vector;
  } const cases[] = {{code, 6}, {code + 16, 13}};
  const std::uint64_t runs_before = kvm_runs();
  for (const auto& c : cases) {
    // The far pointer (m16:32) at the top of ring 3's stack.
    auto* target = reinterpret_cast<unsigned char*>(stack + kStackSize - 32);
    const auto offset = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(c.insn));
    const std::uint16_t selector = DUNK_USER32_CS;
    std::memcpy(target, &offset, 4);
    std::memcpy(target + 4, &selector, 2);
    TrapFrame start = at(r3_far_jump_at_rdi, stack);
    start.rdi = reinterpret_cast<std::uint64_t>(target);
    start.rax = 39;
    auto exit = run_in_ring3(start);
    ASSERT_TRUE(exit);
    EXPECT_EQ(exit->reason, Ring3Exit::kFault);
    EXPECT_EQ(exit->frame.vector, c.vector);
    EXPECT_EQ(exit->frame.rip, reinterpret_cast<std::uint64_t>(c.insn)) << "not at the instruction";
    EXPECT_EQ(exit->frame.cs, static_cast<std::uint64_t>(DUNK_USER32_CS));
  }
  const std::uint64_t runs_after = kvm_runs();
  long pid = syscall(SYS_getpid);  // the monitor still answers
  leave();
  EXPECT_EQ(runs_after, runs_before) << "compatibility mode reached the monitor";
  EXPECT_EQ(pid, getpid());
  munmap(code, kPage);
}

TEST(Ring3, SupervisorPagesAndItsOwnCodeAreNotWritable) {
  char* stack = prepare();
  int secret = 42;
  TrapFrame read = at(r3_read_at_rdi, stack);
  read.rdi = reinterpret_cast<std::uint64_t>(&secret);
  auto r = run_in_ring3(read);
  TrapFrame area_read = at(r3_read_at_rdi, stack);
  area_read.rdi = reinterpret_cast<std::uint64_t>(core::current_cpu()->area);
  auto a = run_in_ring3(area_read);
  auto w = run_in_ring3(at(r3_write_own_code, stack));
  leave();
  ASSERT_TRUE(r && a && w);
  EXPECT_EQ(r->reason, Ring3Exit::kFault);
  EXPECT_EQ(r->frame.vector, 14u);
  EXPECT_EQ(r->frame.cr2, reinterpret_cast<std::uint64_t>(&secret));
  EXPECT_EQ(r->frame.error_code & 0x5, 0x5u);  // present, user
  EXPECT_EQ(a->frame.vector, 14u);
  EXPECT_EQ(w->frame.vector, 14u);
  EXPECT_EQ(w->frame.error_code & 0x7, 0x7u);  // present, write, user
  EXPECT_EQ(r3_cli[0], static_cast<char>(0xfa));
}

Ring3Action policy(TrapFrame& f, void* cookie) noexcept {
  ++*static_cast<int*>(cookie);
  switch (f.rax) {
    case SYS_getpid:
      f.rax = static_cast<std::uint64_t>(forward_syscall(f));  // pass to the host
      break;
    case SYS_getuid:
      f.rax = 4242;  // emulate
      break;
    case SYS_write:
      f.rdx = 3;  // change an argument, then pass on
      f.rax = static_cast<std::uint64_t>(forward_syscall(f));
      break;
    default:
      f.rax = static_cast<std::uint64_t>(-EPERM);  // deny
  }
  return Ring3Action::kResume;
}

TEST(Ring3, SystemCallsGoToTheSupervisorsHandler) {
  char* stack = prepare();
  int calls = 0;
  Ring3Options options{.on_syscall = policy, .cookie = &calls};
  auto run = [&](std::uint64_t nr, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0) {
    TrapFrame f = at(r3_syscall, stack);
    f.rax = nr, f.rdi = a0, f.rsi = a1, f.rdx = a2;
    return run_in_ring3(f, options);
  };
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  char* message = stack;  // ring-3 memory
  std::memcpy(message, "hello", 5);
  const std::uint64_t runs_before = kvm_runs();
  auto pid = run(SYS_getpid);
  const std::uint64_t runs_after = kvm_runs();
  auto uid = run(SYS_getuid);
  auto denied = run(SYS_kill, static_cast<std::uint64_t>(getpid()), 9);
  auto written = run(SYS_write, static_cast<std::uint64_t>(pipefd[1]), reinterpret_cast<std::uint64_t>(message), 5);
  auto leave_attempt = run(DUNK_SYSCALL_LEAVE);
  bool still_in_vm = in_vm();
  leave();
  char got[8] = {};
  ASSERT_EQ(read(pipefd[0], got, sizeof got), 3);
  ASSERT_TRUE(pid && uid && denied && written && leave_attempt);
  EXPECT_EQ(pid->reason, Ring3Exit::kReturned);
  EXPECT_EQ(static_cast<long>(pid->value), getpid());
  EXPECT_EQ(runs_after - runs_before, 1u) << "passing getpid on costs exactly its one forwarded call";
  EXPECT_EQ(uid->value, 4242u);
  EXPECT_EQ(static_cast<long>(denied->value), -EPERM);
  EXPECT_EQ(written->value, 3u);
  EXPECT_STREQ(got, "hel");
  EXPECT_EQ(static_cast<long>(leave_attempt->value), -EPERM);  // dunk's own calls are just numbers here
  EXPECT_TRUE(still_in_vm);
  EXPECT_EQ(calls, 5);
}

// A fork made inside the system-call handler of a ring-3 run (the handler
// calls fork itself, as a sandbox serving ring 3's fork does): the child's
// VM carries the run in progress and the page-table edits that opened the
// code and stack to ring 3, so the handler returns in the child too, and
// ring 3 goes on there. Both sides then ask getpid through the handler and
// end their runs with the answer; the parent checks the child's status.
TEST(Ring3, ForkInsideTheSyscallHandlerResumesRingThreeInTheChild) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  char* stack = prepare();
  Ring3Options options;
  options.on_syscall = [](TrapFrame& f, void*) noexcept {
    if (f.rax == SYS_fork || f.rax == SYS_getpid) {
      f.rax = static_cast<std::uint64_t>(syscall(static_cast<long>(f.rax)));
      return Ring3Action::kResume;
    }
    return Ring3Action::kStop;
  };
  const pid_t parent = getpid();
  auto exit = run_in_ring3(at(r3_fork_then_getpid, stack), options);
  if (getpid() != parent) {
    // The child, back from its ring 3: it ran there as itself, fork's
    // answer 0, and is still in VM mode.
    const bool ok = exit && exit->reason == Ring3Exit::kReturned && exit->frame.r12 == 0 &&
                    exit->value == static_cast<std::uint64_t>(getpid()) && in_vm();
    _exit(ok ? 0 : 1);
  }
  leave();
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, Ring3Exit::kReturned);
  EXPECT_EQ(exit->value, static_cast<std::uint64_t>(parent));
  const auto child = static_cast<pid_t>(exit->frame.r12);
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Ring3, WithoutAHandlerASystemCallEndsTheRun) {
  char* stack = prepare();
  TrapFrame f = at(r3_syscall, stack);
  f.rax = SYS_getpid;
  f.rdi = 77;
  auto exit = run_in_ring3(f);
  leave();
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, Ring3Exit::kSyscall);
  EXPECT_EQ(exit->frame.rax, static_cast<std::uint64_t>(SYS_getpid));
  EXPECT_EQ(exit->frame.rdi, 77u);
  EXPECT_EQ(exit->frame.rip, reinterpret_cast<std::uint64_t>(r3_syscall) + 2);  // after the SYSCALL
}

Ring3Action resume_breakpoint(TrapFrame& f, void* cookie) noexcept {
  *static_cast<std::uint64_t*>(cookie) = f.vector;
  return Ring3Action::kResume;
}

TEST(Ring3, FaultHandlerCanResume) {
  char* stack = prepare();
  std::uint64_t seen = 0;
  Ring3Options options{.on_fault = resume_breakpoint, .cookie = &seen};
  auto exit = run_in_ring3(reinterpret_cast<std::uint64_t (*)(std::uint64_t)>(r3_int3), 0, stack, kStackSize, options);
  leave();
  ASSERT_TRUE(exit);
  EXPECT_EQ(seen, 3u);
  EXPECT_EQ(exit->reason, Ring3Exit::kReturned);
  EXPECT_EQ(exit->value, 7u);
}

TEST(Ring3, OwnFsBaseDoesNotLeakIntoTheSupervisor) {
  if (!core::Machine::instance().features().fsgsbase && core::Machine::instance().created()) GTEST_SKIP();
  char* stack = prepare();
  if (!core::Machine::instance().features().fsgsbase) {
    leave();
    GTEST_SKIP() << "no FSGSBASE: ring 3 cannot change its FS base at all";
  }
  int count = 0;
  Ring3Options options{.on_syscall = policy, .cookie = &count};  // the handler runs compiled code using TLS
  auto exit = run_in_ring3(reinterpret_cast<std::uint64_t (*)(std::uint64_t)>(r3_wrfsbase_then_syscall), 0xdead000,
                           stack, kStackSize, options);
  std::uint64_t fs_after;
  asm volatile("rdfsbase %0" : "=r"(fs_after));
  std::uint64_t fs_expected = 0;
  syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &fs_expected);
  leave();
  ASSERT_TRUE(exit);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(exit->value, 0xdead000u);  // ring 3 kept its own FS base across the call
  EXPECT_EQ(fs_after, fs_expected);    // and the supervisor has its own back
}

// Ring3Options::interruptible: a signal for the thread stops a ring-3 run
// that makes no call, and its handler runs in ring 0 at the caller's next
// system call (here signal_point()); the run goes on from the frame.
std::atomic<int> usr1_count{0};
std::atomic<bool> usr1_in_guest{false};

void count_usr1(int) {
  usr1_in_guest = test::in_guest_ring0();
  usr1_count.fetch_add(1);
}

void install_usr1_counter() {
  usr1_count = 0;
  struct sigaction sa {};
  sa.sa_handler = count_usr1;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
}

// A 64-byte aligned buffer for ring 3's FPU state (whole pages).
void* fpu_buffer() {
  const std::size_t size = (ring3_fpu_size() + kPage - 1) & ~(kPage - 1);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  return p;
}

void usr1_after(pid_t tid, int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  syscall(SYS_tgkill, getpid(), tid, SIGUSR1);
}

TEST(Ring3, ASignalStopsALoopInARunThatAllowsItAndTheRunGoesOn) {
  install_usr1_counter();
  char* stack = prepare();
  void* fpu = fpu_buffer();
  auto* flag = reinterpret_cast<volatile char*>(stack);  // ring-3 memory
  *flag = 0;
  Ring3Options options;
  options.interruptible = true;
  options.fpu_out = fpu;
  TrapFrame start = at(r3_spin_until_flag, stack);
  start.rdi = reinterpret_cast<std::uint64_t>(flag);
  std::thread sender(usr1_after, static_cast<pid_t>(syscall(SYS_gettid)), 50);
  auto exit = run_in_ring3(start, options);
  signal_point();
  const int handled = usr1_count.load();
  sender.join();
  ASSERT_TRUE(exit);
  *flag = 1;
  options.fpu = fpu;
  auto resumed = run_in_ring3(exit->frame, options);
  leave();
  EXPECT_EQ(exit->reason, Ring3Exit::kInterrupted);
  EXPECT_EQ(exit->frame.cs & 3, 3u);
  const auto loop = reinterpret_cast<std::uint64_t>(r3_spin_until_flag);
  EXPECT_GE(exit->frame.rip, loop);
  EXPECT_LT(exit->frame.rip, loop + 64) << "stopped inside the loop";
  EXPECT_EQ(handled, 1) << "the handler ran at signal_point()";
  EXPECT_TRUE(usr1_in_guest.load()) << "in VM mode, in ring 0";
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->reason, Ring3Exit::kReturned);
  EXPECT_GT(resumed->value, exit->frame.rcx) << "the loop went on from its count; XMM5 and R12 kept (0: lost)";
}

// The default: the signal waits while ring 3 runs; the run is not stopped
// for it (libdune's and other callers' runs end only by their own events).
TEST(Ring3, WithoutInterruptibleASignalDoesNotStopTheRun) {
  install_usr1_counter();
  char* stack = prepare();
  auto* flag = reinterpret_cast<volatile char*>(stack);
  *flag = 0;
  TrapFrame start = at(r3_spin_until_flag, stack);
  start.rdi = reinterpret_cast<std::uint64_t>(flag);
  const auto tid = static_cast<pid_t>(syscall(SYS_gettid));
  std::thread sender([tid, flag] {
    usr1_after(tid, 50);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    *flag = 1;
  });
  auto exit = run_in_ring3(start);
  sender.join();
  signal_point();
  const int handled = usr1_count.load();
  leave();
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, Ring3Exit::kReturned);
  EXPECT_GT(exit->value, 0u);
  EXPECT_EQ(handled, 1);
}

// A signal that comes while a handler of the run serves ring 3's call (here
// the handler sends it, through a forwarded tgkill) stops the run where the
// handler would have resumed it: after the call, with its answer in RAX.
TEST(Ring3, ASignalDuringAHandlerStopsTheRunWhereItWouldResume) {
  install_usr1_counter();
  char* stack = prepare();
  Ring3Options options;
  options.interruptible = true;
  options.on_syscall = [](TrapFrame& f, void*) noexcept {
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
    f.rax = 4242;
    return Ring3Action::kResume;
  };
  TrapFrame start = at(r3_syscall, stack);
  start.rax = SYS_getpid;
  auto exit = run_in_ring3(start, options);
  signal_point();
  const int handled = usr1_count.load();
  ASSERT_TRUE(exit);
  auto resumed = run_in_ring3(exit->frame, options);
  leave();
  EXPECT_EQ(exit->reason, Ring3Exit::kInterrupted);
  EXPECT_EQ(exit->frame.rip, reinterpret_cast<std::uint64_t>(r3_syscall) + 2);  // after the SYSCALL
  EXPECT_EQ(exit->frame.rax, 4242u);
  EXPECT_EQ(handled, 1);
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->reason, Ring3Exit::kReturned);
  EXPECT_EQ(resumed->value, 4242u);
}

// A run that an event of ring 3 ended (here #BP) leaves the caller in ring 0
// on the null SS the event loaded (64-bit mode, a change of privilege) until
// its next system call; ring-0 code may also load the null selector itself.
// A signal whose handler interrupts such code (a loop without calls: the
// monitor builds the frame from the vCPU's registers) gets a frame that says
// the user data segment, as every native frame does, and its rt_sigreturn
// goes back to the loop. Before, the frame said 0, its return was a bad
// frame (the #GP of a null SS under UC_STRICT_RESTORE_SS) and SIGSEGV
// killed the process: dunk sandbox's supervisor, whose signal 32 nested
// under SA_NODEFER in that window, died so.
volatile int null_ss_handled = 0;
std::atomic<std::uint64_t> null_ss_frame_ss{~std::uint64_t{0}};

void record_frame_ss(int, siginfo_t*, void* context) {
  const auto* uc = static_cast<const ucontext_t*>(context);
  null_ss_frame_ss = (static_cast<std::uint64_t>(uc->uc_mcontext.gregs[REG_CSGSFS]) >> 48) & 0xffff;
  null_ss_handled = 1;
}

TEST(Ring3, AHandlerThatInterruptedRingZeroOnANullStackSegmentReturns) {
  test::ChildResult r = test::run_in_child([] {
    char* stack = prepare();
    struct sigaction sa {};
    sa.sa_sigaction = record_frame_ss;
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGUSR1, &sa, nullptr) != 0) return 10;
    const auto tid = static_cast<pid_t>(syscall(SYS_gettid));
    int failures = 0;
    for (const bool after_ring3 : {true, false}) {
      null_ss_handled = 0;
      null_ss_frame_ss = ~std::uint64_t{0};
      std::atomic<bool> armed{false};
      // Made before the run: from the run's end to the handler's return
      // the caller makes no system call.
      std::thread sender([&armed, tid] {
        while (!armed.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        usr1_after(tid, 20);
      });
      std::uint32_t loop_ss = 0xffff;
      if (after_ring3) {
        auto exit = run_in_ring3(at(r3_int3, stack));
        armed = true;
        loop_ss = spin_on_stack_segment(&null_ss_handled, 0);
        if (!exit || exit->reason != Ring3Exit::kFault) {
          std::printf("the ring-3 run did not end with its #BP\n");
          ++failures;
        }
      } else {
        armed = true;
        loop_ss = spin_on_stack_segment(&null_ss_handled, 1);
      }
      sender.join();
      const char* how = after_ring3 ? "after a ring-3 run ended by #BP" : "with the null selector loaded";
      if ((loop_ss & ~3u) != 0) {
        std::printf("%s: the loop ran on SS %#x, not the null selector\n", how, loop_ss);
        ++failures;
      }
      if (null_ss_frame_ss.load() != DUNK_USER_DS) {
        std::printf("%s: the frame said SS %#llx\n", how, static_cast<unsigned long long>(null_ss_frame_ss.load()));
        ++failures;
      }
    }
    leave();
    return failures;
  });
  EXPECT_TRUE(r.exited) << "killed by signal " << r.signal << "\n" << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace dunk
