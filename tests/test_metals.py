"""Metals (occupations = 'smearing'), checked against ph.x's own induced charge on real runs.

ph.x's δψ of a metal already carries the occupations (the metallic projector of de Gironcoli's
Sternheimer equation), its density sums ψ*δψ over the bands below ε_F + 3·degauss with the k
weight alone, and the δψ columns above that window are exact zeros; so Eq. 1 summed over every
band is ph.x's own sum and fildrho stays an exact oracle. At q = Γ ph.x adds the Fermi-energy
shift to the density and the matching term to δψ, so the oracle holds there too.

- bcc W (one atom, 4×4×4 k, Marzari-Vanderbilt 0.02 Ry), ph.x written by hand at a general q
  and at −q, every irrep through ``dfptmag capture``: the charge oracle on the FFT grid and at
  G = 0, ph.x's frequencies, and the time-reversal law δn(−q) = conj δn(q), δm(−q) = −conj δm(q)
  between the two independent runs.
- monolayer 1H-NbSe2 (a metal with the WSe2 structure; workflow written here from wse2-tiny's
  with smearing) at Γ through ``dfptmag run``, pattern 6 (a Se z displacement, which moves the
  Fermi level): the oracle with ph.x's Fermi shift, which ph.x reports non-zero.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT, TINY

qe = pytest.mark.qe

Q_TPIBA = np.array([0.125, 0.25, 0.375])          # a general q of bcc W, in 2π/a
PW_IN = """&control
  calculation = 'scf', prefix = 'w', outdir = 'scratch', pseudo_dir = '{pseudo}'
/
&system
  ibrav = 3, celldm(1) = 5.981, nat = 1, ntyp = 1, ecutwfc = 20.0,
  noncolin = .true., lspinorb = .true., nosym = .true., noinv = .true.,
  occupations = 'smearing', smearing = 'mv', degauss = 0.02
/
&electrons
  conv_thr = 1.0d-10, mixing_beta = 0.5
/
ATOMIC_SPECIES
W 183.84 W.rel-pbe-nc.UPF
ATOMIC_POSITIONS crystal
W 0.0 0.0 0.0
K_POINTS automatic
4 4 4 0 0 0
"""
PH_IN = """phonons of bcc W
&inputph
  prefix = 'w', outdir = 'scratch', tr2_ph = 1.0d-14, fildyn = 'w.dyn', {extra}
/
{q}
"""


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if os.geteuid() == 0:
        env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    return env


def _run(cmd, cwd, log=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env())
    if log:
        (cwd / log).write_text(p.stdout)
    assert p.returncode == 0, (cmd, p.stdout[-2000:], p.stderr[-2000:])
    return p


def _read(h5):
    with h5py.File(h5) as f:
        g = f["q"][list(f["q"])[0]]
        keys = ("patterns/cell_integral", "checks/drho_relative_error", "checks/drho_g0_relative_error",
                "checks/frequency_minus_phx_cm1")           # frequencies only with every pattern
        return {k: g[k][()] for k in keys if k in g}


@pytest.fixture(scope="module")
def tungsten(qe_cache, tmp_path_factory):
    """{'q', '-q': analysis of the hand-made bcc W run at that q} (one pw.x scf, copied)."""
    if shutil.which("pw.x") is None:
        pytest.skip("Quantum ESPRESSO not installed")
    from dfptmag.workflow import pseudo
    root = tmp_path_factory.mktemp("tungsten")
    upf = root / "upf"
    pseudo.generate(ROOT / "workflows" / "pseudo" / "W.rel-pbe-nc.ld1.in", upf)
    mpi = ["mpirun", "--oversubscribe", "-np", "2"]
    out = {}
    for label, q in (("q", Q_TPIBA), ("-q", -Q_TPIBA)):
        cell = root / f"w{label}"
        cell.mkdir()
        if label == "q":
            (cell / "scratch").mkdir()
            (cell / "scf.in").write_text(PW_IN.format(pseudo=upf))
            _run([*mpi, "pw.x", "-nk", "2", "-in", "scf.in"], cell, "scf.out")
        else:
            shutil.copytree(root / "wq" / "scratch", cell / "scratch", ignore=shutil.ignore_patterns("_ph0"))
        qline = " ".join(f"{v:.6f}" for v in q)
        (cell / "ph.wfc.in").write_text(PH_IN.format(extra="only_wfc = .true.", q=qline))
        _run([*mpi, "ph.x", "-nk", "2", "-in", "ph.wfc.in"], cell, "ph.wfc.out")
        for irr in (1, 2, 3):
            (cell / f"ph.irr{irr}.in").write_text(PH_IN.format(
                extra=f"recover = .true., start_irr = {irr}, last_irr = {irr}, fildrho = 'dvscf'", q=qline))
            _run([sys.executable, "-m", "dfptmag.cli", "capture", "--dir", ".", "--",
                  *mpi, "ph.x", "-nk", "2", "-in", f"ph.irr{irr}.in"], cell)
        _run([sys.executable, "-m", "dfptmag.cli", "analyze", ".", "-o", "res.h5", "--quiet"], cell)
        out[label] = _read(cell / "res.h5")
    return out


@qe
@pytest.mark.parametrize("label", ["q", "-q"])
def test_metal_charge_oracle_and_frequencies(tungsten, label):
    r = tungsten[label]
    print(f"bcc W at {label}: charge oracle {r['checks/drho_relative_error'].max():.1e} (grid), "
          f"{r['checks/drho_g0_relative_error'].max():.1e} (G = 0); "
          f"|ω − ω(ph.x)| ≤ {np.abs(r['checks/frequency_minus_phx_cm1']).max():.1e} cm⁻¹")
    assert r["checks/drho_relative_error"].shape == (3,)
    assert r["checks/drho_relative_error"].max() <= 1e-12          # measured 7.8e-16
    assert r["checks/drho_g0_relative_error"].max() <= 1e-12       # measured 2.9e-16
    assert np.abs(r["checks/frequency_minus_phx_cm1"]).max() <= 1e-3
    ci = r["patterns/cell_integral"]
    assert np.abs(ci[:, 1:]).max() > 1e-3 * np.abs(ci[:, 0]).max()   # a spin response, not noise


@qe
def test_metal_time_reversal(tungsten):
    """Two independent ph.x runs at q and −q: δn(−q) = conj δn(q), δm(−q) = −conj δm(q), the
    spin residual within 10× the charge's (the tolerance of the insulator test)."""
    a, b = tungsten["q"]["patterns/cell_integral"], tungsten["-q"]["patterns/cell_integral"]
    res_n = np.abs(b[:, 0] - a[:, 0].conj()).max()
    res_m = np.abs(b[:, 1:] + a[:, 1:].conj()).max()
    print(f"bcc W time reversal: charge {res_n:.1e}, spin {res_m:.1e}, spin scale {np.abs(a[:, 1:]).max():.1e}")
    assert res_n <= 1e-4 * np.abs(a[:, 0]).max()
    assert res_m <= 10 * res_n + 1e-9
    assert np.abs(a[:, 1:]).max() > 1e3 * res_m
    assert np.abs(b[:, 1:] - a[:, 1:].conj()).max() > 1e-3 * np.abs(a[:, 1:]).max()   # the sign matters


@qe
def test_metal_at_gamma_with_fermi_shift(qe_cache, tmp_path):
    """NbSe2 (a metal) at Γ, pattern 6 (Se z): ph.x shifts the Fermi level; 2 Tr δñ from δψ equals
    fildrho with that shift in it, and the charge response is neutral."""
    text = TINY.read_text().replace('"../structures/WSe2_monolayer.extxyz"', f'"{ROOT}/structures/NbSe2_monolayer.extxyz"')
    text = text.replace('W = "pseudo/W.rel-pbe-nc.ld1.in"', f'Nb = "{ROOT}/workflows/pseudo/Nb.rel-pbe-nc.ld1.in"')
    text = text.replace('= "pseudo/', f'= "{ROOT}/workflows/pseudo/').replace('prefix = "wse2"', 'prefix = "nbse2"')
    text = text.replace("[pw]\n", '[pw]\noccupations = "smearing"\nsmearing = "mv"\ndegauss_ry = 0.04\n')
    text = re.sub(r"kgrid = \[2, 2, 1\]", "kgrid = [3, 3, 1]", text)
    wf = tmp_path / "nbse2.toml"
    wf.write_text(text)
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", str(wf), "--q", "G", "--patterns", "6",
                        "--run-dir", str(run), "-o", str(run / "g.h5"), "--quiet", "--no-snapshots"],
                       capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr[-3000:]
    shifts = re.findall(r"Fermi energy shift \(Ry\) =\s+(\S+)", (run / "q_G" / "ph.irr6.out").read_text())
    assert shifts and abs(float(shifts[-1])) > 1e-3, shifts        # measured 3.7e-2 Ry per bohr
    r = _read(run / "g.h5")
    print(f"NbSe2 at Γ, pattern 6: Fermi shift {float(shifts[-1]):.2e} Ry; charge oracle "
          f"{r['checks/drho_relative_error'].max():.1e}; ∫δn {abs(r['patterns/cell_integral'][0, 0]):.1e}")
    assert r["checks/drho_relative_error"].max() <= 1e-12          # measured 7.6e-16
    assert abs(r["patterns/cell_integral"][0, 0]) <= 1e-10         # neutral (measured 1e-16)


def test_time_odd_refused_for_a_metal(tmp_path):
    """[timeodd] on a smeared workflow: exit 2, one line, before anything runs (no QE needed)."""
    text = TINY.read_text().replace('= "pseudo/', f'= "{ROOT}/workflows/pseudo/').replace(
        '"../structures/', f'"{ROOT}/structures/')
    text = text.replace("[pw]\n", '[pw]\noccupations = "smearing"\n') + '\n[timeodd]\nempty_bands = 10\n'
    wf = tmp_path / "metal.toml"
    wf.write_text(text)
    p = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", str(wf), "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True, env=_env())
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Fermi-surface" in p.stderr and not (tmp_path / "run").exists()
