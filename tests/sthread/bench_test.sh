#!/usr/bin/env bash
# `dunk bench --only sthread` (kvm tier), once at a small size: the rows come
# from dunk-sthread-bench into dunk's report (table and JSON), and the counts
# that are exact are what docs/STHREADS.md says: a callgate round trip and a
# compartment switch make no VM exit, a callgate resets one page per call, a
# recycled sthread resets one page and copies none, a compartment shares the
# template's page tables (a few table pages of its own, a full copy many
# times more), the with-PCID rows are measured exactly where the CPU has
# PCID and otherwise say why not.
#   bench_test.sh DUNK
set -uo pipefail
dunk=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$dunk" bench --only sthread --iterations 1000 --json "$work/bench.json" > "$work/out" 2>&1 ||
	{ cat "$work/out"; fail "dunk bench --only sthread exited with $?"; }
grep -q "sthread create+join: dunk sthread, recycled / native fork+wait = " "$work/out" ||
	{ cat "$work/out"; fail "no ratio line for the recycled sthread in the table"; }
pcid=0
grep -qw pcid /proc/cpuinfo && pcid=1

python3 - "$work/bench.json" "$pcid" <<'PY' || { cat "$work/out"; fail "the sthread rows are not what they should be"; }
import json, re, sys
report = json.load(open(sys.argv[1]))
cpu_pcid = sys.argv[2] == "1"
rows = {(r["operation"], r["mode"]): r for r in report["results"]}
# --only sthread: the sthread rows and nothing else.
assert all(op.startswith("sthread") for op, _ in rows), sorted(rows)

def pages(r):
    m = re.match(r"([0-9.]+) pages copied on write and ([0-9.]+) reset per operation", r.get("note", ""))
    assert m, r
    return float(m.group(1)), float(m.group(2))

def measured(r):
    assert r["ns_per_op"] is not None and r["ns_per_op"] > 0, r
    assert r["iterations"] > 0, r

create = "sthread create+join"
for mode in ("native fork+wait", "native pthread", "dunk fork+wait", "dunk pthread", "dunk sthread, fresh",
             "dunk sthread, recycled"):
    measured(rows[(create, mode)])
for mode in ("native fork+wait", "native pthread"):
    assert rows[(create, mode)]["userspace_exits_per_op"] == 0, mode
# fork in VM mode: the fork and the wait, each forwarded.
assert rows[(create, "dunk fork+wait")]["userspace_exits_per_op"] == 2, rows[(create, "dunk fork+wait")]
fresh, recycled = rows[(create, "dunk sthread, fresh")], rows[(create, "dunk sthread, recycled")]
assert pages(fresh) == (0, 0), fresh
assert pages(recycled) == (0, 1), recycled  # its stack's top page, written at the start
# The hand-off to a worker and back: futex wakes and waits, not exact (a
# worker already awake, a contended lock); far below a fresh compartment's.
assert 1 <= recycled["userspace_exits_per_op"] <= 6, recycled
assert fresh["userspace_exits_per_op"] >= recycled["userspace_exits_per_op"] + 4, (fresh, recycled)

# A fresh compartment with the template's tables copied whole, as before
# they were shared (for the ratio), and the tables a live compartment costs.
measured(rows[(create, "dunk sthread, fresh, tables copied")])
def table_pages(r):
    m = re.match(r"([0-9.]+) page-table pages per compartment", r.get("note", ""))
    assert m, r
    return float(m.group(1))
tables = "sthread table pages"
shared, full = rows[(tables, "dunk sthread, shared")], rows[(tables, "dunk sthread, full copy")]
measured(shared)
measured(full)
assert 1 <= table_pages(shared) <= 12, shared  # its root and its ways to its stack and what it wrote
assert table_pages(full) >= 3 * table_pages(shared), (shared, full)

trip = "sthread callgate round trip"
for mode in ("native pipe (process)", "native futex (thread)", "dunk callgate"):
    measured(rows[(trip, mode)])
gate = rows[(trip, "dunk callgate")]
assert gate["userspace_exits_per_op"] == 0, gate
assert pages(gate) == (0, 1), gate  # the callgate's stack page, reset after each call

for n in (1, 4, 16, 64, 256):
    op = f"sthread switch, {n} page" + ("s" if n > 1 else "")
    for mode in ("no switch (ring 0)", "dunk CR3, TLB flushed", "dunk callgate, ring 3"):
        measured(rows[(op, mode)])
        assert rows[(op, mode)]["userspace_exits_per_op"] == 0, rows[(op, mode)]
    assert pages(rows[(op, "dunk callgate, ring 3")]) == (0, 0.5), rows[(op, "dunk callgate, ring 3")]
    kept = rows[(op, "dunk CR3, PCID kept")]
    if cpu_pcid:
        measured(kept)
        assert kept["userspace_exits_per_op"] == 0, kept
    else:
        assert kept["ns_per_op"] is None and kept["userspace_exits_per_op"] is None, kept
        assert kept["note"].startswith("not measured: this CPU has no PCID"), kept
PY
echo "PASS"
