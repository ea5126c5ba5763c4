// The corners of the x86-64 user ABI that a program in VM mode meets on
// dunk's GDT, IDT and entry code, each checked against what Linux gives a
// native process (the kernel's x86 selftests, scripts/x86-selftests, probe
// the same corners; docs/compat/x86-selftests.md has the diagnosis):
// the trap flag, software interrupts and `int $0x80`, port I/O permissions,
// the selectors and page-fault error codes in signal frames, the signals
// the kernel forces, getcpu.
#include <sched.h>
#include <signal.h>
#include <asm/ldt.h>
#include <asm/prctl.h>
#include <sys/auxv.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <thread>

#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

struct Seen {
  std::atomic<int> count{0};
  std::atomic<int> sig{0};
  std::atomic<int> code{0};
  std::atomic<std::uint64_t> address{0};
  std::atomic<std::uint64_t> trapno{0};
  std::atomic<std::uint64_t> err{0};
  std::atomic<std::uint64_t> rip{0};
  std::atomic<std::uint16_t> cs{0};
  std::atomic<std::uint16_t> ss{0};
  std::atomic<int> in_vm{-1};
};
Seen seen;

void record(int sig, siginfo_t* info, void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  seen.count.fetch_add(1);
  seen.sig = sig;
  seen.code = info->si_code;
  seen.address = reinterpret_cast<std::uint64_t>(info->si_addr);
  seen.trapno = static_cast<std::uint64_t>(uc->uc_mcontext.gregs[REG_TRAPNO]);
  seen.err = static_cast<std::uint64_t>(uc->uc_mcontext.gregs[REG_ERR]);
  seen.rip = static_cast<std::uint64_t>(uc->uc_mcontext.gregs[REG_RIP]);
  const auto csgsfs = static_cast<std::uint64_t>(uc->uc_mcontext.gregs[REG_CSGSFS]);
  seen.cs = static_cast<std::uint16_t>(csgsfs & 0xffff);
  seen.ss = static_cast<std::uint16_t>(csgsfs >> 48);
  seen.in_vm = test::in_guest_ring0() ? 1 : 0;
}

// A handler that records and then skips the faulting instruction of
// `length` bytes (RIP at the instruction).
template <int kLength>
void record_and_skip(int sig, siginfo_t* info, void* context) {
  record(sig, info, context);
  static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP] += kLength;
}

void install(int sig, void (*handler)(int, siginfo_t*, void*), int flags = 0) {
  struct sigaction sa {};
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | flags;
  ASSERT_EQ(sigaction(sig, &sa, nullptr), 0);
}

class AbiEdges : public ::testing::Test {
 protected:
  void SetUp() override {
    seen.count = 0;
    seen.sig = 0;
    seen.in_vm = -1;
  }
  void TearDown() override {
    test::shutdown_or_fail();
    test::reset_signal_state();
  }
};

TEST_F(AbiEdges, TheTrapFlagRaisesSigtrapInTheProgramsHandler) {
  install(SIGTRAP, record);
  test::enter_or_fail();
  // Set TF: the instruction after the POPF completes, then #DB.
  asm volatile(
      "pushfq\n"
      "orq $0x100, (%%rsp)\n"
      "popfq\n"
      "nop\n"
      "pushfq\n"
      "andq $~0x100, (%%rsp)\n"
      "popfq\n" ::: "memory", "cc");
  ASSERT_GE(seen.count.load(), 1);
  EXPECT_EQ(seen.sig.load(), SIGTRAP);
  EXPECT_EQ(seen.code.load(), TRAP_TRACE);
  EXPECT_EQ(seen.trapno.load(), 1u);
  EXPECT_EQ(seen.in_vm.load(), 1);
  EXPECT_TRUE(test::in_guest_ring0());
}

TEST_F(AbiEdges, IntOfAVectorWithoutAUserGateIsAGeneralProtectionFault) {
  install(SIGSEGV, record_and_skip<2>);
  test::enter_or_fail();
  std::uint64_t at = 0;
  asm volatile("leaq 1f(%%rip), %0\n1: int $0x41" : "=r"(at) :: "memory");
  EXPECT_EQ(seen.count.load(), 1);
  EXPECT_EQ(seen.sig.load(), SIGSEGV);
  EXPECT_EQ(seen.code.load(), SI_KERNEL);
  EXPECT_EQ(seen.trapno.load(), 13u);
  EXPECT_EQ(seen.err.load(), (0x41u << 3) | 2);  // the gate's IDT selector
  EXPECT_EQ(seen.rip.load(), at);                 // at the INT, as natively
  // A vector the CPU pushes an error code for (#GP itself).
  asm volatile("leaq 1f(%%rip), %0\n1: int $13" : "=r"(at) :: "memory");
  EXPECT_EQ(seen.count.load(), 2);
  EXPECT_EQ(seen.err.load(), (13u << 3) | 2);
  EXPECT_EQ(seen.rip.load(), at);
  EXPECT_TRUE(test::in_guest_ring0());
}

TEST_F(AbiEdges, Int80MakesA32BitSystemCall) {
  test::enter_or_fail();
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(20 /* ia32 getpid */) : "memory");
  EXPECT_EQ(ret, getpid());
  // One that would act on what dunk keeps (ia32 brk) fails loudly.
  asm volatile("int $0x80" : "=a"(ret) : "a"(45), "b"(0) : "memory");
  EXPECT_EQ(ret, -ENOSYS);
  EXPECT_TRUE(test::in_guest_ring0());
}

TEST_F(AbiEdges, PortIoFollowsTheHostsPermission) {
  install(SIGSEGV, record_and_skip<1>);
  test::enter_or_fail();
  std::uint64_t at = 0;
  // Not permitted: #GP at the OUT, SIGSEGV.
  asm volatile("leaq 1f(%%rip), %0\n movb $0, %%al\n movw $0x80, %%dx\n1: outb %%al, %%dx"
               : "=r"(at) :: "rax", "rdx", "memory");
  EXPECT_EQ(seen.count.load(), 1);
  EXPECT_EQ(seen.sig.load(), SIGSEGV);
  EXPECT_EQ(seen.trapno.load(), 13u);
  EXPECT_EQ(seen.rip.load(), at);
  // Permitted by ioperm (the test runs as root in the nested test VM):
  // the access happens, no signal.
  if (ioperm(0x80, 1, 1) == 0) {
    outb(0x12, 0x80);
    (void)inb(0x80);
    EXPECT_EQ(seen.count.load(), 1);
    ASSERT_EQ(ioperm(0x80, 1, 0), 0);
  } else {
    ADD_FAILURE() << "ioperm(0x80) failed natively (" << std::strerror(errno) << "): this test needs CAP_SYS_RAWIO";
  }
  EXPECT_TRUE(test::in_guest_ring0());
}

TEST_F(AbiEdges, SignalFramesShowUserSelectorsAndUserPageFaults) {
  install(SIGSEGV, record_and_skip<3>);
  test::enter_or_fail();
  void* page = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  // A 3-byte store (movb $0, (%rdi) is c6 07 00).
  asm volatile("movb $0, (%0)" ::"D"(page) : "memory");
  EXPECT_EQ(seen.count.load(), 1);
  EXPECT_EQ(seen.cs.load(), 0x33);
  EXPECT_EQ(seen.ss.load(), 0x2b);
  EXPECT_EQ(seen.code.load(), SEGV_ACCERR);
  EXPECT_EQ(seen.err.load(), 0x7u);  // present, write, user — as natively
  munmap(page, 4096);
}

TEST_F(AbiEdges, AFrameThatCannotBeWrittenForcesSigsegv) {
  install(SIGSEGV, record);
  static std::atomic<int> usr1_ran{0};
  struct sigaction sa {};
  sa.sa_handler = [](int) { usr1_ran = 1; };
  sa.sa_flags = SA_ONSTACK;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  // An alternate stack the kernel cannot write a frame to (read-only):
  // natively force_sigsegv, SIGSEGV to its handler (on the normal stack).
  void* stack = mmap(nullptr, 65536, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(stack, MAP_FAILED);
  stack_t alt{};
  alt.ss_sp = stack;
  alt.ss_size = 65536;
  ASSERT_EQ(sigaltstack(&alt, nullptr), 0);
  test::enter_or_fail();
  raise(SIGUSR1);
  EXPECT_EQ(usr1_ran.load(), 0) << "the SIGUSR1 handler ran on a stack its frame cannot be written to";
  EXPECT_EQ(seen.count.load(), 1);
  EXPECT_EQ(seen.sig.load(), SIGSEGV);
  EXPECT_EQ(seen.in_vm.load(), 1);
}

// An XSAVE header the CPU refuses, written by a SIGUSR1 handler: the
// kernel's rt_sigreturn forces SIGSEGV, whose handler runs, and the program
// continues where SIGUSR1 interrupted it.
void corrupt_xstate(int, siginfo_t*, void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  auto* image = reinterpret_cast<std::uint8_t*>(uc->uc_mcontext.fpregs);
  const std::uint32_t garbage = 0xfffffff;
  std::memcpy(image + 528, &garbage, sizeof garbage);  // reserved bytes of the XSAVE header
}

TEST_F(AbiEdges, ACorruptXsaveHeaderInSigreturnForcesSigsegv) {
  install(SIGSEGV, record);
  install(SIGUSR1, corrupt_xstate);
  test::enter_or_fail();
  raise(SIGUSR1);
  EXPECT_EQ(seen.count.load(), 1);
  EXPECT_EQ(seen.sig.load(), SIGSEGV);
  EXPECT_EQ(seen.in_vm.load(), 1);
  EXPECT_TRUE(test::in_guest_ring0());
}

TEST_F(AbiEdges, GetcpuAnswersTheHostCpuTheThreadRunsOn) {
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  ASSERT_GE(cpus, 2) << "needs two CPUs to tell them apart";
  test::enter_or_fail();
  for (int want = 0; want < 2; ++want) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(want, &set);
    ASSERT_EQ(sched_setaffinity(0, sizeof set, &set), 0);
    EXPECT_EQ(sched_getcpu(), want);  // the vDSO's getcpu: RDPID or LSL, no system call
    unsigned cpu = 99;
    ASSERT_EQ(syscall(SYS_getcpu, &cpu, nullptr, nullptr), 0);
    EXPECT_EQ(cpu, static_cast<unsigned>(want));
  }
}

// What lar/lsl say of a selector, or nullopt when it is invalid (ZF clear).
struct SegmentView {
  std::uint32_t access;
  std::uint32_t limit;
};
std::optional<SegmentView> examine(std::uint16_t selector) {
  std::uint32_t access = 0, limit = 0;
  std::uint8_t valid_access = 0, valid_limit = 0;
  asm volatile("lar %k2, %0\n setz %1" : "=r"(access), "=q"(valid_access) : "r"(std::uint32_t{selector}) : "cc");
  asm volatile("lsl %k2, %0\n setz %1" : "=r"(limit), "=q"(valid_limit) : "r"(std::uint32_t{selector}) : "cc");
  if (valid_access == 0 || valid_limit == 0) return std::nullopt;
  return SegmentView{access, limit};
}

TEST_F(AbiEdges, TheProgramsLdtIsItsOwnInVmModeToo) {
  // An LDT data segment, as modify_ldt(2) makes one.
  user_desc desc{};
  desc.entry_number = 3;
  desc.limit = 0xabcd;
  desc.seg_32bit = 1;
  desc.useable = 1;
  const std::uint16_t selector = (3 << 3) | 4 | 3;  // entry 3, the LDT, RPL 3
  // Natively first (outside VM mode: this process has no VM yet).
  ASSERT_EQ(syscall(SYS_modify_ldt, 1, &desc, sizeof desc), 0);
  const auto native = examine(selector);
  ASSERT_TRUE(native) << "lar/lsl of an LDT selector natively";
  test::enter_or_fail();
  const auto in_vm = examine(selector);
  ASSERT_TRUE(in_vm) << "the LDT entry is invalid in VM mode";
  EXPECT_EQ(in_vm->access, native->access);
  EXPECT_EQ(in_vm->limit, native->limit);
  EXPECT_EQ(in_vm->limit, 0xabcdu);
  // A change made in VM mode reaches this vCPU and a new thread's.
  desc.limit = 0x1234;
  ASSERT_EQ(syscall(SYS_modify_ldt, 1, &desc, sizeof desc), 0);
  EXPECT_EQ(examine(selector)->limit, 0x1234u);
  std::uint32_t thread_limit = 0;
  std::thread([&] { thread_limit = examine(selector) ? examine(selector)->limit : 0; }).join();
  EXPECT_EQ(thread_limit, 0x1234u);
  // ES can hold it (a data segment of DPL 3, loadable at CPL 0).
  std::uint16_t es = 0;
  asm volatile("mov %1, %%es\n mov %%es, %0\n mov %2, %%es" : "=r"(es) : "r"(selector), "r"(std::uint16_t{0}));
  EXPECT_EQ(es, selector);
}

// What a program reads through GS and of GS, by `mov`. Natively the kernel
// keeps both across a context switch, a fork and ptrace; under dunk the
// vCPU holds them in VM mode and the host thread outside it.
struct GsView {
  std::uint16_t selector;
  std::uint32_t word_at_base;
};
GsView read_gs() {
  GsView v{};
  asm volatile("mov %%gs, %0\n\tmovl %%gs:0, %1" : "=r"(v.selector), "=r"(v.word_at_base));
  return v;
}
void load_gs(std::uint16_t selector) { asm volatile("mov %0, %%gs" : : "r"(selector)); }

TEST_F(AbiEdges, AnLdtSelectorInGsStaysAcrossAForkAndLeavingVmMode) {
  // The kernel's fsgsbase_restore selftest, in short: an LDT data segment
  // whose base holds a known word, loaded into GS in VM mode.
  constexpr std::uint32_t kWord = 0x1337f00d;
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  *static_cast<std::uint32_t*>(page) = kWord;
  user_desc desc{};
  desc.entry_number = 0;
  desc.base_addr = static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(page));
  desc.limit = 3;
  desc.seg_32bit = 1;
  ASSERT_EQ(syscall(SYS_modify_ldt, 1, &desc, sizeof desc), 0);
  constexpr std::uint16_t kSelector = 0x7;  // entry 0, the LDT, RPL 3

  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  load_gs(kSelector);
  const GsView in_vm = read_gs();
  EXPECT_EQ(in_vm.selector, kSelector);
  EXPECT_EQ(in_vm.word_at_base, kWord);

  // A fork child resumes in a VM of its own with the same GS (it held
  // selector 0 and base 0 before).
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const GsView v = read_gs();
    const bool in_guest = test::in_guest_ring0();
    load_gs(0);
    _exit(!in_guest ? 3 : v.selector != kSelector ? 4 : v.word_at_base != kWord ? 5 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the fork child died: status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: not in VM mode, 4: GS selector lost, 5: GS base lost";

  // Leaving VM mode hands GS to the host thread, selector and base.
  leave();
  ASSERT_FALSE(test::in_guest_ring0());
  const GsView on_host = read_gs();
  load_gs(0);
  EXPECT_EQ(on_host.selector, kSelector);
  EXPECT_EQ(on_host.word_at_base, kWord);
  munmap(page, 4096);
}

TEST_F(AbiEdges, AGsBaseWrittenWithWrgsbaseReachesAForkChildAndTheHost) {
  if ((getauxval(AT_HWCAP2) & (1UL << 1)) == 0) GTEST_SKIP() << "the kernel has not enabled FSGSBASE (HWCAP2)";
  static std::uint32_t word = 0x5eed0001;
  const auto base = reinterpret_cast<std::uint64_t>(&word);
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  // WRGSBASE, not arch_prctl: the host thread's GS base stays 0 meanwhile.
  asm volatile("wrgsbase %0" : : "r"(base));
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::uint32_t seen_word = 0;
    std::uint64_t seen_base = 0;
    asm volatile("movl %%gs:0, %0\n\trdgsbase %1" : "=r"(seen_word), "=r"(seen_base));
    syscall(SYS_arch_prctl, ARCH_SET_GS, 0);
    _exit(seen_base != base ? 4 : seen_word != 0x5eed0001 ? 5 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the fork child died: status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "4: GS base lost, 5: GS points elsewhere";
  leave();
  std::uint64_t host_base = 0;
  ASSERT_EQ(syscall(SYS_arch_prctl, ARCH_GET_GS, &host_base), 0);
  syscall(SYS_arch_prctl, ARCH_SET_GS, 0);
  EXPECT_EQ(host_base, base);
}

// An LDT data segment for SS (DPL 3, as every entry modify_ldt makes).
void make_ldt_stack_segment(unsigned entry) {
  user_desc desc{};
  desc.entry_number = entry;
  desc.limit = 0xfffff;
  desc.limit_in_pages = 1;
  desc.seg_32bit = 1;
  ASSERT_EQ(syscall(SYS_modify_ldt, 0x11, &desc, sizeof desc), 0);
}

TEST_F(AbiEdges, LoadingSsWithAnLdtStackSegmentLeavesVmModeAndWorks) {
  // ldt_gdt's cross-CPU part: SS loaded with the program's LDT data segment
  // (DPL 3). Natively that works; at CPL 0 it is #GP(selector). The thread
  // leaves VM mode at the instruction, which the host then runs.
  make_ldt_stack_segment(0);
  constexpr std::uint16_t kSelector = 0x7;
  // With a SIGSEGV handler, as ldt_gdt has: natively it never runs for the
  // load above, and it does for a load that fails natively too (LDT entry
  // 1 is empty), which stays in VM mode.
  install(SIGSEGV, record_and_skip<2>);
  test::enter_or_fail();
  asm volatile("mov %0, %%ss" : : "a"(std::uint16_t{0x0f}));  // 8e d0
  EXPECT_EQ(seen.count.load(), 1);
  EXPECT_EQ(seen.sig.load(), SIGSEGV);
  EXPECT_EQ(seen.in_vm.load(), 1);
  ASSERT_TRUE(test::in_guest_ring0());
  std::uint16_t ss = 0;
  asm volatile("mov %1, %%ss\n\tmov %%ss, %0" : "=r"(ss) : "a"(kSelector));  // 8e d0
  const bool still_in_vm = test::in_guest_ring0();
  asm volatile("mov %0, %%ss" : : "r"(std::uint16_t{0x2b}));  // the user data segment
  EXPECT_EQ(seen.count.load(), 1) << "the load of SS raised SIGSEGV";
  EXPECT_EQ(ss, kSelector);
  EXPECT_FALSE(still_in_vm) << "the SS load ran in VM mode?";
}

// Known problem (docs/ARCHITECTURE.md, "Known problems"): a thread that left
// VM mode from an exception (here the SS load above) and enters again with
// enter() gets its next synchronous signal twice: the handler runs, and
// after its rt_sigreturn runs again at the RIP it chose, with no exception
// in between. `dunk exec` never enters again after such a leave.
TEST_F(AbiEdges, DISABLED_EnteringAgainAfterLeavingFromAnExceptionDeliversASignalOnce) {
  make_ldt_stack_segment(0);
  install(SIGSEGV, record_and_skip<2>);
  test::enter_or_fail();
  asm volatile("mov %0, %%ss" : : "a"(std::uint16_t{0x7}));
  asm volatile("mov %0, %%ss" : : "r"(std::uint16_t{0x2b}));
  ASSERT_FALSE(test::in_guest_ring0());
  test::enter_or_fail();
  asm volatile("mov %0, %%ss" : : "a"(std::uint16_t{0x0f}));  // 8e d0; LDT entry 1: empty
  EXPECT_EQ(seen.count.load(), 1);
}

}  // namespace
}  // namespace dunk
