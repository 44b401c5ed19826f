"""Slurm engine: sbatch job arrays with ``--dependency=afterok``, state from squeue.

Tasks with the same array key (a stage, or one q-point's patterns) and the same dependencies
become one job array; element i runs ``<command> <task id i>`` (the batch script holds the ids
in a bash array indexed by ``SLURM_ARRAY_TASK_ID``). A job waits with ``afterok`` for the array
elements (``<job>_<i>``) it needs; ``--kill-on-invalid-dep=yes`` removes it from the queue when
one of them fails, so nothing waits forever. Tasks still queued or running from an earlier
submission are not submitted again: new jobs depend on their existing job ids. Nothing here
stays alive after submission: the campaign's state is the run directory's markers plus squeue.

The batch script is plain text: ``#SBATCH`` lines (partition, account, time, ntasks, log file),
the ``[cluster] setup`` lines (module loads, exports) verbatim, and ``exec`` of the task command,
every word quoted with :func:`shlex.quote`. The MPI launcher is not in the script: the task
builds its QE command line from the launcher's words (no shell involved).
"""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from ..errors import DfptmagError
from . import Outcome, pending_deps


def squeue_states(env=None) -> dict[str, str]:
    """Job reference ('123' or '123_4') -> state (PENDING, RUNNING, ...) for every job in the
    queue, array elements expanded. Empty if squeue cannot be reached."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r"], capture_output=True, text=True,
                             timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2:
            states[parts[0]] = parts[1] + (f" ({parts[2]})" if len(parts) > 2 and parts[2] not in ("None", "") else "")
    return states


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


class SlurmEngine:
    name = "slurm"

    def __init__(self, command: list[str], script_dir, log_dir, settings: dict, dry_run: bool = False):
        """``command``: the words before the task id (e.g. python -m dfptmag.cli task WF RUN);
        ``settings``: the validated [cluster] section (partition, account, time, nproc,
        setup, sbatch_options)."""
        self.command = list(command)
        self.script_dir = Path(script_dir)
        self.log_dir = Path(log_dir)
        self.settings = settings
        self.dry_run = dry_run

    def groups(self, tasks) -> list[tuple[str, list, list[str]]]:
        """[(array key, tasks, dependency ids)] in submission order."""
        ids = {t.id for t in tasks}
        out, where = [], {}
        for t in tasks:
            deps = tuple(pending_deps(t, ids))
            key = (t.array_key, deps)
            if key not in where:
                where[key] = len(out)
                out.append((t.array_key, [], list(deps)))
            out[where[key]][1].append(t)
        return out

    def script(self, key: str, tasks) -> str:
        s = self.settings
        stage = tasks[0].stage
        name = _safe(f"dfptmag-{key}")
        lines = ["#!/bin/bash", f"#SBATCH --job-name={name}"]
        for opt in ("partition", "account"):
            if s.get(opt):
                lines.append(f"#SBATCH --{opt}={s[opt]}")
        limit = s.get("time", {}).get(stage, s.get("time", {}).get("default"))
        if limit:
            lines.append(f"#SBATCH --time={limit}")
        lines += [f"#SBATCH --ntasks={tasks[0].nproc}", "#SBATCH --cpus-per-task=1",
                  f"#SBATCH --output={self.log_dir / (name + '.%A_%a.log')}"]
        lines.append(f"#SBATCH --array=0-{len(tasks) - 1}")      # always an array: refs are <job>_<i>
        lines += [f"#SBATCH {o}" for o in s.get("sbatch_options", [])]
        lines += list(s.get("setup", []))
        lines.append("TASKS=(" + " ".join(shlex.quote(t.id) for t in tasks) + ")")
        lines.append("exec " + " ".join(shlex.quote(w) for w in self.command)
                     + ' "${TASKS[$SLURM_ARRAY_TASK_ID]}"')
        return "\n".join(lines) + "\n"

    def run(self, tasks, alive: dict | None = None, env=None, record=None) -> Outcome:
        """Submit ``tasks`` (not done, not alive); ``alive``: task id -> job reference of tasks
        still queued or running from an earlier submission. ``record(jobs)`` is called after each
        successful sbatch with that submission's {task id: {job, log}}, so that the caller keeps
        every job id even when a later sbatch fails (the queue's job limit, a controller error)
        or the submitting process dies; a failed sbatch raises DfptmagError saying how many
        submissions went in."""
        refs = dict(alive or {})
        todo = [t for t in tasks if t.id not in refs]
        outcome = Outcome(finished=False)
        if not self.dry_run:
            self.script_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
        ids = {t.id for t in tasks}
        for n, (key, members, _) in enumerate(self.groups(todo)):
            text = self.script(key, members)
            path = self.script_dir / f"{n:03d}_{_safe(key)}.sbatch"
            deps = sorted({refs[d] for t in members for d in pending_deps(t, ids) if d in refs})
            opts = ["--parsable", "--kill-on-invalid-dep=yes"]
            if deps:
                opts.append("--dependency=afterok:" + ":".join(deps))
            outcome.scripts.append((path, text, opts))
            if self.dry_run:
                for i, t in enumerate(members):
                    refs[t.id] = f"<{n}>_{i}"
                continue
            path.write_text(text)
            proc = subprocess.run(["sbatch", *opts, str(path)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                done = len(outcome.scripts) - 1
                reason = " ".join((proc.stderr or proc.stdout).strip().split())
                kept = (f"; the {done} submission(s) before it ({len(outcome.jobs)} tasks) are recorded in "
                        f"{self.script_dir.parent / 'jobs.json'}: 'dfptmag status' shows them and rerunning "
                        "the same command submits only the rest") if done else ""
                raise DfptmagError(f"sbatch {path} failed ({reason}){kept}")
            job = proc.stdout.strip().split(";")[0]
            name = _safe(f"dfptmag-{key}")
            new = {}
            for i, t in enumerate(members):
                refs[t.id] = f"{job}_{i}"
                new[t.id] = {"job": f"{job}_{i}", "log": str(self.log_dir / f"{name}.{job}_{i}.log")}
            outcome.jobs.update(new)
            if record is not None:
                record(new)
        return outcome
