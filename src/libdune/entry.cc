// dune_init and dune_enter over dunk::enter(): the VM, the page pool and
// Dune's layout globals.
#include <asm/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/proc_maps.h"
#include "base/syscall.h"
#include "libdune/internal.h"
#include "libdune/local.h"

extern "C" {
ptent_t* pgroot = nullptr;
uintptr_t phys_limit = 0;
uintptr_t mmap_base = 0;
uintptr_t stack_base = 0;
}

namespace dunk::libdune {
namespace {

std::atomic<bool> init_done{false};
bool full_mode = false;
// The process pgroot describes: a fork child has a VM of its own.
long vm_pid = 0;

// 1 << MAXPHYADDR (CPUID 0x80000008 EAX[7:0]), as Dune's module reported.
std::uintptr_t physical_limit() noexcept {
  std::uint32_t a = 0x80000008, b, c = 0, d;
  asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
  return std::uintptr_t{1} << (a & 0xff);
}

constexpr std::uintptr_t lg_align(std::uintptr_t a) noexcept { return (a + (1ul << 30) - 1) & ~((1ul << 30) - 1); }

// Dune's module took mmap_base and stack_base from the kernel's view of the
// process (mm->mmap_base, mm->start_stack); here they come from its map:
// the top of the mmap area is the end of the highest mapping below the
// stack that is not one of the kernel's special ones.
Status compute_layout() noexcept {
  char buffer[8192];
  MapsReader reader(buffer, sizeof buffer);
  DUNK_TRY(reader.open());
  std::uintptr_t mmap_top = 0, stack_top = 0;
  MapEntry e;
  while (reader.next(e)) {
    const std::string_view path = e.path;
    if (path == "[stack]") {
      stack_top = e.end.value();
    } else if (path != "[vdso]" && path != "[vvar]" && path != "[vsyscall]" && e.end.value() < (1ul << 47) &&
               (stack_top == 0 || e.end.value() < stack_top)) {
      mmap_top = std::max<std::uintptr_t>(mmap_top, e.end.value());
    }
  }
  DUNK_TRY(reader.status());
  phys_limit = physical_limit();
  mmap_base = lg_align(mmap_top) - GPA_MAP_SIZE;
  stack_base = lg_align(stack_top) - GPA_STACK_SIZE;
  return {};
}

// What dune_init does in VM mode: the pool, pgroot, the layout.
int setup() noexcept {
  if (int ret = dune_page_init(); ret != 0) {
    report("the page pool cannot be mapped at PAGEBASE (0x200000000)", Error{"mmap failed", -ret});
    return ret;
  }
  const auto base = guest_physical(reinterpret_cast<void*>(PAGEBASE));
  if (!base || *base != PAGEBASE) {
    report("the page pool's guest-physical address is not its address, as Dune's programs expect",
           Error{"no identity guest-physical chunk for PAGEBASE", EADDRNOTAVAIL});
    return -EADDRNOTAVAIL;
  }
  refresh_after_enter();
  if (reinterpret_cast<std::uint64_t>(pgroot) != AddressSpace::process().root()) {
    report("the page tables' guest-physical addresses are not their addresses, as Dune's programs expect",
           Error{"dunk's page tables are outside the identity-mapped range", EADDRNOTAVAIL});
    return -EADDRNOTAVAIL;
  }
  if (Status s = compute_layout(); !s) {
    report("reading /proc/self/maps", s.error());
    return -s.error().err;
  }
  if (!dune_setup_apic()) return -ENOMEM;
  return 0;
}

}  // namespace

EnterOptions vm_options() noexcept {
  // follow_fork: a child forked in VM mode continues in a VM that carries
  // its parent's page tables (the program's edits and clones) and the
  // handler or ring-3 run it forked from, as Dune's children had their
  // parent's page tables in their copy of its memory; dune_enter there
  // finds it in VM mode already.
  return EnterOptions{.interrupts = true,
                      .follow_fork = true,
                      .identity_physical = true,
                      .user_mirror = full_mode,
                      .small_pages = true};
}

bool initialized() noexcept { return init_done.load(std::memory_order_acquire); }

void refresh_after_enter() noexcept {
  const long pid = sys::call(SYS_getpid);
  if (pid != vm_pid) {
    forget_lost_clones();
    vm_pid = pid;
  }
  pgroot = reinterpret_cast<ptent_t*>(page_table_at(AddressSpace::process().root()));
}

}  // namespace dunk::libdune

using namespace dunk::libdune;

extern "C" {

int dune_init(bool map_full) {
  if (initialized()) return 0;
  full_mode = map_full;
  // The VM exists once some thread has entered; the pool is mirrored with
  // an identity address only if mapped in VM mode (or before the VM).
  const bool was_in = dunk::in_vm();
  if (dunk::Status s = dunk::enter(vm_options()); !s) {
    report("cannot enter VM mode", s.error());
    return s.error().err != 0 ? -s.error().err : -EIO;
  }
  const int ret = setup();
  if (!was_in) dunk::leave();
  if (ret == 0) init_done.store(true, std::memory_order_release);
  return ret;
}

int dune_enter(void) {
  if (!initialized()) {
    report("dune_enter", dunk::Error{"dune_init() has not been called", EINVAL});
    return -EINVAL;
  }
  if (dunk::Status s = dunk::enter(vm_options()); !s) {
    report("entry to VM mode failed", s.error());
    return s.error().err != 0 ? -s.error().err : -EIO;
  }
  refresh_after_enter();
  thread_entered();
  return 0;
}

}  // extern "C"
