"""What the side-by-side compatibility scripts share (scripts/compat,
scripts/x86-selftests): running one command natively or under `dunk exec`
in a session of its own, with a timeout, recording hangs and processes left
behind; installing the Debian packages a step needs; choosing where KVM
works (this machine, or the nested test VM of scripts/in-vm); and small
file and Markdown helpers.

The scripts import it with scripts/lib on sys.path."""

import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent.parent
# Every workload runs with this environment, natively and under dunk alike,
# so that nothing of the caller's (a pyenv shim first in PATH, PYTHON*
# variables) changes what runs.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def make_say(prog):
    """A function printing `prog: message` lines on stderr."""
    def say(msg):
        print(f"{prog}: {msg}", file=sys.stderr, flush=True)
    return say


def secs(s):
    if s is None:
        return "-"
    s = float(s)
    return f"{s:.1f} s" if s < 120 else f"{int(s) // 60} min {int(s) % 60:02d} s"


def write_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    tmp.replace(path)


def read_text(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(results, pattern):
    """The JSON records in `results` whose names match `pattern`, by name."""
    out = []
    for p in sorted(Path(results).glob(pattern)):
        try:
            out.append(json.loads(p.read_text()))
        except ValueError:
            pass
    return out


# --- running one command ------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, pgrp, session, comm) of a process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    lp, rp = stat.find("("), stat.rfind(")")
    f = stat[rp + 2:].split()
    return f[0], int(f[1]), int(f[2]), int(f[3]), stat[lp + 1:rp]


def group_procs(leader):
    """Processes still in the session or process group that `leader` started."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == leader:
            continue
        st = proc_stat(int(d))
        if st and (st[2] == leader or st[3] == leader):
            out.append(int(d))
    return out


def describe_procs(pids):
    """One line per process (and per thread of it): what each is doing."""
    lines = []
    for pid in pids:
        st = proc_stat(pid)
        if not st:
            continue
        cmd = read_text(f"/proc/{pid}/cmdline").replace("\0", " ").strip()[:120]
        lines.append(f"pid {pid} ({st[4]}) state {st[0]} ppid {st[1]}: {cmd}")
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            tids = []
        for tid in tids[:16]:
            tst = proc_stat(f"{pid}/task/{tid}")
            wchan = read_text(f"/proc/{pid}/task/{tid}/wchan").strip() or "-"
            sysc = read_text(f"/proc/{pid}/task/{tid}/syscall").split(" ")[0].strip() or "-"
            if tst:
                lines.append(f"  thread {tid} state {tst[0]} wchan {wchan} syscall {sysc}")
    return lines


def kill_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def dmesg_lines():
    try:
        r = subprocess.run(["dmesg"], capture_output=True, text=True, errors="replace", timeout=30)
        return r.stdout.splitlines() if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def run(argv, log_path, timeout, cwd, env, stderr_path=None):
    """Runs argv in a session of its own, output into log_path (stderr into
    stderr_path instead, when given). A command
    still running after `timeout` seconds is recorded as hung (what each of
    its processes and threads was doing), sent SIGTERM, then SIGKILL.
    Processes of its session or group left after it ended are recorded and
    killed."""
    t0 = time.monotonic()
    hung = []
    timed_out = False
    with open(log_path, "wb") as out, open(stderr_path or os.devnull, "wb") as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=err if stderr_path else subprocess.STDOUT,
                             cwd=cwd, env=env, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            hung = describe_procs([p.pid] + group_procs(p.pid))
            kill_all([p.pid] + group_procs(p.pid), signal.SIGTERM)
            try:
                rc = p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                kill_all([p.pid] + group_procs(p.pid), signal.SIGKILL)
                rc = p.wait()
    wall = time.monotonic() - t0
    left = group_procs(p.pid)
    if left:  # give exiting processes a moment before calling them leftovers
        time.sleep(2)
        left = group_procs(p.pid)
    leftovers = describe_procs(left)
    kill_all(left, signal.SIGKILL)
    return {"argv": argv, "rc": rc, "timed_out": timed_out, "timeout": timeout, "wall": round(wall, 2),
            "hung": hung, "leftovers": leftovers, "log": str(log_path)}


class Runner:
    """Runs workloads natively or under dunk exec in a clean environment:
    runner(mode, name, argv, timeout) with mode "native" or "dunk". A dunk
    run gets `slowdown` times the timeout; with `stats`, dunk exec writes
    --stats-json next to the log and the record carries its totals."""

    def __init__(self, dunk, work, results, slowdown, stats):
        self.dunk = dunk
        self.stats = stats
        self.work = work
        self.results = results
        self.slow = slowdown

    def env(self, tmpdir):
        env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "TMPDIR": str(tmpdir), "TERM": "dumb",
               "HOME": os.environ.get("HOME", "/root")}
        for v in ("USER", "LOGNAME"):
            if v in os.environ:
                env[v] = os.environ[v]
        return env

    def argv(self, mode, argv, stats_path):
        if mode == "native":
            return list(argv)
        pre = [self.dunk, "exec"]
        if self.stats:
            pre += ["--stats-json", str(stats_path)]
        return pre + ["--"] + list(argv)

    def __call__(self, mode, name, argv, timeout, cwd=None, tmpdir=None, extra_env=None):
        stats_path = self.results / f"{name}.{mode}.stats.json"
        tmpdir = Path(tmpdir or self.work / f"{name}.{mode}.tmp")
        tmpdir.mkdir(parents=True, exist_ok=True)
        if mode == "dunk":
            timeout = int(timeout * self.slow)
        r = run(self.argv(mode, argv, stats_path), self.results / f"{name}.{mode}.log", timeout,
                cwd or tmpdir, dict(self.env(tmpdir), **(extra_env or {})))
        r["mode"] = mode
        if mode == "dunk" and self.stats:
            try:
                s = json.loads(stats_path.read_text())
                r["stats"] = {k: s.get(k) for k in ("processes", "vcpus", "kvm_runs", "totals", "chunks_assigned",
                                                    "chunks_reclaimed")}
            except (OSError, ValueError):
                r["stats"] = None
        text = read_text(r["log"])
        r["dunk_messages"] = sorted(set(re.findall(r"^dunk(?: exec)?: .*$", text, re.M)))[:20]
        return r


def make_work_dir(name):
    """A scratch directory for test files: a tmpfs of its own in the nested
    test VM (local file-system semantics, unlike its 9p-shared /tmp)."""
    if Path("/run/in-vm").exists() and os.getuid() == 0:
        d = Path(f"/var/tmp/{name}")
        d.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1800m", "tmpfs", str(d)]).returncode == 0:
            return d
    d = Path(os.environ.get("TMPDIR", "/var/tmp")) / f"{name}-work-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- the machine ---------------------------------------------------------------

def run_output(*argv):
    """A command's stdout and stderr, stripped, or why it could not run."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=60)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


def environment(dunk, packages):
    """Where a run happens: date, kernel, CPUs, memory, package versions, dunk."""
    cpu = re.search(r"^model name\s*:\s*(.*)$", read_text("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+)", read_text("/proc/meminfo"), re.M)
    versions = run_output("dpkg-query", "-W", "-f", "${Package} ${Version}\n", *packages)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": os.uname().release,
        "in_test_vm": Path("/run/in-vm").exists(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu.group(1) if cpu else None,
        "memory_mib": int(mem.group(1)) // 1024 if mem else None,
        "packages": versions.splitlines(),
        "dunk": dunk,
        "dunk_version": run_output(dunk, "--version"),
        "dunk_check": run_output(dunk, "check"),
    }


def missing_packages(packages):
    missing = []
    for p in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def ensure_packages(packages, say):
    """Installs the Debian packages of `packages` that are missing (as root,
    with apt-get); exits 2 naming them when it cannot."""
    missing = missing_packages(packages)
    if not missing:
        return
    if os.getuid() != 0 or not shutil.which("apt-get"):
        say(f"missing Debian packages: {' '.join(missing)} (install them as root: apt-get install {' '.join(missing)})")
        sys.exit(2)
    say(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, check=True, env=env,
                   stdout=subprocess.DEVNULL)


def check_dunk(dunk, say):
    """Whether `dunk` (with libdunk-preload.so beside it) exists; says why not."""
    if os.access(dunk, os.X_OK) and (Path(dunk).parent / "libdunk-preload.so").exists():
        return True
    say(f"no dunk at {dunk} (with libdunk-preload.so beside it): build it (scripts/setup, or cmake) "
        "or name one with --dunk / DUNK_BIN")
    return False


def checkout_label(dunk):
    """'built from this checkout at COMMIT' when `dunk` lies in this checkout."""
    if not Path(dunk).is_relative_to(TOP):
        return None
    r = subprocess.run(["git", "-C", str(TOP), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return f"built from this checkout at {r.stdout.strip()}" if r.returncode == 0 else None


def kvm_works_here(dunk):
    """Whether dunk can use this machine's /dev/kvm (else: the nested test VM)."""
    return subprocess.run([dunk, "check"], capture_output=True).returncode == 0


def where_kvm_works(argv, native_kvm):
    """argv as it runs where VM mode works: itself when this machine's KVM
    does, else inside the nested test VM (scripts/in-vm)."""
    return list(argv) if native_kvm else [str(TOP / "scripts/in-vm"), "--"] + list(argv)


# --- Markdown ----------------------------------------------------------------------

def excerpt(text, max_lines=30, max_chars=3000):
    lines = (text or "").strip().splitlines()
    if len(lines) > max_lines:
        lines = lines[:8] + [f"[... {len(lines) - max_lines + 8} lines ...]"] + lines[-(max_lines - 8):]
    s = "\n".join(lines)
    return s if len(s) <= max_chars else s[: max_chars // 3] + "\n[...]\n" + s[-(2 * max_chars) // 3:]


def fence(text):
    return "```\n" + text.replace("```", "'''") + "\n```"
