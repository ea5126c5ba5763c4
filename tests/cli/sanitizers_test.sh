#!/usr/bin/env bash
# Sanitized programs under `dunk exec` (kvm tier): AddressSanitizer (with its
# leak check), UndefinedBehaviorSanitizer and ThreadSanitizer as GCC builds
# them, MemorySanitizer and AddressSanitizer as clang builds them, and
# process trees that mix sanitized and plain programs. Each must report
# what it reports natively, with the same exit status; reports are compared
# after normalise_report, which replaces what differs between two native
# runs as well (addresses, process and thread IDs).
#
# The programs (tests/programs/sanitizers/) are built natively for each test.
# The clang ones need Debian's clang and libclang-rt-dev; without them those
# tests fail with a message that says so, rather than pass unchecked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOURCES=$PROGRAMS_DIR/sanitizers
BIN=

normalise_report() {
	sed -E -e 's/0x[0-9a-f]+/0xADDRESS/g' \
		-e 's/==[0-9]+==/==PID==/g' \
		-e 's/(pid|tid)=[0-9]+/\1=ID/g'
}

# build NAME SOURCE COMPILER FLAGS...: $BIN/NAME from tests/programs/sanitizers/SOURCE.
build() {
	local name=$1 source=$2 compiler=$3
	shift 3
	command -v "$compiler" >/dev/null ||
		fail "$compiler is not installed (Debian: apt-get install clang libclang-rt-dev for the clang tests)"
	"$compiler" -g -fno-omit-frame-pointer "$@" -o "$BIN/$name" "$SOURCES/$source" -lpthread ||
		fail "cannot build $name"
}

setup_bin() {
	BIN=$WORK/bin
	mkdir -p "$BIN"
}

test_asan_heap_overflow() {
	setup_bin
	build heap_overflow_asan heap_overflow.c gcc -fsanitize=address
	compare_native --normalise normalise_report "$BIN/heap_overflow_asan"
	expect_eq "exit status" 1 "$(<"$WORK/vm.status")"
	expect_contains "report" "ERROR: AddressSanitizer: heap-buffer-overflow" "$(<"$WORK/vm.stderr")"
	expect_contains "report" "is located 0 bytes to the right of 16-byte region" "$(<"$WORK/vm.stderr")"
}

test_asan_clean() {
	setup_bin
	build clean_asan clean.c gcc -fsanitize=address
	compare_native "$BIN/clean_asan"
	expect_eq "exit status" 0 "$(<"$WORK/vm.status")"
	expect_eq "stderr" "" "$(<"$WORK/vm.stderr")"
	expect_contains "stdout" "sanitized-program: bytes" "$(<"$WORK/vm.stdout")"
}

# The leak check runs at exit in a tracer thread that stops the others with
# ptrace and scans their registers and stacks for pointers.
test_asan_leak() {
	setup_bin
	build leak_asan leak.c gcc -fsanitize=address
	compare_native --normalise normalise_report "$BIN/leak_asan"
	expect_eq "exit status" 1 "$(<"$WORK/vm.status")"
	expect_contains "report" "Direct leak of 100 byte(s) in 1 object(s)" "$(<"$WORK/vm.stderr")"
}

test_ubsan() {
	setup_bin
	build undefined_ubsan undefined.c gcc -fsanitize=undefined
	compare_native "$BIN/undefined_ubsan"
	expect_eq "exit status" 0 "$(<"$WORK/vm.status")"
	expect_lines "reports" 3 "$(<"$WORK/vm.stderr")"
	rm -rf "$WORK/native" "$WORK/vm"
	# Built to stop at the first report: exit status 1.
	build undefined_ubsan_stop undefined.c gcc -fsanitize=undefined -fno-sanitize-recover=all
	compare_native "$BIN/undefined_ubsan_stop"
	expect_eq "exit status" 1 "$(<"$WORK/vm.status")"
	expect_contains "report" "signed integer overflow" "$(<"$WORK/vm.stderr")"
}

test_tsan_race() {
	setup_bin
	build race_tsan race.c gcc -fsanitize=thread
	compare_native --normalise normalise_report "$BIN/race_tsan"
	expect_eq "exit status" 66 "$(<"$WORK/vm.status")"
	expect_contains "report" "WARNING: ThreadSanitizer: data race" "$(<"$WORK/vm.stderr")"
}

test_tsan_clean() {
	setup_bin
	build clean_tsan clean.c gcc -fsanitize=thread
	compare_native "$BIN/clean_tsan"
	expect_eq "exit status" 0 "$(<"$WORK/vm.status")"
	expect_eq "stderr" "" "$(<"$WORK/vm.stderr")"
}

# Timer signals while threads run: dunk delivers them in VM mode, and
# ThreadSanitizer runs each handler at a safe point of its own.
test_signals() {
	setup_bin
	local sanitizer
	for sanitizer in thread address; do
		build "signals_$sanitizer" signals.c gcc -fsanitize=$sanitizer
		compare_native "$BIN/signals_$sanitizer"
		expect_eq "exit status" 0 "$(<"$WORK/vm.status")"
		expect_eq "stderr" "" "$(<"$WORK/vm.stderr")"
		rm -rf "$WORK/native" "$WORK/vm"
	done
}

test_msan() {
	setup_bin
	build uninitialized_msan uninitialized.c clang -fsanitize=memory
	compare_native --normalise normalise_report "$BIN/uninitialized_msan"
	expect_eq "exit status" 1 "$(<"$WORK/vm.status")"
	expect_contains "report" "WARNING: MemorySanitizer: use-of-uninitialized-value" "$(<"$WORK/vm.stderr")"
}

# clang links AddressSanitizer's runtime into the program by default, and
# as a shared library (libclang_rt.asan-x86_64.so, which checks that it
# comes first like GCC's libasan) with -shared-libasan.
test_clang_asan() {
	setup_bin
	build heap_overflow_clang_asan heap_overflow.c clang -fsanitize=address
	compare_native --normalise normalise_report "$BIN/heap_overflow_clang_asan"
	expect_eq "exit status" 1 "$(<"$WORK/vm.status")"
	expect_contains "report" "ERROR: AddressSanitizer: heap-buffer-overflow" "$(<"$WORK/vm.stderr")"
	rm -rf "$WORK/native" "$WORK/vm"
	local runtime
	runtime=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
	[[ -f $runtime ]] || fail "clang has no shared AddressSanitizer runtime ($runtime)"
	build heap_overflow_clang_shared_asan heap_overflow.c clang -fsanitize=address -shared-libasan \
		-Wl,-rpath,"$(dirname "$runtime")"
	compare_native --normalise normalise_report "$BIN/heap_overflow_clang_shared_asan"
	expect_eq "exit status" 1 "$(<"$WORK/vm.status")"
	expect_contains "report" "ERROR: AddressSanitizer: heap-buffer-overflow" "$(<"$WORK/vm.stderr")"
}

# What a sanitized program sees of dunk's library: its library list is the
# native one with libdunk-preload.so right after the runtime, and its
# LD_PRELOAD is what every program under dunk exec sees (dunk's library,
# then the caller's). A plain program has dunk's library first.
test_library_list() {
	setup_bin
	build libraries_asan libraries.c gcc -fsanitize=address
	build libraries libraries.c gcc
	local preload native vm
	preload=$(realpath "$(dirname "$DUNK")/libdunk-preload.so")
	for program in libraries_asan libraries; do
		native=$("$BIN/$program")
		vm=$("$DUNK" exec "$BIN/$program")
		expect_eq "$program: LD_PRELOAD" "LD_PRELOAD $preload" "$(grep '^LD_PRELOAD' <<<"$vm")"
		expect_eq "$program: LD_PRELOAD natively" "LD_PRELOAD (unset)" "$(grep '^LD_PRELOAD' <<<"$native")"
		local expected
		if [[ $program == libraries_asan ]]; then
			expected=$(sed '/^library libasan/a library libdunk-preload.so' <<<"$native")
		else
			expected=$(sed '0,/^library /s//library libdunk-preload.so\n&/' <<<"$native")
		fi
		expect_eq "$program: library list" "$(grep '^library' <<<"$expected")" "$(grep '^library' <<<"$vm")"
	done
	# The caller's LD_PRELOAD is kept after dunk's, also when the runtime
	# is put first: here the caller preloads the runtime itself, then libm.
	vm=$(LD_PRELOAD=libasan.so.8:libm.so.6 "$DUNK" exec "$BIN/libraries_asan")
	expect_eq "LD_PRELOAD with the caller's" "LD_PRELOAD $preload:libasan.so.8:libm.so.6" \
		"$(grep '^LD_PRELOAD' <<<"$vm")"
	native=$(LD_PRELOAD=libasan.so.8:libm.so.6 "$BIN/libraries_asan")
	expected=$(sed '/^library libasan/a library libdunk-preload.so' <<<"$native")
	expect_eq "library list with the caller's" "$(grep '^library' <<<"$expected")" "$(grep '^library' <<<"$vm")"
	# A library of the caller's before the runtime: the runtime refuses to
	# run natively, and under dunk exec alike (before dunk's library enters
	# VM mode, so compare_native's check of VM mode does not apply).
	run_cmd env LD_PRELOAD=libm.so.6 "$BIN/libraries_asan"
	native="$STATUS $(normalise_report <<<"$ERR")"
	run_cmd env LD_PRELOAD=libm.so.6 "$DUNK" exec "$BIN/libraries_asan"
	expect_eq "refusal" "$native" "$STATUS $(normalise_report <<<"$ERR")"
	expect_contains "refusal" "ASan runtime does not come first in initial library list" "$ERR"
}

# A sanitized program as a script's interpreter: executed again as itself
# (/proc/self/exe), with the arguments the kernel gave it (the script's path).
test_asan_script_interpreter() {
	setup_bin
	build heap_overflow_asan heap_overflow.c gcc -fsanitize=address
	printf '#!%s\n' "$BIN/heap_overflow_asan" >"$BIN/script"
	chmod +x "$BIN/script"
	compare_native --normalise normalise_report "$BIN/script"
	expect_eq "exit status" 1 "$(<"$WORK/vm.status")"
	expect_contains "report" "ERROR: AddressSanitizer: heap-buffer-overflow" "$(<"$WORK/vm.stderr")"
}

# A sanitized parent's plain children get no sanitizer runtime, by fork +
# exec and by posix_spawn (vfork), which dunk runs outside VM mode until
# the child executes.
test_sanitized_parent_plain_child() {
	setup_bin
	build spawner_asan spawner.c gcc -fsanitize=address
	build libraries libraries.c gcc
	compare_native --processes 3 "$BIN/spawner_asan" "$BIN/libraries" --runtimes
	expect_eq "stdout" "$(printf 'no sanitizer runtime\nfork+exec: exit 0\nno sanitizer runtime\nposix_spawn: exit 0')" \
		"$(<"$WORK/vm.stdout")"
}

# A plain parent's sanitized children find their runtime first, and report
# as natively.
test_plain_parent_sanitized_child() {
	setup_bin
	build spawner spawner.c gcc
	build heap_overflow_asan heap_overflow.c gcc -fsanitize=address
	compare_native --processes 3 --normalise normalise_report "$BIN/spawner" "$BIN/heap_overflow_asan"
	expect_contains "stdout" "$(printf 'fork+exec: exit 1\n')" "$(<"$WORK/vm.stdout")"
	expect_contains "stdout" "posix_spawn: exit 1" "$(<"$WORK/vm.stdout")"
	expect_eq "reports" 2 "$(grep -c 'ERROR: AddressSanitizer: heap-buffer-overflow' "$WORK/vm.stderr")"
}

# Sanitized children of a sanitized parent, through a shell in between.
test_sanitized_tree() {
	setup_bin
	build spawner_asan spawner.c gcc -fsanitize=address
	build libraries_asan libraries.c gcc -fsanitize=address
	compare_native --processes 3 "$BIN/spawner_asan" sh -c "$BIN/libraries_asan --runtimes"
	expect_eq "stdout" "$(printf 'sanitizer runtime libasan.so.8\nfork+exec: exit 0\nsanitizer runtime libasan.so.8\nposix_spawn: exit 0')" \
		"$(<"$WORK/vm.stdout")"
}

main "$@"
