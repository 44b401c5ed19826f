"""Paper Eq. 1: the one-sided charge-spin density-matrix response

    δñ^{σσ'}(r) = Σ_k w_k Σ_{i occ} u^{σ'}_{ki}(r)* δu^{σ}_{ki}(r)

accumulated one k-point at a time. Arrays are indexed [..., σ, σ'] with σ the index of δu
and σ' the index of u*. Coefficients follow QE's normalisation Σ_{G,σ}|c|² = 1, so
u(r) = Ω^{-1/2} Σ_G c(G) e^{iG·r}; cell integrals are in electrons (per unit displacement)
and real-space densities in electrons/bohr³.
"""
from __future__ import annotations

import numpy as np
import scipy.fft


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


def fft_workers() -> int:
    """Threads for scipy.fft: ``$DFPTMAG_FFT_WORKERS`` or all cores."""
    import os
    try:
        return int(os.environ.get("DFPTMAG_FFT_WORKERS", "-1"))
    except ValueError:
        return -1


class GridPlan:
    """One k-point's plane waves on the FFT box, and u(r) = Ω^{-1/2} Σ_G c(G) e^{iG·r} for a
    batch of coefficient vectors, equal to :func:`periodic_part` up to rounding (≲ 1e-15).

    miller: (npw, 3) Miller indices in the order of the coefficients to be transformed.
    """

    def __init__(self, miller: np.ndarray, shape):
        self.shape = n1, n2, n3 = tuple(int(n) for n in shape)
        i1, i2, i3 = miller[:, 0] % n1, miller[:, 1] % n2, miller[:, 2] % n3
        cols, self._stick = np.unique(i1 * n2 + i2, return_inverse=True)
        self._stick = self._stick.reshape(-1)
        self._i3 = i3
        self._planes, self._plane_of_stick = np.unique(cols // n2, return_inverse=True)
        self._plane_of_stick = self._plane_of_stick.reshape(-1)
        self._i2_of_stick = cols % n2
        self.npw, self.nsticks, self.nplanes = len(miller), len(cols), len(self._planes)

    def work_bytes(self, batch: int) -> int:
        """Peak bytes of :meth:`to_realspace` for ``batch`` vectors, the output included."""
        n1, n2, n3 = self.shape
        return 16 * batch * (self.nsticks * n3 + self.nplanes * n2 * n3 + n1 * n2 * n3)

    def to_realspace(self, coeffs: np.ndarray, omega: float, workers: int | None = None) -> np.ndarray:
        """coeffs (..., npw) → u (..., n1, n2, n3), QE's backward sign and normalisation."""
        n1, n2, n3 = self.shape
        lead = coeffs.shape[:-1]
        c = np.reshape(coeffs, (-1, self.npw))
        nb = c.shape[0]
        w = fft_workers() if workers is None else workers
        sticks = np.zeros((nb, self.nsticks, n3), dtype=np.complex128)
        sticks[:, self._stick, self._i3] = c
        sticks *= 1.0 / np.sqrt(omega)
        sticks = scipy.fft.ifft(sticks, axis=-1, norm="forward", workers=w, overwrite_x=True)
        planes = np.zeros((nb, self.nplanes, n2, n3), dtype=np.complex128)
        planes[:, self._plane_of_stick, self._i2_of_stick, :] = sticks
        del sticks
        planes = scipy.fft.ifft(planes, axis=-2, norm="forward", workers=w, overwrite_x=True)
        box = np.zeros((nb, n1, n2, n3), dtype=np.complex128)
        box[:, self._planes] = planes
        del planes
        box = scipy.fft.ifft(box, axis=-3, norm="forward", workers=w, overwrite_x=True)
        return box.reshape(lead + (n1, n2, n3))


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
