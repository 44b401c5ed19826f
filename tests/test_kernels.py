"""Kernels on synthetic arrays with exact answers (no QE needed)."""
import numpy as np

from dfptmag.io.planewaves import internal_order, match_miller
from dfptmag.kernel import density_matrix as dm
from dfptmag.kernel import modes as km
from dfptmag.kernel.observables import inplane_outofplane, subspace_totals
from dfptmag.kernel.pauli import SIGMA, matrix_from_pauli, pauli_from_matrix

rng = np.random.default_rng(7)


def crandn(*shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def test_pauli_is_u_dagger_sigma_du():
    u, du = crandn(5, 2), crandn(5, 2)
    rho = np.einsum("is,it->st", du, u.conj())[None]
    comp = pauli_from_matrix(rho)[0]
    for a in range(4):
        assert np.isclose(comp[a], np.einsum("is,st,it->", u.conj(), SIGMA[a], du))
    assert np.allclose(matrix_from_pauli(pauli_from_matrix(rho)), rho)


def test_g0_equals_cell_average_of_realspace_product():
    shape, omega = (6, 5, 7), 12.3
    miller = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-2, 0, 2)])
    c, d = crandn(3, 2, len(miller)), crandn(4, 3, 2, len(miller))
    g0 = dm.g0_contribution(c, d, 0.5)
    u = dm.periodic_part(c, miller, shape, omega)
    du = dm.periodic_part(d, miller, shape, omega)
    field = dm.realspace_contribution(u, du, 0.5)
    assert np.allclose(field.mean(axis=(-3, -2, -1)) * omega, g0, rtol=1e-12, atol=1e-12)


def _sphere(shape, b, ecut):
    """Miller indices with |G|² < ecut (G = m·b) inside the box of ``shape``, in a scrambled order."""
    n = np.array(shape)
    g = np.stack(np.meshgrid(*[np.arange(-(k // 4), k // 4 + 1) for k in n], indexing="ij"), -1).reshape(-1, 3)
    g2 = np.einsum("ij,ij->i", g @ b, g @ b)
    return rng.permutation(g[g2 < ecut])


def test_gridplan_equals_full_box_fft():
    """The stick/plane inverse FFT equals the full-box one (periodic_part) to rounding, for an
    oblique cell, a box with unequal sides and a batch with leading dimensions."""
    shape, omega = (10, 12, 36), 321.0
    b = np.array([[1.0, 0.577, 0.0], [0.0, 1.155, 0.0], [0.0, 0.0, 0.31]])
    miller = _sphere(shape, b, 4.0)
    plan = dm.GridPlan(miller, shape)
    assert plan.nsticks < shape[0] * shape[1] and plan.nplanes < shape[0]   # sparse, as intended
    c = crandn(3, 2, len(miller))
    ref = dm.periodic_part(c, miller, shape, omega)
    new = plan.to_realspace(c, omega)
    assert new.shape == ref.shape == (3, 2) + shape
    assert np.max(np.abs(new - ref)) <= 1e-13 * np.max(np.abs(ref))


def test_accumulate_and_pauli_in_place_equal_reference():
    shape, omega, w = (6, 5, 7), 12.3, 0.25
    miller = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-2, 0, 2)])
    c, d = crandn(3, 2, len(miller)), crandn(4, 3, 2, len(miller))
    u = dm.periodic_part(c, miller, shape, omega)
    du = dm.periodic_part(d, miller, shape, omega)
    ref = dm.realspace_contribution(u, du, w)                     # (npat, 2, 2, *grid)
    acc = np.zeros((4, 2, 2, np.prod(shape)), complex)
    ucw = (w * u.conj()).reshape(3, 2, -1)
    for p in range(4):
        dm.accumulate_realspace(acc[p], du[p].reshape(3, 2, -1), ucw)
    assert np.allclose(acc.reshape(ref.shape), ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    comp_ref = pauli_from_matrix(acc)
    comp = dm.pauli_in_place(acc.copy())
    assert np.array_equal(comp, comp_ref)


def _internal_order_reference(miller, xk, bg):
    """The per-block loop dfptmag used before vectorising (kept as the oracle of the new one)."""
    kg = xk[None, :] + miller @ bg
    g2 = np.einsum("ij,ij->i", kg, kg)
    g2[g2 <= 1e-8] = 0.0
    order = np.lexsort((np.arange(len(g2)), g2))
    breaks = np.flatnonzero(np.diff(g2[order]) >= 1e-8) + 1
    for block in np.split(np.arange(len(order)), breaks):
        if block.size > 1:
            order[block] = np.sort(order[block])
    return order


def test_internal_order_vectorised_equals_block_loop():
    """Many exact ties (hexagonal shells) and chains of near-ties (values 0.6e-8 apart, which
    hpsort_eps merges into one block) in a scrambled order."""
    bg = np.array([[1.0, 0.5773502691896258, 0.0], [0.0, 1.1547005383792517, 0.0], [0.0, 0.0, 0.2]])
    miller = _sphere((24, 24, 60), bg, 9.0)
    for xk in (np.zeros(3), np.array([1 / 3, 0.5773502691896257, 0.0]), np.array([0.1, 0.02, 0.0])):
        assert np.array_equal(internal_order(miller, xk, bg), _internal_order_reference(miller, xk, bg))
    # |k+G|² = (i + 0.1)² + j²·2e-10: neighbours in j differ by (2|j|+1)·2e-10, below eps8 up to
    # |j| = 24 (chains merged into one block, ordered by index) and above it from there on
    miller = rng.permutation(np.array([(i, j, 0) for i in range(-2, 3) for j in range(-40, 41)]))
    bg = np.diag([1.0, np.sqrt(2e-10), 1.0])
    xk = np.array([0.1, 0.0, 0.0])
    got = internal_order(miller, xk, bg)
    assert np.array_equal(got, _internal_order_reference(miller, xk, bg))
    assert not np.array_equal(got, np.lexsort((np.arange(len(miller)), np.einsum("ij,ij->i", xk + miller @ bg, xk + miller @ bg))))


def test_internal_order_ties_broken_by_index():
    bg = np.eye(3)
    miller = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 0], [-1, 0, 0], [2, 0, 0]])
    perm = internal_order(miller, np.zeros(3), bg)
    assert perm.tolist() == [2, 0, 1, 3, 4, 5]
    # a shift of k lifts part of the degeneracy
    perm = internal_order(miller, np.array([0.1, 0, 0]), bg)
    assert perm.tolist() == [2, 4, 0, 3, 1, 5]   # 0.01, 0.81, 1.01 (tie: index), 1.21, 4.41


def test_match_miller():
    a = np.array([[0, 0, 0], [1, 2, 3], [-1, 0, 5]])
    b = np.array([[-1, 0, 5], [7, 7, 7], [0, 0, 0]])
    i, j = match_miller(a, b)
    assert np.array_equal(a[i], b[j]) and len(i) == 2


def test_modes_of_diatomic_chain():
    """Two masses m1, m2 coupled by spring k along x at q = 0: ω² = k(1/m1 + 1/m2)."""
    from dfptmag.constants import AMU_RY
    k = 0.2
    d = np.zeros((6, 6), complex)
    d[0, 0] = d[3, 3] = k
    d[0, 3] = d[3, 0] = -k
    masses = np.array([10.0, 30.0])
    omega, e = km.diagonalize(d, masses)
    assert np.isclose(omega[-1] ** 2, k * (1 / 10 + 1 / 30) / AMU_RY)
    assert np.allclose(omega[:-1], 0)
    U = km.displacements(e, masses, omega, "zero-point")
    assert np.isnan(U[0]).all()       # zero frequency: no zero-point amplitude
    assert np.isclose(np.linalg.norm(U[-1] * np.sqrt(np.repeat(masses, 3) * AMU_RY)), np.sqrt(1 / (2 * omega[-1])))
    Uf = km.displacements(e, masses, omega, "fixed", 0.02)
    assert np.allclose(np.linalg.norm(Uf, axis=1), 0.02)
    c = km.pattern_coefficients(np.eye(6), Uf)
    assert np.allclose(c, Uf)


def test_subspace_totals_basis_independent():
    ci = crandn(3, 4)
    groups = np.array([0, 1, 1])
    th = 0.7
    rot = np.array([[1, 0, 0], [0, np.cos(th), np.sin(th)], [0, -np.sin(th), np.cos(th)]])
    a, b = subspace_totals(ci, groups), subspace_totals(rot @ ci, groups)
    assert np.allclose(a, b)
    assert not np.allclose(np.abs(ci), np.abs(rot @ ci))
    inp, out = inplane_outofplane(ci)
    assert np.allclose(inp ** 2 + out ** 2, np.sum(np.abs(ci[:, 1:]) ** 2, axis=1) / 2)
