"""The time-odd (velocity-driven) response: χ_n from the static δψ_n and the empty states.

For a lattice perturbation ΔV_q at frequency ω the first-order density matrix is

    δρ_q(ω) = Σ_{n occ, m empty} [ |m⟩⟨m|ΔV_q|n⟩⟨n| / (ε_n − ε_m + ħω)
                                 + |n⟩⟨n|ΔV_q|m⟩⟨m| / (ε_n − ε_m − ħω) ].

To first order in ħω the first term is |δψ_n⟩⟨n| − ħω |χ_n⟩⟨n| with ph.x's static
δψ_n = Σ_m |m⟩⟨m|ΔV|n⟩/(ε_n − ε_m) and

    χ_n = Σ_m |m⟩⟨m|ΔV|n⟩/(ε_n − ε_m)² = Σ_m |m⟩⟨m|δψ_n⟩/(ε_n − ε_m) = (ε_n − H)⁻¹ P_c δψ_n,

so χ_n follows from δψ_n and the empty states at k + q alone (docs/theory.md derives the rest:
the partner term, the time-reversal law and the units). This module is the pure algebra on one
k-point's plane-wave coefficients; energies in Ry, coefficients normalised as QE's
(Σ_{G,σ}|c|² = 1), so χ is in units of δψ per Ry.

With a finite set of empty states the sum stops at the highest computed band. The remainder
r_n = δψ_n − Σ_{m≤M} |m⟩⟨m|δψ_n⟩ (δψ_n is orthogonal to the occupied states: ph.x solves in
the conduction subspace) is known exactly; the closure gives it one energy,
χ_n += r_n / (ε_n − ε̄_n), with ε̄_n the energy of r_n estimated from its kinetic energy plus
the potential offset ⟨ε_m − T_m⟩ of the highest computed bands (high-lying states are nearly
plane waves shifted by the mean potential).
"""
from __future__ import annotations

import dataclasses

import numpy as np

CLOSURES = ("none", "kinetic")
TOP_BANDS_FOR_OFFSET = 8        # highest computed bands that calibrate the closure's potential offset


@dataclasses.dataclass
class ChiResult:
    chi_sum: np.ndarray         # (npat, nocc, 2, npw) Σ_{m≤M} |m⟩⟨m|δψ_n⟩/(ε_n − ε_m), per Ry
    tail: np.ndarray | None     # (npat, nocc, 2, npw) the closure's r_n/(ε_n − ε̄_n), None without one
    projected: np.ndarray       # (npat, nocc, 2, npw) Σ_{m≤M} |m⟩⟨m|δψ_n⟩ (unit weights)
    residual_norm2: np.ndarray  # (npat, nocc) ‖r_n‖², r_n = δψ_n − Σ_{m≤M}|m⟩⟨m|δψ_n⟩
    dpsi_norm2: np.ndarray      # (npat, nocc) ‖δψ_n‖²
    tail_energy: np.ndarray | None   # (npat, nocc) ε̄_n of the closure (Ry), None without one

    @property
    def chi(self) -> np.ndarray:
        """χ_n: the sum over the computed states plus the closure's tail."""
        return self.chi_sum if self.tail is None else self.chi_sum + self.tail


def chi_from_empty_states(dpsi: np.ndarray, empty: np.ndarray, eps_occ: np.ndarray, eps_empty: np.ndarray,
                          closure: str = "kinetic", kinetic: np.ndarray | None = None) -> ChiResult:
    """χ_n for every pattern and occupied band of one k-point.

    dpsi: (npat, nocc, 2, npw) static δψ_n at k + q; empty: (nemp, 2, npw) orthonormal empty
    states at k + q on the same plane waves; eps_occ (nocc,) ε_n at k and eps_empty (nemp,) ε_m at
    k + q, Ry; kinetic: (npw,) |k + q + G|² in Ry (needed by the "kinetic" closure)."""
    if closure not in CLOSURES:
        raise ValueError(f"closure {closure!r}: expected one of {CLOSURES}")
    npat, nocc, npol, npw = dpsi.shape
    nemp = empty.shape[0]
    if empty.shape[1:] != (npol, npw) or len(eps_occ) != nocc or len(eps_empty) != nemp:
        raise ValueError(f"shapes: δψ {dpsi.shape}, empty {empty.shape}, ε {len(eps_occ)}, {len(eps_empty)}")
    gap = float(np.min(eps_empty) - np.max(eps_occ))
    if gap <= 0:
        raise ValueError(f"empty states overlap the occupied ones in energy (gap {gap:.4g} Ry)")
    E = empty.reshape(nemp, npol * npw)
    D = dpsi.reshape(npat * nocc, npol * npw)
    C = E.conj() @ D.T                                             # (nemp, npat·nocc): ⟨m|δψ_n⟩
    inv = 1.0 / (eps_occ[None, :] - eps_empty[:, None])            # (nemp, nocc)
    W = (C.reshape(nemp, npat, nocc) * inv[:, None, :]).reshape(nemp, npat * nocc)
    chi = (E.T @ W).T
    projected = (E.T @ C).T
    d2 = np.einsum("ij,ij->i", D.conj(), D).real
    R = D - projected                     # formed directly: ‖δψ‖² − Σ|⟨m|δψ⟩|² loses its digits
    r2 = np.einsum("ij,ij->i", R.conj(), R).real
    tail = tail_energy = None
    if closure == "kinetic":
        if kinetic is None or len(kinetic) != npw:
            raise ValueError("the kinetic closure needs |k+q+G|² on the plane waves")
        T = np.tile(np.asarray(kinetic, float), npol)
        top = slice(max(0, nemp - TOP_BANDS_FOR_OFFSET), nemp)
        t_top = np.einsum("mj,j,mj->m", E[top].conj(), T, E[top]).real
        offset = float(np.mean(eps_empty[top] - t_top))
        with np.errstate(invalid="ignore", divide="ignore"):
            t_r = np.einsum("ij,j,ij->i", R.conj(), T, R).real / r2
        # the remainder lives above the computed bands: never let its energy fall below them
        ebar = np.maximum(np.nan_to_num(t_r + offset, nan=eps_empty[-1]), eps_empty[-1])
        eps_n = np.tile(eps_occ, npat)
        tail = (R / (eps_n - ebar)[:, None]).reshape(npat, nocc, npol, npw)
        tail_energy = ebar.reshape(npat, nocc)
    shape = (npat, nocc, npol, npw)
    return ChiResult(chi.reshape(shape), tail, projected.reshape(shape), r2.reshape(npat, nocc),
                     d2.reshape(npat, nocc), tail_energy)


__all__ = ["chi_from_empty_states", "ChiResult", "CLOSURES"]
