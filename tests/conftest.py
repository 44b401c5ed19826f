"""Shared fixtures: one real tiny QE run (ld1.x, pw.x, ph.x at q = K and q = −K, all nine
patterns each), built once per test session in a temporary directory. Nothing is cached
between sessions: a fresh clone rebuilds everything."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "workflows" / "wse2-tiny.toml"

needs_qe = pytest.mark.skipif(shutil.which("pw.x") is None or shutil.which("ph.x") is None,
                              reason="Quantum ESPRESSO (pw.x, ph.x) not installed")


@pytest.fixture(scope="session")
def qe_cache(tmp_path_factory):
    import os
    cache = tmp_path_factory.mktemp("cache")
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
    run_dir = tmp_path_factory.mktemp("wse2_tiny")
    runner = Runner(wf, run_dir, progress=False)
    qs = [config.parse_q("K", "test"), config.parse_q("-K", "test")]
    dirs = runner.run(qs, None)
    gamma = runner.run([config.parse_q("G", "test")], [3, 9])[0]
    return runner, {"K": dirs[0], "-K": dirs[1], "G": gamma}


@pytest.fixture(scope="session")
def analyzed(tiny_run):
    from dfptmag.analysis import AnalysisOptions, analyze_qrun
    _, dirs = tiny_run
    return {label: analyze_qrun(d, AnalysisOptions()) for label, d in dirs.items() if label != "G"}


@pytest.fixture(scope="session")
def analyzed_gamma(tiny_run):
    from dfptmag.analysis import AnalysisOptions, analyze_qrun
    _, dirs = tiny_run
    return analyze_qrun(dirs["G"], AnalysisOptions())
