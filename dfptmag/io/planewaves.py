"""QE's plane-wave orders for one k-point, and their verification.

The collected files (wfcN.dat) list plane waves in ascending global-G-list index. ph.x's
buffers use the internal order of PW/src/gk_sort.f90: the same plane waves sorted by |k+G|²
(values ≤ eps8 set to 0) with ``hpsort_eps``, which treats values closer than eps8 = 1e-8 as
equal and then orders by the global index. Since the collected order is monotone in the global
index, the position in the collected file serves as that tie-breaker.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputFileError

EPS8 = 1e-8


def internal_order(miller: np.ndarray, xk_tpiba: np.ndarray, bg_tpiba: np.ndarray) -> np.ndarray:
    """Permutation ``perm`` with ``buffer[:, j] == collected[:, perm[j]]``.

    miller: (npw, 3) Miller indices in collected order; xk_tpiba: k in 2π/alat (Cartesian);
    bg_tpiba: rows b1..b3 in 2π/alat.
    """
    kg = xk_tpiba[None, :] + miller @ bg_tpiba
    g2 = np.einsum("ij,ij->i", kg, kg)
    g2[g2 <= EPS8] = 0.0
    order = np.argsort(g2, kind="stable")            # ties in |k+G|² keep the index order
    if len(order) < 2:
        return order
    # hpsort_eps: a run of sorted values whose neighbours differ by < eps8 is one block, ordered
    # by index. Block numbers are non-decreasing along the sorted list, so one stable sort by
    # block·n + index reorders inside the blocks only (vectorised; no Python loop over blocks).
    block = np.concatenate(([0], np.cumsum(np.diff(g2[order]) >= EPS8)))
    return order[np.argsort(block * len(order) + order, kind="stable")]


def verify_order(buffer_record: np.ndarray, collected: np.ndarray, perm: np.ndarray,
                 where: str) -> None:
    """Check that a ψ buffer record (nbnd, npol, npwx) equals the collected coefficients
    (nbnd, npol, npw) under ``perm`` bitwise; raise a clear error otherwise."""
    npw = collected.shape[-1]
    nb = collected.shape[0]
    buf = np.asarray(buffer_record[:nb, :, :npw])
    if not np.array_equal(buf, collected[:, :, perm]):
        diff = np.max(np.abs(buf - collected[:, :, perm]))
        raise InputFileError(where, f"ph.x's internal plane-wave order could not be reconstructed "
                                    f"(max |ψ_buffer − ψ_collected| = {diff:.3e}): the buffer and "
                                    "the collected wavefunctions are not from the same run, or the "
                                    "QE version sorts differently")
    if np.any(buffer_record[:nb, :, npw:]):
        raise InputFileError(where, "buffer has non-zero entries past the point's plane-wave count")


def match_miller(m1: np.ndarray, m2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i1, i2) with m1[i1] == m2[i2] row by row (common Miller triples)."""
    lo = min(m1.min(), m2.min())
    span = max(m1.max(), m2.max()) - lo + 1
    def key(m):
        return ((m[:, 0] - lo) * span + (m[:, 1] - lo)) * span + (m[:, 2] - lo)
    _, i1, i2 = np.intersect1d(key(m1), key(m2), assume_unique=True, return_indices=True)
    return i1, i2
