"""Pure-numpy checks of kernel/symmetry.py and kernel/interpolation.py (no QE).

Oracle for the interpolation: a localized one-displaced-atom response built by hand (a Gaussian
column profile around the displaced atom, times a plane wave so that it is complex), its periodic
amplitudes at the N×N grid formed from the definition F_q(x) = Σ_R e^{-iq·(x−R)} g(x − R), and
F(q) at off-grid q compared with the direct sum Σ_r e^{-iq·r} g(r) over the whole plane."""
from __future__ import annotations

import numpy as np

from dfptmag.kernel import interpolation as ki
from dfptmag.kernel import symmetry as ks

A = 6.27
CELL = np.array([[A, 0, 0], [-A / 2, A * np.sqrt(3) / 2, 0], [0, 0, 20.0]])
FRAC = np.array([[0, 0, 0], [1 / 3, 2 / 3, 0.084], [1 / 3, 2 / 3, 0.916]])
B2 = 2 * np.pi * np.linalg.inv(CELL[:2, :2]).T       # in-plane reciprocal vectors (rows), 1/bohr


def _profile(x1, x2, tau, width=1.5):
    """g(r) for crystal in-plane coordinates; a Gaussian of ``width`` bohr around tau."""
    d = (np.stack([x1 - tau[0], x2 - tau[1]], -1) @ CELL[:2, :2])
    r2 = np.sum(d * d, axis=-1)
    return np.exp(-r2 / (2 * width ** 2)) * (1 + 0.3j * d[..., 0] / width)


def _grid_columns(N, n=12, reach=4):
    nat = len(FRAC)
    cols = np.zeros((N, N, nat, 3, 4, n, n), complex)
    x = np.arange(n) / n
    X1, X2 = np.meshgrid(x, x, indexing="ij")
    for m1 in range(N):
        for m2 in range(N):
            q = np.array([m1 / N, m2 / N])
            for k in range(nat):
                acc = np.zeros((n, n), complex)
                for R1 in range(-reach * N, reach * N + 1):
                    for R2 in range(-reach * N, reach * N + 1):
                        ph = np.exp(-2j * np.pi * (q[0] * (X1 - R1) + q[1] * (X2 - R2)))
                        acc += ph * _profile(X1 - R1, X2 - R2, FRAC[k, :2])
                cols[m1, m2, k, :, :] = acc[None, None] * (1 + np.arange(3))[:, None, None, None] \
                    * np.array([1, 0.5, -0.25, 2j])[None, :, None, None]
    return cols


def _direct(q, k, n=12, reach=6):
    x = np.arange(-reach * n, reach * n) / n
    X1, X2 = np.meshgrid(x, x, indexing="ij")
    return np.sum(np.exp(-2j * np.pi * (q[0] * X1 + q[1] * X2)) * _profile(X1, X2, FRAC[k, :2]))


def test_supercell_interpolation_against_direct_transform():
    """Exact on the grid; off the grid the Wigner–Seitz supercell sum equals the direct transform
    of the localized response to the size of its tail beyond the supercell (here < 1e-9)."""
    N = 4
    cols = _grid_columns(N)
    sc = ki.build(cols, N, CELL, FRAC)
    on = sc.evaluate(ki.grid_points(N))
    assert np.abs(on - cols.sum(axis=(-2, -1)).reshape(on.shape)).max() < 1e-10
    for q in ([0.13, 0.07, 0], [0.5, 0.0, 0], [0.29, 0.31, 0], [-0.4, 0.21, 0]):
        F = sc.evaluate(np.array(q))
        for k in range(3):
            ref = _direct(q, k)
            assert abs(F[k, 0, 0] - ref) < 1e-9 * abs(ref) + 1e-12, (q, k, F[k, 0, 0], ref)
            assert abs(F[k, 2, 3] - ref * 3 * 2j) < 1e-8 * abs(ref)


def test_lattice_series_is_not_the_transform():
    """The plain lattice series of the cell integrals is periodic in q, the transform is not."""
    N = 4
    cols = _grid_columns(N)
    lat = ki.lattice_series(cols.sum(axis=(-2, -1)), N, CELL, FRAC)
    q = np.array([0.13, 0.07, 0])
    assert np.allclose(lat.evaluate(q), lat.evaluate(q + [1, 0, 0]))
    sc = ki.build(cols, N, CELL, FRAC)
    assert not np.allclose(sc.evaluate(q), sc.evaluate(q + [1, 0, 0]), rtol=1e-3)


def _ops():
    import spglib
    sym = spglib.get_symmetry((CELL, FRAC, [74, 34, 34]), symprec=1e-5)
    return ks.operations(sym["rotations"], sym["translations"], CELL, FRAC, [74, 34, 34])


def test_group_laws_on_fields():
    """Acting twice equals acting with the product; time reversal twice is the identity; σ_h
    flips the in-plane δm and keeps δm_z and δn (an axial vector); the grid map is a permutation."""
    ops = _ops()
    assert len(ops) == 12
    rng = np.random.default_rng(1)
    shape = (3, 3, 4, 6, 6, 8)
    F = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    q = np.array([0.1, 0.2, 0.0])
    byW = {tuple(op.W.ravel()): op for op in ops}
    for a in ops:
        for b in ops:
            qa, Fa = ks.transform(F, q, a)
            qab, Fab = ks.transform(Fa, qa, b)
            prod = byW[tuple((b.W @ a.W).ravel())]
            qp, Fp = ks.transform(F, q, prod)
            assert np.allclose(qab, qp)
            assert np.allclose(Fab, Fp, atol=1e-12)
    qt, Ft = ks.transform(F, q, None, True)
    qtt, Ftt = ks.transform(Ft, qt, None, True)
    assert np.allclose(qtt, q) and np.allclose(Ftt, F)
    assert np.allclose(Ft[:, :, 0], F[:, :, 0].conj()) and np.allclose(Ft[:, :, 1:], -F[:, :, 1:].conj())
    sh = byW[(1, 0, 0, 0, 1, 0, 0, 0, -1)]
    v = np.array([1.0, 2.0, 3.0, 4.0])
    assert np.allclose(ks.transform_vector(v, sh), [1, -2, -3, 4])
    for op in ops:
        src = ks.grid_map(op, (6, 6, 8))
        flat = np.ravel_multi_index(src, (6, 6, 8)).ravel()
        assert np.array_equal(np.sort(flat), np.arange(6 * 6 * 8))


def test_irreducible_grids():
    """Hexagonal monolayer (P-6m2) with time reversal: 3, 4, 7 irreducible q for 3×3, 4×4, 6×6."""
    ops = _ops()
    for N, nirr in ((3, 3), (4, 4), (6, 7)):
        irr, pts, owner = ks.irreducible_grid(ops, (N, N, 1))
        assert len(irr) == nirr and len(pts) == N * N and owner.min() == 0
    irr, _, _ = ks.irreducible_grid(ops, (6, 6, 1))
    assert np.allclose(irr[1], [1 / 6, 0, 0])


def _lr_columns(N, lr, n=12):
    """Columns of a response whose in-plane Fourier transform is F_LR: at q_m the column's DFT
    component G is F_LR(q_m + G), so the column is the inverse DFT of those values."""
    g = np.fft.fftfreq(n, 1.0 / n)
    out = np.zeros((N, N, 3, 3, 4, n, n), complex)
    for m1 in range(N):
        for m2 in range(N):
            qc = np.stack(np.meshgrid(m1 / N + g, m2 / N + g, indexing="ij"), -1)
            out[m1, m2] = np.moveaxis(np.fft.ifft2(lr(qc @ B2), axes=(0, 1)), (0, 1), (-2, -1))
    return out


def test_long_range_separation_is_exact_for_its_form():
    """A localized response plus a screened linear term L·k e^{−σ²k²}/(1 + r|k|) (a cusp at Γ):
    with the term separated the interpolation equals the direct transform plus F_LR to 1e-9 at
    off-grid q, and the grid values stay exact; without it the cusp costs several % near Γ."""
    rng = np.random.default_rng(7)
    slope = rng.normal(size=(3, 3, 4, 2)) + 1j * rng.normal(size=(3, 3, 4, 2))
    lr = ki.LongRange(slope, rng.uniform(0.5, 3.0, size=(3, 3, 4)), 0.5)
    N = 4
    cols = _grid_columns(N) + _lr_columns(N, lr)
    plain = ki.build(cols, N, CELL, FRAC)
    sep = ki.build(cols, N, CELL, FRAC, long_range=lr)
    grid_vals = cols.sum(axis=(-2, -1)).reshape((N * N,) + cols.shape[2:5])
    for sc in (plain, sep):
        assert np.abs(sc.evaluate(ki.grid_points(N)) - grid_vals).max() < 1e-10
    worst_plain = 0.0
    for q in ([0.05, 0.0, 0], [0.13, 0.07, 0], [0.29, 0.31, 0], [-0.04, 0.03, 0]):
        q = np.array(q)
        ref = np.zeros((3, 3, 4), complex)
        for k in range(3):
            ref[k] = _direct(q, k) * (1 + np.arange(3))[:, None] * np.array([1, 0.5, -0.25, 2j])[None, :]
        ref += lr(q[:2] @ B2)
        F = sep.evaluate(q)
        assert np.abs(F - ref).max() < 1e-9 * np.abs(ref).max(), q
        worst_plain = max(worst_plain, np.abs(plain.evaluate(q) - ref).max() / np.abs(lr(q[:2] @ B2)).max())
    assert worst_plain > 0.05, worst_plain     # of the long-range part's own size


def _synthetic_result(q, cW, cZ, cN, r_m, r_n):
    """An analysis result (identity patterns) whose cell integrals are the D3h-allowed linear terms
    of the W displacements, screened: δm_z = cW (k × u)_z, δm_∥ = cZ u_z (ẑ × k), δn = i cN k·u,
    each over (1 + r|k|); the Se entries are zero."""
    k = np.asarray(q, float)[:2] @ B2
    s_m, s_n = 1 / (1 + r_m * np.linalg.norm(k)), 1 / (1 + r_n * np.linalg.norm(k))
    F = np.zeros((3, 3, 4), complex)
    F[0, 0, 3], F[0, 1, 3] = -cW * k[1] * s_m, cW * k[0] * s_m
    F[0, 2, 1], F[0, 2, 2] = -cZ * k[1] * s_m, cZ * k[0] * s_m
    F[0, 0, 0], F[0, 1, 0] = 1j * cN * k[0] * s_n, 1j * cN * k[1] * s_n
    return {"q_crystal": np.asarray(q, float), "pattern_cell_integral": F.reshape(9, 4),
            "pattern_vectors": np.eye(9), "symbols": ["W", "Se", "Se"], "cell_bohr": CELL,
            "positions_bohr": FRAC @ CELL}


def test_long_range_fit_recovers_slope_and_length():
    """Two runs at small q on Γ–M of a response that is exactly the screened linear term: the
    stars (crystal operations and time reversal) give every direction, and the fit returns r and
    the slope to rounding; δn is separated only when asked; equal |q| is refused."""
    from dfptmag.analysis import grid as gi
    ops = _ops()
    near = [_synthetic_result(q, 0.3, 0.2, 3.0, 1.3, 0.4) for q in ((0.05, 0, 0), (1 / 6, 0, 0))]
    lr = gi.long_range_from(near, ops)
    assert np.allclose(lr.r[0, :2, 3], 1.3, atol=1e-10) and np.allclose(lr.r[0, 2, 1:3], 1.3, atol=1e-10)
    assert np.all(lr.r[0, :, 0] == 0) and np.all(lr.r[1:] == 0)        # δn and the Se entries: not separated
    assert np.isclose(lr.sigma, A / (4 * np.pi))
    assert np.allclose(lr.slope[0, 0, 3], [0, -0.3], atol=1e-10) and np.allclose(lr.slope[0, 1, 3], [0.3, 0], atol=1e-10)
    assert np.allclose(lr.slope[0, 2, 1], [0, -0.2], atol=1e-10) and np.allclose(lr.slope[0, 2, 2], [0.2, 0], atol=1e-10)
    both = gi.long_range_from(near, ops, components=("n", "m_inplane", "m_z"))
    assert np.allclose(both.r[0, :2, 0], 0.4, atol=1e-10)
    assert np.allclose(both.slope[0, 0, 0], [3j, 0], atol=1e-10)
    # the fitted term reproduces the model at a third q in another direction
    q3 = np.array([0.03, 0.08, 0.0])
    F3 = gi.cartesian_fields(_synthetic_result(q3, 0.3, 0.2, 3.0, 1.3, 0.4), "pattern_cell_integral")
    k3 = np.linalg.norm(q3[:2] @ B2)
    damp = np.exp(-(k3 * both.sigma) ** 2)
    assert np.allclose(both(q3[:2] @ B2), F3 * damp, atol=1e-12)
    import pytest
    with pytest.raises(ValueError, match="different length"):
        gi.long_range_from([near[0], _synthetic_result((0.0, 0.05, 0), 0.3, 0.2, 3.0, 1.3, 0.4)], ops)


def test_grid_file_keeps_the_long_range_part(tmp_path):
    """grid.h5 round trip with a separated part: the loaded grid evaluates to the same numbers."""
    from dfptmag.analysis import grid as gi
    rng = np.random.default_rng(3)
    lr = ki.LongRange(rng.normal(size=(3, 3, 4, 2)) + 0j, rng.uniform(0.5, 2.0, size=(3, 3, 4)), 0.5)
    N = 3
    cols = _grid_columns(N) + _lr_columns(N, lr)
    g = gi.GridResponse(N, cols, CELL, FRAC @ CELL, ["W", "Se", "Se"], np.zeros((3, 3)),
                        np.zeros((N, N, 3), int), lr)
    back = gi.load(gi.save(tmp_path / "grid.h5", g))
    q = np.array([[0.07, 0.02, 0], [0.4, -0.1, 0]])
    assert back.long_range is not None and back.long_range.sigma == 0.5
    assert np.allclose(back.evaluate(q), g.evaluate(q), atol=1e-14)
    plain = gi.GridResponse(N, cols, CELL, FRAC @ CELL, ["W", "Se", "Se"], np.zeros((3, 3)), np.zeros((N, N, 3), int))
    assert np.abs(plain.evaluate(q) - g.evaluate(q)).max() > 0.05 * np.abs(lr(q[:, :2] @ B2)).max()
