"""An interpolated grid result: DFPT fields at the irreducible q-points of an N×N grid, unfolded
to the full grid by the crystal's point group and time reversal, turned into the one-displaced-atom
response on the N×N supercell and Fourier-transformed to any q (kernel.symmetry,
kernel.interpolation).

The point group comes from spglib (the structure of the q-run, QE's cell and positions). The
unfolding acts on the real-space fields on QE's FFT grid (an exact permutation of grid points,
the lattice phase, δn scalar, δm axial; time reversal δn → conj δn, δm → −conj δm).

Saved as ``grid.h5`` (:func:`save` / :func:`load`): the z-integrated columns of the fields at
every grid point, the cell and the positions; ``load(path).evaluate(q)`` gives F_{κα}(q) =
∫ e^{-iq·r}[δn, δm_x, δm_y, δm_z] d³r per bohr of Cartesian displacement (e, μB).

Long-range part (:func:`long_range_from`): the magnetization's linear term at Γ is screened,
F ≈ L·q/(1 + r|q|) (measured on WSe2; docs/theory-interpolation.md), a cusp that the interpolation
rounds off. Two direct DFPT runs at small q of different length (their stars give every
direction) fix the slope L and the length r per atom, displacement (in-plane/out-of-plane) and
component group (δn, in-plane δm, δm_z); kernel.interpolation.LongRange subtracts that part
before the supercell is built and adds it back at every q.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..kernel import interpolation as ki
from ..kernel import symmetry as ks

COMPONENTS = ("n", "m_x", "m_y", "m_z")


def cartesian_fields(result: dict, key: str = "pattern_field") -> np.ndarray:
    """The response per Cartesian displacement (nat, 3, 4, ...) from the per-pattern response of
    an analysis result: pattern μ moves the atoms by u_μ (orthonormal, complete), so the
    response to e_{κα} is Σ_μ conj(u_μ[κα]) F_μ."""
    f = np.asarray(result[key])
    u = np.asarray(result["pattern_vectors"])               # (npat, 3 nat)
    nat = len(result["symbols"])
    if u.shape[0] != 3 * nat:
        raise ValueError(f"{u.shape[0]} patterns for {nat} atoms: all patterns are needed")
    F = np.tensordot(u.conj().T, f, axes=([1], [0]))
    return F.reshape((nat, 3) + f.shape[1:])


def crystal_operations(cell_bohr, positions_bohr, symbols, symprec: float = 1e-5):
    """The space-group operations of the structure (spglib), with atom maps."""
    import spglib
    cell = np.asarray(cell_bohr, float)
    frac = np.asarray(positions_bohr, float) @ np.linalg.inv(cell)
    kinds = {s: i + 1 for i, s in enumerate(dict.fromkeys(symbols))}
    nums = [kinds[s] for s in symbols]
    # spglib takes lengths in any unit; symprec is in the same unit (bohr here)
    import warnings
    with warnings.catch_warnings():           # spglib 2.x warns about its old error handling
        warnings.simplefilter("ignore", DeprecationWarning)
        sym = spglib.get_symmetry((cell, frac, nums), symprec=symprec)
    if sym is None:
        raise ValueError("spglib found no symmetry")
    return ks.operations(sym["rotations"], sym["translations"], cell, frac, nums)


def unfold(sources, ops, q_target):
    """The fields at ``q_target`` from a list of (q_crystal, fields (nat, 3, 4, n1, n2, n3)):
    a direct source if q_target is one, else the first source whose star holds it (rotations
    first). Returns (fields, how) with ``how`` = (source index, op index or -1, time reversal)."""
    for i, (q, f) in enumerate(sources):
        if ks.equivalent(q_target, q) is not None:
            return ks.shift_to(f, q, q_target), (i, -1, False)
    for i, (q, f) in enumerate(sources):
        hit = ks.find_operation(ops, q, q_target)
        if hit is None:
            continue
        op, tr = hit
        qp, g = ks.transform(f, q, op, tr)
        return ks.shift_to(g, qp, q_target), (i, next(j for j, o in enumerate(ops) if o is op), tr)
    raise ValueError(f"q = {np.round(q_target, 6)} is in the star of none of the computed q-points")


@dataclasses.dataclass
class GridResponse:
    """Columns of the fields on the full N×N grid and what is needed to interpolate them."""
    N: int
    columns: np.ndarray          # (N, N, nat, 3, 4, n1, n2) e or μB per bohr per column
    cell_bohr: np.ndarray
    positions_bohr: np.ndarray
    symbols: list
    irreducible_q: np.ndarray    # (nirr, 3) the q-points where DFPT ran
    origin: np.ndarray           # (N, N, 3): (source index, operation index or -1, time reversal)
    long_range: ki.LongRange | None = None
    _sc: ki.SupercellResponse | None = None

    @property
    def tau_crystal(self) -> np.ndarray:
        return self.positions_bohr @ np.linalg.inv(self.cell_bohr)

    @property
    def supercell(self) -> ki.SupercellResponse:
        if self._sc is None:
            self._sc = ki.build(self.columns, self.N, self.cell_bohr, self.tau_crystal,
                                long_range=self.long_range)
        return self._sc

    def evaluate(self, q_crystal) -> np.ndarray:
        """F_{κα}(q) (…, nat, 3, 4) complex: e (δn) and μB (δm) per bohr of displacement."""
        return self.supercell.evaluate(q_crystal)

    def cell_integrals_on_grid(self) -> np.ndarray:
        return self.columns.sum(axis=(-2, -1))

    def lattice_series(self) -> ki.SupercellResponse:
        """The plain lattice Fourier series of the grid cell integrals (for comparison only)."""
        return ki.lattice_series(self.cell_integrals_on_grid(), self.N, self.cell_bohr, self.tau_crystal)


def from_results(results: list[dict], N: int, ops=None, qz_inv_angstrom: float = 0.0,
                 key: str = "pattern_field") -> GridResponse:
    """Build the grid response from analysis results (analyze_qrun dicts with ``pattern_field``,
    all patterns) at the irreducible q-points (any q-points whose stars cover the grid).
    ``qz_inv_angstrom`` ≠ 0: the columns carry e^{-iQ_z(z − z₀)} (one layer's z-Fourier
    transform, z around the layer centre; analysis.sqw.z_phase), so that ``evaluate(q)`` is
    F_{κα}(q + Q_z ẑ). ``key="time_odd_pattern_field"``: the time-odd response X instead (it
    transforms as δñ under the crystal's operations and time reversal)."""
    r0 = results[0]
    if ops is None:
        ops = crystal_operations(r0["cell_bohr"], r0["positions_bohr"], r0["symbols"])
    omega = float(r0["omega_bohr3"])
    sources = [(np.asarray(r["q_crystal"], float), cartesian_fields(r, key)) for r in results]
    cols, origin = None, np.zeros((N, N, 3), int)
    for i, q in enumerate(ki.grid_points(N)):
        f, how = unfold(sources, ops, q)
        if qz_inv_angstrom:
            from .sqw import z_phase
            f = f * z_phase(r0["cell_bohr"], r0["positions_bohr"], f.shape[-1], qz_inv_angstrom)
        c = ki.columns(f, omega)
        if cols is None:
            cols = np.zeros((N, N) + c.shape, complex)
        cols[i // N, i % N] = c
        origin[i // N, i % N] = (how[0], how[1], int(how[2]))
    return GridResponse(N, cols, np.asarray(r0["cell_bohr"]), np.asarray(r0["positions_bohr"]),
                        list(r0["symbols"]), np.array([s[0] for s in sources]), origin)


DISPLACEMENT_GROUPS = {"in-plane": (0, 1), "out-of-plane": (2,)}
COMPONENT_GROUPS = {"n": (0,), "m_inplane": (1, 2), "m_z": (3,)}
LONG_RANGE_R_MAX = 50.0        # bohr: a longer fitted screening length is not taken as a cusp


def odd_slope(result: dict, ops) -> tuple[np.ndarray, float, float]:
    """The linear term of F at the star of one direct run: the odd part (F(q) − F(−q))/2 at every
    q of the star (crystal operations and time reversal on the cell integrals) fitted by L·q
    (least squares). Returns L (nat, 3, 4, 2) per 1/bohr, |q| (1/bohr) and the relative residual
    of the fit (the non-linear, anisotropic part)."""
    q0 = np.asarray(result["q_crystal"], float)
    F0 = cartesian_fields(result, "pattern_cell_integral")
    star = {}
    for op in ops:
        for tr in (False, True):
            qp, Fp = ks.transform(F0, q0, op, tr)
            star.setdefault(tuple(np.round(qp, 8)), (qp, Fp))
    qs = np.array([v[0] for v in star.values()])
    Fs = np.array([v[1] for v in star.values()])
    odd = []
    for i, q in enumerate(qs):
        j = int(np.argmin(np.abs(qs + q).sum(axis=1)))
        if np.abs(qs[j] + q).max() > 1e-6:
            raise ValueError(f"the star of q = {np.round(q0, 6)} does not contain −q")
        odd.append(0.5 * (Fs[i] - Fs[j]))
    odd = np.array(odd).reshape(len(qs), -1)
    B2 = ki.reciprocal_2d(np.asarray(result["cell_bohr"], float)[:2, :2])
    k = qs[:, :2] @ B2
    sol, *_ = np.linalg.lstsq(k, odd, rcond=None)
    resid = np.abs(odd - k @ sol).max() / max(np.abs(odd).max(), 1e-300)
    L = sol.T.reshape(F0.shape + (2,))
    return L, float(np.linalg.norm(k[0])), float(resid)


def long_range_from(near: list[dict], ops=None, components=("m_inplane", "m_z"), sigma_bohr: float | None = None,
                    tol: float = 1e-3) -> ki.LongRange:
    """The screened linear term F_LR = L·q e^{−σ²q²}/(1 + r|q|) from two direct runs at small q₁,
    q₂ of different length (analysis results with all patterns). Per atom, displacement group and
    component group of ``components``: L₁, L₂ = the fitted slopes (:func:`odd_slope`), ρ = ⟨L₁, L₂⟩/
    ⟨L₁, L₁⟩ = (1 + r q₁)/(1 + r q₂) gives r, and L = L₁ (1 + r q₁). A group is separated only when
    0 < r ≤ LONG_RANGE_R_MAX and its |L₁| is at least ``tol`` of the largest of its component group;
    δn is not, by default (its linear term is not of this form: docs/theory-interpolation.md).
    sigma_bohr: the damping length (default a/4π, matdyn.x's alpha = 1)."""
    if len(near) != 2:
        raise ValueError(f"{len(near)} runs: the long-range part takes two, at small q of different length")
    if ops is None:
        r0 = near[0]
        ops = crystal_operations(r0["cell_bohr"], r0["positions_bohr"], r0["symbols"])
    (L1, k1, _), (L2, k2, _) = (odd_slope(r, ops) for r in near)
    if k1 > k2:
        L1, k1, L2, k2 = L2, k2, L1, k1
    if k1 < 1e-9 or abs(k2 - k1) < 1e-3 * k2:
        raise ValueError(f"|q| = {k1:.4f} and {k2:.4f} 1/bohr: two non-zero q of different length are needed")
    slope = np.zeros_like(L1)
    r = np.zeros(L1.shape[:3])
    nat = L1.shape[0]
    for cname in components:
        c = list(COMPONENT_GROUPS[cname])
        big = np.abs(L1[:, :, c]).max()
        for kap in range(nat):
            for a in DISPLACEMENT_GROUPS.values():
                x = L1[kap][list(a)][:, c]
                y = L2[kap][list(a)][:, c]
                nx = float(np.vdot(x, x).real)
                if big == 0 or np.sqrt(nx) < tol * big * np.sqrt(x.size):
                    continue
                rho = float(np.vdot(x, y).real) / nx
                rr = (1.0 - rho) / (rho * k2 - k1)
                if not (0.0 < rr <= LONG_RANGE_R_MAX):
                    continue
                for ai in a:
                    r[kap, ai, c] = rr
                    slope[kap, ai, c] = L1[kap, ai, c] * (1.0 + rr * k1)
    if sigma_bohr is None:
        sigma_bohr = float(np.linalg.norm(np.asarray(near[0]["cell_bohr"], float)[0])) / (4 * np.pi)
    return ki.LongRange(slope, r, float(sigma_bohr))


def mode_values(F: np.ndarray, displacement_bohr: np.ndarray) -> np.ndarray:
    """Cell integrals of modes: Σ_{κα} U_ν(κα) F_{κα} → (nmode, 4), for F (nat, 3, 4) and the
    mode displacements (nmode, nat, 3) in the lattice-vector phase convention."""
    return np.einsum("nka,kac->nc", np.asarray(displacement_bohr), np.asarray(F))


def save(path, g: GridResponse) -> Path:
    """Write grid.h5 atomically."""
    import h5py

    from ..atomic import atomic_path
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h:
            h.attrs["schema"] = "dfptmag-grid.h5/1"
            h.attrs["object"] = ("periodic amplitudes' z-integrated columns of [dn, dm_x, dm_y, dm_z] per "
                                 "bohr of Cartesian displacement on the full N x N q grid (unfolded)")
            h.attrs["N"] = g.N
            d = h.create_dataset("columns", data=g.columns)
            d.attrs["units"] = np.array(["e/bohr", "muB/bohr", "muB/bohr", "muB/bohr"], dtype=h5py.string_dtype())
            d.attrs["axes"] = "m1, m2 (q = (m1/N, m2/N, 0)), atom, Cartesian direction, component, i1, i2"
            h.create_dataset("cell_bohr", data=g.cell_bohr).attrs["units"] = "bohr"
            h.create_dataset("positions_bohr", data=g.positions_bohr).attrs["units"] = "bohr"
            h.create_dataset("symbols", data=np.array(g.symbols, dtype=h5py.string_dtype()))
            h.create_dataset("irreducible_q", data=g.irreducible_q).attrs["units"] = "1"
            h.create_dataset("origin", data=g.origin).attrs["description"] = (
                "per grid point: index of the computed q it was unfolded from, index of the "
                "spglib operation (-1: computed directly), time reversal (0/1)")
            if g.long_range is not None:
                lr = h.create_group("long_range")
                lr.attrs["description"] = ("separated part F_LR(k) = sum_b slope[..., b] k_b exp(-sigma^2 k^2) / "
                                           "(1 + r |k|), k in-plane Cartesian (1/bohr); columns hold the full "
                                           "response, evaluate subtracts F_LR before and adds it after")
                lr.create_dataset("slope", data=g.long_range.slope).attrs["units"] = "e or muB per bohr, per 1/bohr"
                lr.create_dataset("r", data=g.long_range.r).attrs["units"] = "bohr"
                lr.attrs["sigma_bohr"] = g.long_range.sigma
    return path


def load(path) -> GridResponse:
    import h5py
    with h5py.File(path, "r") as h:
        lr = None
        if "long_range" in h:
            g = h["long_range"]
            lr = ki.LongRange(g["slope"][()], g["r"][()], float(g.attrs["sigma_bohr"]))
        return GridResponse(int(h.attrs["N"]), h["columns"][()], h["cell_bohr"][()], h["positions_bohr"][()],
                            [s.decode() if isinstance(s, bytes) else str(s) for s in h["symbols"][()]],
                            h["irreducible_q"][()], h["origin"][()], lr)
