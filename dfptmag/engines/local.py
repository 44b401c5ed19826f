"""Local engine: the task graph on this machine, up to ``workers`` tasks at a time in a process
pool (spawned processes: each task has its own interpreter, as on a cluster node). A task
starts when every task it depends on has succeeded; a failed task is recorded and every task
that depends on it is skipped, the others go on. The patterns of one q-point are independent
tasks, so they run side by side when ``workers`` > 1."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from . import Outcome, pending_deps


class LocalEngine:
    name = "local"

    def __init__(self, fn, workers: int = 1):
        self.fn = fn                    # picklable fn(task_id); raises on failure
        self.workers = max(1, int(workers))

    def run(self, tasks) -> Outcome:
        todo = {t.id: t for t in tasks}
        order = [t.id for t in tasks]
        ids = set(todo)
        done, failures, running = set(), {}, {}
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            try:
                while todo or running:
                    self._start_ready(pool, order, todo, ids, done, failures, running)
                    if not running:
                        if todo:
                            raise RuntimeError(f"task graph stuck at {sorted(todo)}")
                        continue
                    _collect(running, done, failures)
            except KeyboardInterrupt:
                for fut in running:
                    fut.cancel()
                raise
        return Outcome(finished=True, failures=failures)

    def _start_ready(self, pool, order, todo, ids, done, failures, running) -> None:
        """In graph order, while a worker is free: submit each task of ``todo`` whose
        dependencies are all done; a task one of whose dependencies failed is not run but
        recorded as failed. Either way it leaves ``todo``."""
        for tid in order:
            if tid not in todo or len(running) >= self.workers:
                continue
            deps = pending_deps(todo[tid], ids)
            bad = [d for d in deps if d in failures]
            if bad:
                failures[tid] = f"not run: {bad[0]} failed"
                del todo[tid]
            elif all(d in done for d in deps):
                running[pool.submit(self.fn, tid)] = tid
                del todo[tid]


def _collect(running, done, failures) -> None:
    """Wait for at least one running task to end; move each that ended from ``running`` to
    ``done`` or, with its error, to ``failures``."""
    finished, _ = wait(running, return_when=FIRST_COMPLETED)
    for fut in finished:
        tid = running.pop(fut)
        try:
            fut.result()
            done.add(tid)
        except Exception as exc:         # the task's own error, one per task
            failures[tid] = str(exc) or type(exc).__name__
