// The memory layout Dune's programs expect (EnterOptions::identity_physical,
// user_mirror, small_pages), and the privileged API's pieces libdune is
// built on: raw entries (EntryEdit), guest-physical translation, resolving
// a page fault the monitor's way from a handler, ring 3's FS base.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "dunk/ring3.h"
#include "dunk/traps.h"

// Ring-3 code for the FS base tests: returns the word at %fs:0.
asm(R"(
  .pushsection .text
  .globl layout_read_fs0, layout_syscall_then_read_fs0
layout_read_fs0:
  movq %fs:0, %rax
  ret
layout_syscall_then_read_fs0:
  movl $39, %eax
  syscall
  movq %fs:0, %rax
  ret
  .popsection
)");
extern "C" std::uint64_t layout_read_fs0(std::uint64_t);
extern "C" std::uint64_t layout_syscall_then_read_fs0(std::uint64_t);

namespace dunk {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
constexpr std::uint64_t kAddressMask = 0x000f'ffff'ffff'f000;

void enter_with(const EnterOptions& options) {
  Status s = enter(options);
  if (!s) {
    char why[256];
    FAIL() << describe(s.error(), why, sizeof why);
  }
}

bool cpu_has_fsgsbase() {
  std::uint32_t a = 7, b, c = 0, d;
  asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
  return (b & 1) != 0;
}

std::uint64_t index(unsigned level, std::uint64_t va) { return (va >> (12 + 9 * (level - 1))) & 511; }

TEST(IdentityPhysical, PageTablesCanBeWalkedByDereferencingPhysicalAddresses) {
  ASSERT_NO_FATAL_FAILURE(enter_with({.identity_physical = true}));
  const std::uint64_t root = AddressSpace::process().root();
  // The root table is where its guest-physical address says.
  EXPECT_EQ(reinterpret_cast<std::uint64_t>(page_table_at(root)), root);
  // Walk to a page of this test's stack with plain loads, as Dune's
  // programs do, and compare with dunk's own lookup.
  int local = 0;
  const auto va = reinterpret_cast<std::uint64_t>(&local);
  auto* table = reinterpret_cast<std::uint64_t*>(root);
  std::uint64_t entry = 0;
  unsigned level = 4;
  for (; level >= 1; --level) {
    entry = table[index(level, va)];
    ASSERT_TRUE(entry & 1) << "level " << level;
    if (level == 1 || (entry & 0x80) != 0) break;
    table = reinterpret_cast<std::uint64_t*>(entry & kAddressMask);
  }
  auto info = AddressSpace::process().lookup(&local);
  ASSERT_TRUE(info);
  const std::uint64_t page = std::uint64_t{1} << (12 + 9 * (level - 1));
  EXPECT_EQ((entry & kAddressMask & ~(page - 1)) + (va & (page - 1)), info->physical);
  leave();
}

TEST(IdentityPhysical, LowMemoryIsItsOwnPhysicalAddressAndHighMemoryIsNot) {
  ASSERT_NO_FATAL_FAILURE(enter_with({.identity_physical = true}));
  // Where Dune's libdune keeps its page pool.
  void* const want = reinterpret_cast<void*>(8 * kGiB);
  void* low = mmap(want, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(low, want) << std::strerror(errno);
  static_cast<char*>(low)[5] = 1;
  auto gpa = guest_physical(static_cast<char*>(low) + 5);
  ASSERT_TRUE(gpa);
  EXPECT_EQ(*gpa, 8 * kGiB + 5);
  EXPECT_EQ(host_address(*gpa), static_cast<char*>(low) + 5);
  // Memory the host maps PROT_NONE (not mirrored) gets one on demand, in
  // VM mode, and its chunk is identity-mapped too when low.
  void* const none_want = reinterpret_cast<void*>(20 * kGiB);
  void* none = mmap(none_want, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(none, none_want);
  auto none_gpa = guest_physical(none);
  ASSERT_TRUE(none_gpa);
  EXPECT_EQ(*none_gpa, 20 * kGiB);
  EXPECT_EQ(host_address(*none_gpa), none);
  // A stack far above 2^39: its own chunk, from the top of the space down.
  int local = 0;
  auto high = guest_physical(&local);
  ASSERT_TRUE(high);
  EXPECT_NE(*high, reinterpret_cast<std::uint64_t>(&local));
  EXPECT_EQ(host_address(*high), &local);
  leave();
}

std::uint64_t user_probe(std::uint64_t p) { return *reinterpret_cast<volatile std::uint64_t*>(p); }

TEST(UserMirror, RingThreeReachesOrdinaryMemoryWithoutOpeningIt) {
  ASSERT_NO_FATAL_FAILURE(enter_with({.user_mirror = true}));
  static std::uint64_t value = 0x1234'5678;
  alignas(16) static std::byte stack[64 * 1024];
  // Code, stack and data as the program has them: nothing protect()ed.
  auto exit = run_in_ring3(user_probe, reinterpret_cast<std::uint64_t>(&value), stack, sizeof stack);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->reason, Ring3Exit::kReturned);
  EXPECT_EQ(exit->value, 0x1234'5678u);
  auto info = AddressSpace::process().lookup(&value);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->access & kUser);
  EXPECT_FALSE(info->program_owned);
  // dunk's own memory stays supervisor-only: a page table is one.
  auto table = AddressSpace::process().lookup(page_table_at(AddressSpace::process().root()));
  ASSERT_TRUE(table);
  EXPECT_FALSE(table->access & kUser);
  leave();
}

TEST(UserMirror, WithoutItRingThreeFaultsOnOrdinaryMemory) {
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  static std::uint64_t value = 7;
  alignas(4096) static std::byte stack[64 * 1024];
  ASSERT_TRUE(AddressSpace::process().protect(stack, sizeof stack, kRead | kWrite | kUser));
  const auto code = reinterpret_cast<std::uint64_t>(&user_probe) & ~std::uint64_t{4095};
  ASSERT_TRUE(AddressSpace::process().protect(reinterpret_cast<void*>(code), 8192, kRead | kExec | kUser));
  auto exit = run_in_ring3(user_probe, reinterpret_cast<std::uint64_t>(&value), stack, sizeof stack);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->reason, Ring3Exit::kFault);
  EXPECT_EQ(exit->frame.vector, kPageFault);
  EXPECT_EQ(exit->frame.cr2, reinterpret_cast<std::uint64_t>(&value));
  leave();
}

TEST(SmallPages, TheMirrorUsesFourKilobytePagesOnly) {
  ASSERT_NO_FATAL_FAILURE(enter_with({.small_pages = true}));
  // A 1 GiB-aligned GiB: the mirror would map it with one page otherwise.
  void* big = mmap(nullptr, 3 * kGiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(big, MAP_FAILED);
  auto* aligned = reinterpret_cast<char*>((reinterpret_cast<std::uint64_t>(big) + kGiB - 1) & ~(kGiB - 1));
  ASSERT_EQ(mmap(aligned, kGiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0),
            aligned);
  aligned[kGiB / 2] = 1;
  std::size_t pages = 0, small = 0;
  AddressSpace::process().walk(aligned, kGiB, [&](const PageInfo& info, PageRef&) {
    ++pages;
    if (info.size == PageSize::k4K) ++small;
  });
  EXPECT_EQ(pages, kGiB / 4096);
  EXPECT_EQ(small, pages);
  leave();
}

TEST(LayoutOptions, ALaterEnterCannotAskForAnotherLayout) {
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  leave();
  Status s = enter({.identity_physical = true});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, EINVAL);
  EXPECT_FALSE(in_vm());
}

TEST(LayoutOptions, AfterShutdownTheNextVmHasTheLayoutItAsksFor) {
  // An ordinary VM: its tables' guest-physical addresses are not their own.
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  const std::uint64_t ordinary = AddressSpace::process().root();
  EXPECT_NE(reinterpret_cast<std::uint64_t>(page_table_at(ordinary)), ordinary);
  leave();
  ASSERT_TRUE(shutdown());
  // Dune's layout next: the arena moved to where a table's guest-physical
  // address is its host address.
  ASSERT_NO_FATAL_FAILURE(enter_with({.identity_physical = true}));
  const std::uint64_t root = AddressSpace::process().root();
  EXPECT_EQ(reinterpret_cast<std::uint64_t>(page_table_at(root)), root);
  leave();
  ASSERT_TRUE(shutdown());
  // And an ordinary VM again, which forgot the layout: asking for Dune's
  // now is refused as for any VM created without it.
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  leave();
  Status s = enter({.identity_physical = true});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, EINVAL);
}

TEST(EntryEdit, SlotsStoresAndTheOwnerTag) {
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  // Backing memory the host maps, and a guest-only alias of it far away.
  auto* page = static_cast<std::uint64_t*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  ASSERT_NE(page, MAP_FAILED);
  page[1] = 0x5eed;
  auto gpa = guest_physical(page);
  ASSERT_TRUE(gpa);
  auto* alias = reinterpret_cast<std::uint64_t*>(0x4000'0000'0000);
  {
    auto edit = EntryEdit::begin(AddressSpace::process(), 4096);
    ASSERT_TRUE(edit.ok());
    auto none = edit->slot(alias, PageSize::k4K, /*create=*/false);
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.error().err, ENOENT);
    auto slot = edit->slot(alias, PageSize::k4K, /*create=*/true);
    ASSERT_TRUE(slot.ok());
    EXPECT_EQ(slot->size, PageSize::k4K);
    EXPECT_EQ(*slot->entry, 0u);
    edit->store(slot->entry, *gpa | 0x3);  // present, writable
    EXPECT_EQ(*slot->entry & kEntryOwnerBits, kEntryProgramOwned);
  }
  EXPECT_EQ(alias[1], 0x5eedu);
  alias[2] = 0xfeed;
  EXPECT_EQ(page[2], 0xfeedu);
  auto info = AddressSpace::process().lookup(alias);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->program_owned);
  // dunk's own memory is not the program's to edit.
  {
    auto edit = EntryEdit::begin(AddressSpace::process());
    ASSERT_TRUE(edit.ok());
    auto arena = edit->slot(page_table_at(AddressSpace::process().root()), PageSize::k4K, true);
    ASSERT_FALSE(arena.ok());
    EXPECT_EQ(arena.error().err, EPERM);
  }
  leave();
}

// A page fault handler that takes every fault, resolves dunk's own with
// resolve_fault() and counts the others.
std::atomic<int> resolved_by_dunk{0};
std::atomic<int> left_to_program{0};
TrapAction take_every_fault(TrapFrame& f) noexcept {
  const PageFault pf = page_fault(f);
  if (resolve_fault(pf.address, pf.write, pf.fetch)) {
    resolved_by_dunk.fetch_add(1);
    return TrapAction::kResume;
  }
  left_to_program.fetch_add(1);
  f.rip += 3;  // the test's probe: movq (%rax), %rax
  f.rax = 0xdead;
  return TrapAction::kResume;
}

// movq (%rax), %rax: three bytes, which the handler above skips.
std::uint64_t probe(const void* p) {
  std::uint64_t value;
  asm volatile("movq (%%rax), %%rax" : "=a"(value) : "a"(p) : "memory");
  return value;
}

TEST(ResolveFault, DunksOwnFaultsAreResolvedAndTheRestGoToTheHandler) {
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  // The paging API's first use re-reads the host's mappings (the mirror
  // assigns eagerly from then on): done before the foreign mapping exists.
  EXPECT_TRUE(AddressSpace::process().lookup(&resolved_by_dunk));
  leave();
  // A mapping the monitor never saw: made on the host, outside VM mode,
  // after the VM (and its mirror) exists.
  auto* foreign = static_cast<std::uint64_t*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(foreign, MAP_FAILED);
  foreign[0] = 42;
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  EXPECT_FALSE(AddressSpace::process().lookup(foreign));  // not mirrored yet
  ASSERT_TRUE(set_trap_handler(kPageFault, take_every_fault));
  EXPECT_EQ(probe(foreign), 42u);
  EXPECT_EQ(resolved_by_dunk.load(), 1);
  EXPECT_EQ(left_to_program.load(), 0);
  // Nothing mapped there: the program's.
  EXPECT_EQ(probe(reinterpret_cast<void*>(0x10)), 0xdeadu);
  EXPECT_EQ(left_to_program.load(), 1);
  EXPECT_FALSE(resolve_fault(reinterpret_cast<void*>(0x10), false, false));
  ASSERT_TRUE(set_trap_handler(kPageFault, nullptr));
  leave();
  EXPECT_FALSE(resolve_fault(foreign, false, false));  // outside VM mode
}

TEST(ResolveFault, AGrowingStackIsDunks) {
  ASSERT_NO_FATAL_FAILURE(enter_with({}));
  resolved_by_dunk = 0;
  ASSERT_TRUE(set_trap_handler(kPageFault, take_every_fault));
  // Touch well below the stack pointer, where the stack has not grown yet.
  std::uint64_t rsp;
  asm volatile("movq %%rsp, %0" : "=r"(rsp));
  volatile char* deep = reinterpret_cast<volatile char*>((rsp - (1 << 20)) & ~std::uint64_t{4095});
  deep[0] = 1;
  EXPECT_EQ(deep[0], 1);
  EXPECT_EQ(left_to_program.load(), 0);
  ASSERT_TRUE(set_trap_handler(kPageFault, nullptr));
  leave();
}

TEST(RingThreeFsBase, ARunStartsWithTheGivenBaseAndAHandlerCanChangeIt) {
  ASSERT_NO_FATAL_FAILURE(enter_with({.user_mirror = true}));
  // Two TCB-like blocks whose first word is their own address.
  static std::uint64_t first[8], second[8];
  first[0] = reinterpret_cast<std::uint64_t>(first);
  second[0] = reinterpret_cast<std::uint64_t>(second);
  alignas(16) static std::byte stack[64 * 1024];
  Ring3Options options;
  options.fs_base = reinterpret_cast<std::uint64_t>(first);
  auto exit = run_in_ring3(layout_read_fs0, 0, stack, sizeof stack, options);
  ASSERT_TRUE(exit.ok());
  ASSERT_EQ(exit->reason, Ring3Exit::kReturned);
  if (!cpu_has_fsgsbase()) {
    // Ring 3 then runs with the caller's FS base (its TLS block's first
    // word is its own address too, glibc's TCB), and nothing can change it.
    std::uint64_t own;
    asm volatile("movq %%fs:0, %0" : "=r"(own));
    EXPECT_EQ(exit->value, own);
    leave();
    return;
  }
  EXPECT_EQ(exit->value, first[0]);
  // Only from a handler of a run.
  EXPECT_EQ(ring3_fs_base().error().err, EPERM);
  options.on_syscall = [](TrapFrame& f, void*) noexcept {
    auto before = ring3_fs_base();
    if (!before.ok() || *before != first[0]) return Ring3Action::kStop;
    if (!set_ring3_fs_base(second[0])) return Ring3Action::kStop;
    f.rax = 0;
    return Ring3Action::kResume;
  };
  auto changed = run_in_ring3(layout_syscall_then_read_fs0, 0, stack, sizeof stack, options);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->reason, Ring3Exit::kReturned);
  EXPECT_EQ(changed->value, second[0]);
  leave();
}

}  // namespace
}  // namespace dunk
