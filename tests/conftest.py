"""Shared fixtures: one real tiny QE run (ld1.x, pw.x, ph.x at q = K and q = −K, all nine
patterns each), built once per test session in a temporary directory. Nothing is cached
between sessions: a fresh clone rebuilds everything.

For development only: with ``DFPTMAG_TEST_WORKDIR=/some/dir`` the pseudopotential cache and the
tiny run live in that directory and are reused by the next session (the runner's resume markers
skip every finished step, and redo exactly what a code change invalidates). CI never sets it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "workflows" / "wse2-tiny.toml"

needs_qe = pytest.mark.skipif(shutil.which("pw.x") is None or shutil.which("ph.x") is None,
                              reason="Quantum ESPRESSO (pw.x, ph.x) not installed")


def _session_dir(tmp_path_factory, name: str) -> Path:
    """A fresh temporary directory, or ``$DFPTMAG_TEST_WORKDIR/name`` kept between sessions."""
    import os
    keep = os.environ.get("DFPTMAG_TEST_WORKDIR")
    if keep:
        path = Path(keep) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp(name)


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
def analyzed(tiny_run):
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    _, dirs = tiny_run
    return {label: analyze_qrun(d, AnalysisOptions()) for label, d in dirs.items() if label != "G"}


@pytest.fixture(scope="session")
def analyzed_gamma(tiny_run):
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    _, dirs = tiny_run
    return analyze_qrun(dirs["G"], AnalysisOptions())


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


def done_markers(run_dir: Path) -> dict[str, str]:
    """Every step marker under a run directory: {relative path: content (hash + timestamps)}."""
    return {str(p.relative_to(run_dir)): p.read_text() for p in sorted(Path(run_dir).rglob("*.done"))}


@pytest.fixture(scope="session")
def band_run(tiny_run, tmp_path_factory):
    """The tiny band workflow on Γ–M–K (Γ, one point, M, K) plus its 3×3×1 interpolated
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
    args = dict(path="GMK", npoints=4, workers=2, nproc=1)
    cmd = [sys.executable, "-m", "dfptmag.cli", "bands", str(TINY), "--direct", "--path", "GMK", "--npoints", "4",
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
