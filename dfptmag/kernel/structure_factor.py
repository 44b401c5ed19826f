"""The charge–spin dynamic structure factor of paper Eq. 5 from mode amplitudes (pure numpy).

    S^{αβ}(Q, ω) = Σ_ν [1 + n_B(ω_ν)] A^α_ν(Q) A^{β*}_ν(Q) δ(ω − ω_ν)
                       +      n_B(ω_ν)  A^{α*}_ν(Q) A^β_ν(Q) δ(ω + ω_ν),          α, β ∈ {n, x, y, z}

A^α_ν(Q) = ∫ e^{-iQ·r} δñ^α_ν(r) d³r is the Fourier component at Q = q + G (per unit cell) of the
*one-sided* complex amplitude of paper Eq. 1 for mode ν of the phonon at q, at the zero-point
amplitude U_ν = sqrt(ħ/2ω_ν) e_ν/√M (one phonon quantum: A is the matrix element ⟨1_ν|δn̂^α|0⟩).
Components in dfptmag's (QE's) convention: A^n in electrons, A^{x,y,z} = Tr(σ δñ) in μB (the
paper's components are half of these). n_B is the Bose factor; the Debye–Waller factor is not
included (as in the paper). S is per unit cell: e²/meV (nn), e·μB/meV (n–spin), μB²/meV (spin).

What is built here:

- ``sticks``: the δ-lines, energies (Stokes at +ω_ν, anti-Stokes at −ω_ν) and 4×4 weights;
- ``spectrum``: the lines broadened by a normalized Gaussian or Lorentzian of FWHM
  c0 + c1|E| + c2 E² (meV) evaluated at each line's energy (an energy-dependent instrumental
  resolution, as Euphonic's and PyChop's width polynomials); each line shape is evaluated
  exactly at the grid energies, so no binning error enters;
- ``channel``: a real quantity from the 4×4 matrix (a component, in-plane xx + yy, out-of-plane
  zz, the spin trace, or the magnetic neutron projection Σ_{ab∈xyz} (δ_ab − Q̂_a Q̂_b) S^{ab}).

Exact laws (tested): S(Q, ω) is a Hermitian 4×4 matrix at every (Q, ω); the ω-integral of the
weight of mode ν in S^{αα} is (2 n_B + 1)|A^α_ν|²; detailed balance S^{αα}(Q, −ω) =
e^{−ω/k_BT} S^{αα}(−Q, ω) line by line, with A(−Q) the time-reversal image (A^n(−Q) = conj A^n(Q),
A^m(−Q) = −conj A^m(Q)) and ω_ν(−Q) = ω_ν(Q).
"""
from __future__ import annotations

import numpy as np

K_B_MEV_PER_K = 8.617333262e-2            # Boltzmann constant, meV/K (CODATA 2018)
# (γ r0)² with γ = 1.91304276 (neutron magnetic moment in nuclear magnetons) and the classical
# electron radius r0 = 2.8179403262 fm: 0.29058 barn. For a magnetization density M in μB
# (m = Tr σρ, g = 2 spin only) the cross-section prefactor is (γ r0 / 2)².
GAMMA_R0_SQ_BARN = (1.91304276 * 2.8179403262e-15) ** 2 / 1e-28
NEUTRON_PREFACTOR_BARN = GAMMA_R0_SQ_BARN / 4.0
COMPONENTS = ("n", "x", "y", "z")
SPIN = (1, 2, 3)
DERIVED = ("inplane", "outofplane", "spin", "neutron")
SHAPES = ("gauss", "lorentz")


def bose(energy_mev, temperature_k: float) -> np.ndarray:
    """n_B(E) = 1/(e^{E/k_BT} − 1) for E > 0 (0 at T = 0); NaN for E ≤ 0."""
    e = np.asarray(energy_mev, float)
    out = np.full(e.shape, np.nan)
    pos = e > 0
    if temperature_k <= 0:
        out[pos] = 0.0
        return out
    out[pos] = 1.0 / np.expm1(e[pos] / (K_B_MEV_PER_K * temperature_k))
    return out


def time_reversed(A: np.ndarray) -> np.ndarray:
    """The amplitudes at −Q from those at Q (…, 4): δn → conj δn, δm → −conj δm."""
    out = np.conj(np.asarray(A))
    out[..., 1:] *= -1.0
    return out


def sticks(freq_mev, A, temperature_k: float, omega_min_mev: float = 0.5):
    """The δ-lines of Eq. 5 at each Q.

    freq_mev (nQ, nmode), A (nQ, nmode, 4). Returns (energy (nQ, 2 nmode) meV, weight
    (nQ, 2 nmode, 4, 4), kept (nQ, nmode) bool): lines [0, nmode) are Stokes (+ω_ν, weight
    (1 + n_B) A^α A^{β*}), lines [nmode, 2 nmode) anti-Stokes (−ω_ν, weight n_B A^{α*} A^β).
    Modes with ω_ν < omega_min_mev (imaginary or acoustic ones at Γ, where the zero-point
    amplitude diverges) carry no weight and are marked not kept."""
    w = np.asarray(freq_mev, float)
    A = np.asarray(A, complex)
    kept = np.isfinite(w) & (w >= omega_min_mev) & np.all(np.isfinite(A), axis=-1)
    n = np.where(kept, bose(np.where(kept, w, 1.0), temperature_k), 0.0)
    Az = np.where(kept[..., None], A, 0.0)
    outer = Az[..., :, None] * np.conj(Az)[..., None, :]            # A^α A^β*
    stokes = (1.0 + n)[..., None, None] * outer
    anti = n[..., None, None] * np.conj(outer)                      # A^α* A^β
    energy = np.concatenate([np.where(kept, w, 0.0), np.where(kept, -w, 0.0)], axis=-1)
    return energy, np.concatenate([stokes, anti], axis=-3), kept


def fwhm_of(energy_mev, fwhm) -> np.ndarray:
    """The resolution FWHM (meV) at each line energy: a number, a polynomial in ``|E|`` given as a
    sequence (c0, c1, c2, …) → ``c0 + c1|E| + c2 E² + …``, or a callable of E (meV)."""
    e = np.asarray(energy_mev, float)
    if callable(fwhm):
        out = np.asarray(fwhm(e), float) * np.ones_like(e)
    else:
        c = np.atleast_1d(np.asarray(fwhm, float))
        out = np.polynomial.polynomial.polyval(np.abs(e), c)
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError(f"resolution FWHM {fwhm!r} is not positive at every line energy "
                         f"({float(np.nanmin(out)):.3g} meV at least)")
    return out


def line_shape(x, fwhm, shape: str = "gauss") -> np.ndarray:
    """A normalized line shape (∫ dx = 1, per meV) at offsets x (meV) for widths fwhm (meV)."""
    if shape == "gauss":
        s = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        return np.exp(-0.5 * (x / s) ** 2) / (s * np.sqrt(2.0 * np.pi))
    if shape == "lorentz":
        g = 0.5 * fwhm
        return g / (np.pi * (x * x + g * g))
    raise ValueError(f"line shape {shape!r}: one of {', '.join(SHAPES)}")


def spectrum(energies_mev, line_energy, line_weight, fwhm=1.0, shape: str = "gauss",
             chunk: int = 64) -> np.ndarray:
    """S(Q, E) on the energy grid: Σ_lines L(E − E_l; FWHM(E_l)) W_l.

    energies_mev (nE,); line_energy (nQ, nl); line_weight (nQ, nl, ...) (e.g. 4×4). Returns
    (nQ, nE, ...) per meV. Zero-weight lines cost nothing extra but are evaluated."""
    E = np.asarray(energies_mev, float)
    le = np.asarray(line_energy, float)
    lw = np.asarray(line_weight)
    width = fwhm_of(le, fwhm)
    tail = lw.shape[2:]
    out = np.zeros((le.shape[0], len(E)) + tail, dtype=np.result_type(lw, float))
    flat = lw.reshape(le.shape[0], le.shape[1], -1)
    for i in range(0, le.shape[0], chunk):
        L = line_shape(E[None, :, None] - le[i:i + chunk, None, :], width[i:i + chunk, None, :], shape)
        out[i:i + chunk] = np.einsum("qel,qlc->qec", L, flat[i:i + chunk]).reshape((-1, len(E)) + tail)
    return out


def channel_names() -> list[str]:
    """Every channel name: the 16 components ('nn', 'nx', …, 'zz') and the derived ones."""
    return [a + b for a in COMPONENTS for b in COMPONENTS] + list(DERIVED)


def channel(S, name: str, q_cart=None) -> np.ndarray:
    """A real channel of S (…, 4, 4): 'ab' (a, b ∈ n, x, y, z) → Re S^{ab} (the diagonal ones are
    real; use ``S[..., a, b]`` for a complex cross term); 'inplane' = xx + yy; 'outofplane' = zz;
    'spin' = xx + yy + zz; 'neutron' = Σ_{ab∈xyz} (δ_ab − Q̂_a Q̂_b) Re S^{ab} with Q̂ from
    ``q_cart`` (nQ, 3) for S (nQ, …, 4, 4), or (3,) for one Q (the Hermitian matrix's imaginary part is
    antisymmetric and drops out of the symmetric projector). At Q = 0 the direction is undefined
    and the orientational average (2/3) Tr is used."""
    S = np.asarray(S)
    if len(name) == 2 and all(c in COMPONENTS for c in name):
        return S[..., COMPONENTS.index(name[0]), COMPONENTS.index(name[1])].real
    d = np.einsum("...ii->...i", S[..., 1:, 1:]).real
    if name == "inplane":
        return d[..., 0] + d[..., 1]
    if name == "outofplane":
        return d[..., 2]
    if name == "spin":
        return d.sum(axis=-1)
    if name == "neutron":
        if q_cart is None:
            raise ValueError("the neutron channel needs the Cartesian Q")
        P = projector(q_cart)                                    # (nQ, 3, 3) or (3, 3)
        lead = P.shape[:-2]
        P = P.reshape(lead + (1,) * (S.ndim - 2 - len(lead)) + (3, 3))
        return np.einsum("...ab,...ab->...", P, S[..., 1:, 1:].real)
    raise ValueError(f"channel {name!r}: one of {', '.join(channel_names())}")


def projector(q_cart) -> np.ndarray:
    """δ_ab − Q̂_a Q̂_b (…, 3, 3) for Cartesian Q (…, 3); (2/3) δ_ab at Q = 0."""
    q = np.asarray(q_cart, float)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    zero = norm[..., 0] < 1e-12
    qh = np.where(norm > 1e-12, q / np.where(norm > 1e-12, norm, 1.0), 0.0)
    P = np.eye(3) - qh[..., :, None] * qh[..., None, :]
    P[zero] = (2.0 / 3.0) * np.eye(3)
    return P


def form_factor_j0(q_inv_angstrom, coefficients) -> np.ndarray:
    """The dipole magnetic form factor ⟨j0⟩(s) = A e^{−a s²} + B e^{−b s²} + C e^{−c s²} + D,
    ``s = |Q|/4π`` (Å⁻¹), from the 7 tabulated coefficients (A, a, B, b, C, c, D) of an ion (the
    International Tables / Brown's tables, as SpinW and Sunny use them)."""
    c = np.asarray(coefficients, float)
    if c.shape != (7,):
        raise ValueError(f"j0 form factor: 7 coefficients A, a, B, b, C, c, D, not {len(c)}")
    s2 = (np.asarray(q_inv_angstrom, float) / (4.0 * np.pi)) ** 2
    return c[0] * np.exp(-c[1] * s2) + c[2] * np.exp(-c[3] * s2) + c[4] * np.exp(-c[5] * s2) + c[6]
