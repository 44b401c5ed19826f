"""The workflow end to end: resumability, the capture command on a real ph.x run, the HDF5
schema, and the CLI."""
import subprocess
import sys

import h5py
import numpy as np
import os

import pytest

from dfptmag.results import qfile as results
from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
from dfptmag.io.qrun_dir import read_manifest
from dfptmag.workflow import capture, config
from dfptmag.workflow.runner import Runner



@pytest.mark.qe
def test_resume_runs_nothing_twice(tiny_run):
    runner, _ = tiny_run
    # scf + (wfc, irr0, 9 patterns, final) at K and −K + (wfc, irr0, 2 patterns) at Γ
    # (with a development DFPTMAG_TEST_WORKDIR some of them were already done: skipped; the
    # second run() of the fixture skips the scf once more)
    assert len(runner.steps.ran) + len(runner.steps.skipped) == 1 + 2 * 12 + 4 + 1
    if not os.environ.get("DFPTMAG_TEST_WORKDIR"):
        assert len(runner.steps.ran) == 1 + 2 * 12 + 4
    again = Runner(runner.wf, runner.run_dir, progress=False)
    again.run([config.parse_q("K", "t"), config.parse_q("-K", "t")], None)
    assert again.steps.ran == []
    assert len(again.steps.skipped) == 1 + 2 * 12
    again.run([config.parse_q("G", "t")], [3, 9])
    assert again.steps.ran == []


@pytest.mark.qe
def test_changed_input_redoes_dependent_steps(tiny_run, tmp_path):
    """Changing tr2_ph invalidates the q steps but not the scf (hash chain)."""
    runner, dirs = tiny_run
    import shutil
    run2 = tmp_path / "run2"
    shutil.copytree(runner.run_dir, run2, ignore=shutil.ignore_patterns("q_-K", "q_G"))
    wf = config.load(runner.wf.path)
    wf.ph = dict(wf.ph, tr2_ph=1e-13)
    r2 = Runner(wf, run2, progress=False)
    r2.run([config.parse_q("K", "t")], [3])
    assert "scf/pw.scf" in r2.steps.skipped
    assert r2.steps.ran == ["q_K/ph.wfc", "q_K/ph.irr0", "q_K/ph.irr3"]


@pytest.mark.qe
def test_capture_cli_on_user_command(tiny_run, tmp_path):
    """A user's own flow: pw.x outdir, their own ph.x only_wfc run, then one pattern through
    `dfptmag capture -- <their ph.x command line>`. The cell integrals equal the workflow's to
    ph.x's convergence (independent nscf and linear solve: gauge-invariant quantities)."""
    import shutil
    runner, dirs = tiny_run
    q = tmp_path / "user"
    q.mkdir()
    shutil.copytree(runner.run_dir / "scf" / "out" / "wse2.save", q / "out" / "wse2.save")
    shutil.copytree(runner.run_dir / "pseudo", tmp_path / "pseudo")     # pw.x's pseudo_dir='../pseudo'
    for name in ("ph.wfc.in", "ph.irr5.in"):
        shutil.copy(dirs["K"] / name, q / name)
    plain = subprocess.run(["mpirun", "-np", "2", "ph.x", "-nk", "2", "-in", "ph.wfc.in"], cwd=q,
                           capture_output=True, text=True, env=capture.qe_env())
    assert plain.returncode == 0 and "JOB DONE" in plain.stdout
    cmd = [sys.executable, "-m", "dfptmag.cli", "capture", "--dir", ".", "--",
           "mpirun", "-np", "2", "ph.x", "-nk", "2", "-in", "ph.irr5.in"]
    proc = subprocess.run(cmd, cwd=q, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    man = read_manifest(q)
    assert man["prefix"] == "wse2" and list(man["captures"]) == ["5"]
    assert np.allclose(man["q_tpiba"], read_manifest(dirs["K"])["q_tpiba"], atol=1e-12)
    r = analyze_qrun(q, AnalysisOptions(realspace=True))
    ref = analyze_qrun(dirs["K"], AnalysisOptions(realspace=False))
    assert list(r["pattern_index"]) == [5]
    scale = np.abs(ref["pattern_cell_integral"][4]).max()
    np.testing.assert_allclose(r["pattern_cell_integral"][0], ref["pattern_cell_integral"][4], rtol=0, atol=1e-5 * scale)
    assert r["drho_relative_error"][0] < 1e-6
    assert "mode_cell_integral" not in r and r["modes_missing_reason"] == "modes need all 9 patterns; 1 computed"


def test_hdf5_schema(analyzed, tmp_path):
    out = results.write(tmp_path / "r.h5", analyzed)
    with h5py.File(out) as f:
        assert "one-sided" in f.attrs["object"]
        g = f["q/K"]
        np.testing.assert_allclose(g["q_crystal"][()], [1 / 3, 1 / 3, 0], atol=1e-9)
        assert g["patterns/displacement"].shape == (9, 3, 3)
        assert g["patterns/cell_integral"].dtype == np.complex128
        assert g["patterns/cell_integral"].shape == (9, 4)
        assert g["modes/frequency_meV"].shape == (9,)
        assert g["modes/eigenvector"].shape == (9, 3, 3)
        assert g["modes/cell_integral"].shape == (9, 4)
        np.testing.assert_allclose(g["modes/rms"][()], np.abs(g["modes/cell_integral"][()]) / np.sqrt(2))
        assert g["checks/drho_relative_error"].shape == (9,)
        assert "zero-point" in g["modes"].attrs["amplitude"]
        assert g["modes/frequency_meV"].attrs["units"] == "meV"
        assert list(g["patterns/cell_integral"].attrs["units"]) == ["e/bohr", "muB/bohr", "muB/bohr", "muB/bohr"]
        # frequencies in meV and cm-1 agree: 1 meV = 8.0655 cm-1
        np.testing.assert_allclose(g["modes/frequency_cm1"][()] / g["modes/frequency_meV"][()], 8.065544, rtol=1e-5)


@pytest.mark.qe
def test_cli_analyze_and_help(tiny_run, tmp_path):
    runner, _ = tiny_run
    out = tmp_path / "a.h5"
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", "analyze", str(runner.run_dir), "-o", str(out),
                           "--no-field", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "max |ω(dfptmag) − ω(ph.x)|" in proc.stdout and "one-sided" in proc.stdout
    assert sorted(results.labels(out)) == ["-K", "G", "K"]
    for sub in ("run", "analyze", "capture"):
        h = subprocess.run([sys.executable, "-m", "dfptmag.cli", sub, "--help"], capture_output=True, text=True)
        assert h.returncode == 0 and "usage" in h.stdout
