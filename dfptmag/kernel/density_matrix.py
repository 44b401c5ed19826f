"""Paper Eq. 1: the one-sided charge-spin density-matrix response

    δñ^{σσ'}(r) = Σ_k w_k Σ_{i occ} u^{σ'}_{ki}(r)* δu^{σ}_{ki}(r)

accumulated one k-point at a time. Arrays are indexed [..., σ, σ'] with σ the index of δu
and σ' the index of u*. Coefficients follow QE's normalisation Σ_{G,σ}|c|² = 1, so
u(r) = Ω^{-1/2} Σ_G c(G) e^{iG·r}; cell integrals are in electrons (per unit displacement)
and real-space densities in electrons/bohr³.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.fft
import scipy.linalg.blas


def g0_contribution(psi: np.ndarray, dpsi: np.ndarray, weight: float) -> np.ndarray:
    """Cell integral ∫_Ω of one k-point's contribution: w Σ_i Σ_G δc^σ(G) c^{σ'}(G)*.

    psi: (nocc, 2, ng) ψ_k coefficients; dpsi: (npat, nocc, 2, ng) δψ_{k+q} coefficients on
    the same Miller indices (the G = 0 component of u* δu only pairs equal G).
    Returns (npat, 2, 2).
    """
    npat, nocc, npol, ng = dpsi.shape
    a = dpsi.transpose(0, 2, 1, 3).reshape(npat * npol, nocc * ng)
    b = psi.transpose(1, 0, 2).reshape(npol, nocc * ng)
    return weight * (a @ b.conj().T).reshape(npat, npol, npol)


def g0_gathered(psi: np.ndarray, i_k: np.ndarray, dpsi_records, i_q: np.ndarray,
                weight: float) -> np.ndarray:
    """:func:`g0_contribution` straight from the stored arrays: ``psi`` (nocc, 2, npw_k) and
    each δψ record (nocc, 2, ≥ npw_q), e.g. memory-mapped, paired on common plane waves
    psi[..., i_k[j]] ↔ record[..., i_q[j]]. Gathers into the layout of one complex matrix
    product (no transposed copies) and returns (npat, 2, 2)."""
    nocc, npol, _ = psi.shape
    nc, npat = len(i_k), len(dpsi_records)
    a = np.empty((npat, npol, nocc, nc), dtype=np.complex128)
    for n, rec in enumerate(dpsi_records):
        np.take(rec, i_q, axis=2, out=a[n].transpose(1, 0, 2), mode="clip")
    b = np.empty((npol, nocc, nc), dtype=np.complex128)
    np.take(psi, i_k, axis=2, out=b.transpose(1, 0, 2), mode="clip")
    # (A B^H)^T = conj(B) A^T with A = a as (npat·2, nocc·nc) and B = b as (2, nocc·nc)
    c = scipy.linalg.blas.zgemm(weight, b.reshape(npol, -1).T, a.reshape(npat * npol, -1).T,
                                trans_a=2)
    return c.T.reshape(npat, npol, npol)


def coefficients_to_grid(coeffs: np.ndarray, miller: np.ndarray, shape) -> np.ndarray:
    """Place plane-wave coefficients (..., ng) on an FFT box: index (m mod n) per axis."""
    n1, n2, n3 = shape
    out = np.zeros(coeffs.shape[:-1] + (n1, n2, n3), dtype=np.complex128)
    out[..., miller[:, 0] % n1, miller[:, 1] % n2, miller[:, 2] % n3] = coeffs
    return out


def periodic_part(coeffs: np.ndarray, miller: np.ndarray, shape, omega: float) -> np.ndarray:
    """u(r) = Ω^{-1/2} Σ_G c(G) e^{iG·r} on the grid r = (i1/n1, i2/n2, i3/n3) (crystal).

    QE's backward FFT sign and normalisation (unnormalised e^{+iG·r} sum)."""
    grid = coefficients_to_grid(coeffs, miller, shape)
    n = shape[0] * shape[1] * shape[2]
    return scipy.fft.ifftn(grid, axes=(-3, -2, -1), workers=-1, overwrite_x=True) * (n / np.sqrt(omega))


def fft_threads() -> int:
    """Threads of the real-space path: ``$DFPTMAG_THREADS`` or the cores this process may use."""
    import os
    try:
        n = int(os.environ.get("DFPTMAG_THREADS", "0"))
    except ValueError:
        n = 0
    if n < 1:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n)


class GridPlan:
    """One k-point's plane waves on the FFT box, and u(r) = Ω^{-1/2} Σ_G c(G) e^{iG·r} for a
    batch of coefficient vectors, equal to :func:`periodic_part` up to rounding (≲ 1e-15).

    The box is in QE's own grid layout ("F layout": an array (B, n3, n2, n1), i1 fastest).
    :meth:`scatter`: FFT along c on the sticks only (contiguous), sticks scattered into the zeroed
    box. :meth:`finish` on a slab of c planes: FFT along b in place on the runs of i1 planes that
    hold sticks (short stride), then along a (contiguous). Slabs are independent, so they can run
    on several threads and stay in cache. :meth:`to_realspace` returns the usual
    (..., n1, n2, n3) layout.

    miller: (npw, 3) Miller indices in the order of the coefficients to be transformed.
    """

    def __init__(self, miller: np.ndarray, shape):
        self.shape = n1, n2, n3 = tuple(int(n) for n in shape)
        i1, i2, i3 = miller[:, 0] % n1, miller[:, 1] % n2, miller[:, 2] % n3
        cols, stick = np.unique(i1 * n2 + i2, return_inverse=True)
        self._stick, self._i3 = stick.reshape(-1), i3
        self._i1_of_stick, self._i2_of_stick = cols // n2, cols % n2
        planes = np.unique(self._i1_of_stick)
        cut = np.flatnonzero(np.diff(planes) > 1) + 1
        self._runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(planes, cut)]
        self.npw, self.nsticks, self.nplanes = len(miller), len(cols), len(planes)

    def work_bytes(self, batch: int) -> int:
        """Bytes of the sticks array of one :meth:`scatter` (the box not included)."""
        return 16 * batch * self.nsticks * self.shape[2]

    def scatter(self, coeffs: np.ndarray, omega: float, box: np.ndarray, conjugate: bool = False,
                weight: float = 1.0) -> None:
        """coeffs (B, npw) → the box (B, n3, n2, n1) after the c stage. With ``conjugate`` the
        transforms are forward ones of conj(c): the finished box holds weight · conj(u)."""
        n1, n2, n3 = self.shape
        c = np.reshape(coeffs, (-1, self.npw))
        nb = c.shape[0]
        if box.shape != (nb, n3, n2, n1) or not box.flags.c_contiguous or box.dtype != np.complex128:
            raise ValueError(f"box of shape {box.shape}, expected {(nb, n3, n2, n1)} C-contiguous complex128")
        sticks = np.zeros((nb, self.nsticks, n3), dtype=np.complex128)
        sticks[:, self._stick, self._i3] = c.conj() if conjugate else c
        sticks *= weight / np.sqrt(omega)
        _fft_in_place(sticks, -1, conjugate, 1)
        box.fill(0)
        box[:, :, self._i2_of_stick, self._i1_of_stick] = sticks.transpose(0, 2, 1)

    def finish(self, box: np.ndarray, slab: slice = slice(None), conjugate: bool = False,
               workers: int = 1) -> None:
        """The b and a stages on box[:, slab] (c planes), in place."""
        part = box[:, slab]
        for a, b in self._runs:
            _fft_in_place(part[..., a:b], -2, conjugate, workers)
        _fft_in_place(part, -1, conjugate, workers)

    def to_realspace(self, coeffs: np.ndarray, omega: float) -> np.ndarray:
        """coeffs (..., npw) → u (..., n1, n2, n3)."""
        lead = coeffs.shape[:-1]
        n1, n2, n3 = self.shape
        box = np.empty((int(np.prod(lead, dtype=int)), n3, n2, n1), dtype=np.complex128)
        self.scatter(coeffs, omega, box)
        self.finish(box, workers=-1)
        return np.ascontiguousarray(box.transpose(0, 3, 2, 1)).reshape(lead + self.shape)


def _fft_in_place(view: np.ndarray, axis: int, forward: bool, workers: int) -> None:
    if forward:
        out = scipy.fft.fft(view, axis=axis, workers=workers, overwrite_x=True)
    else:
        out = scipy.fft.ifft(view, axis=axis, norm="forward", workers=workers, overwrite_x=True)
    if not np.shares_memory(out, view):     # scipy transforms complex input in place
        view[...] = out


class FieldStream:
    """Eq. 1 on the FFT grid for every pattern at once, streamed over k-points.

    Memory (bytes, 16 per complex): the accumulators npat · 4 · N (they become the output) plus
    one k-point's ψ and δψ on the grid, two boxes of 2 · nocc · N, reused for every k-point and
    pattern (N = n1·n2·n3); plus a k-point's coefficients and sticks (``GridPlan.work_bytes``).
    Per k-point: w_k·conj(u_k) once, shared by all patterns; per pattern one batched transform of
    all bands and spins of δψ and the 2×2 product, slab by slab of c planes on ``threads``
    threads (each slab's transforms and product stay in cache; slabs never overlap).
    """

    def __init__(self, npat: int, nocc: int, shape, omega: float, threads: int | None = None,
                 slab_bytes: int = 8 << 20):
        self.shape, self.omega, self.nocc = tuple(int(n) for n in shape), omega, nocc
        n1, n2, n3 = self.shape
        self.acc = np.zeros((npat, 2, 2, n3, n2 * n1), dtype=np.complex128)
        self.ubox = np.empty((2 * nocc, n3, n2, n1), dtype=np.complex128)
        self.dbox = np.empty_like(self.ubox)
        per_plane = 2 * 2 * nocc * n2 * n1 * 16             # u and δu of one c plane
        step = max(1, min(n3, slab_bytes // per_plane))
        self.slabs = [slice(a, min(a + step, n3)) for a in range(0, n3, step)]
        self.threads = fft_threads() if threads is None else max(1, threads)
        self.seconds = {"psi": 0.0, "dpsi": 0.0}        # wall time: ψ transforms, δψ + product
        self._pool = None
        if self.threads > 1 and len(self.slabs) > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.threads)

    def _map(self, fn):
        if self._pool is None:
            for s in self.slabs:
                fn(s)
        else:
            list(self._pool.map(fn, self.slabs))

    def add_kpoint(self, psi: np.ndarray, miller_k: np.ndarray, dpsi_records, miller_q: np.ndarray,
                   weight: float) -> None:
        """psi (nocc, 2, npw_k); dpsi_records: per pattern (nocc, 2, npw_q) on ``miller_q``."""
        nocc = self.nocc
        n1, n2, n3 = self.shape
        t0 = time.perf_counter()
        plan_k = GridPlan(miller_k, self.shape)
        plan_k.scatter(psi, self.omega, self.ubox, conjugate=True, weight=weight)
        self._map(lambda s: plan_k.finish(self.ubox, s, conjugate=True))
        t1 = time.perf_counter()
        self.seconds["psi"] += t1 - t0
        u = self.ubox.reshape(nocc, 2, n3, n2 * n1)
        du = self.dbox.reshape(nocc, 2, n3, n2 * n1)
        plan_q = GridPlan(miller_q, self.shape)
        for n, rec in enumerate(dpsi_records):
            plan_q.scatter(rec, self.omega, self.dbox)
            acc = self.acc[n]

            def slab(s):
                plan_q.finish(self.dbox, s)
                acc[:, :, s] += np.einsum("iszr,itzr->stzr", du[:, :, s], u[:, :, s])  # noqa: B023 (run by _map below, in this iteration)
            self._map(slab)
        self.seconds["dpsi"] += time.perf_counter() - t1

    def result(self) -> np.ndarray:
        """(npat, 4, n1, n2, n3) [δn, δm_x, δm_y, δm_z] in the accumulators' memory; frees the
        boxes and threads."""
        self.ubox = self.dbox = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        npat = self.acc.shape[0]
        f_to_c_layout_in_place(self.acc.reshape(npat * 4, -1), self.shape)
        return pauli_in_place(self.acc.reshape(npat, 2, 2, -1)).reshape((npat, 4) + self.shape)


def f_to_c_layout_in_place(acc: np.ndarray, shape) -> np.ndarray:
    """(m, n3·n2·n1) grids in F layout → the same memory holding (m, n1·n2·n3) in C layout,
    one grid of scratch at a time."""
    n1, n2, n3 = shape
    for g in acc:
        g[...] = g.reshape(n3, n2, n1).T.copy().reshape(-1)
    return acc


def accumulate_realspace(acc: np.ndarray, du: np.ndarray, uc_w: np.ndarray) -> None:
    """acc[σ, σ', r] += Σ_i δu^σ_i(r) · uc_w[i, σ', r] for one pattern, in place.

    acc: (2, 2, n) accumulator; du: (nocc, 2, n); uc_w = w_k · conj(u) (nocc, 2, n), prepared once
    per k-point and shared by all patterns."""
    acc += np.einsum("isr,itr->str", du, uc_w)


def pauli_in_place(acc: np.ndarray) -> np.ndarray:
    """(npat, 2, 2, *grid) [σ, σ'] → the same memory as (npat, 4, *grid) [δn, δm_x, δm_y, δm_z]
    (bitwise what :func:`dfptmag.kernel.pauli.pauli_from_matrix` gives, without a second copy)."""
    for r in acc:
        r00, r01, r10, r11 = r[0, 0], r[0, 1], r[1, 0], r[1, 1]
        t = r00.copy()
        r00 += r11                      # δn   = ρ↑↑ + ρ↓↓
        np.subtract(t, r11, out=r11)    # δm_z = ρ↑↑ − ρ↓↓
        np.copyto(t, r01)
        r01 += r10                      # δm_x = ρ↑↓ + ρ↓↑
        np.subtract(t, r10, out=r10)
        r10 *= 1j                       # δm_y = i(ρ↑↓ − ρ↓↑)
    return acc.reshape(acc.shape[0], 4, *acc.shape[3:])


def realspace_contribution(u: np.ndarray, du: np.ndarray, weight: float) -> np.ndarray:
    """w Σ_i δu^σ_i(r) u^{σ'}_i(r)*: u (nocc, 2, *grid), du (npat, nocc, 2, *grid)
    → (npat, 2, 2, *grid)."""
    return weight * np.einsum("pis...,it...->pst...", du, u.conj(), optimize=True)
