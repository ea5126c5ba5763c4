// LeakSanitizer (part of AddressSanitizer): a block no pointer reaches at
// exit. The report is made by a tracer thread that stops the process's
// threads with ptrace and scans their registers and stacks.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void* still_reachable;

static void lose(size_t size) {
  char* block = malloc(size);
  memset(block, 1, size);
  printf("allocated %zu bytes\n", size);
}

int main(void) {
  still_reachable = malloc(10);
  lose(100);
  return 0;
}
