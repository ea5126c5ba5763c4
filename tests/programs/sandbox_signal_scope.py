# Signals from inside `dunk sandbox` reach only the sandbox's own processes
# (src/sandbox/members.h), as from inside a PID namespace: every way to
# signal (or take a pidfd of) OUTSIDE, a process the test started outside
# the sandbox, and dunk's own waiting process (the parent) fails with
# ESRCH; the sandbox's fork children are reached by each of them; kill(-1)
# and kill(0) reach the sandbox's processes and nothing else. One line per
# attempt.
#   python3 sandbox_signal_scope.py OUTSIDE
import ctypes
import os
import signal
import sys

outside = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
SYS_tkill, SYS_tgkill, SYS_rt_sigqueueinfo = 200, 234, 129


def attempt(name, call):
    try:
        call()
        print(f"{name}: done")
    except OSError as e:
        print(f"{name}: {os.strerror(e.errno)}")


def raw(number, *args):
    def call():
        if libc.syscall(number, *args) != 0:
            raise OSError(ctypes.get_errno(), "")
    return call


def sigqueue(pid, sig):
    info = ctypes.create_string_buffer(128)
    ctypes.memmove(info, (ctypes.c_int * 3)(sig, 0, -1), 12)  # si_signo, si_errno, si_code = SI_QUEUE
    return raw(SYS_rt_sigqueueinfo, pid, sig, info)


def child():
    """A fork child that waits for a signal with the default actions (it
    says when it has them: the parent's handlers are its own until then)."""
    ready, say = os.pipe()
    pid = os.fork()
    if pid == 0:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        os.write(say, b"x")
        while True:
            signal.pause()
    os.read(ready, 1)
    os.close(ready)
    os.close(say)
    return pid


def ended(pid):
    _, status = os.waitpid(pid, 0)
    return f"child ended by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else "child exited"


for target, who in ((outside, "outside"), (os.getppid(), "dunk")):
    attempt(f"kill {who}", lambda: os.kill(target, signal.SIGKILL))
    attempt(f"kill -0 {who}", lambda: os.kill(target, 0))
    attempt(f"tkill {who}", raw(SYS_tkill, target, signal.SIGKILL))
    attempt(f"tgkill {who}", raw(SYS_tgkill, target, target, signal.SIGKILL))
    attempt(f"rt_sigqueueinfo {who}", sigqueue(target, signal.SIGKILL))
    attempt(f"pidfd_open {who}", lambda: os.pidfd_open(target))

for name, send in (("kill", lambda pid: os.kill(pid, signal.SIGTERM)),
                   ("tgkill", lambda pid: raw(SYS_tgkill, pid, pid, signal.SIGTERM)()),
                   ("rt_sigqueueinfo", lambda pid: sigqueue(pid, signal.SIGTERM)()),
                   ("pidfd_send_signal", lambda pid: signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGTERM))):
    pid = child()
    attempt(f"{name} a child", lambda: send(pid))
    print(ended(pid))

# kill(-1): every process of the sandbox but the caller.
pid = child()
attempt("kill -1", lambda: os.kill(-1, signal.SIGTERM))
print(ended(pid))
# kill(0): the caller's group in the sandbox, the caller itself too (dunk,
# in the same group, is not the sandbox's).
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
pid = child()
attempt("kill 0", lambda: os.kill(0, signal.SIGUSR1))
print(ended(pid), "; the caller's handler ran" if got else "; the caller's handler did not run")
