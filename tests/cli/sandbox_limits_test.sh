#!/usr/bin/env bash
# `dunk sandbox`'s limits (kvm tier): --rlimit-as/nofile/stack/nproc give the
# program what the same limits give it natively (compared with a native run
# under prlimit), a hard limit dunk set cannot be raised, --max-threads'
# extra thread fails with EAGAIN and a report, and --time-limit kills the
# whole sandboxed tree with status 124. The --cgroup-* limits hold for the
# whole tree: a fork bomb across processes stops at --cgroup-pids-max with
# EAGAIN, a memory hog dies at --cgroup-mem-max (137 and a reason line),
# cpu.max throttles, and no cgroup is left behind; without a writable
# cgroup v2 the options are refused before anything runs (125).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

limits_program() {
	echo "$(dirname "$DUNK")/tests/programs/sandbox_limits"
}

# same_as_native "PRLIMIT OPTIONS" "SANDBOX OPTIONS" ARGS...: the program
# under prlimit and under dunk sandbox prints the same and ends the same.
same_as_native() {
	local native=$1 sandbox=$2
	shift 2
	local -a native_opts sandbox_opts
	read -r -a native_opts <<<"$native"
	read -r -a sandbox_opts <<<"$sandbox"
	run_cmd prlimit "${native_opts[@]}" -- "$(limits_program)" "$@"
	local native_out=$OUT native_status=$STATUS
	run_cmd "$DUNK" sandbox "${sandbox_opts[@]}" -- "$(limits_program)" "$@"
	echo "$OUT"
	expect_eq "stdout under $sandbox (native: prlimit $native)" "$native_out" "$OUT"
	expect_eq "exit status under $sandbox" "$native_status" "$STATUS"
}

test_rlimit_as() {
	same_as_native "--as=$((64 << 20))" "--rlimit-as 64" as
	expect_eq "stderr" "" "$ERR"
	expect_contains "the limit the program sees" "RLIMIT_AS (MiB): soft 64 hard 64" "$OUT"
	expect_contains "past the limit" "mmap 256 MiB: ENOMEM" "$OUT"
	# nsjail's spelling, and its keywords.
	run_cmd "$DUNK" sandbox --rlimit_as inf -- "$(limits_program)" as
	expect_contains "--rlimit_as inf" "mmap 256 MiB: ok" "$OUT"
	# The program's own limit, set by a shell before it executes the
	# program (the host's RLIMIT_AS could not hold: the region's
	# reservation would exceed it).
	local script="ulimit -v $((64 << 10)); exec $(limits_program) as"
	run_cmd /bin/sh -c "$script"
	local native=$OUT
	run_cmd "$DUNK" sandbox -- /bin/sh -c "$script"
	expect_eq "ulimit -v in the sandbox" "$native" "$OUT"
}

test_rlimit_nofile() {
	same_as_native "--nofile=20" "--rlimit-nofile 20" nofile
	expect_contains "EMFILE where natively" "opened up to fd 19, then EMFILE" "$OUT"
	# dunk's own descriptors (a vCPU's per thread) still find room above.
	run_cmd "$DUNK" sandbox --rlimit-nofile 20 -- "$(limits_program)" threads 3
	expect_eq "threads under --rlimit-nofile 20" "$(printf 'thread 1: ok\nthread 2: ok\nthread 3: ok\nafter they ended: ok')" "$OUT"
}

test_rlimit_stack() {
	same_as_native "--stack=$((1 << 20))" "--rlimit-stack 1" stack
	expect_eq "a recursion deeper than the stack (128+SIGSEGV)" 139 "$STATUS"
	expect_contains "the limit the program sees" "RLIMIT_STACK (MiB): soft 1 hard 1" "$OUT"
}

test_rlimit_nproc() {
	cd "$WORK"
	run_cmd as_unprivileged "$DUNK" sandbox --rlimit-nproc 6 -- "$(limits_program)" nproc
	echo "$OUT"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "forks past the limit" "$(printf 'RLIMIT_NPROC: soft 6 hard 6\nforks: fewer than 8, then EAGAIN')" "$OUT"
	# The limit is what stopped them: with room, all 16 forks work.
	run_cmd as_unprivileged "$DUNK" sandbox --rlimit-nproc 100 -- "$(limits_program)" nproc
	expect_eq "forks within the limit" "$(printf 'RLIMIT_NPROC: soft 100 hard 100\nforks: 8 or more, then no failure')" "$OUT"
}

# A hard limit dunk set cannot be raised, by root either; lowering works.
test_hard_limits_stay() {
	local resource
	for resource in as nofile cpu; do
		run_cmd "$DUNK" sandbox --rlimit-as 512 --rlimit-nofile 64 --rlimit-cpu 100 -- "$(limits_program)" raise $resource
		expect_eq "raising $resource" "$(printf 'raise %s: EPERM\nlower %s: ok\nnow: soft lowered, hard lowered' $resource $resource)" "$OUT"
		expect_contains "report for $resource" "-> -1 EPERM: raises the hard limit --rlimit-$resource set" "$ERR"
	done
	[[ $ERR =~ ^dunk\ sandbox:\ refused\ prlimit64\(0,\ 0,\ 0x[0-9a-f]+,\ NULL\)\ -\>\ -1\ EPERM:\ raises\ the\ hard\ limit\ --rlimit-cpu\ set\ \(101\)\ \[pid\ [0-9]+\ tid\ [0-9]+\ rip\ 0x[0-9a-f]+\]$ ]] ||
		fail "the report of raising RLIMIT_CPU: [$ERR]"
}

test_max_threads() {
	run_cmd "$DUNK" sandbox --max-threads 3 -- "$(limits_program)" threads 4
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "the fourth thread" "$(printf 'thread 1: ok\nthread 2: ok\nthread 3: ok\nthread 4: EAGAIN\nafter they ended: ok')" "$OUT"
	local line
	line=$(grep '^dunk sandbox: refused clone' <<<"$ERR") || fail "no report of the refused thread: [$ERR]"
	expect_lines "reports of refused threads" 1 "$line"
	expect_contains "the report" "-> -1 EAGAIN: --max-threads 3: the process runs 4 threads already (its first and 3 more) [pid" "$line"
	run_cmd "$DUNK" sandbox --max-threads 0 -- "$(limits_program)" threads 1
	expect_eq "--max-threads 0" "$(printf 'thread 1: EAGAIN\nafter they ended: EAGAIN')" "$OUT"
}

test_time_limit() {
	local start=$EPOCHREALTIME
	run_cmd "$DUNK" sandbox --time-limit 3 -- "$(limits_program)" sleep "$WORK/pids"
	local took
	took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", b - a }')
	echo "--time-limit 3: status $STATUS after ${took} s"
	expect_eq "exit status" 124 "$STATUS"
	expect_eq "stdout" "sleeping" "$OUT"
	expect_eq "stderr" "dunk: $(limits_program): killed at the time limit (3 s, --time-limit)" "$ERR"
	((took >= 3 && took <= 30)) || fail "the limit of 3 s ended the run after $took s"
	# The sandbox's process and the grandchild that left its session: gone.
	local pid state
	expect_lines "pids the tree wrote" 2 "$(<"$WORK/pids")"
	while read -r pid; do
		state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
		[[ -z $state || $state == Z ]] || fail "process $pid of the sandboxed tree is still alive (state $state)"
	done <"$WORK/pids"
	# A program that ends in time is not touched.
	run_cmd "$DUNK" sandbox --time-limit 100 -- /bin/echo in time
	expect_eq "a quick program" "0 in time" "$STATUS $OUT"
	# What it leaves running does not outlive it (nor the limit).
	start=$EPOCHREALTIME
	run_cmd "$DUNK" sandbox --time-limit 100 -- "$(limits_program)" orphan "$WORK/pids"
	took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", b - a }')
	expect_eq "the program's own status and output" "0 leaving" "$STATUS $OUT"
	((took < 60)) || fail "dunk waited $took s for the orphan"
	pid=$(tail -n 1 "$WORK/pids")
	state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
	[[ -z $state || $state == Z ]] || fail "the orphan $pid outlived the sandbox (state $state)"
}

# ---- cgroup v2 ----

# Where cgroup2 is mounted, or nothing.
cgroup2_mount() {
	awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
		/proc/self/mountinfo
}

# The directory of this shell's cgroup v2.
own_cgroup() {
	echo "$(cgroup2_mount)$(sed -n 's/^0:://p' /proc/self/cgroup | sed 's:^/$::')"
}

# The nested test VM mounts no cgroup2: as root the test mounts one at
# /sys/fs/cgroup for its run (and unmounts it at the end); dunk runs in its
# root cgroup there. Elsewhere the system's is used.
with_cgroup2() {
	[[ -n $(cgroup2_mount) ]] && return 0
	(($(id -u) == 0)) || fail "no cgroup2 mounted, and not root to mount one"
	mount -t cgroup2 none /sys/fs/cgroup || fail "cannot mount cgroup2 at /sys/fs/cgroup"
	echo "mounted cgroup2 at /sys/fs/cgroup for this test"
	trap 'umount /sys/fs/cgroup; rm -rf "$WORK"' EXIT
}

# No cgroup named dunk-sandbox.* left in the cgroup dunk ran in.
expect_no_cgroup_left() {
	local left
	left=$(find "$(own_cgroup)" -maxdepth 1 -name 'dunk-sandbox.*' 2>/dev/null)
	expect_eq "cgroups left behind ($1)" "" "$left"
}

test_cgroup_refused_without_cgroup_v2() {
	if [[ -z $(cgroup2_mount) ]]; then
		expect_refused 125 "--cgroup-*: cgroup v2: no cgroup v2 file system is mounted (e.g. mount -t cgroup2 none /sys/fs/cgroup)" \
			"$DUNK" sandbox --cgroup-pids-max 8 -- /bin/touch "$WORK/ran"
		[[ ! -e $WORK/ran ]] || fail "the program ran without a cgroup v2"
	else
		echo "cgroup2 is mounted here: the unmounted case cannot be seen"
	fi
	with_cgroup2
	cd "$WORK"
	# Not writable by the user dunk runs as.
	run_cmd as_unprivileged "$DUNK" sandbox --cgroup_mem_max 100000000 -- /bin/touch "$WORK/ran"
	expect_eq "exit status as nobody" 125 "$STATUS"
	[[ $ERR =~ ^dunk:\ sandbox:\ --cgroup-\*:\ cgroup\ v2:\ dunk\'s\ cgroup\ .*\ is\ not\ writable:\ EACCES ]] ||
		fail "the reason as nobody: [$ERR]"
	expect_lines "stderr as nobody" 1 "$ERR"
	[[ ! -e $WORK/ran ]] || fail "the program ran in no cgroup"
}

# A fork bomb across processes (each process forks the next): the tree's
# count stops it, for root too (RLIMIT_NPROC would not), and each process
# of the chain holds the same number of tasks, so 4 more pids make room for
# exactly 4 / that many more forks.
test_cgroup_pids_max() {
	with_cgroup2
	run_cmd "$DUNK" sandbox --cgroup-pids-max 8 -- "$(limits_program)" chain
	echo "$OUT"
	expect_eq "exit status" 0 "$STATUS"
	[[ $OUT =~ ^forks:\ ([0-9]+),\ then\ EAGAIN$ ]] || fail "the chain under --cgroup-pids-max 8: [$OUT]"
	local at8=${BASH_REMATCH[1]}
	((at8 >= 1 && at8 < 8)) || fail "$at8 forks under --cgroup-pids-max 8"
	expect_eq "stderr" "dunk: sandbox: 1 fork or thread of the tree refused (EAGAIN) at --cgroup-pids-max 8" "$ERR"
	expect_no_cgroup_left "--cgroup-pids-max 8"
	# Each process is one task or more: with 8 more, 8 / tasks more forks.
	local tasks=$((8 / (at8 + 1)))
	run_cmd "$DUNK" sandbox --cgroup_pids_max 16 -- "$(limits_program)" chain
	echo "$OUT"
	[[ $OUT =~ ^forks:\ ([0-9]+),\ then\ EAGAIN$ ]] || fail "the chain under --cgroup-pids-max 16: [$OUT]"
	local at16=${BASH_REMATCH[1]}
	echo "forks: $at8 under 8 pids, $at16 under 16 ($tasks task(s) per process)"
	expect_eq "forks per 8 more pids" "$((8 / tasks))" "$((at16 - at8))"
	# Threads count too: the same tree's pids.
	run_cmd "$DUNK" sandbox --cgroup-pids-max 3 -- "$(limits_program)" threads 4
	expect_contains "threads past the tree's count" "EAGAIN" "$OUT"
	expect_no_cgroup_left "--cgroup-pids-max 3"
}

# A hog killed by the OOM killer at the tree's memory: 128+9 and a reason
# line; in a child of the tree, the program goes on and dunk says so.
test_cgroup_mem_max() {
	with_cgroup2
	local limit=$((192 << 20))
	run_cmd "$DUNK" sandbox --cgroup-mem-max "$limit" -- "$(limits_program)" hog 1024
	echo "status $STATUS: $OUT"
	expect_eq "exit status" 137 "$STATUS"
	expect_eq "stdout" "" "$OUT"
	expect_eq "stderr" "dunk: $(limits_program): killed by the OOM killer at the tree's memory limit (--cgroup-mem-max $limit bytes)" "$ERR"
	expect_no_cgroup_left "the OOM kill"
	# Within the limit: no kill.
	run_cmd "$DUNK" sandbox --cgroup-mem-max "$limit" -- "$(limits_program)" hog 64
	expect_eq "a program within the limit" "0 touched 64 MiB" "$STATUS $OUT"
	expect_eq "stderr" "" "$ERR"
	# A child of the tree killed, the program goes on.
	run_cmd "$DUNK" sandbox --cgroup-mem-max "$limit" -- /bin/sh -c "$(limits_program) hog 1024; echo child: \$?"
	expect_eq "the program's own status and output" "0 child: 137" "$STATUS $OUT"
	# The shell's own word for its killed child, then dunk's line.
	expect_eq "stderr" "$(printf 'Killed\ndunk: sandbox: the OOM killer killed 1 process of the tree at --cgroup-mem-max %s bytes' "$limit")" "$ERR"
	expect_no_cgroup_left "the child's OOM kill"
}

# The values land in the tree's cgroup, and cpu.max throttles.
test_cgroup_cpu_and_values() {
	with_cgroup2
	run_cmd "$DUNK" sandbox --cgroup-mem-max 1073741824 --cgroup-pids-max 64 --cgroup-cpu-ms-per-sec 200 -- \
		"$(limits_program)" cgroup "$(cgroup2_mount)"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "the tree's cgroup" "$(
		cat <<-'EOF'
			cgroup: dunk-sandbox
			memory.max: 1073741824
			pids.max: 64
			cpu.max: 200000 1000000
			throttled: yes
		EOF
	)" "$OUT"
	expect_no_cgroup_left "--cgroup-cpu-ms-per-sec"
}

# --time-limit under a cgroup: the whole tree killed (cgroup.kill), the
# cgroup removed; a program that ends leaves nothing running either.
test_cgroup_removed_at_the_time_limit() {
	with_cgroup2
	run_cmd "$DUNK" sandbox --time-limit 3 --cgroup-pids-max 32 -- "$(limits_program)" sleep "$WORK/pids"
	expect_eq "exit status" 124 "$STATUS"
	local pid state
	while read -r pid; do
		state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
		[[ -z $state || $state == Z ]] || fail "process $pid of the sandboxed tree is still alive (state $state)"
	done <"$WORK/pids"
	expect_no_cgroup_left "--time-limit"
	run_cmd "$DUNK" sandbox --cgroup-pids-max 32 -- "$(limits_program)" orphan "$WORK/pids"
	expect_eq "the program's own status and output" "0 leaving" "$STATUS $OUT"
	pid=$(tail -n 1 "$WORK/pids")
	state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
	[[ -z $state || $state == Z ]] || fail "the orphan $pid outlived the sandbox (state $state)"
	expect_no_cgroup_left "the orphan"
}

# dunk alone in a cgroup that is not the root (a scope of its own, as
# systemd-run --scope makes): it moves itself into a child, limits the tree,
# and at the end takes back the controllers, moves back and removes both
# children; with another process in that cgroup, refused (125) and nothing
# left.
test_cgroup_in_a_cgroup_of_its_own() {
	with_cgroup2
	local own
	own=$(own_cgroup)/dunk-test-own.$$
	# Its controllers, as systemd's Delegate=yes gives a scope's.
	local c
	for c in memory pids cpu; do
		echo "+$c" >"$(own_cgroup)/cgroup.subtree_control" || fail "cannot enable $c in $(own_cgroup)"
	done
	mkdir "$own" || fail "cannot make $own"
	# The shell moves itself in and becomes dunk: dunk is alone there.
	local -a alone=(sh -c 'dir=$1; shift; echo 0 >"$dir/cgroup.procs" && exec "$@"' sh "$own")
	run_cmd "${alone[@]}" "$DUNK" sandbox --cgroup-pids-max 8 -- "$(limits_program)" chain
	echo "$OUT"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "the chain in a cgroup of dunk's own" "forks: 3, then EAGAIN" "$OUT"
	expect_eq "stderr" "dunk: sandbox: 1 fork or thread of the tree refused (EAGAIN) at --cgroup-pids-max 8" "$ERR"
	expect_eq "cgroups left in dunk's cgroup" "" "$(find "$own" -mindepth 1 -maxdepth 1 -type d)"
	expect_eq "controllers left on for its children" "" "$(<"$own/cgroup.subtree_control")"
	run_cmd "${alone[@]}" "$DUNK" sandbox --cgroup-mem-max $((1 << 30)) --cgroup-pids-max 64 \
		--cgroup-cpu-ms-per-sec 500 -- "$(limits_program)" cgroup "$(cgroup2_mount)"
	expect_eq "exit status" 0 "$STATUS"
	expect_contains "the values" "$(printf 'memory.max: 1073741824\npids.max: 64\ncpu.max: 500000 1000000')" "$OUT"
	expect_eq "cgroups left in dunk's cgroup" "" "$(find "$own" -mindepth 1 -maxdepth 1 -type d)"
	# Another process in that cgroup: the kernel cannot give controllers.
	sh -c 'echo 0 >"$1/cgroup.procs" && exec sleep 300' sh "$own" &
	local other=$!
	local i
	for i in $(seq 100); do
		grep -qx "$other" "$own/cgroup.procs" && break
		sleep 0.1
	done
	run_cmd "${alone[@]}" "$DUNK" sandbox --cgroup-pids-max 8 -- /bin/touch "$WORK/ran"
	kill "$other"
	wait "$other" 2>/dev/null || true
	expect_eq "exit status beside another process" 125 "$STATUS"
	expect_eq "the reason" "dunk: sandbox: --cgroup-*: cgroup v2: dunk's cgroup $own holds 1 process besides dunk: the kernel lets only the root cgroup, or one without processes, give controllers to its children (run dunk in a cgroup of its own, e.g. systemd-run --user --scope -p Delegate=yes)" "$ERR"
	[[ ! -e $WORK/ran ]] || fail "the program ran"
	expect_eq "cgroups left in dunk's cgroup" "" "$(find "$own" -mindepth 1 -maxdepth 1 -type d)"
	for i in $(seq 100); do
		rmdir "$own" 2>/dev/null && break
		sleep 0.1
	done
	[[ ! -e $own ]] || fail "cannot remove $own"
}

test_bad_values_refused_before_running() {
	local -a cases=(
		"--rlimit-as abc|--rlimit-as: 'abc' is not a number"
		"--rlimit_nofile 1x|--rlimit-nofile: '1x' is not a number"
		"--rlimit-stack 0|--rlimit-stack: at least 1 MiB"
		"--rlimit-cpu 99999999999999999999|--rlimit-cpu: '99999999999999999999' is too large"
		"--time-limit 1.5|--time-limit: '1.5' is not a whole number"
		"--max-threads -1|--max-threads: '-1' is not a whole number"
		"--cgroup-mem-max 1x|--cgroup-mem-max: '1x' is not a whole number"
		"--cgroup_pids_max -3|--cgroup-pids-max: '-3' is not a whole number"
		"--cgroup-cpu-ms-per-sec 99999999|--cgroup-cpu-ms-per-sec: '99999999' is more than 1048576"
	)
	local c
	for c in "${cases[@]}"; do
		local -a opts
		read -r -a opts <<<"${c%%|*}"
		expect_refused 125 "${c#*|}" "$DUNK" sandbox "${opts[@]}" -- /bin/touch "$WORK/ran"
		[[ ! -e $WORK/ran ]] || fail "the program ran with ${c%%|*}"
	done
}

main "$@"
