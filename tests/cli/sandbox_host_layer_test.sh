#!/usr/bin/env bash
# The host layer of `dunk sandbox` (kvm tier): the seccomp filter and the
# Landlock rules behind the supervisor in ring 0 (src/sandbox/host_layer.h).
# Each test breaks ring 0 on purpose with the test build's switches
# (build/dunk-test-switches, src/sandbox/test_switches.h): first dunk
# itself stops the call in ring 0; then the broken ring 0 with the host
# layer's part switched off lets it through (the switch is real); then the
# broken ring 0 with the host layer on: the host kernel alone stops it.
#
# dunk's own calls (kDunkCalls in src/sandbox/host_layer.cc) were measured
# with the host filter logging what it would refuse instead of killing, in
# the nested test VM (as root, for dmesg):
#   dmesg -C; DUNK_SANDBOX_TEST_HOST_FILTER_LOG=1 build/dunk-test-switches sandbox [--policy P] -- PROG...
#   dmesg | grep -o 'syscall=[0-9]*' | sort | uniq -c
# test_a_strict_policy below checks the list in the filter's killing mode.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

switches() { echo "$(dirname "$DUNK")/dunk-test-switches"; }
programs() { echo "$(dirname "$DUNK")/tests/programs"; }

policy_file() {
	printf '%s\n' "$2" >"$WORK/$1.json"
	echo "$WORK/$1.json"
}

test_host_filter_stops_a_ring0_bug() {
	local policy prog
	policy=$(policy_file deny '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
		{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}')
	prog=$(programs)/sandbox_fs
	# dunk: ring 0 denies the call and says so.
	run_cmd "$DUNK" sandbox --policy "$policy" -- "$prog" call mkdir "$WORK/a"
	expect_eq "dunk's answer" "mkdir $WORK/a: Operation not permitted" "$OUT"
	expect_contains "dunk's report" "dunk sandbox: denied mkdir(\"$WORK/a\", 0755) -> -1 EPERM" "$ERR"
	[[ ! -e $WORK/a ]] || fail "dunk made the directory"
	# Ring 0 passes mkdir on, no host filter: the directory is made.
	DUNK_SANDBOX_TEST_FORWARD=mkdir DUNK_SANDBOX_TEST_NO_HOST_FILTER=1 \
		run_cmd "$(switches)" sandbox --policy "$policy" -- "$prog" call mkdir "$WORK/b"
	expect_eq "exit status without the host filter" 0 "$STATUS"
	expect_eq "the broken ring 0's answer" "mkdir $WORK/b: ok" "$OUT"
	[[ -d $WORK/b ]] || fail "the broken ring 0 did not pass mkdir on"
	[[ $ERR != *"denied mkdir"* ]] || fail "the broken ring 0 still denied mkdir: $ERR"
	# The same with the host filter: the process dies by SIGSYS at the
	# call, and nothing is made.
	DUNK_SANDBOX_TEST_FORWARD=mkdir run_cmd "$(switches)" sandbox --policy "$policy" -- "$prog" call mkdir "$WORK/c"
	expect_eq "exit status with the host filter (SIGSYS)" 159 "$STATUS"
	expect_eq "stdout" "" "$OUT"
	[[ ! -e $WORK/c ]] || fail "the host filter let mkdir through"
	expect_contains "dunk's reason" "killed by SIGSYS" "$ERR"
	[[ $ERR != *"denied mkdir"* ]] || fail "ring 0 denied mkdir, so the host filter was not what stopped it: $ERR"
}

# A view whose trees have the same paths in the view as on the host, so
# that a ring 0 without its view hands the kernel paths that mean the same.
landlock_view() {
	mkdir -p "$WORK"/{in,ro,outside}
	echo inside >"$WORK/in/file"
	echo read-only >"$WORK/ro/file"
	echo SECRET >"$WORK/outside/secret"
	VIEW=(--ro-bind /usr /usr --ro-bind /lib /lib --ro-bind /lib64 /lib64 --ro-bind "$(programs)" "$(programs)"
		--bind "$WORK/in" "$WORK/in" --ro-bind "$WORK/ro" "$WORK/ro")
}

# expect_call WHAT EXPECTED-STDOUT [ENV...] -- DUNK: `sandbox_fs call` in
# the view prints EXPECTED.
expect_call() {
	local what=$1 expected=$2 dunk=$3 call=$4 path=$5
	shift 5
	run_cmd env "$@" "$dunk" sandbox "${VIEW[@]}" -- "$(programs)/sandbox_fs" call "$call" "$path"
	expect_eq "$what" "$expected" "$OUT"
}

test_landlock_stops_a_ring0_bug() {
	landlock_view
	local secret=$WORK/outside/secret ro=$WORK/ro/file
	# dunk: the view in ring 0 (ENOENT outside, EROFS under --ro-bind).
	expect_call "outside, dunk" "read $secret: No such file or directory" "$DUNK" read "$secret"
	expect_call "--ro-bind, dunk" "write $ro: Read-only file system" "$DUNK" write "$ro"
	expect_call "inside, dunk" "read $WORK/in/file: ok: inside" "$DUNK" read "$WORK/in/file"
	# Ring 0 without its view and no Landlock: the host's files.
	local -a broken=(DUNK_SANDBOX_TEST_VIEW_OFF=1)
	expect_call "outside, no view, no Landlock" "$(printf 'ESCAPED: read the secret through %s\nread %s: ok: SECRET' \
		"$secret" "$secret")" "$(switches)" read "$secret" "${broken[@]}" DUNK_SANDBOX_TEST_NO_LANDLOCK=1
	expect_call "--ro-bind, no view, no Landlock" "write $ro: ok" "$(switches)" write "$ro" \
		"${broken[@]}" DUNK_SANDBOX_TEST_NO_LANDLOCK=1
	# Ring 0 without its view, Landlock on: EACCES from the host kernel.
	expect_call "outside, Landlock alone" "read $secret: Permission denied" "$(switches)" read "$secret" "${broken[@]}"
	expect_call "--ro-bind, Landlock alone" "write $ro: Permission denied" "$(switches)" write "$ro" "${broken[@]}"
	expect_call "inside, Landlock alone" "read $WORK/in/file: ok: inside" "$(switches)" read "$WORK/in/file" \
		"${broken[@]}"
	expect_eq "the read-only file" read-only "$(<"$ro")"
}

# A policy that allows only the calls a workload makes (as a run under
# SCMP_ACT_LOG reports them): the sandbox runs it again with no denial,
# and the host filter, which lets through only those and dunk's own, kills
# nothing — dunk's own list is complete for threads, fork, execve and
# signals.
test_a_strict_policy() {
	local script='import os, signal, subprocess, threading
signal.signal(signal.SIGALRM, lambda *a: print("alarm", flush=True))
signal.setitimer(signal.ITIMER_REAL, 0.01)
signal.pause()
t = threading.Thread(target=lambda: print("thread", flush=True)); t.start(); t.join()
print(subprocess.run(["/bin/sh", "-c", "echo child $((6 * 7))"], capture_output=True, text=True).stdout, end="")
print(sum(range(1000)))'
	local log
	log=$(policy_file log '{"defaultAction": "SCMP_ACT_LOG"}')
	"$DUNK" sandbox --policy "$log" --log "$WORK/calls.json" --log-format json -- "$PYTHON" -c "$script" \
		>"$WORK/first.out" || fail "the workload failed under SCMP_ACT_LOG"
	"$PYTHON" - "$WORK/calls.json" "$WORK/strict.json" <<-'EOF' || fail "cannot make the policy"
		import json, sys
		names = sorted({json.loads(line)["call"] for line in open(sys.argv[1])})
		json.dump({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]},
		          open(sys.argv[2], "w"))
		print(len(names), "calls:", " ".join(names))
	EOF
	run_cmd "$DUNK" sandbox --policy "$WORK/strict.json" -- "$PYTHON" -c "$script"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "stdout" "$(<"$WORK/first.out")" "$OUT"
	expect_eq "stdout" "$(printf 'alarm\nthread\nchild 42\n499500')" "$OUT"
	expect_eq "stderr (no denial, no kill)" "" "$ERR"
}

# The same under the limits, the network options and a view: each workload
# runs once with --learn and then under the policy it learned (only the
# calls that run made), with the same options. The host filter, built from
# that policy, must let through what dunk does for the options on the
# program's behalf (prlimit64 for the limits, getsockname for a listen
# under --allow-bind, the view's calls): the same stdout, status and
# number of reports, and no kill by SIGSYS.
strict_rerun() {
	local -a opts=()
	while [[ $1 != -- ]]; do
		opts+=("$1")
		shift
	done
	shift
	rm -f "$WORK/learned.json"
	run_cmd "$DUNK" sandbox "${opts[@]}" --learn "$WORK/learned.json" -- "$@"
	local out=$OUT status=$STATUS reports
	reports=$(grep -c '^dunk sandbox: ' <<<"$ERR" || true)
	[[ -s $WORK/learned.json ]] || fail "--learn wrote nothing under ${opts[*]}"
	run_cmd "$DUNK" sandbox "${opts[@]}" --policy "$WORK/learned.json" -- "$@"
	echo "${opts[*]} -- ${*##*/}: status $STATUS, $reports reports"
	[[ $ERR != *"killed by SIGSYS"* ]] || fail "the host filter killed the rerun under ${opts[*]}: [$ERR]"
	expect_eq "exit status under ${opts[*]} and the learned policy" "$status" "$STATUS"
	expect_eq "stdout under ${opts[*]} and the learned policy" "$out" "$OUT"
	expect_eq "reports under ${opts[*]} and the learned policy" "$reports" "$(grep -c '^dunk sandbox: ' <<<"$ERR" || true)"
}

test_strict_policies_under_the_limits_network_and_view() {
	local net limits a d dir
	net=$(programs)/sandbox_net
	limits=$(programs)/sandbox_limits
	read -r a d <<<"$("$PYTHON" -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
	# AF_UNIX sockets cannot be made in the nested test VM's /tmp (9p).
	dir=$(mktemp -d /dev/shm/dunk-host-layer.XXXXXX 2>/dev/null) || dir=$WORK
	export SOCKET_DIR=$dir
	strict_rerun --allow-connect "127.0.0.1:$a" --allow-bind "$a" --allow-bind "$d" -- "$net" rules "$a" "$d"
	strict_rerun --unshare-net -- "$net" sockets
	# In --unshare-net's namespace: loopback serving, netlink's interfaces.
	strict_rerun --unshare-net -- "$net" loopback "$a"
	strict_rerun --unshare-net -- "$net" interfaces
	strict_rerun --rlimit-as 64 -- "$limits" as
	strict_rerun --rlimit-nofile 20 -- "$limits" threads 3
	strict_rerun --rlimit-as 512 --rlimit-nofile 64 --rlimit-cpu 100 -- "$limits" raise nofile
	strict_rerun --rlimit-stack 1 -- "$limits" stack
	strict_rerun --max-threads 3 -- "$limits" threads 4
	strict_rerun --time-limit 100 -- "$limits" orphan "$WORK/pids"
	strict_rerun --time-limit 2 -- "$limits" sleep "$WORK/pids"
	# A view with the network options: the view's own calls, the socket's
	# path resolved in it after the network decision.
	strict_rerun --ro-bind / / --bind "$dir" "$dir" --allow-connect "127.0.0.1:$a" --allow-bind "$a" \
		--allow-bind "$d" -- "$net" rules "$a" "$d"
	[[ $dir == "$WORK" ]] || rm -rf "$dir"
}

main "$@"
