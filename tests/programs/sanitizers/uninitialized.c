// MemorySanitizer (clang): a branch on a heap value never written.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  (void)argv;
  int* values = malloc(8 * sizeof *values);
  values[0] = 0;
  if (values[argc]) {  // values[1]: uninitialised
    puts("set");
  } else {
    puts("clear");
  }
  free(values);
  return 0;
}
