// sthreads' guarantees, each tried: the snapshot and its reset, tags granted
// and denied, descriptors and the call set, every pointer checked against
// the sthread's view (the leak attempt), a fault ending one sthread only,
// callgates with a trusted argument, recycling, concurrency, and what an
// sthread's page table opens to ring 3.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "dunk/paging.h"
#include "dunk/sthread.h"
#include "sthread/sthread.h"

namespace {

namespace st = dunk::sthread;

char g_secret_global[32] = "snapshot-value";
int g_counter = 1;

// A system call ring 3 makes without libc (the result, not errno).
long raw_syscall(long nr, long a, long b, long c) {
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}

void init_or_fail() {
  auto s = st::init();
  ASSERT_TRUE(s) << s.error().what << ": " << std::strerror(s.error().err);
  st::set_report_fd(-1);
}

sthread_report run(const sc_t& sc, stcb_t fn, void* arg, bool recycle = true) {
  auto id = st::create(sc, fn, arg, st::CreateOptions{.recycle = recycle});
  EXPECT_TRUE(id) << id.error().what;
  if (!id) return sthread_report{};
  auto end = st::join(*id);
  EXPECT_TRUE(end) << end.error().what;
  return end ? *end : sthread_report{};
}

sc_t empty_context() {
  sc_t sc;
  sc_init(&sc);
  return sc;
}

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int p[2];
    if (pipe2(p, O_NONBLOCK) == 0) {
      r = p[0];
      w = p[1];
    }
  }
  ~Pipe() {
    close(r);
    close(w);
  }
  std::string drain() const {
    char buf[256];
    const long n = read(r, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
};

// --- The snapshot ------------------------------------------------------------

void* bump_global(void*) {
  const int seen = g_counter;
  g_counter = 1000;
  return reinterpret_cast<void*>(static_cast<long>(seen));
}

TEST(Sthread, SeesGlobalsAsOfInitAndWritesItsOwnCopy) {
  init_or_fail();
  g_counter = 2;  // after the snapshot
  const sc_t sc = empty_context();
  sthread_report r = run(sc, bump_global, nullptr);
  EXPECT_EQ(r.end, STHREAD_RETURNED);
  EXPECT_EQ(r.value, 1u);
  EXPECT_EQ(g_counter, 2);
  // Recycled: the write of the first is gone.
  r = run(sc, bump_global, nullptr);
  EXPECT_EQ(r.recycled, 1);
  EXPECT_EQ(r.value, 1u);
  EXPECT_GE(st::stats().pages_reset, 1u);
}

__attribute__((noinline)) void* mark_stack(void* arg) {
  // A byte well below this frame, written before any call here reaches it.
  volatile unsigned char* below = static_cast<unsigned char*>(__builtin_frame_address(0)) - 3000;
  const unsigned char before = *below;
  *below = static_cast<unsigned char>(reinterpret_cast<std::uintptr_t>(arg));
  int* heap = static_cast<int*>(malloc(sizeof(int)));  // the sthread's own copy of the heap
  const bool fresh_heap = heap != nullptr;
  if (heap != nullptr) *heap = 7;
  free(heap);
  return reinterpret_cast<void*>(static_cast<long>(before) | (fresh_heap ? 0x100 : 0));
}

TEST(Sthread, RecycledCompartmentStartsClean) {
  init_or_fail();
  const sc_t sc = empty_context();
  const std::uint64_t fresh = st::stats().created_fresh;
  for (int i = 0; i < 5; ++i) {
    const sthread_report r = run(sc, mark_stack, reinterpret_cast<void*>(0x40 + i));
    EXPECT_EQ(r.end, STHREAD_RETURNED);
    EXPECT_EQ(r.value, 0x100u) << "run " << i << ": the stack kept a byte of the one before";
    if (i > 0) {
      EXPECT_EQ(r.recycled, 1);
    }
  }
  EXPECT_LE(st::stats().created_fresh - fresh, 1u);
}

// --- Tags ----------------------------------------------------------------------

void* upcase(void* arg) {
  for (char* p = static_cast<char*>(arg); *p != 0; ++p) *p = static_cast<char>(*p - 'a' + 'A');
  return nullptr;
}

void* read_first(void* arg) { return reinterpret_cast<void*>(static_cast<long>(*static_cast<volatile char*>(arg))); }

TEST(Sthread, GrantedTagIsSharedWithTheGrantedProtection) {
  init_or_fail();
  const tag_t t = tag_new();
  ASSERT_GT(t, 0);
  char* text = static_cast<char*>(smalloc(t, 64));
  ASSERT_NE(text, nullptr);
  std::strcpy(text, "abc");
  sc_t sc = empty_context();
  sc_mem_add(&sc, t, PROT_READ | PROT_WRITE);
  EXPECT_EQ(run(sc, upcase, text).end, STHREAD_RETURNED);
  EXPECT_STREQ(text, "ABC");

  // Read-only: reading works, the write ends the sthread with its address and tag.
  sc = empty_context();
  sc_mem_add(&sc, t, PROT_READ);
  EXPECT_EQ(run(sc, read_first, text).value, static_cast<unsigned long>('A'));
  const sthread_report r = run(sc, upcase, text);
  EXPECT_EQ(r.end, STHREAD_FAULTED);
  EXPECT_EQ(r.vector, 14);
  EXPECT_EQ(r.address, reinterpret_cast<unsigned long>(text));
  EXPECT_EQ(r.tag, t);
  EXPECT_STREQ(text, "ABC");
}

TEST(Sthread, TagNotGrantedIsUnreachable) {
  init_or_fail();
  const tag_t secret = tag_new();
  char* key = static_cast<char*>(smalloc(secret, 32));
  std::strcpy(key, "KEY");
  const sc_t sc = empty_context();
  const sthread_report r = run(sc, read_first, key);
  EXPECT_EQ(r.end, STHREAD_FAULTED);
  EXPECT_EQ(r.address, reinterpret_cast<unsigned long>(key));
  EXPECT_EQ(r.tag, secret);
  // sthread_join says so too.
  sthread_t id;
  sc_t c = empty_context();
  ASSERT_EQ(sthread_create(&id, &c, read_first, key), 0);
  void* ret = nullptr;
  errno = 0;
  EXPECT_EQ(sthread_join(id, &ret), -1);
  EXPECT_EQ(errno, EFAULT);
}

TEST(Sthread, SmallocSfreeReuseAndTagDelete) {
  init_or_fail();
  const tag_t t = tag_new();
  void* a = smalloc(t, 100);
  void* b = smalloc(t, 100);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  sfree(a);
  EXPECT_EQ(smalloc(t, 50), a);  // first fit: the freed block
  EXPECT_EQ(smalloc(t, std::size_t{64} << 20), nullptr);
  tag_delete(t);
  EXPECT_EQ(smalloc(t, 16), nullptr);
}

// --- Descriptors and calls -------------------------------------------------

void* write_hello(void* arg) {
  return reinterpret_cast<void*>(raw_syscall(SYS_write, static_cast<int>(reinterpret_cast<long>(arg)),
                                             reinterpret_cast<long>("hello"), 5));
}

TEST(Sthread, DescriptorsNeedTheirGrantAndRight) {
  init_or_fail();
  Pipe p;
  sc_t sc = empty_context();
  sc_fd_add(&sc, p.w, PROT_WRITE);
  EXPECT_EQ(static_cast<long>(run(sc, write_hello, reinterpret_cast<void*>(static_cast<long>(p.w))).value), 5);
  EXPECT_EQ(p.drain(), "hello");

  sc = empty_context();  // not granted
  sthread_report r = run(sc, write_hello, reinterpret_cast<void*>(static_cast<long>(p.w)));
  EXPECT_EQ(static_cast<long>(r.value), -EBADF);
  EXPECT_EQ(r.violations, 1u);
  EXPECT_EQ(r.last_fd, p.w);
  EXPECT_EQ(r.last_call, SYS_write);

  sc = empty_context();  // granted for reading only
  sc_fd_add(&sc, p.w, PROT_READ);
  r = run(sc, write_hello, reinterpret_cast<void*>(static_cast<long>(p.w)));
  EXPECT_EQ(static_cast<long>(r.value), -EBADF);
  EXPECT_EQ(p.drain(), "");
}

void* call_getppid(void*) { return reinterpret_cast<void*>(raw_syscall(SYS_getppid, 0, 0, 0)); }

void* open_and_read(void* arg) {
  const int fd = open("/etc/passwd", O_RDONLY);
  if (fd < 0) return reinterpret_cast<void*>(static_cast<long>(-errno));
  const long n = read(fd, arg, 64);
  close(fd);
  return reinterpret_cast<void*>(n);
}

void* open_only(void*) {
  const int fd = open("/etc/passwd", O_RDONLY);
  return reinterpret_cast<void*>(static_cast<long>(fd < 0 ? -errno : fd));
}

TEST(Sthread, CallSetIsEnforced) {
  init_or_fail();
  sc_t sc = empty_context();
  sthread_report r = run(sc, call_getppid, nullptr);
  EXPECT_EQ(static_cast<long>(r.value), -EPERM);
  EXPECT_EQ(r.last_call, SYS_getppid);
  sc_sys_add(&sc, SYS_getppid);
  EXPECT_EQ(static_cast<long>(run(sc, call_getppid, nullptr).value), getppid());

  // open through glibc's openat, granted as Dune's port grants it (SYS_open).
  sc = empty_context();
  EXPECT_EQ(static_cast<long>(run(sc, open_only, nullptr).value), -EPERM);
  const tag_t t = tag_new();
  char* buf = static_cast<char*>(smalloc(t, 128));
  sc_mem_add(&sc, t, PROT_READ | PROT_WRITE);
  sc_sys_add(&sc, SYS_open);
  sc_sys_add(&sc, SYS_close);
  EXPECT_GT(static_cast<long>(run(sc, open_and_read, buf).value), 4);
  EXPECT_EQ(std::strncmp(buf, "root", 4), 0);

  // Never grantable: mmap, clone, rt_sigaction.
  sc = empty_context();
  sc_sys_add(&sc, SYS_rt_sigaction);
  r = run(sc, [](void*) -> void* { return reinterpret_cast<void*>(raw_syscall(SYS_rt_sigaction, SIGUSR1, 0, 0)); },
          nullptr);
  EXPECT_EQ(static_cast<long>(r.value), -EPERM);
}

// --- Every pointer against the view: the leak attempt -----------------------

struct LeakArgs {
  int fd;
  const char* from;
};

void* leak(void* arg) {
  auto* a = static_cast<LeakArgs*>(arg);
  return reinterpret_cast<void*>(raw_syscall(SYS_write, a->fd, reinterpret_cast<long>(a->from), 16));
}

TEST(Sthread, PointerTheSthreadCannotReadIsRefused) {
  init_or_fail();
  Pipe p;
  // A secret in memory mapped after init (the supervisor's alone) and one in
  // a tag the sthread lacks: write(fd, secret, n) must not reach the pipe.
  // (The heap as it was at init is in the snapshot: there an sthread sees
  // its own copy, never what the supervisor writes later.)
  char* heap_secret = static_cast<char*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(heap_secret, MAP_FAILED);
  std::strcpy(heap_secret, "HEAP-SECRET-0123");
  const tag_t t = tag_new(), mine = tag_new();
  char* tag_secret = static_cast<char*>(smalloc(t, 64));
  std::strcpy(tag_secret, "TAG-SECRET-45678");
  auto* args = static_cast<LeakArgs*>(smalloc(mine, sizeof(LeakArgs)));
  sc_t sc = empty_context();
  sc_fd_add(&sc, p.w, PROT_WRITE);
  sc_mem_add(&sc, mine, PROT_READ);
  for (const char* secret : {static_cast<const char*>(heap_secret), static_cast<const char*>(tag_secret)}) {
    *args = LeakArgs{p.w, secret};
    const sthread_report r = run(sc, leak, args);
    EXPECT_EQ(r.end, STHREAD_RETURNED);
    EXPECT_EQ(static_cast<long>(r.value), -EFAULT);
    EXPECT_EQ(r.violations, 1u);
    EXPECT_EQ(r.last_address, reinterpret_cast<unsigned long>(secret));
    EXPECT_EQ(r.last_errno, EFAULT);
    EXPECT_EQ(p.drain(), "");
  }
  munmap(heap_secret, 4096);
}

TEST(Sthread, KernelSeesTheSthreadsViewOfAGlobal) {
  init_or_fail();
  Pipe p;
  // The supervisor's global changed after init; the sthread's copy did not.
  std::strcpy(g_secret_global, "CHANGED-SECRET!!");
  const tag_t mine = tag_new();
  auto* args = static_cast<LeakArgs*>(smalloc(mine, sizeof(LeakArgs)));
  *args = LeakArgs{p.w, g_secret_global};
  sc_t sc = empty_context();
  sc_fd_add(&sc, p.w, PROT_WRITE);
  sc_mem_add(&sc, mine, PROT_READ);
  const sthread_report r = run(sc, leak, args);
  EXPECT_EQ(static_cast<long>(r.value), 16);
  EXPECT_EQ(p.drain(), std::string("snapshot-value\0\0", 16));
}

void* read_into_global(void* arg) {
  const int fd = static_cast<int>(reinterpret_cast<long>(arg));
  const long n = raw_syscall(SYS_read, fd, reinterpret_cast<long>(g_secret_global), 5);
  if (n != 5) return reinterpret_cast<void*>(n);
  return reinterpret_cast<void*>(std::memcmp(g_secret_global, "fresh", 5) == 0 ? 1L : 2L);
}

TEST(Sthread, KernelWritesLandInTheSthreadsCopy) {
  init_or_fail();
  Pipe p;
  ASSERT_EQ(write(p.w, "fresh", 5), 5);
  std::strcpy(g_secret_global, "supervisor-own");
  sc_t sc = empty_context();
  sc_fd_add(&sc, p.r, PROT_READ);
  const sthread_report r = run(sc, read_into_global, reinterpret_cast<void*>(static_cast<long>(p.r)));
  EXPECT_EQ(r.value, 1u);
  EXPECT_STREQ(g_secret_global, "supervisor-own");  // the supervisor's is untouched
}

void* read_into_code(void* arg) {
  const int fd = static_cast<int>(reinterpret_cast<long>(arg));
  return reinterpret_cast<void*>(raw_syscall(SYS_read, fd, reinterpret_cast<long>(&read_into_code), 4));
}

TEST(Sthread, KernelCannotWriteWhatTheSthreadCannot) {
  init_or_fail();
  Pipe p;
  ASSERT_EQ(write(p.w, "\xcc\xcc\xcc\xcc", 4), 4);
  sc_t sc = empty_context();
  sc_fd_add(&sc, p.r, PROT_READ);
  const sthread_report r = run(sc, read_into_code, reinterpret_cast<void*>(static_cast<long>(p.r)));
  EXPECT_EQ(static_cast<long>(r.value), -EFAULT);
  EXPECT_EQ(r.last_address, reinterpret_cast<unsigned long>(&read_into_code));
}

// --- Faults -----------------------------------------------------------------

volatile std::uintptr_t g_bad_address = 16;
void* crash(void*) { return reinterpret_cast<void*>(static_cast<long>(*reinterpret_cast<volatile int*>(g_bad_address))); }
void* slow_ok(void* arg) {
  const int fd = static_cast<int>(reinterpret_cast<long>(arg));
  char c;
  return reinterpret_cast<void*>(raw_syscall(SYS_read, fd, reinterpret_cast<long>(&c), 1));
}

TEST(Sthread, FaultEndsOnlyThatSthread) {
  init_or_fail();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  sc_t waiting = empty_context();
  sc_fd_add(&waiting, p[0], PROT_READ);
  auto other = st::create(waiting, slow_ok, reinterpret_cast<void*>(static_cast<long>(p[0])));
  ASSERT_TRUE(other);
  const sthread_report r = run(empty_context(), crash, nullptr);
  EXPECT_EQ(r.end, STHREAD_FAULTED);
  EXPECT_EQ(r.vector, 14);
  EXPECT_EQ(r.address, 16u);
  EXPECT_EQ(r.tag, -1);
  ASSERT_EQ(write(p[1], "x", 1), 1);  // the other one goes on
  auto end = st::join(*other);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->end, STHREAD_RETURNED);
  EXPECT_EQ(end->value, 1u);
  close(p[0]);
  close(p[1]);
}

// --- Callgates -----------------------------------------------------------------

struct Vault {
  char key[16];
  int calls;
};

void* sign(void* trusted, void* arg) {
  auto* vault = static_cast<Vault*>(trusted);
  ++g_counter;  // the callgate's own copy: reset after every call
  unsigned long sum = static_cast<unsigned long>(g_counter) << 32;
  for (char c : vault->key) sum += static_cast<unsigned char>(c);
  return reinterpret_cast<void*>(sum + reinterpret_cast<unsigned long>(arg));
}

cg_t g_gate = sign;

void* ask_gate(void* arg) { return cgate(g_gate, nullptr, arg); }
void* not_a_gate(void*, void*) { return nullptr; }
void* ask_other(void*) {
  void* r = cgate(not_a_gate, nullptr, nullptr);
  return reinterpret_cast<void*>(r == nullptr ? static_cast<long>(errno) : -1L);
}
void* steal_key(void* arg) { return reinterpret_cast<void*>(static_cast<long>(*static_cast<volatile char*>(arg))); }

TEST(Sthread, CallgateRunsWithItsOwnContextAndTrustedArgument) {
  init_or_fail();
  const tag_t vault_tag = tag_new();
  auto* vault = static_cast<Vault*>(smalloc(vault_tag, sizeof(Vault)));
  std::memset(vault->key, 1, sizeof vault->key);
  sc_t gate_sc = empty_context();
  sc_mem_add(&gate_sc, vault_tag, PROT_READ);
  sc_t sc = empty_context();
  sc_cgate_add(&sc, sign, &gate_sc, vault);
  const unsigned long expected = (2ul << 32) + 16 + 5;  // g_counter was 1 at init
  for (int i = 0; i < 3; ++i) {
    const sthread_report r = run(sc, ask_gate, reinterpret_cast<void*>(5));
    EXPECT_EQ(r.end, STHREAD_RETURNED);
    EXPECT_EQ(r.value, expected) << "call " << i;
  }
  // The caller itself cannot read the vault, nor call a function that is
  // not its callgate.
  EXPECT_EQ(run(sc, steal_key, vault->key).end, STHREAD_FAULTED);
  const sthread_report other = run(sc, ask_other, nullptr);
  EXPECT_EQ(other.value, static_cast<unsigned long>(EPERM));
  EXPECT_EQ(other.violations, 1u);
  EXPECT_GE(st::stats().callgates, 3u);
}

void* gate_crashes(void*, void*) { return crash(nullptr); }
cg_t g_crashing_gate = gate_crashes;
void* ask_crashing_gate(void*) {
  void* r = cgate(g_crashing_gate, nullptr, nullptr);
  return reinterpret_cast<void*>(r == nullptr && errno == EFAULT ? 0x600dL : 0L);
}

TEST(Sthread, FaultInCallgateEndsTheCallNotTheCaller) {
  init_or_fail();
  sc_t gate_sc = empty_context();
  sc_t sc = empty_context();
  sc_cgate_add(&sc, gate_crashes, &gate_sc, nullptr);
  const sthread_report r = run(sc, ask_crashing_gate, nullptr);
  EXPECT_EQ(r.end, STHREAD_RETURNED);
  EXPECT_EQ(r.value, 0x600du);
}

void* gate_leaves_vector_state(void*, void*) {
  const std::uint64_t secret = 0x5ec7e75ec7e7ull;
  asm volatile("movq %0, %%xmm5" : : "r"(secret) : "xmm5");
  return nullptr;
}
cg_t g_vector_gate = gate_leaves_vector_state;
void* read_xmm5_after_gate(void*) {
  (void)cgate(g_vector_gate, nullptr, nullptr);
  std::uint64_t v;
  asm volatile("movq %%xmm5, %0" : "=r"(v));
  return reinterpret_cast<void*>(v);
}

TEST(Sthread, CallgateLeavesNoVectorStateToItsCaller) {
  init_or_fail();
  sc_t gate_sc = empty_context();
  sc_t sc = empty_context();
  sc_cgate_add(&sc, gate_leaves_vector_state, &gate_sc, nullptr);
  const sthread_report r = run(sc, read_xmm5_after_gate, nullptr);
  EXPECT_EQ(r.end, STHREAD_RETURNED);
  EXPECT_EQ(r.value, 0u);
}

void* gate_reads_lent(void*, void* arg) { return reinterpret_cast<void*>(static_cast<long>(*static_cast<volatile char*>(arg))); }
cg_t g_lent_gate = gate_reads_lent;
struct LendArgs {
  sc_t perms;
  char* data;
};
void* lend_then_not(void* arg) {
  auto* a = static_cast<LendArgs*>(arg);
  const long with = reinterpret_cast<long>(cgate(g_lent_gate, &a->perms, a->data));
  void* without = cgate(g_lent_gate, nullptr, a->data);
  const long err = without == nullptr ? errno : 0;
  return reinterpret_cast<void*>(with << 16 | err);
}

TEST(Sthread, CallgateGetsLentRightsForOneCallOnly) {
  init_or_fail();
  const tag_t mine = tag_new();
  auto* args = static_cast<LendArgs*>(smalloc(mine, sizeof(LendArgs)));
  args->data = static_cast<char*>(smalloc(mine, 16));
  args->data[0] = 'Q';
  sc_init(&args->perms);
  sc_mem_add(&args->perms, mine, PROT_READ);
  sc_t gate_sc = empty_context();
  sc_t sc = empty_context();
  sc_mem_add(&sc, mine, PROT_READ | PROT_WRITE);
  sc_cgate_add(&sc, gate_reads_lent, &gate_sc, nullptr);
  // Lent: the gate reads the caller's tag; the next call, not lent, faults.
  sthread_report r = run(sc, lend_then_not, args);
  EXPECT_EQ(r.end, STHREAD_RETURNED);
  EXPECT_EQ(r.value, (static_cast<unsigned long>('Q') << 16) | EFAULT);
  // A caller cannot lend what it lacks (here: write access).
  sc_mem_add(&args->perms, mine, PROT_WRITE);
  sc_t reader = empty_context();
  sc_mem_add(&reader, mine, PROT_READ);
  sc_cgate_add(&reader, gate_reads_lent, &gate_sc, nullptr);
  r = run(reader, lend_then_not, args);
  EXPECT_EQ(r.value >> 16, 0u);
  EXPECT_GE(r.violations, 1u);
}

// --- Concurrency -----------------------------------------------------------------

void* spin_sum(void* arg) {
  unsigned long n = reinterpret_cast<unsigned long>(arg), sum = 0;
  for (unsigned long i = 1; i <= n; ++i) sum += i;
  return reinterpret_cast<void*>(sum);
}

TEST(Sthread, SthreadsFromSeveralThreadsRunConcurrently) {
  init_or_fail();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      const sc_t sc = empty_context();
      for (int i = 0; i < 20; ++i) {
        const unsigned long n = 1000 + 10 * t + i;
        auto id = st::create(sc, spin_sum, reinterpret_cast<void*>(n));
        if (!id) {
          ++wrong;
          continue;
        }
        auto end = st::join(*id);
        if (!end || end->value != n * (n + 1) / 2) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GE(st::stats().workers, 1u);
}

// --- Signals while an sthread loops --------------------------------------------

// The loop's shared state, in a tag: the sthread reads `go` (granted
// read-only) and never makes a call while it waits; the process's SIGUSR1
// handler, on the worker the sthread runs on, sets it.
struct SpinShared {
  volatile int go;
  int report_fd;  // where the sthread writes its worker's thread id
};
SpinShared* g_spin = nullptr;
std::atomic<int> g_usr1_handled{0};

void set_go(int) {
  g_usr1_handled.fetch_add(1);
  g_spin->go = 1;
}

void* spin_until_go(void* arg) {
  auto* shared = static_cast<SpinShared*>(arg);
  const long tid = raw_syscall(SYS_gettid, 0, 0, 0);
  raw_syscall(SYS_write, shared->report_fd, reinterpret_cast<long>(&tid), sizeof tid);
  // XMM and general registers that must outlive the interruption.
  double x = 1.0;
  unsigned long loops = 0;
  while (shared->go == 0) {
    ++loops;
    x += 0.5;
  }
  return reinterpret_cast<void*>(x == 1.0 + 0.5 * static_cast<double>(loops) ? loops : 0);
}

TEST(Sthread, ASignalReachesItsHandlerWhileAnSthreadLoopsInRingThree) {
  init_or_fail();
  Pipe p;
  const tag_t t = tag_new();
  auto* shared = static_cast<SpinShared*>(smalloc(t, sizeof(SpinShared)));
  ASSERT_NE(shared, nullptr);
  shared->go = 0;
  shared->report_fd = p.w;
  g_spin = shared;
  struct sigaction sa {};
  sa.sa_handler = set_go;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  sc_t sc = empty_context();
  sc_mem_add(&sc, t, PROT_READ);
  sc_fd_add(&sc, p.w, PROT_WRITE);
  sc_sys_add(&sc, SYS_gettid);
  auto id = st::create(sc, spin_until_go, shared);
  ASSERT_TRUE(id) << id.error().what;
  long tid = 0;
  for (int i = 0; i < 10000 && tid == 0; ++i) {
    if (read(p.r, &tid, sizeof tid) != sizeof tid) {
      tid = 0;
      usleep(1000);
    }
  }
  ASSERT_GT(tid, 0) << "the sthread never said which worker it runs on";
  usleep(20000);  // well into the loop
  ASSERT_EQ(syscall(SYS_tgkill, getpid(), tid, SIGUSR1), 0);
  auto end = st::join(*id);
  ASSERT_TRUE(end) << end.error().what;
  EXPECT_EQ(end->end, STHREAD_RETURNED);
  EXPECT_GT(end->value, 0u) << "0: the loop's floating-point state was lost";
  EXPECT_EQ(g_usr1_handled.load(), 1);
  signal(SIGUSR1, SIG_DFL);
}

// --- What ring 3 reaches ------------------------------------------------------

void* report_stack_and_wait(void* arg) {
  const int* fds = static_cast<const int*>(arg);
  volatile char here = 0;
  const long where = reinterpret_cast<long>(&here);
  raw_syscall(SYS_write, fds[1], reinterpret_cast<long>(&where), sizeof where);
  char c;
  raw_syscall(SYS_read, fds[2], reinterpret_cast<long>(&c), 1);
  return nullptr;
}

TEST(Sthread, PageTableOpensOnlyImageSnapshotStackAndGrants) {
  init_or_fail();
  int to_main[2], to_st[2];
  ASSERT_EQ(pipe(to_main), 0);
  ASSERT_EQ(pipe(to_st), 0);
  const tag_t granted = tag_new(), other = tag_new();
  int* fds = static_cast<int*>(smalloc(granted, 3 * sizeof(int)));
  fds[1] = to_main[1];
  fds[2] = to_st[0];
  char* other_mem = static_cast<char*>(smalloc(other, 16));
  other_mem[0] = 1;
  char* heap = static_cast<char*>(malloc(1 << 20));
  std::memset(heap, 1, 1 << 20);
  sc_t sc = empty_context();
  sc_mem_add(&sc, granted, PROT_READ);
  sc_fd_add(&sc, to_main[1], PROT_WRITE);
  sc_fd_add(&sc, to_st[0], PROT_READ);
  auto id = st::create(sc, report_stack_and_wait, fds);
  ASSERT_TRUE(id);
  long stack_address = 0;
  ASSERT_EQ(read(to_main[0], &stack_address, sizeof stack_address), static_cast<long>(sizeof stack_address));
  auto view = st::view_of(*id);
  ASSERT_TRUE(view);
  const auto granted_base = reinterpret_cast<std::uintptr_t>(fds) & ~((std::uintptr_t{2} << 20) - 1);
  std::size_t user_pages = 0, bad = 0;
  std::string first_bad;
  (*view)->walk(reinterpret_cast<void*>(0x1000), (std::uint64_t{1} << 47) - 0x1000,
                [&](const dunk::PageInfo& info, dunk::PageRef&) {
                  if ((info.access & dunk::kUser) == 0) return;
                  ++user_pages;
                  const auto page = reinterpret_cast<std::uintptr_t>(info.page);
                  const bool identity = dunk::host_address(info.physical & ~std::uint64_t{4095}) == info.page;
                  const bool writable = (info.access & dunk::kWrite) != 0;
                  const bool in_granted = page >= granted_base && page < granted_base + (2u << 20);
                  const bool is_stack = std::uintptr_t(stack_address) - page < (std::uintptr_t{256} << 10) &&
                                        page <= std::uintptr_t(stack_address) + (128u << 10);
                  // Allowed: read-only identity pages (the image), pages
                  // mapped to other memory (the snapshot and its copies),
                  // the granted tag, the sthread's stack.
                  if ((identity && !writable) || !identity || in_granted || is_stack) {
                    if (identity && !writable && !in_granted) {
                      // An identity read-only page must be the image, never
                      // supervisor data the test made.
                      if ((page >= reinterpret_cast<std::uintptr_t>(heap) &&
                           page < reinterpret_cast<std::uintptr_t>(heap) + (1 << 20)) ||
                          page == (reinterpret_cast<std::uintptr_t>(other_mem) & ~std::uintptr_t{4095})) {
                        ++bad;
                      }
                    }
                    return;
                  }
                  if (++bad == 1) first_bad = std::to_string(page);
                });
  EXPECT_EQ(bad, 0u) << "first unexpected user page at " << first_bad;
  EXPECT_GT(user_pages, 10u);
  // Nothing of the heap made after init, nor of the other tag.
  EXPECT_FALSE((*view)->lookup(heap) && ((*view)->lookup(heap)->access & dunk::kUser));
  EXPECT_FALSE((*view)->lookup(other_mem) && ((*view)->lookup(other_mem)->access & dunk::kUser));
  ASSERT_EQ(write(to_st[1], "g", 1), 1);
  auto end = st::join(*id);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->end, STHREAD_RETURNED);
  free(heap);
}

TEST(Sthread, FreshCompartmentsWhenAskedAndCountedExactly) {
  init_or_fail();
  const sc_t sc = empty_context();
  const st::Stats before = st::stats();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(sc, spin_sum, reinterpret_cast<void*>(10), /*recycle=*/false).value, 55u);
  const st::Stats after = st::stats();
  EXPECT_EQ(after.created_fresh - before.created_fresh, 3u);
  EXPECT_EQ(after.created_recycled - before.created_recycled, 0u);
}

// --- Page tables shared with the template ------------------------------------

// Reads the global, writes its own copy, counts itself done in a granted
// tag, returns what it read.
void* write_global_and_count(void* arg) {
  const int seen = g_counter;
  g_counter = 500;
  static_cast<std::atomic<int>*>(arg)->fetch_add(1);
  return reinterpret_cast<void*>(static_cast<long>(seen));
}

std::atomic<int>* counter_in_tag(sc_t& sc) {
  const tag_t t = tag_new();
  void* memory = smalloc(t, sizeof(std::atomic<int>));
  sc_mem_add(&sc, t, PROT_READ | PROT_WRITE);
  return new (memory) std::atomic<int>(0);
}

void wait_for(const std::atomic<int>& n, int value) {
  while (n.load() < value) usleep(100);
}

TEST(Sthread, ACompartmentCopiesOnlyTheTablesItChangesAndItsWritesStayItsOwn) {
  init_or_fail();
  sc_t sc = empty_context();
  std::atomic<int>* done = counter_in_tag(sc);
  // Two live compartments at once (neither joined yet), then one with a
  // full copy of the template's tables, as before sharing.
  auto a = st::create(sc, write_global_and_count, done, st::CreateOptions{.recycle = false});
  ASSERT_TRUE(a);
  wait_for(*done, 1);
  auto b = st::create(sc, write_global_and_count, done, st::CreateOptions{.recycle = false});
  ASSERT_TRUE(b);
  wait_for(*done, 2);
  auto full = st::create(sc, write_global_and_count, done, st::CreateOptions{.recycle = false, .copy_tables = true});
  ASSERT_TRUE(full);
  wait_for(*done, 3);
  auto va = st::view_of(*a), vb = st::view_of(*b), vf = st::view_of(*full);
  ASSERT_TRUE(va && vb && vf);
  const std::size_t shared_tables = (*va)->own_tables(), copied_tables = (*vf)->own_tables();
  std::printf("page-table pages of a compartment: %zu shared with the template, %zu as a full copy\n", shared_tables,
              copied_tables);
  // Its root and the ways to its stack, its tag and the page it wrote.
  EXPECT_LE(shared_tables, 12u);
  EXPECT_GT(copied_tables, shared_tables);
  // Each wrote its own copy of the global: three pages, none the process's.
  const auto pa = (*va)->lookup(&g_counter), pb = (*vb)->lookup(&g_counter), pf = (*vf)->lookup(&g_counter);
  ASSERT_TRUE(pa && pb && pf);
  EXPECT_NE(pa->physical, pb->physical);
  EXPECT_NE(pa->physical, pf->physical);
  EXPECT_NE(pa->physical, *dunk::guest_physical(&g_counter));
  EXPECT_NE(pa->access & dunk::kWrite, 0u);
  EXPECT_EQ(g_counter, 1);
  // Each saw the snapshot's value, not the other's write.
  for (auto id : {*a, *b, *full}) {
    auto end = st::join(id);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->end, STHREAD_RETURNED);
    EXPECT_EQ(end->value, 1u);
  }
}

TEST(Sthread, AThousandFreshCreateJoinCyclesGiveTheirTablesBack) {
  init_or_fail();
  sc_t sc = empty_context();
  std::atomic<int>* done = counter_in_tag(sc);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(run(sc, write_global_and_count, done, /*recycle=*/false).value, 1u);
  const st::Stats before = st::stats();
  constexpr int kCycles = 1000;
  int wrong = 0;
  for (int i = 0; i < kCycles; ++i) {
    if (run(sc, write_global_and_count, done, /*recycle=*/false).value != 1u) ++wrong;
  }
  const st::Stats after = st::stats();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(after.created_fresh - before.created_fresh, static_cast<std::uint64_t>(kCycles));
  EXPECT_EQ(after.compartments, 0u);
  // Each cycle made and gave back a compartment's tables: what stays is
  // what the process itself came to need meanwhile (workers' memory).
  EXPECT_LE(after.page_tables, before.page_tables + 32)
      << before.page_tables << " tables in use before, " << after.page_tables << " after";
}

// 400 at once: every mapping call of the process is mirrored into every
// address space, so making N compartments one after the other costs N^2/2
// short walks (70 s of the nested test VM for 1000); `dunk-sthread-bench
// --only "table pages" 1000` makes a thousand and more (docs/STHREADS.md).
TEST(Sthread, HundredsOfLiveCompartmentsCostAFewTablePagesEach) {
  init_or_fail();
  sc_t sc = empty_context();
  std::atomic<int>* done = counter_in_tag(sc);
  const st::Stats before = st::stats();
  constexpr int kLive = 400;
  std::vector<sthread_t> ids;
  ids.reserve(kLive);
  for (int i = 0; i < kLive; ++i) {
    auto id = st::create(sc, write_global_and_count, done, st::CreateOptions{.recycle = false});
    ASSERT_TRUE(id) << i << ": " << id.error().what;
    ids.push_back(*id);
    wait_for(*done, i + 1);  // one at a time: the pool stays small
  }
  const st::Stats live = st::stats();
  EXPECT_EQ(live.compartments, static_cast<std::uint64_t>(kLive));
  const double own = static_cast<double>(live.compartment_tables) / kLive;
  const double in_use = static_cast<double>(live.page_tables - before.page_tables) / kLive;
  std::printf("%d live compartments: %.2f page-table pages each (own), %.2f each in use; %llu workers\n", kLive, own,
              in_use, static_cast<unsigned long long>(live.workers));
  EXPECT_LE(own, 12.0);
  EXPECT_LE(in_use, 12.0);
  for (sthread_t id : ids) {
    auto end = st::join(id);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->value, 1u);
  }
  // What stays is what the process and the template need for the address
  // range the compartments' stacks took (128 KiB each: a page table per 2 MiB in
  // each), not the compartments' own (a leak would be ten thousand).
  const st::Stats after = st::stats();
  EXPECT_EQ(after.compartments, 0u);
  EXPECT_LE(after.page_tables, before.page_tables + 2 * (kLive * 128 / 2048) + 32);
}

}  // namespace
