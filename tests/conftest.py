"""Shared fixtures, in two tiers.

* Fast tier (no QE): real QE outputs stored under tests/data/ (tests/data/regenerate.py writes
  them; tests/data/PROVENANCE.json says with which QE, workflow and command). ``stored_runs``
  copies them to a temporary folder; ``analyzed`` and ``analyzed_gamma`` are their analyses.
* QE tier (``@pytest.mark.qe``): one real tiny QE run (ld1.x, pw.x, ph.x at q = K and q = −K,
  all nine patterns each, Γ patterns 3 and 9), built once per test session in a temporary
  directory (``tiny_run``; ``analyzed_run`` is its analysis), and the band, grid and interpolated
  runs built from it. Nothing is cached between sessions: a fresh clone rebuilds everything.

A guard enforces the marker: while a test without ``qe`` is set up, run or torn down, pw.x,
ph.x, ld1.x, q2r.x, matdyn.x and the MPI launchers on PATH and in ``$DFPTMAG_QE_BIN`` are
programs that only record that they were started and fail, and any subprocess started in-process
with one of the machine's QE binaries is recorded too; the test then fails, naming the program.

For development only: with ``DFPTMAG_TEST_WORKDIR=/some/dir`` the pseudopotential cache and the
tiny run live in that directory and are reused by the next session (the runner's resume markers
skip every finished step, and redo exactly what a code change invalidates). CI never sets it."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from datafiles import TINY_RUNS, tiny_qrun

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "workflows" / "wse2-tiny.toml"

needs_qe = pytest.mark.skipif(shutil.which("pw.x") is None or shutil.which("ph.x") is None,
                              reason="Quantum ESPRESSO (pw.x, ph.x) not installed")

# -- the qe-marker guard -------------------------------------------------------------------------
QE_PROGRAMS = ("pw.x", "ph.x", "ld1.x", "q2r.x", "matdyn.x")
MPI_LAUNCHERS = ("mpirun", "mpiexec")
_GUARD_SCRIPT = """#!/bin/sh
echo "$0 $*" >> "{log}"
echo "$(basename "$0"): started by a test without the qe marker (tests/conftest.py guard)" >&2
exit 97
"""


def _known_qe_binaries() -> set[str]:
    """Real paths of the QE programs this machine has: on PATH, in $DFPTMAG_QE_BIN, and the
    builds unpacked by install.sh under .qe/<version>/."""
    found = set()
    folders = [os.environ.get("DFPTMAG_QE_BIN")] + os.environ.get("PATH", "").split(os.pathsep)
    folders += [str(p) for p in (ROOT / ".qe").glob("*")]
    for folder in filter(None, folders):
        for name in QE_PROGRAMS:
            exe = Path(folder) / name
            if exe.is_file():
                found.add(os.path.realpath(exe))
    return found


def _qe_in_argv(args, known: set[str]) -> str | None:
    """The first word of ``args`` that is one of the machine's QE programs (mpirun ... pw.x); a
    word named like one but elsewhere (a test's stand-in process) is not."""
    words = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args or [])
    for w in map(os.fsdecode, words):
        if os.path.basename(w) not in QE_PROGRAMS:
            continue
        exe = w if os.sep in w else shutil.which(w)
        if exe and os.path.realpath(exe) in known:
            return w
    return None


class _Guard:
    """PATH and $DFPTMAG_QE_BIN point at the recording programs; Popen records QE argv."""

    def __init__(self, folder: Path, known: set[str]):
        """``folder``: the session's recording programs (made once, in pytest_sessionstart);
        ``known``: the real QE binaries that an in-process Popen must not start."""
        self.folder = folder
        self.known = known
        self.log = folder / "started.log"
        self.started: list[str] = []

    def __enter__(self):
        self.env = {k: os.environ.get(k) for k in ("PATH", "DFPTMAG_QE_BIN", "DFPTMAG_TEST_QE_GUARD")}
        os.environ["PATH"] = f"{self.folder}{os.pathsep}{os.environ.get('PATH', '')}"
        os.environ["DFPTMAG_QE_BIN"] = str(self.folder)
        os.environ["DFPTMAG_TEST_QE_GUARD"] = str(self.folder)
        self.log.unlink(missing_ok=True)
        self.popen = subprocess.Popen.__init__
        guard = self

        def init(proc, args, *a, **kw):
            hit = _qe_in_argv(args, guard.known)
            if hit:
                guard.started.append(hit)
            return guard.popen(proc, args, *a, **kw)
        subprocess.Popen.__init__ = init
        return self

    def __exit__(self, *exc):
        subprocess.Popen.__init__ = self.popen
        for k, v in self.env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return False

    def verdict(self) -> str | None:
        started = self.started + (self.log.read_text().split("\n") if self.log.is_file() else [])
        names = sorted({os.path.basename(w.split()[0]) for w in started if w.strip()})
        return (f"started {', '.join(names)} without the qe marker: mark the test "
                "@pytest.mark.qe, or use the stored runs of tests/data") if names else None


def real_program(name: str) -> str | None:
    """``shutil.which(name)``, unless what it finds is the guard's stand-in (for tests that need a
    real MPI launcher without running QE)."""
    exe = shutil.which(name)
    guard = os.environ.get("DFPTMAG_TEST_QE_GUARD")
    return None if exe is None or (guard and Path(exe).parent == Path(guard)) else exe


def _guarded(item):
    if item.get_closest_marker("qe") is not None:
        return None
    return _Guard(item.session._qe_guard_folder, item.session._qe_binaries)


def pytest_sessionstart(session):
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="dfptmag-qe-guard-"))
    # MPI launchers too where the machine has none (often so without QE): dfptmag starts them
    # only to run QE, and a workflow's [parallel] mpirun would otherwise fail validation
    for name in QE_PROGRAMS + tuple(m for m in MPI_LAUNCHERS if shutil.which(m) is None):
        exe = folder / name
        exe.write_text(_GUARD_SCRIPT.format(log=folder / "started.log"))
        exe.chmod(0o755)
    session._qe_guard_folder = folder
    session._qe_binaries = _known_qe_binaries()


def pytest_sessionfinish(session):
    shutil.rmtree(getattr(session, "_qe_guard_folder", ""), ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _run_guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _run_guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _run_guarded(item))


def _run_guarded(item):
    guard = _guarded(item)
    if guard is None:
        return (yield)
    try:
        with guard:
            result = yield
    except Exception:
        why = guard.verdict()
        if why:                   # the QE program's refusal is the symptom: name the cause
            pytest.fail(f"{item.nodeid}: {why}", pytrace=False)
        raise
    why = guard.verdict()
    if why:
        pytest.fail(f"{item.nodeid}: {why}", pytrace=False)
    return result


def _session_dir(tmp_path_factory, name: str) -> Path:
    """A fresh temporary directory, or ``$DFPTMAG_TEST_WORKDIR/name`` kept between sessions."""
    keep = os.environ.get("DFPTMAG_TEST_WORKDIR")
    if keep:
        path = Path(keep) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp(name)


# -- fast tier: stored real runs -----------------------------------------------------------------
@pytest.fixture(scope="session")
def stored_runs(tmp_path_factory):
    """{label: q-run dir} of the stored tiny run (K, −K: contracted; G: raw δψ of patterns 3 and
    9), copied to a temporary folder so that a test may damage its copy."""
    root = tmp_path_factory.mktemp("stored")
    return {label: Path(shutil.copytree(tiny_qrun(label), root / f"q_{label}")) for label in TINY_RUNS}


def _analyses_at_k(dirs: dict) -> dict:
    """{K, -K: analysis result} of a tiny run's q-run dirs (Γ has too few patterns for modes)."""
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    return {label: analyze_qrun(d, AnalysisOptions()) for label, d in dirs.items() if label != "G"}


@pytest.fixture(scope="session")
def analyzed(stored_runs):
    """{K, -K: analysis result} of the stored tiny run (no QE)."""
    return _analyses_at_k(stored_runs)


@pytest.fixture(scope="session")
def analyzed_gamma(stored_runs):
    """The analysis of the stored Γ q-run (patterns 3 and 9; no QE)."""
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    return analyze_qrun(stored_runs["G"], AnalysisOptions())


@pytest.fixture(scope="session")
def qe_cache(tmp_path_factory):
    import os
    cache = _session_dir(tmp_path_factory, "cache")
    old = os.environ.get("DFPTMAG_CACHE")
    os.environ["DFPTMAG_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DFPTMAG_CACHE", None)
    else:
        os.environ["DFPTMAG_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, qe_cache):
    """Run the tiny workflow at K and −K (all patterns) and at Γ (patterns 3 and 9);
    return (runner, {label: q-run dir})."""
    if shutil.which("pw.x") is None:
        pytest.skip("Quantum ESPRESSO not installed")
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    wf = config.load(TINY)
    run_dir = _session_dir(tmp_path_factory, "wse2_tiny")
    runner = Runner(wf, run_dir, progress=False)
    qs = [config.parse_q("K", "test"), config.parse_q("-K", "test")]
    dirs = runner.run(qs, None)
    gamma = runner.run([config.parse_q("G", "test")], [3, 9])[0]
    return runner, {"K": dirs[0], "-K": dirs[1], "G": gamma}


@pytest.fixture(scope="session")
def analyzed_run(tiny_run):
    """{K, -K: analysis result} of this session's tiny run (QE tier: for comparisons with other
    runs of the same session's QE build)."""
    return _analyses_at_k(tiny_run[1])


def phx_drho(qdir: Path, pattern: int, grid):
    """ph.x's own fildrho record of ``pattern`` in a q-run (the capture's copy, as the manifest
    names it) on the FFT grid ``grid``: the gauge of a QE build's run-to-run scatter, since two
    separate ph.x runs of one build differ in their own fildrho exactly as much as they differ."""
    import json

    from dfptmag.io.qe_grid import read_grid_record
    man = json.loads((Path(qdir) / "dfptmag-q.json").read_text())
    cap = man["captures"][str(pattern)]
    if cap.get("contracted"):           # δψ discarded: the contracted file keeps ph.x's record
        import h5py
        with h5py.File(Path(qdir) / cap["contracted"]["file"]) as f:
            return f["fildrho"][list(f["pattern_id"][()]).index(pattern - 1)]
    return read_grid_record(Path(qdir) / cap["drho"], pattern, tuple(grid))[0]


# How much more a pattern's cell integral (a G = 0 sum that cancels to ~1e-2 of its terms) moves
# between two runs than its field, relative to the scatter of ph.x's own fildrho: measured
# 14–37 on QE 6.7 and 5–39 on 7.4.1 (tests/test_user_runs.py prints both). Fields move exactly as
# ph.x's fildrho does (ratio 1.00).
CELL_INTEGRAL_PER_SCATTER = 100


def run_scatter(qdir_a: Path, qdir_b: Path, patterns, grid) -> float:
    """max over ``patterns`` of ‖drho_a − drho_b‖∞ / ‖drho_b‖∞ between two q-runs (ph.x's own)."""
    import numpy as np
    out = 0.0
    for p in patterns:
        a, b = phx_drho(qdir_a, p, grid), phx_drho(qdir_b, p, grid)
        out = max(out, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    return out


def contract_captures(qdir: Path) -> dict:
    """What the runner does after each pattern (contract against fildrho, record, delete δψ),
    for every captured irrep of a q-run: returns {irrep: manifest record}."""
    from dfptmag.analysis.contract import contract_irrep
    from dfptmag.io.qrun_dir import read_manifest, record_contraction
    from dfptmag.workflow import capture
    recs = {}
    for irr in sorted(int(k) for k in read_manifest(qdir)["captures"]):
        recs[irr] = contract_irrep(qdir, irr)
        record_contraction(qdir, irr, recs[irr])
        capture.discard_dwf(qdir, irr)
    return recs


def done_markers(run_dir: Path) -> dict[str, str]:
    """Every step marker under a run directory: {relative path: content (hash + timestamps)}."""
    return {str(p.relative_to(run_dir)): p.read_text() for p in sorted(Path(run_dir).rglob("*.done"))}


@pytest.fixture(scope="session")
def band_run(tiny_run, tmp_path_factory):
    """The tiny band workflow on Γ–M–K (its three corners) plus its 3×3×1 interpolated
    dispersion, two q-points at a time with one process each. It starts from a copy of the tiny
    run (scf and K already done) and is stopped with SIGTERM (what a batch scheduler sends; SIGINT
    may be ignored in background jobs) after three more QE steps finish, then resumed in-process. Returns a dict with the markers before/after the interrupt,
    the exit code, the resumed BandsRun and the bands.h5 contents."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from dfptmag.results.bandsfile import read
    from dfptmag.jobs.bands import run_bands
    runner, _ = tiny_run
    run_dir = tmp_path_factory.mktemp("bands") / "run"
    shutil.copytree(runner.run_dir, run_dir, ignore=shutil.ignore_patterns("q_G", "q_-K"))
    before = done_markers(run_dir)
    args = dict(path="GMK", npoints=3, workers=2, nproc=1)
    cmd = [sys.executable, "-m", "dfptmag.cli", "bands", str(TINY), "--direct", "--path", "GMK", "--npoints", "3",
           "--workers", "2", "--nproc", "1", "--run-dir", str(run_dir), "--quiet", "--format", "png"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    t0 = time.time()
    while proc.poll() is None and len(done_markers(run_dir)) < len(before) + 3 and time.time() - t0 < 900:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    interrupted = done_markers(run_dir)
    result = run_bands(TINY, run_dir=run_dir, progress=False, figures=("png",), **args)
    return {"before": before, "interrupted": interrupted, "returncode": proc.returncode,
            "stderr": err.decode(errors="replace"), "result": result, "bands": read(result.output),
            "run_dir": run_dir, "args": args}


class _Results(dict):
    """{label: analysis result}, with the run directory as ``.run_dir``."""


@pytest.fixture(scope="session")
def grid_run(tiny_run, band_run, tmp_path_factory):
    """The tiny run extended to the 3×3×1 grid's irreducible q-points (Γ with all nine patterns,
    K from the tiny run, (1/3, 0, 0)) plus M, a q-point off that grid (interpolation check).
    Starts from a copy of the tiny run (scf, K, −K) and of the band run's Γ and M (all patterns,
    same scf, so their markers hold); only (1/3, 0, 0) is new: about 2 minutes of QE on 2 cores.
    Returns {label: analysis result with fields} for G, K, -K, (1/3,0,0), M (``.run_dir``: where)."""
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    runner, dirs = tiny_run
    run_dir = _session_dir(tmp_path_factory, "wse2_grid")
    if not (run_dir / "scf").is_dir():
        skip = shutil.ignore_patterns(".dfptmag.lock")
        shutil.copytree(runner.run_dir, run_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".dfptmag.lock", "q_G"))
        for label in ("G", "M"):
            shutil.copytree(band_run["run_dir"] / f"q_{label}", run_dir / f"q_{label}", ignore=skip)
    grid = Runner(runner.wf, run_dir, progress=False)
    labels = ["G", "0.333333333333333,0,0", "M", "K", "-K"]
    qdirs = grid.run([config.parse_q(q, "test") for q in labels], None)
    assert not {"q_G", "q_M"} & {Path(s).parent.name for s in grid.steps.ran}, grid.steps.ran
    out = _Results({d.name[2:]: analyze_qrun(d, AnalysisOptions()) for d in qdirs})
    out.run_dir = run_dir
    return out


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node Slurm (munged, slurmctld, slurmd) for this session, from tests/slurm_local.py;
    SLURM_CONF is set while it runs. Skipped where Slurm is not installed or we are not root.
    The node declares 4 CPUs (slurmd's config_overrides) on these 2-core machines, so that two
    2-process pattern tasks run at once: the pattern-parallel case, with the work per task unchanged."""
    from slurm_local import LocalSlurm, available
    why = available()
    if why:
        pytest.skip(why)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), cpus=4)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def interpolated_run(grid_run, band_run, tmp_path_factory):
    """A finished ``bands --interpolate`` result (bands.h5, grid.h5, dispersion/ and the q-runs in
    one run directory) from a copy of the grid run and the band run's dispersion: no pw.x/ph.x,
    only matdyn.x and the analysis. Returns the bands.h5 path."""
    from dfptmag.jobs.interpolate import run_interpolated_bands
    run = tmp_path_factory.mktemp("interpolated") / "run"
    skip = shutil.ignore_patterns(".dfptmag.lock")
    shutil.copytree(grid_run.run_dir, run, ignore=skip)
    shutil.copytree(band_run["run_dir"] / "dispersion", run / "dispersion", ignore=skip)
    r = run_interpolated_bands(TINY, run_dir=run, progress=False, figures=(), bz_points=0)
    assert r.steps_ran <= 1, r            # matdyn.x only
    return r.output
