// The sthread supervisor: the snapshot and the template address space built
// at init, compartments (an address space, a stack, the pages an sthread
// wrote), the worker pool that runs sthreads in ring 3, and the ring-0
// handlers of their events (system calls go on to checks.cc).
//
// Ring 0 runs each handler on the process's own address space: the
// handler's first act is to switch to it, its last to switch back to the
// compartment's. Until then it touches only dunk's memory and the worker's
// stack, which no compartment aliases, so nothing an sthread wrote in its
// view can mislead the supervisor.
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <asm/prctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>

#include "base/proc_maps.h"
#include "dunk/dunk.h"
#include "dunk/ring3.h"
#include "dunk/traps.h"
#include "sthread/internal.h"

namespace dunk::sthread {
namespace {

Supervisor g_supervisor;

// The program's writable memory larger than this is left out of the
// snapshot (a reservation, not globals): sthreads do not see it.
constexpr std::uint64_t kMaxSnapshotMapping = std::uint64_t{256} << 20;

char* map_anonymous(std::size_t size, bool populate = false) noexcept {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0), -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value) noexcept {
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, nullptr, nullptr, 0);
}

// --- The supervisor's own objects ------------------------------------------

struct ObjectRange {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  bool is_main_program = false;
};

struct OwnObjects {
  ObjectRange sthread;  // libsthread.so
  ObjectRange dunk;     // libdunk.so
};

// The load range of the object that holds `address`.
int find_object(dl_phdr_info* info, std::size_t, void* data) noexcept {
  auto* want = static_cast<std::pair<std::uint64_t, ObjectRange*>*>(data);
  std::uint64_t lo = ~std::uint64_t{0}, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    lo = std::min<std::uint64_t>(lo, info->dlpi_addr + ph.p_vaddr);
    hi = std::max<std::uint64_t>(hi, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
  }
  if (want->first < lo || want->first >= hi) return 0;
  want->second->start = lo & ~(kPage - 1);
  want->second->end = (hi + kPage - 1) & ~(kPage - 1);
  want->second->is_main_program = info->dlpi_name == nullptr || info->dlpi_name[0] == '\0';
  return 1;
}

Result<ObjectRange> object_of(const void* address) noexcept {
  ObjectRange range;
  std::pair<std::uint64_t, ObjectRange*> want{reinterpret_cast<std::uint64_t>(address), &range};
  if (dl_iterate_phdr(find_object, &want) == 0) return Error{"sthread_init: no loaded object holds the library", ENOENT};
  return range;
}

// libsthread's and libdunk's memory holds the supervisor's state: it must be
// theirs alone, not part of the program, whose writable memory every
// sthread sees a copy of.
Result<OwnObjects> own_objects() noexcept {
  OwnObjects own;
  DUNK_ASSIGN_OR_RETURN(own.sthread, object_of(reinterpret_cast<const void*>(&init)));
  DUNK_ASSIGN_OR_RETURN(own.dunk, object_of(reinterpret_cast<const void*>(&dunk::enter)));
  if (own.sthread.is_main_program || own.dunk.is_main_program) {
    return Error{"sthread_init: link libsthread.so and libdunk.so as shared libraries (the supervisor's memory "
                 "must not be part of the program's snapshot)",
                 EINVAL};
  }
  return own;
}

// --- The template ----------------------------------------------------------

struct Candidate {
  std::uint64_t start, end;
  bool write, exec, file;
};

// Every mapping of the program an sthread may see, read before anything is
// mapped for the snapshot (which would show up in the file). The
// supervisor's writable memory is cut out of them (the kernel merges a
// library's .bss with anonymous memory next to it into one mapping); its
// read-only segments stay in the image, as the dynamic linker reads every
// object's symbol tables when it binds a symbol lazily for ring 3.
Result<unsigned> list_candidates(const OwnObjects& own, Candidate* out, unsigned max) noexcept {
  char buffer[MapsReader::kFullLineBuffer];
  MapsReader reader(buffer, sizeof buffer);
  DUNK_TRY(reader.open());
  unsigned n = 0;
  MapEntry e;
  while (reader.next(e)) {
    if (!e.read || e.shared) continue;
    const std::string_view path = e.path;
    if (path == "[stack]" || path == "[vvar]" || path == "[vdso]" || path == "[vsyscall]") continue;
    const bool file = !path.empty() && path[0] == '/';
    if (!e.write && !file) continue;
    if (e.write && e.size() > kMaxSnapshotMapping) continue;
    // [start, end) minus the two objects' ranges: up to three pieces.
    std::uint64_t pieces[3][2] = {{e.start.value(), e.end.value()}, {0, 0}, {0, 0}};
    unsigned npieces = 1;
    for (const ObjectRange* r : {&own.sthread, &own.dunk}) {
      for (unsigned i = 0; i < npieces && e.write; ++i) {
        auto& [lo, hi] = pieces[i];
        if (hi <= r->start || r->end <= lo) continue;
        if (lo < r->start && r->end < hi && npieces < 3) {
          pieces[npieces][0] = r->end;
          pieces[npieces][1] = hi;
          ++npieces;
          hi = r->start;
        } else if (lo < r->start) {
          hi = r->start;
        } else {
          lo = std::min(r->end, hi);
        }
      }
    }
    for (unsigned i = 0; i < npieces; ++i) {
      if (pieces[i][0] >= pieces[i][1]) continue;
      if (n == max) return Error{"sthread_init: too many mappings", E2BIG};
      out[n++] = Candidate{pieces[i][0], pieces[i][1], e.write, e.exec, file};
    }
  }
  DUNK_TRY(reader.status());
  return n;
}

Status add_snapshot(Supervisor& s, const Candidate& m) noexcept {
  const std::uint64_t size = m.end - m.start;
  char* copy = map_anonymous(size);
  if (copy == nullptr) return Error{"sthread_init: mmap for the snapshot", ENOMEM};
  // Mapped before copied: dunk's own memory (its arena) refuses (EPERM).
  Status mapped = page_table_edit(
      [&] { return s.tmpl->map(reinterpret_cast<void*>(m.start), copy, size, kRead | kUser, PageSize::k4K); });
  if (!mapped) {
    ::munmap(copy, size);
    return mapped.error().err == EPERM ? Status{} : mapped;
  }
  if (s.nsnapshot == kMaxSnapshotRanges) return Error{"sthread_init: too many writable mappings", E2BIG};
  std::memcpy(copy, reinterpret_cast<const void*>(m.start), size);
  s.snapshot[s.nsnapshot++] = SnapshotRange{m.start, size, copy};
  return {};
}

// The dunk VM must not make the mirror reachable from ring 3
// (EnterOptions::user_mirror): then every page would be an sthread's.
Status check_no_user_mirror(Supervisor& s) noexcept {
  char* probe = map_anonymous(kPage);
  if (probe == nullptr) return Error{"sthread_init: mmap", ENOMEM};
  probe[0] = 1;
  auto info = s.tmpl->lookup(probe);
  const bool user = info && (info->access & kUser) != 0;
  ::munmap(probe, kPage);
  if (user) return Error{"sthread_init: the VM was entered with user_mirror (Dune's layout): ring 3 reaches everything", EINVAL};
  return {};
}

Status build_template(Supervisor& s, const OwnObjects& own) noexcept {
  static Candidate candidates[kMaxSnapshotRanges * 2];
  DUNK_ASSIGN_OR_RETURN(unsigned n, list_candidates(own, candidates, kMaxSnapshotRanges * 2));
  DUNK_ASSIGN_OR_RETURN(s.tmpl, page_table_edit([] { return AddressSpace::process().clone(CloneMode::kCopy); }));
  for (unsigned i = 0; i < n; ++i) {
    const Candidate& m = candidates[i];
    if (m.write) {
      DUNK_TRY(add_snapshot(s, m));
      continue;
    }
    Status mapped = page_table_edit([&] {
      return s.tmpl->map(reinterpret_cast<void*>(m.start), reinterpret_cast<void*>(m.start), m.end - m.start,
                         kRead | kUser | (m.exec ? unsigned{kExec} : 0u));
    });
    if (!mapped && mapped.error().err != EPERM) return mapped;
  }
  DUNK_TRY(page_table_edit(
      [&] { return s.tmpl->map(const_cast<char*>(sthread_ring3_page), sthread_ring3_page, kPage, kRead | kExec | kUser); }));
  DUNK_TRY(check_no_user_mirror(s));
  // Ring 3's TLS is the init thread's, as the snapshot has it.
  if (snapshot_at(s.fs_base) == nullptr) {
    return Error{"sthread_init: the calling thread's TLS is not in writable memory the snapshot holds", EINVAL};
  }
  return {};
}

std::size_t snapshot_pages(const Supervisor& s) noexcept {
  std::size_t pages = 0;
  for (unsigned i = 0; i < s.nsnapshot; ++i) pages += s.snapshot[i].size / kPage;
  return pages;
}

// --- Pages for copies on write ---------------------------------------------

char* take_page() noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  if (s.nfree_pages == 0) {
    constexpr std::size_t kBatch = 64;
    char* batch = map_anonymous(kBatch * kPage, /*populate=*/true);
    if (batch == nullptr) return nullptr;
    if (s.nfree_pages + kBatch > s.free_page_capacity) {
      const std::size_t capacity = std::max<std::size_t>(s.free_page_capacity * 2, 4096);
      auto** grown = reinterpret_cast<char**>(map_anonymous(capacity * sizeof(char*)));
      if (grown == nullptr) return nullptr;
      if (s.free_pages != nullptr) {
        std::memcpy(grown, s.free_pages, s.nfree_pages * sizeof(char*));
        ::munmap(s.free_pages, s.free_page_capacity * sizeof(char*));
      }
      s.free_pages = grown;
      s.free_page_capacity = capacity;
    }
    for (std::size_t i = 0; i < kBatch; ++i) s.free_pages[s.nfree_pages++] = batch + i * kPage;
  }
  return s.free_pages[--s.nfree_pages];
}

void give_page(char* page) noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  s.free_pages[s.nfree_pages++] = page;  // came from take_page: there is room
}

// --- Compartments ----------------------------------------------------------

Status apply_policy(Compartment& c, const Policy& p) noexcept {
  std::memcpy(c.policy.sys, p.sys, sizeof p.sys);
  c.policy.nfd = p.nfd;
  std::copy(p.fds, p.fds + p.nfd, c.policy.fds);
  c.policy.ncgate = p.ncgate;
  std::copy(p.cgates, p.cgates + p.ncgate, c.policy.cgates);
  c.policy.nmem = p.nmem;
  std::copy(p.mem, p.mem + p.nmem, c.policy.mem);
  for (unsigned i = 0; i < p.nmem; ++i) DUNK_TRY(tag_grant(c, p.mem[i].tag, p.mem[i].prot));
  return {};
}

void link_compartment(Compartment* c) noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  c->next_all = s.all_compartments;
  if (c->next_all != nullptr) c->next_all->prev_all = c;
  s.all_compartments = c;
}

void unlink_compartment(Compartment* c) noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  if (c->prev_all != nullptr) {
    c->prev_all->next_all = c->next_all;
  } else if (s.all_compartments == c) {
    s.all_compartments = c->next_all;
  }
  if (c->next_all != nullptr) c->next_all->prev_all = c->prev_all;
}

// A compartment's view shares the template's page tables (copy on write of
// tables: CloneMode::kCopyOnWrite): its own stack, tags and copies on write
// copy the few tables on their way; the rest — the image, libraries, every
// supervisor-only mapping — stays the template's, kept current by dunk's
// monitor for all of them at once. `copy_tables`: a full copy instead.
Result<Compartment*> fresh_compartment(bool copy_tables) noexcept {
  Supervisor& s = supervisor();
  void* memory = map_anonymous(sizeof(Compartment));
  if (memory == nullptr) return Error{"sthread: mmap for a compartment", ENOMEM};
  auto* c = new (memory) Compartment;
  auto fail = [&](const Error& e) -> Result<Compartment*> {
    if (c->view != nullptr) (void)page_table_edit([&] { return c->view->destroy(); });
    if (c->stack != nullptr) ::munmap(c->stack, kStackSize);
    if (c->pages != nullptr) ::munmap(c->pages, c->page_capacity * sizeof(PrivatePage));
    ::munmap(memory, sizeof(Compartment));
    return e;
  };
  auto view = page_table_edit(
      [&] { return s.tmpl->clone(copy_tables ? CloneMode::kCopy : CloneMode::kCopyOnWrite); });
  if (!view) return fail(view.error());
  c->view = *view;
  c->stack = map_anonymous(kStackSize);
  c->page_capacity = snapshot_pages(s);
  c->pages = reinterpret_cast<PrivatePage*>(map_anonymous(std::max<std::size_t>(c->page_capacity, 1) * sizeof(PrivatePage)));
  if (c->stack == nullptr || c->pages == nullptr) return fail(Error{"sthread: mmap for a compartment", ENOMEM});
  if (Status st = page_table_edit([&] { return c->view->map(c->stack, c->stack, kStackSize, kRead | kWrite | kUser, PageSize::k4K); });
      !st) {
    return fail(st.error());
  }
  s.counters.fresh.fetch_add(1, std::memory_order_relaxed);
  link_compartment(c);
  return c;
}

void destroy_compartment(Compartment* c) noexcept;

// Puts a compartment back in the state of a fresh one, from the dirty bits
// of what ring 3 wrote and the supervisor's record of what the kernel wrote.
void reset_compartment(Compartment& c) noexcept {
  Supervisor& s = supervisor();
  tag_revoke_all(c);
  std::uint64_t reset = 0;
  for (std::size_t i = 0; i < c.npages; ++i) {
    PrivatePage& p = c.pages[i];
    bool dirty = false;
    c.view->walk(reinterpret_cast<void*>(p.va), kPage, [&](const PageInfo&, PageRef& ref) { dirty |= ref.test_and_clean(); });
    if (dirty || p.written_by_supervisor) {
      const SnapshotRange* r = snapshot_at(p.va);
      std::memcpy(p.page, r->copy + (p.va - r->va), kPage);
      p.written_by_supervisor = false;
      ++reset;
    }
  }
  c.view->walk(c.stack, kStackSize, [&](const PageInfo& info, PageRef& ref) {
    const std::size_t index = (static_cast<char*>(info.page) - c.stack) / kPage;
    const bool by_kernel = (c.stack_written[index / 64] >> (index % 64)) & 1;
    if (ref.test_and_clean() || by_kernel) {
      std::memset(info.page, 0, kPage);
      ++reset;
    }
  });
  std::memset(c.stack_written, 0, sizeof c.stack_written);
  s.counters.reset.fetch_add(reset, std::memory_order_relaxed);
  for (Compartment*& gate : c.gates) {
    if (gate == nullptr) continue;
    reset_compartment(*gate);
    LockGuard guard(s.lock);
    gate->next_free = s.free_compartments;
    s.free_compartments = gate;
    gate = nullptr;
  }
  c.policy = Policy{};
}

void destroy_compartment(Compartment* c) noexcept {
  unlink_compartment(c);
  supervisor().counters.destroyed.fetch_add(1, std::memory_order_relaxed);
  tag_revoke_all(*c);
  for (Compartment* gate : c->gates) {
    if (gate != nullptr) destroy_compartment(gate);
  }
  (void)page_table_edit([&] { return c->view->destroy(); });
  for (std::size_t i = 0; i < c->npages; ++i) give_page(c->pages[i].page);
  ::munmap(c->stack, kStackSize);
  ::munmap(c->pages, std::max<std::size_t>(c->page_capacity, 1) * sizeof(PrivatePage));
  c->~Compartment();
  ::munmap(c, sizeof(Compartment));
}

Result<Compartment*> get_compartment(bool recycle, bool copy_tables = false) noexcept {
  Supervisor& s = supervisor();
  if (recycle) {
    LockGuard guard(s.lock);
    if (Compartment* c = s.free_compartments; c != nullptr) {
      s.free_compartments = c->next_free;
      c->next_free = nullptr;
      c->recycled = true;
      s.counters.recycled.fetch_add(1, std::memory_order_relaxed);
      return c;
    }
  }
  auto c = fresh_compartment(copy_tables);
  if (c) (*c)->recycled = false;
  return c;
}

Policy policy_of(const sc_t& sc) noexcept {
  Policy p;
  std::memcpy(p.sys, sc.sc_sys, sizeof p.sys);
  p.nfd = std::min<unsigned>(sc.sc_nfd, STHREAD_MAX_FD);
  std::copy(sc.sc_fd, sc.sc_fd + p.nfd, p.fds);
  p.nmem = std::min<unsigned>(sc.sc_nmem, STHREAD_MAX_MEM);
  std::copy(sc.sc_mem, sc.sc_mem + p.nmem, p.mem);
  p.ncgate = std::min<unsigned>(sc.sc_ncgate, STHREAD_MAX_CGATE);
  std::copy(sc.sc_cgate, sc.sc_cgate + p.ncgate, p.cgates);
  return p;
}

// --- Writing into a view ---------------------------------------------------

// Copies `size` bytes to `va` as the compartment sees it (a page it has not
// written yet is copied first); false where it may not write.
bool write_view(Compartment& c, std::uint64_t va, const void* data, std::size_t size) noexcept {
  std::size_t done = 0;
  while (done < size) {
    const std::uint64_t a = va + done;
    const std::uint64_t page = a & ~(kPage - 1);
    auto info = c.view->lookup(reinterpret_cast<void*>(a));
    if (!info || (info->access & kUser) == 0) return false;
    if ((info->access & kWrite) == 0) {
      if (!copy_on_write(c, page)) return false;
      info = c.view->lookup(reinterpret_cast<void*>(a));
      if (!info) return false;
    }
    void* target = host_address(info->physical);
    if (target == nullptr) return false;
    const std::size_t n = std::min<std::size_t>(size - done, kPage - (a - page));
    std::memcpy(target, static_cast<const char*>(data) + done, n);
    for (std::size_t i = 0; i < c.npages; ++i) {
      if (c.pages[i].va == page) c.pages[i].written_by_supervisor = true;
    }
    const auto stack = reinterpret_cast<std::uint64_t>(c.stack);
    if (page >= stack && page < stack + kStackSize) {
      const std::size_t index = (page - stack) / kPage;
      c.stack_written[index / 64] |= std::uint64_t{1} << (index % 64);
    }
    done += n;
  }
  return true;
}

// --- Running ring 3 ----------------------------------------------------------

std::uint64_t g_errno_offset = 0;  // errno's place relative to the TLS base

void set_ring3_errno(Run& run, int err) noexcept {
  (void)write_view(*run.current, supervisor().fs_base + g_errno_offset, &err, sizeof err);
}

void end_sthread(Run& run, int how, std::uint64_t value) noexcept {
  run.sthread->report.end = how;
  run.sthread->report.value = value;
}

// Ring 3 starts `entry(rdi, rsi)` on the compartment's stack, returning to
// `return_to` in the supervisor's ring-3 page. Its other registers are zero.
void start_frame(TrapFrame& f, Compartment& c, std::uint64_t entry, std::uint64_t rdi, std::uint64_t rsi,
                 const char* return_to) noexcept {
  const std::uint64_t top = ((reinterpret_cast<std::uint64_t>(c.stack) + kStackSize) & ~std::uint64_t{15}) - 8;
  const auto ret = reinterpret_cast<std::uint64_t>(return_to);
  (void)write_view(c, top, &ret, sizeof ret);
  const std::uint64_t cs = f.cs, ss = f.ss, rflags = f.rflags;
  f = TrapFrame{};
  f.cs = cs;
  f.ss = ss;
  f.rflags = rflags;
  f.rip = entry;
  f.rsp = top;
  f.rdi = rdi;
  f.rsi = rsi;
}

// A callgate's compartment as it was before the call: its writes undone
// (it starts from the snapshot each call), its own rights only.
void restore_gate(Compartment& gate, const Policy& kept) noexcept {
  reset_compartment(gate);  // revokes every tag, lent or not
  gate.policy = kept;
  for (unsigned i = 0; i < kept.nmem; ++i) (void)tag_grant(gate, kept.mem[i].tag, kept.mem[i].prot);
}

void gate_return(Run& run, TrapFrame& f, std::uint64_t value) noexcept {
  GateFrame& frame = run.gates[--run.depth];
  restore_gate(*frame.gate, frame.kept);
  f = frame.caller;
  f.rax = value;
  run.current = frame.caller_compartment;
}

// cgate(cb, perms, arg) from ring 3.
void gate_call(Run& run, TrapFrame& f) noexcept {
  Supervisor& s = supervisor();
  Compartment& caller = *run.current;
  auto refuse = [&](int err, const char* why) {
    note_violation(run, Violation{static_cast<long>(kCallGate), f.rdi, -1, err, why});
    set_ring3_errno(run, err);
    f.rax = 0;
  };
  unsigned index = 0;
  while (index < caller.policy.ncgate && reinterpret_cast<std::uint64_t>(caller.policy.cgates[index].entry) != f.rdi) {
    ++index;
  }
  if (index == caller.policy.ncgate) return refuse(EPERM, "cgate: not a callgate of the caller's context");
  if (run.depth == kMaxCallgateDepth) return refuse(EPERM, "cgate: callgates nested too deeply");
  const sc_cgate_grant grant = caller.policy.cgates[index];
  Compartment* gate = caller.gates[index];
  if (gate == nullptr) {
    auto made = get_compartment(true);
    if (!made) return refuse(made.error().err, "cgate: no compartment for the callgate");
    gate = *made;
    Policy context;
    {
      LockGuard guard(s.lock);
      if (grant.context < 0 || static_cast<unsigned>(grant.context) >= s.ncontexts) {
        return refuse(EPERM, "cgate: no such context");
      }
      context = s.contexts[grant.context];
    }
    if (Status st = apply_policy(*gate, context); !st) return refuse(st.error().err, "cgate: the callgate's context");
    caller.gates[index] = gate;
  }
  GateFrame& frame = run.gates[run.depth];
  frame = GateFrame{};
  frame.kept = gate->policy;
  // Rights the caller lends for this call: its own, no more.
  if (f.rsi != 0) {
    static_assert(sizeof(sc_t) < 4096, "the trap stack holds a context");
    sc_t perms;
    if (!read_view(caller, f.rsi, &perms, sizeof perms)) return refuse(EFAULT, "cgate: perms not readable");
    const unsigned nfd = std::min<unsigned>(perms.sc_nfd, STHREAD_MAX_FD);
    const unsigned nmem = std::min<unsigned>(perms.sc_nmem, STHREAD_MAX_MEM);
    for (unsigned i = 0; i < nfd; ++i) {
      const int have = caller.policy.fd_rights(perms.sc_fd[i].fd);
      if (have < 0 || (perms.sc_fd[i].prot & ~have) != 0) return refuse(EPERM, "cgate: lends a descriptor it lacks");
    }
    for (unsigned i = 0; i < nmem; ++i) {
      bool held = false;
      for (unsigned j = 0; j < caller.policy.nmem; ++j) {
        held |= caller.policy.mem[j].tag == perms.sc_mem[i].tag && (perms.sc_mem[i].prot & ~caller.policy.mem[j].prot) == 0;
      }
      if (!held) return refuse(EPERM, "cgate: lends a tag it lacks");
    }
    for (unsigned i = 0; i < nfd; ++i) gate->policy.add_fd(perms.sc_fd[i].fd, perms.sc_fd[i].prot);
    for (unsigned i = 0; i < nmem; ++i) {
      if (Status st = tag_grant(*gate, perms.sc_mem[i].tag, perms.sc_mem[i].prot); !st) {
        restore_gate(*gate, frame.kept);
        return refuse(st.error().err, "cgate: lending a tag");
      }
    }
  }
  frame.caller = f;
  frame.caller_compartment = &caller;
  frame.gate = gate;
  ++run.depth;
  run.current = gate;
  start_frame(f, *gate, reinterpret_cast<std::uint64_t>(grant.entry), reinterpret_cast<std::uint64_t>(grant.trusted),
              f.rdx, sthread_ring3_cgate_return);
  s.counters.gates.fetch_add(1, std::memory_order_relaxed);
}

// True: the run ends.
bool handle_syscall(Run& run, TrapFrame& f) noexcept {
  switch (f.rax) {
    case kCallReturn:
    case kCallGateReturn:
      if (run.depth > 0) {
        gate_return(run, f, f.rdi);
        return false;
      }
      if (f.rax == kCallReturn) {
        end_sthread(run, STHREAD_RETURNED, f.rdi);
        return true;
      }
      note_violation(run, Violation{static_cast<long>(f.rax), 0, -1, EPERM, "callgate return outside a callgate"});
      f.rax = static_cast<std::uint64_t>(-EPERM);
      return false;
    case kCallGate:
      gate_call(run, f);
      return false;
    case SYS_exit:
    case SYS_exit_group:
      if (run.depth > 0) {  // a callgate that exits has returned nothing
        gate_return(run, f, 0);
        return false;
      }
      end_sthread(run, STHREAD_EXITED, static_cast<std::uint64_t>(static_cast<int>(f.rdi)));
      return true;
    default:
      serve_call(run, f);
      return false;
  }
}

Ring3Action on_syscall(TrapFrame& f, void* cookie) noexcept {
  (void)AddressSpace::process().activate();
  Run& run = *static_cast<Run*>(cookie);
  if (handle_syscall(run, f)) return Ring3Action::kStop;
  (void)run.current->view->activate();
  return Ring3Action::kResume;
}

Ring3Action on_fault(TrapFrame& f, void* cookie) noexcept {
  (void)AddressSpace::process().activate();
  Run& run = *static_cast<Run*>(cookie);
  if (f.vector == kPageFault) {
    const PageFault pf = page_fault(f);
    if (pf.user && pf.write && pf.present &&
        copy_on_write(*run.current, reinterpret_cast<std::uint64_t>(pf.address) & ~(kPage - 1))) {
      (void)run.current->view->activate();
      return Ring3Action::kResume;
    }
  }
  sthread_report& r = run.sthread->report;
  r.vector = static_cast<int>(f.vector);
  r.address = f.vector == kPageFault ? f.cr2 : 0;
  r.rip = f.rip;
  r.tag = f.vector == kPageFault ? tag_holding(f.cr2) : -1;
  char line[160];
  std::snprintf(line, sizeof line, "%s: exception %lu (error 0x%lx) at rip=0x%lx, address 0x%lx (tag %d)%s",
                run.depth > 0 ? "callgate" : "sthread", static_cast<unsigned long>(f.vector), static_cast<unsigned long>(f.error_code),
                static_cast<unsigned long>(f.rip), static_cast<unsigned long>(r.address), r.tag,
                run.depth > 0 ? ": the callgate ends, cgate() returns NULL" : ": the sthread ends");
  report_line(*run.sthread, line);
  if (run.depth > 0) {
    gate_return(run, f, 0);
    set_ring3_errno(run, EFAULT);
    (void)run.current->view->activate();
    return Ring3Action::kResume;
  }
  end_sthread(run, STHREAD_FAULTED, 0);
  return Ring3Action::kStop;
}

// `fpu`: the worker's buffer for ring 3's FPU state across interruptions
// (ring3_fpu_size() bytes, page-aligned).
void run_sthread(Sthread& st, char* bounce, void* fpu) noexcept {
  Supervisor& s = supervisor();
  Run run;
  run.sthread = &st;
  run.current = st.compartment;
  run.bounce = bounce;
  Ring3Options options;
  options.on_syscall = on_syscall;
  options.on_fault = on_fault;
  options.cookie = &run;
  options.fs_base = s.fs_base;
  TrapFrame start{};
  start_frame(start, *st.compartment, reinterpret_cast<std::uint64_t>(st.fn), reinterpret_cast<std::uint64_t>(st.arg),
              0, sthread_ring3_return);
  // A signal for the process stops the sthread wherever it is (a ring-3
  // loop included); its handler runs on this worker in the process's view,
  // then the sthread (or the callgate it is in: run.current) goes on where
  // it was, with its FPU state. Without a buffer for that state the signal
  // waits for the sthread's next call, as before.
  options.interruptible = fpu != nullptr;
  options.fpu_out = fpu;
  for (;;) {
    Status active = run.current->view->activate();
    auto exit = active ? run_in_ring3(start, options) : Result<Ring3Exit>(active.error());
    (void)AddressSpace::process().activate();
    if (!exit) {
      st.report.end = STHREAD_FAULTED;
      st.report.vector = -1;
      report_line(st, exit.error().what);
      return;
    }
    if (exit->reason != Ring3Exit::kInterrupted) return;  // the handlers saw to the rest
    signal_point();
    start = exit->frame;
    options.fs_base = exit->fs_base;
    options.gs_base = exit->gs_base;
    options.fpu = fpu;
  }
}

// --- The worker pool -------------------------------------------------------

struct Worker {
  std::atomic<std::uint32_t> go{0};
  Worker* next_idle = nullptr;
  char* bounce = nullptr;
  void* fpu = nullptr;  // made in VM mode, where its size is known
};

Worker* g_idle_workers = nullptr;

void finish(Sthread& st) noexcept {
  st.state.store(static_cast<std::uint32_t>(State::kDone), std::memory_order_release);
  futex(&st.state, FUTEX_WAKE_PRIVATE, INT32_MAX);
}

void* worker_main(void* arg) noexcept {
  auto* self = static_cast<Worker*>(arg);
  Supervisor& s = supervisor();
  if (!in_vm()) (void)dunk::enter();
  for (;;) {
    s.lock.lock();
    while (s.queue_count == 0) {
      self->go.store(0, std::memory_order_relaxed);
      self->next_idle = g_idle_workers;
      g_idle_workers = self;
      s.lock.unlock();
      while (self->go.load(std::memory_order_acquire) == 0) futex(&self->go, FUTEX_WAIT_PRIVATE, 0);
      s.lock.lock();
    }
    const int id = s.queue[s.queue_head];
    s.queue_head = (s.queue_head + 1) % kMaxSthreads;
    --s.queue_count;
    s.lock.unlock();
    Sthread& st = s.sthreads[id];
    st.state.store(static_cast<std::uint32_t>(State::kRunning), std::memory_order_relaxed);
    if (in_vm()) {
      if (self->fpu == nullptr) self->fpu = map_anonymous(ring3_fpu_size());
      run_sthread(st, self->bounce, self->fpu);
    } else {
      st.report.end = STHREAD_FAULTED;
      st.report.vector = -1;
      report_line(st, "the worker thread could not enter VM mode");
    }
    finish(st);
  }
  return nullptr;
}

Status start_worker() noexcept {
  Supervisor& s = supervisor();
  void* memory = map_anonymous(sizeof(Worker));
  char* bounce = map_anonymous(kBounceSize);
  if (memory == nullptr || bounce == nullptr) return Error{"sthread: mmap for a worker", ENOMEM};
  auto* w = new (memory) Worker;
  w->bounce = bounce;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  const int err = pthread_create(&thread, &attr, worker_main, w);
  pthread_attr_destroy(&attr);
  if (err != 0) return Error{"sthread: pthread_create for a worker", err};
  s.counters.workers.fetch_add(1, std::memory_order_relaxed);
  return {};
}

Status enqueue(int id) noexcept {
  Supervisor& s = supervisor();
  Worker* wake = nullptr;
  {
    LockGuard guard(s.lock);
    s.queue[(s.queue_head + s.queue_count) % kMaxSthreads] = id;
    ++s.queue_count;
    if (g_idle_workers != nullptr) {
      wake = g_idle_workers;
      g_idle_workers = wake->next_idle;
    }
  }
  if (wake == nullptr) return start_worker();
  wake->go.store(1, std::memory_order_release);
  futex(&wake->go, FUTEX_WAKE_PRIVATE, 1);
  return {};
}

Result<Sthread*> sthread_at(sthread_t id) noexcept {
  if (id < 0 || static_cast<unsigned>(id) >= kMaxSthreads) return Error{"sthread: no such sthread", ESRCH};
  Sthread& st = supervisor().sthreads[id];
  if (st.state.load(std::memory_order_acquire) == static_cast<std::uint32_t>(State::kFree)) {
    return Error{"sthread: no such sthread", ESRCH};
  }
  return &st;
}

}  // namespace

Supervisor& supervisor() noexcept { return g_supervisor; }

const SnapshotRange* snapshot_at(std::uint64_t va) noexcept {
  const Supervisor& s = supervisor();
  for (unsigned i = 0; i < s.nsnapshot; ++i) {
    if (va >= s.snapshot[i].va && va - s.snapshot[i].va < s.snapshot[i].size) return &s.snapshot[i];
  }
  return nullptr;
}

bool copy_on_write(Compartment& c, std::uint64_t va) noexcept {
  va &= ~(kPage - 1);
  const SnapshotRange* r = snapshot_at(va);
  if (r == nullptr) return false;
  auto info = c.view->lookup(reinterpret_cast<void*>(va));
  if (!info || (info->access & kUser) == 0) return false;
  if ((info->access & kWrite) != 0) return true;  // copied already: a stale TLB entry
  if (c.npages == c.page_capacity) return false;
  char* page = take_page();
  if (page == nullptr) return false;
  std::memcpy(page, r->copy + (va - r->va), kPage);
  if (!page_table_edit([&] { return c.view->map(reinterpret_cast<void*>(va), page, kPage, kRead | kWrite | kUser, PageSize::k4K); })) {
    give_page(page);
    return false;
  }
  c.pages[c.npages++] = PrivatePage{va, page, false};
  supervisor().counters.cow.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool read_view(Compartment& c, std::uint64_t va, void* out, std::size_t size) noexcept {
  std::size_t done = 0;
  while (done < size) {
    const std::uint64_t a = va + done;
    if (a < va || a >= (std::uint64_t{1} << 47)) return false;
    auto info = c.view->lookup(reinterpret_cast<void*>(a));
    if (!info || (info->access & (kRead | kUser)) != (kRead | kUser)) return false;
    const void* source = host_address(info->physical);
    if (source == nullptr) return false;
    const std::size_t n = std::min<std::size_t>(size - done, kPage - (a & (kPage - 1)));
    std::memcpy(static_cast<char*>(out) + done, source, n);
    done += n;
  }
  return true;
}

bool write_to_view(Compartment& c, std::uint64_t va, const void* data, std::size_t size) noexcept {
  return write_view(c, va, data, size);
}

void note_kernel_write(Compartment& c, std::uint64_t va, std::uint64_t size) noexcept {
  const auto stack = reinterpret_cast<std::uint64_t>(c.stack);
  const std::uint64_t lo = std::max(va, stack), hi = std::min(va + size, stack + kStackSize);
  for (std::uint64_t p = lo & ~(kPage - 1); p < hi; p += kPage) {
    const std::size_t index = (p - stack) / kPage;
    c.stack_written[index / 64] |= std::uint64_t{1} << (index % 64);
  }
}

void report_line(const Sthread& st, const char* text) noexcept {
  const int fd = supervisor().report_fd.load(std::memory_order_relaxed);
  if (fd < 0) return;
  char line[320];
  const int n = std::snprintf(line, sizeof line, "sthread %d: %s\n",
                              static_cast<int>(&st - supervisor().sthreads), text);
  if (n > 0) (void)!::write(fd, line, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1));
}

void set_errno_in_view(Run& run, int err) noexcept { set_ring3_errno(run, err); }

int Policy::fd_rights(int fd) const noexcept {
  for (unsigned i = 0; i < nfd; ++i) {
    if (fds[i].fd == fd) return fds[i].prot;
  }
  return -1;
}

void Policy::add_fd(int fd, int prot) noexcept {
  for (unsigned i = 0; i < nfd; ++i) {
    if (fds[i].fd == fd) {
      fds[i].prot |= prot;
      return;
    }
  }
  if (nfd < STHREAD_MAX_FD) fds[nfd++] = sc_fd_grant{fd, prot};
}

void Policy::remove_fd(int fd) noexcept {
  for (unsigned i = 0; i < nfd; ++i) {
    if (fds[i].fd == fd) {
      fds[i] = fds[--nfd];
      return;
    }
  }
}

// --- The C++ API -------------------------------------------------------------

Status init() noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  if (s.ready) return {};
  if (!in_vm()) DUNK_TRY(dunk::enter());
  DUNK_ASSIGN_OR_RETURN(OwnObjects own, own_objects());
  unsigned long fs = 0;
  if (::syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) != 0) return Error{"sthread_init: arch_prctl(ARCH_GET_FS)", errno};
  s.fs_base = fs;
  g_errno_offset = reinterpret_cast<std::uint64_t>(&errno) - fs;
  DUNK_TRY(build_template(s, own));
  s.ready = true;
  return {};
}

Result<sthread_t> create(const sc_t& sc, stcb_t fn, void* arg, const CreateOptions& options) noexcept {
  Supervisor& s = supervisor();
  if (!s.ready) return Error{"sthread_create: sthread_init first", EINVAL};
  if (sc.sc_overflow != 0) return Error{"sthread_create: the security context overflowed its limits", E2BIG};
  if (fn == nullptr) return Error{"sthread_create: no function", EINVAL};
  int id = -1;
  {
    LockGuard guard(s.lock);
    for (unsigned i = 0; i < kMaxSthreads; ++i) {
      std::uint32_t expected = static_cast<std::uint32_t>(State::kFree);
      if (s.sthreads[i].state.compare_exchange_strong(expected, static_cast<std::uint32_t>(State::kQueued))) {
        id = static_cast<int>(i);
        break;
      }
    }
  }
  if (id < 0) return Error{"sthread_create: too many sthreads", EAGAIN};
  Sthread& st = s.sthreads[id];
  auto release_slot = [&](const Error& e) -> Result<sthread_t> {
    st.state.store(static_cast<std::uint32_t>(State::kFree), std::memory_order_release);
    return e;
  };
  auto compartment = get_compartment(options.recycle, options.copy_tables);
  if (!compartment) return release_slot(compartment.error());
  Compartment* c = *compartment;
  const Policy policy = policy_of(sc);
  if (Status applied = apply_policy(*c, policy); !applied) {
    reset_compartment(*c);
    destroy_compartment(c);
    return release_slot(applied.error());
  }
  st.fn = fn;
  st.arg = arg;
  st.compartment = c;
  st.recycle = options.recycle;
  st.report = sthread_report{};
  st.report.tag = -1;
  st.report.last_call = -1;
  st.report.last_fd = -1;
  st.report.recycled = c->recycled ? 1 : 0;
  if (Status queued = enqueue(id); !queued) {
    destroy_compartment(c);
    return release_slot(queued.error());
  }
  return id;
}

Result<sthread_report> join(sthread_t id) noexcept {
  DUNK_ASSIGN_OR_RETURN(Sthread * st, sthread_at(id));
  for (;;) {
    const std::uint32_t state = st->state.load(std::memory_order_acquire);
    if (state == static_cast<std::uint32_t>(State::kDone)) break;
    futex(&st->state, FUTEX_WAIT_PRIVATE, state);
  }
  sthread_report report = st->report;
  Compartment* c = st->compartment;
  st->compartment = nullptr;
  if (st->recycle) {
    reset_compartment(*c);
    Supervisor& s = supervisor();
    LockGuard guard(s.lock);
    c->next_free = s.free_compartments;
    s.free_compartments = c;
  } else {
    destroy_compartment(c);
  }
  st->state.store(static_cast<std::uint32_t>(State::kFree), std::memory_order_release);
  return report;
}

Result<AddressSpace*> view_of(sthread_t id) noexcept {
  DUNK_ASSIGN_OR_RETURN(Sthread * st, sthread_at(id));
  if (st->compartment == nullptr) return Error{"sthread: no compartment", ESRCH};
  return st->compartment->view;
}

void set_report_fd(int fd) noexcept { supervisor().report_fd.store(fd, std::memory_order_relaxed); }

Stats stats() noexcept {
  const Counters& c = supervisor().counters;
  Stats s;
  s.created_fresh = c.fresh.load();
  s.created_recycled = c.recycled.load();
  s.cow_copies = c.cow.load();
  s.pages_reset = c.reset.load();
  s.calls_checked = c.checked.load();
  s.calls_refused = c.refused.load();
  s.callgates = c.gates.load();
  s.workers = c.workers.load();
  s.compartments = c.fresh.load() - c.destroyed.load();
  {
    Supervisor& sup = supervisor();
    LockGuard guard(sup.lock);
    for (const Compartment* k = sup.all_compartments; k != nullptr; k = k->next_all) {
      s.compartment_tables += k->view->own_tables();
    }
  }
  s.page_tables = page_tables_in_use();
  return s;
}

int register_context(const sc_t& sc) noexcept {
  Supervisor& s = supervisor();
  const Policy p = policy_of(sc);
  LockGuard guard(s.lock);
  if (s.ncontexts == kMaxContexts) return -1;
  s.contexts[s.ncontexts] = p;
  return static_cast<int>(s.ncontexts++);
}

}  // namespace dunk::sthread
