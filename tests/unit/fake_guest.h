// Fakes of the guest as system-call handlers see it (core/syscall.h): what
// lets the monitor's decisions be tested without KVM. Each fake records what
// it was asked and answers from state the test sets.
#pragma once

#include <signal.h>
#include <sys/syscall.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "arch/x86_64/registers.h"
#include "base/fd_set.h"
#include "core/signals.h"
#include "core/syscall.h"

namespace dunk::core::test {

// Guest memory: only the regions a test adds are readable/writable, like
// the kernel's checks of a guest pointer.
class FakeMemory final : public GuestMemory {
 public:
  // A region of `size` zeroed bytes; returns its guest address (the
  // buffer's own address, so tests may also inspect it directly).
  std::uint64_t add(std::size_t size, bool writable = true) {
    regions_.push_back({std::vector<std::byte>(size), writable});
    return reinterpret_cast<std::uint64_t>(regions_.back().bytes.data());
  }
  template <class T>
  std::uint64_t add_object(const T& value, bool writable = true) {
    const std::uint64_t at = add(sizeof(T), writable);
    std::memcpy(reinterpret_cast<void*>(at), &value, sizeof(T));
    return at;
  }
  template <class T>
  T object_at(std::uint64_t at) const {
    T value;
    std::memcpy(&value, reinterpret_cast<const void*>(at), sizeof(T));
    return value;
  }

  bool read(void* to, std::uint64_t from, std::size_t size) noexcept override {
    if (find(from, size) == nullptr) return false;
    std::memcpy(to, reinterpret_cast<const void*>(from), size);
    return true;
  }
  bool write(std::uint64_t to, const void* from, std::size_t size) noexcept override {
    const Region* r = find(to, size);
    if (r == nullptr || !r->writable) return false;
    std::memcpy(reinterpret_cast<void*>(to), from, size);
    return true;
  }

 private:
  struct Region {
    std::vector<std::byte> bytes;
    bool writable;
  };
  const Region* find(std::uint64_t at, std::size_t size) const {
    for (const Region& r : regions_) {
      const auto start = reinterpret_cast<std::uint64_t>(r.bytes.data());
      if (at >= start && at + size <= start + r.bytes.size() && at + size >= at) return &r;
    }
    return nullptr;
  }
  std::vector<Region> regions_;  // never reallocates the buffers themselves
};

struct HostCall {
  long nr;
  std::array<long, 6> args;
  bool operator==(const HostCall&) const = default;
};

// The host kernel: every call is recorded; results come from `answer`
// (by default 0), forwarded calls from `forward_result`.
class FakeHost final : public HostKernel {
 public:
  std::vector<Syscall> forwarded;
  std::vector<HostCall> calls;
  std::vector<std::string> stderr_lines;
  std::function<long(const Syscall&)> forward_result = [](const Syscall&) { return 0L; };
  std::function<long(const HostCall&)> answer = [](const HostCall&) { return 0L; };
  // The thread's signal mask, as rt_sigprocmask sees it.
  std::uint64_t thread_mask = 0;
  std::vector<Syscall> finished;  // made by finish(): no signal stops them

  long forward(const Syscall& call) noexcept override {
    forwarded.push_back(call);
    return forward_result(call);
  }
  long finish(const Syscall& call) noexcept override {
    finished.push_back(call);
    return forward_result(call);
  }
  long call(long nr, long a0, long a1, long a2, long a3, long a4, long a5) noexcept override {
    const HostCall c{nr, {a0, a1, a2, a3, a4, a5}};
    calls.push_back(c);
    if (nr == SYS_write && a0 == 2) {
      stderr_lines.emplace_back(reinterpret_cast<const char*>(a1), static_cast<std::size_t>(a2));
    }
    if (nr == SYS_rt_sigprocmask) {
      const std::uint64_t old = thread_mask;
      if (a1 != 0) {
        const std::uint64_t set = *reinterpret_cast<const std::uint64_t*>(a1);
        if (a0 == SIG_BLOCK) thread_mask |= set;
        if (a0 == SIG_UNBLOCK) thread_mask &= ~set;
        if (a0 == SIG_SETMASK) thread_mask = set;
      }
      if (a2 != 0) *reinterpret_cast<std::uint64_t*>(a2) = old;
      return 0;
    }
    return answer(c);
  }
  std::vector<HostCall> calls_of(long nr) const {
    std::vector<HostCall> out;
    for (const HostCall& c : calls) {
      if (c.nr == nr) out.push_back(c);
    }
    return out;
  }
};

// The mirror: records every update; protection() answers from `protections`.
class FakeMirror final : public AddressSpaceMirror {
 public:
  struct Update {
    enum Kind { kSet, kSync, kSyncAll } kind;
    std::uint64_t start = 0, end = 0;
    int prot = 0;
    bool operator==(const Update&) const = default;
  };
  std::vector<Update> updates;
  std::map<std::uint64_t, int> protections;
  Status fail_with = {};

  Status set(Hva start, Hva end, int prot) noexcept override {
    updates.push_back({Update::kSet, start.value(), end.value(), prot});
    return fail_with;
  }
  Status sync(Hva start, Hva end) noexcept override {
    updates.push_back({Update::kSync, start.value(), end.value(), 0});
    return fail_with;
  }
  Status sync_all() noexcept override {
    updates.push_back({Update::kSyncAll, 0, 0, 0});
    return fail_with;
  }
  std::optional<int> protection(Hva address) noexcept override {
    auto it = protections.find(address.value());
    if (it == protections.end()) return std::nullopt;
    return it->second;
  }

  // resolve_fault: what it was asked; it resolves what `resolvable` holds.
  struct Fault {
    std::uint64_t address = 0;
    bool write = false, fetch = false;
    std::uint64_t root = 0;
    bool operator==(const Fault&) const = default;
  };
  std::vector<Fault> faults;
  std::set<std::uint64_t> resolvable;
  // What a resolved fault reports having made resident (and reclaimed).
  std::uint32_t fault_chunks_assigned = 0, fault_chunks_reclaimed = 0;
  FaultResolution resolve_fault(Hva address, bool write, bool fetch, Gpa root) noexcept override {
    faults.push_back({address.value(), write, fetch, root.value()});
    if (!resolvable.contains(address.value())) return {};
    return {.resolved = true, .chunks_assigned = fault_chunks_assigned, .chunks_reclaimed = fault_chunks_reclaimed};
  }
  // assign: host address + `gpa_offset`, or `assign_error`.
  std::uint64_t gpa_offset = 0;
  Status assign_error = {};
  int eager_switches = 0;  // assign_eagerly() calls
  void assign_eagerly() noexcept override { ++eager_switches; }
  Result<Gpa> assign(Hva address) noexcept override {
    if (!assign_error) return assign_error.error();
    return Gpa(address.value() + gpa_offset);
  }
};

// The vCPU's registers beyond the frame, and its FPU image.
class FakeVcpu final : public VcpuRegisters {
 public:
  std::uint64_t fs = 0, gs = 0;
  std::vector<std::byte> fpu;  // what load_fpu last loaded
  bool refuse_fpu = false;     // KVM_SET_XSAVE rejects the image

  Result<std::uint64_t> fs_base() noexcept override { return fs; }
  Status set_fs_base(std::uint64_t base) noexcept override {
    fs = base;
    return {};
  }
  Result<std::uint64_t> user_gs_base() noexcept override { return gs; }
  Status set_user_gs_base(std::uint64_t base) noexcept override {
    gs = base;
    return {};
  }
  Status save_fpu(std::byte* image) noexcept override {
    std::memcpy(image, fpu.data(), fpu.size());
    return {};
  }
  Status load_fpu(const std::byte* image) noexcept override {
    if (refuse_fpu) return Error{"KVM_SET_XSAVE refused", EINVAL};
    std::memcpy(fpu.data(), image, fpu.size());
    return {};
  }
};

class FakeThreads final : public ThreadOps {
 public:
  struct Start {
    bool thread;
    CloneRequest request;
    TrapFrame child;
  };
  std::vector<Start> started;
  long start_result = 1234;
  bool last_thread = false;
  int thread_exits_calls = 0, process_exits_calls = 0;
  bool exiting = false;

  long start_thread(const Syscall&, const CloneRequest& r, const TrapFrame& child) noexcept override {
    started.push_back({true, r, child});
    return start_result;
  }
  long start_process(const Syscall&, const CloneRequest& r, const TrapFrame& child) noexcept override {
    started.push_back({false, r, child});
    return start_result;
  }
  bool thread_exits() noexcept override {
    ++thread_exits_calls;
    return last_thread;
  }
  void process_exits() noexcept override { ++process_exits_calls; }
  bool process_exiting() const noexcept override { return exiting; }
};

// The process's dirty state: reports of the kernel's writes are recorded
// (while `watching`); pages in `dirty` (page numbers) get bit 55, every
// other entry loses it; clears are counted.
class FakeDirtyBits final : public DirtyBits {
 public:
  struct Range {
    std::uint64_t start, length;
    bool operator==(const Range&) const = default;
    auto operator<=>(const Range&) const = default;
  };
  bool watch = true;
  int watch_checks = 0;
  std::vector<Range> wrote;        // kernel_wrote
  std::vector<Range> later;        // kernel_writes_later
  int unseen = 0, unbounded = 0;   // unseen_writes, unbounded_writer
  std::set<std::uint64_t> dirty;
  int clears = 0;

  bool watching() noexcept override {
    ++watch_checks;
    return watch;
  }
  void kernel_wrote(std::uint64_t start, std::uint64_t length) noexcept override { wrote.push_back({start, length}); }
  void kernel_writes_later(std::uint64_t start, std::uint64_t length) noexcept override {
    later.push_back({start, length});
  }
  void unseen_writes() noexcept override { ++unseen; }
  void unbounded_writer() noexcept override { ++unbounded; }
  struct Query {
    std::uint64_t first_page;
    std::size_t count;
    bool operator==(const Query&) const = default;
  };
  std::vector<Query> queries;

  void soft_dirty(std::uint64_t first_page, std::uint64_t* entries, std::size_t count) noexcept override {
    queries.push_back({first_page, count});
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint64_t bit = std::uint64_t{1} << 55;
      entries[i] = dirty.count(first_page + i) != 0 ? entries[i] | bit : entries[i] & ~bit;
    }
  }
  void clear_soft_dirty() noexcept override {
    ++clears;
    dirty.clear();
  }
  ServedFiles& served_files() noexcept override { return served; }
  ServedFiles served;
};

// Everything a handler sees, wired together.
struct FakeGuest {
  static constexpr std::size_t kFpuSize = 1024;

  TrapFrame frame{};
  FakeVcpu vcpu;
  FakeMemory memory;
  FakeHost host;
  FakeMirror mirror;
  FakeThreads threads;
  FakeDirtyBits dirty;
  FdSet dunk_fds;
  SignalTable actions;
  Lock action_lock, rlimit_lock;
  std::atomic<std::uint64_t> brk{0};
  Stats stats{};
  alignas(64) std::byte initial_fpu[kFpuSize] = {};
  alignas(64) std::byte scratch[kFpuSize] = {};
  CpuSignals signals;
  ProcessState process{dunk_fds, actions, action_lock, rlimit_lock, brk, stats,
                       FpuFormat{kFpuSize, arch::xfeature::kX87 | arch::xfeature::kSSE | arch::xfeature::kAVX,
                                 initial_fpu},
                       4242};
  std::uint64_t page_table_root = 0;  // the vCPU area's root
  ThreadState thread{signals, scratch, page_table_root};

  FakeGuest() { vcpu.fpu.resize(kFpuSize); }

  SyscallContext context() {
    return SyscallContext{frame, vcpu, memory, host, mirror, threads, process, thread, dirty};
  }

  // Runs `call` as the monitor does: the descriptor check, then the
  // handler the table has for it.
  Outcome run(const Syscall& call) {
    SyscallContext ctx = context();
    return dispatch_syscall(ctx, call);
  }
};

}  // namespace dunk::core::test
