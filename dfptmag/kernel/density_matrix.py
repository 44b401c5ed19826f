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


def realspace_contribution(u: np.ndarray, du: np.ndarray, weight: float) -> np.ndarray:
    """w Σ_i δu^σ_i(r) u^{σ'}_i(r)*: u (nocc, 2, *grid), du (npat, nocc, 2, *grid)
    → (npat, 2, 2, *grid)."""
    return weight * np.einsum("pis...,it...->pst...", du, u.conj(), optimize=True)
