"""``dfptmag bands --engine local|slurm``, ``dfptmag task`` and ``dfptmag status``: the band
workflow as a task graph (:mod:`dfptmag.workflow.tasks`) run by a task engine
(:mod:`dfptmag.engines`).

    bands_tasks(workflow, engine="slurm")   writes the plan, submits what is not done, returns at once;
                                            when every QE task is done, assembles bands.h5 (no QE)
    bands_tasks(workflow, engine="local", workers=W)   the same graph in a local process pool
    execute(workflow, run_dir, task_id)     one task (what a batch job runs); records its state
    status(run_dir)                         every task: done / running / pending / failed / not submitted

Task state: the markers decide what is done (check-only runner); ``tasks/state/<task>.json``
holds what the last attempt did (running with host and PID, failed with its error, the job id);
``tasks/jobs.json`` the Slurm job reference and log file of each submitted task. squeue tells
pending/running while a job exists; after it ends (no accounting history on every cluster),
the markers and the state files tell done or failed. A task killed at its time limit (SIGTERM,
then SIGKILL) stays "running" in its state file with no live job: it is reported as killed and
the next submission redoes it from a clean state (the runner's markers).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..engines import Outcome
from ..errors import DfptmagError
from ..kernel import modes as km
from ..workflow import tasks as wt
from ..workflow.config import split_launcher


def _state_path(run_dir, task_id: str) -> Path:
    return Path(run_dir) / wt.TASKS_DIR / "state" / (task_id.replace("/", "~") + ".json")


def _write_state(run_dir, task_id: str, **info) -> None:
    path = _state_path(run_dir, task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    ref = f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if job else os.environ.get("SLURM_JOB_ID")
    info.update({"task": task_id, "host": socket.gethostname(), "pid": os.getpid(), "job": ref,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_text(path, json.dumps(info))


def read_state(run_dir, task_id: str) -> dict:
    try:
        return json.loads(_state_path(run_dir, task_id).read_text())
    except (OSError, ValueError):
        return {}


def execute(workflow, run_dir, task_id: str) -> None:
    """Run one task of the plan in ``run_dir`` and record its state (top level and picklable:
    the local engine's process pool and ``dfptmag task`` in a batch job both call it)."""
    run_dir = Path(run_dir).resolve()
    plan = wt.Plan.load(run_dir)
    _write_state(run_dir, task_id, state="running")
    t0 = time.time()
    try:
        if task_id == "bands":
            assemble(plan, workflow)
        else:
            contract = None
            if plan.storage.get("discard_dwf"):
                from ..analysis.contract import contractor
                contract = contractor()
            wt.run_task(workflow, run_dir, task_id, contract)
    except BaseException as exc:
        why = "interrupted (SIGTERM or Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
        _write_state(run_dir, task_id, state="failed", error=why[-4000:], seconds=round(time.time() - t0, 2))
        raise
    _write_state(run_dir, task_id, state="done", seconds=round(time.time() - t0, 2))


def assemble(plan: wt.Plan, workflow=None) -> list[Path]:
    """The bands task: analysis of every q-run whose gather is done, bands.h5 and figures."""
    from .bands import setup, write_bands
    b = plan.bands
    st = setup(plan.workflow, b["path"], b["npoints"])
    run_dir = Path(plan.run_dir)
    qdirs, failures = {}, {}
    for q in st.qpts:
        if wt.is_done(plan, f"q/{q.label}/gather"):
            qdirs[q.label] = run_dir / f"q_{q.label}"
        else:
            failures[q.label] = f"q/{q.label}/gather is not done"
    disp = None
    if plan.dispersion_q is not None:
        if wt.is_done(plan, "dispersion"):
            disp = run_dir / "dispersion" / "matdyn.dyn"
        else:
            failures["dispersion"] = "dispersion is not done"
    if not qdirs:
        raise DfptmagError(f"{run_dir}: no q-point is done; nothing to assemble")
    return write_bands(st, qdirs, failures, disp, b["output"], tuple(b["figures"]), b["tol_cm1"])


def make_plan(workflow, run_dir=None, path=None, npoints=None, nproc=None, output=None,
              figures=("png", "pdf"), tol_cm1=km.DEGENERACY_TOL_CM1, engine="local",
              discard_dwf=None, keep_scratch=None) -> tuple[wt.Plan, object]:
    from . import storage
    from .bands import setup
    st = setup(workflow, path, npoints)
    wf = st.wf
    run_dir = Path(run_dir or Path("runs") / wf.name).resolve()
    output = Path(output or run_dir / "bands.h5").resolve()
    cl = wf.cluster or {}
    per_stage = {"default": int(nproc or wf.nproc)}
    if engine == "slurm" and not nproc:
        per_stage.update({k: int(v) for k, v in cl.get("nproc", {}).items()})
    launcher = split_launcher(wf.path, cl["launcher"]) if (engine == "slurm" and cl.get("launcher")) else None
    plan = wt.Plan(workflow=str(wf.path), run_dir=str(run_dir),
                   qpoints={q.label: [float(v) for v in q.crystal] for q in st.qpts},
                   patterns=list(range(1, 3 * len(st.atoms) + 1)),
                   dispersion_q=(st.dense_bp.q_crystal.tolist() if st.dense_bp is not None else None),
                   nproc=per_stage, launcher=launcher,
                   bands={"path": st.path, "npoints": int(npoints or wf.bands["npoints"]),
                          "output": str(output), "figures": list(figures or ()), "tol_cm1": float(tol_cm1)},
                   storage=storage.settings(wf, engine, discard_dwf, keep_scratch))
    return plan, st


@dataclasses.dataclass
class TasksRun:
    run_dir: Path
    engine: str
    todo: list                       # task ids not done before this call
    outcome: Outcome
    output: Path | None = None       # bands.h5, once assembled
    figures: list = dataclasses.field(default_factory=list)
    dry_run_text: str = ""


def _task_command(plan: wt.Plan, python: str | None) -> list[str]:
    return [python or sys.executable, "-m", "dfptmag.cli", "task", plan.workflow, plan.run_dir]


def _jobs_file(run_dir) -> Path:
    return Path(run_dir) / wt.TASKS_DIR / "jobs.json"


def read_jobs(run_dir) -> dict:
    try:
        return json.loads(_jobs_file(run_dir).read_text())
    except (OSError, ValueError):
        return {}


def bands_done(plan: wt.Plan) -> bool:
    """Whether bands.h5 is there, its task finished, and it is newer than every q's gather."""
    out = Path(plan.bands["output"])
    if not out.is_file() or read_state(plan.run_dir, "bands").get("state") != "done":
        return False
    gathers = [Path(plan.run_dir) / f"q_{lab}" / "ph.final.done" for lab in plan.qpoints]
    return all(g.is_file() and g.stat().st_mtime <= out.stat().st_mtime for g in gathers)


def bands_tasks(workflow, engine: str = "local", workers: int | None = None, run_dir=None, path=None, npoints=None,
                nproc=None, output=None, figures=("png", "pdf"), dry_run: bool = False,
                tol_cm1: float = km.DEGENERACY_TOL_CM1, discard_dwf=None, keep_scratch=None) -> TasksRun:
    """The band workflow through a task engine; see the module doc."""
    if engine not in ("local", "slurm"):
        raise DfptmagError(f"--engine {engine!r}: 'local' or 'slurm'")
    plan, st = make_plan(workflow, run_dir, path, npoints, nproc, output, figures, tol_cm1, engine,
                         discard_dwf, keep_scratch)
    if engine == "slurm" and st.wf.cluster is None:
        raise DfptmagError(f"{st.wf.path}: --engine slurm needs a [cluster] section (partition, account, "
                           "time, launcher, ...; see docs/howto-slurm.md)")
    if not dry_run:
        plan.save()
    graph = wt.graph(plan)
    todo = _not_done(plan, graph)
    run_dir = Path(plan.run_dir)
    res = TasksRun(run_dir=run_dir, engine=engine, todo=[t.id for t in todo], outcome=Outcome(finished=True))
    if dry_run:
        res.dry_run_text = describe(plan, graph, todo, engine, st.wf, _size_factor(st))
        res.dry_run_text += "\n\n" + describe_disk(plan, st, engine, workers or st.wf.bands["workers"])
        return res
    if engine == "local":
        return _run_local(res, plan, todo, workers or st.wf.bands["workers"])
    return _run_slurm(res, plan, todo, st.wf.cluster)


def _not_done(plan: wt.Plan, graph) -> list:
    """The tasks of the graph still to run, in graph order. The markers decide for the QE
    tasks; the bands task counts as done only with every QE task done and bands.h5 up to date."""
    done = {t.id for t in graph if t.id != "bands" and wt.is_done(plan, t.id)}
    if len(done) == len(graph) - 1 and bands_done(plan):
        done.add("bands")
    return [t for t in graph if t.id not in done]


def _run_local(res: TasksRun, plan: wt.Plan, todo, workers: int) -> TasksRun:
    """The QE tasks still to run in a local process pool, then (if none failed) the bands task."""
    from ..engines.local import LocalEngine
    qe_todo = [t for t in todo if t.id != "bands"]
    if qe_todo:
        fn = functools.partial(execute, plan.workflow, str(res.run_dir))
        res.outcome = LocalEngine(fn, workers).run(qe_todo)
    if not res.outcome.failures:
        execute(plan.workflow, res.run_dir, "bands")
        res.output = Path(plan.bands["output"])
    return res


def _run_slurm(res: TasksRun, plan: wt.Plan, todo, cluster: dict) -> TasksRun:
    """Submit the tasks still to run (those whose job is still queued are not submitted again);
    with every QE task done, assemble bands.h5 here instead, no job needed."""
    if not todo:
        res.output = Path(plan.bands["output"])
        return res
    if not any(t.id != "bands" for t in todo):     # every QE task done: assemble here
        execute(plan.workflow, res.run_dir, "bands")
        res.output = Path(plan.bands["output"])
        return res
    res.outcome = _submit(plan, todo, cluster)
    return res


def _submit(plan: wt.Plan, todo, cluster: dict) -> Outcome:
    """sbatch the tasks of ``todo`` through the Slurm engine, recording each submission's job
    ids in tasks/jobs.json as it goes."""
    from ..engines.slurm import SlurmEngine, squeue_states
    run_dir = Path(plan.run_dir)
    jobs = read_jobs(run_dir)
    alive_states = squeue_states()
    alive = {tid: j["job"] for tid, j in jobs.items()
             if j.get("job") in alive_states and tid in {t.id for t in todo}}
    eng = SlurmEngine(_task_command(plan, (cluster or {}).get("python")),
                      run_dir / wt.TASKS_DIR / "slurm", run_dir / wt.TASKS_DIR / "logs", cluster)

    def record(new: dict) -> None:
        """After each sbatch: its job ids into tasks/jobs.json (atomically), and the fresh
        attempt's tasks forget the last attempt's state."""
        jobs.update(new)
        write_text(_jobs_file(run_dir), json.dumps(jobs, indent=1))
        for tid in new:
            p = _state_path(run_dir, tid)
            if p.exists():
                p.unlink()
    return eng.run(todo, alive=alive, record=record)


# -- dry run: the graph, the scripts and a cost estimate -------------------------------------------
# Cost of one task per stage in core-seconds on the tiny WSe2 run (20 Ry, 2×2 k, c = 10 Å; 2 cores,
# docs/performance.md), used only when this run directory has no finished task of that stage to
# calibrate from, scaled by _size_factor.
# (measured by the markers of the Slurm test's run: scf 7.5 s, only_wfc + irrep 0 9 s, a pattern
# 12 s, the final run 1 s, all with 2 processes; the 3×3×1 dispersion is not measured: a guess)
_FALLBACK_CORE_S = {"prepare": 15.0, "dispersion": 600.0, "common": 18.0, "pattern": 25.0, "gather": 2.0,
                    "bands": 5.0}


def _size_factor(st) -> float:
    """ph.x's work relative to the tiny run, to first order: k-points × plane waves
    (N_k · ecutwfc^1.5 · c). For the converged workflow it gives 2.6 core-hours per pattern,
    between the two measured extrapolations of docs/performance.md (1.9 and 3.8)."""
    nk = float(np.prod(st.wf.pw["kgrid"]))
    c = float(st.atoms.cell.lengths()[2])
    return (nk / 4.0) * (float(st.wf.pw["ecutwfc_ry"]) / 20.0) ** 1.5 * (c / 10.0)


# Disk of the tiny run (20 Ry, 2×2 k, c = 10 Å), measured on its K point: δψ of one pattern (two
# pool files), the q's ph.x scratch that the gather frees (ψ at k and k+q, ψ buffer, charge
# density, ...), the state copy a pattern task makes while it runs, one pattern's contracted file
# (field + fildrho record) and one fildrho record, the scf directory. δψ, scratch and copies scale
# with k-points × plane waves (_size_factor), the field with the FFT grid (_grid_factor).
_TINY_BYTES = {"dwf": 2_255_616, "scratch": 16_514_580, "copy": 15_600_000, "contracted": 1_128_024,
               "drho_record": 279_936, "scf": 3_200_000}


def _grid_factor(st) -> float:
    """FFT points relative to the tiny run: (ecutrho)^1.5 · c (ecutrho = 4 ecutwfc by default)."""
    ecutrho = float(st.wf.pw.get("ecutrho_ry", 4 * float(st.wf.pw["ecutwfc_ry"])))
    return (ecutrho / 80.0) ** 1.5 * (float(st.atoms.cell.lengths()[2]) / 10.0)


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def disk_model(plan: wt.Plan, st, running: int) -> dict:
    """Peak and final disk per stage, with and without contract-and-discard, for the whole plan
    (``running`` pattern tasks at once). Sizes are measured in this run directory where tasks
    have run (captures and contracted files in its manifests), else the tiny run's × size."""
    from ..io.qrun_dir import read_manifest
    sf, gf = _size_factor(st), _grid_factor(st)
    b = {k: v * (gf if k in ("contracted", "drho_record") else sf) for k, v in _TINY_BYTES.items()}
    b["scf"] = _TINY_BYTES["scf"] * sf
    src = {k: "estimate" for k in b}
    dwf, con = [], []
    for label in plan.qpoints:
        for cap in read_manifest(Path(plan.run_dir) / f"q_{label}").get("captures", {}).values():
            sums = cap.get("checksums", {})
            dwf += [sum(v["size"] for k, v in sums.items() if "/dwf." in "/" + k)]
            if cap.get("contracted"):
                con.append(cap["contracted"]["size"])
    if dwf and max(dwf) > 0:
        b["dwf"], src["dwf"] = float(np.mean(dwf)), "measured"
    if con:
        b["contracted"], src["contracted"] = float(np.mean(con)), "measured"
    nq, npat = len(plan.qpoints), len(plan.patterns)
    drho = b["drho_record"] * npat * (npat + 1) / 2       # capture's fildrho copies of one q
    keep_q = npat * b["dwf"] + drho                        # what a q keeps without discarding
    disc_q = npat * b["contracted"]
    task = b["copy"] + b["dwf"]                            # while a pattern task runs
    base = b["scf"] + nq * b["scratch"]
    rows = [("prepare", b["scf"], b["scf"], b["scf"], b["scf"]),
            ("common", base, base, base, base),
            ("pattern", base + nq * keep_q + running * b["copy"], base + nq * keep_q,
             base + nq * disc_q + running * task, base + nq * disc_q),
            ("gather", base + nq * keep_q, base + nq * keep_q, base + nq * disc_q,
             b["scf"] + nq * disc_q)]
    return {"bytes": b, "source": src, "rows": rows, "running": running, "nq": nq, "npat": npat}


def describe_disk(plan: wt.Plan, st, engine: str, workers: int) -> str:
    """The dry run's disk table: peak and final per stage, δψ kept or contracted and discarded."""
    # Slurm runs as many tasks as the queue lets in: the table assumes one q's patterns at once
    running = len(plan.patterns) if engine == "slurm" else int(workers)
    m = disk_model(plan, st, running)
    b, src = m["bytes"], m["source"]
    on = plan.storage.get("discard_dwf")
    scratch_kept = plan.storage.get("keep_scratch")
    lines = [f"disk ({m['nq']} q × {m['npat']} patterns; {running} pattern task(s) at once; δψ "
             f"{'contracted and discarded' if on else 'kept'}: [storage] discard_dwf / --discard-dwf, --keep-dwf)",
             f"  per pattern: δψ {_gb(b['dwf'])} ({src['dwf']}), contracted {_gb(b['contracted'])} "
             f"({src['contracted']}); per q: ph.x scratch {_gb(b['scratch'])}; per running task: state "
             f"copy {_gb(b['copy'])} (estimates: tiny run × k-points × plane waves, field × FFT grid)",
             f"{'stage':<10}{'keep δψ: peak':>16}{'final':>12}{'discard: peak':>16}{'final':>12}"]
    for stage, kp, kf, dp, df in m["rows"]:
        if stage == "gather" and scratch_kept:
            df = dp
        lines.append(f"{stage:<10}{_gb(kp):>16}{_gb(kf):>12}{_gb(dp):>16}{_gb(df):>12}")
    lines.append("peak = the stage's largest use while its tasks run; final = what stays after it "
                 "(discard: the q's scratch goes at its gather" + (", kept here: --keep-scratch" if scratch_kept else "") + "); "
                 f"each further pattern task running at once adds {_gb(b['copy'] + b['dwf'])} while it runs; "
                 "the dispersion's coarse-grid ph.x run is not included")
    return "\n".join(lines)


def describe(plan: wt.Plan, graph, todo, engine: str, wf, size_factor: float = 1.0) -> str:
    ids = {t.id for t in todo}
    lines = [f"run directory {plan.run_dir}   engine {engine}   workflow {plan.workflow}",
             f"{len(plan.qpoints)} q-points × {len(plan.patterns)} patterns; "
             f"{len(graph)} tasks, {len(todo)} to run, {len(graph) - len(todo)} done", "",
             f"{'stage':<11}{'tasks':>6}{'to run':>8}{'procs':>6}{'wall/task':>11}{'core·h':>9}  "
             "calibration; directories"]
    total = 0.0
    for stage in wt.STAGES:
        members = [t for t in graph if t.stage == stage]
        if not members:
            continue
        line, core_h = _stage_line(plan, stage, members, ids, size_factor)
        total += core_h
        lines.append(line)
    lines.append(f"total to run: {total:.3f} core·h (wall time per task at its process count; a "
                 "measured task calibrates its whole stage)")
    if engine == "slurm":
        lines += _dry_run_scripts(plan, todo, wf)
    return "\n".join(lines)


def _stage_line(plan: wt.Plan, stage: str, members, ids: set, size_factor: float) -> tuple[str, float]:
    """The dry run's row of one stage (``members``: its tasks; ``ids``: the tasks to run) and the
    core-hours its tasks still to run take."""
    run = [t for t in members if t.id in ids]
    nproc = members[0].nproc
    per, calib = _stage_seconds(plan, stage, members, nproc, size_factor)
    core_h = per * len(run) * nproc / 3600.0
    dirs = sorted({t.workdir for t in members})
    where = dirs[0] if len(dirs) == 1 else f"{dirs[0]} … {dirs[-1]}"
    return (f"{stage:<11}{len(members):>6}{len(run):>8}{nproc:>6}{per:>9.0f} s{core_h:>9.3f}  "
            f"{calib}; {where}"), core_h


def _stage_seconds(plan: wt.Plan, stage: str, members, nproc: int, size_factor: float) -> tuple[float, str]:
    """Wall seconds per task of a stage and where the figure comes from: the first of its tasks
    that has finished in this run directory, else the tiny run's cost × ``size_factor``."""
    measured = [(t.id, wt.marker_seconds(plan.run_dir, t.id)) for t in members]
    measured = [(i, s) for i, s in measured if s]
    if measured:
        tid, per = measured[0]
        return per, f"measured: {tid} took {per:.0f} s"
    scale = size_factor if stage != "bands" else 1.0
    return _FALLBACK_CORE_S[stage] * scale / nproc, f"estimate: tiny run × {scale:.3g} (k-points × plane waves)"


def _dry_run_scripts(plan: wt.Plan, todo, wf) -> list[str]:
    """The sbatch scripts a submission of ``todo`` would write, with their options (nothing is
    submitted)."""
    from ..engines.slurm import SlurmEngine
    eng = SlurmEngine(_task_command(plan, (wf.cluster or {}).get("python")),
                      Path(plan.run_dir) / wt.TASKS_DIR / "slurm", Path(plan.run_dir) / wt.TASKS_DIR / "logs",
                      wf.cluster or {}, dry_run=True)
    out = eng.run(todo)
    lines = ["", f"{len(out.scripts)} sbatch submissions (nothing submitted: --dry-run):"]
    for path, text, opts in out.scripts:
        lines += ["", f"# sbatch {' '.join(shlex.quote(o) for o in opts)} {path}", text.rstrip()]
    return lines


# -- status ---------------------------------------------------------------------------------------
def _tail(path, n=15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def status(run_dir) -> list[dict]:
    """[{task, state, job, detail, log}] for every task of the plan in ``run_dir``; state is one
    of done, running, pending, failed (with ``tail``: its log's last lines), cancelled (never
    ran: a task it needs failed), not submitted."""
    from ..engines.slurm import squeue_states
    plan = wt.Plan.load(run_dir)
    graph = wt.graph(plan)
    jobs = read_jobs(run_dir)
    queue = squeue_states() if jobs else {}
    out = []
    for t in graph:
        st = read_state(run_dir, t.id)
        job = jobs.get(t.id, {})
        ref = job.get("job") or st.get("job")
        row = {"task": t.id, "job": ref or "", "log": job.get("log", ""), "detail": ""}
        row["state"], row["detail"] = _task_state(plan, Path(run_dir), t, st, ref, queue)
        if row["state"] == "failed" and row["log"]:
            row["tail"] = _tail(row["log"])
        out.append(row)
    return out


def _task_state(plan: wt.Plan, run_dir: Path, task, st: dict, ref, queue: dict) -> tuple[str, str]:
    """(state, detail) of one task from, in this order: its markers, the queue (``ref``: its
    job), its state file (``st``: what its last attempt recorded)."""
    done = bands_done(plan) if task.id == "bands" else wt.is_done(plan, task.id)
    if done:
        return "done", (_pattern_disk(run_dir, task.id) if task.stage == "pattern" else "")
    if ref and ref in queue:
        q = queue[ref]
        return ("running" if q.startswith(("RUNNING", "COMPLETING")) else "pending"), q
    if st.get("state") == "failed":
        return "failed", st.get("error", "")
    if st.get("state") == "running":
        alive = st.get("host") == socket.gethostname() and _pid_alive(st.get("pid"))
        if alive and not ref:
            return "running", ""
        return "failed", "killed while running (time limit, scancel or node failure); resubmit to redo it"
    if ref:
        return "cancelled", "its job ended without running it (a task it needs failed); resubmit"
    return "not submitted", ""


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def _pattern_disk(run_dir: Path, task_id: str) -> str:
    """'δψ 2.26 MB; state copy 15.6 MB in 0.01 s': the disk a finished pattern task uses."""
    from ..io.qrun_dir import read_manifest
    _, label, p = wt.parse_id(task_id)
    qdir = run_dir / f"q_{label}"
    try:
        cap = read_manifest(qdir).get("captures", {}).get(str(p), {})
        size = sum(v["size"] for v in cap.get("checksums", {}).values())
        text = f"δψ + fildrho {size / 1e6:.2f} MB" if size else ""
        if cap.get("contracted"):
            text += f" contracted into {cap['contracted']['size'] / 1e6:.2f} MB (δψ deleted)"
        copy = json.loads((qdir / f"pattern{p}" / "copy.json").read_text())
        return text + f"; state copy {copy['bytes'] / 1e6:.1f} MB in {copy['seconds']:.2f} s (deleted)"
    except (OSError, ValueError, KeyError, DfptmagError):
        return ""
