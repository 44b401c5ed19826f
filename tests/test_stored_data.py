"""The stored real QE outputs of tests/data/ (what the fast tier reads) are what their provenance
says, and a fresh run of today's QE reproduces them.

* Fast tier: every stored file has the size and sha256 that tests/data/PROVENANCE.json recorded
  when tests/data/regenerate.py wrote it, and nothing else is stored beside them.
* QE tier (drift): this session's tiny run (the same workflow, ``tiny_run``) analysed against the
  stored analysis: bitwise on the QE build that wrote the data (QE 6.7's runs are reproducible
  to the last bit; the stored K and −K are contracted, whose analysis equals that of the δψ
  bitwise), and on another build within the scatter of ph.x's own fildrho between the two runs.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import CELL_INTEGRAL_PER_SCATTER, run_scatter
from datafiles import TINY_RUNS, data_path, provenance

# analysis results that are numbers of the run (timings, notes and versions are not)
COMPARED = ("pattern_cell_integral", "pattern_field", "frequency_ry", "eigenvector", "drho_relative_error")


def test_stored_files_match_their_provenance():
    prov = provenance()
    root = data_path("wse2-tiny")
    stored = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert stored == set(prov["files"]), sorted(stored ^ set(prov["files"]))
    for name, rec in prov["files"].items():
        blob = (root / name).read_bytes()
        assert len(blob) == rec["size"], name
        assert hashlib.sha256(blob).hexdigest() == rec["sha256"], name
    assert prov["workflow"] == "workflows/wse2-tiny.toml" and prov["qe"]["version"]
    assert {f"q_{label}" for label in TINY_RUNS} == set(prov["runs"])


def test_stored_workflow_is_todays():
    """The stored runs were made from the tiny workflow as it is now (else regenerate them)."""
    prov = provenance()
    blob = (data_path().parent.parent / prov["workflow"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == prov["workflow_sha256"], (
        "workflows/wse2-tiny.toml changed since tests/data was written: run tests/data/regenerate.py")


@pytest.mark.qe
@pytest.mark.parametrize("label", TINY_RUNS)
def test_fresh_run_reproduces_stored_analysis(tiny_run, stored_runs, label):
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    _, dirs = tiny_run
    fresh = analyze_qrun(dirs[label], AnalysisOptions())
    stored = analyze_qrun(stored_runs[label], AnalysisOptions())
    keys = [k for k in COMPARED if k in stored]
    assert "pattern_field" in keys and "pattern_cell_integral" in keys
    assert list(fresh["pattern_index"]) == list(stored["pattern_index"])
    same_build = fresh["qe_version"] == provenance()["qe"]["version"]
    if same_build:
        for k in keys:
            assert np.array_equal(np.asarray(fresh[k]), np.asarray(stored[k])), k
        return
    # another build: fields move as ph.x's own fildrho does between the two runs
    scatter = run_scatter(dirs[label], stored_runs[label], list(stored["pattern_index"]), stored["fft_grid"])
    f, s = np.asarray(fresh["pattern_field"]), np.asarray(stored["pattern_field"])
    field = float(np.max(np.abs(f - s)) / np.max(np.abs(s)))
    ci_f, ci_s = np.asarray(fresh["pattern_cell_integral"]), np.asarray(stored["pattern_cell_integral"])
    ci = float(np.max(np.abs(ci_f - ci_s)) / np.max(np.abs(ci_s)))
    print(f"{label}: QE {fresh['qe_version']} vs stored {provenance()['qe']['version']}: fildrho scatter "
          f"{scatter:.1e}, fields {field:.1e}, cell integrals {ci:.1e}")
    assert field <= 3 * scatter + 1e-12
    assert ci <= CELL_INTEGRAL_PER_SCATTER * scatter + 1e-12
