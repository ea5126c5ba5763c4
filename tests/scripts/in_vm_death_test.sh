#!/usr/bin/env bash
# Self-test of scripts/in-vm: when the guest kernel dies, in-vm says why.
# Two boots, side by side, whose guest dies on purpose:
#   crash: the command prints a line, then crashes the kernel through
#          /proc/sysrq-trigger (needs root: the command runs with the
#          caller's user id);
#   init:  the guest's init is /bin/false (DUNK_VM_KERNEL_ARGS), so the
#          kernel panics at boot, for any caller.
# in-vm must exit 125 and print, after its message naming the console log,
# the guest's panic taken from that log; output sent before the death
# arrives. Prints "N passed, N failed[, N skipped]"; non-zero on a mismatch.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
checkout=$(cd -- "$here/../.." && pwd)
in_vm=$checkout/scripts/in-vm

passed=0 failed=0 skipped=0
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

tmp=$(mktemp -d /tmp/in-vm-death-test.XXXXXX)
logs=()
# The console logs of the deaths are kept if a check failed.
trap 'rm -rf "$tmp"; ((failed)) || rm -f "${logs[@]}"' EXIT

# Build the image first, so that its one-time messages stay out of the
# stderr compared below.
"$in_vm" --prepare

export DUNK_VM_TIMEOUT=300
pids=()
if ((EUID == 0)); then
	"$in_vm" bash -c 'echo "before the crash"; echo c >/proc/sysrq-trigger; sleep 30; echo "after the crash"' \
		>"$tmp/crash.out" 2>"$tmp/crash.err" &
	pids+=($!)
fi
DUNK_VM_KERNEL_ARGS=rdinit=/bin/false "$in_vm" echo "never runs" >"$tmp/init.out" 2>"$tmp/init.err" &
pids+=($!)
# If this test is stopped (ctest's timeout), the VMs stop with it.
trap 'kill -TERM "${pids[@]}" 2>/dev/null; exit 143' TERM INT
rcs=()
for pid in "${pids[@]}"; do
	rc=0
	wait "$pid" || rc=$?
	rcs+=("$rc")
done

# check_death NAME RC PANIC-LINE: in-vm's exit status and stderr for a boot
# whose kernel panicked with PANIC-LINE ("Kernel panic - not syncing: ...").
check_death() {
	local name=$1 rc=$2 panic=$3 err first log
	err=$(<"$tmp/$name.err")
	check "$name: in-vm exits 125" 125 "$rc"
	first=${err%%$'\n'*}
	log=${first##*; console log: }
	[[ $log == "$first" ]] || logs+=("$log")
	check "$name: first stderr line says the guest died and names its console log" \
		"in-vm: the guest died without reporting an exit status (QEMU status 0); console log: $log" "$first"
	check "$name: the console log exists and holds the panic" \
		"yes" "$(grep -q -F "$panic" "$log" 2>/dev/null && echo yes)"
	# The panic line as the console log has it (with its timestamp), printed
	# on stderr as one of in-vm's console lines, without the log's CR.
	local logged
	logged=$(grep -m 1 -F "$panic" "$log" 2>/dev/null | tr -d '\r') || true
	check "$name: stderr shows the panic line from the console log" \
		"in-vm: console: ${logged:-(no panic in the log)}" \
		"$(grep -m 1 -F "$panic" <<<"$err" || echo "(not on stderr)")"
	check "$name: stderr's console lines carry no carriage return" \
		"0" "$(grep -c $'\r' <<<"$err" || true)"
}

i=0
if ((EUID == 0)); then
	check_death crash "${rcs[i]}" "Kernel panic - not syncing: sysrq triggered crash"
	check "crash: what the command printed before the crash arrived" \
		"before the crash" "$(<"$tmp/crash.out")"
	i=$((i + 1))
else
	skipped=$((skipped + 1))
	echo "skip: crash (writing /proc/sysrq-trigger in the guest needs root)"
fi
check_death init "${rcs[i]}" "Kernel panic - not syncing: Attempted to kill init!"
check "init: nothing on stdout" "" "$(<"$tmp/init.out")"

if ((skipped)); then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
((failed == 0))
