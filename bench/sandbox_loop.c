/* dunk-sandbox-loop CALL N: the program dunk bench runs under `dunk sandbox`
 * for its sandbox rows (bench/sandbox_bench.cc). CALL is "allowed" or
 * "denied" (bench/sandbox_loop.h names the calls); prints one line,
 *
 *   ns NS return R errno E mismatches M
 *
 * the loop's own time and the answers, which dunk bench checks. Static, so
 * that the sandbox loads no interpreter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sandbox_loop.h"

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "allowed") != 0 && strcmp(argv[1], "denied") != 0)) {
    fprintf(stderr, "usage: dunk-sandbox-loop allowed|denied N\n");
    return 2;
  }
  long nr = strcmp(argv[1], "allowed") == 0 ? DUNK_SANDBOX_ALLOWED_CALL : DUNK_SANDBOX_DENIED_CALL;
  struct dunk_sandbox_loop_result r = dunk_sandbox_loop(nr, atol(argv[2]));
  printf("ns %lld return %ld errno %d mismatches %ld\n", r.ns, r.first_return, r.first_errno, r.mismatches);
  return 0;
}
