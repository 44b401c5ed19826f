"""Closed forms for the paper's special cases (ε1 = 0, q-independent couplings), derived from
the same model as :mod:`dfptmag.model.core` and used to check its general 2×2 formulas.

With ε1 = 0 the bath-averaged exchange loop is scalar, Σ̃ = Σ̃0 σ0, and Σ = Σ̃0 U².

* u1 = u0 x̂: U² = 2u0²(σ0 + σx), so with P± = ½(σ0 ± σx)
      G = P+ / (z − ε0 − 4u0² Σ̃0) + P− / (z − ε0)                      (cf. paper Eq. 13)
  and the moment along x is M = ∫ f(ω) [A_int(ω) − A_free(ω)] dω, A = −Im g/π (cf. Eq. 14).
  The paper prints the two projectors the other way round (equivalent to u1 = −u0 x̂, or to a
  moment m = −σ) and the integral with dω/4π: with dω/2π the two branches cancel at high
  temperature, as the paper's text says they must.

* u1 = u0 (x̂ + ẑ): U² = u0²(3σ0 + 2√2 σ_n), σ_n = (σx + σz)/√2, so
      G = Σ_s ¼ (2σ0 + s√2(σx + σz)) / (z − ε0 − (3 + 2√2 s) u0² Σ̃0)      (paper Eq. 15, as printed)
  and m = M (x̂ + ẑ) with M = Σ_s (s/√2) ∫ f(ω) A_s(ω) dω (cf. Eq. 16, which prints a prefactor
  √2/4 and no Im).
"""
from __future__ import annotations

import numpy as np

from ..kernel.pauli import SIGMA
from .core import Model, fermi


def _sigma0(model: Model, omega, kT):
    if np.any(np.asarray(model.level.eps1) != 0):
        raise ValueError("closed forms need ε1 = 0")
    return model.sigma_tilde(omega, kT)[:, 0, 0]


def _spectral(g):
    return -np.imag(g) / np.pi


def green_u1_x(model: Model, omega, kT):
    """u1 = u0 x̂: (G (nω, 2, 2), g_int, g_free)."""
    u0 = model.u0
    z = model._z(omega)
    s0 = _sigma0(model, omega, kT)
    g_int = 1.0 / (z - model.level.eps0 - 4 * u0 ** 2 * s0)
    g_free = 1.0 / (z - model.level.eps0)
    Pp, Pm = 0.5 * (SIGMA[0] + SIGMA[1]), 0.5 * (SIGMA[0] - SIGMA[1])
    G = g_int[:, None, None] * Pp + g_free[:, None, None] * Pm
    return G, g_int, g_free


def moment_u1_x(model: Model, omega, kT) -> float:
    _, g_int, g_free = green_u1_x(model, omega, kT)
    f = fermi(omega, model.level.mu, kT)
    return float(np.trapezoid(f * (_spectral(g_int) - _spectral(g_free)), omega))


def moment_u1_x_as_printed(model: Model, omega, kT) -> float:
    """Paper Eq. 14 exactly as printed, M = ½ f(ε0) + Im ∫ f(ω) g_int(ω) dω/4π, for comparison
    only. It does not follow from Eq. 13 (which gives ½[f(ε0) − ∫ f A_int dω], i.e. dω/2π): the
    interacting branch enters with half its spectral weight, so M does not vanish at high
    temperature (→ 1/8) and changes sign where the consistent moment does not."""
    _, g_int, _ = green_u1_x(model, omega, kT)
    f = fermi(omega, model.level.mu, kT)
    return float(0.5 * fermi(model.level.eps0, model.level.mu, kT)
                 + np.trapezoid(f * np.imag(g_int), omega) / (4 * np.pi))


def green_u1_xz(model: Model, omega, kT):
    """u1 = u0 (x̂ + ẑ): (G, {s: g_s})."""
    u0 = model.u0
    z = model._z(omega)
    s0 = _sigma0(model, omega, kT)
    G = np.zeros(np.shape(omega) + (2, 2), complex)
    gs = {}
    for s in (1, -1):
        gs[s] = 1.0 / (z - model.level.eps0 - (3 + 2 * np.sqrt(2) * s) * u0 ** 2 * s0)
        P = 0.25 * (2 * SIGMA[0] + s * np.sqrt(2) * (SIGMA[1] + SIGMA[3]))
        G += gs[s][:, None, None] * P
    return G, gs


def moment_u1_xz(model: Model, omega, kT) -> float:
    _, gs = green_u1_xz(model, omega, kT)
    f = fermi(omega, model.level.mu, kT)
    return float(sum(s / np.sqrt(2) * np.trapezoid(f * _spectral(gs[s]), omega) for s in (1, -1)))


def printed_eq14_delta_free(model: Model, kT, emax: float = 2000.0) -> float:
    """Paper Eq. 14 as printed at δ → 0, for u1 = u0 x̂: ½ f(ε0) − ¼ n_d with n_d = ∫ f A_int dω
    = M + f(ε0) (M the consistent moment, Matsubara sum), i.e. ¼[f(ε0) − M]. Free of the
    broadening bias of :func:`moment_u1_x_as_printed`."""
    M = float(model.moment_matsubara(kT, emax)[0])
    return 0.25 * (fermi(model.level.eps0, model.level.mu, kT) - M)


def fermi_second_derivative(eps, mu, kT):
    """f″(ε) = f(1 − f)(1 − 2f)/(k_BT)²: the sign of ε − μ."""
    f = fermi(eps, mu, kT)
    return f * (1 - f) * (1 - 2 * f) / kT ** 2


def second_moment(model: Model, kT) -> float:
    """m₂/λ = Σ_q w_q (1 + 2n_q): the bath factor of the second spectral moment of the dressed
    channel, ∫(ω − ε0)² A_d dω = λ Σ_q (1 + 2n_q) (ε1 = 0)."""
    from .core import bose
    nu, wq = model.bath.nodes()
    return float(np.sum(wq * (1 + 2 * bose(nu, kT))))


def high_T_moment(model: Model, kT) -> np.ndarray:
    """Leading high-temperature moment for ε1 = 0 and q-independent couplings.

    Each spin channel s along û1 has a spectral function A_s of unit weight, first moment ε0
    (no Hartree term) and second central moment λ_s Σ_q (1 + 2n_q), λ_s = (u0 + s|u1|)².
    M = Σ_s s ∫ [f(ω) − f(ε0)] A_s dω ≈ ½ f″(ε0) Σ_s s λ_s Σ_q (1 + 2n_q), and Σ_s s λ_s = 4u0|u1|:

        m ≈ ½ f″(ε0) · 4 u0 u1 · Σ_q (1 + 2n_q).

    With f″(ε0) ≈ (ε0 − μ)/(8 (k_BT)³) and Σ_q (1 + 2n_q) ≈ 2k_BT ⟨1/ω_q⟩ (= 3k_BT/c for the
    normalised 3-D ball), M ∝ (ε0 − μ) u0|u1| / (c (k_BT)²): 1/T², amplitude ∝ 1/c, sign of
    ε0 − μ."""
    if np.any(np.asarray(model.level.eps1) != 0):
        raise ValueError("high-T form needs ε1 = 0")
    lv = model.level
    return (0.5 * fermi_second_derivative(lv.eps0, lv.mu, kT) * 4 * model.u0
            * np.asarray(model.u1, float) * second_moment(model, kT))
