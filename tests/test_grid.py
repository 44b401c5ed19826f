"""Symmetry of the response, selection rules and the interpolation of F_{κα}(q) from a q grid,
on real tiny ph.x runs (fixture ``grid_run``: Γ, K, −K, (1/3, 0, 0) and M, all nine patterns).

Selection rules (docs/theory.md, "Selection rules"): for every operation g of the crystal with
Rq = q EXACTLY (not up to a reciprocal vector: F(q + G) ≠ F(q)), the cell integrals of a mode of
parity p under g obey T_g F = p F, T_g = 1 ⊕ det R · R on [δn, δm] (δm axial). σ_h belongs to
every in-plane q; at Γ the whole D3h does, so only the E″ pair carries a cell integral."""
from __future__ import annotations

import numpy as np
import pytest

from dfptmag.analysis import grid as gi
from dfptmag.kernel import interpolation as ki
from dfptmag.kernel import symmetry as ks

pytestmark = pytest.mark.qe

THIRD = "0.3333_0.0000_0.0000"


def _ops(r):
    return gi.crystal_operations(r["cell_bohr"], r["positions_bohr"], r["symbols"])


def _sigma_h(ops):
    return next(op for op in ops if np.array_equal(op.W, np.diag([1, 1, -1])))


def test_gamma_selection_rules(grid_run):
    """At Γ only the σ_h-odd in-plane pair E″ (Se layers moving in-plane in antiphase, 21.5 meV in
    the tiny run) carries a cell integral, an in-plane δm; E′, A₁′, A₂″ carry nothing, and ∫δn = 0
    for every displacement (charge conservation). The amplitude is one-sided: time reversal
    maps q = 0 onto itself, δm_{−q}(r, t) = −δm_q(r, −t), so δm(t) must be odd in t, i.e. the
    amplitude purely imaginary — not zero. Measured (tiny run): E″ 5.98e-5 μB/cell RMS in-plane
    per mode; every other mode ≤ 1.3e-8 μB and ≤ 2.5e-7 e."""
    r = grid_run["G"]
    assert r["pattern_vectors"].shape == (9, 9)
    ci = r["pattern_cell_integral"]                    # per bohr: rows = Cartesian (κ, α)
    # per displacement: ∫δn = 0 (measured ≤ 3.3e-6 e/bohr), ∫δm_z = 0 (measured ≤ 1e-7 μB/bohr)
    assert np.abs(ci[:, 0]).max() <= 1e-5
    assert np.abs(ci[:, 3]).max() <= 1e-6
    # W (1-3) and the Se z displacements (6, 9): no in-plane δm either (measured ≤ 2.4e-7)
    assert np.abs(ci[[0, 1, 2, 5, 8], 1:3]).max() <= 1e-6
    # Se in-plane: δm = i χ ẑ × u for Se1, the opposite for Se2 (E″ = Se1 − Se2), χ purely imaginary
    z = np.array([0, 0, 1.0])
    chis = []
    for p, sign in ((3, 1), (4, 1), (6, -1), (7, -1)):
        u = np.eye(3)[p % 3]
        m = ci[p, 1:]
        zxu = np.cross(z, u)
        chi = np.vdot(zxu, m) * sign
        chis.append(chi)
        assert np.linalg.norm(m - sign * chi * zxu) <= 1e-3 * abs(chi)
    chis = np.array(chis)
    assert np.all(np.abs(chis.real) <= 1e-3 * np.abs(chis.imag))
    assert np.abs(chis - chis.mean()).max() <= 1e-4 * abs(chis.mean())
    assert 8e-4 <= abs(chis.mean()) <= 1e-3                   # measured |χ| = 9.017e-4 μB/bohr
    # modes: the E″ pair (σ_h-odd, no z motion) and nothing else
    ops = _ops(r)
    sh = _sigma_h(ops)
    U, mci = r["displacement_bohr"], r["mode_cell_integral"]
    freq_mev = r["frequency_ry"] * 13605.693122994
    eprime2 = []
    for n in range(len(U)):
        if freq_mev[n] <= 0:
            assert np.all(np.isnan(mci[n]))                  # no zero-point amplitude
            continue
        par = np.vdot(U[n], ks.transform_displacement(U[n], r["q_crystal"], sh)).real / np.vdot(U[n], U[n]).real
        if par < -0.99 and np.abs(U[n][:, 2]).max() < 1e-3 * np.abs(U[n]).max():
            eprime2.append(n)
    assert len(eprime2) == 2 and abs(freq_mev[eprime2[0]] - 21.46) < 0.05
    rin = r["mode_rms_inplane"]
    big = rin[eprime2].min()
    assert 5e-5 <= big <= 7e-5                                # measured 5.984e-5 μB per cell
    others = [n for n in range(len(U)) if n not in eprime2 and freq_mev[n] > 0]
    assert np.abs(mci[others, 1:]).max() <= 1e-3 * big        # measured ≤ 2.1e-4 of E″
    assert np.abs(mci[others + eprime2, 0]).max() <= 1e-6     # ∫δn, measured ≤ 2.5e-7 e


@pytest.mark.parametrize("label", ["K", "M", THIRD])
def test_little_group_rules(grid_run, label):
    """Away from Γ: for each g with Rq = q exactly and each non-degenerate mode of parity
    p = ±1 under g, T_g F = p F. σ_h everywhere: σ_h-odd modes carry only in-plane δm,
    σ_h-even modes only δn and δm_z. At M and (1/3, 0, 0) also the vertical mirror through Γ–M:
    the in-plane δm of a σ_h-odd mode is perpendicular to Γ–M if the mode is even under it,
    parallel if odd. At K the exact little group is {E, σ_h} only (C3 maps K to K + G, where F
    differs). Forbidden components, relative to ‖U_ν‖ × the largest cell integral of one
    Cartesian displacement at that q (same component), measured ≤ 3e-5 on QE 6.7 and ≤ 1.13e-4 on
    7.4.1 (ph.x precision)."""
    r = grid_run[label]
    q = r["q_crystal"]
    ops = [op for op in _ops(r) if np.allclose(op.q(q), q, atol=1e-8)]
    names = sorted(tuple(op.W.ravel()) for op in ops)
    assert len(ops) == (2 if label == "K" else 4), names
    U = r["displacement_bohr"]
    pat = np.abs(r["pattern_cell_integral"]).max(axis=0)      # per component, per bohr, this q
    groups = r["degenerate_group"]
    checked, worst, mixing = 0, [], []
    Fpat = r["pattern_cell_integral"].reshape(len(r["symbols"]), 3, 4)
    for op in ops:
        for n in range(len(U)):
            if np.sum(groups == groups[n]) > 1:
                continue
            gU = ks.transform_displacement(U[n], q, op)
            p = np.vdot(U[n], gU) / np.vdot(U[n], U[n])
            assert abs(abs(p) - 1) < 1e-4 and abs(p.imag) < 1e-4
            # ph.x's dynamical matrix mixes parities slightly (|p| − 1 is second order in the
            # admixture): take the part of definite parity, and bound what was dropped
            Up = 0.5 * (U[n] + np.sign(p.real) * gU)
            mixing.append(np.linalg.norm(U[n] - Up) / np.linalg.norm(U[n]))
            Fp = np.einsum("ka,kac->c", Up, Fpat)
            resid = np.abs(ks.transform_vector(Fp, op) - np.sign(p.real) * Fp)
            scale = np.linalg.norm(U[n]) * pat                # what one displacement gives
            worst.append((resid / scale).max())
            # ph.x's convergence noise (tr2_ph = 1e-14), not a law: measured ≤ 3e-5 on QE 6.7,
            # 1.13e-4 at M on 7.4.1; bound 2.5e-4 (a broken rule gives O(1))
            assert np.all(resid <= 2.5e-4 * scale), (op.W.tolist(), n, resid / scale)
            checked += 1
    assert checked >= len(U) * len(ops) - 2
    print(label, "worst forbidden / allowed-per-displacement:", max(worst), "parity mixing", max(mixing))
    assert max(mixing) <= 3e-3


def _cart(r):
    return gi.cartesian_fields(r)


def test_unfolding_matches_direct_runs(grid_run):
    """The response unfolded from K to −K by a proper rotation (C2′ about an in-plane axis), an
    improper operation (the vertical mirror σ_v) and time reversal alone equals the independent
    direct ph.x run at −K, field by field on the FFT grid (relative L2 over all 9 displacements ×
    4 components). Measured 1.4e-5, 1.6e-5, 1.4e-5 at the tiny run's tr2_ph = 1e-14: ph.x's
    convergence (time reversal alone is an exact law); with conv_thr = 1e-14 and tr2_ph = 1e-18
    the same comparison gives ≤ 1e-6 (docs/theory.md). Operations that land on −K + G (G ≠ 0: C3 and
    the other two mirrors) leave 4.7e-4 at both thresholds: ph.x's response at q and at q + G
    differ by that much at the tiny cutoff (M and −M ≡ M − b₁ in one run show the same 4.3e-4;
    see docs/theory.md), so they are held to 1e-3."""
    rK, rmK = grid_run["K"], grid_run["-K"]
    ops = _ops(rK)
    FK, FmK = _cart(rK), _cart(rmK)
    qK, qmK = rK["q_crystal"], rmK["q_crystal"]
    seen, shifted = set(), []
    for op in ops:
        for tr in (False, True):
            qp = op.q(qK) * (-1 if tr else 1)
            G = ks.equivalent(qmK, qp)
            if G is None:
                continue
            _, F = ks.transform(FK, qK, op, tr)
            F = ks.shift_to(F, qp, qmK)
            err = np.linalg.norm(F - FmK) / np.linalg.norm(FmK)
            if G.any():
                shifted.append(err)
                assert err <= 1e-3
                continue
            kind = ("identity" if np.array_equal(op.W, np.eye(3, dtype=int)) else
                    "proper" if op.proper else "improper") + ("+T" if tr else "")
            assert err <= 3e-5, (kind, op.W.tolist(), err)
            seen.add(kind)
    assert {"identity+T", "proper", "improper"} <= seen
    assert len(shifted) == 8 and min(shifted) > 1e-4          # the q ≠ q + G floor is real


def test_interpolation_3x3(grid_run, tmp_path):
    """3×3×1 grid from DFPT at its 3 irreducible q-points (Γ, K, (1/3, 0)), unfolded by symmetry and
    time reversal, supercell route: the 9 grid points are reproduced to round-off; at M (off the
    grid) the direct run's cell integrals per displacement are matched to 1.8 % (δn) and 16 % (δm)
    of their largest value, per-mode RMS to 1.6 % (charge), 7.8 % (in-plane), 4.0 % (out of
    plane); the plain lattice Fourier series of the cell integrals does worse (13 %, 23 %;
    in-plane 9.6 %, out-of-plane 21 %). Tolerances: 1.5 × measured. The saved grid.h5 gives the
    same F at any q. At −K (a grid point plus a reciprocal vector, unfolded from K by time reversal)
    it equals the independent −K run to 2.3e-5."""
    res = grid_run
    g = gi.from_results([res["G"], res["K"], res[THIRD]], 3)
    assert sorted(set(g.origin[..., 0].ravel())) == [0, 1, 2]
    qs = ki.grid_points(3)
    on = g.evaluate(qs)
    assert np.abs(on - g.cell_integrals_on_grid().reshape(on.shape)).max() <= 1e-12 * np.abs(on).max()
    # the grid points computed directly: the analysis's own cell integrals
    for lab, idx in (("G", 0), ("K", 4)):
        assert np.allclose(on[idx], gi.cartesian_fields(res[lab], "pattern_cell_integral"), rtol=0, atol=1e-12)
    # −K ≡ (2/3, 2/3) − (1, 1): a grid point shifted by G, so the route is exact there (in-plane
    # G·Ns ∈ 2πℤ; F(q_m + G) is the −G component of the grid field), and the grid value at (2/3, 2/3)
    # was unfolded from K by time reversal: it must equal the independent −K run (measured 2.3e-5
    # of max |δn|, ≤ 2e-6 of max |δm| per component)
    rmK = res["-K"]
    Fd = gi.cartesian_fields(rmK, "pattern_cell_integral")
    F = g.evaluate(rmK["q_crystal"])
    for c in range(4):
        assert np.abs(F[..., c] - Fd[..., c]).max() <= (1e-4 if c == 0 else 1e-5) * np.abs(Fd[..., c]).max()
    rM = res["M"]
    Fd = gi.cartesian_fields(rM, "pattern_cell_integral")
    U = rM["displacement_bohr"]

    def errs(F):
        e_n = np.abs(F[..., 0] - Fd[..., 0]).max() / np.abs(Fd[..., 0]).max()
        e_m = np.linalg.norm(F[..., 1:] - Fd[..., 1:], axis=-1).max() / np.linalg.norm(Fd[..., 1:], axis=-1).max()
        mi, md = gi.mode_values(F, U), gi.mode_values(Fd, U)
        r_in = (np.abs(np.linalg.norm(mi[:, 1:3], axis=1) - np.linalg.norm(md[:, 1:3], axis=1)).max()
                / np.linalg.norm(md[:, 1:3], axis=1).max())
        r_out = np.abs(np.abs(mi[:, 3]) - np.abs(md[:, 3])).max() / np.abs(md[:, 3]).max()
        return np.array([e_n, e_m, r_in, r_out])

    e = errs(g.evaluate(rM["q_crystal"]))
    el = errs(g.lattice_series().evaluate(rM["q_crystal"]))
    print("supercell", e, "lattice series", el)
    assert np.all(e <= 1.5 * np.array([0.0178, 0.160, 0.078, 0.040]))
    assert np.all(el > e)                                       # the plain series is worse everywhere
    path = gi.save(tmp_path / "grid.h5", g)
    back = gi.load(path)
    assert np.allclose(back.evaluate(rM["q_crystal"]), g.evaluate(rM["q_crystal"]), rtol=0, atol=1e-14)


def test_interpolate_command_end_to_end(grid_run, band_run, tmp_path):
    """``dfptmag bands --interpolate`` on a copy of the grid run plus the band run's dispersion:
    the three irreducible q of the 3×3 grid are found done (no ph.x runs; matdyn.x reruns for the
    dense path and the BZ sampling); bands.h5 marks the grid points on the path, and at K, a grid
    point, the interpolated basis-independent RMS equals the direct analysis of the K run."""
    import shutil
    import subprocess
    import sys

    import h5py

    from conftest import TINY, done_markers
    run = tmp_path / "run"
    skip = shutil.ignore_patterns(".dfptmag.lock")
    shutil.copytree(grid_run.run_dir, run, ignore=skip)
    shutil.copytree(band_run["run_dir"] / "dispersion", run / "dispersion", ignore=skip)
    before = done_markers(run)
    r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "bands", str(TINY), "--interpolate", "--run-dir",
                        str(run), "--format", "png", "--quiet"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "DFPT q-points computed: 3 " in r.stdout, r.stdout
    after = done_markers(run)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {"dispersion/matdyn.done"}, changed        # no pw.x/ph.x step ran
    for name in ("bands.h5", "grid.h5", "bz_maps.h5", "bz_maps_inplane.png", "bz_maps_outofplane.png"):
        assert (run / name).is_file(), name
    with h5py.File(run / "bands.h5") as f:
        q = f["path/q_crystal"][()]
        dfpt = f["path/dfpt_point"][()]
        ci = f["modes/cell_integral"][()]
        e = f["modes/eigenvector"][()]
        w = f["modes/frequency_meV"][()]
        masses = f["structure/masses_amu"][()]
        assert f.attrs["dfpt_qpoints"] == 3
    assert len(q) >= 100
    on_grid = np.all(np.abs(q[:, :2] * 3 - np.round(q[:, :2] * 3)) < 1e-6, axis=1)
    np.testing.assert_array_equal(dfpt, on_grid)
    k = int(np.argmin(np.linalg.norm(q - [1 / 3, 1 / 3, 0], axis=1)))
    assert np.linalg.norm(q[k] - [1 / 3, 1 / 3, 0]) < 1e-6 and dfpt[k]
    # K is a grid point: the command's mode cell integrals there are U_ν · F with F the direct K
    # run's response per Cartesian displacement (F = P† R, P the orthonormal patterns), U_ν from
    # bands.h5's own (matdyn.x) modes. Measured 2.8e-16. The modes themselves are matdyn.x's:
    # ASR-corrected force constants move ω by 0.037 meV from ph.x's at K and rotate nearby
    # eigenvectors, so per-mode RMS values differ from the direct analysis by up to 8 %.
    from dfptmag.kernel import modes as km
    direct = grid_run["K"]
    F = direct["pattern_vectors"].conj().T @ direct["pattern_cell_integral"]
    U = km.displacements(e[k].reshape(len(e[k]), -1), masses, w[k] / km.ry_to_mev(1.0))
    pred = U @ F
    ok = np.isfinite(pred[:, 0])
    assert ok.sum() >= 6
    assert np.abs(ci[k][ok] - pred[ok]).max() <= 1e-10 * np.abs(pred[ok]).max()
    assert np.abs(w[k] - km.ry_to_mev(direct["frequency_ry"])).max() < 0.1     # meV (measured 0.037)
    # The BZ maps per tracked branch obey the mirror selection rule over the whole zone: σ_h-odd
    # branches carry only in-plane, σ_h-even ones only out-of-plane magnetization, so each
    # tracked branch is forbidden in exactly one channel (measured on the tiny run: forbidden
    # maxima 1e-6–5e-6 of the largest, allowed ones ≥ 0.15, seam points included). Per band
    # index (ascending ω) six of the nine bands carry both (≥ 0.15 of the largest in each).
    from dfptmag.kernel.branches import per_branch
    with h5py.File(run / "bz_maps.h5") as f:
        br = f["branch"][()]
        seam = f["branch_seam"][()]
        allq = np.ones(len(br), bool)
        inp, outp = (per_branch(f[k][()], br, allq) for k in ("rms_inplane", "rms_outofplane"))
    assert np.all(br >= 0) and seam.mean() < 0.1, seam.mean()     # measured: 24 of 588 points
    top = np.nanmax(np.concatenate([inp, outp]))
    frac_in, frac_out = np.nanmax(inp, axis=0) / top, np.nanmax(outp, axis=0) / top
    print("per branch max in-plane / out-of-plane:", frac_in.round(6), frac_out.round(6))
    assert np.all(np.minimum(frac_in, frac_out) < 1e-4), (frac_in, frac_out)
    assert np.all(np.maximum(frac_in, frac_out) > 1e-2), (frac_in, frac_out)
    assert (frac_in > 1e-2).sum() == 4 and (frac_out > 1e-2).sum() == 5    # 4 σ_h-odd, 5 σ_h-even branches

    # [interpolation] long_range at two computed q of Γ–M ((1/3, 0) of the grid, and M): no ph.x
    # runs again; grid.h5 keeps the fitted part and the grid values stay exact (K: the direct run)
    text = TINY.read_text().replace('"../structures/', f'"{TINY.parent.parent}/structures/')
    text = text.replace('= "pseudo/', f'= "{TINY.parent}/pseudo/')
    head, tail = text.split("[interpolation]")
    text = head + "[interpolation]\nlong_range = [[0.3333333333333333, 0, 0], [0.5, 0, 0]]" + tail
    wf = tmp_path / "wse2-tiny-lr.toml"
    wf.write_text(text)
    before = done_markers(run)
    r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "bands", str(wf), "--interpolate", "--run-dir",
                        str(run), "--format", "png", "--quiet"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "DFPT q-points computed: 4 " in r.stdout, r.stdout
    assert done_markers(run) == before
    g = gi.load(run / "grid.h5")
    assert g.long_range is not None and g.long_range.slope.shape == (3, 3, 4, 2)
    assert np.all(g.long_range.slope[..., 0, :] == 0)                 # δn is not separated
    FK = gi.cartesian_fields(direct, "pattern_cell_integral")
    assert np.abs(g.evaluate(direct["q_crystal"]) - FK).max() <= 1e-10 * np.abs(FK).max()
    with h5py.File(run / "bands.h5") as f:
        assert "M" in f.attrs["interpolation_long_range"]
    bad = tmp_path / "bad-lr.toml"
    bad.write_text(text.replace("[0.5, 0, 0]]", "[0, 0.3333333333333333, 0]]"))
    r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "bands", str(bad), "--interpolate", "--run-dir",
                        str(run), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "differ in length" in r.stderr and str(bad) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

