"""The band workflow as independent tasks, for the task engines (:mod:`dfptmag.engines`).

Task ids and what each does (``q/<label>/…`` for every q-point of the plan)::

    prepare                 ld1.x pseudopotentials + pw.x scf          (run directory's lock)
    dispersion              coarse-grid ph.x ldisp, q2r.x, matdyn.x     (dispersion/'s lock)
    q/<label>/common        ph.x only_wfc + irrep 0 in q_<label>/       (q_<label>/'s lock)
    q/<label>/pattern/<p>   pattern p in its own copy of q's ph.x state (q_<label>/pattern<p>/'s lock)
    q/<label>/gather        every pattern's dynmat.1.<p>.xml into q's phsave, final ph.x → fildyn
    bands                   analysis of every q + bands.h5 and figures (dfptmag.jobs.bands)

This is QE's documented way to split irreps over jobs (PHonon/examples/GRID_example,
run_example_3): after the common part, each pattern task copies ``q_<label>/out`` into
``q_<label>/pattern<p>/out``, runs ph.x with ``recover``, ``start_irr = last_irr = p`` there with
its δψ captured into ``q_<label>/capture`` (hard links, :mod:`.capture`), keeps only ph.x's record
of the irrep (``pattern<p>/dynmat.1.<p>.xml``) and deletes the copy. The gather copies those
records into ``q_<label>/out/_ph0/<prefix>.phsave`` and runs the final ph.x that writes fildyn.

The markers are the runner's (:mod:`.runner`), in the q directory, with the runner's hashes:
``q_<label>/ph.irr<p>.done`` is written by the pattern task, ``ph.final.done`` by the gather, so a
run made by the sequential runner counts as done for the tasks and the other way round. A task
first checks (check-only runner: nothing runs, nothing is written) that the tasks it depends on
are done, and stops with :class:`DependencyNotDone` otherwise; a task whose own marker is
current does nothing. Manifest updates of pattern tasks running side by side are serialized by
a blocking lock on ``q_<label>/.dfptmag-manifest.lock``.

The plan (q-points, patterns, band options, per-stage process counts and launcher) is written
once per submission to ``<run dir>/tasks/plan.json``; a task is then a function of (workflow,
run directory, task id) only.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import functools
import json
import os
import re
import shutil
import time
from pathlib import Path

from ..atomic import copy_file, write_text
from ..errors import DfptmagError
from ..io.qrun_dir import read_manifest, record_capture, write_manifest
from . import capture, config, locks
from .runner import NotDone, Runner

TASKS_DIR = "tasks"
STAGES = ("prepare", "dispersion", "common", "pattern", "gather", "bands")


class DependencyNotDone(DfptmagError):
    """A task was started before the tasks it needs had finished."""


@dataclasses.dataclass
class Plan:
    workflow: str                       # workflow TOML (absolute)
    run_dir: str                        # absolute
    qpoints: dict                       # label -> crystal coordinates, path order
    patterns: list                      # pattern numbers (all 3·nat)
    dispersion_q: list | None = None    # matdyn.x's q list (crystal), None: no dispersion
    nproc: dict = dataclasses.field(default_factory=dict)   # stage -> MPI processes (pools)
    launcher: list | None = None        # words with {nproc}; None: [parallel] mpirun
    bands: dict = dataclasses.field(default_factory=dict)   # options of the bands task (jobs layer)
    storage: dict = dataclasses.field(default_factory=dict)  # {"discard_dwf": bool, "keep_scratch": bool}

    def save(self) -> Path:
        path = Path(self.run_dir) / TASKS_DIR / "plan.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(dataclasses.asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, run_dir) -> "Plan":
        path = Path(run_dir).resolve() / TASKS_DIR / "plan.json"
        if not path.is_file():
            raise DfptmagError(f"{path}: no task plan here; start with 'dfptmag bands WORKFLOW "
                               "--engine slurm|local --run-dir DIR'")
        return cls(**json.loads(path.read_text()))


@dataclasses.dataclass
class Task:
    """What an engine needs to know: id, stage, the ids it waits for, processes, working
    directory (relative to the run directory), and a key: tasks with the same key and the same
    dependencies may go into one job array."""
    id: str
    stage: str
    deps: list
    nproc: int
    workdir: str
    array_key: str


def graph(plan: Plan) -> list[Task]:
    """Every task of the plan, in an order that respects the dependencies."""
    npr = lambda st: int(plan.nproc.get(st, plan.nproc.get("default", 1)))  # noqa: E731
    out = [Task("prepare", "prepare", [], npr("prepare"), ".", "prepare")]
    if plan.dispersion_q is not None:
        out.append(Task("dispersion", "dispersion", ["prepare"], npr("dispersion"), "dispersion", "dispersion"))
    gathers = []
    for label in plan.qpoints:
        out.append(Task(f"q/{label}/common", "common", ["prepare"], npr("common"), f"q_{label}", "common"))
    for label in plan.qpoints:
        pats = [Task(f"q/{label}/pattern/{p}", "pattern", [f"q/{label}/common"], npr("pattern"),
                     f"q_{label}/pattern{p}", f"pattern:{label}") for p in plan.patterns]
        out += pats
        gathers.append(Task(f"q/{label}/gather", "gather", [t.id for t in pats], npr("gather"),
                            f"q_{label}", f"gather:{label}"))
    out += gathers
    out.append(Task("bands", "bands", [t.id for t in gathers] + (["dispersion"] if plan.dispersion_q is not None else []),
                    1, ".", "bands"))
    return out


def parse_id(task_id: str) -> tuple[str, str | None, int | None]:
    """'q/K/pattern/3' → ('pattern', 'K', 3); 'prepare' → ('prepare', None, None)."""
    if task_id in ("prepare", "dispersion", "bands"):
        return task_id, None, None
    m = re.fullmatch(r"q/(.+)/(common|gather)", task_id)
    if m:
        return m.group(2), m.group(1), None
    m = re.fullmatch(r"q/(.+)/pattern/(\d+)", task_id)
    if m:
        return "pattern", m.group(1), int(m.group(2))
    raise DfptmagError(f"task id {task_id!r}: expected prepare, dispersion, bands, q/<label>/common, "
                       "q/<label>/pattern/<p> or q/<label>/gather")


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> config.Workflow:
    return config.load(path)


def runner_for(plan: Plan, stage: str, check_only: bool = False, contract=None) -> Runner:
    wf = copy.deepcopy(_load(plan.workflow, os.stat(plan.workflow).st_mtime))   # status checks every task
    n = plan.nproc.get(stage, plan.nproc.get("default"))
    if n is not None:
        wf.nproc = wf.npool = int(n)
    r = Runner(wf, plan.run_dir, progress=False, check_only=check_only, launcher=plan.launcher)
    if plan.storage.get("discard_dwf"):
        r.contract = contract
        r.keep_scratch = bool(plan.storage.get("keep_scratch"))
    return r


def _qpoint(plan: Plan, label: str) -> config.QPoint:
    if label not in plan.qpoints:
        raise DfptmagError(f"q-point {label!r} is not in the plan ({', '.join(plan.qpoints)})")
    import numpy as np
    return config.QPoint(label, np.array(plan.qpoints[label], dtype=float))


@contextlib.contextmanager
def manifest_lock(qdir: Path):
    """Blocking lock serializing manifest read-modify-writes of tasks sharing a q directory."""
    fd = os.open(qdir / ".dfptmag-manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _needs(what: str, fn):
    try:
        return fn()
    except NotDone as exc:
        raise DependencyNotDone(f"{what} is not done ({exc}); it must finish first") from None


def _scf_hash(chk: Runner) -> tuple[dict, str]:
    names = _needs("prepare", chk.upf_names)
    return names, _needs("prepare", lambda: chk.scf(names))


def _common_hash(chk: Runner, plan: Plan, label: str) -> tuple[str, dict]:
    _, h = _scf_hash(chk)
    work = chk.run_dir / f"q_{label}"
    return _needs(f"q/{label}/common", lambda: chk.q_common(work, _qpoint(plan, label), h))


# -- the tasks -----------------------------------------------------------------------------------
def do_prepare(plan: Plan) -> None:
    runner_for(plan, "prepare").prepare()


def do_dispersion(plan: Plan) -> None:
    chk = runner_for(plan, "dispersion", check_only=True)
    names, _ = _scf_hash(chk)
    runner_for(plan, "dispersion").dispersion(names, plan.dispersion_q)


def do_common(plan: Plan, label: str) -> None:
    chk = runner_for(plan, "common", check_only=True)
    _, h = _scf_hash(chk)
    r = runner_for(plan, "common")
    work = r.run_dir / f"q_{label}"
    with locks.task(work):
        hc, _ = r.q_common(work, _qpoint(plan, label), h)
        if r.wf.timeodd is not None:          # the empty states join the q's common part
            r.empty_states(work, hc)


def copy_state(qdir: Path, pdir: Path, prefix: str) -> dict:
    """A fresh copy of q's ph.x state (``out/`` after irrep 0) for one pattern; returns the
    bytes copied and the seconds it took (also written to ``pdir/copy.json``)."""
    t0 = time.time()
    dst = pdir / "out"
    if dst.exists():
        shutil.rmtree(dst)
    skip = shutil.ignore_patterns(f"{prefix}.dwf*", f"{prefix}.recover*", f"{prefix}.restart_k*")
    shutil.copytree(qdir / "out", dst, ignore=skip)
    nbytes = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    info = {"bytes": nbytes, "seconds": round(time.time() - t0, 3)}
    write_text(pdir / "copy.json", json.dumps(info))
    return info


def do_pattern(plan: Plan, label: str, p: int, contract=None) -> None:
    chk = runner_for(plan, "pattern", check_only=True)
    h0, common = _common_hash(chk, plan, label)
    r = runner_for(plan, "pattern", contract=contract)
    prefix = r.wf.prefix
    qdir = r.run_dir / f"q_{label}"
    pdir = qdir / f"pattern{p}"

    def run_pattern(i, o):
        r._scratch_gone(qdir)
        copy_state(qdir, pdir, prefix)
        ph0 = pdir / "out" / "_ph0"
        capture.redo_irrep(ph0, prefix, p)           # after a gather the copy holds p's record
        capture.drop_restart_data(ph0, prefix)
        with manifest_lock(qdir):
            man = read_manifest(qdir)
            if str(p) in man.get("captures", {}):
                del man["captures"][str(p)]
                write_manifest(qdir, man)
        cmd = r._cmd("ph.x", str(qdir / i))
        dwf, drho = capture.captured_run(cmd, o, pdir, ph0, prefix, qdir / "capture", f"irr{p}", "drho")
        with manifest_lock(qdir):
            record_capture(qdir, p, dwf, drho, npool=capture.check_layout(cmd))
        # contract-and-discard: verified, written, recorded, and only then the δψ deleted
        r.contract_and_discard(qdir, p, ph0, lock=lambda: manifest_lock(qdir))
        piece = ph0 / f"{prefix}.phsave" / f"dynmat.1.{p}.xml"
        if not piece.is_file():
            raise DfptmagError(f"{piece}: ph.x wrote no record of irrep {p}; see {o}")
        copy_file(piece, pdir / piece.name)
        shutil.rmtree(pdir / "out")                  # the δψ stays in capture/ (hard links)

    with locks.task(pdir):
        r._step(qdir, f"ph.irr{p}", r.pattern_input(common, p), h0, run_pattern)


def do_gather(plan: Plan, label: str, contract=None) -> None:
    chk = runner_for(plan, "gather", check_only=True)
    h0, common = _common_hash(chk, plan, label)
    qdir = chk.run_dir / f"q_{label}"
    for p in plan.patterns:
        _needs(f"q/{label}/pattern/{p}", lambda p=p: chk._step(qdir, f"ph.irr{p}", chk.pattern_input(common, p),
                                                              h0, None))
    try:
        chk.final_step(qdir, common, h0, list(plan.patterns))
        with locks.task(qdir):                       # fildyn is current
            runner_for(plan, "gather", contract=contract).finish_q(qdir, list(plan.patterns))
        return
    except NotDone:
        pass
    r = runner_for(plan, "gather", contract=contract)
    prefix = r.wf.prefix
    phsave = qdir / "out" / "_ph0" / f"{prefix}.phsave"
    with locks.task(qdir):
        for p in plan.patterns:
            piece = qdir / f"pattern{p}" / f"dynmat.1.{p}.xml"
            if not piece.is_file():
                if (phsave / piece.name).is_file():
                    continue                         # made by the sequential runner in place
                raise DfptmagError(f"{piece}: missing although q/{label}/pattern/{p} is marked done; "
                                   f"delete {qdir / f'ph.irr{p}.done'} and resubmit to redo it")
            capture.redo_irrep(qdir / "out" / "_ph0", prefix, p)   # drop an older record, reset status
            copy_file(piece, phsave / piece.name)
        r.final_step(qdir, common, h0, list(plan.patterns))
        r.finish_q(qdir, list(plan.patterns))        # the scratch goes once all is contracted


def run_task(workflow, run_dir, task_id: str, contract=None) -> None:
    """Run one QE task of the plan in ``run_dir`` (idempotent: nothing happens when its
    markers are current). ``workflow`` must be the plan's workflow file. ``contract``: the
    contraction callable of a plan with ``storage.discard_dwf`` (given by the jobs layer, see
    :meth:`.runner.Runner.contract_and_discard`)."""
    plan = Plan.load(run_dir)
    if workflow is not None and Path(workflow).resolve() != Path(plan.workflow).resolve():
        raise DfptmagError(f"{workflow}: the plan in {run_dir} was made for {plan.workflow}")
    stage, label, p = parse_id(task_id)
    if stage == "prepare":
        do_prepare(plan)
    elif stage == "dispersion":
        if plan.dispersion_q is None:
            raise DfptmagError("this plan has no dispersion task")
        do_dispersion(plan)
    elif stage == "common":
        _qpoint(plan, label)
        do_common(plan, label)
    elif stage == "pattern":
        _qpoint(plan, label)
        if p not in plan.patterns:
            raise DfptmagError(f"pattern {p} is not in the plan ({plan.patterns})")
        do_pattern(plan, label, p, contract)
    elif stage == "gather":
        _qpoint(plan, label)
        do_gather(plan, label, contract)
    else:
        raise DfptmagError(f"{task_id}: not a QE task (the bands task is dfptmag.jobs.bands')")


def is_done(plan: Plan, task_id: str) -> bool:
    """Whether a QE task's markers are current (check-only: runs and writes nothing)."""
    stage, label, p = parse_id(task_id)
    chk = runner_for(plan, stage, check_only=True)
    try:
        if stage == "prepare":
            _scf_hash(chk)
        elif stage == "dispersion":
            names, _ = _scf_hash(chk)
            chk._dispersion(chk.run_dir / "dispersion", names, plan.dispersion_q, None)
        elif stage == "common":
            _common_hash(chk, plan, label)
        elif stage == "pattern":
            h0, common = _common_hash(chk, plan, label)
            chk._step(chk.run_dir / f"q_{label}", f"ph.irr{p}", chk.pattern_input(common, p), h0, None)
        elif stage == "gather":
            h0, common = _common_hash(chk, plan, label)
            chk.final_step(chk.run_dir / f"q_{label}", common, h0, list(plan.patterns))
        else:
            return False
    except (NotDone, DependencyNotDone):
        return False
    return True


def marker_seconds(run_dir, task_id: str) -> float | None:
    """The QE time a finished task's marker(s) recorded (for the dry run's cost estimate)."""
    stage, label, p = parse_id(task_id)
    base = Path(run_dir)
    names = {"prepare": ["scf/pw.scf.done"], "dispersion": ["dispersion/pw.scf.done", "dispersion/ph.grid.done"],
             "common": [f"q_{label}/ph.wfc.done", f"q_{label}/ph.irr0.done"],
             "pattern": [f"q_{label}/ph.irr{p}.done"], "gather": [f"q_{label}/ph.final.done"]}.get(stage, [])
    total, found = 0.0, False
    for n in names:
        try:
            total += float(json.loads((base / n).read_text())["seconds"])
            found = True
        except (OSError, ValueError, KeyError):
            pass
    return total if found else None
