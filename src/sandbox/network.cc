#include "sandbox/network.h"

#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "abi/names.h"
#include "base/syscall.h"
#include "sandbox/supervisor.h"
#include "sandbox/text_files.h"

namespace dunk::sandbox {
namespace {

using Address = std::array<std::uint8_t, 16>;

// Offsets and sizes of the kernel's socket addresses (netinet/in.h).
constexpr std::size_t kFamilySize = sizeof(sa_family_t);
constexpr std::size_t kInetSize = sizeof(sockaddr_in);    // 16
constexpr std::size_t kInet6MinSize = 24;                 // SIN6_LEN_RFC2133: the kernel's least
constexpr unsigned kMappedPrefix = 96;                    // ::ffff:0:0/96

std::uint16_t load16(const std::byte* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// IPv4 as IPv6 sees it: ::ffff:a.b.c.d.
Address mapped(const std::uint8_t (&v4)[4]) noexcept {
  Address a{};
  a[10] = a[11] = 0xff;
  std::memcpy(a.data() + 12, v4, 4);
  return a;
}

bool is_mapped(const Address& a) noexcept {
  for (int i = 0; i < 10; ++i) {
    if (a[i] != 0) return false;
  }
  return a[10] == 0xff && a[11] == 0xff;
}

bool in_prefix(const Address& a, const Address& net, unsigned prefix) noexcept {
  for (unsigned bit = 0; bit < prefix; ++bit) {
    const unsigned byte = bit / 8, mask = 0x80u >> (bit % 8);
    if ((a[byte] & mask) != (net[byte] & mask)) return false;
  }
  return true;
}

void mask(Address& a, unsigned prefix) noexcept {
  for (unsigned bit = prefix; bit < 128; ++bit) a[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
}

// "127.0.0.1", "::1", as inet_ntop writes them (an IPv4-mapped address as IPv4).
void address_text(const Address& a, char* out, std::size_t size) noexcept {
  if (is_mapped(a)) {
    inet_ntop(AF_INET, a.data() + 12, out, static_cast<socklen_t>(size));
  } else {
    inet_ntop(AF_INET6, a.data(), out, static_cast<socklen_t>(size));
  }
}

const char* family_name(int family) noexcept {
  switch (family) {
    case AF_UNSPEC: return "AF_UNSPEC";
    case AF_UNIX: return "AF_UNIX";
    case AF_INET: return "AF_INET";
    case AF_INET6: return "AF_INET6";
    case AF_NETLINK: return "AF_NETLINK";
    case AF_PACKET: return "AF_PACKET";
    case AF_ALG: return "AF_ALG";
    case AF_VSOCK: return "AF_VSOCK";
    default: return nullptr;
  }
}

NetVerdict deny(int err, const char* format, auto... values) noexcept {
  NetVerdict v;
  v.err = err;
  std::snprintf(v.rule, sizeof v.rule, format, values...);
  return v;
}

// A whole number in [min, max], or false.
bool parse_number(std::string_view text, unsigned min, unsigned max, unsigned& out) noexcept {
  if (text.empty() || text.size() > 6) return false;
  unsigned n = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  if (n < min || n > max) return false;
  out = n;
  return true;
}

// An IPv4 or IPv6 socket address: its address (IPv4 mapped) and port; false
// when `size` is too short for the family the kernel reads it as.
bool inet_endpoint(int family, const std::byte* p, std::size_t size, Address& address, std::uint16_t& port) noexcept {
  if (family == AF_INET) {
    if (size < kInetSize) return false;
    std::uint8_t v4[4];
    std::memcpy(v4, p + offsetof(sockaddr_in, sin_addr), 4);
    address = mapped(v4);
    port = ntohs(load16(p + offsetof(sockaddr_in, sin_port)));
    return true;
  }
  if (size < kInet6MinSize) return false;
  std::memcpy(address.data(), p + offsetof(sockaddr_in6, sin6_addr), 16);
  port = ntohs(load16(p + offsetof(sockaddr_in6, sin6_port)));
  return true;
}

// An AF_UNIX address naming a file (sun_path[0] != 0); anything else is an
// abstract name or an autobind.
bool unix_path(const std::byte* p, std::size_t size) noexcept {
  return size > kFamilySize && p[kFamilySize] != std::byte{0};
}

}  // namespace

// ---- The command line --------------------------------------------------------

std::string NetworkPolicy::add_connect(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  std::string_view host, prefix_text, port_text;
  bool v6 = false, has_prefix = false;
  if (text.starts_with('[')) {
    // [V6]:PORT, [V6]/PREFIX:PORT or [V6/PREFIX]:PORT.
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return quoted + ": no ']' after the IPv6 address";
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (const std::size_t slash = host.find('/'); slash != std::string_view::npos) {
      has_prefix = true;
      prefix_text = host.substr(slash + 1);
      host = host.substr(0, slash);
    } else if (rest.starts_with('/')) {
      has_prefix = true;
      const std::size_t colon = rest.find(':');
      prefix_text = rest.substr(1, colon == std::string_view::npos ? std::string_view::npos : colon - 1);
      rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon);
    }
    if (!rest.starts_with(':')) return quoted + ": no ':PORT' after the address (ADDR[/PREFIX]:PORT)";
    port_text = rest.substr(1);
    v6 = true;
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return quoted + ": no ':PORT' after the address (ADDR[/PREFIX]:PORT)";
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return quoted + ": an IPv6 address goes in brackets ([ADDR]/PREFIX:PORT)";
    }
    if (const std::size_t slash = host.find('/'); slash != std::string_view::npos) {
      has_prefix = true;
      prefix_text = host.substr(slash + 1);
      host = host.substr(0, slash);
    }
  }
  ConnectRule rule;
  const std::string host_string(host);
  if (v6) {
    if (inet_pton(AF_INET6, host_string.c_str(), rule.address.data()) != 1) {
      return quoted + ": '" + host_string + "' is not an IPv6 address";
    }
    rule.prefix = 128;
  } else {
    std::uint8_t v4[4];
    if (inet_pton(AF_INET, host_string.c_str(), v4) != 1) {
      return quoted + ": '" + host_string + "' is not an IPv4 address (names are not resolved)";
    }
    rule.address = mapped(v4);
    rule.prefix = kMappedPrefix + 32;
  }
  if (has_prefix) {
    unsigned p = 0;
    if (!parse_number(prefix_text, 0, v6 ? 128 : 32, p)) {
      return quoted + ": the prefix '" + std::string(prefix_text) + "' is not 0-" + (v6 ? "128" : "32");
    }
    rule.prefix = v6 ? p : kMappedPrefix + p;
  }
  // Host bits beyond the prefix do not count (as in iptables).
  mask(rule.address, rule.prefix);
  if (port_text == "*") {
    rule.port = 0;
  } else {
    unsigned port = 0;
    if (!parse_number(port_text, 1, 65535, port)) {
      return quoted + ": the port '" + std::string(port_text) + "' is not 1-65535 or *";
    }
    rule.port = static_cast<std::uint16_t>(port);
  }
  connect_.push_back(rule);
  return {};
}

std::string NetworkPolicy::add_bind(std::string_view text) {
  unsigned port = 0;
  if (!parse_number(text, 1, 65535, port)) {
    return "'" + std::string(text) + "' is not a port 1-65535 (port 0, an ephemeral one, is always allowed)";
  }
  if (!port_bindable(static_cast<std::uint16_t>(port))) bind_.push_back(static_cast<std::uint16_t>(port));
  return {};
}

// ---- The decisions -------------------------------------------------------------

bool NetworkPolicy::port_bindable(std::uint16_t port) const noexcept {
  return std::find(bind_.begin(), bind_.end(), port) != bind_.end();
}

bool NetworkPolicy::connect_allowed(const Address& address, std::uint16_t port) const noexcept {
  for (const ConnectRule& r : connect_) {
    if ((r.port == 0 || r.port == port) && in_prefix(address, r.address, r.prefix)) return true;
  }
  return false;
}

const char* NetworkPolicy::option() const noexcept {
  return unshare_ ? "--unshare-net" : !connect_.empty() ? "--allow-connect" : "--allow-bind";
}

NetVerdict NetworkPolicy::socket(std::int64_t domain_arg, std::int64_t type_arg,
                                 std::int64_t protocol_arg) const noexcept {
  const int domain = static_cast<int>(domain_arg), protocol = static_cast<int>(protocol_arg);
  const int type = static_cast<int>(type_arg) & 0xf;  // without SOCK_NONBLOCK, SOCK_CLOEXEC
  if (domain == AF_UNIX) return {};
  const char* name = family_name(domain);
  const bool rules = !connect_.empty() || !bind_.empty();
  if (domain == AF_INET || domain == AF_INET6) {
    // In the namespace without rules nothing is decided by address: the
    // namespace holds only lo.
    if (namespace_ && !rules) return {};
    if (!rules) return deny(EACCES, "--unshare-net: an %s socket", name);
    if ((type == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP)) ||
        (type == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP))) {
      return {};
    }
    return deny(EACCES, "%s: an %s socket of type %d, protocol %d (only TCP and UDP ones)", option(), name, type,
                protocol);
  }
  if (namespace_) {
    // The namespace's own interfaces and routes (glibc's getifaddrs and
    // if_nameindex ask them this way).
    if (domain == AF_NETLINK && protocol == NETLINK_ROUTE) return {};
    const char* only = "only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK's NETLINK_ROUTE in the namespace";
    if (domain == AF_NETLINK) return deny(EACCES, "%s: an AF_NETLINK socket of protocol %d (%s)", option(), protocol, only);
    if (name != nullptr) return deny(EACCES, "%s: an %s socket (%s)", option(), name, only);
    return deny(EACCES, "%s: a socket of family %d (%s)", option(), domain, only);
  }
  if (name != nullptr) return deny(EACCES, "%s: an %s socket (only AF_UNIX, AF_INET and AF_INET6)", option(), name);
  return deny(EACCES, "%s: a socket of family %d (only AF_UNIX, AF_INET and AF_INET6)", option(), domain);
}

NetVerdict NetworkPolicy::destination(const std::byte* p, std::size_t size, bool sending) const noexcept {
  if (size < kFamilySize) return deny(EINVAL, "%s: an address too short to name its family", option());
  int family = load16(p);
  if (family == AF_UNIX) {
    // An abstract name belongs to the network namespace: in the program's
    // own, only the sandbox listens there.
    if (unix_path(p, size) || namespace_) return {};
    return deny(EPERM, "%s: an abstract AF_UNIX name (the network namespace's: host services listen there)",
                option());
  }
  if (namespace_ && family == AF_NETLINK) return {};  // only NETLINK_ROUTE sockets exist (socket())
  if (namespace_ && connect_.empty()) return {};     // only lo is there
  if (family == AF_UNSPEC) {
    // connect: dissolves the association. A UDP send reads it as AF_INET.
    if (!sending) return {};
    family = AF_INET;
  }
  if (family != AF_INET && family != AF_INET6) {
    const char* name = family_name(family);
    if (name != nullptr) return deny(EPERM, "%s: an %s address", option(), name);
    return deny(EPERM, "%s: an address of family %d", option(), family);
  }
  Address address;
  std::uint16_t port = 0;
  if (!inet_endpoint(family, p, size, address, port)) {
    return deny(EINVAL, "%s: an %s address of %zu bytes", option(), family_name(family), size);
  }
  if (connect_allowed(address, port)) return {};
  char text[INET6_ADDRSTRLEN];
  address_text(address, text, sizeof text);
  return deny(EPERM, "--allow-connect: no rule for %s port %u", text, port);
}

NetVerdict NetworkPolicy::bind(const std::byte* p, std::size_t size) const noexcept {
  if (size < kFamilySize) return deny(EINVAL, "%s: an address too short to name its family", option());
  int family = load16(p);
  if (family == AF_UNIX) {
    if (unix_path(p, size) || namespace_) return {};
    return deny(EACCES, "%s: an abstract AF_UNIX name (the network namespace's)", option());
  }
  if (namespace_ && (family == AF_NETLINK || bind_.empty())) return {};
  if (family == AF_UNSPEC) family = AF_INET;  // inet_bind's compatibility
  if (family != AF_INET && family != AF_INET6) {
    const char* name = family_name(family);
    if (name != nullptr) return deny(EACCES, "%s: an %s address", option(), name);
    return deny(EACCES, "%s: an address of family %d", option(), family);
  }
  Address address;
  std::uint16_t port = 0;
  if (!inet_endpoint(family, p, size, address, port)) {
    return deny(EINVAL, "%s: an %s address of %zu bytes", option(), family_name(family), size);
  }
  if (port == 0 || port_bindable(port)) return {};
  return deny(EACCES, "--allow-bind: port %u is not one", port);
}

NetVerdict NetworkPolicy::listen(const std::byte* p, std::size_t size) const noexcept {
  if (size < kFamilySize || (namespace_ && bind_.empty())) return {};
  const int family = load16(p);
  if (family != AF_INET && family != AF_INET6) return {};
  Address address;
  std::uint16_t port = 0;
  if (!inet_endpoint(family, p, size, address, port)) return {};
  if (port != 0 && port_bindable(port)) return {};
  if (port == 0) return deny(EACCES, "--allow-bind: listening on an unbound socket (an ephemeral port)");
  return deny(EACCES, "--allow-bind: listening on port %u, not one", port);
}

// ---- The namespace -------------------------------------------------------------

namespace {

std::string errno_text(int err) {
  const char* name = abi::errno_name(err);
  return name != nullptr ? name : std::to_string(err);
}

// `lo` up (SIOCSIFFLAGS): the one interface a new namespace has, down.
int loopback_up() noexcept {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  int err = 0;
  if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) {
    err = errno;
  } else {
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP | IFF_RUNNING);
    if (ioctl(fd, SIOCSIFFLAGS, &request) != 0) err = errno;
  }
  close(fd);
  return err;
}

// Every capability the new user namespace gave the process, dropped: the
// effective, permitted and inheritable sets, the ambient set and the
// bounding set.
int drop_capabilities() noexcept {
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return errno;
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) return errno;
  return 0;
}

}  // namespace

NetNamespace make_network_namespace() {
  NetNamespace result;
  if (unshare(CLONE_NEWNET) == 0) {
    // In the namespace now, whatever follows (made, with `why` if lo
    // stays down).
    result.made = true;
    if (const int err = loopback_up(); err != 0) result.why = "bringing lo up: " + errno_text(err);
    return result;
  }
  const int privileged = errno;
  // Unprivileged: a user namespace of dunk's own, the caller's ids mapped
  // to themselves, so the program still runs as the user it was.
  const uid_t uid = geteuid();
  const gid_t gid = getegid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
    const int unprivileged = errno;
    result.why = "unshare(CLONE_NEWNET): " + errno_text(privileged) +
                 ", unshare(CLONE_NEWUSER | CLONE_NEWNET): " + errno_text(unprivileged);
    return result;
  }
  result.made = true;
  result.user_namespace = true;
  int err = write_text("/proc/self/setgroups", "deny");
  const char* step = "/proc/self/setgroups";
  if (err == 0) {
    step = "/proc/self/uid_map";
    err = write_text(step, std::to_string(uid) + " " + std::to_string(uid) + " 1\n");
  }
  if (err == 0) {
    step = "/proc/self/gid_map";
    err = write_text(step, std::to_string(gid) + " " + std::to_string(gid) + " 1\n");
  }
  if (err == 0) {
    step = "bringing lo up";
    err = loopback_up();
  }
  if (err == 0) {
    step = "dropping the user namespace's capabilities";
    err = drop_capabilities();
  }
  if (err != 0) result.why = std::string(step) + ": " + errno_text(err);
  return result;
}

// ---- The runtime -------------------------------------------------------------

namespace {

// Decides every socket address the kernel will read, in walk order; stops
// at the first it refuses.
class AddressVisitor final : public abi::Visitor {
 public:
  AddressVisitor(const NetworkPolicy& policy, const Scratch& scratch, int nr) noexcept
      : policy_(policy), scratch_(scratch), nr_(nr) {}

  const void* access(const abi::Access& a) noexcept override {
    if (!verdict.allowed() || a.shape != abi::Shape::kSockaddr || !abi::reads(a.dir) || a.size == 0) return nullptr;
    if (!scratch_.contains(a.address, a.size)) {
      // Every address the kernel reads is copied (copies.h); one that is
      // not would be read twice.
      verdict = deny(EPERM, "a socket address the supervisor did not copy");
      return nullptr;
    }
    const auto* bytes = reinterpret_cast<const std::byte*>(a.address);
    const std::size_t size = static_cast<std::size_t>(a.size);
    verdict = nr_ == SYS_bind ? policy_.bind(bytes, size) : policy_.destination(bytes, size, nr_ != SYS_connect);
    return nullptr;
  }
  void fd(const abi::FdUse&) noexcept override {}

  NetVerdict verdict;

 private:
  const NetworkPolicy& policy_;
  const Scratch& scratch_;
  int nr_;
};

NetVerdict listen_verdict(const NetworkPolicy& policy, long fd) noexcept {
  sockaddr_storage local{};
  socklen_t size = sizeof local;
  if (sys::call(SYS_getsockname, fd, reinterpret_cast<long>(&local), reinterpret_cast<long>(&size)) != 0) {
    return {};  // not a socket, not open: the kernel's listen() says so
  }
  return policy.listen(reinterpret_cast<const std::byte*>(&local), std::min<std::size_t>(size, sizeof local));
}

}  // namespace

long decide_network(ProgramThread& t, const abi::Call& call, const abi::Call& rewritten) noexcept {
  const NetworkPolicy* policy = sandbox().network;
  if (policy == nullptr || !policy->active()) return 0;
  const int nr = abi::kernel_number(call.number);
  NetVerdict v;
  switch (nr) {
    case SYS_socket:
    case SYS_socketpair:
      v = policy->socket(static_cast<std::int64_t>(call.args[0]), static_cast<std::int64_t>(call.args[1]),
                         static_cast<std::int64_t>(call.args[2]));
      break;
    case SYS_listen:
      v = listen_verdict(*policy, static_cast<int>(call.args[0]));
      break;
    case SYS_connect:
    case SYS_bind:
    case SYS_sendto:
    case SYS_sendmsg:
    case SYS_sendmmsg: {
      CopiesMemory memory(t.scratch);
      AddressVisitor visitor(*policy, t.scratch, nr);
      (void)abi::walk(rewritten, memory, visitor, abi::Phase::kEntry);
      v = visitor.verdict;
      break;
    }
    default:
      return 0;
  }
  if (v.allowed()) return 0;
  char answer[32];
  const char* name = abi::errno_name(v.err);
  std::snprintf(answer, sizeof answer, "-1 %s", name != nullptr ? name : "?");
  report_call(t, call, "denied", answer, nullptr, v.rule, nullptr, -v.err);
  return -v.err;
}

}  // namespace dunk::sandbox
