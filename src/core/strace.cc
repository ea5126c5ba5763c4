#include "core/strace.h"

#include <sys/syscall.h>
#include <time.h>

#include "abi/format.h"
#include "abi/syscalls.h"
#include "arch/x86_64/paging.h"
#include "base/syscall.h"
#include "core/text.h"

namespace dunk::core {
namespace {

// The program's memory for the formatter: reads stop at the first page the
// kernel cannot read.
class FormatterMemory final : public abi::Memory {
 public:
  explicit FormatterMemory(GuestMemory& memory) noexcept : memory_(memory) {}
  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override {
    std::size_t done = 0;
    while (done < size) {
      const std::uint64_t at = address + done;
      const std::size_t in_page = arch::kPageSize4K - (at & (arch::kPageSize4K - 1));
      const std::size_t piece = size - done < in_page ? size - done : in_page;
      if (!memory_.read(static_cast<std::byte*>(out) + done, at, piece)) break;
      done += piece;
    }
    return done;
  }

 private:
  GuestMemory& memory_;
};

// "4242 14:03:07.123456 " — the thread and the UTC time now.
void prefix(TextBuffer& text) noexcept {
  timespec now{};
  sys::call(SYS_clock_gettime, CLOCK_REALTIME, reinterpret_cast<long>(&now));
  const long day = now.tv_sec % 86400;
  auto two = [&](long v) { text.append(v < 10 ? "0" : "").dec(v); };
  text.dec(sys::call(SYS_gettid)).append(" ");
  two(day / 3600);
  text.append(":");
  two(day / 60 % 60);
  text.append(":");
  two(day % 60);
  text.append(".");
  const long micros = now.tv_nsec / 1000;
  for (long scale = 100000; scale > 1 && micros < scale; scale /= 10) text.append("0");
  text.dec(micros).append(" ");
}

bool shown_at_entry(const abi::CallSpec* spec) noexcept {
  return spec != nullptr && (spec->has(abi::kBlocks) || spec->has(abi::kNoReturn));
}

// The entry part without its trailing ", " (the arguments the call would
// have filled in are not shown): "ptrace(PTRACE_TRACEME".
std::size_t entry_only(char* out, std::size_t size, const abi::Call& call, abi::Memory& memory) noexcept {
  std::size_t n = abi::format_entry(out, size, call, memory);
  while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == ',')) out[--n] = '\0';
  return n;
}

abi::Call as_call(const Syscall& call) noexcept {
  return abi::Call{call.rax, {call.arg(0), call.arg(1), call.arg(2), call.arg(3), call.arg(4), call.arg(5)}};
}

}  // namespace

void SyscallTracer::before(const Syscall& call, GuestMemory& memory) noexcept {
  if (!on() || !shown_at_entry(abi::lookup(call.rax))) return;
  char line[1024];
  TextBuffer text(line, sizeof line);
  prefix(text);
  char part[768];
  FormatterMemory reader(memory);
  if (call.rax == SYS_exit || call.rax == SYS_exit_group) {
    // They never return: strace's "= ?".
    entry_only(part, sizeof part, as_call(call), reader);
    text.append(part).append(") = ?\n");
  } else {
    abi::format_entry(part, sizeof part, as_call(call), reader);
    text.append(part).append(" <unfinished ...>\n");
  }
  sys::call(SYS_write, fd_, reinterpret_cast<long>(text.c_str()), static_cast<long>(text.length()));
}

void SyscallTracer::after(const Syscall& call, const Outcome& outcome, GuestMemory& memory) noexcept {
  if (!on()) return;
  const abi::CallSpec* spec = abi::lookup(call.rax);
  char line[1024];
  TextBuffer text(line, sizeof line);
  prefix(text);
  char part[896];
  FormatterMemory reader(memory);
  const abi::Call c = as_call(call);
  switch (outcome.kind()) {
    case Outcome::Kind::kResult:
    case Outcome::Kind::kSignal: {
      const std::int64_t ret = outcome.value();
      if (shown_at_entry(spec)) {
        text.append("<... ").append(spec->name).append(" resumed>");
        abi::format_exit(part, sizeof part, c, ret, reader);
      } else {
        abi::format_call(part, sizeof part, c, ret, reader);
      }
      text.append(part);
      if (outcome.kind() == Outcome::Kind::kSignal) text.append(" (then signal ").dec(outcome.forced().sig).append(")");
      break;
    }
    case Outcome::Kind::kRestart:
      entry_only(part, sizeof part, c, reader);
      text.append(part).append(") = ? ERESTARTSYS (To be restarted)");
      break;
    case Outcome::Kind::kLeave:
      // The host kernel serves this call and all after it, natively.
      entry_only(part, sizeof part, c, reader);
      text.append(part).append(") = ? <the thread leaves VM mode>");
      break;
  }
  text.append("\n");
  sys::call(SYS_write, fd_, reinterpret_cast<long>(text.c_str()), static_cast<long>(text.length()));
}

}  // namespace dunk::core
