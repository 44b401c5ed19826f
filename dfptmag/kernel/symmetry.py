"""Space-group operations and time reversal acting on the one-sided response (pure numpy).

Notation. Crystal coordinates: a position is x (fractional, r = Aᵀx with A's rows the lattice
vectors a_i), a wavevector q_c (q = Bᵀq_c, B's rows b_i, a_i·b_j = 2π δ_ij). An operation
g = {W | w} maps x → Wx + w (W integer, as spglib returns it); in Cartesian coordinates it is
the orthogonal R = Aᵀ W A⁻ᵀ. It maps a wavevector q_c to W⁻ᵀ q_c, and atom κ to
W x_κ + w = x_κ' + L_κ (κ' = perm[κ], L_κ a lattice vector).

The response. F_q[κ, α](r) is the periodic amplitude (QE's lattice-vector phase, as
``patterns/field``) of [δn, δm_x, δm_y, δm_z] when atom κ of every cell R moves by
e_α e^{iq·R}. Carrying the perturbation and the response through g (δn a scalar, δm an axial
vector: det R · R δm; spin-orbit makes the electron spin turn with space) gives, with q' = Rq::

    F_{q'}[κ', β](r) = e^{-iq'·w} e^{iq'·L_κ} Σ_α R_{βα} T_g F_q[κ, α](g⁻¹ r),
    T_g = diag(1, det R · R)   on [δn, δm]

(the displacement index is a polar vector; the atom is permuted and picks up the lattice
phase). Time reversal maps the response to a real pattern at q onto that at −q:
F_{−q} = [conj δn, −conj δm] of F_q (ΘσΘ⁻¹ = −σ). A q' that differs from the wanted q by a
reciprocal vector G only changes the periodic part by a phase: F_{q'+G}(r) = e^{-iG·r} F_{q'}(r).

Fields are acted on in REAL SPACE, on QE's FFT grid: g⁻¹ maps grid points onto grid points
(the grid is invariant when W n/n is integer for the grid shape and w a multiple of a grid
step), so the map is an exact permutation, no interpolation. :func:`transform_cell_integrals`
does the same for the G = 0 components (cell integrals), for which only T_g and the phases
matter.
"""
from __future__ import annotations

import dataclasses

import numpy as np

TWO_PI = 2.0 * np.pi


@dataclasses.dataclass(frozen=True)
class Operation:
    """One space-group operation {W | w} in crystal coordinates, with the Cartesian R and the
    atom map: perm[κ] = κ', shift[κ] = L_κ (integer crystal vector)."""
    W: np.ndarray            # (3, 3) int
    w: np.ndarray            # (3,) fractional translation
    R: np.ndarray            # (3, 3) Cartesian, orthogonal
    perm: np.ndarray         # (nat,) int
    shift: np.ndarray        # (nat, 3) int

    @property
    def det(self) -> int:
        return int(round(np.linalg.det(self.R)))

    @property
    def proper(self) -> bool:
        return self.det > 0

    def q(self, q_c) -> np.ndarray:
        """Image of crystal wavevector q_c: W⁻ᵀ q_c."""
        return np.linalg.solve(self.W.T.astype(float), np.asarray(q_c, float))


def cartesian_rotation(W, cell) -> np.ndarray:
    """R = Aᵀ W A⁻ᵀ for the rows of ``cell`` as lattice vectors."""
    A = np.asarray(cell, float)
    return A.T @ np.asarray(W, float) @ np.linalg.inv(A.T)


def operations(rotations, translations, cell, frac_positions, numbers, tol: float = 1e-5) -> list[Operation]:
    """Operations with their atom maps, from integer rotations and fractional translations (e.g.
    spglib's ``get_symmetry``). Raises ValueError if an operation does not map the crystal onto
    itself within ``tol`` (fractional)."""
    x = np.asarray(frac_positions, float)
    numbers = np.asarray(numbers)
    out = []
    for W, w in zip(np.asarray(rotations), np.asarray(translations, float)):
        img = x @ W.T + w
        perm = np.full(len(x), -1)
        shift = np.zeros((len(x), 3), int)
        for k, y in enumerate(img):
            d = y[None, :] - x
            L = np.round(d)
            ok = np.flatnonzero((np.abs(d - L).max(axis=1) < tol) & (numbers == numbers[k]))
            if len(ok) != 1:
                raise ValueError(f"operation W={W.tolist()}, w={w.tolist()} does not map atom {k} onto one atom")
            perm[k], shift[k] = ok[0], L[ok[0]].astype(int)
        out.append(Operation(np.asarray(W, int), np.asarray(w, float), cartesian_rotation(W, cell), perm, shift))
    return out


def equivalent(q1, q2, tol: float = 1e-6) -> np.ndarray | None:
    """The integer G with q1 = q2 + G (crystal coordinates), or None."""
    d = np.asarray(q1, float) - np.asarray(q2, float)
    G = np.round(d)
    return G.astype(int) if np.abs(d - G).max() < tol else None


def _axial(op: Operation) -> np.ndarray:
    """4×4 action on [δn, δm_x, δm_y, δm_z]: 1 ⊕ det R · R."""
    T = np.zeros((4, 4))
    T[0, 0] = 1.0
    T[1:, 1:] = op.det * op.R
    return T


def grid_map(op: Operation, shape) -> tuple[np.ndarray, ...]:
    """Index arrays ``src`` such that f'(r_j) = f(g⁻¹ r_j) is ``f[src]`` for every point j of
    the grid ``shape``: g⁻¹ x = W⁻¹(x − w). Raises ValueError if g does not map the grid onto
    itself."""
    n = np.asarray(shape)
    Winv = np.rint(np.linalg.inv(op.W)).astype(int)
    wn = op.w * n
    if np.abs(wn - np.round(wn)).max() > 1e-6:
        raise ValueError(f"translation {op.w} is not a multiple of the grid step {shape}")
    idx = np.indices(tuple(n)).reshape(3, -1)                     # integer grid coordinates
    # x = i/n; W⁻¹(i/n − w) = j/n  ⇔  j = n W⁻¹ ((i − wn)/n)
    src = (n[:, None] * (Winv @ ((idx - np.round(wn)[:, None]) / n[:, None])))
    j = np.round(src)
    if np.abs(src - j).max() > 1e-6:
        raise ValueError(f"operation W={op.W.tolist()} does not map the {tuple(n)} grid onto itself")
    j = j.astype(int) % n[:, None]
    return tuple(j[d].reshape(tuple(n)) for d in range(3))


def grid_phase(G, shape) -> np.ndarray:
    """e^{-iG·r} on the grid ``shape`` for an integer crystal G: the periodic part at q + G is this
    times the periodic part at q."""
    n = np.asarray(shape)
    axes = [np.exp(-TWO_PI * 1j * G[d] * np.arange(n[d]) / n[d]) for d in range(3)]
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]


def transform(fields, q_c, op: Operation | None, time_reversal: bool = False):
    """The response at q' = ±W⁻ᵀq from that at q.

    fields: (nat, 3, 4, n1, n2, n3) complex periodic amplitudes per Cartesian displacement
    (δn, δm_x, δm_y, δm_z); or (nat, 3, 4) cell integrals (then no grid map is applied).
    op: the spatial operation (None: identity). time_reversal: apply Θ after g (q' = −Rq).
    Returns (q' in crystal coordinates, fields at q')."""
    f = np.asarray(fields)
    nat = f.shape[0]
    q_c = np.asarray(q_c, float)
    if op is None:
        qp, out = q_c.copy(), f.copy()
    else:
        qp = op.q(q_c)
        T = _axial(op)
        out = np.empty_like(f, dtype=complex)
        src = grid_map(op, f.shape[3:]) if f.ndim == 6 else None
        for k in range(nat):
            kp = op.perm[k]
            phase = np.exp(-1j * TWO_PI * qp @ op.w) * np.exp(1j * TWO_PI * qp @ op.shift[k])
            g = f[k]                                               # (3, 4, ...)
            # Σ_α R_βα  and  T on the component axis
            g = np.tensordot(op.R, g, axes=([1], [0]))             # (3β, 4, ...)
            g = np.moveaxis(np.tensordot(T, g, axes=([1], [1])), 0, 1)   # (3β, 4c, ...)
            if src is not None:
                g = g[(slice(None), slice(None)) + src]
            out[kp] = phase * g
    if time_reversal:
        qp = -qp
        out = np.conj(out)
        out[:, :, 1:] *= -1.0
    return qp, out


def shift_to(fields, q_from, q_to):
    """Re-express the periodic amplitude at q_from as that at the equivalent q_to = q_from + G:
    multiply the grid fields by e^{-iG·r} (cell integrals are unchanged: they are the G = 0 part
    of the same physical wave only when G = 0, so for them pass fields of ndim 3 and G must be 0)."""
    G = equivalent(q_to, q_from)
    if G is None:
        raise ValueError(f"{q_to} is not {q_from} plus a reciprocal-lattice vector")
    f = np.asarray(fields)
    if not G.any():
        return f
    if f.ndim != 6:
        raise ValueError("cell integrals at q and q + G differ (∫ e^{-iG·r} δñ_q): shift the grid fields")
    return f * grid_phase(G, f.shape[3:])[None, None, None]


def find_operation(ops, q_from, q_to, allow_time_reversal: bool = True):
    """An (operation, time_reversal) pair with ±W⁻ᵀ q_from ≡ q_to (mod G), preferring pure
    rotations, then time reversal alone, then improper operations; None if q_to is not in the star."""
    cands = []
    for op in ops:
        for tr in ((False, True) if allow_time_reversal else (False,)):
            qp = op.q(q_from) * (-1 if tr else 1)
            if equivalent(q_to, qp) is not None:
                ident = np.array_equal(op.W, np.eye(3, dtype=int))
                cands.append((0 if ident else 1, int(tr), 0 if op.proper else 1, op, tr))
    if not cands:
        return None
    cands.sort(key=lambda c: c[:3])
    return cands[0][3], cands[0][4]


def little_group(ops, q_c) -> list[Operation]:
    """Operations g with W⁻ᵀ q ≡ q (mod G)."""
    return [op for op in ops if equivalent(op.q(q_c), q_c) is not None]


def irreducible_grid(ops, n: tuple[int, int, int], time_reversal: bool = True):
    """Irreducible points of the Γ-centred grid n (crystal coordinates i/n), with the star of each;
    the first point met, with the first index running fastest, represents its star (so the
    hexagonal grids give (1/N, 0, 0), not (0, 1/N, 0)). Returns (irreducible q's (nirr, 3), the
    grid points (npts, 3), for every grid point the index of its irreducible q)."""
    n = np.asarray(n)
    pts = np.array([[i / n[0], j / n[1], k / n[2]] for k in range(n[2]) for j in range(n[1])
                    for i in range(n[0])])
    owner = np.full(len(pts), -1)
    irr = []
    for i, q in enumerate(pts):
        if owner[i] >= 0:
            continue
        owner[i] = len(irr)
        for op in ops:
            for s in ((1, -1) if time_reversal else (1,)):
                qp = s * op.q(q)
                for j in np.flatnonzero(owner < 0):
                    if equivalent(pts[j], qp) is not None:
                        owner[j] = len(irr)
        irr.append(q)
    return np.array(irr), pts, owner


def transform_displacement(U, q_c, op: Operation) -> np.ndarray:
    """The image of a displacement pattern U (nat, 3) at q under g, as a pattern at q' = W⁻ᵀq:
    atom κ' = perm[κ] moves by e^{-iq'·L_κ} R U_κ. For g in the little group of q (q' ≡ q) the
    lattice phases of q and q' agree, so the result is a pattern at q: a mode of definite
    parity under g returns as ±itself."""
    U = np.asarray(U)
    qp = op.q(q_c)
    out = np.empty_like(U, dtype=complex)
    for k in range(len(U)):
        out[op.perm[k]] = np.exp(-1j * TWO_PI * qp @ op.shift[k]) * (op.R @ U[k])
    return out


def transform_vector(v, op: Operation) -> np.ndarray:
    """[δn, δm] (..., 4) under g (cell integrals at a q that g leaves exactly unchanged)."""
    return np.asarray(v) @ _axial(op).T
