"""Task engines: run a graph of tasks somewhere. An engine knows nothing of QE or physics: a
task is an id with the ids it waits for, a process count and a working directory
(:class:`dfptmag.workflow.tasks.Task`), and the engine is told how to run one — a picklable
function ``fn(task_id)`` (:mod:`.local`, a process pool) or a command line ending in the task id
(:mod:`.slurm`, sbatch job arrays). Both return an :class:`Outcome`; the local engine returns
when every task has ended, the Slurm engine as soon as everything is submitted.

The seam, in the spirit of ``concurrent.futures.Executor``::

    outcome = engine.run(tasks)      # tasks: only those not done; deps on done tasks dropped
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Outcome:
    finished: bool                                   # every task has ended (local) or was submitted (False)
    failures: dict = dataclasses.field(default_factory=dict)     # task id -> message
    jobs: dict = dataclasses.field(default_factory=dict)         # task id -> Slurm job reference
    scripts: list = dataclasses.field(default_factory=list)      # (path, text, sbatch options) submitted


def pending_deps(task, todo_ids) -> list[str]:
    """The dependencies of ``task`` that are still to run (the others are done)."""
    return [d for d in task.deps if d in todo_ids]
