// Guest-side probe for in_vm_test.sh: the facts the nested test VM promises,
// printed as key=value lines for the test to compare.
//   /dev/kvm answers KVM_GET_API_VERSION with 12 and creates a VM;
//   a pty pair can be opened (devpts);
//   a file in the shared checkout can be written through a shared mapping.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static void probe_kvm(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    printf("kvm_open=%s\n", strerror(errno));
    return;
  }
  printf("kvm_api=%d\n", ioctl(kvm, KVM_GET_API_VERSION, 0));
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  printf("kvm_create_vm=%s\n", vm >= 0 ? "ok" : strerror(errno));
}

static void probe_pty(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  const char* name = master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0
                         ? ptsname(master)
                         : NULL;
  int slave = name ? open(name, O_RDWR | O_NOCTTY) : -1;
  printf("pty=%s\n", slave >= 0 ? "ok" : strerror(errno));
}

// Writes "mapped\n" into PATH through a MAP_SHARED mapping.
static void probe_mmap(const char* path) {
  static const char text[] = "mapped\n";
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, sizeof text - 1) != 0) {
    printf("mmap=%s\n", strerror(errno));
    return;
  }
  char* p = mmap(NULL, sizeof text - 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    printf("mmap=%s\n", strerror(errno));
    return;
  }
  memcpy(p, text, sizeof text - 1);
  int synced = msync(p, sizeof text - 1, MS_SYNC) == 0;
  printf("mmap=%s\n", synced ? "ok" : strerror(errno));
  munmap(p, sizeof text - 1);
  close(fd);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE-TO-MMAP\n", argv[0]);
    return 2;
  }
  probe_kvm();
  probe_pty();
  probe_mmap(argv[1]);
  return 0;
}
