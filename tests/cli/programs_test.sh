#!/usr/bin/env bash
# Real, unmodified programs under `dunk exec` (kvm tier): each must behave
# exactly as natively — stdout, stderr, exit status and the files it leaves,
# byte for byte (compare_native in lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Size in MB of the generated input of the sort and sha256sum tests: 30 in
# the test tiers (under the nested test VM's emulation 100 MB take minutes),
# 200 in the stress run; DUNK_TEST_SORT_MB sets it.
SORT_MB=$(rounds DUNK_TEST_SORT_MB 30 200)

test_ls() {
	compare_native ls -la /usr/lib
}

# dunk's own descriptors stay out of the program's sight and way: the
# listing of its descriptors is the native one, and with stdin closed its
# first open() gets 0 (here ls's own handle on the directory it lists).
test_descriptors() {
	compare_native sh -c 'ls /proc/self/fd; exec ls /proc/self/fd <&-'
}

# SORT_MB of pseudo-random lines, the same in both working directories.
make_input() {
	if [[ ! -e $WORK/input.txt ]]; then
		awk -v bytes=$((SORT_MB * 1000 * 1000)) 'BEGIN {
			srand(4711)
			for (n = 0; n < bytes; n += length(line) + 1) {
				line = sprintf("%08x %s %d", int(rand() * 4294967296), substr("abcdefghijklmnopqrstuvwxyz", int(rand() * 26) + 1), n)
				print line
			}
		}' >"$WORK/input.txt"
	fi
	ln "$WORK/input.txt" "$1/input.txt"
}

# A program that drops its privileges (here to nobody, when run as root) can
# no longer open /dev/kvm; it runs in VM mode all the same, on the KVM handle
# dunk exec passes down the tree (DUNK_KVM_FD).
test_dropped_privileges() {
	compare_native setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'id; ls /proc/self/fd'
}

test_sort() {
	# -S: one fixed buffer size, so that both runs sort in the same way.
	LC_ALL=C compare_native --setup make_input sort -S 64M -o sorted.txt input.txt
}

test_sha256sum() {
	compare_native --setup make_input sha256sum input.txt
}

test_python() {
	compare_native "$PYTHON" "$PROGRAMS_DIR/python_workout.py"
}

write_c_program() {
	cat >"$1/hello.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  unsigned long sum = 0;
  for (int i = 1; i < argc; ++i) sum += strlen(argv[i]);
  char* buffer = malloc(1 << 20);
  memset(buffer, 'x', 1 << 20);
  printf("hello from %s: %d arguments, %lu characters, %c\n", argv[0], argc - 1, sum, buffer[12345]);
  free(buffer);
  fputs("a line on stderr\n", stderr);
  return 42;
}
C
}

# gcc forks and execs cc1, as, collect2 and ld; then the program runs.
test_gcc() {
	compare_native --setup write_c_program sh -c 'gcc -O2 -Wall -o hello hello.c && ./hello one two three'
}

# A tree with fixed contents and times, so that both archives are equal.
make_tree() {
	mkdir -p "$1/tree/sub/deeper"
	seq 1 20000 >"$1/tree/numbers.txt"
	printf 'hello\n' >"$1/tree/sub/hello.txt"
	head -c 300000 /usr/bin/ls >"$1/tree/sub/deeper/binary"
	ln -s ../numbers.txt "$1/tree/sub/link"
	find "$1/tree" -exec touch -h -d '2020-02-02 20:20:20 UTC' {} +
}

test_tar() {
	compare_native --setup make_tree sh -c 'tar --sort=name -cf archive.tar tree && tar -tvf archive.tar'
}

# Fork children that block on a shared futex, a parent that waits until
# each shows state S in /proc/PID/stat and then wakes them (FUTEX_WAKE) or
# requeues them (FUTEX_CMP_REQUEUE): every call must reach every child, as
# natively, so no child may show S before it reaches its call (while dunk
# builds its VM), and each child's S must be its futex wait. 24 children in
# each of two rounds, all in VM mode.
test_fork_sleepers() {
	cc -O2 -o "$WORK/fork_sleepers" "$TESTS_DIR/../compat/processes/fork_sleepers.c" || fail "cannot build the program"
	compare_native --processes 49 "$WORK/fork_sleepers" 24 2
}

# A page made MADV_DONTFORK is missing in a fork child, which under dunk
# keeps its parent's page tables: its write there is the native SIGSEGV,
# fatal without a handler, delivered to its handler with one.
test_fork_dontfork() {
	cc -O2 -o "$WORK/fork_dontfork" "$TESTS_DIR/../compat/processes/fork_dontfork.c" || fail "cannot build the program"
	compare_native --processes 3 "$WORK/fork_dontfork"
}

# SIGHUP's handler on an alternate stack that another thread flips between
# read-only and read/write: when its frame cannot be written the kernel's
# rule is a SIGSEGV to SIGSEGV's handler (on the normal stack), and the
# program goes on; x87 and XMM state survive either handler.
test_altstack_flip() {
	cc -O2 -pthread -o "$WORK/altstack_flip" "$TESTS_DIR/../compat/signals/altstack_flip.c" || fail "cannot build the program"
	compare_native "$WORK/altstack_flip" "$(rounds DUNK_TEST_ROUNDS 3000 30000)"
}

# SIGUSR1 sent again and again to a thread whose handler SA_NODEFER lets
# nest (up to three deep), and to one whose handler blocks it: each signal
# handled once, the thread's x87 and XMM state intact across the handlers,
# each handler starting from the initial floating-point state
# (tests/compat/signals/nodefer_storm.c).
test_nodefer_storm() {
	cc -O2 -pthread -o "$WORK/nodefer_storm" "$TESTS_DIR/../compat/signals/nodefer_storm.c" || fail "cannot build the program"
	compare_native sh -c '"$0" nodefer "$1" && "$0" defer "$1"' "$WORK/nodefer_storm" "$(rounds DUNK_TEST_ROUNDS 500 20000)"
}

# The first thread ends with pthread_exit and another goes on: dunk's
# copies of the program's memory (signal frames, the calls' arguments)
# went through the pid, which then names a zombie, and every one failed
# (the first signal killed the process with SIGSEGV;
# tests/compat/threads/main_exits.c).
test_main_thread_exits_first() {
	cc -O2 -pthread -o "$WORK/main_exits" "$TESTS_DIR/../compat/threads/main_exits.c" || fail "cannot build the program"
	compare_native "$WORK/main_exits" 200
	expect_eq "the worker's status" 3 "$(<"$WORK/vm.status")"
	expect_eq "its output" "$(printf 'main: leaving\nworker: 200 rounds, 0 errors, 200 signals handled, floating point kept')" "$(<"$WORK/vm.stdout")"
}

main "$@"
