#!/usr/bin/env bash
# `dunk bench` (kvm tier): both ways of every operation measured in one run,
# and the exact cost of a forwarded system call: one return from KVM_RUN to
# dunk, two host system calls (KVM_RUN and the call itself).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The system-call rows only (--no-privileged): the privileged API's rows
# (traps, page tables, dirty tracking at 1 GiB) take more than the test's 20
# minutes under emulation; each has kvm tests of its own, and the whole run
# is `dunk bench` (docs/bench/README.md).
test_json_report() {
	run_cmd "$DUNK" bench --iterations 2000 --no-privileged --json "$WORK/bench.json"
	expect_eq "exit status" 0 "$STATUS"
	expect_contains "table" "getpid: VM mode / native =" "$OUT"
	"$PYTHON" - "$WORK/bench.json" <<'PY' || fail "the JSON report is not what it should be: $(cat "$WORK/bench.json")"
import json, sys
report = json.load(open(sys.argv[1]))
assert report["environment"], "no environment"
by_key = {(r["operation"], r["mode"]): r for r in report["results"]}
native, vm = by_key[("getpid", "native")], by_key[("getpid", "vm")]
for r in (native, vm):
    assert r["iterations"] == 2000, r
    assert r["ns_per_op"] > 0, r
assert native["userspace_exits_per_op"] == 0, native
assert native["host_syscalls_per_op"] == 1, native
assert vm["userspace_exits_per_op"] == 1, vm
# The thread's host system calls over the whole measurement (enter, loop,
# leave): now and then one more than the loop accounts for, in a run of
# thousands; tests/kvm/cost_test.cc checks the exact count per call.
assert abs(vm["host_syscalls_per_op"] - 2) < 0.01, vm
for op in ("signal", "thread", "fork"):
    assert by_key[(op, "native")]["iterations"] >= 20, op
    assert by_key[(op, "vm")]["ns_per_op"] > 0, op
PY
}

main "$@"
