#!/usr/bin/env bash
# `dunk bench --only sandbox` (kvm tier): the sandbox rows run once, small.
# Under dunk sandbox an allowed call costs exactly one VM exit (the call
# forwarded) and a denied one none (decided in ring 0; the only exits are
# the few writes of the denials' reports); every way — dunk sandbox,
# seccomp-bpf, the user-notification and the ptrace supervisors — answers
# the denied call with the policy's errno and lets the allowed one run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_sandbox_rows() {
	run_cmd "$DUNK" bench --only sandbox --iterations 2000 --json "$WORK/bench.json"
	expect_eq "exit status (stderr: $ERR)" 0 "$STATUS"
	expect_contains "table" "sandbox denied getppid: ptrace / native =" "$OUT"
	"$PYTHON" - "$WORK/bench.json" <<'PY' || fail "the sandbox rows are not what they should be: $(cat "$WORK/bench.json")"
import json, sys
rows = {(r["operation"], r["mode"]): r for r in json.load(open(sys.argv[1]))["results"]}
ways = ("native", "dunk sandbox", "seccomp-bpf", "seccomp notify", "ptrace")
assert set(rows) == {(op, way) for op in ("sandbox allowed getpid", "sandbox denied getppid") for way in ways}, sorted(rows)
for (op, way), r in rows.items():
    assert r["ns_per_op"] is not None and r["ns_per_op"] > 0, r
    denied = op.endswith("getppid") and way != "native"
    assert r["answer"] == ("-1 EACCES" if denied else "ok"), r
    if way != "dunk sandbox":
        assert r["userspace_exits_per_op"] == 0, r

allowed = rows[("sandbox allowed getpid", "dunk sandbox")]
c = allowed["counts"]
assert c["calls"] == 200 and c["vm_exits"] == 200 and c["forwarded_calls"] == 200, allowed
assert c["reports"] == 0 and allowed["userspace_exits_per_op"] == 1, allowed
# KVM_RUN and the forwarded call, and nothing else per call (the whole run's
# count, less a run of none: start-up varies by a call or two).
assert abs(allowed["host_syscalls_per_op"] - 2) < 0.05, allowed

denied = rows[("sandbox denied getppid", "dunk sandbox")]
c = denied["counts"]
assert c["calls"] == 200 and c["reports"] == 200, denied
# No exit for the calls: the run's only extra exits are the writes that
# carry the reports out, a few for all of them.
assert c["forwarded_calls"] == 0, denied
assert c["vm_exits"] == c["report_writes"], denied
assert 1 <= c["report_writes"] <= 3, denied
PY
}

main "$@"
