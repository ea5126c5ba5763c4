/* dunk-sthttpd: a privilege-separated static HTTP/1.1 file server, the
 * demonstration of sthreads (docs/STHREADS.md).
 *
 *   dunk-sthttpd MODE PORT DIR [--bug]
 *   MODE: sthread (each connection in an sthread), pthread (a thread per
 *         connection), pthread-vm (the same in VM mode: every system call
 *         an exit, as in an sthread), fork (a process per connection)
 *
 * Every response carries X-Signature, a keyed hash of its body under a
 * secret key. In sthread mode the key lies in a tag only the signing
 * callgate may read; the sthread that parses a request and builds its
 * response may touch its client's descriptor, the served directory
 * (openat on its descriptor), its own stack and its copy of the program's
 * globals, nothing else. (The keyed hash is a demonstration, not a MAC.)
 *
 * --bug adds a deliberate, test-only hole to the request parser:
 * "GET /__peek/HEXADDR" copies 32 bytes from HEXADDR into the response,
 * and the server prints the key's address on stderr at start. In pthread
 * and fork mode that puts the key on the wire; in sthread mode the read
 * faults, the sthread ends with a report, and the server serves on.
 *
 * Limits of the demonstration: requests up to 8 KiB, GET only, one request
 * per connection (Connection: close), no directory listings; the parser
 * refuses paths with ".." or a leading "//" (the policy cannot narrow
 * openat to one directory: docs/STHREADS.md). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sthread.h"

enum mode { MODE_STHREAD, MODE_PTHREAD, MODE_PTHREAD_VM, MODE_FORK };

static int g_dirfd = -1;
static int g_bug;
/* Set before sthread_init, so every sthread's copy of the globals has
 * them: the signing function of the mode. */
static void *(*g_sign)(uint64_t digest);
static cg_t g_sign_gate;

#define KEY_BYTES 32
/* pthread and fork mode: the key in the program's memory. */
static unsigned char *g_key;

static uint64_t fnv1a(const void *data, size_t n, uint64_t h)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t keyed_hash(const unsigned char *key, uint64_t digest)
{
	uint64_t h = fnv1a(key, KEY_BYTES, 0xcbf29ce484222325ull);
	h = fnv1a(&digest, sizeof digest, h);
	return fnv1a(key, KEY_BYTES, h);
}

/* The callgate: runs with the key's tag; `trusted` is the key, held by
 * the supervisor. */
static void *sign_gate(void *trusted, void *arg)
{
	return (void *)(uintptr_t)keyed_hash(trusted, (uint64_t)(uintptr_t)arg);
}

static void *sign_in_sthread(uint64_t digest) { return cgate(g_sign_gate, NULL, (void *)(uintptr_t)digest); }
static void *sign_direct(uint64_t digest) { return (void *)(uintptr_t)keyed_hash(g_key, digest); }

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void respond(int fd, int status, const char *reason, const char *body, size_t n)
{
	char head[256];
	uint64_t signature = (uint64_t)(uintptr_t)g_sign(fnv1a(body, n, 0xcbf29ce484222325ull));
	int h = snprintf(head, sizeof head,
			 "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
			 "X-Signature: %016llx\r\n\r\n",
			 status, reason, n, (unsigned long long)signature);
	if (write_all(fd, head, (size_t)h) == 0)
		write_all(fd, body, n);
}

/* One connection: read the request, answer it. Runs in an sthread, a
 * thread or a child process. */
static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char request[8192];
	size_t have = 0;
	while (have < sizeof request - 1) {
		ssize_t r = read(fd, request + have, sizeof request - 1 - have);
		if (r <= 0)
			return (void *)1;
		have += (size_t)r;
		request[have] = 0;
		if (strstr(request, "\r\n\r\n") != NULL)
			break;
	}
	request[have] = 0;
	if (strncmp(request, "GET /", 5) != 0) {
		respond(fd, 405, "Method Not Allowed", "", 0);
		return NULL;
	}
	char *path = request + 5;
	char *end = strchr(path, ' ');
	if (end == NULL) {
		respond(fd, 400, "Bad Request", "", 0);
		return NULL;
	}
	*end = 0;
	if (g_bug && strncmp(path, "__peek/", 7) == 0) {
		/* The deliberate hole: an address from the request, read. */
		const char *at = (const char *)(uintptr_t)strtoull(path + 7, NULL, 16);
		char copy[KEY_BYTES];
		memcpy(copy, at, sizeof copy);
		respond(fd, 200, "OK", copy, sizeof copy);
		return NULL;
	}
	if (*path == 0)
		path = "index.html";
	if (strstr(path, "..") != NULL || *path == '/') {
		respond(fd, 403, "Forbidden", "", 0);
		return NULL;
	}
	int file = openat(g_dirfd, path, O_RDONLY | O_CLOEXEC);
	if (file < 0) {
		respond(fd, 404, "Not Found", "not found\n", 10);
		return NULL;
	}
	char body[32768];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(file, body + n, sizeof body - n);
		if (r <= 0 || (n += (size_t)r) == sizeof body)
			break;
	}
	close(file);
	respond(fd, 200, "OK", body, n);
	return NULL;
}

static void *serve_and_close(void *arg)
{
	serve(arg);
	close((int)(intptr_t)arg);
	return NULL;
}

/* sthread mode: the listener joins sthreads in order on a reaper thread,
 * which closes their connections (the sthread may not: another could get
 * the number meanwhile). */
#define MAX_INFLIGHT 256
static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	sthread_t ids[MAX_INFLIGHT];
	int fds[MAX_INFLIGHT];
	unsigned head, count;
} g_inflight = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, {0}, 0, 0};

static void *reaper(void *unused)
{
	(void)unused;
	for (;;) {
		pthread_mutex_lock(&g_inflight.lock);
		while (g_inflight.count == 0)
			pthread_cond_wait(&g_inflight.changed, &g_inflight.lock);
		sthread_t st = g_inflight.ids[g_inflight.head];
		int fd = g_inflight.fds[g_inflight.head];
		pthread_mutex_unlock(&g_inflight.lock);
		struct sthread_report report;
		void *ret;
		if (sthread_join_report(st, &ret, &report) != 0 && report.end == STHREAD_FAULTED)
			fprintf(stderr, "sthttpd: request sthread faulted at 0x%lx (tag %d); serving on\n",
				report.address, report.tag);
		close(fd);
		pthread_mutex_lock(&g_inflight.lock);
		g_inflight.head = (g_inflight.head + 1) % MAX_INFLIGHT;
		g_inflight.count--;
		pthread_cond_broadcast(&g_inflight.changed);
		pthread_mutex_unlock(&g_inflight.lock);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s sthread|pthread|pthread-vm|fork PORT DIR [--bug]\n", argv[0]);
		return 2;
	}
	enum mode mode = strcmp(argv[1], "sthread") == 0   ? MODE_STHREAD
			 : strcmp(argv[1], "pthread") == 0 ? MODE_PTHREAD
			 : strcmp(argv[1], "pthread-vm") == 0 ? MODE_PTHREAD_VM
			 : strcmp(argv[1], "fork") == 0    ? MODE_FORK
							   : (enum mode)-1;
	if ((int)mode < 0) {
		fprintf(stderr, "sthttpd: unknown mode %s\n", argv[1]);
		return 2;
	}
	g_bug = argc > 4 && strcmp(argv[4], "--bug") == 0;
	signal(SIGPIPE, SIG_IGN);
	g_dirfd = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g_dirfd < 0) {
		perror("sthttpd: the served directory");
		return 1;
	}
	int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 128) != 0) {
		perror("sthttpd: listen");
		return 1;
	}

	sc_t sc, gate_sc;
	unsigned char *key;
	if (mode == MODE_STHREAD) {
		g_sign = sign_in_sthread;
		g_sign_gate = sign_gate;
		/* The snapshot first: the key is made after it, in a tag. */
		if (sthread_init() != 0) {
			perror("sthttpd: sthread_init");
			return 1;
		}
		tag_t key_tag = tag_new();
		key = smalloc(key_tag, KEY_BYTES);
		sc_init(&gate_sc);
		sc_mem_add(&gate_sc, key_tag, PROT_READ);
		sc_init(&sc);
		sc_cgate_add(&sc, sign_gate, &gate_sc, key);
		sc_fd_add(&sc, g_dirfd, PROT_READ);
		sc_sys_add(&sc, SYS_openat);
		sc_sys_add(&sc, SYS_close);
		pthread_t t;
		pthread_create(&t, NULL, reaper, NULL);
	} else {
		if (mode == MODE_PTHREAD_VM && sthread_init() != 0) { /* VM mode, no compartments */
			perror("sthttpd: sthread_init");
			return 1;
		}
		g_sign = sign_direct;
		key = g_key = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mode == MODE_FORK)
			signal(SIGCHLD, SIG_IGN); /* children reaped by the kernel */
	}
	int random = open("/dev/urandom", O_RDONLY);
	if (random < 0 || read(random, key, KEY_BYTES) != KEY_BYTES) {
		perror("sthttpd: /dev/urandom");
		return 1;
	}
	close(random);
	if (g_bug) {
		/* Test-only: where the key is and what it is, so that a test can
		 * aim the hole at it and look for it on the wire. */
		fprintf(stderr, "sthttpd: key at %p:", (void *)key);
		for (int i = 0; i < KEY_BYTES; i++)
			fprintf(stderr, " %02x", key[i]);
		fprintf(stderr, "\n");
	}
	fprintf(stderr, "sthttpd: %s mode, serving %s on 127.0.0.1:%s\n", argv[1], argv[3], argv[2]);

	for (;;) {
		int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("sthttpd: accept");
			return 1;
		}
		if (mode == MODE_PTHREAD || mode == MODE_PTHREAD_VM) {
			pthread_t t;
			if (pthread_create(&t, NULL, serve_and_close, (void *)(intptr_t)fd) != 0) {
				close(fd);
				continue;
			}
			pthread_detach(t);
		} else if (mode == MODE_FORK) {
			pid_t pid = fork();
			if (pid == 0) {
				serve((void *)(intptr_t)fd);
				_exit(0);
			}
			close(fd);
		} else {
			sc_t conn = sc;
			sc_fd_add(&conn, fd, PROT_READ | PROT_WRITE);
			pthread_mutex_lock(&g_inflight.lock);
			while (g_inflight.count == MAX_INFLIGHT)
				pthread_cond_wait(&g_inflight.changed, &g_inflight.lock);
			sthread_t st;
			if (sthread_create(&st, &conn, serve, (void *)(intptr_t)fd) != 0) {
				pthread_mutex_unlock(&g_inflight.lock);
				perror("sthttpd: sthread_create");
				close(fd);
				continue;
			}
			unsigned slot = (g_inflight.head + g_inflight.count) % MAX_INFLIGHT;
			g_inflight.ids[slot] = st;
			g_inflight.fds[slot] = fd;
			g_inflight.count++;
			pthread_cond_broadcast(&g_inflight.changed);
			pthread_mutex_unlock(&g_inflight.lock);
		}
	}
}
