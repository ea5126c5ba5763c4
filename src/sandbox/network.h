// The sandbox's network options: --unshare-net, --allow-connect
// ADDR[/PREFIX]:PORT, --allow-bind PORT (Dune's ufirewall as a feature,
// without its race).
//
// Decided in ring 0 on the copies the supervisor makes of every call's
// memory (copies.h): the socket address the decision reads is the copy the
// kernel is handed, so a thread that rewrites the program's sockaddr after
// the check changes nothing. The copies are found by the system-call schema
// (abi::walk over the call as rewritten, Shape::kSockaddr), for every call
// that carries an address the kernel reads: connect, bind, sendto, sendmsg,
// sendmmsg.
//
// With any of the options given:
//   socket, socketpair   AF_UNIX; AF_INET and AF_INET6 only when an
//                        --allow-connect or --allow-bind is given, and only
//                        TCP and UDP (SCTP's setsockopt calls connect and
//                        bind behind the calls decided here; raw sockets
//                        write their own headers); every other family
//                        (netlink, packet, vsock, ...) is refused (EACCES)
//   connect, send*       an IPv4 or IPv6 destination an --allow-connect rule
//                        matches (IPv4-mapped IPv6 addresses are their IPv4
//                        address), an AF_UNIX path, or AF_UNSPEC for connect
//                        (which disconnects); anything else, abstract
//                        AF_UNIX names among it (they belong to the network
//                        namespace: host services such as X11 and D-Bus
//                        listen there), fails with EPERM (the kernel's answer
//                        for a local firewall rule)
//   bind                 an --allow-bind port, or port 0 (an ephemeral
//                        port, as connect takes implicitly), or an AF_UNIX
//                        path; anything else fails with EACCES
//   listen               only on an --allow-bind port (a socket bound to an
//                        ephemeral port, or not bound, would listen on a port
//                        no option named): EACCES
// A refused call is reported like a policy denial, its rule being the
// option's ("--allow-connect: 127.0.0.1 port 81 matches no rule").
//
// --unshare-net's network namespace (make_network_namespace, called by the
// sandbox's process before it enters VM mode, so that the whole sandboxed
// tree inherits it): a namespace of the program's own with only `lo`, up.
// There the decisions above change (set_namespace):
//   socket               AF_UNIX, AF_INET, AF_INET6 (any type while no
//                        --allow-* option is given; TCP and UDP when one is)
//                        and AF_NETLINK's NETLINK_ROUTE (the namespace's own
//                        interfaces and routes); every other family (vsock,
//                        which no network namespace confines, packet, ...)
//                        is refused (EACCES)
//   connect, send*       free unless --allow-connect is given (then as
//                        above); abstract AF_UNIX names and netlink
//                        addresses are the namespace's own: allowed
//   bind, listen         free unless --allow-bind is given (then as above)
// The host's loopback listeners are not reachable from the namespace: a
// rule of --allow-connect can only name the namespace's own addresses.
// Where no namespace can be made (no CAP_SYS_ADMIN, no user namespaces),
// the decisions above hold unchanged and dunk says so on stderr.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "abi/walk.h"

namespace dunk::sandbox {

// One --allow-connect rule: IPv6 addresses, IPv4 ones as ::ffff:a.b.c.d.
struct ConnectRule {
  std::array<std::uint8_t, 16> address{};
  unsigned prefix = 128;   // IPv4's /p is 96 + p
  std::uint16_t port = 0;  // 0: any port ("*")
};

// What a decision says: allowed (err 0), or the errno and the rule text of
// the report.
struct NetVerdict {
  int err = 0;
  char rule[192] = {};
  bool allowed() const noexcept { return err == 0; }
};

class NetworkPolicy {
 public:
  // Whether any option was given (nothing is decided otherwise).
  bool active() const noexcept { return unshare_ || !connect_.empty() || !bind_.empty(); }

  // The command line; each returns why the value is refused, or "".
  void set_unshare() noexcept { unshare_ = true; }
  bool unshare() const noexcept { return unshare_; }
  // The program runs in a network namespace of its own (--unshare-net).
  void set_namespace() noexcept { namespace_ = true; }
  bool in_namespace() const noexcept { return namespace_; }
  std::string add_connect(std::string_view text);
  std::string add_bind(std::string_view text);

  const std::vector<ConnectRule>& connect_rules() const noexcept { return connect_; }
  const std::vector<std::uint16_t>& bind_ports() const noexcept { return bind_; }

  // The decisions, on values and bytes the supervisor holds.
  NetVerdict socket(std::int64_t domain, std::int64_t type, std::int64_t protocol) const noexcept;
  // The address of a connect (sending: false) or of a sendto/sendmsg/
  // sendmmsg (true): `size` bytes at `address`, as the kernel reads them.
  NetVerdict destination(const std::byte* address, std::size_t size, bool sending) const noexcept;
  NetVerdict bind(const std::byte* address, std::size_t size) const noexcept;
  // listen() on a socket whose local address getsockname gave.
  NetVerdict listen(const std::byte* local, std::size_t size) const noexcept;

 private:
  bool port_bindable(std::uint16_t port) const noexcept;
  bool connect_allowed(const std::array<std::uint8_t, 16>& address, std::uint16_t port) const noexcept;
  const char* option() const noexcept;

  bool unshare_ = false;
  bool namespace_ = false;
  std::vector<ConnectRule> connect_;
  std::vector<std::uint16_t> bind_;
};

// ---- The namespace -------------------------------------------------------------

// What make_network_namespace did.
struct NetNamespace {
  bool made = false;            // the process is in a new network namespace
  bool user_namespace = false;  // made inside a user namespace of dunk's (unprivileged)
  std::string why;              // !made: the kernel's answers; made: a step that
                                // failed after it (lo down, capabilities kept)
};

// Moves the calling process (single-threaded) into a new network namespace
// and brings its `lo` up: unshare(CLONE_NEWNET) where dunk may (root,
// CAP_SYS_ADMIN), else unshare(CLONE_NEWUSER | CLONE_NEWNET) with the
// caller's own uid and gid mapped (setgroups denied) and every capability
// the user namespace gave dropped again before returning, so that the
// program has no more power than before. On failure the process is where
// it was.
NetNamespace make_network_namespace();

// ---- The runtime -------------------------------------------------------------

struct ProgramThread;

// In the generic path (forward_with_copies), after the copies were made and
// before the call goes to the host: 0 to go on, or the -errno the call
// fails with (already reported). `rewritten` is the call on the copies.
long decide_network(ProgramThread& t, const abi::Call& call, const abi::Call& rewritten) noexcept;

}  // namespace dunk::sandbox
