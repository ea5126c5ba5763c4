// The program's exception handlers (dunk/traps.h): delivered in the guest
// without an exit, with a full frame the handler may change; unhandled
// exceptions keep their native outcome; a fault inside a handler and a
// double fault end the program with a report.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/traps.h"
#include "support.h"

namespace dunk {
namespace {

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

std::atomic<int> calls{0};
TrapFrame last{};

TrapAction skip_ud2(TrapFrame& f) noexcept {
  calls.fetch_add(1, std::memory_order_relaxed);
  last = f;
  f.rip += 2;  // ud2 is 0f 0b
  return TrapAction::kResume;
}

TEST(Traps, InvalidOpcodeHandlerResumesWithoutAnExit) {
  ASSERT_TRUE(set_trap_handler(kInvalidOpcode, skip_ud2));
  test::enter_or_fail();
  const std::uint64_t before = kvm_runs();
  for (int i = 0; i < 100; ++i) asm volatile("ud2");
  const std::uint64_t after = kvm_runs();
  leave();
  EXPECT_EQ(calls.load(), 100);
  EXPECT_EQ(after - before, 0u) << "each exception went through the monitor";
  EXPECT_EQ(last.vector, static_cast<std::uint64_t>(kInvalidOpcode));
  EXPECT_EQ(last.cs & 3, 0u);
  EXPECT_FALSE(last.from_ring3());
}

TrapAction set_registers(TrapFrame& f) noexcept {
  // The frame is the interrupted code's state: change it and it changes.
  f.rax = f.rbx * 2;
  f.r15 = 0x1515;
  f.rip += 2;
  return TrapAction::kResume;
}

TEST(Traps, HandlerSeesAndChangesTheFullFrame) {
  ASSERT_TRUE(set_trap_handler(kInvalidOpcode, set_registers));
  test::enter_or_fail();
  std::uint64_t rax = 0, r15 = 0;
  asm volatile(
      "movq $21, %%rbx\n\t"
      "xorl %%eax, %%eax\n\t"
      "xorl %%r15d, %%r15d\n\t"
      "ud2\n\t"
      "movq %%r15, %1\n\t"
      : "=a"(rax), "=r"(r15)
      :
      : "rbx", "r15", "memory");
  leave();
  EXPECT_EQ(rax, 42u);
  EXPECT_EQ(r15, 0x1515u);
}

TrapAction clobber_vectors(TrapFrame& f) noexcept {
  asm volatile("pcmpeqd %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1" ::: "xmm0", "xmm1");
  f.rip += 2;
  return TrapAction::kResume;
}

TEST(Traps, InterruptedVectorRegistersSurviveTheHandler) {
  ASSERT_TRUE(set_trap_handler(kInvalidOpcode, clobber_vectors));
  test::enter_or_fail();
  alignas(16) std::uint64_t in[4] = {0x1111222233334444, 0x5555666677778888, 0x99, 0xaa};
  alignas(16) std::uint64_t out[4] = {};
  asm volatile(
      "movdqa (%0), %%xmm0\n\t"
      "movdqa 16(%0), %%xmm1\n\t"
      "ud2\n\t"
      "movdqa %%xmm0, (%1)\n\t"
      "movdqa %%xmm1, 16(%1)\n\t"
      :
      : "r"(in), "r"(out)
      : "xmm0", "xmm1", "memory");
  leave();
  EXPECT_EQ(std::memcmp(in, out, sizeof in), 0);
}

// Page faults: address and error code, fix the mapping, resume.
char* region = nullptr;
constexpr std::size_t kRegion = 4 * 4096;
std::atomic<int> faults{0};
std::uint64_t fault_address = 0, fault_error = 0;

TrapAction unprotect_on_fault(TrapFrame& f) noexcept {
  PageFault pf = page_fault(f);
  auto* p = static_cast<char*>(pf.address);
  if (p < region || p >= region + kRegion) return TrapAction::kDefault;
  faults.fetch_add(1);
  fault_address = f.cr2;
  fault_error = f.error_code;
  // A system call from the handler is fine (one exit, like anywhere).
  auto page = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{4095};
  mprotect(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE);
  return TrapAction::kResume;  // the store runs again and succeeds
}

TEST(Traps, PageFaultHandlerGetsAddressAndErrorCodeAndResumes) {
  ASSERT_TRUE(set_trap_handler(kPageFault, unprotect_on_fault));
  test::enter_or_fail();
  region = static_cast<char*>(mmap(nullptr, kRegion, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(region, MAP_FAILED);
  volatile char* target = region + 2 * 4096 + 123;
  *target = 'x';
  EXPECT_EQ(*target, 'x');
  leave();
  EXPECT_EQ(faults.load(), 1);
  EXPECT_EQ(fault_address, reinterpret_cast<std::uint64_t>(target));
  TrapFrame frame{};
  frame.error_code = fault_error;
  PageFault decoded = page_fault(frame);
  EXPECT_TRUE(decoded.write);
  EXPECT_FALSE(decoded.present);  // PROT_NONE is not present in the guest
  EXPECT_FALSE(decoded.user);
  EXPECT_FALSE(decoded.fetch);
}

std::atomic<int> declined{0};
TrapAction decline(TrapFrame&) noexcept {
  declined.fetch_add(1);
  return TrapAction::kDefault;
}

TEST(Traps, DeclinedPageFaultsStillReachTheMirror) {
  // Memory mapped while outside VM mode is unknown to the mirror until the
  // guest touches it; the handler sees that fault first and declines it.
  // (Mapped after the handler is set: setting it brings the mirror up to
  // date with the host, see Mirror::assign_eagerly.)
  test::enter_or_fail();
  leave();
  ASSERT_TRUE(set_trap_handler(kPageFault, decline));
  auto* p = static_cast<volatile char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  p[0] = 7;
  test::enter_or_fail();
  EXPECT_EQ(p[0], 7);
  p[1] = 8;
  leave();
  EXPECT_GE(declined.load(), 1);
  EXPECT_GE(core::Machine::instance().stats().faults_resolved.load(), 1u);
}

TEST(Traps, DeclinedExceptionKeepsItsNativeSignal) {
  test::ChildResult r = test::run_in_child([] {
    if (!set_trap_handler(kInvalidOpcode, decline) || !enter()) return 100;
    asm volatile("ud2");
    return 101;
  });
  ASSERT_TRUE(r.signaled) << r.output;
  EXPECT_EQ(r.signal, SIGILL);
}

TrapAction fault_inside(TrapFrame&) noexcept {
  *static_cast<volatile int*>(nullptr) = 1;
  return TrapAction::kResume;
}

TEST(Traps, FaultInsideAHandlerEndsTheProgramWithAReport) {
  test::ChildResult r = test::run_in_child([] {
    if (!set_trap_handler(kInvalidOpcode, fault_inside) || !enter()) return 100;
    asm volatile("ud2");
    return 101;
  });
  ASSERT_TRUE(r.signaled) << r.output;
  EXPECT_EQ(r.signal, SIGABRT);
  EXPECT_NE(r.output.find("exception in the program's handler for vector 6"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vector=14"), std::string::npos) << r.output;
}

TEST(Traps, DoubleFaultEndsTheProgramWithAReport) {
  test::ChildResult r = test::run_in_child([] {
    if (!enter()) return 100;
    // Exceptions are delivered on IST1: point it at unmapped memory, and
    // delivering #UD faults, and delivering that #PF faults again: #DF
    // (SDM vol. 3A §6.15, "Interrupt 8—Double Fault Exception").
    core::current_cpu()->area->tss.set_ist_stack(1, 0x1000);
    asm volatile("ud2");
    return 101;
  });
  ASSERT_TRUE(r.signaled) << r.output;
  EXPECT_EQ(r.signal, SIGABRT);
  EXPECT_NE(r.output.find("double fault"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vector=8"), std::string::npos) << r.output;
}

TEST(Traps, FatalVectorsAndInterruptVectorsAreRefused) {
  EXPECT_FALSE(set_trap_handler(kDoubleFault, decline));
  EXPECT_FALSE(set_trap_handler(kNmi, decline));
  EXPECT_FALSE(set_trap_handler(kMachineCheck, decline));
  EXPECT_FALSE(set_trap_handler(32, decline));
  EXPECT_TRUE(set_trap_handler(kBreakpoint, decline));
  EXPECT_EQ(trap_handler(kBreakpoint), &decline);
  EXPECT_TRUE(set_trap_handler(kBreakpoint, nullptr));
  EXPECT_EQ(trap_handler(kBreakpoint), nullptr);
}

std::atomic<int> breakpoints{0};
TrapAction count_breakpoint(TrapFrame& f) noexcept {
  breakpoints.fetch_add(1);
  last = f;
  return TrapAction::kResume;  // a trap: RIP already points past int3
}

TEST(Traps, BreakpointIsATrapAndResumesAfterIt) {
  ASSERT_TRUE(set_trap_handler(kBreakpoint, count_breakpoint));
  test::enter_or_fail();
  asm volatile("int3");
  asm volatile("int3");
  leave();
  EXPECT_EQ(breakpoints.load(), 2);
  EXPECT_EQ(last.vector, static_cast<std::uint64_t>(kBreakpoint));
}

}  // namespace
}  // namespace dunk
