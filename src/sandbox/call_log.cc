#include "sandbox/call_log.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <new>

#include "base/syscall.h"

namespace dunk::sandbox {

CallLog* CallLog::create() noexcept {
  const long memory = sys::call(SYS_mmap, 0, static_cast<long>(sizeof(CallLog)), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sys::failed(memory)) return nullptr;
  return new (reinterpret_cast<void*>(memory)) CallLog();
}

bool CallLog::take(Slot& s, int nr, const Args& args) noexcept {
  std::uint32_t expected = kEmpty;
  if (!s.state.compare_exchange_strong(expected, kWriting, std::memory_order_acq_rel)) return false;
  s.nr = nr;
  s.args = args;
  s.state.store(kDone, std::memory_order_release);
  return true;
}

void CallLog::note(int nr, const Args& args) noexcept {
  if (nr >= 0 && nr < kNumbers) {
    Slot& s = numbers_[nr];
    if (s.state.load(std::memory_order_acquire) == kEmpty) (void)take(s, nr, args);
    return;
  }
  // Another number: the first free slot, unless a slot holds it already
  // (or is being written: then it may be this number, noted once more at
  // worst).
  for (Slot& s : others_) {
    const std::uint32_t state = s.state.load(std::memory_order_acquire);
    if (state == kDone && s.nr == nr) return;
    if (state == kEmpty && take(s, nr, args)) return;
  }
}

std::vector<ObservedCall> CallLog::calls() const {
  std::vector<ObservedCall> out;
  for (const Slot& s : numbers_) {
    if (s.state.load(std::memory_order_acquire) == kDone) out.push_back(ObservedCall{s.nr, s.args});
  }
  for (const Slot& s : others_) {
    if (s.state.load(std::memory_order_acquire) == kDone) out.push_back(ObservedCall{s.nr, s.args});
  }
  return out;
}

}  // namespace dunk::sandbox
