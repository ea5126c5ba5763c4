// The GDB remote protocol's commands (GDB manual, "Remote Protocol"), served
// over a Target: one packet's payload in, the reply's payload out. Framing
// and I/O are the server's (debug/gdb_server.h); this class holds what the
// conversation remembers (the selected threads, no-ack mode, the last stop).
//
// What it serves, in all-stop mode: registers (`g`, `G`, `p`, `P`, with the
// target description of debug/x86_registers.h), memory (`m`, `M`, `X`),
// breakpoints and watchpoints (`Z0`-`Z4`), resuming (`vCont` with c/C/s/S per
// thread; `c`, `C`, `s`, `S`), threads (`qfThreadInfo`, `qC`, `H`, `T`,
// `qThreadExtraInfo`), `qXfer` of features, auxv and exec-file, signals
// passed without stopping (`QPassSignals`), `QStartNoAckMode`, detach and
// kill. No allocation: it runs while the program may hold any lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "debug/target.h"

namespace dunk::debug {

class Session {
 public:
  static constexpr std::size_t kReplyCapacity = 0x4000;

  enum class Next : std::uint8_t {
    kReply,          // send reply()
    kRunning,        // nothing now: the program runs, a stop reply follows (stop_reply)
    kReplyAndClose,  // send reply(), then end the connection (detached)
    kClose,          // end the connection without a reply (killed)
  };

  explicit Session(Target& target) noexcept : target_(target) {}

  // Handles one packet's payload (checksum already checked).
  Next handle(std::string_view packet) noexcept;
  // Formats the stop reply for `stop` as reply() (after kRunning).
  void stop_reply(const StopEvent& stop) noexcept;
  std::string_view reply() const noexcept { return {reply_, length_}; }

  // gdb asked for no acknowledgements (after the reply to it is sent).
  bool no_ack() const noexcept { return no_ack_; }
  // The process has exited or been killed: the conversation is over.
  bool ended() const noexcept { return ended_; }

 private:
  // Reply building.
  void clear() noexcept { length_ = 0; }
  void put(std::string_view text) noexcept;
  void put_hex_bytes(const void* data, std::size_t size) noexcept;
  void put_hex(std::uint64_t value) noexcept;
  void put_byte_hex(unsigned value) noexcept;  // two digits
  Next ok() noexcept;
  Next error(int code) noexcept;
  Next empty() noexcept;

  Next query(std::string_view packet) noexcept;
  Next set(std::string_view packet) noexcept;
  Next verbose(std::string_view packet) noexcept;
  Next xfer(std::string_view packet) noexcept;
  Next read_registers() noexcept;
  Next write_registers(std::string_view hex) noexcept;
  Next read_register(std::string_view packet) noexcept;
  Next write_register(std::string_view packet) noexcept;
  Next read_memory(std::string_view packet) noexcept;
  Next write_memory(std::string_view packet, bool binary) noexcept;
  Next breakpoint(std::string_view packet, bool insert) noexcept;
  Next resume_legacy(std::string_view packet) noexcept;
  Next resume_vcont(std::string_view actions) noexcept;
  Next resume(const ResumeRequest& request) noexcept;
  Next thread_list() noexcept;
  Next select_thread(std::string_view packet) noexcept;

  // The thread register commands apply to: the selected one, else the
  // thread of the last stop, else the first.
  ThreadId register_thread() noexcept;
  ThreadId first_thread() noexcept;

  Target& target_;
  char reply_[kReplyCapacity];
  std::size_t length_ = 0;
  bool overflow_ = false;
  bool no_ack_ = false;
  bool swbreak_ = false;  // gdb understands swbreak (it does not adjust the PC itself)
  bool ended_ = false;
  ThreadId general_thread_ = 0;   // Hg: 0 any
  ThreadId continue_thread_ = 0;  // Hc: 0 any, -1 all
  StopEvent last_stop_{};
  bool stopped_ = false;
};

}  // namespace dunk::debug
