// Interrupts between vCPU threads (dunk/interrupts.h): IPIs reach the target
// vCPU's handler through the IDT with the interrupted code's frame, one per
// IPI, with no exit to the monitor on either side; EOI lets the next one in;
// the option is checked; HLT waits for an interrupt or a signal.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "arch/x86_64/apic.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/interrupts.h"
#include "dunk/paging.h"
#include "dunk/ring3.h"
#include "guest/dispatch.h"
#include "support.h"

// Ring-3 code for the interrupt test: counts up in the word at RDI until the
// word at RDI+8 is set (by the ring-0 interrupt handler), then returns it.
// Its own page-aligned section, opened to ring 3 as a whole.
asm(R"(
  .pushsection interrupts_ring3_text, "ax", @progbits
  .p2align 12
  .globl r3_spin_until_released
r3_spin_until_released:
  incq (%rdi)
  movq 8(%rdi), %rax
  testq %rax, %rax
  jz r3_spin_until_released
  ret
  .popsection
)");
extern "C" {
extern char __start_interrupts_ring3_text[], __stop_interrupts_ring3_text[];
std::uint64_t r3_spin_until_released(std::uint64_t words);
}

namespace dunk {
namespace {

constexpr unsigned kVector = 0x40;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

void enter_with_interrupts_or_fail(bool follow_fork = false) {
  Status s = enter(EnterOptions{.interrupts = true, .follow_fork = follow_fork});
  if (!s) {
    char buf[512];
    FAIL() << "dunk::enter({.interrupts = true}) failed: " << describe(s.error(), buf, sizeof buf);
  }
  ASSERT_TRUE(in_vm());
  ASSERT_TRUE(interrupts_enabled());
}

// What the handler saw, for the test to check.
std::atomic<int> handled{0};
std::atomic<int> handler_cpu{-1};
std::atomic<long> handler_tid{0};
std::atomic<std::uint64_t> handler_vector{0};
std::atomic<std::uint64_t> handler_rip{0};
std::atomic<std::uint64_t> handler_cs{0};
std::atomic<std::uint64_t> handler_rflags{0};

void record(TrapFrame& f) noexcept {
  handler_vector.store(f.vector);
  handler_rip.store(f.rip);
  handler_cs.store(f.cs);
  handler_rflags.store(f.rflags);
  handler_cpu.store(cpu_id());
  handled.fetch_add(1);
}

void record_with_tid(TrapFrame& f) noexcept {
  handler_tid.store(syscall(SYS_gettid));  // a system call from a handler: allowed
  record(f);
}

void count(TrapFrame&) noexcept { handled.fetch_add(1, std::memory_order_relaxed); }

TEST(Interrupts, SelfIpiRunsTheHandlerWithTheVectorAndTheInterruptedRip) {
  ASSERT_TRUE(set_interrupt_handler(kVector, record));
  enter_with_interrupts_or_fail();
  // The IPI as dunk sends it, written here so that the test knows where the
  // interrupted code is: the interrupt is taken once WRMSR completes, at an
  // instruction boundary between `sent` and `done`.
  const std::uint64_t icr = arch::apic::fixed_ipi_self(kVector);
  std::uint64_t sent = 0, done = 0;
  asm volatile(
      "wrmsr\n\t"
      "1: nop; nop; nop; nop\n\t"
      "2:\n\t"
      "leaq 1b(%%rip), %0\n\t"
      "leaq 2b(%%rip), %1\n\t"
      : "=r"(sent), "=r"(done)
      : "c"(arch::apic::msr::kIcr), "a"(static_cast<std::uint32_t>(icr)), "d"(static_cast<std::uint32_t>(icr >> 32))
      : "memory");
  const int me = cpu_id();
  leave();
  EXPECT_EQ(handled.load(), 1);
  EXPECT_EQ(handler_vector.load(), kVector);
  EXPECT_GE(handler_rip.load(), sent);
  EXPECT_LE(handler_rip.load(), done);
  EXPECT_EQ(handler_cs.load() & 3, 0u) << "interrupted in ring 0";
  EXPECT_NE(handler_rflags.load() & (1u << 9), 0u) << "the interrupted code had IF set";
  EXPECT_EQ(handler_cpu.load(), me);
  EXPECT_GE(me, 0);
}

TEST(Interrupts, IpisCauseNoExitAndEachRunsTheHandlerOnce) {
  ASSERT_TRUE(set_interrupt_handler(kVector, count));
  enter_with_interrupts_or_fail();
  // Few: see docs/ARCHITECTURE.md, "Known problems" (a rare hang in the
  // nested test VM, more likely the more interrupts a test takes).
  constexpr int kIpis = 20;
  const std::uint64_t before = kvm_runs();
  for (int i = 0; i < kIpis; ++i) {
    if (!send_ipi_self(kVector)) break;
  }
  const std::uint64_t after = kvm_runs();
  leave();
  // Self IPIs are taken right after the send, and the automatic EOI lets
  // the next one in: none is lost.
  EXPECT_EQ(handled.load(), kIpis);
  EXPECT_EQ(after - before, 0u) << "IPIs went through dunk's monitor";
}

TEST(Interrupts, IpiToAnotherThreadRunsItsHandlerOnThatThread) {
  ASSERT_TRUE(set_interrupt_handler(kVector, record_with_tid));
  enter_with_interrupts_or_fail();
  constexpr int kIpis = 20;  // few: as above
  std::atomic<int> target{-1};
  std::atomic<long> target_tid{0};
  std::atomic<bool> stop{false};
  std::thread t([&] {
    target_tid.store(syscall(SYS_gettid));
    target.store(cpu_id());
    // Busy in ring 0, no system call: the interrupts come to this loop.
    // Until the exits are counted: the thread's exit makes system calls.
    while (!stop.load()) __builtin_ia32_pause();
  });
  while (target.load() < 0) __builtin_ia32_pause();
  const int me = cpu_id();
  ASSERT_NE(target.load(), me);
  EXPECT_EQ(cpu_id_of_thread(static_cast<pid_t>(target_tid.load())), target.load());

  bool all_sent = true;
  const std::uint64_t before = kvm_runs();
  for (int i = 0; i < kIpis && all_sent; ++i) {
    all_sent = static_cast<bool>(send_ipi(static_cast<unsigned>(target.load()), kVector));
    // One at a time: a second IPI of the same vector before the handler's
    // EOI would merge with the first in the target's request register.
    while (handled.load() < i + 1) __builtin_ia32_pause();
  }
  const std::uint64_t after = kvm_runs();
  stop.store(true);
  t.join();
  leave();
  EXPECT_TRUE(all_sent);
  EXPECT_EQ(handled.load(), kIpis);
  EXPECT_EQ(handler_cpu.load(), target.load());
  EXPECT_EQ(handler_tid.load(), target_tid.load());
  EXPECT_EQ(handler_vector.load(), kVector);
  // The handler's gettid is one exit each (on the target); the sends and
  // deliveries themselves none.
  EXPECT_EQ(after - before, static_cast<std::uint64_t>(kIpis)) << "IPIs went through dunk's monitor";
}

// The word the ring-3 loop counts in and the one the handler releases it with.
struct alignas(4096) Ring3Words {
  volatile std::uint64_t spins;
  volatile std::uint64_t release;
};
Ring3Words ring3_words;

void release_ring3(TrapFrame& f) noexcept {
  record(f);
  ring3_words.release = 42;
}

TEST(Interrupts, IpiInterruptsRingThreeCodeAndItResumes) {
  ASSERT_TRUE(set_interrupt_handler(kVector, release_ring3));
  enter_with_interrupts_or_fail();
  constexpr std::size_t kPage = 4096, kStack = 4 * kPage;
  AddressSpace& as = AddressSpace::process();
  const auto code = reinterpret_cast<std::uintptr_t>(__start_interrupts_ring3_text);
  const auto code_end = (reinterpret_cast<std::uintptr_t>(__stop_interrupts_ring3_text) + kPage - 1) & ~(kPage - 1);
  ASSERT_TRUE(as.protect(reinterpret_cast<void*>(code), code_end - code, kRead | kExec | kUser));
  ASSERT_TRUE(as.protect(&ring3_words, kPage, kRead | kWrite | kUser));
  std::atomic<int> target{-1};
  std::optional<Result<Ring3Exit>> exit;
  std::thread t([&] {
    void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (stack == MAP_FAILED || !as.protect(stack, kStack, kRead | kWrite | kUser)) return;
    flush_tlb();
    target.store(cpu_id());
    exit.emplace(run_in_ring3(r3_spin_until_released, reinterpret_cast<std::uint64_t>(&ring3_words), stack, kStack));
  });
  while (target.load() < 0) __builtin_ia32_pause();
  // Once the loop has counted, the thread runs ring-3 code.
  while (ring3_words.spins == 0) __builtin_ia32_pause();
  ASSERT_TRUE(send_ipi(static_cast<unsigned>(target.load()), kVector));
  t.join();
  leave();
  ASSERT_TRUE(exit.has_value()) << "the thread could not prepare its ring-3 stack";
  ASSERT_TRUE(*exit) << exit->error().what;
  EXPECT_EQ((*exit)->reason, Ring3Exit::kReturned);
  EXPECT_EQ((*exit)->value, 42u);
  EXPECT_EQ(handled.load(), 1);
  EXPECT_EQ(handler_cpu.load(), target.load());
  EXPECT_EQ(handler_cs.load() & 3, 3u) << "the interrupt came from ring 3";
  const std::uint64_t rip = handler_rip.load();
  EXPECT_GE(rip, code);
  EXPECT_LT(rip, code_end);
}

TEST(Interrupts, BroadcastReachesEveryOtherThread) {
  ASSERT_TRUE(set_interrupt_handler(kVector, count));
  enter_with_interrupts_or_fail();
  constexpr int kThreads = 2;
  std::atomic<int> ready{0};
  std::atomic<bool> stop{false};
  std::thread threads[kThreads];
  for (auto& t : threads) {
    t = std::thread([&] {
      ready.fetch_add(1);
      while (!stop.load()) __builtin_ia32_pause();
    });
  }
  while (ready.load() < kThreads) __builtin_ia32_pause();
  ASSERT_TRUE(send_ipi_others(kVector));
  while (handled.load() < kThreads) __builtin_ia32_pause();
  stop.store(true);
  for (auto& t : threads) t.join();
  leave();
  EXPECT_EQ(handled.load(), kThreads) << "the sender took its own broadcast";
}

TEST(Interrupts, ManualEoiHoldsBackTheNextInterruptUntilEoi) {
  ASSERT_TRUE(set_interrupt_handler(kVector, count, InterruptOptions{.manual_eoi = true}));
  enter_with_interrupts_or_fail();
  ASSERT_TRUE(send_ipi_self(kVector));
  const int after_first = handled.load();
  // Same vector, still in service: the local APIC keeps it pending.
  ASSERT_TRUE(send_ipi_self(kVector));
  const int while_in_service = handled.load();
  eoi();  // ends the first; the second is taken at once
  const int after_eoi = handled.load();
  eoi();
  leave();
  EXPECT_EQ(after_first, 1);
  EXPECT_EQ(while_in_service, 1);
  EXPECT_EQ(after_eoi, 2);
}

TEST(Interrupts, IpiToAThreadInASystemCallArrivesWhenTheCallReturns) {
  ASSERT_TRUE(set_interrupt_handler(kVector, count));
  enter_with_interrupts_or_fail();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  std::atomic<int> target{-1};
  std::atomic<int> seen_after_read{-1};
  std::thread t([&] {
    target.store(cpu_id());
    char c;
    ssize_t n = read(pipefd[0], &c, 1);  // blocked in the host
    seen_after_read.store(n == 1 ? handled.load() : -2);
  });
  while (target.load() < 0) __builtin_ia32_pause();
  usleep(50 * 1000);  // let it block (a late reader changes nothing below)
  ASSERT_TRUE(send_ipi(static_cast<unsigned>(target.load()), kVector));
  usleep(50 * 1000);
  const int while_blocked = handled.load();
  ASSERT_EQ(write(pipefd[1], "x", 1), 1);
  t.join();
  leave();
  close(pipefd[0]);
  close(pipefd[1]);
  EXPECT_EQ(while_blocked, 0) << "the IPI interrupted the blocked system call";
  // Taken on the way back from the call, before the thread's next instruction.
  EXPECT_EQ(seen_after_read.load(), 1);
}

TEST(Interrupts, HltWaitsForAnIpi) {
  ASSERT_TRUE(set_interrupt_handler(kVector, count));
  enter_with_interrupts_or_fail();
  std::atomic<int> target{-1};
  std::atomic<int> halts{0};
  std::thread t([&] {
    target.store(cpu_id());
    // cli/sti around the test: an IPI between the check and the HLT would
    // otherwise wake nothing. STI's one-instruction shadow makes `sti; hlt`
    // atomic.
    asm volatile("cli" ::: "memory");
    while (handled.load() == 0) {
      halts.fetch_add(1);
      asm volatile("sti; hlt; cli" ::: "memory");
    }
    asm volatile("sti" ::: "memory");
  });
  while (target.load() < 0) __builtin_ia32_pause();
  while (halts.load() == 0) __builtin_ia32_pause();
  usleep(20 * 1000);
  ASSERT_TRUE(send_ipi(static_cast<unsigned>(target.load()), kVector));
  t.join();
  leave();
  EXPECT_EQ(handled.load(), 1);
  EXPECT_GE(halts.load(), 1);
}

std::atomic<int> alarms{0};
void on_alarm(int) { alarms.fetch_add(1); }

TEST(Interrupts, HaltedVcpuStillTakesSignals) {
  test::ChildResult r = test::run_in_child([] {
    if (!enter(EnterOptions{.interrupts = true})) return 100;
    struct sigaction sa{};
    sa.sa_handler = on_alarm;
    if (sigaction(SIGALRM, &sa, nullptr) != 0) return 101;
    // Repeating: a tick that comes before the HLT does not leave it waiting.
    itimerval t{};
    t.it_value.tv_usec = 50 * 1000;
    t.it_interval.tv_usec = 50 * 1000;
    if (setitimer(ITIMER_REAL, &t, nullptr) != 0) return 102;
    // No interrupt will come, IF clear: only a signal ends the HLT.
    asm volatile("cli; hlt; sti" ::: "memory");
    const itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    return alarms.load() >= 1 ? 0 : 103;
  });
  EXPECT_TRUE(r.exited) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Interrupts, ForkChildFollowingTheForkHasInterruptsToo) {
  test::ChildResult r = test::run_in_child([] {
    if (!enter(EnterOptions{.interrupts = true, .follow_fork = true})) return 100;
    if (!set_interrupt_handler(kVector, count)) return 101;
    pid_t pid = fork();
    if (pid == 0) {
      if (!in_vm() || !interrupts_enabled()) _exit(10);
      if (!send_ipi_self(kVector)) _exit(11);
      _exit(handled.load() == 1 ? 0 : 12);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 102;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 103;
  });
  EXPECT_TRUE(r.exited) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Three pages: an alias the test remaps, and two pages holding 1 and 2.
struct Remappable {
  char* alias = nullptr;
  char* one = nullptr;
  char* two = nullptr;
  Remappable() {
    void* m = mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    alias = static_cast<char*>(m);
    one = alias + 4096;
    two = alias + 2 * 4096;
    *reinterpret_cast<volatile int*>(one) = 1;
    *reinterpret_cast<volatile int*>(two) = 2;
  }
  int read() const { return *reinterpret_cast<volatile int*>(alias); }
};

std::uint64_t tlb_generation_of(int cpu) {
  core::Cpu* c = core::Machine::instance().live_cpu(static_cast<unsigned>(cpu));
  return c == nullptr ? 0 : std::atomic_ref<std::uint64_t>(c->area->tlb_generation).load();
}
std::uint64_t current_generation() { return std::atomic_ref<std::uint64_t>(guest::dunk_tlb_generation).load(); }

TEST(Interrupts, TlbShootdownReachesARunningThreadWithoutExits) {
  enter_with_interrupts_or_fail();
  Remappable m;
  AddressSpace& as = AddressSpace::process();
  ASSERT_TRUE(as.map(m.alias, m.one, 4096, kRead | kWrite));
  flush_tlb();
  std::atomic<int> target{-1};
  std::atomic<int> phase{0};
  std::atomic<int> seen_before{0}, seen_after{0};
  std::thread t([&] {
    target.store(cpu_id());
    // Reads through the alias, so that this vCPU's TLB holds it.
    while (phase.load() == 0) seen_before.store(m.read());
    seen_after.store(m.read());
  });
  while (seen_before.load() != 1) __builtin_ia32_pause();
  ASSERT_TRUE(as.map(m.alias, m.two, 4096, kRead | kWrite));
  const std::uint64_t before = kvm_runs();
  Status s = flush_tlb_all_cpus();
  const std::uint64_t after = kvm_runs();
  const std::uint64_t generation = current_generation();
  const std::uint64_t target_generation = tlb_generation_of(target.load());
  phase.store(1);
  t.join();
  EXPECT_TRUE(as.release(m.alias, 4096));
  leave();
  ASSERT_TRUE(s);
  EXPECT_EQ(after - before, 0u) << "the shootdown went through dunk's monitor";
  EXPECT_GE(target_generation, generation) << "returned before the other vCPU flushed";
  EXPECT_EQ(seen_after.load(), 2);
  munmap(m.alias, 3 * 4096);
}

TEST(Interrupts, TlbShootdownDoesNotWaitForAThreadInASystemCall) {
  enter_with_interrupts_or_fail();
  Remappable m;
  AddressSpace& as = AddressSpace::process();
  ASSERT_TRUE(as.map(m.alias, m.one, 4096, kRead | kWrite));
  flush_tlb();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  std::atomic<int> target{-1};
  std::atomic<int> seen_before{0}, seen_after{0};
  std::atomic<std::uint64_t> generation_after_call{0};
  std::thread t([&] {
    target.store(cpu_id());
    seen_before.store(m.read());
    char c;
    if (read(pipefd[0], &c, 1) != 1) return;  // blocked in the host
    generation_after_call.store(tlb_generation_of(cpu_id()));
    seen_after.store(m.read());
  });
  while (seen_before.load() != 1) __builtin_ia32_pause();
  usleep(50 * 1000);  // let it block
  ASSERT_TRUE(as.map(m.alias, m.two, 4096, kRead | kWrite));
  Status s = flush_tlb_all_cpus();  // must not wait for the blocked thread
  const std::uint64_t generation = current_generation();
  const std::uint64_t while_blocked = tlb_generation_of(target.load());
  ASSERT_EQ(write(pipefd[1], "x", 1), 1);
  t.join();
  EXPECT_TRUE(as.release(m.alias, 4096));
  leave();
  close(pipefd[0]);
  close(pipefd[1]);
  ASSERT_TRUE(s);
  EXPECT_LT(while_blocked, generation) << "the blocked thread flushed in the host?";
  EXPECT_GE(generation_after_call.load(), generation) << "no flush on the way back from the call";
  EXPECT_EQ(seen_after.load(), 2);
  munmap(m.alias, 3 * 4096);
}

TEST(Interrupts, TlbShootdownNeedsInterruptsEnabled) {
  enter_with_interrupts_or_fail();
  asm volatile("cli" ::: "memory");
  Status s = flush_tlb_all_cpus();
  asm volatile("sti" ::: "memory");
  leave();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, EDEADLK);
}

TEST(Interrupts, VectorsOutsideTheProgramsRangeAreRejected) {
  for (unsigned v : {0u, 14u, 31u, 254u, 255u, 256u}) {
    Status s = set_interrupt_handler(v, count);
    ASSERT_FALSE(s) << v;
    EXPECT_EQ(s.error().err, EINVAL) << v;
  }
  EXPECT_TRUE(set_interrupt_handler(32, count));
  EXPECT_TRUE(set_interrupt_handler(253, count));
  EXPECT_EQ(interrupt_handler(253), &count);
  EXPECT_TRUE(set_interrupt_handler(253, nullptr));
  EXPECT_EQ(interrupt_handler(253), nullptr);
  enter_with_interrupts_or_fail();
  Status s = send_ipi_self(31);
  leave();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, EINVAL);
}

TEST(Interrupts, WithoutTheOptionThereAreNoneAndAskingLaterFails) {
  test::enter_or_fail();
  EXPECT_FALSE(interrupts_enabled());
  Status send = send_ipi_self(kVector);
  Status again_in_vm = enter(EnterOptions{.interrupts = true});
  leave();
  Status again = enter(EnterOptions{.interrupts = true});
  leave();
  ASSERT_FALSE(send);
  EXPECT_EQ(send.error().err, ENODEV);
  ASSERT_FALSE(again_in_vm);
  EXPECT_EQ(again_in_vm.error().err, EINVAL);
  EXPECT_NE(std::string(again_in_vm.error().what).find("first enter()"), std::string::npos)
      << again_in_vm.error().what;
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().err, EINVAL);
  // Outside VM mode nothing can be sent at all.
  Status outside = send_ipi_self(kVector);
  ASSERT_FALSE(outside);
  EXPECT_EQ(outside.error().err, EPERM);
}

TEST(Interrupts, HltWithoutInterruptsIsStillSigsegv) {
  test::ChildResult r = test::run_in_child([] {
    if (!enter()) return 100;
    asm volatile("hlt");
    return 101;
  });
  EXPECT_TRUE(r.signaled) << r.output;
  EXPECT_EQ(r.signal, SIGSEGV);
}

}  // namespace
}  // namespace dunk
