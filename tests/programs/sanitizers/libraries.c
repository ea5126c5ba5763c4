// Prints what a program can see of its library list (dl_iterate_phdr, in
// order, file names only; the program itself and the vDSO left out) and of
// its environment's LD_PRELOAD. With --runtimes, only whether a sanitizer
// runtime is loaded, which is all a plain child of a sanitized parent
// should differ in if LD_PRELOAD leaked the runtime to it.
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int runtimes_only;
static int runtimes_seen;

static int print_library(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  (void)data;
  const char* name = info->dlpi_name;
  if (name[0] == '\0' || strncmp(name, "linux-", 6) == 0) return 0;
  const char* slash = strrchr(name, '/');
  const char* file = slash != NULL ? slash + 1 : name;
  int runtime = strstr(file, "san.so") != NULL || strstr(file, "libclang_rt.") != NULL;
  runtimes_seen += runtime;
  if (!runtimes_only) printf("library %s\n", file);
  else if (runtime) printf("sanitizer runtime %s\n", file);
  return 0;
}

int main(int argc, char** argv) {
  runtimes_only = argc > 1 && strcmp(argv[1], "--runtimes") == 0;
  dl_iterate_phdr(print_library, NULL);
  if (runtimes_only) {
    if (runtimes_seen == 0) puts("no sanitizer runtime");
  } else {
    const char* preload = getenv("LD_PRELOAD");
    printf("LD_PRELOAD %s\n", preload != NULL ? preload : "(unset)");
  }
  return 0;
}
