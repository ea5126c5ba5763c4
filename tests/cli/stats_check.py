"""Checks a `dunk exec --stats-json` report: stats_check.py FILE CONDITION...

A CONDITION is "PATH OP NUMBER" or "PATH OP PATH", where PATH is a dotted
path into the report ("syscalls.write", "totals.syscalls"; a missing key
counts as 0) and OP one of >= > == <= <. Prints a one-line summary of the
report; exits 1, naming the condition, when one does not hold."""

import json
import operator
import sys

OPS = {">=": operator.ge, ">": operator.gt, "==": operator.eq, "<=": operator.le, "<": operator.lt}


def value(report, term):
    try:
        return float(term)
    except ValueError:
        pass
    node = report
    for key in term.split("."):
        if not isinstance(node, dict) or key not in node:
            return 0
        node = node[key]
    return node


def main():
    with open(sys.argv[1]) as f:
        report = json.load(f)
    print(f"  in VM mode: {report['processes']} process(es), {report['vcpus']} vCPU(s), "
          f"{report['totals']['syscalls']} system calls forwarded, {report['totals']['exits']} VM exits, "
          f"{report['totals']['exceptions']} exceptions")
    ok = True
    for condition in sys.argv[2:]:
        left, op, right = condition.split()
        a, b = value(report, left), value(report, right)
        if not OPS[op](a, b):
            print(f"stats_check: {condition} does not hold ({left} = {a}, {right} = {b})", file=sys.stderr)
            ok = False
    sys.exit(0 if ok else 1)


main()
