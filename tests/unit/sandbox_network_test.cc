// The sandbox's network decisions without KVM: --allow-connect's and
// --allow-bind's parsing, and each decision on socket addresses as the
// kernel lays them out.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "sandbox/network.h"

namespace dunk::sandbox {
namespace {

sockaddr_in v4(const char* address, unsigned port, int family = AF_INET) {
  sockaddr_in a{};
  a.sin_family = static_cast<sa_family_t>(family);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, address, &a.sin_addr);
  return a;
}

sockaddr_in6 v6(const char* address, unsigned port) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET6, address, &a.sin6_addr);
  return a;
}

template <class T>
const std::byte* bytes(const T& t) {
  return reinterpret_cast<const std::byte*>(&t);
}

NetworkPolicy with(std::initializer_list<const char*> connect, std::initializer_list<const char*> bind = {}) {
  NetworkPolicy p;
  for (const char* c : connect) EXPECT_EQ(p.add_connect(c), "") << c;
  for (const char* b : bind) EXPECT_EQ(p.add_bind(b), "") << b;
  return p;
}

int connect_errno(const NetworkPolicy& p, const auto& address, std::size_t size = 0, bool sending = false) {
  return p.destination(bytes(address), size != 0 ? size : sizeof address, sending).err;
}

TEST(SandboxNetwork, NothingIsDecidedWithoutAnOption) {
  NetworkPolicy p;
  EXPECT_FALSE(p.active());
  p.set_unshare();
  EXPECT_TRUE(p.active());
  EXPECT_TRUE(with({"127.0.0.1:80"}).active());
  EXPECT_TRUE(with({}, {"8080"}).active());
}

TEST(SandboxNetwork, ParsesIpv4AndIpv6Rules) {
  NetworkPolicy p = with({"10.1.2.3/8:443", "[2001:db8::]/32:*", "[::1/128]:8080", "192.168.0.7:53"});
  ASSERT_EQ(p.connect_rules().size(), 4u);
  const ConnectRule& r = p.connect_rules()[0];
  EXPECT_EQ(r.prefix, 96u + 8u);  // IPv4 as ::ffff:a.b.c.d
  EXPECT_EQ(r.port, 443);
  EXPECT_EQ(r.address[10], 0xff);
  EXPECT_EQ(r.address[12], 10);
  EXPECT_EQ(r.address[13], 0);  // host bits beyond the prefix are dropped
  EXPECT_EQ(p.connect_rules()[1].prefix, 32u);
  EXPECT_EQ(p.connect_rules()[1].port, 0);  // any port
  EXPECT_EQ(p.connect_rules()[2].prefix, 128u);
  EXPECT_EQ(p.connect_rules()[3].prefix, 128u);
}

TEST(SandboxNetwork, RefusesBadRulesWithTheReason) {
  NetworkPolicy p;
  EXPECT_EQ(p.add_connect("1.2.3.4"), "'1.2.3.4': no ':PORT' after the address (ADDR[/PREFIX]:PORT)");
  EXPECT_EQ(p.add_connect("::1:80"), "'::1:80': an IPv6 address goes in brackets ([ADDR]/PREFIX:PORT)");
  EXPECT_EQ(p.add_connect("[::1:80"), "'[::1:80': no ']' after the IPv6 address");
  EXPECT_EQ(p.add_connect("[::1]80"), "'[::1]80': no ':PORT' after the address (ADDR[/PREFIX]:PORT)");
  EXPECT_EQ(p.add_connect("[1.2.3.4]:80"), "'[1.2.3.4]:80': '1.2.3.4' is not an IPv6 address");
  EXPECT_EQ(p.add_connect("host:80"), "'host:80': 'host' is not an IPv4 address (names are not resolved)");
  EXPECT_EQ(p.add_connect("1.2.3.4/:80"), "'1.2.3.4/:80': the prefix '' is not 0-32");
  EXPECT_EQ(p.add_connect("1.2.3.4/33:80"), "'1.2.3.4/33:80': the prefix '33' is not 0-32");
  EXPECT_EQ(p.add_connect("[::]/129:80"), "'[::]/129:80': the prefix '129' is not 0-128");
  EXPECT_EQ(p.add_connect("1.2.3.4:0"), "'1.2.3.4:0': the port '0' is not 1-65535 or *");
  EXPECT_EQ(p.add_connect("1.2.3.4:65536"), "'1.2.3.4:65536': the port '65536' is not 1-65535 or *");
  EXPECT_EQ(p.add_connect("1.2.3.4:http"), "'1.2.3.4:http': the port 'http' is not 1-65535 or *");
  EXPECT_EQ(p.add_bind("0"), "'0' is not a port 1-65535 (port 0, an ephemeral one, is always allowed)");
  EXPECT_EQ(p.add_bind("x"), "'x' is not a port 1-65535 (port 0, an ephemeral one, is always allowed)");
  EXPECT_TRUE(p.connect_rules().empty());
  EXPECT_TRUE(p.bind_ports().empty());
}

TEST(SandboxNetwork, SocketFamilies) {
  NetworkPolicy none;
  none.set_unshare();
  EXPECT_EQ(none.socket(AF_UNIX, SOCK_STREAM, 0).err, 0);
  EXPECT_EQ(none.socket(AF_INET, SOCK_STREAM, 0).err, EACCES);
  EXPECT_STREQ(none.socket(AF_INET6, SOCK_DGRAM, 0).rule, "--unshare-net: an AF_INET6 socket");
  EXPECT_EQ(none.socket(AF_NETLINK, SOCK_RAW, 0).err, EACCES);
  EXPECT_EQ(none.socket(12345, SOCK_RAW, 0).err, EACCES);
  const NetworkPolicy some = with({"127.0.0.1:80"});
  EXPECT_EQ(some.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0).err, 0);
  EXPECT_EQ(some.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP).err, 0);
  EXPECT_EQ(some.socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDP).err, 0);
  EXPECT_EQ(some.socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP).err, EACCES);
  EXPECT_EQ(some.socket(AF_INET, SOCK_SEQPACKET, 0).err, EACCES);
  EXPECT_EQ(some.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP).err, EACCES);
  EXPECT_EQ(some.socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP).err, EACCES);
  EXPECT_EQ(some.socket(AF_PACKET, SOCK_DGRAM, 0).err, EACCES);
  // The register's upper half is not the kernel's int.
  EXPECT_EQ(some.socket(std::int64_t{AF_INET} | (std::int64_t{1} << 32), SOCK_STREAM, 0).err, 0);
}

TEST(SandboxNetwork, ConnectMatchesAddressPrefixAndPort) {
  const NetworkPolicy p = with({"127.0.0.0/8:8080", "10.0.0.1:*", "[2001:db8::]/32:443"});
  EXPECT_EQ(connect_errno(p, v4("127.0.0.1", 8080)), 0);
  EXPECT_EQ(connect_errno(p, v4("127.255.1.2", 8080)), 0);
  EXPECT_EQ(connect_errno(p, v4("127.0.0.1", 8081)), EPERM);
  EXPECT_EQ(connect_errno(p, v4("128.0.0.1", 8080)), EPERM);
  EXPECT_EQ(connect_errno(p, v4("10.0.0.1", 1)), 0);
  EXPECT_EQ(connect_errno(p, v4("10.0.0.2", 1)), EPERM);
  EXPECT_EQ(connect_errno(p, v6("2001:db8:1::5", 443)), 0);
  EXPECT_EQ(connect_errno(p, v6("2001:db9::5", 443)), EPERM);
  // IPv4-mapped IPv6 addresses are their IPv4 address, both ways.
  EXPECT_EQ(connect_errno(p, v6("::ffff:127.0.0.1", 8080)), 0);
  EXPECT_EQ(connect_errno(p, v6("::ffff:127.0.0.1", 9)), EPERM);
  EXPECT_EQ(connect_errno(with({"[::ffff:10.0.0.0]/104:22"}), v4("10.9.9.9", 22)), 0);
  // ::1 is not 127.0.0.1.
  EXPECT_EQ(connect_errno(p, v6("::1", 8080)), EPERM);
  EXPECT_STREQ(p.destination(bytes(v4("127.0.0.1", 81)), sizeof(sockaddr_in), false).rule,
               "--allow-connect: no rule for 127.0.0.1 port 81");
}

TEST(SandboxNetwork, ConnectAddressesTheKernelReadsOtherwise) {
  const NetworkPolicy p = with({"127.0.0.1:80"});
  // Too short to be what the kernel takes: refused (the kernel's EINVAL).
  EXPECT_EQ(connect_errno(p, v4("127.0.0.1", 80), 8), EINVAL);
  EXPECT_EQ(connect_errno(p, v6("::1", 80), 20), EINVAL);
  EXPECT_EQ(connect_errno(p, v4("127.0.0.1", 80), 1), EINVAL);
  // AF_UNSPEC: connect disconnects; a send reads it as AF_INET.
  const sockaddr_in unspec = v4("10.0.0.1", 80, AF_UNSPEC);
  EXPECT_EQ(connect_errno(p, unspec), 0);
  EXPECT_EQ(connect_errno(p, unspec, 0, /*sending=*/true), EPERM);
  EXPECT_EQ(connect_errno(p, v4("127.0.0.1", 80, AF_UNSPEC), 0, true), 0);
  // Other families.
  sockaddr_storage other{};
  other.ss_family = AF_VSOCK;
  EXPECT_EQ(connect_errno(p, other), EPERM);
  other.ss_family = 77;
  EXPECT_STREQ(p.destination(bytes(other), sizeof other, false).rule, "--allow-connect: an address of family 77");
}

TEST(SandboxNetwork, UnixPathsStayAbstractNamesDoNot) {
  NetworkPolicy p;
  p.set_unshare();
  sockaddr_un path{};
  path.sun_family = AF_UNIX;
  std::strcpy(path.sun_path, "/run/x.sock");
  EXPECT_EQ(connect_errno(p, path), 0);
  EXPECT_EQ(p.bind(bytes(path), sizeof path).err, 0);
  sockaddr_un abstract{};
  abstract.sun_family = AF_UNIX;
  std::memcpy(abstract.sun_path, "\0x11-display", 12);
  const std::size_t size = offsetof(sockaddr_un, sun_path) + 12;
  EXPECT_EQ(connect_errno(p, abstract, size), EPERM);
  EXPECT_EQ(p.bind(bytes(abstract), size).err, EACCES);
  // bind of the family alone: the kernel's autobind to an abstract name.
  EXPECT_EQ(p.bind(bytes(abstract), sizeof(sa_family_t)).err, EACCES);
}

TEST(SandboxNetwork, BindAndListenOnlyOnNamedPorts) {
  const NetworkPolicy p = with({}, {"8080", "9090", "8080"});
  EXPECT_EQ(p.bind_ports().size(), 2u);
  EXPECT_EQ(p.bind(bytes(v4("0.0.0.0", 8080)), sizeof(sockaddr_in)).err, 0);
  EXPECT_EQ(p.bind(bytes(v6("::", 9090)), sizeof(sockaddr_in6)).err, 0);
  EXPECT_EQ(p.bind(bytes(v4("127.0.0.1", 0)), sizeof(sockaddr_in)).err, 0);  // ephemeral
  EXPECT_EQ(p.bind(bytes(v4("127.0.0.1", 22)), sizeof(sockaddr_in)).err, EACCES);
  EXPECT_STREQ(p.bind(bytes(v4("127.0.0.1", 22)), sizeof(sockaddr_in)).rule, "--allow-bind: port 22 is not one");
  EXPECT_EQ(p.bind(bytes(v4("0.0.0.0", 22, AF_UNSPEC)), sizeof(sockaddr_in)).err, EACCES);
  EXPECT_EQ(p.bind(bytes(v4("0.0.0.0", 22)), 12).err, EINVAL);
  EXPECT_EQ(p.listen(bytes(v4("0.0.0.0", 8080)), sizeof(sockaddr_in)).err, 0);
  EXPECT_EQ(p.listen(bytes(v4("0.0.0.0", 0)), sizeof(sockaddr_in)).err, EACCES);
  EXPECT_EQ(p.listen(bytes(v6("::", 40000)), sizeof(sockaddr_in6)).err, EACCES);
  sockaddr_un path{};
  path.sun_family = AF_UNIX;
  std::strcpy(path.sun_path, "/tmp/s");
  EXPECT_EQ(p.listen(bytes(path), sizeof path).err, 0);
  // No --allow-connect: every IPv4/IPv6 destination is refused.
  EXPECT_EQ(connect_errno(p, v4("127.0.0.1", 8080)), EPERM);
}

// In the program's own network namespace: IP sockets and addresses are the
// namespace's, free while no rule is given; abstract AF_UNIX names are the
// namespace's own; vsock (which no network namespace confines) and packet
// sockets stay refused.
TEST(SandboxNetwork, InTheNamespace) {
  NetworkPolicy p;
  p.set_unshare();
  p.set_namespace();
  EXPECT_EQ(p.socket(AF_INET, SOCK_STREAM, 0).err, 0);
  EXPECT_EQ(p.socket(AF_INET6, SOCK_DGRAM, 0).err, 0);
  EXPECT_EQ(p.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP).err, 0);
  EXPECT_EQ(p.socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE).err, 0);
  EXPECT_EQ(p.socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT).err, EACCES);
  EXPECT_EQ(p.socket(AF_VSOCK, SOCK_STREAM, 0).err, EACCES);
  EXPECT_STREQ(p.socket(AF_VSOCK, SOCK_STREAM, 0).rule,
               "--unshare-net: an AF_VSOCK socket (only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK's NETLINK_ROUTE in "
               "the namespace)");
  EXPECT_EQ(p.socket(AF_PACKET, SOCK_DGRAM, 0).err, EACCES);
  EXPECT_EQ(connect_errno(p, v4("127.0.0.1", 80)), 0);
  EXPECT_EQ(connect_errno(p, v4("10.1.2.3", 80), 0, true), 0);  // the kernel: ENETUNREACH
  EXPECT_EQ(p.bind(bytes(v4("127.0.0.1", 22)), sizeof(sockaddr_in)).err, 0);
  EXPECT_EQ(p.listen(bytes(v4("127.0.0.1", 22)), sizeof(sockaddr_in)).err, 0);
  sockaddr_un abstract{};
  abstract.sun_family = AF_UNIX;
  std::memcpy(abstract.sun_path, "\0x11-display", 12);
  const std::size_t size = offsetof(sockaddr_un, sun_path) + 12;
  EXPECT_EQ(connect_errno(p, abstract, size), 0);
  EXPECT_EQ(p.bind(bytes(abstract), size).err, 0);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  EXPECT_EQ(connect_errno(p, kernel, 0, true), 0);
  EXPECT_EQ(p.bind(bytes(kernel), sizeof kernel).err, 0);
}

// Rules in the namespace restrict it further, each its own calls.
TEST(SandboxNetwork, RulesInTheNamespace) {
  NetworkPolicy binds = with({}, {"8080"});
  binds.set_unshare();
  binds.set_namespace();
  EXPECT_EQ(binds.bind(bytes(v4("127.0.0.1", 22)), sizeof(sockaddr_in)).err, EACCES);
  EXPECT_EQ(binds.bind(bytes(v4("127.0.0.1", 8080)), sizeof(sockaddr_in)).err, 0);
  EXPECT_EQ(binds.listen(bytes(v4("127.0.0.1", 0)), sizeof(sockaddr_in)).err, EACCES);
  EXPECT_EQ(connect_errno(binds, v4("127.0.0.1", 22)), 0);  // no --allow-connect: free inside
  EXPECT_EQ(binds.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP).err, EACCES);  // rules: TCP and UDP only
  NetworkPolicy connects = with({"127.0.0.1:80"});
  connects.set_unshare();
  connects.set_namespace();
  EXPECT_EQ(connect_errno(connects, v4("127.0.0.1", 81)), EPERM);
  EXPECT_EQ(connect_errno(connects, v4("127.0.0.1", 80)), 0);
  EXPECT_EQ(connects.bind(bytes(v4("127.0.0.1", 22)), sizeof(sockaddr_in)).err, 0);  // no --allow-bind
}

// The interfaces /proc/self/net/dev lists.
std::string interfaces() {
  std::ifstream dev("/proc/self/net/dev");
  std::string line, names;
  for (int n = 0; std::getline(dev, line); ++n) {
    const std::size_t colon = line.find(':');
    if (n < 2 || colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    names += (names.empty() ? "" : " ") + name;
  }
  return names;
}

// A loopback TCP connection to itself, over 127.0.0.1.
bool loopback_works() {
  const int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = v4("127.0.0.1", 0);
  socklen_t size = sizeof a;
  bool ok = bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(l, 1) == 0 &&
            getsockname(l, reinterpret_cast<sockaddr*>(&a), &size) == 0;
  const int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ok = ok && connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  const int s = ok ? accept(l, nullptr, nullptr) : -1;
  char byte = 0;
  ok = ok && s >= 0 && write(c, "x", 1) == 1 && read(s, &byte, 1) == 1 && byte == 'x';
  close(l);
  close(c);
  if (s >= 0) close(s);
  return ok;
}

std::string status_field(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with(field)) return line.substr(line.find_first_not_of(" \t", std::strlen(field)));
  }
  return {};
}

// What a child that made the namespace saw, as "made userns why|interfaces|
// loopback|uid|CapEff", or the reason it did not make one.
std::string in_a_child(uid_t user) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(out[0]);
    if (user != 0 && (setresgid(user, user, user) != 0 || setresuid(user, user, user) != 0)) _exit(3);
    // As after an execve by that user (a change of ids makes the process
    // undumpable, and its /proc/self files root's).
    prctl(PR_SET_DUMPABLE, 1);
    const NetNamespace ns = make_network_namespace();
    std::ostringstream text;
    text << ns.made << " " << ns.user_namespace << " [" << ns.why << "]";
    if (ns.made) {
      text << "|" << interfaces() << "|" << loopback_works() << "|" << getuid() << "|" << status_field("CapEff:");
    }
    const std::string s = text.str();
    _exit(write(out[1], s.data(), s.size()) == static_cast<ssize_t>(s.size()) ? 0 : 4);
  }
  close(out[1]);
  std::string text;
  char buffer[512];
  for (ssize_t n; (n = read(out[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<std::size_t>(n));
  close(out[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  return text;
}

// Whether `user` may make a user namespace here (the kernel asked directly).
bool user_namespaces_for(uid_t user) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(user, user, user) != 0 || setresuid(user, user, user) != 0) _exit(3);
    _exit(unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// As root (the unit tier runs as root): a plain network namespace, only lo,
// up, a loopback connection works; the capabilities are root's.
TEST(SandboxNetworkNamespace, AsRootOnlyLoopbackUp) {
  ASSERT_EQ(geteuid(), 0u) << "the unit tier runs as root";
  const std::string seen = in_a_child(0);
  EXPECT_EQ(seen.substr(0, seen.find("|")), "1 0 []") << seen;
  EXPECT_NE(seen.find("|lo|1|0|"), std::string::npos) << seen;
  // The test itself is still in the host's namespace.
  EXPECT_NE(interfaces(), "");
}

// As nobody: a network namespace inside a user namespace, with nobody
// still nobody and no capability left; or, where the kernel refuses nobody
// a user namespace, no namespace and both refusals named.
TEST(SandboxNetworkNamespace, UnprivilegedInAUserNamespaceOrNone) {
  ASSERT_EQ(geteuid(), 0u) << "the unit tier runs as root";
  constexpr uid_t kNobody = 65534;
  const std::string seen = in_a_child(kNobody);
  if (user_namespaces_for(kNobody)) {
    EXPECT_EQ(seen, "1 1 []|lo|1|65534|0000000000000000");
  } else {
    EXPECT_EQ(seen.substr(0, 4), "0 0 ") << seen;
    EXPECT_NE(seen.find("unshare(CLONE_NEWNET): EPERM, unshare(CLONE_NEWUSER | CLONE_NEWNET): "), std::string::npos)
        << seen;
  }
}

}  // namespace
}  // namespace dunk::sandbox
