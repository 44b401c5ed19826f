"""The one-displaced-atom response on an N×N supercell and its Fourier transform at any q
(pure numpy).

Physics. With QE's lattice-vector phase, the periodic amplitude at q of the response to atom κ of
every cell R moving by e_α e^{iq·R} is

    F_q[κα](r) = Σ_R e^{-iq·(r−R)} δñ⁽⁰⁾_{κα}(r − R),

where δñ⁽⁰⁾_{κα} is the response to ONE displaced atom (κ in the cell at the origin). Its cell
integral is the continuous Fourier transform F_{κα}(q) = ∫ e^{-iq·r} δñ⁽⁰⁾_{κα}(r) d³r, smooth in q
for a localized δñ⁽⁰⁾ but NOT periodic in the reciprocal lattice (F(q + G) ≠ F(q)).

From the fields at the N×N Γ-centred grid q_m = m/N (crystal), the inverse lattice transform
(q2r.x's, applied to fields) gives δñ⁽⁰⁾ folded onto the N×N supercell,
δñ_sc(x + l) = N⁻² Σ_m e^{iq_m·(x+l)} F_{q_m}(x) (x in the unit cell, l ∈ [0, N)²). Each supercell
point is then placed at its Wigner–Seitz image(s) around the displaced atom κ (closest to τ_κ in
the plane; a point equidistant from several images is shared equally among them, as q2r.x/matdyn.x
do for force constants), and

    F_{κα}(q) = Σ_points Σ_images w e^{-iq·(r + N s)} δñ_sc(r).

Exact on the grid (q_m·N s ∈ 2πℤ and the weights of each point sum to 1).

Only in-plane q are used (a 2D crystal), so e^{-iq·r} does not depend on z: the fields enter
through their z-integrals ("columns") on the in-plane FFT grid, n1 × n2 numbers per cell and
component. Cost of a direct sum: O(n_q · N² n1 n2 · 12 nat) complex multiply-adds — for the
converged WSe2 settings (32×32 in-plane FFT grid, N = 6, nat = 3) about 1.3·10⁶ per q, i.e.
~1 s for 500 q-points in numpy; no non-uniform FFT is needed. Building the columns reads each
field once (O(N² · 9·4 · n1 n2 n3)).

The same code with one point per cell at the origin (n1 = n2 = 1) is the plain lattice Fourier
series of the cell integrals (what q2r.x/matdyn.x do for force constants), kept for comparison.

Long-range part (:class:`LongRange`). A term of F(k) that is not analytic at k = 0 makes δñ⁽⁰⁾
long-ranged and is rounded off by any Fourier interpolation. As matdyn.x does for the dipolar force
constants, a model of it, F_LR, is subtracted from the columns at every q_m + G before the
supercell is built (the 2D discrete Fourier component G of the columns at q_m is F(q_m + G)) and
added back in :meth:`SupercellResponse.evaluate`; the grid values stay exact. The model is a linear
term screened in two dimensions, F_LR(k) = Σ_β L_β k_β e^{−σ²k²} / (1 + r|k|) per atom,
displacement and component (its non-analytic part is −r|k| L·k at small k), with the Gaussian
damping of matdyn.x (σ = a/4π is its alpha = 1) so that only small |q + G| carry it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

TWO_PI = 2.0 * np.pi


def columns(fields, omega: float) -> np.ndarray:
    """z-integrals of grid fields (..., n1, n2, n3) → (..., n1, n2): the amount in each
    column of the cell (electrons or μB per bohr of displacement), Σ = cell integral."""
    f = np.asarray(fields)
    n = f.shape[-3:]
    return f.sum(axis=-1) * (omega / float(np.prod(n)))


def grid_points(N: int) -> np.ndarray:
    """The Γ-centred N×N in-plane grid, crystal coordinates (N², 3), m1 slow."""
    m = np.array([(i, j) for i in range(N) for j in range(N)], float) / N
    return np.column_stack([m, np.zeros(len(m))])


@dataclasses.dataclass
class LongRange:
    """F_LR(k) = Σ_β slope[κ, α, c, β] k_β e^{−σ²|k|²} / (1 + r[κ, α, c] |k|), k the in-plane
    Cartesian wavevector (1/bohr). slope: (nat, 3, 4, 2) complex, e or μB per bohr of displacement
    per (1/bohr); r: (nat, 3, 4) screening lengths in bohr (slope 0 where nothing is separated);
    sigma: damping length in bohr."""
    slope: np.ndarray
    r: np.ndarray
    sigma: float

    def __call__(self, k_cart) -> np.ndarray:
        """F_LR at in-plane Cartesian k (..., 2): (..., nat, 3, 4)."""
        k = np.asarray(k_cart, float)
        nk = np.linalg.norm(k, axis=-1)[..., None, None, None]
        lin = np.tensordot(k, np.asarray(self.slope), axes=([-1], [-1]))
        return lin * np.exp(-(nk * self.sigma) ** 2) / (1.0 + np.asarray(self.r) * nk)


def reciprocal_2d(cell2d) -> np.ndarray:
    """Rows b1, b2 (1/bohr) of the in-plane reciprocal lattice of (2, 2) lattice vectors (rows)."""
    return TWO_PI * np.linalg.inv(np.asarray(cell2d, float)).T


def subtract_long_range(cols, N: int, cell2d, lr: LongRange) -> np.ndarray:
    """The columns (N, N, nat, 3, ncomp, n1, n2) minus F_LR at every q_m + G: the 2D discrete
    Fourier component G of the columns at q_m is F(q_m + G) (fft2's sign), G over the whole
    n1 × n2 set of the FFT grid."""
    cols = np.asarray(cols)
    n1, n2 = cols.shape[-2:]
    B2 = reciprocal_2d(cell2d)
    C = np.fft.fft2(cols, axes=(-2, -1))
    g1, g2 = np.fft.fftfreq(n1, 1.0 / n1), np.fft.fftfreq(n2, 1.0 / n2)
    for i in range(N):
        for j in range(N):
            qc = np.stack(np.meshgrid(i / N + g1, j / N + g2, indexing="ij"), -1)      # (n1, n2, 2)
            C[i, j] -= np.moveaxis(lr(qc @ B2), (0, 1), (-2, -1))
    return np.fft.ifft2(C, axes=(-2, -1))


@dataclasses.dataclass
class SupercellResponse:
    """δñ⁽⁰⁾ on Wigner–Seitz images around each displaced atom.

    points[κ]: (np, 2) in-plane crystal coordinates of every image; weights[κ]: (np,);
    values[κ]: (np, 3, ncomp) the response per bohr of displacement along α (columns, i.e.
    already integrated over z and the column area); long_range: the part subtracted before the
    supercell was built (None: nothing), added back by :meth:`evaluate`."""
    N: int
    points: list
    weights: list
    values: list
    cell2d: np.ndarray          # (2, 2) in-plane lattice vectors (rows), bohr
    long_range: LongRange | None = None

    def evaluate(self, q_crystal) -> np.ndarray:
        """F_{κα}(q) for q (nq, 3) or (3,) in crystal coordinates: (nq, nat, 3, ncomp)."""
        q = np.atleast_2d(np.asarray(q_crystal, float))[:, :2]
        out = []
        for p, w, v in zip(self.points, self.weights, self.values):
            # chunks of q bound the (nq, np) phase matrix: ~64 MB at np = 4·10⁴ points
            step = max(1, int(4e6 // max(len(p), 1)))
            parts = []
            for i in range(0, len(q), step):
                ph = np.exp(-TWO_PI * 1j * (q[i:i + step] @ p.T)) * w[None, :]   # (chunk, np)
                parts.append(np.tensordot(ph, v, axes=([1], [0])))              # (chunk, 3, ncomp)
            out.append(np.concatenate(parts, axis=0) if parts else np.zeros((0,) + v.shape[1:], v.dtype))
        res = np.stack(out, axis=1)
        if self.long_range is not None:
            res = res + self.long_range(q @ reciprocal_2d(self.cell2d))
        return res if np.ndim(q_crystal) > 1 else res[0]

    def radial_profile(self, bins):
        """Σ|δñ⁽⁰⁾| per component in distance shells from the displaced atom: (nat, nbins, ncomp),
        summed over α; distances in bohr. For the locality plot."""
        out = []
        for p, w, v in zip(self.points, self.weights, self.values):
            d = np.linalg.norm(p @ self.cell2d, axis=1)
            idx = np.digitize(d, bins) - 1
            acc = np.zeros((len(bins) - 1, v.shape[-1]))
            amp = np.abs(v).sum(axis=1) * w[:, None]
            for b in range(len(bins) - 1):
                acc[b] = amp[idx == b].sum(axis=0)
            out.append(acc)
        return np.array(out)


def build(cols, N: int, cell, tau_crystal, ws_tol: float = 1e-6, reach: int = 2,
          long_range: LongRange | None = None) -> SupercellResponse:
    """The supercell response from the columns at the N×N grid (with ``long_range``: of the
    columns minus F_LR, which :meth:`SupercellResponse.evaluate` adds back).

    cols: (N, N, nat, 3, ncomp, n1, n2) periodic amplitudes' columns at q = (m1/N, m2/N, 0), in
    the lattice-vector phase convention (as ``patterns/field``, rotated to Cartesian
    displacements); cell: (3, 3) lattice vectors (rows, bohr); tau_crystal: (nat, 3) fractional
    atomic positions (the Wigner–Seitz centres)."""
    cols = np.asarray(cols)
    if cols.shape[:2] != (N, N):
        raise ValueError(f"columns for a {cols.shape[:2]} grid, expected ({N}, {N})")
    A2 = np.asarray(cell, float)[:2, :2]
    if long_range is not None:
        cols = subtract_long_range(cols, N, A2, long_range)
    nat, n1, n2 = cols.shape[2], cols.shape[-2], cols.shape[-1]
    x1 = np.arange(n1) / n1
    x2 = np.arange(n2) / n2
    m = np.arange(N) / N
    # e^{iq·x} F_q(x), then the inverse DFT over m gives the sum over q of e^{iq·l} (…)/N²
    phase = np.exp(TWO_PI * 1j * (m[:, None, None, None] * x1[None, None, :, None]
                                  + m[None, :, None, None] * x2[None, None, None, :]))   # (N, N, n1, n2)
    g = cols * phase[:, :, None, None, None, :, :]
    sc = np.fft.ifft2(g, axes=(0, 1))                 # index (l1, l2): e^{+2πi m·l/N}/N²
    # supercell points in crystal coordinates: (l1 + x1, l2 + x2)
    L1, L2, X1, X2 = np.meshgrid(np.arange(N), np.arange(N), x1, x2, indexing="ij")
    pts = np.column_stack([(L1 + X1).ravel(), (L2 + X2).ravel()])                 # (N²n1n2, 2)
    vals = np.moveaxis(sc, (2, 3, 4), (0, 1, 2)).reshape(nat, 3, sc.shape[4], -1)  # (nat, 3, c, P)
    shifts = np.array([(a, b) for a in range(-reach, reach + 1) for b in range(-reach, reach + 1)]) * N
    points, weights, values = [], [], []
    for k in range(nat):
        rel = pts[:, None, :] + shifts[None, :, :] - np.asarray(tau_crystal, float)[k, :2]
        d = np.linalg.norm(rel @ A2, axis=2)                                      # (P, S)
        dmin = d.min(axis=1, keepdims=True)
        near = d <= dmin + ws_tol * max(1.0, float(dmin.max()))
        nimg = near.sum(axis=1)
        ip, isf = np.nonzero(near)
        points.append(pts[ip] + shifts[isf])
        weights.append(1.0 / nimg[ip])
        values.append(np.moveaxis(vals[k][:, :, ip], 2, 0))                      # (np, 3, c)
    return SupercellResponse(N, points, weights, values, A2, long_range)


def lattice_series(cell_integrals, N: int, cell, tau_crystal) -> SupercellResponse:
    """The plain lattice Fourier series of the cell integrals (N, N, nat, 3, ncomp): the whole
    response of each cell put at its origin, Wigner–Seitz images around the displaced atom."""
    c = np.asarray(cell_integrals)
    return build(c[..., None, None], N, cell, tau_crystal)
