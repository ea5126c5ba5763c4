// What the host kernel wrote into the program's memory during a call, for
// dirty tracking (core/dirty.h): its stores go through the host's page
// tables and set no dirty bit in the guest's, so the monitor reports them.
// Which buffers a call wrote, and how much of each, is the schema's answer
// at exit (abi::walk, Phase::kExit: read's ret bytes, recvmsg's over its
// iovecs and control data, getdents64's records, ...); no table here.
//
// What the schema cannot follow is reported, never left clean:
//   - memory the kernel writes after the call (an io_submit buffer, the
//     rseq area, a child's tid word): always dirty from now on;
//   - a call the schema cannot fully describe that may have written
//     (an unknown ioctl): everything dirty at every reader's next pass;
//   - io_setup, io_uring (requests name buffers the kernel fills later,
//     from rings shared with it): everything dirty for good;
//   - a vfork child, which wrote the shared memory from its own address
//     space until its exec or exit: everything dirty at the next pass.
// The robust list and clear_child_tid are written when their thread exits:
// that thread leaves VM mode then (MachineThreads::thread_exits).
#include "abi/walk.h"
#include "core/syscalls/handlers.h"
#include "core/syscalls/walker_memory.h"

namespace dunk::core::syscalls {
namespace {

// Reports every range the walk says the kernel wrote.
class WrittenRanges final : public abi::Visitor {
 public:
  explicit WrittenRanges(DirtyBits& dirty) noexcept : dirty_(dirty) {}
  const void* access(const abi::Access& a) noexcept override {
    if (!abi::writes(a.dir) || a.size == 0) return nullptr;
    if (a.async()) {
      dirty_.kernel_writes_later(a.address, a.size);
    } else if (a.written != 0) {
      // (A remote range, process_vm_writev's, may be this process's: a
      // page reported that another process holds costs nothing.)
      dirty_.kernel_wrote(a.address, a.written);
      wrote_ = true;
    }
    return nullptr;
  }
  void fd(const abi::FdUse&) noexcept override {}
  bool wrote() const noexcept { return wrote_; }

 private:
  DirtyBits& dirty_;
  bool wrote_ = false;
};

// A call whose writes the schema lists only partly: whether it may have
// written anything at all.
bool may_write(const abi::CallSpec& spec) noexcept {
  for (unsigned i = 0; i < spec.arg_count; ++i) {
    const abi::Arg& arg = spec.args[i];
    if (arg.kind == abi::Kind::kCommand || abi::writes(arg.dir) || abi::writes(arg.inner)) return true;
    if (arg.format == abi::Format::kPtr) return true;  // a pointer the schema does not size
  }
  return false;
}

// fork, vfork, clone, clone3 in the parent: a vfork child (clone's
// CLONE_VM without a vCPU here: MachineThreads::start_process) wrote this
// memory from its own address space until its exec or exit, which the
// parent waited for.
void new_process(SyscallContext& ctx, const Syscall& call, long ret) noexcept {
  if (ret <= 0) return;
  Result<CloneRequest> request = decode_clone(call, ctx.memory);
  if (!request || (request->flags & CloneRequest::kCloneVm) == 0 || request->is_thread()) return;
  ctx.dirty.unseen_writes();
}

}  // namespace

void record_kernel_writes(SyscallContext& ctx, const Syscall& call, const Outcome& outcome) noexcept {
  if (outcome.kind() != Outcome::Kind::kResult && outcome.kind() != Outcome::Kind::kSignal) return;
  const abi::CallSpec* spec = abi::lookup(call.rax);
  if (spec == nullptr) return;
  // What registers a writer for later counts even before the first clean
  // (the writes it makes come after it).
  constexpr std::uint16_t kRegisters = abi::kAsyncWriter | abi::kLaterUnbounded;
  if ((spec->flags & kRegisters) == 0 && !ctx.dirty.watching()) return;
  const long ret = outcome.value();
  if (abi::failed(ret)) return;
  if (spec->has(abi::kNewProcess)) new_process(ctx, call, ret);
  if (spec->has(abi::kLaterUnbounded)) ctx.dirty.unbounded_writer();
  WalkerMemory memory(ctx.memory);
  WrittenRanges written(ctx.dirty);
  const abi::WalkResult walk = abi::walk(walker_call(call), memory, written, abi::Phase::kExit, ret);
  if (walk.completeness != abi::Completeness::kComplete && may_write(*spec)) ctx.dirty.unseen_writes();
}

}  // namespace dunk::core::syscalls
