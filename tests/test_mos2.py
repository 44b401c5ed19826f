"""A second material: the tiny monolayer-MoS2 workflow (workflows/mos2-tiny.toml: its own
structure and ld1.x inputs) run with ``dfptmag run`` at K (all patterns) and independently at
−K (a subset of patterns, to keep the QE time small), checked against ph.x's own induced charge,
ph.x's frequencies and the exact time-reversal law, as WSe2 is in test_oracles.py."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, _session_dir

pytestmark = pytest.mark.qe

MOS2 = ROOT / "workflows" / "mos2-tiny.toml"
MINUS_K_PATTERNS = [3, 4]              # Mo z, S1 x: out-of-plane and in-plane, both species


@pytest.fixture(scope="module")
def mos2(tmp_path_factory, qe_cache):
    """`dfptmag run` at K (CLI: QE, analysis, dfptmag.h5, snapshots) and the runner at −K."""
    if shutil.which("pw.x") is None:
        pytest.skip("Quantum ESPRESSO not installed")
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    run_dir = _session_dir(tmp_path_factory, "mos2_tiny")
    cli = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", str(MOS2), "--q", "K",
                          "--run-dir", str(run_dir), "--quiet"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr[-3000:]
    runner = Runner(config.load(MOS2), run_dir, progress=False)
    mk = runner.run([config.parse_q("-K", "test")], MINUS_K_PATTERNS)[0]
    opts = AnalysisOptions()
    return {"run_dir": run_dir, "stdout": cli.stdout, "K": analyze_qrun(run_dir / "q_K", opts),
            "-K": analyze_qrun(mk, opts)}


def test_mos2_pseudopotentials_pass_the_checks(mos2):
    """ld1.x's UPFs (generated and checked by the pseudo module: spin-orbit data, norm-conserving,
    no ghost in the Bessel-basis test) and the structure as written in the pw.x input."""
    from dfptmag.io.upf import read_upf_header
    for el in ("Mo", "S"):
        head = read_upf_header(mos2["run_dir"] / "pseudo" / f"{el}.rel-pbe-nc.UPF")
        assert head["has_so"] and head["pseudo_type"] == "NC"
    text = (mos2["run_dir"] / "scf" / "pw.scf.in").read_text()
    assert "Mo " in text and "S " in text and "lspinorb" in text


@pytest.mark.parametrize("label", ["K", "-K"])
def test_mos2_charge_channel_matches_phx_fildrho(mos2, label):
    r = mos2[label]
    n = 9 if label == "K" else len(MINUS_K_PATTERNS)
    assert r["drho_relative_error"].shape == (n,)
    assert np.all(r["drho_relative_error"] <= 1e-6), r["drho_relative_error"]
    assert np.all(r["drho_g0_relative_error"] <= 1e-6), r["drho_g0_relative_error"]
    assert np.max(np.abs(r["pattern_cell_integral"][:, 0])) > 0.1


def test_mos2_frequencies_match_phx(mos2):
    """Our diagonalisation of ph.x's dynamical matrix equals ph.x's frequencies to 1e-3 cm⁻¹.
    The tiny 2×2 k, 20 Ry run is not converged: its four lowest modes at K are imaginary
    (−190 to −120 cm⁻¹; docs/howto-new-material.md), so only the highest optical mode is held to a physical range
    (MoS2 at K: optical modes up to ~470 cm⁻¹, above WSe2's ~250)."""
    r = mos2["K"]
    from dfptmag.kernel.modes import ry_to_cm1
    ours = ry_to_cm1(r["frequency_ry"])
    assert np.max(np.abs(ours - r["fildyn_freq_cm1"])) <= 1e-3
    assert 300 < ours.max() < 500, ours


def test_mos2_time_reversal(mos2):
    """δm(−q) = −conj δm(q), δn(−q) = conj δn(q) for the patterns run at both K and −K, with the
    tolerances of the WSe2 test (ph.x's charge residual as the yardstick)."""
    a = mos2["K"]["pattern_cell_integral"][np.array(MINUS_K_PATTERNS) - 1]
    b = mos2["-K"]["pattern_cell_integral"]
    res_n = np.abs(b[:, 0] - a[:, 0].conj())
    res_m = np.abs(b[:, 1:] + a[:, 1:].conj()).max(axis=1)
    eps_n = res_n.max()
    assert eps_n <= 1e-4 * np.abs(a[:, 0]).max()
    assert np.all(res_m <= 10 * eps_n + 1e-9), (res_m, eps_n)
    assert np.abs(a[:, 1:]).max() > 1e3 * res_m.max()
    assert np.abs(b[:, 1:] - a[:, 1:].conj()).max() > 1e-3 * np.abs(a[:, 1:]).max()
    fa = mos2["K"]["pattern_field"][np.array(MINUS_K_PATTERNS) - 1]
    fb = mos2["-K"]["pattern_field"]
    scale = np.abs(fa[:, 0]).max()
    assert np.abs(fb[:, 1:] + fa[:, 1:].conj()).max() <= 1e-4 * scale


def test_mos2_mirror_selection_rule_and_snapshot(mos2):
    """σ_h: modes in which Mo moves out of plane carry in-plane δm, modes in which Mo moves in
    plane carry δm_z. `dfptmag run` drew the strongest modes in the Mo plane (the default)."""
    from dfptmag.plot.snapshot import snapshot_figure
    from dfptmag.analysis.snapshot import load, metal_symbol, plane_index
    from dfptmag.jobs.snapshot import strongest_modes
    r = mos2["K"]
    U, ci = r["displacement_bohr"], r["mode_cell_integral"]
    mo = U[:, 0, :]
    mo_out = np.abs(mo[:, 2]) > 10 * np.linalg.norm(mo[:, :2], axis=1)
    mo_in = np.linalg.norm(mo[:, :2], axis=1) > 10 * np.abs(mo[:, 2])
    inplane, outp = np.linalg.norm(ci[:, 1:3], axis=1), np.abs(ci[:, 3])
    assert mo_out.any() and mo_in.any()
    assert np.all(inplane[mo_out] > 100 * outp[mo_out])
    assert np.all(outp[mo_in] > 100 * inplane[mo_in])

    h5 = mos2["run_dir"] / "dfptmag.h5"
    snaps = sorted((mos2["run_dir"] / "snapshots").glob("snapshot_K_mode*_t0.000.png"))
    assert len(snaps) >= 1
    mode = strongest_modes(h5, "K")["inplane"]
    amp = load(h5, "K", mode=mode)
    assert metal_symbol(amp.symbols) == "Mo"
    fig, d = snapshot_figure(amp)
    assert d["plane_index"] == plane_index(amp, "Mo") == 0
    assert np.abs(d["comp"][1:3]).max() > 0
