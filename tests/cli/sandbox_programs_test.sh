#!/usr/bin/env bash
# Real programs under `dunk sandbox` (kvm tier): sqlite3, git, a coreutils
# pipeline, a forking shell script and gcc compiling and linking, each under
# the built-in default policy and under the Docker-format profile
# tests/compat/sandbox/docker_profile.json, give what they give natively:
# exit status, stdout, stderr and files, byte for byte, with no report from
# dunk but glibc's clone3 probes. The bounded part of `scripts/compat
# sandbox` (docs/compat/sandbox.md), with the same workloads.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKLOADS=$(cd "$TESTS_DIR/../compat/sandbox" && pwd)
PROFILE=$WORKLOADS/docker_profile.json
# Docker's capability set for a default container, for every run (native
# too): the profile's capability conditions then read as for such a
# container (no CAP_SYS_ADMIN: clone3 is answered ENOSYS, clone without
# namespace flags only).
DOCKER_CAPS=-all,+chown,+dac_override,+fsetid,+fowner,+mknod,+net_raw,+setgid,+setuid,+setfcap,+setpcap,+net_bind_service,+sys_chroot,+kill,+audit_write

# glibc makes a thread with clone3 first and falls back to clone on ENOSYS,
# which both policies answer: the one report a working program gets.
drop_clone3_probes() {
	grep -v '^dunk sandbox: denied clone3(0x[0-9a-f]*, 88) -> -1 ENOSYS by syscalls\[[0-9]*\]: clone3: SCMP_ACT_ERRNO(38) \[pid [0-9]* tid [0-9]* rip 0x[0-9a-f]*\]$' "$1" || true
}

# parity SETUP VOLATILE CMD...: CMD natively, under `dunk sandbox` with the
# built-in default policy and under it with the Docker-format profile, each
# in a fresh directory prepared by SETUP DIR, with Docker's capability set
# and a clean environment: the same exit status, stdout, stderr (clone3
# probes aside) and files (VOLATILE, a file that records inode numbers and
# times, only present in both); and each sandboxed run went through the
# supervisor.
parity() {
	local setup=$1 volatile=$2
	shift 2
	# The runs' directories on a tmpfs where there is one: the nested test
	# VM's /tmp is the host's over 9p, where each of git's and the
	# pipeline's small file operations costs a round trip.
	local runs=$WORK
	if [[ -w /dev/shm ]] && [[ $(stat -f -c %T /dev/shm) == tmpfs ]]; then
		runs=$(mktemp -d /dev/shm/dunk-sandbox-programs.XXXXXX)
		trap 'rm -rf "$WORK" "'"$runs"'"' EXIT
	fi
	local mode dir start
	for mode in native default docker; do
		dir=$runs/$mode
		mkdir "$dir"
		"$setup" "$dir"
		local -a prefix=(setpriv --bounding-set "$DOCKER_CAPS" --inh-caps -all --)
		case $mode in
		default) prefix+=("$DUNK" sandbox --stats-json="$WORK/$mode.stats.json" --) ;;
		docker) prefix+=("$DUNK" sandbox --policy "$PROFILE" --stats-json="$WORK/$mode.stats.json" --) ;;
		esac
		start=$EPOCHREALTIME
		(cd "$dir" && exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME="$dir" TMPDIR="$dir" \
			"${prefix[@]}" "$@") >"$WORK/$mode.stdout" 2>"$WORK/$mode.stderr" </dev/null &&
			echo 0 >"$WORK/$mode.status" || echo $? >"$WORK/$mode.status"
		awk -v what="$*" -v mode="$mode" -v start="$start" -v end="$EPOCHREALTIME" \
			'BEGIN { printf "%s: %-7s %7.2f s\n", what, mode, end - start }'
		if [[ -n $volatile ]]; then
			[[ -f $dir/$volatile ]] || fail "$mode: $volatile is missing"
			rm "$dir/$volatile"
		fi
	done
	for mode in default docker; do
		same_files "$mode: exit status of $*" "$WORK/native.status" "$WORK/$mode.status"
		same_files "$mode: stdout of $*" "$WORK/native.stdout" "$WORK/$mode.stdout"
		drop_clone3_probes "$WORK/$mode.stderr" >"$WORK/$mode.stderr.kept"
		same_files "$mode: stderr of $* (clone3 probes aside)" "$WORK/native.stderr" "$WORK/$mode.stderr.kept"
		same_trees "$runs/native" "$runs/$mode"
		"$PYTHON" "$TESTS_DIR/stats_check.py" "$WORK/$mode.stats.json" "processes >= 1" "totals.syscalls >= 1" ||
			fail "$mode: $* did not run under the sandbox's supervisor"
	done
}

no_setup() { :; }
sql_setup() { cp "$WORKLOADS/workload.sql" "$1/"; }

# Three C files and a header: the driver runs cc1 and as for each, then
# collect2 and ld; the program it made runs too.
c_setup() {
	cat >"$1/util.h" <<-'EOF'
		unsigned long fold(const char *s);
		int primes_below(int n);
	EOF
	cat >"$1/fold.c" <<-'EOF'
		#include "util.h"
		unsigned long fold(const char *s) {
		  unsigned long h = 5381;
		  while (*s) h = h * 33 + (unsigned char)*s++;
		  return h;
		}
	EOF
	cat >"$1/primes.c" <<-'EOF'
		#include "util.h"
		int primes_below(int n) {
		  int count = 0;
		  for (int i = 2; i < n; ++i) {
		    int prime = 1;
		    for (int d = 2; d * d <= i && prime; ++d) prime = i % d != 0;
		    count += prime;
		  }
		  return count;
		}
	EOF
	cat >"$1/main.c" <<-'EOF'
		#include <stdio.h>
		#include "util.h"
		int main(int argc, char **argv) {
		  for (int i = 0; i < argc; ++i) printf("%s: %lu\n", i ? argv[i] : "argv[0]", i ? fold(argv[i]) : 0UL);
		  printf("primes below 10000: %d\n", primes_below(10000));
		  return 3;
		}
	EOF
}

GCC_SCRIPT='gcc -O2 -Wall -Werror -c fold.c primes.c && gcc -O2 -Wall -Werror -o prog main.c fold.o primes.o && ./prog ring three'

test_sqlite3() { parity sql_setup "" sqlite3 test.db ".read workload.sql"; }
test_git() { parity no_setup repo/.git/index sh "$WORKLOADS/git.sh"; }
test_coreutils_pipeline() { parity no_setup "" bash "$WORKLOADS/pipeline.sh"; }
test_forking_shell() { parity no_setup "" sh "$WORKLOADS/forking.sh"; }
test_gcc() { parity c_setup "" sh -c "$GCC_SCRIPT"; }

main "$@"
