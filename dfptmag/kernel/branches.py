"""Connect phonon modes across q into branches by eigenvector overlap, not by frequency order.

Each branch carries a reference vector. At the next q the modes are assigned to branches by a
maximum-overlap matching (Hungarian algorithm) of |⟨ref_b|e_ν⟩|², where a degenerate subspace
is scored as a whole (Σ over its members), since inside it the eigenvectors are arbitrary.
After the assignment the reference of a branch becomes its new eigenvector, or, inside a
degenerate subspace, the projection of the old reference onto that subspace — so a branch keeps
its character through a degeneracy (e.g. at Γ or at a crossing) instead of picking an arbitrary
basis vector. Pure functions: arrays in, arrays out.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


TIE_BREAK = 1e-3


def _projector_overlaps(ref: np.ndarray, e: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """S[b, ν] = Σ_{ν' in group(ν)} |⟨ref_b|e_ν'⟩|² + TIE_BREAK·|⟨ref_b|e_ν⟩|².

    The subspace term makes the matching independent of the basis inside a degenerate group;
    the small individual term decides inside the group when its eigenvectors do have distinct
    characters (modes closer than the tolerance but not truly degenerate, e.g. at a crossing)."""
    ov = np.abs(ref.conj() @ e.T) ** 2            # (nbranch, nmode)
    s = TIE_BREAK * ov
    for g in np.unique(groups):
        sel = groups == g
        s[:, sel] += ov[:, sel].sum(axis=1, keepdims=True)
    return s


def match(ref: np.ndarray, e: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every mode ν of ``e`` the row of ``ref`` it continues (maximum total overlap, degenerate
    groups of ``e`` scored as subspaces), and the matched overlap."""
    s = _projector_overlaps(ref, e, np.asarray(groups))
    rows, cols = linear_sum_assignment(-s)
    which = np.empty(len(e), dtype=int)
    score = np.empty(len(e))
    which[cols] = rows
    score[cols] = s[rows, cols] / (1 + TIE_BREAK)
    return which, score


def track(eigvecs: np.ndarray, groups: np.ndarray, breaks=()) -> tuple[np.ndarray, np.ndarray]:
    """Branch index of every mode along a path.

    eigvecs: (nq, nmode, ndof) complex, rows orthonormal at every q (mass-scaled eigenvectors).
    groups: (nq, nmode) degenerate-group ids per q.
    breaks: indices where a disconnected segment starts (tracking restarts from the previous
    point's references anyway: there is nothing better to compare with).

    Returns (branch, score): branch[iq, ν] = branch of mode ν at iq (at iq = 0, branch = ν);
    score[iq, ν] = the matched overlap (1 = identical character, small = ambiguous step).
    """
    eigvecs = np.asarray(eigvecs)
    nq, nmode, _ = eigvecs.shape
    branch = np.empty((nq, nmode), dtype=int)
    score = np.ones((nq, nmode))
    branch[0] = np.arange(nmode)
    ref = eigvecs[0].copy()                       # ref[b] for branch b
    for iq in range(1, nq):
        branch[iq], score[iq], ref = _step(ref, eigvecs[iq], np.asarray(groups[iq]))
    return branch, score


def _step(ref: np.ndarray, e: np.ndarray, g: np.ndarray):
    """One tracking step from the branch references ``ref`` to the modes ``e`` (groups ``g``):
    (branch of every mode, its matched overlap, the new references)."""
    branch, score = match(ref, e, g)
    new_ref = np.empty_like(ref)
    for nu, b in enumerate(branch):
        sel = g == g[nu]
        if sel.sum() == 1:
            new_ref[b] = e[nu]
        else:                                 # project the old character onto the subspace
            sub = e[sel]
            v = sub.T @ (sub.conj() @ ref[b])
            n = np.linalg.norm(v)
            new_ref[b] = v / n if n > 1e-8 else e[nu]
    return branch, score, new_ref


def grid_neighbours(ij: np.ndarray) -> list[list[int]]:
    """The 4-neighbours of every point of a set of integer grid coordinates ``ij`` (npt, 2)."""
    where = {tuple(p): n for n, p in enumerate(np.asarray(ij, int).tolist())}
    return [[where[q] for q in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)) if q in where]
            for i, j in np.asarray(ij, int).tolist()]


def track_tree(eigvecs: np.ndarray, groups: np.ndarray, neighbours, start=0):
    """Branch index of every mode over a connected set of q (a 2D sampling of the zone), by the
    same overlap steps as :func:`track`, along the breadth-first forest from ``start`` (a point
    index, or several) over ``neighbours`` (lists of point indices). At the start points branch =
    mode index (ascending ω): give several only where ascending ω is a consistent labelling (a
    small ring round Γ, where the acoustic and optical branches do not cross).

    Around a point where two branches of the same symmetry touch (a conical intersection) the
    character of a branch depends on the way round it, so no labelling is continuous everywhere:
    the tree puts the seam where its two sides meet; ``score`` (the matched overlap of each
    point's step from its tree parent) is low there. Returns (branch, score, parent), parent = −1
    at the start points and at points the tree does not reach (branch −1, score NaN there)."""
    eigvecs = np.asarray(eigvecs)
    nq, nmode, _ = eigvecs.shape
    branch = np.full((nq, nmode), -1)
    score = np.full((nq, nmode), np.nan)
    parent = np.full(nq, -1)
    starts = [int(i) for i in np.atleast_1d(start)]
    refs = {i: eigvecs[i].copy() for i in starts}
    branch[starts], score[starts] = np.arange(nmode), 1.0
    queue, seen = list(starts), set(starts)
    while queue:
        nxt = []
        for p in queue:
            for c in neighbours[p]:
                if c in seen:
                    continue
                seen.add(c)
                parent[c] = p
                branch[c], score[c], refs[c] = _step(refs[p], eigvecs[c], np.asarray(groups[c]))
                nxt.append(c)
        queue = nxt
    return branch, score, parent


def seams(eigvecs: np.ndarray, groups: np.ndarray, neighbours, branch: np.ndarray,
          threshold: float = 0.5) -> np.ndarray:
    """(nq,) bool: points with a neighbour across which some branch of the labelling ``branch``
    (from :func:`track_tree`) changes character — its overlap between the two points (degenerate
    groups scored as subspaces) is below ``threshold``. That is the seam where the tree's sides
    meet and branches exchange; steps along the tree itself are the ``score`` of track_tree."""
    eigvecs = np.asarray(eigvecs)
    out = np.zeros(len(eigvecs), dtype=bool)
    for p, nb in enumerate(neighbours):
        for c in nb:
            if c < p or branch[p, 0] < 0 or branch[c, 0] < 0:
                continue
            s = _projector_overlaps(eigvecs[p], eigvecs[c], np.asarray(groups[c])) / (1 + TIE_BREAK)
            mode_at_p = np.argsort(branch[p])                # mode at p of branch b
            if np.any(s[mode_at_p[branch[c]], np.arange(len(branch[c]))] < threshold):
                out[p] = out[c] = True
    return out


def by_branch(values: np.ndarray, branch: np.ndarray) -> np.ndarray:
    """Reorder per-mode values (nq, nmode, ...) into per-branch values: out[iq, b] = values[iq, ν]
    with branch[iq, ν] = b."""
    out = np.empty_like(values)
    for iq in range(len(values)):
        out[iq, branch[iq]] = values[iq]
    return out


def per_branch(values: np.ndarray, branch: np.ndarray, computed: np.ndarray) -> np.ndarray:
    """(nq, nbranch, ...) values reordered by branch, NaN at the q-points not computed."""
    values = np.asarray(values)
    out = np.full(values.shape, np.nan, dtype=np.result_type(values.dtype, float))
    computed = np.asarray(computed, dtype=bool)
    out[computed] = by_branch(values[computed], np.asarray(branch)[computed])
    return out


def mirror_parity(eigvecs: np.ndarray, positions: np.ndarray, z0: float, tol: float = 1e-3) -> np.ndarray:
    """⟨e|σ_h|e⟩ for the horizontal mirror z → 2 z0 − z: +1 for even (in-plane-like) modes, −1
    for odd (flexural-like) ones.

    eigvecs: (..., nat·3) complex; positions: (nat, 3) Cartesian with in-plane x, y (atoms that
    differ by a lattice vector must be given in the same cell); z0: the mirror plane.
    Raises ValueError if the structure has no such mirror.
    """
    pos = np.asarray(positions, dtype=float)
    mirrored = pos * np.array([1.0, 1.0, -1.0]) + np.array([0.0, 0.0, 2.0 * z0])
    d = np.linalg.norm(mirrored[:, None, :] - pos[None, :, :], axis=-1)
    partner = np.argmin(d, axis=1)
    if np.any(d[np.arange(len(pos)), partner] > tol):
        raise ValueError("structure has no horizontal mirror plane at z0")
    nat = len(pos)
    e = np.asarray(eigvecs).reshape(eigvecs.shape[:-1] + (nat, 3))
    me = e[..., partner, :] * np.array([1.0, 1.0, -1.0])
    return np.real(np.sum(e.conj() * me, axis=(-2, -1)))
