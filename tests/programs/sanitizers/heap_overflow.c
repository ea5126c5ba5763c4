// AddressSanitizer: a one-byte write past a heap block. ASan reports it and
// the program exits 1 before free() runs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  (void)argv;
  char* block = malloc(16);
  memset(block, 'a', 16);
  puts("writing one byte past a 16-byte block");
  fflush(stdout);
  block[15 + argc] = 'x';  // argc == 1: block[16]
  free(block);
  puts("not reached under AddressSanitizer");
  return 0;
}
