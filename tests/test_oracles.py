"""Core numbers against oracles we did not write: ph.x's induced charge (fildrho), ph.x's
frequencies (fildyn), and the exact time-reversal law between independent runs at K and −K."""
import numpy as np
import pytest

from dfptmag.io.qe_grid import read_grid_record
from dfptmag.kernel.modes import ry_to_cm1

# Fast tier: the stored tiny run (tests/data/wse2-tiny, QE 6.7; see tests/data/PROVENANCE.json).


@pytest.mark.parametrize("label", ["K", "-K"])
def test_charge_channel_matches_phx_fildrho(analyzed, label):
    r = analyzed[label]
    # every one of the 9 patterns has a fildrho record and agrees on the whole FFT grid
    assert r["drho_relative_error"].shape == (9,)
    assert np.all(r["drho_relative_error"] <= 1e-6), r["drho_relative_error"]
    assert np.all(r["drho_g0_relative_error"] <= 1e-6), r["drho_g0_relative_error"]
    # the response is not trivially zero: charge of order 0.1-1 electron per bohr
    assert np.max(np.abs(r["pattern_cell_integral"][:, 0])) > 0.1


def test_fildrho_record_is_read_independently(stored_runs, analyzed_gamma):
    """Recompute one pattern's comparison from the raw file (guards the reader's layout); the
    stored Γ run keeps ph.x's raw fildrho copies (K and −K keep theirs inside contracted files)."""
    r = analyzed_gamma
    drho = read_grid_record(stored_runs["G"] / "capture" / "drho.irr3", 3, tuple(r["fft_grid"]))[0]
    ours = 2 * r["pattern_field"][list(r["pattern_index"]).index(3), 0]
    assert np.linalg.norm(ours - drho) / np.linalg.norm(drho) < 1e-6
    # a wrong grid orientation (transposed axes) would not match
    assert np.linalg.norm(ours - drho.transpose(1, 0, 2)) / np.linalg.norm(drho) > 1e-2


@pytest.mark.parametrize("label", ["K", "-K"])
def test_cell_average_equals_g0_integral(analyzed, label):
    r = analyzed[label]
    scale = np.max(np.abs(r["pattern_cell_integral"]))
    assert r["cell_average_vs_g0"] <= 1e-10 * scale


@pytest.mark.parametrize("label", ["K", "-K"])
def test_frequencies_match_phx(analyzed, label):
    r = analyzed[label]
    ours = ry_to_cm1(r["frequency_ry"])
    assert np.max(np.abs(ours - r["fildyn_freq_cm1"])) <= 1e-3
    assert np.all(ours > 50) and np.all(ours < 300)   # tiny WSe2 at K: 80-250 cm-1, none imaginary


def test_time_reversal_cell_integrals(analyzed):
    """δm(−q) = −conj δm(q), δn(−q) = conj δn(q), pattern by pattern (real patterns, nosym).

    Tolerance: both runs are converged to tr2_ph = 1e-14 independently; the achieved accuracy is
    measured by ph.x's own charge (drho = 2 Tr δñ to 1e-15), whose TR residual eps_n we take as
    the yardstick: the magnetization's residual must be below 10·eps_n + 1e-9 and below 1e-4 of
    the pattern's largest component. A sign or conjugation error would give residuals of order |δm| itself.
    """
    a, b = analyzed["K"]["pattern_cell_integral"], analyzed["-K"]["pattern_cell_integral"]
    assert np.allclose(analyzed["K"]["pattern_vectors"].imag, 0)
    res_n = np.abs(b[:, 0] - a[:, 0].conj())
    res_m = np.abs(b[:, 1:] + a[:, 1:].conj()).max(axis=1)
    eps_n = res_n.max()
    assert eps_n <= 1e-4 * np.abs(a[:, 0]).max()
    assert np.all(res_m <= 10 * eps_n + 1e-9)
    assert np.all(res_m <= 1e-4 * np.abs(a).max(axis=1))
    # the law is not satisfied trivially: the magnetization is far larger than the residual
    assert np.abs(a[:, 1:]).max() > 1e3 * res_m.max()
    # and the "wrong" law (δm(−q) = +conj δm(q)) fails
    assert np.abs(b[:, 1:] - a[:, 1:].conj()).max() > 1e-2


def test_time_reversal_pointwise(analyzed):
    fa, fb = analyzed["K"]["pattern_field"], analyzed["-K"]["pattern_field"]
    scale = np.abs(fa[:, 0]).max()
    assert np.abs(fb[:, 1:] + fa[:, 1:].conj()).max() <= 1e-4 * scale
    assert np.abs(fb[:, 0] - fa[:, 0].conj()).max() <= 1e-4 * scale


def test_modes_physics_at_K(analyzed):
    """The paper's selection rule at K: modes whose W atom moves out of plane carry in-plane
    magnetization, modes whose W moves in plane carry out-of-plane magnetization."""
    r = analyzed["K"]
    U = r["displacement_bohr"]
    ci = r["mode_cell_integral"]
    w = U[:, 0, :]                                 # W is atom 0
    w_out = np.abs(w[:, 2]) > 10 * np.linalg.norm(w[:, :2], axis=1)
    w_in = np.linalg.norm(w[:, :2], axis=1) > 10 * np.abs(w[:, 2])
    inplane = np.linalg.norm(ci[:, 1:3], axis=1)
    outp = np.abs(ci[:, 3])
    assert w_out.any() and w_in.any()
    assert np.all(inplane[w_out] > 100 * outp[w_out])
    assert np.all(outp[w_in] > 100 * inplane[w_in])
    # a modest effect: |δm| a few percent of |δn| or less for every mode with a charge response
    assert np.all(np.linalg.norm(ci[:, 1:], axis=1) < 0.2 * np.abs(ci[:, 0]) + 1e-2)


def test_mode_transform_is_linear_combination_of_patterns(analyzed):
    r = analyzed["K"]
    c = r["mode_coefficients"]
    U = r["displacement_bohr"].reshape(9, 9)
    assert np.allclose(c @ r["pattern_vectors"], U, atol=1e-12)
    assert np.allclose(r["mode_cell_integral"], c @ r["pattern_cell_integral"])


def test_gamma_point_laws(analyzed_gamma):
    """q = Γ (no nscf: ψ from pw.x): the charge oracle holds; time reversal maps q onto itself,
    so the one-sided magnetization amplitude is purely imaginary and the charge real, pointwise,
    to ph.x precision. For these two displacements (W along z, Se along z) the cell integrals
    also vanish, by symmetry (C3 and σ_v leave them invariant; an in-plane or out-of-plane axial
    vector invariant under both is zero) and ∫δn = 0 by charge conservation. This is NOT true of
    every displacement at Γ: the Se in-plane ones carry an in-plane δm (the E″ pair), see
    tests/test_grid.py::test_gamma_selection_rules."""
    r = analyzed_gamma
    assert list(r["pattern_index"]) == [3, 9]
    assert np.all(r["drho_relative_error"] <= 1e-6)
    f = r["pattern_field"]
    for n in range(2):
        scale = np.abs(f[n]).max()
        assert np.abs(f[n, 1:].imag).max() > 1e-2 * scale            # a real magnetization amplitude exists
        assert np.abs(f[n, 1:].real).max() <= 1e-4 * np.abs(f[n, 1:].imag).max()
        assert np.abs(f[n, 0].imag).max() <= 1e-4 * np.abs(f[n, 0].real).max()
    ci = r["pattern_cell_integral"]
    assert np.abs(ci).max() <= 1e-4 * np.abs(f).max() * r["omega_bohr3"]
    assert "modes_missing_reason" in r          # only 2 of 9 patterns: no modes, said so
