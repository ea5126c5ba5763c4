/* The program tests/cli/sandbox_limits_test.sh runs under `dunk sandbox`'s
 * network options (--unshare-net, --allow-connect, --allow-bind). Each mode
 * prints what each attempt met ("ok" or the errno's name):
 *
 *   sockets          one socket of each kind
 *   rules A D        with --allow-connect 127.0.0.1:A --allow-bind A
 *                    --allow-bind D: listeners on both, then connects,
 *                    sends and binds allowed and not (IPv4, IPv4-mapped
 *                    IPv6, UDP, sendmsg, sendmmsg, AF_UNSPEC, AF_UNIX; the
 *                    socket file goes in $SOCKET_DIR, default /tmp)
 *   fetch PORT       connects to 127.0.0.1:PORT and prints the line it reads
 *   loopback PORT    serves on 127.0.0.1:PORT and connects to itself (TCP,
 *                    UDP), then a fork child connects to the parent's
 *                    listener: what --unshare-net's namespace must allow
 *   interfaces       the interfaces the process sees (/proc/net/dev,
 *                    if_nameindex), whether lo is up, and the IPv4
 *                    addresses of its interfaces (getifaddrs)
 *   race A D ROUNDS  a sibling thread flips the sockaddr between 127.0.0.1:A
 *                    and :D while this one connects ROUNDS times: where the
 *                    connections went, and how many reached D's listener
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *result(int ok) {
  if (ok) return "ok";
  const char *name = strerrorname_np(errno);
  return name != NULL ? name : "?";
}

static void show(const char *what, int ok) { printf("%s: %s\n", what, result(ok)); }

static struct sockaddr_in v4(unsigned port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static struct sockaddr_in6 mapped(unsigned port) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port)};
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.sin6_addr);
  return a;
}

static int try_socket(const char *what, int domain, int type, int protocol) {
  int fd = socket(domain, type, protocol);
  show(what, fd >= 0);
  if (fd >= 0) close(fd);
  return 0;
}

static int sockets(void) {
  try_socket("AF_UNIX stream", AF_UNIX, SOCK_STREAM, 0);
  int pair[2];
  show("AF_UNIX socketpair", socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) == 0);
  try_socket("AF_INET stream", AF_INET, SOCK_STREAM, 0);
  try_socket("AF_INET datagram", AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try_socket("AF_INET6 stream", AF_INET6, SOCK_STREAM, IPPROTO_TCP);
  try_socket("AF_INET raw", AF_INET, SOCK_RAW, IPPROTO_ICMP);
  try_socket("AF_INET SCTP", AF_INET, SOCK_STREAM, IPPROTO_SCTP);
  try_socket("AF_NETLINK", AF_NETLINK, SOCK_RAW, 0);
  try_socket("AF_PACKET", AF_PACKET, SOCK_DGRAM, 0);
  try_socket("AF_VSOCK", AF_VSOCK, SOCK_STREAM, 0);
  return 0;
}

static int listener(int type, unsigned port) {
  int fd = socket(AF_INET, type | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = v4(port);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
  if (type == SOCK_STREAM && listen(fd, 64) != 0) return -1;
  return fd;
}

static int connect_to(int domain, const void *address, socklen_t size) {
  int fd = socket(domain, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, address, size) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

static int rules(unsigned allowed, unsigned denied) {
  int la = listener(SOCK_STREAM, allowed), ld = listener(SOCK_STREAM, denied);
  show("listen on A", la >= 0);
  show("listen on D", ld >= 0);
  /* TCP over IPv4: A works end to end, D is refused. */
  struct sockaddr_in a = v4(allowed), d = v4(denied);
  int c = connect_to(AF_INET, &a, sizeof a);
  show("connect A", c >= 0);
  if (c >= 0) {
    int s = -1;
    for (int i = 0; i < 1000 && (s = accept(la, NULL, NULL)) < 0; ++i) usleep(1000);
    char buf[8] = {0};
    int ok = s >= 0 && write(c, "ping", 4) == 4 && read(s, buf, 4) == 4 && strcmp(buf, "ping") == 0;
    show("data over A", ok);
    close(c);
    if (s >= 0) close(s);
  }
  show("connect D", connect_to(AF_INET, &d, sizeof d) >= 0);
  /* The same over IPv6, as IPv4-mapped addresses. */
  struct sockaddr_in6 ma = mapped(allowed), md = mapped(denied);
  c = connect_to(AF_INET6, &ma, sizeof ma);
  show("connect ::ffff:127.0.0.1 A", c >= 0);
  if (c >= 0) close(c);
  show("connect ::ffff:127.0.0.1 D", connect_to(AF_INET6, &md, sizeof md) >= 0);
  /* Too short to be an address: the kernel's EINVAL. */
  show("connect with 8 bytes of address", connect_to(AF_INET, &a, 8) >= 0);
  /* UDP: sendto, sendmsg, sendmmsg, and AF_UNSPEC read as AF_INET. */
  int ua = listener(SOCK_DGRAM, allowed);
  show("bind UDP A", ua >= 0);
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  show("sendto A", sendto(u, "x", 1, 0, (struct sockaddr *)&a, sizeof a) == 1);
  show("sendto D", sendto(u, "x", 1, 0, (struct sockaddr *)&d, sizeof d) == 1);
  struct sockaddr_in unspec = d;
  unspec.sin_family = AF_UNSPEC;
  show("sendto D as AF_UNSPEC", sendto(u, "x", 1, 0, (struct sockaddr *)&unspec, sizeof unspec) == 1);
  struct iovec iov = {.iov_base = "y", .iov_len = 1};
  struct msghdr m = {.msg_name = &d, .msg_namelen = sizeof d, .msg_iov = &iov, .msg_iovlen = 1};
  show("sendmsg D", sendmsg(u, &m, 0) == 1);
  m.msg_name = &a;
  show("sendmsg A", sendmsg(u, &m, 0) == 1);
  struct mmsghdr mm[2] = {{.msg_hdr = m}, {.msg_hdr = m}};
  mm[1].msg_hdr.msg_name = &d;
  show("sendmmsg A then D", sendmmsg(u, mm, 2, 0) == 2);
  char got[8];
  int datagrams = 0;
  for (int i = 0; i < 200; ++i) {
    if (recv(ua, got, sizeof got, 0) > 0) ++datagrams; else usleep(1000);
  }
  printf("datagrams that reached A: %d\n", datagrams);
  close(u);
  /* Binding: the ports named, or an ephemeral one (on which listen fails). */
  int b = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in other = v4(denied + 1 == allowed ? denied + 2 : denied + 1);
  show("bind another port", bind(b, (struct sockaddr *)&other, sizeof other) == 0);
  close(b);
  b = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in any = v4(0);
  show("bind port 0", bind(b, (struct sockaddr *)&any, sizeof any) == 0);
  show("listen on it", listen(b, 1) == 0);
  close(b);
  b = socket(AF_INET, SOCK_STREAM, 0);
  show("listen unbound", listen(b, 1) == 0);
  close(b);
  /* AF_UNIX: files work, abstract names do not. */
  struct sockaddr_un path = {.sun_family = AF_UNIX};
  /* Where sockets can be made (not every file system takes them). */
  const char *dir = getenv("SOCKET_DIR") != NULL ? getenv("SOCKET_DIR") : "/tmp";
  snprintf(path.sun_path, sizeof path.sun_path, "%s/dunk-net-test.%d", dir, getpid());
  unlink(path.sun_path);
  int us = socket(AF_UNIX, SOCK_STREAM, 0);
  show("bind AF_UNIX path", bind(us, (struct sockaddr *)&path, sizeof path) == 0);
  show("listen AF_UNIX path", listen(us, 1) == 0);
  c = connect_to(AF_UNIX, &path, sizeof path);
  show("connect AF_UNIX path", c >= 0);
  if (c >= 0) close(c);
  close(us);
  unlink(path.sun_path);
  struct sockaddr_un abstract = {.sun_family = AF_UNIX};
  memcpy(abstract.sun_path, "\0dunk-net-test", 14);
  socklen_t abstract_size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 14);
  us = socket(AF_UNIX, SOCK_STREAM, 0);
  show("bind AF_UNIX abstract", bind(us, (struct sockaddr *)&abstract, abstract_size) == 0);
  close(us);
  show("connect AF_UNIX abstract", connect_to(AF_UNIX, &abstract, abstract_size) >= 0);
  return 0;
}

static int fetch(unsigned port) {
  struct sockaddr_in a = v4(port);
  int fd = connect_to(AF_INET, &a, sizeof a);
  show("connect", fd >= 0);
  if (fd < 0) return 1;
  char line[128] = {0};
  ssize_t n = read(fd, line, sizeof line - 1);
  printf("read: %s", n > 0 ? line : "nothing\n");
  return 0;
}

/* "ping" from the client to the server, "pong" back. */
static int exchange(int client, int server) {
  char buf[8] = {0};
  return write(client, "ping", 4) == 4 && read(server, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0 &&
         write(server, "pong", 4) == 4 && read(client, buf, 4) == 4 && memcmp(buf, "pong", 4) == 0;
}

static int loopback(unsigned port) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = v4(port);
  int ok = l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0;
  show("bind 127.0.0.1:PORT", ok);
  ok = ok && listen(l, 4) == 0;
  show("listen", ok);
  if (!ok) return 1;
  int c = connect_to(AF_INET, &a, sizeof a);
  show("connect to itself", c >= 0);
  int s = c >= 0 ? accept(l, NULL, NULL) : -1;
  show("accept", s >= 0);
  show("data both ways", s >= 0 && exchange(c, s));
  if (s >= 0) close(s);
  if (c >= 0) close(c);
  /* UDP to itself. */
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in ua = v4(0);
  socklen_t size = sizeof ua;
  ok = u >= 0 && bind(u, (struct sockaddr *)&ua, sizeof ua) == 0 && getsockname(u, (struct sockaddr *)&ua, &size) == 0;
  char buf[8] = {0};
  ok = ok && sendto(u, "dgram", 5, 0, (struct sockaddr *)&ua, sizeof ua) == 5 && recv(u, buf, sizeof buf, 0) == 5 &&
       memcmp(buf, "dgram", 5) == 0;
  show("UDP to itself", ok);
  if (u >= 0) close(u);
  /* A fork child reaches the parent's listener: the tree shares the namespace. */
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    int cc = connect_to(AF_INET, &a, sizeof a);
    char b[8] = {0};
    _exit(cc >= 0 && write(cc, "ping", 4) == 4 && read(cc, b, 4) == 4 && memcmp(b, "pong", 4) == 0 ? 0 : 1);
  }
  s = child > 0 ? accept(l, NULL, NULL) : -1;
  ok = s >= 0 && read(s, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0 && write(s, "pong", 4) == 4;
  int status = 0;
  ok = child > 0 && waitpid(child, &status, 0) == child && ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  show("a fork child connects to the parent", ok);
  close(l);
  return 0;
}

static int interfaces(void) {
  FILE *f = fopen("/proc/net/dev", "r");
  char line[512], names[512] = "";
  for (int n = 0; f != NULL && fgets(line, sizeof line, f) != NULL; ++n) {
    char *colon = strchr(line, ':');
    if (n < 2 || colon == NULL) continue;
    *colon = '\0';
    char *name = line;
    while (*name == ' ') ++name;
    strcat(strcat(names, names[0] ? " " : ""), name);
  }
  if (f != NULL) fclose(f);
  printf("/proc/net/dev: %s\n", f != NULL ? names : result(0));
  struct if_nameindex *all = if_nameindex();
  names[0] = '\0';
  for (struct if_nameindex *i = all; i != NULL && i->if_index != 0; ++i) {
    strcat(strcat(names, names[0] ? " " : ""), i->if_name);
  }
  printf("if_nameindex: %s\n", all != NULL ? names : result(0));
  if (all != NULL) if_freenameindex(all);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq r = {0};
  strcpy(r.ifr_name, "lo");
  if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &r) == 0) {
    printf("lo: %s\n", (r.ifr_flags & IFF_UP) ? "up" : "down");
  } else {
    printf("lo: %s\n", result(0));
  }
  if (fd >= 0) close(fd);
  struct ifaddrs *addresses = NULL;
  if (getifaddrs(&addresses) != 0) {
    printf("IPv4 addresses: %s\n", result(0));
    return 0;
  }
  names[0] = '\0';
  for (struct ifaddrs *a = addresses; a != NULL; a = a->ifa_next) {
    if (a->ifa_addr == NULL || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, text, sizeof text);
    strcat(strcat(strcat(strcat(names, names[0] ? " " : ""), a->ifa_name), " "), text);
  }
  printf("IPv4 addresses: %s\n", names);
  freeifaddrs(addresses);
  return 0;
}

/* The race: the sibling flips one field, the port, as the connect happens. */
static struct sockaddr_in race_address;
static atomic_int stop_flipping, flipping;
static unsigned short race_ports[2];

static void hold(void) {
  __asm__ volatile("" : : : "memory");
  for (volatile int i = 0; i < 200; ++i) {
  }
}

static void *flip(void *arg) {
  (void)arg;
  atomic_store(&flipping, 1);
  while (!atomic_load(&stop_flipping)) {
    race_address.sin_port = race_ports[1];
    hold();
    race_address.sin_port = race_ports[0];
    hold();
  }
  return NULL;
}

static int race(unsigned allowed, unsigned denied, int rounds) {
  int la = listener(SOCK_STREAM, allowed), ld = listener(SOCK_STREAM, denied);
  if (la < 0 || ld < 0) {
    printf("listeners: %s\n", result(0));
    return 1;
  }
  race_ports[0] = htons((unsigned short)allowed);
  race_ports[1] = htons((unsigned short)denied);
  race_address = v4(allowed);
  pthread_t t;
  pthread_create(&t, NULL, flip, NULL);
  while (!atomic_load(&flipping)) sched_yield();
  int to_allowed = 0, to_denied = 0, refused = 0, other = 0, accepted_denied = 0;
  for (int i = 0; i < rounds; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&race_address, sizeof race_address) == 0) {
      struct sockaddr_in peer;
      socklen_t size = sizeof peer;
      getpeername(fd, (struct sockaddr *)&peer, &size);
      if (peer.sin_port == race_ports[1]) ++to_denied; else ++to_allowed;
    } else if (errno == EPERM) {
      ++refused;
    } else {
      ++other;
    }
    close(fd);
    int s;
    while ((s = accept(la, NULL, NULL)) >= 0) close(s);
    while ((s = accept(ld, NULL, NULL)) >= 0) {
      ++accepted_denied;
      close(s);
    }
  }
  atomic_store(&stop_flipping, 1);
  pthread_join(t, NULL);
  printf("rounds %d: to A %d, to D %d, refused %d, other %d, accepted on D %d\n", rounds, to_allowed, to_denied, refused,
         other, accepted_denied);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "sockets") == 0) return sockets();
  if (strcmp(mode, "rules") == 0 && argc > 3) return rules((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
  if (strcmp(mode, "fetch") == 0 && argc > 2) return fetch((unsigned)atoi(argv[2]));
  if (strcmp(mode, "loopback") == 0 && argc > 2) return loopback((unsigned)atoi(argv[2]));
  if (strcmp(mode, "interfaces") == 0) return interfaces();
  if (strcmp(mode, "race") == 0 && argc > 4) return race((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]), atoi(argv[4]));
  fprintf(stderr, "usage: %s sockets | rules A D | fetch PORT | loopback PORT | interfaces | race A D ROUNDS\n", argv[0]);
  return 2;
}
