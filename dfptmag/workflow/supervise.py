"""A small supervisor between dfptmag and one QE command line, so that no QE process outlives
the dfptmag process that started it, however that process dies (SIGKILL included).

    python .../dfptmag/workflow/supervise.py --parent PID -- mpirun -np 2 ph.x -nk 2 -in ph.irr3.in

dfptmag starts the supervisor in a new session (it is the session leader); the supervisor asks
the kernel for a parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``), starts the command
(which stays in the supervisor's session), and waits. When the command ends, or when SIGTERM/SIGINT arrives — from
dfptmag stopping it, or from the kernel because dfptmag died — it stops every process left in
its session (mpirun, the MPI ranks, anything they started, whatever process group they put
themselves in, and, as it is a child subreaper, any descendant that left the session): SIGTERM,
then SIGKILL after a grace period. Its exit code is the command's
(128 + signal if it was stopped).

Linux only (prctl and /proc); elsewhere it still runs the command and forwards signals, and the
run directory's lock and live-process check guard the rest. Only the standard library is
imported, and it runs as a script (not through the package), so it starts in a few tens of
milliseconds whatever the installation.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 5.0


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, int(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _processes() -> dict[int, tuple[int, int]]:
    """{pid: (ppid, session)} of the live (non-zombie) processes, from /proc."""
    out = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may contain spaces and parentheses
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and fields[0] != "Z":
            out[int(name)] = (int(fields[1]), int(fields[3]))
    return out


def session_members(sid: int) -> list[int]:
    """PIDs of the processes in session ``sid`` or descended from this process (the supervisor
    is a child subreaper, so descendants that left the session stay in its tree), the caller
    excluded."""
    me = os.getpid()
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found = {pid for pid, (_, s) in procs.items() if s == sid}
    todo = [me]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    found.discard(me)
    return sorted(found)


def stop_session(sid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every live process of the session, SIGKILL those left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = session_members(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait:
            try:                                    # reap our own child if it was one of them
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
            if not session_members(sid):
                return
            time.sleep(0.05)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="supervise.py")
    p.add_argument("--parent", type=int, required=True, help="PID whose death stops the command")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        p.error("no command")
    if os.getsid(0) != os.getpid():
        os.setsid()
    sid = os.getsid(0)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    if os.getppid() != a.parent:        # the parent died before prctl took effect
        return 128 + signal.SIGTERM
    try:
        proc = subprocess.Popen(cmd, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    except OSError as exc:
        print(f"dfptmag supervisor: cannot start {cmd[0]}: {exc}", file=sys.stderr)
        return 127
    while True:
        if stopping or os.getppid() != a.parent:
            stop_session(sid)
            return 128 + (stopping[0] if stopping else signal.SIGTERM)
        try:
            rc = proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    stop_session(sid, grace=1.0)        # anything the command left behind (orted, helpers)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
