"""The 2D Brillouin zone sampled on a square Cartesian grid (the BZ maps of ``bands --interpolate``)
and its phonon branches, tracked between grid neighbours by eigenvector overlap."""
from __future__ import annotations

import numpy as np

from . import branches as kb


def bz_sampling(cell_bohr, n: int = 40, with_index: bool = False):
    """Crystal coordinates of a Cartesian n×n-ish sampling of the first Brillouin zone (Wigner–Seitz
    cell of the in-plane reciprocal lattice), boundary included; with ``with_index`` also the
    integer (i, j) of every point on the square grid (for branch tracking between neighbours)."""
    B = 2 * np.pi * np.linalg.inv(np.asarray(cell_bohr, float)).T[:2, :2]      # rows b1, b2 (1/bohr)
    gmax = np.abs(B).max() * 0.75
    xs = np.linspace(-gmax, gmax, n)
    ij = np.array([(i, j) for i in range(n) for j in range(n)])
    pts = xs[ij]
    G = np.array([i * B[0] + j * B[1] for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)])
    inside = np.all(pts @ G.T <= 0.5 * np.sum(G * G, axis=1)[None, :] * (1 + 1e-9), axis=1)
    pts = pts[inside]
    qc = pts @ np.linalg.inv(B)
    q = np.column_stack([qc, np.zeros(len(qc))])
    return (q, ij[inside]) if with_index else q


BZ_START_POINTS = 8     # the BZ labelling starts from the 8 sampled q nearest Γ, by ascending ω there


def bz_branches(q_crystal, ij, eig, groups, cell):
    """Branch tracking over the BZ sampling (kernel.branches.track_tree): branches are numbered by
    ascending ω on the ring of the BZ_START_POINTS sampled q nearest Γ (Γ itself excluded: its
    acoustic modes have ω = 0), and followed outward by eigenvector overlap. Returns (branch,
    overlap) per point and mode, and the seam points (kernel.branches.seams). ``cell``: rows a_i,
    any length unit (only the ordering by |q| is used)."""
    B = np.linalg.inv(np.asarray(cell, float)).T[:2, :2]
    r = np.linalg.norm(np.asarray(q_crystal)[:, :2] @ B, axis=1)
    order = [i for i in np.argsort(r) if r[i] > 1e-9 * r.max()]
    nb = kb.grid_neighbours(ij)
    branch, score, _ = kb.track_tree(eig, groups, nb, order[:BZ_START_POINTS])
    return branch, score, kb.seams(eig, groups, nb, branch)
