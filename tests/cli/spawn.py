"""Runs a command the way a shell with job control would (every signal at
its default disposition) and reports how it ended.

  spawn.py [--signal-when-ready SIG] -- COMMAND...

Copies COMMAND's stdout to stdout, then prints "exit N" or "signal N" (the
name of the signal, e.g. "signal SIGSEGV"). With --signal-when-ready, sends
SIG to COMMAND's process alone (not its group) once COMMAND printed a line
"ready"."""

import argparse
import signal
import subprocess
import sys

RESET = [signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
         signal.SIGPIPE]


def default_signals():
    for sig in RESET:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--signal-when-ready")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    child = subprocess.Popen(args.command, stdout=subprocess.PIPE, preexec_fn=default_signals)
    for line in child.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
        if args.signal_when_ready and line == b"ready\n":
            child.send_signal(signal.Signals[args.signal_when_ready])
    status = child.wait()
    print(f"signal {signal.Signals(-status).name}" if status < 0 else f"exit {status}")


main()
