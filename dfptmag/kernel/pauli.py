"""Paper Eq. 2 in QE's convention: δñ = ½(δn σ0 + δm·σ), i.e. δn = Tr δñ and
δm_α = Tr(σ_α δñ) (μB per electron spin). The paper's δñ^α components are half of these.

With δñ^{σσ'} = Σ u^{σ'}* δu^{σ} stored as [..., σ, σ'], Tr(σ_α δñ) = Σ (σ_α)_{σ'σ} δñ^{σσ'}
= Σ u† σ_α δu.
"""
from __future__ import annotations

import numpy as np

SIGMA = np.array([
    [[1, 0], [0, 1]],
    [[0, 1], [1, 0]],
    [[0, -1j], [1j, 0]],
    [[1, 0], [0, -1]],
], dtype=complex)

COMPONENTS = ("n", "m_x", "m_y", "m_z")


def pauli_from_matrix(rho: np.ndarray) -> np.ndarray:
    """rho: (npat, 2, 2, *rest) → (npat, 4, *rest) holding [δn, δm_x, δm_y, δm_z]."""
    return np.einsum("ats,pst...->pa...", SIGMA, rho)


def matrix_from_pauli(comp: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pauli_from_matrix`: (npat, 4, *rest) → (npat, 2, 2, *rest)."""
    # Tr(σ_a σ_b) = 2 δ_ab, so δñ = ½ Σ_a c_a σ_a
    return 0.5 * np.einsum("ast,pa...->pst...", SIGMA, comp)
