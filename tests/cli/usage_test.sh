#!/usr/bin/env bash
# The dunk command line without KVM (unit tier): help, version, usage errors,
# and every way `dunk exec` refuses to start a program, each with its exit
# status and its one "dunk: " line. None of these may start the program.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_help() {
	run_cmd "$DUNK" --help
	expect_eq "exit status of dunk --help" 0 "$STATUS"
	expect_contains "dunk --help" "exec" "$OUT"
	expect_contains "dunk --help" "check" "$OUT"
	run_cmd "$DUNK" exec --help
	expect_eq "exit status of dunk exec --help" 0 "$STATUS"
	expect_contains "dunk exec --help" "LD_PRELOAD" "$OUT"
	expect_contains "dunk exec --help" "--stats-json" "$OUT"
}

test_version() {
	run_cmd "$DUNK" --version
	expect_eq "exit status of dunk --version" 0 "$STATUS"
	expect_eq "dunk --version" "dunk $DUNK_EXPECTED_VERSION" "$OUT"
}

test_bad_usage() {
	expect_refused 2 "subcommand is required" "$DUNK"
	expect_refused 2 "unknown command 'frobnicate'" "$DUNK" frobnicate
	expect_refused 2 "PROG is required" "$DUNK" exec
	expect_refused 2 "unknown option --bogus" "$DUNK" exec --bogus true
	expect_refused 2 "--stats-json" "$DUNK" exec --stats-json
}

# Every form of dunk exec's options reaches the VM-mode check (which fails
# here), before any report file is created.
test_exec_options() {
	local -a forms=(--stats --stats=- "--stats=$WORK/report" "--stats-json=$WORK/json" "--stats-json $WORK/json"
		"--stats --stats-json=$WORK/json" "--stats --")
	local form
	for form in "${forms[@]}"; do
		# shellcheck disable=SC2086 # split the form into its words
		DUNK_KVM_DEVICE=/nonexistent expect_refused 125 "dunk: no /nonexistent" \
			"$DUNK" exec $form sh -c 'exit 4' -c
	done
	[[ ! -e $WORK/report && ! -e $WORK/json ]] || fail "a report file was created before VM mode was checked"
}

# Options after PROG belong to PROG, dunk's included: dunk must not parse them.
test_options_after_program_are_the_programs() {
	expect_refused 127 "dunk: nonexistent-program-4711: command not found" \
		"$DUNK" exec nonexistent-program-4711 --help --stats
	expect_refused 127 "dunk: --help: command not found" "$DUNK" exec -- --help
}

# The same for dunk sandbox, whatever its options before PROG: repeatable
# ones (one value each time), ones with a value after '=', --ro-bind's
# optional DST. PROG and its arguments reach the VM-mode check, which
# fails here; a dunk that took them would print its help or say that no
# program was given.
test_sandbox_options_leave_the_command_line_alone() {
	local -a forms=("--allow-connect 127.0.0.1:80" "--allow-connect=127.0.0.1:80"
		"--allow-connect 127.0.0.1:80 --allow-connect [::1]:53 --" "--allow-bind 8080 --allow-bind 8081"
		"--unshare-net --allow-bind=8080" "--rlimit-as 64 --time-limit 5 --max-threads 2"
		"--ro-bind=/usr --" "--ro-bind /usr /usr --allow-connect 127.0.0.1:80"
		"--allow-bind 8080 --ro-bind / /" "--learn $WORK/learned.json --log-format text")
	local form
	for form in "${forms[@]}"; do
		# shellcheck disable=SC2086 # split the form into its words
		DUNK_KVM_DEVICE=/nonexistent expect_refused 125 "dunk: cannot enter VM mode: no /nonexistent" \
			"$DUNK" sandbox $form /bin/sh -c 'exit 4' -c --help
	done
	expect_refused 127 "dunk: nonexistent-program-4711: command not found" \
		"$DUNK" sandbox --allow-connect 127.0.0.1:80 nonexistent-program-4711 --help
}

test_not_found() {
	expect_refused 127 "dunk: nonexistent-program-4711: command not found" "$DUNK" exec nonexistent-program-4711
	expect_refused 127 "dunk: ./nonexistent-4711: No such file or directory" "$DUNK" exec ./nonexistent-4711
}

test_not_executable() {
	expect_refused 126 "dunk: /etc/passwd: Permission denied" "$DUNK" exec /etc/passwd
	expect_refused 126 "dunk: /etc: Is a directory" "$DUNK" exec /etc
	# Found on PATH, but not executable: execvp's EACCES.
	touch "$WORK/plain-file"
	expect_refused 126 "dunk: plain-file: Permission denied" env PATH="$WORK" "$DUNK" exec plain-file
}

build_static() {
	printf 'int main(void) { return 0; }\n' >"$WORK/static.c"
	gcc -static -o "$WORK/static" "$WORK/static.c" ||
		fail "cannot build a static executable (gcc -static needs libc.a: Debian's libc6-dev)"
	file_type=$(od -An -c -N4 "$WORK/static" | tr -d ' ')
	expect_eq "the static test program's magic" '177ELF' "$file_type"
}

test_static_program() {
	build_static
	expect_refused 125 "statically linked: dunk exec enters VM mode through the dynamic linker" \
		"$DUNK" exec "$WORK/static"
}

test_script_with_static_interpreter() {
	build_static
	printf '#!%s\n' "$WORK/static" >"$WORK/script"
	chmod +x "$WORK/script"
	expect_refused 125 "interpreter $WORK/static: statically linked" "$DUNK" exec "$WORK/script"
	printf '#!%s/nonexistent-interpreter\n' "$WORK" >"$WORK/script"
	expect_refused 126 "bad interpreter" "$DUNK" exec "$WORK/script"
}

test_setuid_program() {
	# A program the exec gives other credentials to: ld.so ignores LD_PRELOAD.
	if (($(id -u) == 0)); then
		cp /bin/true "$WORK/setuid-true"
		chown 65534 "$WORK/setuid-true"
		chmod 4755 "$WORK/setuid-true"
		expect_refused 125 "set-user-ID" "$DUNK" exec "$WORK/setuid-true"
	else
		expect_refused 125 "set-user-ID" "$DUNK" exec "$(command -v su)"
	fi
}

test_missing_preload_library() {
	DUNK_PRELOAD=$WORK/nonexistent.so expect_refused 125 "cannot use the preload library $WORK/nonexistent.so" \
		"$DUNK" exec true
}

# Without KVM the program must not start natively: `touch` would leave its file.
test_no_kvm_device() {
	DUNK_KVM_DEVICE=/nonexistent expect_refused 125 "dunk: no /nonexistent" \
		"$DUNK" exec touch "$WORK/started"
	[[ ! -e $WORK/started ]] || fail "the program ran although VM mode was unavailable"
}

test_kvm_device_permission_denied() {
	local device=$WORK/kvm
	touch "$device"
	chmod 600 "$device"
	mkdir -m 777 "$WORK/shared" # where nobody could leave a trace
	local -a as_user=()
	if (($(id -u) == 0)); then
		# root may open anything: try as nobody
		as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	else
		chmod 000 "$device"
	fi
	DUNK_KVM_DEVICE=$device expect_refused 125 "permission denied opening $device" \
		"${as_user[@]}" "$DUNK" exec touch "$WORK/shared/started"
	[[ ! -e $WORK/shared/started ]] || fail "the program ran although VM mode was unavailable"
}

test_check_without_kvm() {
	DUNK_KVM_DEVICE=/nonexistent expect_refused 1 "dunk: no /nonexistent" "$DUNK" check
}

test_bench_usage() {
	run_cmd "$DUNK" bench --help
	expect_eq "exit status of dunk bench --help" 0 "$STATUS"
	expect_contains "dunk bench --help" "--json FILE" "$OUT"
	expect_refused 2 "--iterations: Value 10 not in range" "$DUNK" bench --iterations 10
	expect_refused 2 "not expected: --bogus" "$DUNK" bench --bogus
	DUNK_KVM_DEVICE=/nonexistent expect_refused 1 "dunk: no /nonexistent" "$DUNK" bench --json "$WORK/b.json"
	[[ ! -e $WORK/b.json ]] || fail "a JSON report was written although nothing was measured"
}

main "$@"
