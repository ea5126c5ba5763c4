#!/usr/bin/env bash
# `dunk exec --strace[=FILE]` (kvm tier): a line for every system call of
# the program's tree, decoded as strace decodes it, with the thread and the
# time in front; the program's own output and descriptors untouched.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The calls of TRACE (a file), one a line, without the "PID TIME " prefix:
# a call shown as it started ("read(0, <unfinished ...>") joined with its
# end ("<... read resumed>...) = 6") from the same thread, as strace's own
# output can be joined. Fails on an end without its start.
joined_calls() {
	"$PYTHON" - "$1" <<'PY' || fail "unpaired lines in the trace"
import re, sys
line_re = re.compile(r"^(\d+) \d\d:\d\d:\d\d\.\d{6} (.*)$")
started = {}
for line in open(sys.argv[1]):
    m = line_re.match(line.rstrip("\n"))
    if not m:
        sys.exit(f"not a trace line: {line!r}")
    tid, call = m.groups()
    if call.endswith(" <unfinished ...>"):
        started[tid] = call[: -len(" <unfinished ...>")]
        continue
    r = re.match(r"^<\.\.\. (\w+) resumed>(.*)$", call)
    if r:
        start = started.pop(tid, None)
        if start is None or not start.startswith(r.group(1) + "("):
            sys.exit(f"{tid}: an end without its start: {call!r}")
        call = start + r.group(2)
    print(call)
for tid, call in started.items():
    print(call + " <unfinished ...>")
PY
}

# The joined calls of TRACE that contain TEXT.
calls_matching() {
	joined_calls "$1" | grep -F -- "$2" || true
}

test_calls_into_a_file() {
	run_cmd "$DUNK" exec --strace="$WORK/trace" cat /nonexistent-dunk-strace
	expect_eq "exit status" 1 "$STATUS"
	expect_eq "stdout" "" "$OUT"
	# The program's own message, nothing of dunk's.
	expect_eq "stderr" "cat: /nonexistent-dunk-strace: No such file or directory" "$ERR"
	expect_eq "the failed open" \
		'openat(AT_FDCWD, "/nonexistent-dunk-strace", O_RDONLY) = -1 ENOENT (No such file or directory)' \
		"$(calls_matching "$WORK/trace" 'openat(AT_FDCWD, "/nonexistent-dunk-strace"')"
	# cat writes its message in parts, unbuffered.
	expect_contains "the message's writes" \
		'write(2, "/nonexistent-dunk-strace", 24) = 24' "$(calls_matching "$WORK/trace" 'write(2,')"
	expect_eq "the end" 'exit_group(1) = ?' "$(calls_matching "$WORK/trace" 'exit_group(')"
	# Every line: the thread, the time, a call with its result, or a call
	# that did not end (execve of the new image).
	local bad
	bad=$(joined_calls "$WORK/trace" | grep -Ev '^[a-z_0-9]+\(.*\) = .+$|^execve\(.* <unfinished \.\.\.>$' || true)
	expect_eq "lines not in strace's form" "" "$bad"
}

test_stderr_by_default() {
	run_cmd "$DUNK" exec --strace /bin/echo hello
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "stdout" "hello" "$OUT"
	printf '%s\n' "$ERR" >"$WORK/stderr"
	expect_eq "echo's write, on stderr" 'write(1, "hello\n", 6) = 6' "$(calls_matching "$WORK/stderr" 'write(1,')"
}

# The trace's descriptor is dunk's: the program sees the descriptors it
# would see natively, and cannot write into the trace.
test_descriptor_out_of_reach() {
	local native
	native=$(ls /proc/self/fd)
	run_cmd "$DUNK" exec --strace="$WORK/trace" ls /proc/self/fd
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "descriptors the program sees" "$native" "$OUT"
	# The program knows the number (DUNK_STRACE_FD is in its environment)
	# and writes to it: nothing reaches the trace.
	run_cmd "$DUNK" exec --strace="$WORK/trace" "$PYTHON" -c '
import os
target = int(os.environ["DUNK_STRACE_FD"])
try:
    os.write(target, b"INJECTED\n")
except OSError:
    pass
print(target)
'
	expect_eq "exit status" 0 "$STATUS"
	[[ $OUT =~ ^[0-9]+$ ]] || fail "the program did not see DUNK_STRACE_FD: [$OUT]"
	if grep -q '^INJECTED' "$WORK/trace"; then fail "the program wrote into the trace"; fi
	# The attempt is in the trace.
	expect_eq "the write to the trace's number, refused as for a closed descriptor" \
		"write($OUT, \"INJECTED\\n\", 9) = -1 EBADF (Bad file descriptor)" \
		"$(calls_matching "$WORK/trace" "write($OUT, ")"
}

# Every process of the tree writes into the same file, whole lines.
test_process_tree() {
	run_cmd "$DUNK" exec --strace="$WORK/trace" sh -c '/bin/echo one; /bin/echo two'
	expect_eq "stdout" "$(printf 'one\ntwo')" "$OUT"
	# sh and each echo it starts (a vfork child, which executes echo).
	local pids
	pids=$(cut -d' ' -f1 "$WORK/trace" | sort -u | wc -l)
	[[ $pids -ge 3 ]] || fail "lines from $pids process(es), not 3"
	local calls
	calls=$(joined_calls "$WORK/trace")
	expect_contains "echo one" 'write(1, "one\n", 4) = 4' "$calls"
	expect_contains "echo two" 'write(1, "two\n", 4) = 4' "$calls"
}

test_unwritable_file_refused() {
	expect_refused 125 "cannot write the system-call trace to $WORK/no/such/dir/trace" \
		"$DUNK" exec --strace="$WORK/no/such/dir/trace" /bin/true
}

main "$@"
