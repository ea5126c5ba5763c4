// Complete mediation with copies: one system call's memory, moved into the
// supervisor's own memory before the kernel sees it, and back after.
//
//   entry:  abi::walk(kEntry) over the program's memory; for each range the
//           kernel may touch, the visitor checks that it lies in the
//           untrusted region, copies what the kernel reads into a per-thread
//           scratch buffer in dunk's memory (which ring 3 cannot reach), and
//           points the call at the copy — a register, or the pointer inside
//           a parent's copy (abi::Access::where). The walker reads nested
//           pointers from those copies, so what was checked, what the policy
//           may look at and what the kernel gets are the same bytes, however
//           another thread changes the program's memory meanwhile.
//   call:   the kernel gets only the copies (one VM exit).
//   exit:   abi::walk(kExit, ret) over the copies; each range the kernel
//           wrote goes back to the program's memory, with the pointers the
//           entry rewrote put back as they were.
//
// Some ranges are used in place, never copied, because their address is
// what matters: a futex word (the key of its wait queue), address ranges
// (mprotect, madvise, mincore's range), memory the kernel reaches after the
// call (kAsync: io_submit's buffers, CLONE_CHILD_SETTID), another
// process's (process_vm_readv's remote side). They are still checked
// against the region, which is the same range in every sandboxed process.
//
// Every descriptor the call names is checked against dunk's own (the KVM
// handles, the log): the program never reaches them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "abi/walk.h"
#include "sandbox/region.h"

namespace dunk::sandbox {

// A thread's scratch memory for copies: reserved once in dunk's memory,
// committed as calls need it.
class Scratch {
 public:
  static constexpr std::size_t kReserve = std::size_t{64} << 20;  // the most one call may copy
  Scratch() noexcept = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch();

  Status init() noexcept;
  // `size` bytes, 16-byte aligned, or nullptr when the call needs more than
  // kReserve.
  std::byte* take(std::size_t size) noexcept;
  void reset() noexcept { used_ = 0; }
  bool contains(std::uint64_t address, std::uint64_t size) const noexcept {
    const auto base = reinterpret_cast<std::uint64_t>(base_);
    return address >= base && address <= base + used_ && size <= base + used_ - address;
  }
  // Gives memory committed beyond what small calls need back to the kernel.
  void trim() noexcept;

 private:
  std::byte* base_ = nullptr;
  std::size_t used_ = 0;
  std::size_t committed_ = 0;
};

// The call's copies and nothing else, as the kernel will read them: what
// the exit walk and the network checks decode.
class CopiesMemory final : public abi::Memory {
 public:
  explicit CopiesMemory(const Scratch& scratch) noexcept : scratch_(scratch) {}
  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override;

 private:
  const Scratch& scratch_;
};

// Whether a descriptor is dunk's (its KVM handles, the sandbox's log).
bool is_dunk_fd(int fd) noexcept;
// The sandbox's own descriptors (the log): kept out of the program's reach
// like dunk's.
void add_sandbox_fd(int fd) noexcept;
void remove_sandbox_fd(int fd) noexcept;
void for_each_sandbox_fd(void (*each)(int fd, void* cookie), void* cookie) noexcept;

class CallCopies {
 public:
  CallCopies(const Region& region, Scratch& scratch) noexcept : region_(region), scratch_(scratch) {}

  struct Entry {
    abi::WalkResult walk;
    long error = 0;             // nonzero: refuse the call with this -errno
    const char* why = nullptr;  // and this reason (a dunk refusal, reported)
  };
  // Walks `call` over the program's memory and fills `rewritten` (the
  // call on the copies).
  Entry enter(const abi::Call& call, abi::Call& rewritten) noexcept;
  // After the kernel answered `ret`: copies back what it wrote. Returns the
  // result the program sees (-EFAULT when its memory went away meanwhile).
  long leave(const abi::Call& rewritten, long ret) noexcept;
  // The program's memory at `address` as this call copied it, with the
  // program's own pointers where the entry rewrote them: up to `size`
  // bytes, as many as one copy holds from there; 0 when no copy holds
  // `address`. What reports decode, so that a thread that changes the
  // program's memory after the copy cannot make them lie.
  std::size_t read_as_copied(std::uint64_t address, void* out, std::size_t size) const noexcept;

 private:
  struct Record {
    std::uint64_t address = 0;  // the program's
    std::uint64_t size = 0;
    std::byte* copy = nullptr;  // nullptr: used in place
    std::uint32_t first_rewrite = 0, rewrite_count = 0;
  };
  struct Rewrite {
    std::uint32_t record;   // whose copy holds the pointer
    std::uint32_t offset;   // where
    std::uint64_t original; // the program's pointer
  };
  class EntryVisitor;
  class ExitVisitor;

  const Region& region_;
  Scratch& scratch_;
  std::vector<Record> records_;
  std::vector<Rewrite> rewrites_;
  std::uint64_t number_ = 0;
};

}  // namespace dunk::sandbox
