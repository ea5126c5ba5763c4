#include "debug/gdb_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>

#include "base/fd_placement.h"
#include "base/syscall.h"
#include "core/debug_link.h"
#include "core/machine.h"
#include "core/signals.h"
#include "debug/gdb_packets.h"
#include "debug/gdb_session.h"
#include "debug/vm_target.h"

namespace dunk::debug {
namespace {

struct ListenAddress {
  bool unix_socket = false;
  sockaddr_un un{};
  sockaddr_in in{};
};

Result<ListenAddress> parse_address(std::string_view text) noexcept {
  ListenAddress a;
  if (take_prefix(text, "unix:")) {
    if (text.empty() || text.size() >= sizeof a.un.sun_path) {
      return Error{"--gdb=unix:PATH needs a path shorter than 108 bytes", EINVAL};
    }
    a.unix_socket = true;
    a.un.sun_family = AF_UNIX;
    std::memcpy(a.un.sun_path, text.data(), text.size());
    return a;
  }
  std::uint32_t ip = 0x7f000001;  // 127.0.0.1: only this machine, unless asked
  if (const std::size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    std::string_view host = text.substr(0, colon);
    text.remove_prefix(colon + 1);
    if (!host.empty() && host != "localhost") {
      ip = 0;
      for (int part = 0; part < 4; ++part) {
        if (part > 0 && !take_prefix(host, ".")) return Error{"--gdb=HOST:PORT takes an IPv4 address as HOST", EINVAL};
        unsigned value = 0, digits = 0;
        while (!host.empty() && host[0] >= '0' && host[0] <= '9' && digits < 3) {
          value = value * 10 + static_cast<unsigned>(host[0] - '0');
          host.remove_prefix(1), ++digits;
        }
        if (digits == 0 || value > 255) return Error{"--gdb=HOST:PORT takes an IPv4 address as HOST", EINVAL};
        ip = ip << 8 | value;
      }
      if (!host.empty()) return Error{"--gdb=HOST:PORT takes an IPv4 address as HOST", EINVAL};
    }
  }
  unsigned port = 0;
  if (text.empty() || text.size() > 5) return Error{"--gdb takes PORT, HOST:PORT or unix:PATH", EINVAL};
  for (char c : text) {
    if (c < '0' || c > '9') return Error{"--gdb takes PORT, HOST:PORT or unix:PATH", EINVAL};
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port > 65535) return Error{"--gdb: the port is above 65535", EINVAL};
  a.in.sin_family = AF_INET;
  a.in.sin_port = htons(static_cast<std::uint16_t>(port));
  a.in.sin_addr.s_addr = htonl(ip);
  return a;
}

// A descriptor of the stub's, out of the program's way and reach like
// dunk's others (docs/ARCHITECTURE.md, "dunk's own descriptors").
int place(long fd) noexcept {
  const int moved = move_out_of_program_range(static_cast<int>(fd));
  core::Machine::instance().dunk_fds().add(moved);
  return moved;
}

void unplace(int fd) noexcept {
  core::Machine::instance().dunk_fds().remove(fd);
  sys::call(SYS_close, fd);
}

// The stub's state: one per process, never freed (the stub thread may run
// until the very end).
core::DebugLink stub_link;
alignas(VmTarget) std::byte stub_target_storage[sizeof(VmTarget)];
VmTarget* stub_target = nullptr;
int stub_listen_fd = -1;
ListenAddress stub_address{};

// One connection with gdb: packets in, replies and stop replies out.
class Connection {
 public:
  Connection(int fd, VmTarget& target) noexcept : fd_(fd), target_(target), session_(target) {}

  // Serves until gdb detaches or kills, the process ends, or the connection
  // is lost (then the program runs on undebugged).
  void run() noexcept {
    while (!done_) {
      pollfd fds[2] = {{fd_, POLLIN, 0}, {running_ ? stub_link.event_fd : -1, POLLIN, 0}};
      const long n = sys::call(SYS_poll, reinterpret_cast<long>(fds), 2, -1);
      if (n == -EINTR) continue;
      if (n < 0) break;
      if ((fds[1].revents & POLLIN) != 0) {
        StopEvent stop;
        if (target_.collect_stop(stop)) report(stop);
      }
      if (!done_ && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !receive()) break;
    }
    if (!done_) target_.detach();  // the connection is gone: let the program go
  }

 private:
  bool receive() noexcept {
    char input[4096];
    const long n = sys::call(SYS_read, fd_, reinterpret_cast<long>(input), sizeof input);
    if (n == -EINTR || n == -EAGAIN) return true;
    if (n <= 0) return false;
    for (long i = 0; i < n && !done_; ++i) {
      switch (reader_.feed(input[i])) {
        case PacketReader::Event::kPacket:
          packet();
          break;
        case PacketReader::Event::kBadChecksum:
        case PacketReader::Event::kOverflow:
          if (!no_ack_) write_all("-", 1);
          break;
        case PacketReader::Event::kNack:
          write_all(last_, last_length_);
          break;
        case PacketReader::Event::kInterrupt:
          if (running_) report(target_.interrupt());
          break;
        case PacketReader::Event::kAck:
        case PacketReader::Event::kNone:
          break;
      }
    }
    return true;
  }

  void packet() noexcept {
    if (!no_ack_) write_all("+", 1);
    switch (session_.handle(reader_.payload())) {
      case Session::Next::kReply:
        send(session_.reply());
        if (session_.ended()) finish();  // a resume found the process's end pending
        break;
      case Session::Next::kRunning:
        running_ = true;
        break;
      case Session::Next::kReplyAndClose:
        send(session_.reply());
        done_ = true;
        break;
      case Session::Next::kClose:
        done_ = true;
        break;
    }
    no_ack_ = session_.no_ack();
  }

  void report(const StopEvent& stop) noexcept {
    running_ = false;
    session_.stop_reply(stop);
    send(session_.reply());
    if (session_.ended()) finish();
  }

  // gdb knows the process is gone: it may go.
  void finish() noexcept {
    target_.release_ending();
    done_ = true;
  }

  void send(std::string_view payload) noexcept {
    last_length_ = frame_packet(payload, last_, sizeof last_);
    write_all(last_, last_length_);
  }

  void write_all(const char* data, std::size_t size) noexcept {
    while (size > 0) {
      const long n = sys::call(SYS_write, fd_, reinterpret_cast<long>(data), static_cast<long>(size));
      if (n == -EINTR) continue;
      if (n <= 0) return;
      data += n, size -= static_cast<std::size_t>(n);
    }
  }

  int fd_;
  VmTarget& target_;
  Session session_;
  PacketReader reader_;
  char last_[Session::kReplyCapacity + 4];
  std::size_t last_length_ = 0;
  bool no_ack_ = false;
  bool running_ = false;
  bool done_ = false;
};

void* serve(void*) {
  long fd;
  do {
    fd = sys::call(SYS_accept4, stub_listen_fd, 0, 0, SOCK_CLOEXEC);
  } while (fd == -EINTR);
  unplace(stub_listen_fd);
  if (stub_address.unix_socket) sys::call(SYS_unlink, reinterpret_cast<long>(stub_address.un.sun_path));
  if (sys::failed(fd)) {
    stub_target->detach();
    return nullptr;
  }
  const int connection = place(fd);
  if (!stub_address.unix_socket) {
    // Small packets, one after the other: without this, each waits.
    const int one = 1;
    sys::call(SYS_setsockopt, connection, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<long>(&one), sizeof one);
  }
  // Its buffers are large: static, like the rest of the stub's state (one
  // connection per process).
  alignas(Connection) static std::byte storage[sizeof(Connection)];
  (new (storage) Connection(connection, *stub_target))->run();
  unplace(connection);
  return nullptr;
}

Status listen_at(const ListenAddress& a) noexcept {
  const long fd = sys::call(SYS_socket, a.unix_socket ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sys::failed(fd)) return errno_error("socket() for the gdb stub failed", fd);
  stub_listen_fd = place(fd);
  if (!a.unix_socket) {
    const int one = 1;
    sys::call(SYS_setsockopt, stub_listen_fd, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<long>(&one), sizeof one);
  }
  const long bound = a.unix_socket
                         ? sys::call(SYS_bind, stub_listen_fd, reinterpret_cast<long>(&a.un), sizeof a.un)
                         : sys::call(SYS_bind, stub_listen_fd, reinterpret_cast<long>(&a.in), sizeof a.in);
  if (sys::failed(bound)) return errno_error("the gdb stub cannot listen at the --gdb address (bind)", bound);
  const long listened = sys::call(SYS_listen, stub_listen_fd, 1);
  if (sys::failed(listened)) return errno_error("the gdb stub cannot listen (listen)", listened);
  return {};
}

// Where gdb connects, on stderr: one line.
void announce(const ListenAddress& a) noexcept {
  char line[256];
  int n;
  if (a.unix_socket) {
    n = std::snprintf(line, sizeof line, "dunk: waiting for gdb: target remote %s\n", a.un.sun_path);
  } else {
    sockaddr_in bound{};
    socklen_t size = sizeof bound;
    sys::call(SYS_getsockname, stub_listen_fd, reinterpret_cast<long>(&bound), reinterpret_cast<long>(&size));
    const std::uint32_t ip = ntohl(a.in.sin_addr.s_addr);
    n = std::snprintf(line, sizeof line, "dunk: waiting for gdb: target remote %u.%u.%u.%u:%u\n", ip >> 24,
                      ip >> 16 & 0xff, ip >> 8 & 0xff, ip & 0xff, ntohs(bound.sin_port));
  }
  if (n > 0) sys::call(SYS_write, 2, reinterpret_cast<long>(line), n);
}

}  // namespace

Status start_gdb_stub(const char* address) noexcept {
  if (stub_target != nullptr) return Error{"the gdb stub is running already", EBUSY};
  DUNK_ASSIGN_OR_RETURN(stub_address, parse_address(address));
  DUNK_TRY(listen_at(stub_address));
  // Breakpoints go into code pages the program cannot write: through
  // /proc/self/mem, as ptrace writes them (core/debug_link.h).
  const long memory = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/mem"), O_RDWR | O_CLOEXEC);
  if (sys::failed(memory)) return errno_error("cannot open /proc/self/mem for the gdb stub", memory);
  const long events = sys::call(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sys::failed(events)) return errno_error("eventfd() for the gdb stub failed", events);

  core::Machine& machine = core::Machine::instance();
  stub_link.pid = sys::call(SYS_getpid);
  stub_link.event_fd = place(events);
  // Every thread entering VM mode from now on stops first.
  stub_link.hold_new.store(1, std::memory_order_seq_cst);
  stub_link.attached.store(true, std::memory_order_seq_cst);
  stub_target = new (stub_target_storage) VmTarget(machine, stub_link, place(memory));
  machine.attach_debugger(&stub_link);
  core::reserve_signal_for_debugger(core::DebugLink::kKickSignal);

  // The stub's thread takes no signal of the program's: all blocked, so
  // that the kernel delivers process-wide signals to the program's threads.
  // (Raw: glibc's sigfillset and pthread_sigmask leave its own signals out.)
  const std::uint64_t all = ~std::uint64_t{0};
  std::uint64_t before = 0;
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), reinterpret_cast<long>(&before), 8);
  pthread_t thread;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  const int created = pthread_create(&thread, &attributes, &serve, nullptr);
  pthread_attr_destroy(&attributes);
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&before), 0, 8);
  if (created != 0) {
    machine.attach_debugger(nullptr);
    return Error{"cannot start the gdb stub's thread", created};
  }
  announce(stub_address);
  return {};
}

}  // namespace dunk::debug
