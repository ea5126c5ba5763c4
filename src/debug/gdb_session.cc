#include "debug/gdb_session.h"

#include <cerrno>
#include <cstring>

#include "debug/gdb_packets.h"
#include "debug/gdb_signals.h"

namespace dunk::debug {
namespace {

constexpr std::string_view kSupported =
    "PacketSize=4000;QPassSignals+;QStartNoAckMode+;qXfer:features:read+;qXfer:auxv:read+;"
    "qXfer:exec-file:read+;swbreak+;hwbreak+;vContSupported+";

// A thread ID on the wire: hex, or -1 for all threads.
bool take_thread(std::string_view& text, ThreadId& thread) noexcept {
  if (take_prefix(text, "-1")) {
    thread = -1;
    return true;
  }
  std::uint64_t value;
  if (!take_hex(text, value)) return false;
  thread = static_cast<ThreadId>(value);
  return true;
}

// `addr,length` at the front of `text`.
bool take_range(std::string_view& text, std::uint64_t& address, std::uint64_t& length) noexcept {
  return take_hex(text, address) && take_prefix(text, ",") && take_hex(text, length);
}

}  // namespace

void Session::put(std::string_view text) noexcept {
  if (length_ + text.size() > kReplyCapacity) {
    overflow_ = true;
    return;
  }
  std::memcpy(reply_ + length_, text.data(), text.size());
  length_ += text.size();
}

void Session::put_hex_bytes(const void* data, std::size_t size) noexcept {
  if (length_ + 2 * size > kReplyCapacity) {
    overflow_ = true;
    return;
  }
  length_ += encode_hex(data, size, reply_ + length_);
}

void Session::put_hex(std::uint64_t value) noexcept {
  char digits[16];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[value & 0xf];
    value >>= 4;
  } while (value != 0);
  char text[16];
  for (int i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
  put(std::string_view(text, static_cast<std::size_t>(n)));
}

void Session::put_byte_hex(unsigned value) noexcept {
  const auto byte = static_cast<std::uint8_t>(value);
  put_hex_bytes(&byte, 1);
}

Session::Next Session::ok() noexcept {
  clear();
  put("OK");
  return Next::kReply;
}

Session::Next Session::error(int code) noexcept {
  clear();
  put("E");
  put_byte_hex(static_cast<unsigned>(code));
  return Next::kReply;
}

Session::Next Session::empty() noexcept {
  clear();
  return Next::kReply;  // "unsupported"
}

Session::Next Session::handle(std::string_view packet) noexcept {
  clear();
  overflow_ = false;
  if (packet.empty()) return empty();
  const char command = packet[0];
  std::string_view rest = packet.substr(1);
  Next next = Next::kReply;
  switch (command) {
    case '?':
      stop_reply(target_.halt());
      break;
    case 'g':
      next = read_registers();
      break;
    case 'G':
      next = write_registers(rest);
      break;
    case 'p':
      next = read_register(rest);
      break;
    case 'P':
      next = write_register(rest);
      break;
    case 'm':
      next = read_memory(rest);
      break;
    case 'M':
      next = write_memory(rest, false);
      break;
    case 'X':
      next = write_memory(rest, true);
      break;
    case 'Z':
    case 'z':
      next = breakpoint(rest, command == 'Z');
      break;
    case 'c':
    case 'C':
    case 's':
    case 'S':
      next = resume_legacy(packet);
      break;
    case 'H':
      next = select_thread(rest);
      break;
    case 'T': {
      ThreadId thread;
      next = take_thread(rest, thread) && target_.thread_alive(thread) ? ok() : error(1);
      break;
    }
    case 'q':
      next = query(packet);
      break;
    case 'Q':
      next = set(packet);
      break;
    case 'v':
      next = verbose(packet);
      break;
    case 'k':
      target_.kill();
      ended_ = true;
      return Next::kClose;
    case 'D':
      target_.detach();
      ok();
      return Next::kReplyAndClose;
    default:
      next = empty();
  }
  // A reply that did not fit is an error, never a truncated answer.
  if (overflow_) return error(1);
  return next;
}

void Session::stop_reply(const StopEvent& stop) noexcept {
  clear();
  last_stop_ = stop;
  stopped_ = true;
  if (stop.reason == StopReason::kExited || stop.reason == StopReason::kKilled) {
    put(stop.reason == StopReason::kExited ? "W" : "X");
    put_byte_hex(stop.reason == StopReason::kExited ? static_cast<unsigned>(stop.signal)
                                                     : static_cast<unsigned>(gdb_signal_from_host(stop.signal)));
    ended_ = true;
    return;
  }
  put("T");
  put_byte_hex(static_cast<unsigned>(gdb_signal_from_host(stop.signal)));
  put("thread:");
  put_hex(static_cast<std::uint64_t>(stop.thread));
  put(";");
  switch (stop.reason) {
    case StopReason::kSoftwareBreakpoint:
      if (swbreak_) put("swbreak:;");
      break;
    case StopReason::kHardwareBreakpoint:
      put("hwbreak:;");
      break;
    case StopReason::kWatch:
    case StopReason::kReadWatch:
    case StopReason::kAccessWatch:
      put(stop.reason == StopReason::kWatch ? "watch:" : stop.reason == StopReason::kReadWatch ? "rwatch:" : "awatch:");
      put_hex(stop.address);
      put(";");
      break;
    default:
      break;
  }
  // The stopped thread is the one register commands mean from now on.
  general_thread_ = stop.thread;
}

ThreadId Session::first_thread() noexcept {
  ThreadId first = 0;
  return target_.threads(&first, 1) > 0 ? first : 0;
}

ThreadId Session::register_thread() noexcept {
  if (general_thread_ > 0 && target_.thread_alive(general_thread_)) return general_thread_;
  if (stopped_ && last_stop_.thread > 0 && target_.thread_alive(last_stop_.thread)) return last_stop_.thread;
  return first_thread();
}

Session::Next Session::read_registers() noexcept {
  X86State state;
  if (!target_.read_registers(register_thread(), state)) return error(1);
  const RegisterLayout layout(target_.has_avx());
  clear();
  for (unsigned r = 0; r < layout.count(); ++r) {
    std::byte value[16];
    debug::read_register(state, r, value);
    put_hex_bytes(value, layout.size(r));
  }
  return Next::kReply;
}

Session::Next Session::write_registers(std::string_view hex) noexcept {
  const RegisterLayout layout(target_.has_avx());
  if (hex.size() != 2 * layout.total_size()) return error(1);
  const ThreadId thread = register_thread();
  X86State state;
  if (!target_.read_registers(thread, state)) return error(1);
  for (unsigned r = 0; r < layout.count(); ++r) {
    std::byte value[16];
    const std::size_t size = layout.size(r);
    if (!decode_hex(hex.substr(0, 2 * size), value, size)) return error(1);
    hex.remove_prefix(2 * size);
    debug::write_register(state, r, value);
  }
  return target_.write_registers(thread, state) ? ok() : error(1);
}

Session::Next Session::read_register(std::string_view packet) noexcept {
  const RegisterLayout layout(target_.has_avx());
  std::uint64_t regno;
  if (!take_hex(packet, regno) || !packet.empty() || regno >= layout.count()) return error(1);
  X86State state;
  if (!target_.read_registers(register_thread(), state)) return error(1);
  std::byte value[16];
  debug::read_register(state, static_cast<unsigned>(regno), value);
  clear();
  put_hex_bytes(value, layout.size(static_cast<unsigned>(regno)));
  return Next::kReply;
}

Session::Next Session::write_register(std::string_view packet) noexcept {
  const RegisterLayout layout(target_.has_avx());
  std::uint64_t regno;
  if (!take_hex(packet, regno) || !take_prefix(packet, "=") || regno >= layout.count()) return error(1);
  std::byte value[16];
  if (!decode_hex(packet, value, layout.size(static_cast<unsigned>(regno)))) return error(1);
  const ThreadId thread = register_thread();
  X86State state;
  if (!target_.read_registers(thread, state)) return error(1);
  debug::write_register(state, static_cast<unsigned>(regno), value);
  return target_.write_registers(thread, state) ? ok() : error(1);
}

Session::Next Session::read_memory(std::string_view packet) noexcept {
  std::uint64_t address, length;
  if (!take_range(packet, address, length) || !packet.empty()) return error(1);
  // Fewer bytes than asked are a valid answer; gdb asks for the rest.
  std::byte data[kReplyCapacity / 2];
  const std::size_t want = length < sizeof data ? length : sizeof data;
  const std::size_t got = target_.read_memory(address, data, want);
  if (got == 0 && want != 0) return error(EFAULT);
  clear();
  put_hex_bytes(data, got);
  return Next::kReply;
}

Session::Next Session::write_memory(std::string_view packet, bool binary) noexcept {
  std::uint64_t address, length;
  if (!take_range(packet, address, length) || !take_prefix(packet, ":")) return error(1);
  std::byte data[PacketReader::kMaxPayload];
  if (length > sizeof data) return error(1);
  if (binary) {
    if (unescape_binary(packet, data, sizeof data) != static_cast<long>(length)) return error(1);
  } else if (!decode_hex(packet, data, length)) {
    return error(1);
  }
  if (length == 0) return ok();  // a probe for X
  return target_.write_memory(address, data, length) ? ok() : error(EFAULT);
}

Session::Next Session::breakpoint(std::string_view packet, bool insert) noexcept {
  std::uint64_t type, address, kind;
  if (!take_hex(packet, type) || !take_prefix(packet, ",") || !take_range(packet, address, kind)) return error(1);
  // Conditions and commands evaluated by the target (";X...") are not offered.
  if (type > 4) return empty();
  const auto which = static_cast<BreakpointType>(type);
  const Status done = insert ? target_.insert_breakpoint(which, address, kind)
                             : target_.remove_breakpoint(which, address, kind);
  if (!done && done.error().err == ENOTSUP) return empty();  // gdb falls back (software watchpoints)
  return done ? ok() : error(done.error().err != 0 ? done.error().err : 1);
}

Session::Next Session::resume(const ResumeRequest& request) noexcept {
  StopEvent pending;
  stopped_ = false;
  if (target_.resume(request, pending)) return Next::kRunning;
  stop_reply(pending);
  return Next::kReply;
}

Session::Next Session::resume_legacy(std::string_view packet) noexcept {
  // c[addr], s[addr], Csig[;addr], Ssig[;addr]: the thread Hc selected (or
  // the current one) steps or continues; in all-stop mode, the others
  // continue with a continue and stay with a step. A resume address is not
  // supported (gdb never sends one).
  const char command = packet[0];
  std::string_view rest = packet.substr(1);
  int signal = 0;
  if (command == 'C' || command == 'S') {
    std::uint64_t gdb_signal;
    if (!take_hex(rest, gdb_signal)) return error(1);
    signal = host_signal_from_gdb(static_cast<int>(gdb_signal));
  }
  if (!rest.empty()) return error(1);
  const bool step = command == 's' || command == 'S';
  ResumeRequest request;
  const ThreadId thread = continue_thread_ > 0 ? continue_thread_ : register_thread();
  request.entries[0] = {thread, ResumeAction{step ? ResumeKind::kStep : ResumeKind::kContinue, signal}};
  request.count = 1;
  request.others = ResumeAction{step ? ResumeKind::kStay : ResumeKind::kContinue, 0};
  return resume(request);
}

Session::Next Session::resume_vcont(std::string_view actions) noexcept {
  ResumeRequest request;
  bool others_set = false;
  while (!actions.empty()) {
    if (!take_prefix(actions, ";")) return error(1);
    ResumeAction action;
    const char kind = actions.empty() ? '\0' : actions[0];
    actions.remove_prefix(actions.empty() ? 0 : 1);
    switch (kind) {
      case 'c':
      case 'C':
        action.kind = ResumeKind::kContinue;
        break;
      case 's':
      case 'S':
        action.kind = ResumeKind::kStep;
        break;
      case 't':
        action.kind = ResumeKind::kStay;
        break;
      default:
        return error(1);
    }
    if (kind == 'C' || kind == 'S') {
      std::uint64_t gdb_signal;
      if (!take_hex(actions, gdb_signal)) return error(1);
      action.signal = host_signal_from_gdb(static_cast<int>(gdb_signal));
    }
    ThreadId thread = -1;
    if (take_prefix(actions, ":") && !take_thread(actions, thread)) return error(1);
    // The leftmost action that applies to a thread is the one it takes.
    if (thread == -1) {
      if (!others_set) request.others = action, others_set = true;
      continue;
    }
    bool known = false;
    for (std::size_t i = 0; i < request.count; ++i) known = known || request.entries[i].thread == thread;
    if (known) continue;
    if (request.count == ResumeRequest::kMaxEntries) return error(1);
    request.entries[request.count++] = {thread, action};
  }
  return resume(request);
}

Session::Next Session::select_thread(std::string_view packet) noexcept {
  if (packet.empty()) return error(1);
  const char which = packet[0];
  packet.remove_prefix(1);
  ThreadId thread;
  if (!take_thread(packet, thread) || !packet.empty()) return error(1);
  if (thread > 0 && !target_.thread_alive(thread)) return error(1);
  if (which == 'g') {
    general_thread_ = thread;
  } else if (which == 'c') {
    continue_thread_ = thread;
  } else {
    return error(1);
  }
  return ok();
}

Session::Next Session::thread_list() noexcept {
  ThreadId threads[256];
  const std::size_t n = target_.threads(threads, sizeof threads / sizeof threads[0]);
  const std::size_t shown = n < sizeof threads / sizeof threads[0] ? n : sizeof threads / sizeof threads[0];
  clear();
  put("m");
  for (std::size_t i = 0; i < shown; ++i) {
    if (i != 0) put(",");
    put_hex(static_cast<std::uint64_t>(threads[i]));
  }
  if (shown == 0) {
    clear();
    put("l");
  }
  return Next::kReply;
}

Session::Next Session::query(std::string_view packet) noexcept {
  std::string_view rest = packet;
  if (take_prefix(rest, "qSupported")) {
    swbreak_ = rest.find("swbreak+") != std::string_view::npos;
    clear();
    put(kSupported);
    return Next::kReply;
  }
  if (packet == "qAttached") {
    // dunk started the program and gdb attached to it: quitting gdb
    // detaches, and the program runs on.
    clear();
    put("1");
    return Next::kReply;
  }
  if (packet == "qC") {
    clear();
    put("QC");
    put_hex(static_cast<std::uint64_t>(register_thread()));
    return Next::kReply;
  }
  if (packet == "qfThreadInfo") return thread_list();
  if (packet == "qsThreadInfo") {
    clear();
    put("l");
    return Next::kReply;
  }
  if (take_prefix(rest, "qThreadExtraInfo,")) {
    ThreadId thread;
    if (!take_thread(rest, thread) || !target_.thread_alive(thread)) return error(1);
    char text[64];
    const std::size_t n = target_.describe_thread(thread, text, sizeof text);
    clear();
    put_hex_bytes(text, n);
    return Next::kReply;
  }
  if (packet == "qSymbol::") return ok();
  if (take_prefix(rest, "qXfer:")) return xfer(rest);
  return empty();
}

Session::Next Session::xfer(std::string_view packet) noexcept {
  // object:read:annex:offset,length
  enum class Object { kFeatures, kAuxv, kExecFile } object;
  if (take_prefix(packet, "features:read:")) {
    object = Object::kFeatures;
  } else if (take_prefix(packet, "auxv:read:")) {
    object = Object::kAuxv;
  } else if (take_prefix(packet, "exec-file:read:")) {
    object = Object::kExecFile;
  } else {
    return empty();
  }
  const std::size_t colon = packet.find(':');
  if (colon == std::string_view::npos) return error(1);
  const std::string_view annex = packet.substr(0, colon);
  packet.remove_prefix(colon + 1);
  std::uint64_t offset, length;
  if (!take_range(packet, offset, length) || !packet.empty()) return error(1);

  static char document[0x4000];  // the stub thread's only: one session at a time
  long size = 0;
  long got = 0;
  const std::byte* data = nullptr;
  std::byte auxv[0x1000];
  if (object == Object::kFeatures) {
    if (annex != "target.xml") return error(0);
    size = static_cast<long>(RegisterLayout(target_.has_avx()).target_xml(document, sizeof document));
    if (size == 0) return error(1);
    data = reinterpret_cast<const std::byte*>(document);
  } else if (object == Object::kExecFile) {
    size = target_.exec_file(document, sizeof document);
    if (size < 0) return error(1);
    data = reinterpret_cast<const std::byte*>(document);
  } else {
    got = target_.read_auxv(offset, auxv, length < sizeof auxv ? length : sizeof auxv);
    if (got < 0) return error(1);
    data = auxv;
    size = static_cast<long>(offset) + got;
  }
  // 'l': this is the end; 'm': there is more.
  const std::uint64_t end = static_cast<std::uint64_t>(size);
  const std::uint64_t from = offset < end ? offset : end;
  std::uint64_t count = end - from;
  if (count > length) count = length;
  const std::byte* chunk = object == Object::kAuxv ? data : data + from;
  clear();
  put("l");
  std::size_t consumed = 0;
  length_ += escape_binary(chunk, count, reply_ + length_, kReplyCapacity - length_, consumed);
  const bool more = object == Object::kAuxv ? consumed > 0 : from + consumed < end;
  reply_[0] = more ? 'm' : 'l';
  return Next::kReply;
}

Session::Next Session::set(std::string_view packet) noexcept {
  std::string_view rest = packet;
  if (packet == "QStartNoAckMode") {
    no_ack_ = true;
    return ok();
  }
  if (take_prefix(rest, "QPassSignals:")) {
    std::uint64_t mask = 0;
    while (!rest.empty()) {
      std::uint64_t gdb_signal;
      if (!take_hex(rest, gdb_signal)) return error(1);
      if (const int sig = host_signal_from_gdb(static_cast<int>(gdb_signal)); sig != 0) mask |= std::uint64_t{1} << (sig - 1);
      if (!rest.empty() && !take_prefix(rest, ";")) return error(1);
    }
    target_.pass_signals(mask);
    return ok();
  }
  // Signals the program may see (QProgramSignals): all of them, always.
  if (take_prefix(rest, "QProgramSignals:")) return ok();
  return empty();
}

Session::Next Session::verbose(std::string_view packet) noexcept {
  std::string_view rest = packet;
  if (packet == "vCont?") {
    clear();
    put("vCont;c;C;s;S;t");
    return Next::kReply;
  }
  if (take_prefix(rest, "vCont")) return resume_vcont(rest);
  if (take_prefix(rest, "vKill")) {
    target_.kill();
    ended_ = true;
    ok();
    return Next::kReplyAndClose;
  }
  return empty();  // vMustReplyEmpty, vFile, vRun, vAttach...
}

}  // namespace dunk::debug
