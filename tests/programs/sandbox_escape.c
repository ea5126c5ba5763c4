/* Escape attempts against `dunk sandbox` (tests/cli/sandbox_escape_test.sh).
 *
 *   sandbox_escape CASE      tries one escape
 *   sandbox_escape --list    the cases, one a line
 *
 * Every case really tries: it executes the instruction, makes the call with
 * the pointer, forges the frame, races the thread. A case that sees the
 * escape fail prints "CASE: held (how)" and exits 0; one that sees it work
 * prints "CASE: ESCAPED (what)" and exits 1. Cases whose attempt must kill
 * the program (a privileged instruction, a forged signal frame) print
 * "CASE: trying" first and "ESCAPED" only if they live on; the test script
 * checks the status and the sandbox's report.
 *
 * "dunk's memory" is a writable page of the dunk executable (its .data),
 * found in /proc/self/maps: the sandboxed program shares the process with
 * dunk, and the host kernel would write there if dunk passed the pointer on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static const char *current;

static int held(const char *how) {
  printf("%s: held (%s)\n", current, how);
  return 0;
}
static int escaped(const char *what) {
  printf("%s: ESCAPED (%s)\n", current, what);
  return 1;
}
static void trying(void) {
  printf("%s: trying\n", current);
  fflush(stdout);
}
/* A call that must fail with `err`: held if it did, escaped otherwise. */
static int must_fail(const char *what, long ret, int err) {
  char how[200];
  if (ret == -1 && errno == err) {
    snprintf(how, sizeof how, "%s: %s", what, strerror(err));
    return held(how);
  }
  snprintf(how, sizeof how, "%s returned %ld, errno %d (%s)", what, ret, ret == -1 ? errno : 0,
           ret == -1 ? strerror(errno) : "no error");
  return escaped(how);
}

/* ---- dunk's memory and descriptors ------------------------------------- */

/* The first mapping of the dunk executable with the given permissions
 * ("rw-p", "r--p"), or 0. */
static uintptr_t dunk_mapping(const char *perms) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return 0;
  char line[512];
  uintptr_t found = 0;
  while (found == 0 && fgets(line, sizeof line, f) != NULL) {
    char *path = strchr(line, '/');
    if (path == NULL) continue;
    path[strcspn(path, "\n")] = '\0';
    const char *base = strrchr(path, '/') + 1;
    if (strcmp(base, "dunk") == 0 && strstr(line, perms) != NULL) found = strtoull(line, NULL, 16);
  }
  fclose(f);
  return found;
}
static void *dunk_data(void) {
  uintptr_t a = dunk_mapping("rw-p");
  if (a == 0) {
    printf("%s: no writable dunk mapping found\n", current);
    exit(2);
  }
  return (void *)a;
}
static void *dunk_text(void) {
  uintptr_t a = dunk_mapping("r--p");
  if (a == 0) {
    printf("%s: no dunk mapping found\n", current);
    exit(2);
  }
  return (void *)a;
}

/* A pipe holding 16 known bytes: a call that reads from it into dunk's
 * memory must leave them there. */
static int full_pipe(int p[2]) {
  if (pipe(p) != 0 || write(p[1], "0123456789abcdef", 16) != 16) exit(2);
  return p[0];
}
static int pipe_untouched(int fd) {
  char left[17] = {0};
  return read(fd, left, 16) == 16 && strcmp(left, "0123456789abcdef") == 0;
}

/* ---- Instructions ring 3 must not execute ------------------------------ */

static int insn(const char *name) {
  trying();
  if (strcmp(name, "cli") == 0) __asm__ volatile("cli");
  else if (strcmp(name, "sti") == 0) __asm__ volatile("sti");
  else if (strcmp(name, "hlt") == 0) __asm__ volatile("hlt");
  else if (strcmp(name, "out_syscall_port") == 0) __asm__ volatile("outb %%al, $0xd0" : : "a"(0));
  else if (strcmp(name, "out_fatal_port") == 0) __asm__ volatile("outl %%eax, $0xd2" : : "a"(0));
  else if (strcmp(name, "in_port") == 0) { unsigned char v; __asm__ volatile("inb $0xd1, %0" : "=a"(v)); }
  else if (strcmp(name, "lgdt") == 0) { char gdt[10] = {0}; __asm__ volatile("lgdt %0" : : "m"(gdt)); }
  else if (strcmp(name, "lidt") == 0) { char idt[10] = {0}; __asm__ volatile("lidt %0" : : "m"(idt)); }
  else if (strcmp(name, "mov_cr3") == 0) __asm__ volatile("mov %0, %%cr3" : : "r"(0UL));
  else if (strcmp(name, "mov_dr7") == 0) __asm__ volatile("mov %0, %%dr7" : : "r"(0x3ffUL));
  else if (strcmp(name, "wrmsr_lstar") == 0) __asm__ volatile("wrmsr" : : "c"(0xc0000082), "a"(0), "d"(0));
  else if (strcmp(name, "rdmsr_efer") == 0) { unsigned lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xc0000080)); }
  else if (strcmp(name, "swapgs") == 0) __asm__ volatile("swapgs");
  else if (strcmp(name, "invlpg") == 0) __asm__ volatile("invlpg (%0)" : : "r"(dunk_text()) : "memory");
  else if (strcmp(name, "sysret") == 0) __asm__ volatile("sysretq");
  else if (strcmp(name, "vmcall") == 0) { long rax = SYS_getpid; __asm__ volatile("vmcall" : "+a"(rax) : : "memory"); }
  else if (strcmp(name, "int80") == 0) { long rax = 20 /* i386 getpid */; __asm__ volatile("int $0x80" : "+a"(rax) : : "memory"); }
  else if (strcmp(name, "int_0x20") == 0) __asm__ volatile("int $0x20");
  else if (strcmp(name, "sysenter") == 0) __asm__ volatile("sysenter");
  else if (strcmp(name, "load_ring0_ss") == 0) __asm__ volatile("mov %0, %%ss" : : "r"(0x18));
  else if (strcmp(name, "load_ring0_ds") == 0) __asm__ volatile("mov %0, %%ds" : : "r"(0x18));
  else if (strcmp(name, "ljmp_ring0_cs") == 0) {
    struct { uint64_t offset; uint16_t selector; } __attribute__((packed)) target = {(uint64_t)dunk_text(), 0x10};
    __asm__ volatile("rex64 ljmp *%0" : : "m"(target));
  } else if (strcmp(name, "lcall_tss") == 0) {
    struct { uint64_t offset; uint16_t selector; } __attribute__((packed)) target = {0, 0x40};
    __asm__ volatile("rex64 lcall *%0" : : "m"(target));
  } else if (strcmp(name, "iretq_ring0_cs") == 0) {
    /* An IRET frame asking for ring 0 at the next instruction. */
    __asm__ volatile(
        "mov %%ss, %%eax\n"
        "pushq %%rax\n"
        "pushq %%rsp\n"
        "addq $8, (%%rsp)\n"
        "pushfq\n"
        "pushq $0x10\n"
        "leaq 1f(%%rip), %%rax\n"
        "pushq %%rax\n"
        "iretq\n"
        "1:\n"
        : : : "rax", "memory");
  } else if (strcmp(name, "far_ret_ring0") == 0) {
    __asm__ volatile("pushq $0x10\n leaq 1f(%%rip), %%rax\n pushq %%rax\n lretq\n 1:\n" : : : "rax", "memory");
  } else {
    printf("unknown instruction case %s\n", name);
    exit(2);
  }
  return escaped("the instruction completed in ring 3");
}

/* Compatibility mode through the GDT's 32-bit user code segment (0x23, as
 * Linux has it), then a system-call instruction from 32-bit code. */
static int compat(const char *how) {
  unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  if (code == MAP_FAILED || (uintptr_t)code >= (1ULL << 32)) return 2;
  static const unsigned char syscall_insn[] = {0x0f, 0x05, 0x0f, 0x0b};   /* syscall; ud2 */
  static const unsigned char sysenter_insn[] = {0x0f, 0x34, 0x0f, 0x0b};  /* sysenter; ud2 */
  static const unsigned char int80_insn[] = {0xcd, 0x80, 0x0f, 0x0b};     /* int $0x80; ud2 */
  const unsigned char *insn = strcmp(how, "syscall") == 0 ? syscall_insn : strcmp(how, "sysenter") == 0 ? sysenter_insn : int80_insn;
  memcpy(code, insn, 4);
  unsigned short selector = 0x23;
  if (strcmp(how, "ldt") == 0) {
    /* A 32-bit code segment of its own in the LDT, then syscall there. */
    struct {
      unsigned int entry_number, base_addr, limit;
      unsigned int seg_32bit : 1, contents : 2, read_exec_only : 1, limit_in_pages : 1, seg_not_present : 1,
          useable : 1, lm : 1;
    } d = {.entry_number = 0, .base_addr = 0, .limit = 0xfffff, .seg_32bit = 1, .contents = 2, .limit_in_pages = 1};
    if (syscall(SYS_modify_ldt, 1, &d, sizeof d) != 0) return held("modify_ldt refused");
    memcpy(code, syscall_insn, 4);
    selector = 0x7;
  }
  struct { uint32_t offset; uint16_t selector; } __attribute__((packed)) target = {(uint32_t)(uintptr_t)code, selector};
  /* 32-bit code runs on the low 32 bits of RSP: a stack below 4 GiB. */
  char *stack = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  trying();
  __asm__ volatile("mov %1, %%rsp\n ljmpl *(%0)" : : "r"(&target), "r"(stack + 65536 - 64) : "memory");
  return escaped("came back from 32-bit code");
}
static int compat_syscall(void) { return compat("syscall"); }
static int compat_sysenter(void) { return compat("sysenter"); }
static int compat_int80(void) { return compat("int80"); }
static int ldt_code_syscall(void) { return compat("ldt"); }

/* VMMCALL from ring 3 with every system-call number: KVM answers it itself
 * (-KVM_EPERM, -1, at CPL 3) and nothing reaches the host as a call. The
 * marker directory tells: a forwarded mkdir would make it. */
static int vmmcall_every_number(void) {
  const char *marker = "vmmcall-marker";
  rmdir(marker);
  for (long nr = 0; nr < 512; ++nr) {
    if (nr == SYS_exit || nr == SYS_exit_group || nr == SYS_vfork || nr == SYS_fork || nr == SYS_clone ||
        nr == SYS_rt_sigreturn || nr == SYS_pause || nr == SYS_clone3)
      continue; /* would end or hang the case natively, were they executed */
    long rax = nr;
    register long rdi __asm__("rdi") = (long)marker;
    register long rsi __asm__("rsi") = 0700;
    __asm__ volatile("vmmcall" : "+a"(rax), "+r"(rdi), "+r"(rsi) : : "rcx", "r11", "memory");
    if (rax != -1) {
      char what[80];
      snprintf(what, sizeof what, "vmmcall %ld returned %ld", nr, rax);
      return escaped(what);
    }
  }
  struct stat st;
  if (stat(marker, &st) == 0) return escaped("vmmcall's mkdir made the marker");
  return held("510 numbers: each answered -1 by KVM, no call made");
}

/* ---- Pointers into dunk's memory --------------------------------------- */

static int read_into_dunk(void) {
  int p[2];
  int fd = full_pipe(p);
  long r = read(fd, dunk_data(), 16);
  if (!pipe_untouched(fd)) return escaped("read consumed the pipe's bytes");
  return must_fail("read into dunk's .data", r, EFAULT);
}
static int pread_into_dunk(void) {
  int fd = open("/proc/self/exe", O_RDONLY);
  return must_fail("pread64 into dunk's .data", pread(fd, dunk_data(), 64, 0), EFAULT);
}
static int readv_into_dunk(void) {
  int p[2];
  int fd = full_pipe(p);
  char mine[4];
  struct iovec v[2] = {{mine, 4}, {dunk_data(), 12}};
  long r = readv(fd, v, 2);
  if (!pipe_untouched(fd)) return escaped("readv consumed the pipe's bytes");
  return must_fail("readv with an iovec into dunk's .data", r, EFAULT);
}
static int recvmsg_into_dunk(void) {
  int s[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, s) != 0 || send(s[1], "payload", 7, 0) != 7) return 2;
  struct iovec v = {dunk_data(), 64};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
  long r = recvmsg(s[0], &m, MSG_DONTWAIT);
  char again[8] = {0};
  if (recv(s[0], again, sizeof again, MSG_DONTWAIT) != 7) return escaped("recvmsg took the datagram");
  return must_fail("recvmsg into dunk's .data", r, EFAULT);
}
static int recvmsg_control_into_dunk(void) {
  int s[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, s) != 0 || send(s[1], "x", 1, 0) != 1) return 2;
  char data[8];
  struct iovec v = {data, sizeof data};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = dunk_data(), .msg_controllen = 64};
  return must_fail("recvmsg with msg_control in dunk's .data", recvmsg(s[0], &m, MSG_DONTWAIT), EFAULT);
}
static int getdents_into_dunk(void) {
  int fd = open("/", O_RDONLY | O_DIRECTORY);
  return must_fail("getdents64 into dunk's .data", syscall(SYS_getdents64, fd, dunk_data(), 4096), EFAULT);
}
static int uname_into_dunk(void) { return must_fail("uname into dunk's .data", syscall(SYS_uname, dunk_data()), EFAULT); }
static int clock_gettime_into_dunk(void) {
  return must_fail("clock_gettime (the system call) into dunk's .data",
                   syscall(SYS_clock_gettime, CLOCK_REALTIME, dunk_data()), EFAULT);
}
static int fstatat_into_dunk(void) {
  return must_fail("newfstatat's buffer in dunk's .data", syscall(SYS_newfstatat, AT_FDCWD, "/", dunk_data(), 0), EFAULT);
}
static int getrandom_into_dunk(void) {
  return must_fail("getrandom into dunk's .data", syscall(SYS_getrandom, dunk_data(), 32, 0), EFAULT);
}
static int write_from_dunk(void) {
  int p[2];
  if (pipe(p) != 0) return 2;
  long r = write(p[1], dunk_text(), 16);
  int e = errno;
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  char got[16];
  if (read(p[0], got, sizeof got) > 0) return escaped("dunk's bytes reached the pipe");
  errno = e;
  return must_fail("write from dunk's memory", r, EFAULT);
}
static int sendmsg_from_dunk(void) {
  int s[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, s) != 0) return 2;
  struct iovec v = {dunk_text(), 16};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
  long r = sendmsg(s[1], &m, 0);
  int e = errno;
  char got[16];
  if (recv(s[0], got, sizeof got, MSG_DONTWAIT) > 0) return escaped("dunk's bytes were sent");
  errno = e;
  return must_fail("sendmsg from dunk's memory", r, EFAULT);
}
static int stat_path_in_dunk(void) {
  struct stat st;
  return must_fail("stat of a path in dunk's memory", stat((const char *)dunk_text(), &st), EFAULT);
}
static int execve_argv_in_dunk(void) {
  char *argv[] = {"/bin/echo", (char *)dunk_text(), NULL};
  return must_fail("execve with an argv string in dunk's memory", execve("/bin/echo", argv, environ), EFAULT);
}
static int sigaction_in_dunk(void) {
  return must_fail("rt_sigaction reading its action from dunk's memory",
                   syscall(SYS_rt_sigaction, SIGUSR1, dunk_text(), NULL, 8), EFAULT);
}
static int sigaction_old_into_dunk(void) {
  return must_fail("rt_sigaction writing the old action into dunk's .data",
                   syscall(SYS_rt_sigaction, SIGUSR1, NULL, dunk_data(), 8), EFAULT);
}
static int process_vm_writev_self(void) {
  char mine[16] = "overwrite dunk!";
  struct iovec local = {mine, 16}, remote = {dunk_data(), 16};
  return must_fail("process_vm_writev into its own dunk .data", process_vm_writev(getpid(), &local, 1, &remote, 1, 0),
                   EFAULT);
}
static int process_vm_readv_self(void) {
  char mine[16];
  struct iovec local = {mine, 16}, remote = {dunk_text(), 16};
  return must_fail("process_vm_readv of its own dunk memory", process_vm_readv(getpid(), &local, 1, &remote, 1, 0),
                   EFAULT);
}

/* ---- Asynchronous writers and stacks ----------------------------------- */

static int set_tid_address_dunk(void) {
  /* Natively it cannot fail; the kernel would write there at exit. */
  return must_fail("set_tid_address at dunk's .data", syscall(SYS_set_tid_address, dunk_data()), EFAULT);
}
static int set_robust_list_dunk(void) {
  return must_fail("set_robust_list at dunk's .data", syscall(SYS_set_robust_list, dunk_data(), 24), EFAULT);
}
static int rseq_dunk(void) {
  /* The sandbox has no rseq (glibc goes without): the kernel never learns
   * an address it would write at every preemption. */
  return must_fail("rseq at dunk's .data", syscall(SYS_rseq, dunk_data(), 32, 0, 0x53053053), ENOSYS);
}
static int sigaltstack_outside(void) {
  stack_t ss = {.ss_sp = dunk_data(), .ss_size = 65536, .ss_flags = 0};
  return must_fail("sigaltstack in dunk's .data", sigaltstack(&ss, NULL), EFAULT);
}
static int clone_stack_outside(void) {
  long r = syscall(SYS_clone, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
                   (char *)dunk_data() + 4096, NULL, NULL, 0);
  if (r == 0) {
    /* Only a child whose stack is dunk's would run here. */
    syscall(SYS_exit, 0);
  }
  return must_fail("clone of a thread with its stack in dunk's .data", r, EFAULT);
}
static int clone_parent_settid_outside(void) {
  static char stack[65536] __attribute__((aligned(16)));
  long r = syscall(SYS_clone,
                   CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_PARENT_SETTID,
                   stack + sizeof stack, dunk_data(), NULL, 0);
  if (r == 0) syscall(SYS_exit, 0);
  return must_fail("clone with CLONE_PARENT_SETTID into dunk's .data", r, EFAULT);
}
static int clone3_stack_outside(void) {
  struct {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
  } args = {.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
            .stack = (uint64_t)dunk_data(), .stack_size = 4096};
  long r = syscall(SYS_clone3, &args, sizeof args);
  if (r == 0) syscall(SYS_exit, 0);
  return must_fail("clone3 of a thread with its stack in dunk's .data", r, EFAULT);
}

/* ---- The address space -------------------------------------------------- */

static int mmap_fixed_over_dunk(void) {
  void *r = mmap(dunk_data(), 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return must_fail("mmap MAP_FIXED over dunk's .data", r == MAP_FAILED ? -1 : 0, ENOMEM);
}
static int mmap_hint_dunk(void) {
  /* A hint is only a hint: the mapping must land in the region. */
  void *r = mmap(dunk_data(), 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) return escaped("mmap with a hint failed");
  if ((uintptr_t)r >= (64ULL << 40)) return escaped("the hint placed the mapping outside the region");
  return held("the mapping went into the region");
}
static int mprotect_dunk(void) {
  return must_fail("mprotect of dunk's text to RWX", mprotect(dunk_text(), 4096, PROT_READ | PROT_WRITE | PROT_EXEC), ENOMEM);
}
static int munmap_dunk(void) { return must_fail("munmap of dunk's .data", munmap(dunk_data(), 4096), EINVAL); }
static int munmap_region_end(void) {
  /* Across the region's upper edge: [64 TiB - 4 KiB, 64 TiB + 4 KiB). */
  return must_fail("munmap across the region's end", munmap((void *)((64ULL << 40) - 4096), 8192), EINVAL);
}
static int munmap_region_start(void) {
  /* Across the region's lower edge (64 KiB). */
  return must_fail("munmap across the region's start", munmap((void *)0x8000, 0x10000), EINVAL);
}
static int mremap_onto_dunk(void) {
  void *mine = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void *r = mremap(mine, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, dunk_data());
  return must_fail("mremap MREMAP_FIXED onto dunk's .data", r == MAP_FAILED ? -1 : 0, EFAULT);
}
static int madvise_dunk(void) {
  return must_fail("madvise(MADV_DONTNEED) of dunk's .data", madvise(dunk_data(), 4096, MADV_DONTNEED), EFAULT);
}
static int brk_past_region(void) {
  void *now = sbrk(0);
  long r = syscall(SYS_brk, (64ULL << 40) + (1ULL << 30));
  if ((uintptr_t)r > (64ULL << 40)) return escaped("the break moved past the region");
  return r == (long)now ? held("brk past the region left the break where it was") : escaped("brk moved");
}
static int shmat_at_dunk(void) {
  int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  if (id < 0) return 2;
  void *r = shmat(id, dunk_data(), SHM_RND);
  shmctl(id, IPC_RMID, NULL);
  return must_fail("shmat at dunk's .data", r == (void *)-1 ? -1 : 0, EINVAL);
}

/* ---- /proc and friends --------------------------------------------------- */

static int proc_mem(const char *path) {
  int fd = open(path, O_RDWR);
  if (fd >= 0) return escaped("opened");
  return must_fail(path, fd, EACCES);
}
static int proc_self_mem(void) { return proc_mem("/proc/self/mem"); }
static int proc_thread_self_mem(void) { return proc_mem("/proc/thread-self/mem"); }
static int proc_pid_mem(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", (int)getpid());
  return proc_mem(path);
}
static int proc_dotdot_mem(void) { return proc_mem("/proc/self/../self/./mem"); }
static int proc_mem_by_dirfd(void) {
  int dir = open("/proc/self", O_RDONLY | O_DIRECTORY);
  if (dir < 0) return 2;
  int fd = openat(dir, "mem", O_RDONLY);
  return must_fail("openat(/proc/self dirfd, \"mem\")", fd, EACCES);
}
static int proc_mem_via_symlink(void) {
  unlink("mem-link");
  if (symlink("/proc/self/mem", "mem-link") != 0) return 2;
  int fd = open("mem-link", O_RDWR);
  unlink("mem-link");
  return must_fail("a symlink to /proc/self/mem", fd, EACCES);
}
/* /proc/self/map_files of dunk's one shared mapping that no path reaches:
 * the vCPU's KVM run area. */
static int proc_map_files_dunk(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512], path[600] = "";
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    if (strstr(line, "kvm-vcpu") != NULL) {
      *strchr(line, ' ') = '\0';
      snprintf(path, sizeof path, "/proc/self/map_files/%s", line);
      break;
    }
  }
  if (path[0] == '\0') return held("no KVM mapping is listed");
  int fd = open(path, O_RDWR);
  if (fd >= 0) return escaped("opened the vCPU's run area");
  char how[700];
  snprintf(how, sizeof how, "%s: %s", path, strerror(errno));
  return held(how);
}

/* dunk keeps its descriptors (/dev/kvm, the VM, the vCPUs, the log) above
 * the program's soft RLIMIT_NOFILE. The program lifts its limit to the
 * hard one and goes looking: every number must look closed, dup2 over it
 * and close_range must leave dunk's alone, no /proc/self/fd link of them
 * may be read or opened. Afterwards the sandbox must still work (this
 * program's own output is the proof). */
static int highest_fd(void) {
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_max > 65536) r.rlim_max = 65536;
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
  return (int)r.rlim_max;
}
static int dunk_fds(void) {
  const int top = highest_fd();
  /* Its own first (inherited ones included): what answers then is dunk's. */
  syscall(SYS_close_range, 3, ~0U, 0);
  static struct pollfd fds[1024];
  int visible = 0, refused = 0;
  for (int base = 0; base < top; base += 1024) {
    int n = top - base < 1024 ? top - base : 1024;
    for (int i = 0; i < n; ++i) fds[i] = (struct pollfd){.fd = base + i, .events = POLLIN | POLLOUT};
    if (poll(fds, n, 0) < 0) {
      /* A set naming one of dunk's is refused whole. */
      if (errno != EBADF) return escaped("poll failed otherwise");
      ++refused;
      continue;
    }
    for (int i = 0; i < n; ++i) {
      if (base + i > 2 && fds[i].revents != POLLNVAL) {
        printf("descriptor %d answers poll (%#x)\n", base + i, fds[i].revents);
        ++visible;
      }
    }
  }
  if (visible != 0) return escaped("descriptors the program never opened answer");
  if (refused == 0) return escaped("no poll was refused: dunk's descriptors were not found");
  char how[160];
  snprintf(how, sizeof how, "descriptors 3-%d look closed to poll, %d sets naming dunk's refused EBADF", top - 1,
           refused);
  return held(how);
}
static int dup2_over_dunk(void) {
  const int top = highest_fd();
  int refused = 0;
  for (int fd = 3; fd < top; ++fd) {
    int r = dup2(1, fd);
    if (r == fd) close(fd);
    else if (errno == EBADF) ++refused;
  }
  if (refused == 0) return escaped("no dup2 was refused: dunk's descriptors were not found");
  /* Still working: the supervisor's descriptors are intact. */
  int p[2];
  if (pipe(p) != 0 || write(p[1], "ok", 2) != 2) return escaped("the sandbox broke after the dup2s");
  char how[120];
  snprintf(how, sizeof how, "dup2 over 3-%d: %d refused EBADF, the sandbox still answers", top - 1, refused);
  return held(how);
}
static int close_range_dunk(void) {
  highest_fd();
  if (syscall(SYS_close_range, 3, ~0U, 0) != 0) return escaped("close_range failed");
  int p[2];
  if (pipe(p) != 0 || write(p[1], "ok", 2) != 2) return escaped("the sandbox broke after close_range");
  return held("close_range(3, ~0) closed the program's alone; the sandbox still answers");
}
static int proc_fd_links(void) {
  const int top = highest_fd();
  syscall(SYS_close_range, 3, ~0U, 0);
  for (int fd = 3; fd < top; ++fd) {
    char path[64], target[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    long n = readlink(path, target, sizeof target - 1);
    int reopened = open(path, O_RDWR);
    if (n > 0 || reopened >= 0) {
      target[n > 0 ? n : 0] = '\0';
      printf("/proc/self/fd/%d -> %s\n", fd, target);
      return escaped("a /proc/self/fd link of dunk's");
    }
  }
  return held("no /proc/self/fd link of dunk's can be read or opened");
}

/* ---- Signals --------------------------------------------------------------- */

static void forged_return(int sig, siginfo_t *info, void *context) {
  (void)sig;
  (void)info;
  ucontext_t *uc = context;
  const char *how = getenv("FORGE");
  if (strcmp(how, "cs") == 0) {
    uc->uc_mcontext.gregs[REG_CSGSFS] = (uc->uc_mcontext.gregs[REG_CSGSFS] & ~0xffffLL) | 0x10;
  } else if (strcmp(how, "ss") == 0) {
    uc->uc_flags |= 0x4; /* UC_STRICT_RESTORE_SS */
    uc->uc_mcontext.gregs[REG_CSGSFS] = (uc->uc_mcontext.gregs[REG_CSGSFS] & ~(0xffffLL << 48)) | (0x18LL << 48);
  } else if (strcmp(how, "rip") == 0) {
    uc->uc_mcontext.gregs[REG_RIP] = (long)dunk_text();
  } else if (strcmp(how, "noncanonical") == 0) {
    uc->uc_mcontext.gregs[REG_RIP] = 0x8000000000001000LL;
  } else if (strcmp(how, "iopl") == 0) {
    uc->uc_mcontext.gregs[REG_EFL] |= 3 << 12;
  } else if (strcmp(how, "fpstate") == 0) {
    uc->uc_mcontext.fpregs = (void *)dunk_data();
  } else if (strcmp(how, "xsave") == 0) {
    /* Reserved bytes of the XSAVE header: XRSTOR would #GP. */
    unsigned char *fp = (unsigned char *)uc->uc_mcontext.fpregs;
    memset(fp + 512 + 16, 0xff, 48);
  }
}

static int forged_sigreturn(const char *how) {
  setenv("FORGE", how, 1);
  struct sigaction sa = {0};
  sa.sa_sigaction = forged_return;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGUSR1, &sa, NULL);
  trying();
  raise(SIGUSR1);
  if (strcmp(how, "iopl") == 0) {
    /* IOPL 3 would let this run. */
    __asm__ volatile("cli; sti");
    return escaped("cli ran after the forged IOPL");
  }
  return escaped("the forged frame returned");
}

/* ---- Processes ---------------------------------------------------------------- */

static int ptrace_child(void) {
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  long r = ptrace(PTRACE_ATTACH, child, NULL, NULL);
  int e = errno;
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  errno = e;
  return must_fail("PTRACE_ATTACH to its fork child", r, EPERM);
}
static int ptrace_traceme(void) { return must_fail("PTRACE_TRACEME", ptrace(PTRACE_TRACEME, 0, NULL, NULL), EPERM); }

static int fork_then_escape(void) {
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    /* The child tries a pointer and then a privileged instruction. */
    int p[2];
    int fd = full_pipe(p);
    if (read(fd, dunk_data(), 16) != -1 || errno != EFAULT || !pipe_untouched(fd)) _exit(1);
    __asm__ volatile("cli");
    _exit(3);
  }
  int status;
  waitpid(child, &status, 0);
  if (WIFEXITED(status)) return escaped(WEXITSTATUS(status) == 3 ? "cli ran in the child" : "the child's read reached dunk");
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV) return escaped("the child ended otherwise");
  return held("the child's read failed EFAULT, its cli killed it with SIGSEGV");
}

static int execve_then_escape(const char *self) {
  char *argv[] = {(char *)self, "read_into_dunk", NULL};
  fflush(stdout);
  execv(self, argv);
  return escaped("execve failed");
}

/* ---- Races: a sibling flips what was checked ------------------------------- */

/* Each value stays a while, so that calls see both and some see a change
 * in the middle. */
static void hold(void) {
  /* The stores before are visible to the other thread: not dead stores. */
  __asm__ volatile("" : : : "memory");
  for (volatile int i = 0; i < 200; ++i) {
  }
}
/* Rounds of each race (each a forwarded call, under emulation too):
 * DUNK_ESCAPE_RACE_ROUNDS, set by the test script (5,000 in the test tiers,
 * more in the stress run). */
static int race_rounds(void) {
  const char *value = getenv("DUNK_ESCAPE_RACE_ROUNDS");
  const int n = value != NULL ? atoi(value) : 0;
  return n > 0 ? n : 5000;
}
static atomic_int stop_flipping, flipping;
static char race_path[64];
static void *flip_path(void *arg) {
  (void)arg;
  atomic_store(&flipping, 1);
  while (!atomic_load(&stop_flipping)) {
    strcpy(race_path, "/proc/self/mem");
    hold();
    strcpy(race_path, "/dev/null");
    hold();
  }
  return NULL;
}
static int toctou_path(void) {
  strcpy(race_path, "/dev/null");
  pthread_t t;
  pthread_create(&t, NULL, flip_path, NULL);
  while (!atomic_load(&flipping)) sched_yield();
  int opened_mem = 0, refused = 0;
  const int rounds = race_rounds();
  for (int i = 0; i < rounds; ++i) {
    int fd = open(race_path, O_RDWR);
    if (fd < 0) {
      ++refused;
      continue;
    }
    char path[64], target[128] = {0};
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (readlink(path, target, sizeof target - 1) > 0 && strstr(target, "/mem") != NULL) ++opened_mem;
    close(fd);
  }
  atomic_store(&stop_flipping, 1);
  pthread_join(t, NULL);
  printf("%s: %d opens, %d refused as /proc/self/mem\n", current, rounds, refused);
  if (opened_mem != 0) return escaped("/proc/self/mem was opened");
  if (refused == 0) return escaped("the flip was never seen: the race did not run");
  return held("every open saw one path, checked and used: /proc/self/mem never opened");
}

/* Many iovecs, all flipped: a copy of the array that is not checked and used
 * as one, or that reads an iov_base in pieces (half the program's pointer,
 * half dunk's), sends bytes the program never passed. */
#define RACE_IOVECS 32
static struct iovec race_vecs[RACE_IOVECS];
static char race_mine[16] = "AAAAAAAAAAAAAAAA";
static void *flip_iovec(void *arg) {
  void *dunk = arg;
  atomic_store(&flipping, 1);
  while (!atomic_load(&stop_flipping)) {
    for (int k = 0; k < RACE_IOVECS; ++k) race_vecs[k].iov_base = dunk;
    hold();
    for (int k = 0; k < RACE_IOVECS; ++k) race_vecs[k].iov_base = race_mine;
    hold();
  }
  return NULL;
}
static int toctou_iovec(void) {
  int p[2];
  if (pipe(p) != 0) return 2;
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  for (int k = 0; k < RACE_IOVECS; ++k) race_vecs[k] = (struct iovec){race_mine, 16};
  pthread_t t;
  pthread_create(&t, NULL, flip_iovec, dunk_text());
  while (!atomic_load(&flipping)) sched_yield();
  int leaked = 0, refused = 0, first_leak_round = -1;
  unsigned char first_leak[16];
  const int rounds = race_rounds();
  for (int i = 0; i < rounds; ++i) {
    if (writev(p[1], race_vecs, RACE_IOVECS) < 0) ++refused;
    char got[16];
    while (read(p[0], got, sizeof got) == 16) {
      if (memcmp(got, race_mine, 16) != 0 && leaked++ == 0) {
        memcpy(first_leak, got, 16);
        first_leak_round = i;
      }
    }
  }
  atomic_store(&stop_flipping, 1);
  pthread_join(t, NULL);
  printf("%s: %d writevs of %d iovecs, %d refused\n", current, rounds, RACE_IOVECS, refused);
  if (leaked != 0) {
    printf("%s: %d reads were not the program's bytes; the first (round %d):", current, leaked, first_leak_round);
    for (int k = 0; k < 16; ++k) printf(" %02x", first_leak[k]);
    printf("\n");
    return escaped("bytes the program never passed went through the pipe (dunk's, or from a torn iov_base)");
  }
  if (refused == 0) return escaped("the flip was never seen: the race did not run");
  return held("each iov_base was copied whole, once: only the program's bytes reached the pipe");
}

/* ---- Other kernel interfaces ------------------------------------------------- */

static int io_uring(void) {
  char params[120] = {0};
  long r = syscall(425 /* io_uring_setup */, 8, params);
  return must_fail("io_uring_setup", r, ENOSYS);
}
static int userfaultfd_dunk(void) { return must_fail("userfaultfd", syscall(SYS_userfaultfd, 0), EPERM); }
static int personality_rie(void) {
  long r = personality(READ_IMPLIES_EXEC);
  if (r == -1) return held("personality(READ_IMPLIES_EXEC) refused");
  /* Accepted: then a PROT_READ mapping must still not execute. */
  void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(page, 0xc3, 4096);
  mprotect(page, 4096, PROT_READ);
  trying();
  ((void (*)(void))page)();
  return escaped("a PROT_READ page ran");
}
static int seccomp_by_program(void) {
  /* A filter on the host thread would bind the supervisor's calls too. */
  return must_fail("seccomp(SECCOMP_SET_MODE_STRICT)", syscall(SYS_seccomp, 0, 0, NULL), EINVAL);
}
static int prctl_set_mm(void) {
  return must_fail("prctl(PR_SET_MM_START_CODE)", prctl(PR_SET_MM, PR_SET_MM_START_CODE, dunk_text(), 0, 0), EPERM);
}
/* TIOCSTI pushes input into a terminal that the sandbox's user reads
 * from: a pseudo-terminal of its own here (the test has no tty). */
static int tiocsti(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) return 2;
  int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  if (slave < 0) return 2;
  char c = 'x';
  return must_fail("ioctl(TIOCSTI)", ioctl(slave, TIOCSTI, &c), EPERM);
}

static void *denied_in_thread(void *arg) {
  (void)arg;
  long r = syscall(SYS_getppid);
  return (void *)(r == -1 ? (long)errno : 0L);
}
static int thread_denied_call(void) {
  pthread_t t;
  void *err;
  pthread_create(&t, NULL, denied_in_thread, NULL);
  pthread_join(t, &err);
  if ((long)err != EACCES) return escaped("getppid in a thread was not denied with the policy's errno");
  return held("the thread's getppid was denied: EACCES");
}

/* ---- The table ---------------------------------------------------------------- */

struct escape_case {
  const char *name;
  int (*run)(void);
};

#define INSN(n) \
  static int insn_##n(void) { return insn(#n); }
INSN(cli) INSN(sti) INSN(hlt) INSN(out_syscall_port) INSN(out_fatal_port) INSN(in_port) INSN(lgdt) INSN(lidt)
INSN(mov_cr3) INSN(mov_dr7) INSN(wrmsr_lstar) INSN(rdmsr_efer) INSN(swapgs) INSN(invlpg) INSN(sysret) INSN(vmcall)
INSN(int80) INSN(int_0x20) INSN(sysenter) INSN(load_ring0_ss) INSN(load_ring0_ds) INSN(ljmp_ring0_cs) INSN(lcall_tss)
INSN(iretq_ring0_cs) INSN(far_ret_ring0)
#define FORGE(n) \
  static int sigreturn_##n(void) { return forged_sigreturn(#n); }
FORGE(cs) FORGE(ss) FORGE(rip) FORGE(noncanonical) FORGE(iopl) FORGE(fpstate) FORGE(xsave)

static const char *self_path;
static int execve_escape(void) { return execve_then_escape(self_path); }

static const struct escape_case cases[] = {
#define C(n) {#n, n},
#define I(n) {#n, insn_##n},
#define S(n) {"sigreturn_" #n, sigreturn_##n},
    I(cli) I(sti) I(hlt) I(out_syscall_port) I(out_fatal_port) I(in_port) I(lgdt) I(lidt) I(mov_cr3) I(mov_dr7)
    I(wrmsr_lstar) I(rdmsr_efer) I(swapgs) I(invlpg) I(sysret) I(vmcall) I(int80) I(int_0x20) I(sysenter)
    I(load_ring0_ss) I(load_ring0_ds) I(ljmp_ring0_cs) I(lcall_tss) I(iretq_ring0_cs) I(far_ret_ring0)
    C(vmmcall_every_number) C(compat_syscall) C(compat_sysenter) C(compat_int80) C(ldt_code_syscall)
    C(read_into_dunk) C(pread_into_dunk) C(readv_into_dunk) C(recvmsg_into_dunk) C(recvmsg_control_into_dunk)
    C(getdents_into_dunk) C(uname_into_dunk) C(clock_gettime_into_dunk) C(fstatat_into_dunk) C(getrandom_into_dunk)
    C(write_from_dunk) C(sendmsg_from_dunk) C(stat_path_in_dunk) C(execve_argv_in_dunk) C(sigaction_in_dunk)
    C(sigaction_old_into_dunk) C(process_vm_writev_self) C(process_vm_readv_self)
    C(set_tid_address_dunk) C(set_robust_list_dunk) C(rseq_dunk) C(sigaltstack_outside) C(clone_stack_outside)
    C(clone_parent_settid_outside) C(clone3_stack_outside)
    C(mmap_fixed_over_dunk) C(mmap_hint_dunk) C(mprotect_dunk) C(munmap_dunk) C(munmap_region_end)
    C(munmap_region_start) C(mremap_onto_dunk) C(madvise_dunk) C(brk_past_region) C(shmat_at_dunk)
    C(proc_self_mem) C(proc_thread_self_mem) C(proc_pid_mem) C(proc_dotdot_mem) C(proc_mem_by_dirfd)
    C(proc_mem_via_symlink) C(proc_map_files_dunk) C(dunk_fds) C(dup2_over_dunk) C(close_range_dunk) C(proc_fd_links)
    S(cs) S(ss) S(rip) S(noncanonical) S(iopl) S(fpstate) S(xsave)
    C(ptrace_child) C(ptrace_traceme) C(fork_then_escape) {"execve_then_escape", execve_escape},
    C(toctou_path) C(toctou_iovec)
    C(io_uring) C(userfaultfd_dunk) C(personality_rie) C(seccomp_by_program)
    C(prctl_set_mm) C(tiocsti) C(thread_denied_call)
};

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  self_path = argv[0];
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) puts(cases[i].name);
    return 0;
  }
  if (argc != 2) return fprintf(stderr, "usage: %s CASE | --list\n", argv[0]), 2;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    if (strcmp(cases[i].name, argv[1]) == 0) {
      current = cases[i].name;
      return cases[i].run();
    }
  }
  fprintf(stderr, "unknown case %s\n", argv[1]);
  return 2;
}
