"""Locks on run directories and tasks, and the check for QE processes still working in one.

A lock is a file (``.dfptmag.lock`` in the directory it guards) held with ``flock(LOCK_EX)``
for as long as a task works there. The kernel drops the lock when the holder dies, SIGKILL
included, so a lock left by a dead process is simply taken over; the holder's PID, host, start
time and command are written into the file for the message a second command gets::

    dfptmag: error: runs/wse2-tiny/q_K: in use by PID 4711 on node12 since 2026-11-23T17:02:11
    (dfptmag run --q K); wait for it to finish

flock works across the nodes of a cluster on NFS v4 and Lustre (mounted with ``flock``) as well.
Which lock guards what (see also :mod:`dfptmag.workflow.runner`):

- ``<run dir>/.dfptmag.lock``: the shared preparation (pseudopotentials, pw.x scf);
- ``<run dir>/q_<label>/.dfptmag.lock``: one q-point's ph.x chain;
- ``<run dir>/dispersion/.dfptmag.lock``: the coarse-grid dispersion chain.

Before a task starts QE in a directory, :func:`check_no_live_qe` refuses if a process on this
machine still works there (its current directory is inside): e.g. ph.x from a run whose
supervisor could not stop it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import DfptmagError

LOCK_NAME = ".dfptmag.lock"
QE_NAMES = ("pw.x", "ph.x", "ld1.x", "q2r.x", "matdyn.x", "mpirun", "mpiexec", "orterun", "orted",
            "srun", "prterun", "prted", "hydra_pmi_proxy")


class LockedError(DfptmagError):
    """The directory is in use by another dfptmag command (or by live QE processes)."""


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return (f"PID {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
            + (f" ({info['command']})" if info.get("command") else ""))


@contextlib.contextmanager
def locked(directory, what: str | None = None):
    """Hold the lock of ``directory`` (created if needed) for the ``with`` block; raise
    :class:`LockedError` at once if another process holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # A holder writes who it is right after taking the lock and clears it right before
        # letting go: a lock held with no holder written is being taken or released, so look
        # again for a moment instead of reporting "another process".
        for _ in range(40):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder_text(path)
                if holder != "another process":
                    raise LockedError(f"{directory}: in use by {holder}; wait for it to finish "
                                      "(two commands must not work in one directory at once)") from None
                time.sleep(0.05)
        else:
            raise LockedError(f"{directory}: in use by another process; wait for it to finish "
                              "(two commands must not work in one directory at once)")
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": what or " ".join(["dfptmag"] + sys.argv[1:])[:200]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)          # releases the flock


def _cwd_inside(pid: str, root: str) -> str | None:
    """The process's current directory if it is ``root`` or below it, else None."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    return cwd if cwd == root or cwd.startswith(root + os.sep) else None


def live_qe_processes(directory) -> list[tuple[int, str, str]]:
    """(pid, name, cwd) of processes on this machine whose current directory is inside
    ``directory`` and whose name is a QE executable or an MPI launcher."""
    root = os.path.realpath(directory)
    me = os.getpid()
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for pid in names:
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if not any(comm == n or comm == n[:15] for n in QE_NAMES):
            continue
        cwd = _cwd_inside(pid, root)
        if cwd is not None:
            out.append((int(pid), comm, cwd))
    return sorted(out)


def check_no_live_qe(directory) -> None:
    live = live_qe_processes(directory)
    if live:
        shown = ", ".join(f"{name} (PID {pid}) in {cwd}" for pid, name, cwd in live[:4])
        more = f" and {len(live) - 4} more" if len(live) > 4 else ""
        raise LockedError(f"{directory}: QE processes still work here: {shown}{more}; they were "
                          "started by an earlier command that died. Wait for them to end or stop "
                          f"them (kill {' '.join(str(p) for p, _, _ in live[:4])}), then rerun")


@contextlib.contextmanager
def task(directory, what: str | None = None):
    """Lock a task's directory and check that no QE process still works in it."""
    with locked(directory, what) as path:
        check_no_live_qe(directory)
        yield path
