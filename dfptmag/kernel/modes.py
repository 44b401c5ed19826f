"""Phonon modes from a dynamical matrix, displacement amplitudes, and the pattern → mode
transformation (physics.md, "Mode displacement" and "Linearity").

Units: dynamical matrix in Ry/bohr² (QE), masses in amu, frequencies in Ry (ħ = 1) and cm⁻¹,
displacements in bohr.
"""
from __future__ import annotations

import numpy as np

from ..constants import AMU_RY, RY_TO_CMM1, RY_TO_MEV, RY_TO_THZ

AMPLITUDE_KINDS = ("zero-point", "fixed")
DEGENERACY_TOL_CM1 = 0.5       # default: modes closer than this are treated as degenerate


def diagonalize(dyn: np.ndarray, atom_masses_amu: np.ndarray):
    """Mass-scale and diagonalise a Cartesian dynamical matrix (3nat, 3nat) as ph.x's dyndia.

    Returns (omega_ry, e): signed frequencies (negative = imaginary) ascending, and the
    orthonormal eigenvectors of the mass-scaled matrix as rows e[ν, 3κ+α].
    """
    dyn = 0.5 * (dyn + dyn.conj().T)
    m = np.repeat(np.asarray(atom_masses_amu, dtype=float), 3) * AMU_RY
    d = dyn / np.sqrt(np.outer(m, m))
    w2, z = np.linalg.eigh(d)
    omega = np.sign(w2) * np.sqrt(np.abs(w2))
    return omega, z.T.copy()


def is_time_reversal_invariant(q_crystal, tol: float = 1e-8) -> bool:
    """True if −q ≡ q modulo a reciprocal lattice vector (2q integer in crystal coordinates)."""
    q2 = 2.0 * np.asarray(q_crystal, dtype=float)
    return bool(np.all(np.abs(q2 - np.round(q2)) < tol))


def ry_to_cm1(omega_ry):
    return np.asarray(omega_ry) * RY_TO_CMM1


def ry_to_thz(omega_ry):
    return np.asarray(omega_ry) * RY_TO_THZ


def ry_to_mev(omega_ry):
    return np.asarray(omega_ry) * RY_TO_MEV


def displacements(e: np.ndarray, atom_masses_amu: np.ndarray, omega_ry: np.ndarray,
                  kind: str = "zero-point", amplitude_bohr: float = 0.01) -> np.ndarray:
    """Complex displacement patterns U_ν (nmode, 3nat), bohr.

    kind="zero-point": U = sqrt(ħ/(2ω)) e/sqrt(M) (one phonon quantum; NaN for ω ≤ 0).
    kind="fixed": U = amplitude_bohr · v/|v| with v = e/sqrt(M) (|U| over all atoms = amplitude).
    """
    m = np.repeat(np.asarray(atom_masses_amu, dtype=float), 3) * AMU_RY
    v = e / np.sqrt(m)[None, :]
    if kind == "zero-point":
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(omega_ry > 0, np.sqrt(1.0 / (2.0 * np.abs(omega_ry))), np.nan)
        return a[:, None] * v
    if kind == "fixed":
        return amplitude_bohr * v / np.linalg.norm(v, axis=1, keepdims=True)
    raise ValueError(f"amplitude kind must be one of {AMPLITUDE_KINDS}, not {kind!r}")


def pattern_coefficients(patterns: np.ndarray, U: np.ndarray) -> np.ndarray:
    """c[ν, μ] = u_μ† U_ν for orthonormal patterns u_μ (rows of ``patterns``)."""
    gram = patterns.conj() @ patterns.T
    if not np.allclose(gram, np.eye(len(patterns)), atol=1e-8):
        raise ValueError("displacement patterns are not orthonormal")
    return U @ patterns.conj().T


def degenerate_groups(omega_cm1: np.ndarray, tol_cm1: float = DEGENERACY_TOL_CM1) -> np.ndarray:
    """Group index per mode: modes (ascending) closer than tol_cm1 to their neighbour share a group."""
    order = np.argsort(omega_cm1)
    groups = np.empty(len(omega_cm1), dtype=int)
    g = 0
    for n, i in enumerate(order):
        if n > 0 and omega_cm1[i] - omega_cm1[order[n - 1]] > tol_cm1:
            g += 1
        groups[i] = g
    return groups


def amplitude_text(kind: str, amplitude_bohr: float) -> str:
    """The amplitude convention in words, for file attributes and reports."""
    if kind == "zero-point":
        return "zero-point amplitude: U = sqrt(hbar/(2 omega)) e/sqrt(M) (one phonon quantum)"
    return f"fixed amplitude: |U| = {amplitude_bohr} bohr over all atoms"
