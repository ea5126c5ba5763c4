"""The real-program half of scripts/sandbox-bench: each workload natively,
under `dunk sandbox` (the built-in default policy; without a file-system
view and with bubblewrap's), and under bubblewrap with the same policy as
its seccomp filter. Every run's stdout and exit status are compared with
the native run's; times are medians over --repeat runs. Writes
results.json and results.txt (with the system-call rows of dunk bench
that the shell script measured first) and, with --chart, two PNGs."""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

BASE = "/run/dunk-sandbox-bench"  # a tmpfs of the machine (the nested test VM's own, not 9p)
WORK = BASE + "/work"
TMP = BASE + "/tmp"

ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": WORK,
    "LC_ALL": "C",
    "TMPDIR": TMP,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "dunk",
    "GIT_AUTHOR_EMAIL": "dunk@example.org",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "dunk",
    "GIT_COMMITTER_EMAIL": "dunk@example.org",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}

SQL = """
create table t(id integer primary key, k integer, v text);
with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000)
insert into t(k, v) select (i * 7919) % 97, printf('value-%05d', i) from n;
create index t_k on t(k);
select count(*), sum(k), min(v), max(v) from t;
select k, count(*), group_concat(substr(v, 7), ',') from (select * from t where k < 3 order by v) group by k;
update t set v = upper(v) where k % 2 = 0;
select count(*) from t where v like 'VALUE-%';
delete from t where k > 50;
select count(*), total(k) from t;
"""

C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct item { char name[16]; unsigned weight; };

static int by_weight(const void *a, const void *b) {
  const struct item *x = a, *y = b;
  return x->weight < y->weight ? -1 : x->weight > y->weight ? 1 : strcmp(x->name, y->name);
}

int main(void) {
  enum { N = 2000 };
  static struct item items[N];
  unsigned seed = 12345, sum = 0;
  for (int i = 0; i < N; ++i) {
    seed = seed * 1103515245u + 12345u;
    items[i].weight = (seed >> 16) % 1000;
    snprintf(items[i].name, sizeof items[i].name, "item%04d", i);
  }
  qsort(items, N, sizeof items[0], by_weight);
  for (int i = 0; i < N; ++i) sum = sum * 31 + items[i].weight;
  printf("first %s %u last %s %u checksum %u\n", items[0].name, items[0].weight, items[N - 1].name,
         items[N - 1].weight, sum);
  return 0;
}
"""

PYTHON_PROGRAM = r"""
import hashlib, json, re
primes = [n for n in range(2, 20000) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
doc = {"primes": primes[-5:], "count": len(primes), "words": sorted({w for w in re.findall(r"[a-z]+", open("words.txt").read())})[:5]}
text = json.dumps(doc, sort_keys=True)
print(text)
print(hashlib.sha256(text.encode() * 100).hexdigest())
"""


def prepare_git_tree(work):
    for d in range(5):
        os.makedirs(f"{work}/tree/dir{d}", exist_ok=True)
        for f in range(10):
            with open(f"{work}/tree/dir{d}/file{f}.txt", "w") as out:
                out.write("".join(f"line {i} of file {f} in dir {d}\n" for i in range(40)))


def prepare_words(work):
    with open(f"{work}/words.txt", "w") as out:
        out.write(" ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(5000)))


# name, what it does (for the page), shell script run in WORK, preparation
WORKLOADS = [
    ("true", "/bin/true: what starting the program costs each way (the sandbox's or bubblewrap's set-up)",
     "/bin/true", lambda w: None),
    ("sqlite3", "a fixed SQL workload on an in-memory database (5000 rows, an index, updates, deletes)",
     "sqlite3 :memory: < query.sql", lambda w: open(f"{w}/query.sql", "w").write(SQL)),
    ("gcc", "gcc -O2 compiling and linking a 30-line C program, then running it",
     "gcc -O2 -o prog prog.c && ./prog", lambda w: open(f"{w}/prog.c", "w").write(C_PROGRAM)),
    ("git", "git init, add, commit and log --stat of a generated tree (50 files)",
     "cd tree && git init -q -b main && git add -A && git commit -q -m 'the tree' && git log --stat --format='%H %s'",
     prepare_git_tree),
    ("coreutils", "a coreutils pipeline: seq, sort, tr, uniq, head, sha256sum, wc",
     "seq 1 20000 | sort -r | tr 0-9 a-j | sort | uniq -c | sort -rn | head -n 5; "
     "seq 1 20000 | sha256sum; seq 1 20000 | wc -c",
     lambda w: None),
    ("python3", "python3: primes below 20000, a regex, JSON and SHA-256",
     "/usr/bin/python3 prog.py", lambda w: (open(f"{w}/prog.py", "w").write(PYTHON_PROGRAM), prepare_words(w))),
]

WAYS = ["native", "dunk sandbox", "dunk sandbox, view", "bubblewrap + seccomp"]


def command(way, script, args, stats):
    sh = ["/bin/sh", "-c", script]
    view = ["--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--bind", BASE, BASE, "--chdir", WORK]
    if way == "native":
        return sh
    if way == "dunk sandbox":
        return [args.dunk, "sandbox", f"--stats-json={stats}", "--"] + sh
    if way == "dunk sandbox, view":
        return [args.dunk, "sandbox", f"--stats-json={stats}"] + view + ["--"] + sh
    # bubblewrap: the same trees (its own /dev and /proc, as bubblewrap is
    # used), the policy's BPF program on descriptor 9.
    return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind", BASE, BASE,
            "--chdir", WORK, "--die-with-parent", "--seccomp", "9", "--"] + sh


def run_once(args, way, workload, bpf_fd):
    name, _, script, prepare = workload
    shutil.rmtree(BASE, ignore_errors=True)
    os.makedirs(WORK)
    os.makedirs(TMP)
    prepare(WORK)
    stats = os.path.abspath(f"{args.out}/.stats.json")  # the programs run in WORK
    if os.path.exists(stats):
        os.remove(stats)
    argv = command(way, script, args, stats)
    fds = (bpf_fd,) if way.startswith("bubblewrap") else ()
    if fds:
        os.lseek(bpf_fd, 0, os.SEEK_SET)
        os.set_inheritable(bpf_fd, True)
        if bpf_fd != 9:
            os.dup2(bpf_fd, 9)
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=WORK, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, pass_fds=(9,) if fds else ())
    seconds = time.monotonic() - t0
    result = {"seconds": seconds, "status": p.returncode, "stdout": p.stdout.decode(errors="replace"),
              "stderr": p.stderr.decode(errors="replace")}
    if way.startswith("dunk") and os.path.exists(stats):
        s = json.load(open(stats))
        result["stats"] = {"processes": s["processes"], "vm_exits": s["totals"]["exits"],
                           "forwarded_calls": s["totals"]["syscalls"]}
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dunk", required=True)
    ap.add_argument("--policy-bpf", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calls", required=True)
    ap.add_argument("--calls-text", required=True)
    ap.add_argument("--interception", required=True)
    ap.add_argument("--interception-text", required=True)
    ap.add_argument("--chart", action="store_true")
    args = ap.parse_args()
    args.dunk = os.path.abspath(args.dunk)

    # The built-in default policy as bubblewrap's filter.
    bpf = f"{args.out}/default-policy.bpf"
    subprocess.run([args.policy_bpf, bpf], check=True)
    bpf_fd = os.open(bpf, os.O_RDONLY)
    if bpf_fd != 9:
        os.dup2(bpf_fd, 9)
        bpf_fd = 9

    runs, warm = {}, {}  # (program, way) -> [result]
    failures = []
    # Round 0 warms the caches (the programs' files, dunk's, bubblewrap's)
    # and is not counted; each counted round starts with another way, so
    # that a drift of the host's load spreads over all of them.
    for r in range(-1, args.repeat):
        for workload in WORKLOADS:
            for i in range(len(WAYS)):
                way = WAYS[(i + max(r, 0)) % len(WAYS)]
                result = run_once(args, way, workload, bpf_fd)
                (warm if r < 0 else runs).setdefault((workload[0], way), []).append(result)
                print(f"sandbox-bench: {workload[0]}, {way}, {'warm-up' if r < 0 else f'run {r + 1}'}: "
                      f"{result['seconds']:.2f} s, status {result['status']}", file=sys.stderr)
    # Every run, the warm-up's too, must give the native run's output.
    for (name, way), results in list(warm.items()) + list(runs.items()):
        native = runs[(name, "native")][0]
        for result in results:
            if result["status"] != 0 or result["stdout"] != native["stdout"]:
                failures.append(f"{name} ({way}): status {result['status']}, stdout "
                                f"{'the same' if result['stdout'] == native['stdout'] else 'different'}; "
                                f"stderr: {result['stderr'][-300:]}")
    shutil.rmtree(BASE, ignore_errors=True)

    programs = []
    for name, what, script, _ in WORKLOADS:
        # The best of the runs: the machine is shared, and what else runs
        # on it only ever adds time (the medians are beside them).
        native = min(x["seconds"] for x in runs[(name, "native")])
        native_median = statistics.median(x["seconds"] for x in runs[(name, "native")])
        row = {"program": name, "workload": what, "script": script, "ways": {}}
        for way in WAYS:
            rs = runs[(name, way)]
            best, median = min(x["seconds"] for x in rs), statistics.median(x["seconds"] for x in rs)
            entry = {"seconds_best": best, "seconds_median": median, "seconds": [x["seconds"] for x in rs],
                     "ratio_to_native": best / native, "median_ratio_to_native": median / native_median,
                     "same_output_as_native": all(x["stdout"] == rs[0]["stdout"] == runs[(name, "native")][0]["stdout"]
                                                  and x["status"] == 0 for x in rs),
                     "dunk_reports": sum(x["stderr"].count("dunk sandbox: denied") for x in rs) // len(rs)}
            if "stats" in rs[0]:
                entry["stats"] = rs[0]["stats"]
            row["ways"][way] = entry
        programs.append(row)

    calls = json.load(open(args.calls))
    doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
           "environment": calls["environment"], "repeat": args.repeat, "policy": "dunk's built-in default",
           "calls": calls["results"], "interception": json.load(open(args.interception))["results"],
           "programs": programs, "failures": failures}
    json.dump(doc, open(f"{args.out}/results.json", "w"), indent=2)

    lines = [open(args.calls_text).read().rstrip(), "", open(args.interception_text).read().rstrip(), "",
             f"real programs: the best of {args.repeat} runs (seconds), its ratio to native's best and (in brackets) "
             "the ratio of the medians; dunk sandbox's VM exits, forwarded calls and processes in one run", ""]
    lines.append(f"{'program':<10} " + " ".join(f"{w:>30}" for w in WAYS) + f" {'VM exits':>10} {'calls':>8} {'processes':>9}")
    for row in programs:
        cells = []
        for way in WAYS:
            e = row["ways"][way]
            cells.append(f"{e['seconds_best']:.2f} s {e['ratio_to_native']:.2f}x ({e['median_ratio_to_native']:.2f}x)"
                         f"{'' if e['same_output_as_native'] else '!'}")
        stats = row["ways"]["dunk sandbox"].get("stats", {})
        lines.append(f"{row['program']:<10} " + " ".join(f"{c:>24}" for c in cells) +
                     f" {stats.get('vm_exits', 0):>10} {stats.get('forwarded_calls', 0):>8} {stats.get('processes', 0):>9}")
    lines.append("")
    lines.append("outputs: " + ("every run's stdout and exit status are the native run's" if not failures else
                                "DIFFERENT OR FAILED:\n  " + "\n  ".join(failures)))
    text = "\n".join(lines) + "\n"
    open(f"{args.out}/results.txt", "w").write(text)
    print(text)
    if args.chart:
        draw_charts(args.out, doc)
    for path in (bpf, args.calls, args.calls_text, args.interception, args.interception_text, f"{args.out}/.stats.json"):
        if os.path.exists(path):
            os.remove(path)
    return 1 if failures else 0


def draw_charts(out, doc):
    # The programs: time relative to native, one group per program.
    with open(f"{out}/programs.tsv", "w") as f:
        for row in doc["programs"]:
            f.write(f"\"{row['program']}\"\t" + "\t".join(str(row["ways"][w]["ratio_to_native"]) for w in WAYS[1:]) + "\n")
    subprocess.run(["gnuplot"], check=True, text=True, input=f"""
set terminal pngcairo size 1100,560 noenhanced font ",10"
set output "{out}/programs.png"
set title "Real programs: time relative to native (best of {doc['repeat']} runs each; the same policy: dunk's built-in default)\\n{doc['environment']}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set ylabel "time / native"
set yrange [0:*]
set offsets 0, 0, 1, 0
set grid ytics
set key top right
set datafile separator "\\t"
plot "{out}/programs.tsv" using 2:xtic(1) title "{WAYS[1]}" lc rgb "#3070c0", \\
     "" using 3 title "{WAYS[2]}" lc rgb "#80a8e0", \\
     "" using 4 title "{WAYS[3]}" lc rgb "#909090", \\
     "" using 0:($2 + 0.1):(sprintf("%.1fx", $2)) with labels offset -5,0.5 notitle, \\
     "" using 0:($3 + 0.1):(sprintf("%.1fx", $3)) with labels offset 0,0.5 notitle, \\
     "" using 0:($4 + 0.1):(sprintf("%.1fx", $4)) with labels offset 5,0.5 notitle
""")
    os.remove(f"{out}/programs.tsv")
    # The system-call rows: ns per call, log scale, each labelled with its ratio.
    lowest = min(r["ns_per_op"] for r in doc["calls"] if r["ns_per_op"])
    with open(f"{out}/calls.tsv", "w") as f:
        for r in doc["calls"]:
            if r["ns_per_op"] is None:
                continue
            ratio = r.get("ratio")
            label = f"{ratio:.1f}x" if ratio else "1x"
            colour = 0x3070c0 if r["mode"] == "dunk sandbox" else 0x909090 if r["mode"] == "native" else 0xc08030
            f.write(f"\"{r['operation'].replace('sandbox ', '')}: {r['mode']}\"\t\"{label}\"\t{r['ns_per_op']}\t{colour}\n")
    subprocess.run(["gnuplot"], check=True, text=True, input=f"""
set terminal pngcairo size 1100,560 noenhanced font ",10"
set output "{out}/calls.png"
set title "One system call under each way of enforcing the same policy (ns per call, log scale; label: ratio to native)\\n{doc['environment']}"
set logscale y
set yrange [{lowest / 3}:*]
set ylabel "ns per call"
set grid ytics
set style fill solid 0.85 border -1
set boxwidth 0.8
set xtics rotate by -35 left
set bmargin 9
set rmargin 10
set key off
set datafile separator "\\t"
plot "{out}/calls.tsv" using 0:3:4:xtic(1) with boxes lc rgb variable, \\
     "" using 0:($3 * 1.4):2 with labels
""")
    os.remove(f"{out}/calls.tsv")


if __name__ == "__main__":
    sys.exit(main())
