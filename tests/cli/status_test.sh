#!/usr/bin/env bash
# How `dunk exec` passes on its program's fate and its own (kvm tier): exit
# statuses, death by signal, signals sent to dunk, a KVM that lacks what is
# required, `dunk check`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

spawn() {
	"$PYTHON" "$TESTS_DIR/spawn.py" "$@"
}

test_exit_status() {
	compare_native sh -c 'echo out; echo err >&2; exit 3'
	expect_eq "exit status" 3 "$(<"$WORK/vm.status")"
}

test_killed_by_signal() {
	# Not 128+11 but a real death by SIGSEGV, as the shell would see it.
	expect_eq "native run" "signal SIGSEGV" "$(spawn -- sh -c 'kill -SEGV $$')"
	expect_eq "dunk exec" "signal SIGSEGV" "$(spawn -- "$DUNK" exec sh -c 'kill -SEGV $$')"
	expect_eq "dunk exec" "signal SIGKILL" "$(spawn -- "$DUNK" exec sh -c 'kill -KILL $$')"
	expect_eq "an exit status of 139" "exit 139" "$(spawn -- "$DUNK" exec sh -c 'exit 139')"
}

# dunk passes SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 on to its program.
test_signals_are_forwarded() {
	local sig
	for sig in TERM HUP USR1 USR2; do
		# shellcheck disable=SC2016
		expect_eq "SIG$sig sent to dunk" "$(printf 'ready\ngot %s\nexit 7' "$sig")" \
			"$(spawn --signal-when-ready "SIG$sig" -- "$DUNK" exec \
				sh -c 'trap "echo got $0; exit 7" $0; echo ready; while :; do sleep 0.1; done' "$sig")"
	done
}

# A terminal sends SIGINT and SIGQUIT to the whole process group: dunk leaves
# the decision to its program, which gets them too.
test_sigint_and_sigquit_are_left_to_the_program() {
	local sig
	for sig in INT QUIT; do
		expect_eq "SIG$sig sent to dunk" "$(printf 'ready\ndone\nexit 0')" \
			"$(spawn --signal-when-ready "SIG$sig" -- "$DUNK" exec sh -c 'echo ready; sleep 0.5; echo done')"
	done
}

test_stdin_is_the_programs() {
	expect_eq "dunk exec tr" "HELLO VM" "$(echo 'hello vm' | "$DUNK" exec tr a-z A-Z)"
}

test_environment() {
	local preload
	preload=$(realpath "$(dirname "$DUNK")/libdunk-preload.so")
	expect_eq "LD_PRELOAD" "$preload" "$("$DUNK" exec printenv LD_PRELOAD)"
	expect_eq "LD_PRELOAD" "$preload:libc.so.6" "$(LD_PRELOAD=libc.so.6 "$DUNK" exec printenv LD_PRELOAD)"
	# DUNK_KVM_FD: the KVM handle the tree inherits (docs/ARCHITECTURE.md,
	# `dunk exec`), open in the program.
	local kvm_fd
	kvm_fd=$("$DUNK" exec sh -c 'printf %s "$DUNK_KVM_FD"; readlink "/proc/$$/fd/$DUNK_KVM_FD" >/dev/null || echo " not open"')
	[[ $kvm_fd =~ ^[0-9]+$ ]] || fail "DUNK_KVM_FD in the program's environment: '$kvm_fd'"
	# Nothing else is added. `_` is what the shell sets to the path of the
	# command it runs.
	expect_eq "the rest of the environment" "$(env -u LD_PRELOAD -u DUNK_KVM_FD | grep -v '^_=' | LC_ALL=C sort)" \
		"$("$DUNK" exec env -u LD_PRELOAD -u DUNK_KVM_FD | grep -v '^_=' | LC_ALL=C sort)"
}

test_scripts() {
	printf '#!/bin/sh\necho "script: $# arguments: $*"\nexit 5\n' >"$WORK/script"
	printf 'echo "no #! line: $# arguments: $*"\nexit 6\n' >"$WORK/no-interpreter"
	chmod +x "$WORK/script" "$WORK/no-interpreter"
	compare_native "$WORK/script" a b
	rm -rf "$WORK/native" "$WORK/vm"
	compare_native "$WORK/no-interpreter" c
}

test_missing_capability() {
	DUNK_REQUIRE_KVM_CAP=100000 expect_refused 125 "lacks capability 100000" \
		"$DUNK" exec touch "$WORK/started"
	[[ ! -e $WORK/started ]] || fail "the program ran although VM mode was unavailable"
}

test_check() {
	run_cmd "$DUNK" check
	expect_eq "exit status of dunk check" 0 "$STATUS"
	expect_eq "dunk check" "dunk: VM mode works (KVM at /dev/kvm)" "$OUT"
	DUNK_REQUIRE_KVM_CAP=100000 expect_refused 1 "lacks capability 100000" "$DUNK" check
}

main "$@"
