#include "core/port_io.h"

#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "abi/signal.h"
#include "base/syscall.h"
#include "core/signals.h"

extern "C" {
bool dunk_port_io(dunk::core::PortAccess* access);
extern const char dunk_port_io_denied[];
}

namespace dunk::core {
namespace {

// The SIGSEGV of a denied access: resume after the probe, with "denied".
void on_probe_fault(int, siginfo_t*, void* context) {
  auto* uc = static_cast<abi::Ucontext*>(context);
  const auto rip = uc->mcontext.rip;
  if (rip >= reinterpret_cast<std::uint64_t>(&dunk_port_io) &&
      rip < reinterpret_cast<std::uint64_t>(dunk_port_io_denied)) {
    uc->mcontext.rip = reinterpret_cast<std::uint64_t>(dunk_port_io_denied);
    return;
  }
  // Any other SIGSEGV during the probe is dunk's own fault: the default
  // action, at once (the probe handler is gone by the time it repeats).
  const abi::Sigaction dfl{};
  sys::call(SYS_rt_sigaction, SIGSEGV, reinterpret_cast<long>(&dfl), 0, 8);
}

// For the probe: SIGSEGV to on_probe_fault, every other signal blocked (the
// program's handlers must not run in the middle of it); undone by the
// destructor.
class ProbeScope {
 public:
  ProbeScope() noexcept {
    const std::uint64_t all_but_segv = ~abi::sigbit(SIGSEGV);
    sys::call(SYS_rt_sigprocmask, SIG_BLOCK, reinterpret_cast<long>(&all_but_segv), reinterpret_cast<long>(&mask_),
              8);
    const abi::Sigaction probe{reinterpret_cast<std::uint64_t>(&on_probe_fault),
                               abi::kSaSiginfo | abi::kSaRestorer | abi::kSaNodefer,
                               reinterpret_cast<std::uint64_t>(&dunk_host_signal_restorer), 0};
    sys::call(SYS_rt_sigaction, SIGSEGV, reinterpret_cast<long>(&probe), reinterpret_cast<long>(&saved_), 8);
    // SIGSEGV itself must not be blocked: the kernel would kill the process.
    const std::uint64_t segv = abi::sigbit(SIGSEGV);
    sys::call(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&segv), 0, 8);
  }
  ~ProbeScope() {
    sys::call(SYS_rt_sigaction, SIGSEGV, reinterpret_cast<long>(&saved_), 0, 8);
    sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask_), 0, 8);
  }
  ProbeScope(const ProbeScope&) = delete;
  ProbeScope& operator=(const ProbeScope&) = delete;

 private:
  std::uint64_t mask_ = 0;
  abi::Sigaction saved_{};
};

}  // namespace

bool perform_port_io(std::uint16_t port, std::uint8_t size, bool out, std::uint32_t count, std::byte* data) noexcept {
  if (size != 1 && size != 2 && size != 4) return false;
  ProbeScope probe;
  for (std::uint32_t i = 0; i < count; ++i) {
    PortAccess access{port, size, static_cast<std::uint8_t>(out ? 1 : 0), 0};
    if (out) std::memcpy(&access.value, data + i * size, size);
    // A permission the first access has, the rest have too; a denied one
    // is denied before anything happened (the instruction faults first).
    if (!dunk_port_io(&access)) return false;
    if (!out) std::memcpy(data + i * size, &access.value, size);
  }
  return true;
}

}  // namespace dunk::core
