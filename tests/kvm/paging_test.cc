// The program's page tables (dunk/paging.h): edits are stores plus the
// flush the program asks for (no exit), large pages, A/D bits, clones and
// CR3 switches, and the coexistence rule with dunk's monitor.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "dunk/traps.h"
#include "support.h"

namespace dunk {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t k2M = 2u << 20;
constexpr std::uint64_t k1G = 1u << 30;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

char* map_pages(std::size_t n) {
  void* p = mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  return static_cast<char*>(p);
}

// Memory of `size` aligned to `align`, committed and touched.
char* map_aligned(std::size_t size, std::size_t align) {
  void* raw = mmap(nullptr, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  EXPECT_NE(raw, MAP_FAILED);
  auto p = (reinterpret_cast<std::uintptr_t>(raw) + align - 1) & ~(align - 1);
  EXPECT_EQ(mprotect(reinterpret_cast<void*>(p), size, PROT_READ | PROT_WRITE), 0);
  return reinterpret_cast<char*>(p);
}

// A canonical address nothing on the host uses, for aliases.
char* unused_va(std::size_t size, std::size_t align) {
  // Reserve and release: the range is free afterwards, and the guest page
  // tables may map it to any memory.
  char* p = map_aligned(size, align);
  EXPECT_EQ(munmap(p, size), 0);
  return p;
}

char* region = nullptr;
std::size_t region_size = 0;
std::atomic<int> faults{0};

TrapAction make_writable(TrapFrame& f) noexcept {
  PageFault pf = page_fault(f);
  auto* p = static_cast<char*>(pf.address);
  if (p < region || p >= region + region_size) return TrapAction::kDefault;
  faults.fetch_add(1);
  void* page = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(p) & ~(kPage - 1));
  if (!AddressSpace::current().protect(page, kPage, kRead | kWrite)) return TrapAction::kDefault;
  flush_tlb(page);
  return TrapAction::kResume;
}

TEST(Paging, ProtectAndFaultHandlingCostNoExit) {
  test::enter_or_fail();
  region_size = 64 * kPage;
  region = map_pages(64);
  std::memset(region, 1, region_size);
  ASSERT_TRUE(set_trap_handler(kPageFault, make_writable));
  AddressSpace& as = AddressSpace::process();
  // Warm the table reserve (one commit outside the measured part).
  ASSERT_TRUE(as.protect(region, region_size, kRead | kWrite));

  const std::uint64_t before = kvm_runs();
  for (std::size_t i = 0; i < 64; ++i) {
    ASSERT_TRUE(as.protect(region + i * kPage, kPage, kRead));
    flush_tlb(region + i * kPage);
  }
  auto info = as.lookup(region + 5 * kPage);
  for (std::size_t i = 0; i < 64; ++i) region[i * kPage] = 2;  // 64 faults, each fixed by the handler
  const std::uint64_t after = kvm_runs();
  leave();

  ASSERT_TRUE(info);
  EXPECT_EQ(info->access & kWrite, 0u);
  EXPECT_TRUE(info->program_owned);
  EXPECT_EQ(faults.load(), 64);
  EXPECT_EQ(after - before, 0u) << "page-table edits or fault handling exited to the monitor";
  EXPECT_EQ(region[7 * kPage], 2);
}

TrapAction map_back(TrapFrame& f) noexcept {
  PageFault pf = page_fault(f);
  auto* p = static_cast<char*>(pf.address);
  if (p < region || p >= region + region_size) return TrapAction::kDefault;
  faults.fetch_add(1);
  void* page = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(p) & ~(kPage - 1));
  // Identity: the same memory comes back, contents included.
  if (!AddressSpace::current().map(page, page, kPage, kRead | kWrite)) return TrapAction::kDefault;
  return TrapAction::kResume;  // a not-present entry is never cached: no flush needed
}

TEST(Paging, UnmappedPageIsMappedBackByTheFaultHandler) {
  test::enter_or_fail();
  region_size = 4 * kPage;
  region = map_pages(4);
  region[kPage + 10] = 'k';
  ASSERT_TRUE(set_trap_handler(kPageFault, map_back));
  ASSERT_TRUE(AddressSpace::process().unmap(region + kPage, kPage));
  flush_tlb(region + kPage);
  EXPECT_FALSE(AddressSpace::process().lookup(region + kPage));
  const std::uint64_t before = kvm_runs();
  char seen = static_cast<volatile char*>(region)[kPage + 10];
  const std::uint64_t after = kvm_runs();
  leave();
  EXPECT_EQ(seen, 'k');
  EXPECT_EQ(faults.load(), 1);
  EXPECT_EQ(after - before, 0u);
}

TEST(Paging, AliasMapsTheSameMemoryAtAnotherAddress) {
  test::enter_or_fail();
  char* memory = map_pages(2);
  char* alias = unused_va(2 * kPage, kPage);
  AddressSpace& as = AddressSpace::process();
  ASSERT_TRUE(as.map(alias, memory, 2 * kPage, kRead | kWrite));
  alias[kPage + 1] = 'a';
  memory[2] = 'm';
  EXPECT_EQ(memory[kPage + 1], 'a');
  EXPECT_EQ(alias[2], 'm');
  auto a = as.lookup(alias + kPage + 1), m = as.lookup(memory + kPage + 1);
  ASSERT_TRUE(a && m);
  EXPECT_EQ(a->physical, m->physical);
  EXPECT_TRUE(a->program_owned);
  EXPECT_FALSE(m->program_owned);
  leave();
}

TEST(Paging, EditsOnManyThreadsAtOnceNeverRunOutOfTables) {
  // Each edit stocks the page-table pages it may need before it takes the
  // tables' lock; edits on other threads may take that stock meanwhile. No
  // edit may fail for it: the threads, started together, each map 64 MiB
  // of 4 KiB pages (about 35 new tables) at a new GiB every round.
  ASSERT_TRUE(enter(EnterOptions{}));
  constexpr int kThreads = 3, kRounds = 32;
  constexpr std::size_t kSize = 64u << 20;
  char* memory = map_aligned(kSize, k2M);
  std::memset(memory, 1, kSize);
  std::atomic<int> failed{0}, in_vm{0}, ready{0};
  const char* first_error = nullptr;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    char* places = unused_va(kRounds * k1G, k1G);
    threads.emplace_back([&, places] {
      in_vm += dunk::in_vm();
      ready.fetch_add(1);
      while (ready.load() < kThreads) {
      }
      AddressSpace& as = AddressSpace::process();
      for (int r = 0; r < kRounds; ++r) {
        // The memory a page off 2 MiB alignment: 4 KiB pages only.
        if (Status s = as.map(places + r * k1G, memory + kPage, kSize - kPage, kRead | kWrite); !s) {
          if (failed.fetch_add(1) == 0) first_error = s.error().what;
        }
      }
      for (int r = 0; r < kRounds; ++r) (void)as.unmap(places + r * k1G, kSize - kPage);
    });
  }
  for (auto& th : threads) th.join();
  leave();
  EXPECT_EQ(in_vm.load(), kThreads);
  EXPECT_EQ(failed.load(), 0) << "first: " << (first_error ? first_error : "");
}

TEST(Paging, TwoMegabyteAndOneGigabytePages) {
  test::enter_or_fail();
  AddressSpace& as = AddressSpace::process();
  char* memory2m = map_aligned(k2M, k2M);
  char* alias2m = unused_va(k2M, k2M);
  ASSERT_TRUE(as.map(alias2m, memory2m, k2M, kRead | kWrite, PageSize::k2M));
  auto big = as.lookup(alias2m + 12345);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->size, PageSize::k2M);
  EXPECT_EQ(big->page, alias2m);
  alias2m[k2M - 1] = 'z';
  EXPECT_EQ(memory2m[k2M - 1], 'z');
  // Asking for 4 KiB pages gives 4 KiB pages.
  ASSERT_TRUE(as.map(alias2m, memory2m, k2M, kRead | kWrite, PageSize::k4K));
  EXPECT_EQ(as.lookup(alias2m + 12345)->size, PageSize::k4K);

  // A GiB page needs GiB-aligned memory: its guest-physical chunk is too.
  char* memory1g = map_aligned(k1G, k1G);
  char* alias1g = unused_va(k1G, k1G);
  ASSERT_TRUE(as.map(alias1g, memory1g, k1G, kRead | kWrite, PageSize::k1G));
  auto gib = as.lookup(alias1g + 3 * k2M);
  ASSERT_TRUE(gib);
  EXPECT_EQ(gib->size, core::Machine::instance().features().gib_pages ? PageSize::k1G : PageSize::k2M);
  alias1g[k1G - 4096] = 'g';
  EXPECT_EQ(memory1g[k1G - 4096], 'g');
  // Protecting one page inside splits the GiB page at its edges only.
  ASSERT_TRUE(as.protect(alias1g + 5 * kPage, kPage, kRead));
  flush_tlb();
  EXPECT_EQ(as.lookup(alias1g + 5 * kPage)->size, PageSize::k4K);
  EXPECT_EQ(as.lookup(alias1g + 5 * kPage)->access & kWrite, 0u);
  EXPECT_NE(as.lookup(alias1g + 4 * kPage)->access & kWrite, 0u);
  EXPECT_EQ(as.lookup(alias1g + 512 * kPage * 3)->size, PageSize::k2M);
  leave();
}

TEST(Paging, NoCacheAndWriteThroughAttributes) {
  test::enter_or_fail();
  char* memory = map_pages(1);
  char* alias = unused_va(kPage, kPage);
  ASSERT_TRUE(AddressSpace::process().map(alias, memory, kPage, kRead | kWrite | kNoCache));
  alias[0] = 'u';
  auto info = AddressSpace::process().lookup(alias);
  ASSERT_TRUE(info);
  EXPECT_NE(info->access & kNoCache, 0u);
  EXPECT_EQ(memory[0], 'u');
  leave();
}

TEST(Paging, MonitorLeavesProgramOwnedEntriesAloneUntilReleased) {
  test::enter_or_fail();
  char* p = map_pages(2);
  AddressSpace& as = AddressSpace::process();
  ASSERT_TRUE(as.protect(p, kPage, kRead));
  // The host mapping changes; the program's entry stays as it set it.
  ASSERT_EQ(mprotect(p, 2 * kPage, PROT_READ | PROT_WRITE | PROT_EXEC), 0);
  auto kept = as.lookup(p), other = as.lookup(p + kPage);
  ASSERT_TRUE(kept && other);
  EXPECT_EQ(kept->access & (kWrite | kExec), 0u);
  EXPECT_TRUE(kept->program_owned);
  EXPECT_EQ(other->access & (kWrite | kExec), static_cast<unsigned>(kWrite | kExec));
  // Handed back, it follows the host again.
  ASSERT_TRUE(as.release(p, kPage));
  auto back = as.lookup(p);
  ASSERT_TRUE(back);
  EXPECT_FALSE(back->program_owned);
  EXPECT_EQ(back->access & (kWrite | kExec), static_cast<unsigned>(kWrite | kExec));
  leave();
}

TEST(Paging, ProgramUnmappedPageIsNotResolvedBehindItsBack) {
  // No handler: the fault on a page the program unmapped must not be
  // "fixed" by the monitor from the host's mapping; it ends the program.
  test::ChildResult r = test::run_in_child([] {
    if (!enter()) return 100;
    char* p = map_pages(1);
    p[0] = 1;
    if (!AddressSpace::process().unmap(p, kPage)) return 102;
    flush_tlb(p);
    static_cast<volatile char*>(p)[0] = 2;
    return 101;
  });
  ASSERT_TRUE(r.signaled) << r.output;
  EXPECT_EQ(r.signal, SIGSEGV);
}

TEST(Paging, DunksOwnMemoryCannotBeRemapped) {
  test::enter_or_fail();
  void* area = core::current_cpu()->area;
  Status s = AddressSpace::process().protect(area, kPage, kRead);
  leave();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, EPERM);
}

TEST(Paging, AccessedAndDirtyBitsReadAndClear) {
  test::enter_or_fail();
  char* p = map_pages(4);
  AddressSpace& as = AddressSpace::process();
  auto clean = [&] {
    as.walk(p, 4 * kPage, [](const PageInfo&, PageRef& ref) { ref.test_and_clean(); });
    flush_tlb();
  };
  p[0] = 1;
  clean();
  auto c = as.lookup(p);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->dirty);
  EXPECT_FALSE(c->accessed);
  volatile char x = p[kPage];  // read one page, write another
  (void)x;
  p[2 * kPage] = 3;
  EXPECT_TRUE(as.lookup(p + kPage)->accessed);
  EXPECT_FALSE(as.lookup(p + kPage)->dirty);
  EXPECT_TRUE(as.lookup(p + 2 * kPage)->dirty);
  EXPECT_FALSE(as.lookup(p + 3 * kPage)->accessed);
  std::size_t dirty = 0;
  std::size_t pages = as.walk(p, 4 * kPage, [&](const PageInfo& info, PageRef&) { dirty += info.dirty; });
  EXPECT_EQ(dirty, 1u);
  EXPECT_GE(pages, 1u);
  leave();
}

TEST(Paging, CloneActivateAndSwitchBackWithoutExits) {
  test::enter_or_fail();
  char* p = map_pages(1);
  char* other = map_pages(1);
  p[0] = 'p';
  other[0] = 'o';
  auto clone = AddressSpace::process().clone(CloneMode::kCopy);
  ASSERT_TRUE(clone);
  AddressSpace& sandbox = **clone;
  EXPECT_NE(sandbox.root(), AddressSpace::process().root());
  ASSERT_TRUE(sandbox.map(p, other, kPage, kRead | kWrite));  // p shows `other` there only
  const std::uint64_t before = kvm_runs();
  ASSERT_TRUE(sandbox.activate());
  char in_clone = static_cast<volatile char*>(p)[0];
  bool current_is_clone = &AddressSpace::current() == &sandbox;
  ASSERT_TRUE(AddressSpace::process().activate());
  char in_process = static_cast<volatile char*>(p)[0];
  const std::uint64_t after = kvm_runs();
  EXPECT_EQ(in_clone, 'o');
  EXPECT_EQ(in_process, 'p');
  EXPECT_TRUE(current_is_clone);
  EXPECT_EQ(after - before, 0u);

  // The monitor keeps the clone current: new memory works there too.
  ASSERT_TRUE(sandbox.activate());
  char* fresh = map_pages(8);
  fresh[5 * kPage] = 'f';
  bool fresh_ok = fresh[5 * kPage] == 'f';
  ASSERT_TRUE(AddressSpace::process().activate());
  EXPECT_TRUE(fresh_ok);
  EXPECT_TRUE(sandbox.destroy());
  EXPECT_FALSE(sandbox.activate());  // gone
  leave();
}

TEST(Paging, CloneSharingLeafTablesSharesFourKilobyteEntries) {
  test::enter_or_fail();
  char* p = map_pages(2);
  auto clone = AddressSpace::process().clone(CloneMode::kShareLeafTables);
  ASSERT_TRUE(clone);
  ASSERT_TRUE((*clone)->protect(p, kPage, kRead));
  auto seen = AddressSpace::process().lookup(p);
  ASSERT_TRUE(seen);
  ASSERT_EQ(seen->size, PageSize::k4K);
  EXPECT_EQ(seen->access & kWrite, 0u);  // the clone's edit, seen from the process
  EXPECT_TRUE((*clone)->destroy());
  EXPECT_TRUE(AddressSpace::process().lookup(p));  // the shared table survived
  leave();
}

TEST(Paging, CopyOnWriteClonesShareTablesUntilAnEditChangesThemAndKeepEditsApart) {
  test::enter_or_fail();
  char* p = map_pages(4);
  char* other = map_pages(1);
  std::memcpy(p + kPage, "process", 8);
  std::memcpy(other, "alias", 6);
  ASSERT_TRUE(guest_physical(other));  // the privileged API's first use: every mapping present from now on
  const std::size_t in_use = page_tables_in_use();
  auto a = AddressSpace::process().clone(CloneMode::kCopyOnWrite);
  auto b = AddressSpace::process().clone(CloneMode::kCopyOnWrite);
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(page_tables_in_use(), in_use + 2);  // a root each
  EXPECT_EQ((*a)->own_tables(), 1u);
  // An edit in a: the tables on its way become a's, no more.
  ASSERT_TRUE((*a)->map(p + kPage, other, kPage, kRead | kWrite));
  ASSERT_TRUE((*a)->protect(p, kPage, kRead));
  EXPECT_EQ((*a)->own_tables(), 4u);  // root, PDPT, PD, PT
  EXPECT_EQ(page_tables_in_use(), in_use + 5);
  // Seen in a, not in b nor in the process.
  EXPECT_EQ((*a)->lookup(p + kPage)->physical, *guest_physical(other));
  EXPECT_EQ((*b)->lookup(p + kPage)->physical, *guest_physical(p + kPage));
  EXPECT_EQ(AddressSpace::process().lookup(p + kPage)->physical, *guest_physical(p + kPage));
  EXPECT_EQ((*a)->lookup(p)->access & kWrite, 0u);
  EXPECT_NE((*b)->lookup(p)->access & kWrite, 0u);
  EXPECT_NE(AddressSpace::process().lookup(p)->access & kWrite, 0u);
  // The CPU agrees: a reads the alias, b the process's page.
  char in_a[8] = {}, in_b[8] = {};
  ASSERT_TRUE((*a)->activate());
  std::memcpy(in_a, p + kPage, sizeof in_a);
  ASSERT_TRUE((*b)->activate());
  std::memcpy(in_b, p + kPage, sizeof in_b);
  ASSERT_TRUE(AddressSpace::process().activate());
  EXPECT_STREQ(in_a, "alias");
  EXPECT_STREQ(in_b, "process");
  // The process's own edit copies its way too and stays its own.
  ASSERT_TRUE(AddressSpace::process().protect(p + 2 * kPage, kPage, kRead));
  EXPECT_NE((*a)->lookup(p + 2 * kPage)->access & kWrite, 0u);
  EXPECT_NE((*b)->lookup(p + 2 * kPage)->access & kWrite, 0u);
  ASSERT_TRUE(AddressSpace::process().release(p + 2 * kPage, kPage));
  // The monitor's edits reach every space: memory mapped now, and a page
  // unmapped from the host.
  char* fresh = map_pages(8);
  fresh[3 * kPage] = 'f';
  ASSERT_TRUE(munmap(p + 3 * kPage, kPage) == 0);
  for (AddressSpace* s : {*a, *b}) {
    EXPECT_TRUE(s->lookup(fresh + 3 * kPage));
    EXPECT_FALSE(s->lookup(p + 3 * kPage));
  }
  ASSERT_TRUE((*b)->activate());
  const bool fresh_ok = fresh[3 * kPage] == 'f';
  ASSERT_TRUE(AddressSpace::process().activate());
  EXPECT_TRUE(fresh_ok);
  // Destroyed, they give their tables back: the process has its own again.
  ASSERT_TRUE((*a)->destroy());
  ASSERT_TRUE((*b)->destroy());
  // What stays: the process's own copies of the tables on its edit's way,
  // and what the new mapping needed.
  EXPECT_LE(page_tables_in_use(), in_use + 8);
  leave();
}

TEST(Paging, AThousandCopyOnWriteClonesComeAndGoWithoutLeakingTables) {
  test::enter_or_fail();
  char* p = map_pages(16);
  char* other = map_pages(1);
  ASSERT_TRUE(guest_physical(other));
  // One round first: tables the process itself needs from now on.
  for (int round = 0; round < 2; ++round) {
    const std::size_t in_use = page_tables_in_use();
    for (int i = 0; i < 1000; ++i) {
      auto c = AddressSpace::process().clone(CloneMode::kCopyOnWrite);
      ASSERT_TRUE(c) << i << ": " << c.error().what;
      ASSERT_TRUE((*c)->map(p + (i % 16) * kPage, other, kPage, kRead | kUser));
      ASSERT_EQ((*c)->own_tables(), 4u) << i;
      ASSERT_TRUE((*c)->destroy());
    }
    if (round == 1) {
      EXPECT_EQ(page_tables_in_use(), in_use);
    }
  }
  leave();
}

TEST(Paging, ThousandsOfCopyOnWriteClonesLiveAtOnceEachWithItsOwnEdit) {
  test::enter_or_fail();
  constexpr int kClones = 2000;
  char* p = map_pages(64);
  char* other = map_pages(1);
  ASSERT_TRUE(guest_physical(other));
  std::vector<AddressSpace*> clones;
  clones.reserve(kClones);
  const std::size_t in_use = page_tables_in_use();
  for (int i = 0; i < kClones; ++i) {
    auto c = AddressSpace::process().clone(CloneMode::kCopyOnWrite);
    ASSERT_TRUE(c) << i << ": " << c.error().what;
    ASSERT_TRUE((*c)->map(p + (i % 64) * kPage, other, kPage, kRead | kUser));
    clones.push_back(*c);
  }
  // Four tables each (its root and its way to the page it changed), where
  // a full copy of the process's tables would cost every table it has.
  const std::size_t per_clone = (page_tables_in_use() - in_use) / kClones;
  EXPECT_LE(per_clone, 4u);
  std::printf("%d copy-on-write clones live: %zu page-table pages each (the process's own: %zu)\n", kClones,
              per_clone, AddressSpace::process().own_tables());
  for (int i = 0; i < kClones; ++i) {
    auto mine = clones[i]->lookup(p + (i % 64) * kPage);
    auto next = clones[i]->lookup(p + ((i + 1) % 64) * kPage);
    ASSERT_TRUE(mine && next);
    EXPECT_EQ(mine->physical, *guest_physical(other)) << i;
    EXPECT_EQ(next->physical, *guest_physical(p + ((i + 1) % 64) * kPage)) << i;
  }
  for (AddressSpace* c : clones) ASSERT_TRUE(c->destroy());
  EXPECT_LE(page_tables_in_use(), in_use + 8);  // 8000 were theirs
  leave();
}

TEST(Paging, UnalignedArgumentsAreRefused) {
  test::enter_or_fail();
  char* p = map_pages(1);
  EXPECT_FALSE(AddressSpace::process().protect(p + 1, kPage, kRead));
  EXPECT_FALSE(AddressSpace::process().map(p, p + 1, kPage, kRead));
  EXPECT_FALSE(AddressSpace::process().unmap(p, 100));
  leave();
}

}  // namespace
}  // namespace dunk
