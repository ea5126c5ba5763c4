#!/usr/bin/env bash
# Self-test of scripts/in-vm: what the nested test VM promises, checked with
# real comparisons. Two boots, run side by side (which also shows that
# concurrent invocations keep to themselves):
#   main:   one guest script checks stdout/stderr separation, argv, cwd,
#           environment, shared files (plain writes and a shared mmap),
#           /dev/kvm (API 12, KVM_CREATE_VM), ptys, tsc clocksource, svm,
#           hostname, loopback, a writable root, tracefs; exits 7;
#   signal: sh kills itself with SIGTERM; in-vm must exit 143.
# Prints "N passed, N failed" and exits non-zero on any mismatch.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
checkout=$(cd -- "$here/../.." && pwd)
in_vm=$checkout/scripts/in-vm

passed=0 failed=0
# check NAME EXPECTED ACTUAL
check() {
	if [[ $2 == "$3" ]]; then
		passed=$((passed + 1))
		printf 'ok:   %s\n' "$1"
	else
		failed=$((failed + 1))
		printf 'FAIL: %s\n' "$1"
		diff -u --label expected --label actual <(printf '%s\n' "$2") <(printf '%s\n' "$3") |
			sed 's/^/      /' || true
	fi
}

tmp=$(mktemp -d /tmp/in-vm-test.XXXXXX)
shared_file=$checkout/.cache/in-vm-selftest.$$
trap 'rm -rf "$tmp" "$shared_file" "$shared_file.mmap"' EXIT
mkdir -p "$checkout/.cache"

command -v cc >/dev/null || {
	echo "FAIL: no C compiler (cc) to build the KVM probe"
	exit 1
}
cc -O2 -o "$tmp/probe" "$here/in_vm_probe.c"

# Build the image first, so that its one-time messages stay out of the
# stderr compared below.
"$in_vm" --prepare

# The guest side of the main boot: a bash script, so that printf and
# /proc/$$/environ say exactly what arrived.
cat >"$tmp/guest.sh" <<'GUEST'
echo "to stdout"
echo "to stderr" >&2
printf 'arg=<%s>\n' "$@"
echo "cwd=$PWD"
tr '\0' '\n' </proc/$$/environ | LC_ALL=C sort >"$SELFTEST_DIR/guest-env"
echo "from the guest" >"$SELFTEST_SHARED"
echo "from the guest" >"$SELFTEST_DIR/tmp-file"
"$SELFTEST_DIR/probe" "$SELFTEST_SHARED.mmap"
echo "clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
grep -qw svm /proc/cpuinfo && echo "cpuinfo_svm=yes"
echo "hostname=$(hostname)"
echo "lo_flags=$(($(cat /sys/class/net/lo/flags) & 1))"
echo x >/root/in-vm-selftest && echo "root_writable=yes"
[[ -d /sys/kernel/tracing/events ]] && echo "tracefs=yes"
[[ -c /dev/kvm ]] && echo "dev_kvm=yes"
exit 7
GUEST

# shellcheck disable=SC2016 # a literal $HOME is the point
args=('a b' "it's" '"double"' '*' '' '$HOME' $'tab\there' 'back\slash' '--help' $'new\nline')
cwd="$tmp/dir with space"
mkdir "$cwd"
# A controlled environment, so that the expected one is known exactly:
# odd values, and a name no shell could assign.
env_in=(
	"PATH=$PATH" "HOME=$HOME" "SELFTEST_DIR=$tmp" "SELFTEST_SHARED=$shared_file"
	$'SELFTEST_VAR=multi\nline "quoted" $x *' "SELFTEST_EQ=a=b=c" "odd.name-1=ok"
	"DUNK_VM_TIMEOUT=300"
)

start=$SECONDS
(cd "$cwd" && env -i "${env_in[@]}" "$in_vm" bash "$tmp/guest.sh" "${args[@]}") \
	>"$tmp/main.out" 2>"$tmp/main.err" &
main_pid=$!
(cd "$tmp" && DUNK_VM_TIMEOUT=300 "$in_vm" sh -c 'echo second; kill -TERM $$') \
	>"$tmp/signal.out" 2>"$tmp/signal.err" &
signal_pid=$!
# If this test is stopped (ctest's timeout), the VMs stop with it.
trap 'kill -TERM "$main_pid" "$signal_pid" 2>/dev/null; exit 143' TERM INT
main_rc=0 signal_rc=0
wait "$main_pid" || main_rc=$?
wait "$signal_pid" || signal_rc=$?
echo "two concurrent boots took $((SECONDS - start)) s"

# --- main boot ---------------------------------------------------------------
check "exit status passed through (exit 7)" 7 "$main_rc"
check "stderr carried separately, nothing else on it" "to stderr" "$(<"$tmp/main.err")"
expected_out=$(
	echo "to stdout"
	printf 'arg=<%s>\n' "${args[@]}"
	echo "cwd=$cwd"
	echo "kvm_api=12"
	echo "kvm_create_vm=ok"
	echo "pty=ok"
	echo "mmap=ok"
	echo "clocksource=tsc"
	echo "cpuinfo_svm=yes"
	echo "hostname=dunk-vm"
	echo "lo_flags=1"
	echo "root_writable=yes"
	echo "tracefs=yes"
	echo "dev_kvm=yes"
)
check "stdout: args, cwd, /dev/kvm, pty, mmap, tsc, svm, mounts" "$expected_out" "$(<"$tmp/main.out")"
# scripts/in-vm adds exactly one variable of its own: DUNK_TEST_VM, which tells
# tests they run under the emulator (tests/kvm/emulator_retry.sh).
check "environment passed exactly, plus DUNK_TEST_VM" \
	"$(printf '%s\n' "${env_in[@]}" DUNK_TEST_VM=qemu-tcg | LC_ALL=C sort)" "$(cat "$tmp/guest-env" 2>&1)"
check "file written in the checkout reaches the host" "from the guest" "$(cat "$shared_file" 2>&1)"
check "file written in /tmp reaches the host" "from the guest" "$(cat "$tmp/tmp-file" 2>&1)"
check "shared mmap of a checkout file reaches the host" "mapped" "$(cat "$shared_file.mmap" 2>&1)"

# --- signal boot -------------------------------------------------------------
check "killed by SIGTERM -> 143" 143 "$signal_rc"
check "signal boot: stdout" "second" "$(<"$tmp/signal.out")"
check "signal boot: stderr empty" "" "$(<"$tmp/signal.err")"

echo "$passed passed, $failed failed"
((failed == 0))
