#!/usr/bin/env bash
# `dunk exec --gdb` (kvm tier): Debian's gdb, in batch mode, debugs a program
# of the project's own (tests/programs/gdb_target.c, DUNK_GDB_TARGET) while it
# runs in VM mode: a breakpoint in a function, the backtrace, a step, a
# variable, a watchpoint's old and new values (twice), a register, a signal
# that stops a second thread and is delivered on, the threads, and the run
# to the program's exit, whose status dunk passes on.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET=${DUNK_GDB_TARGET:-}

# serve ADDRESS: starts `dunk exec --gdb=ADDRESS` on the program in the
# background (DUNK_PID) and waits for its one line saying where gdb
# connects (ANNOUNCED: that address).
serve() {
	[[ -x $TARGET ]] || fail "DUNK_GDB_TARGET does not name the test program: [$TARGET]"
	command -v gdb >/dev/null || fail "gdb is not installed (scripts/setup installs it)"
	"$DUNK" exec --gdb="$1" -- "$TARGET" >"$WORK/program.out" 2>"$WORK/program.err" &
	DUNK_PID=$!
	local i
	for ((i = 0; i < 600; i++)); do
		if ANNOUNCED=$(sed -n 's/^dunk: waiting for gdb: target remote //p' "$WORK/program.err") && [[ -n $ANNOUNCED ]]; then
			return 0
		fi
		kill -0 "$DUNK_PID" 2>/dev/null || fail "dunk exec --gdb=$1 ended before gdb connected: $(<"$WORK/program.err")"
		sleep 0.1
	done
	kill -KILL "$DUNK_PID"
	fail "dunk exec --gdb=$1 did not say where gdb connects within 60 s"
}

# debug COMMAND...: gdb in batch mode on the program, connected to ANNOUNCED,
# runs each COMMAND; its output into GDB_OUT. Then dunk's exit status into
# DUNK_STATUS.
debug() {
	local -a args=(-nx -batch -ex 'set confirm off' -ex "target remote $ANNOUNCED")
	local command
	for command in "$@"; do
		args+=(-ex "$command")
	done
	local gdb_status=0
	timeout 600 gdb "${args[@]}" "$TARGET" >"$WORK/gdb.out" 2>&1 || gdb_status=$?
	GDB_OUT=$(<"$WORK/gdb.out")
	DUNK_STATUS=0
	wait "$DUNK_PID" || DUNK_STATUS=$?
	echo "--- gdb's output" && echo "$GDB_OUT"
	echo "--- the program's stderr" && cat "$WORK/program.err"
	expect_eq "gdb's exit status" 0 "$gdb_status"
}

# expect_in_order WHAT TEXT PATTERN...: each extended regular expression
# matches a line of TEXT, each on a line after the previous one's.
expect_in_order() {
	local what=$1 text=$2
	shift 2
	local line_no=0 pattern found n
	for pattern in "$@"; do
		found=$(printf '%s\n' "$text" | tail -n +$((line_no + 1)) | grep -n -m1 -E -- "$pattern" | cut -d: -f1) ||
			fail "$what: no line matching [$pattern] after line $line_no of:
$text"
		n=$found
		line_no=$((line_no + n))
	done
}

test_break_step_watch_to_exit() {
	# The socket in /dev/shm: the test VM's /tmp is a 9p share, where no
	# socket can be bound (ENXIO).
	SOCKETS=$(mktemp -d /dev/shm/dunk-gdb-test.XXXXXX)
	trap 'rm -rf "$WORK" "$SOCKETS"' EXIT
	# Hardware watchpoints (the debug registers, KVM_GUESTDBG_USE_HW_BP)
	# where the machine arms them for a guest. The nested test VM's QEMU
	# (before 9.1) does not: on VMRUN it takes DR7 from the VMCB without
	# arming its breakpoints, so they never fire (docs/ARCHITECTURE.md,
	# "Debugging"). There gdb watches by single-stepping the program, which
	# checks the stub's steps instead.
	local watch_setting='set can-use-hw-watchpoints 1' watchpoint='Hardware watchpoint 2: counter'
	if [[ ${DUNK_TEST_VM:-} == qemu-tcg ]]; then
		watch_setting='set can-use-hw-watchpoints 0' watchpoint='Watchpoint 2: counter'
	fi
	serve "unix:$SOCKETS/gdb.sock"
	expect_eq "where gdb connects" "$SOCKETS/gdb.sock" "$ANNOUNCED"
	debug "$watch_setting" 'break square' continue bt step 'print y' 'watch counter' continue \
		'info registers rip' continue delete continue 'info threads' bt continue
	expect_in_order "gdb's transcript" "$GDB_OUT" \
		'^dunk::enter \(options=\.\.\.\) at .*src/core/enter\.cc:[0-9]+$' \
		'^Breakpoint 1 at 0x[0-9a-f]+: file .*gdb_target\.c, line 14\.$' \
		'^Breakpoint 1, square \(x=7\) at .*gdb_target\.c:14$' \
		'^14[[:space:]]+int y = x \* x;$' \
		'^#0  square \(x=7\) at .*gdb_target\.c:14$' \
		'^#1  0x[0-9a-f]+ in main \(\) at .*gdb_target\.c:34$' \
		'^15[[:space:]]+return y;$' \
		'^\$1 = 49$' \
		"^$watchpoint\$" \
		"^$watchpoint\$" \
		'^Old value = 0$' \
		'^New value = 49$' \
		'^bump \(by=49\) at .*gdb_target\.c:20$' \
		'^rip +0x[0-9a-f]+ +0x[0-9a-f]+ <bump\+[0-9]+>$' \
		"^$watchpoint\$" \
		'^Old value = 49$' \
		'^New value = 50$' \
		'^bump \(by=1\) at .*gdb_target\.c:20$' \
		'^Thread 2 received signal SIGUSR1, User defined signal 1\.$' \
		'^  1    Thread [0-9]+ \(vCPU [0-9]+\) (0x[0-9a-f]+ in )?main \(\) at .*gdb_target\.c:43$' \
		'^\* 2    Thread [0-9]+ \(vCPU [0-9]+\) ' \
		'^#[0-9]  0x[0-9a-f]+ in signalled \(arg=0x0\) at .*gdb_target\.c:29$' \
		'^\[Inferior 1 \(Remote target\) exited with code 03\]$'
	# Thread 1 was kicked out of its loop in guest mode (line 43) when thread
	# 2 stopped; the program's handler ran: gdb delivered the signal.
	expect_eq "the program's output" "counter 50, caught 10" "$(<"$WORK/program.out")"
	expect_eq "dunk's exit status (the program's)" 3 "$DUNK_STATUS"
	[[ ! -e $SOCKETS/gdb.sock ]] || fail "the socket file is left behind"
}

# --gdb=0: a TCP port of the system's choosing on 127.0.0.1, which dunk
# names. A conversation without gdb (its start-up takes long in the test
# VM): why the program stands (stopped at its first instruction in VM
# mode, SIGTRAP), then detach, after which it runs to its end undebugged.
test_tcp_port_and_detach() {
	serve 0
	[[ $ANNOUNCED =~ ^127\.0\.0\.1:([0-9]+)$ ]] || fail "announced address: [$ANNOUNCED]"
	local port=${BASH_REMATCH[1]} reply
	((port != 0)) || fail "port 0 announced"
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf '$?#3f' >&3
	IFS= read -r -d '#' -t 60 -u 3 reply || fail "no reply to '?': [$reply]"
	[[ $reply =~ ^\+\$T05thread:[0-9a-f]+\;$ ]] || fail "reply to '?': [$reply]"
	IFS= read -r -n 2 -t 10 -u 3 reply
	printf '+$D#44' >&3
	IFS= read -r -d '#' -t 60 -u 3 reply || fail "no reply to 'D': [$reply]"
	expect_eq "reply to 'D'" '+$OK' "$reply"
	exec 3>&-
	DUNK_STATUS=0
	wait "$DUNK_PID" || DUNK_STATUS=$?
	expect_eq "the program's output" "counter 50, caught 10" "$(<"$WORK/program.out")"
	expect_eq "dunk's exit status (the program's)" 3 "$DUNK_STATUS"
}

# An address the stub cannot serve at: PROG does not run.
test_bad_address() {
	[[ -x $TARGET ]] || fail "DUNK_GDB_TARGET does not name the test program: [$TARGET]"
	expect_refused 125 "cannot serve gdb: --gdb takes PORT, HOST:PORT or unix:PATH" "$DUNK" exec --gdb=nonsense -- "$TARGET"
	expect_refused 125 "cannot serve gdb: --gdb=HOST:PORT takes an IPv4 address as HOST" \
		"$DUNK" exec --gdb=example.com:1 -- "$TARGET"
}

main "$@"
