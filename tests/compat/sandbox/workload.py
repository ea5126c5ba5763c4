"""A python3 workload for `dunk sandbox`'s parity runs (scripts/compat
sandbox): threads, a thread pool, subprocesses (fork and exec), a process
pool (fork), sqlite3, compression, hashing, JSON, regular expressions and
files in the current directory. Everything it prints is deterministic."""
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import re
import sqlite3
import subprocess
import sys
import threading
import zlib


def square_sum(n):
    return sum(i * i for i in range(n))


def main():
    results = [0] * 4

    def worker(k):
        results[k] = hashlib.sha256(str(k).encode() * 10000).hexdigest()[:16]
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("threads:", results)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        print("thread pool:", list(pool.map(square_sum, [10, 100, 1000, 10000])))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print("process pool:", pool.map(square_sum, [5, 50, 500]))
    out = subprocess.run(["sh", "-c", "echo from a child; echo to stderr >&2; exit 3"], capture_output=True, text=True)
    print("subprocess:", out.returncode, out.stdout.strip(), out.stderr.strip())
    print("pipeline:", subprocess.run("seq 1 1000 | sort -r | head -n 3 | tr '\\n' ' '", shell=True,
                                      capture_output=True, text=True).stdout)
    db = sqlite3.connect("workload.db")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t (v) VALUES (?)", [(f"value {i}",) for i in range(2000)])
    db.commit()
    print("sqlite3:", db.execute("SELECT count(*), max(k), sum(length(v)) FROM t").fetchone())
    db.close()
    data = json.dumps({"numbers": list(range(5000)), "words": ["sandbox"] * 500}).encode()
    packed = zlib.compress(data, 9)
    with open("workload.z", "wb") as f:
        f.write(packed)
    print("zlib:", len(data), len(packed), zlib.decompress(packed) == data)
    print("re:", re.findall(r"(\w+)@(\w+)\.org", "a@b.org, c@d.org; e@f.com"))
    os.makedirs("tree/a/b", exist_ok=True)
    for i in range(20):
        with open(f"tree/{'a/b/' if i % 2 else ''}f{i}", "w") as f:
            f.write(str(i) * i)
    print("walk:", sorted((d, sorted(f)) for d, _, f in os.walk("tree")))
    print("pid is ours:", os.getpid() == int(open("/proc/self/stat").read().split()[0]))
    sys.stderr.write("a line on stderr\n")
    return 4


if __name__ == "__main__":
    sys.exit(main())
