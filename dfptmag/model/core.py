"""General 2×2 matrix formulation of the level + phonon-bath model.

H = ψ†εψ + Σ_q ω_q b†_q b_q + Σ_q ψ†U_qψ (b_q + b†_{−q}),  ε = ε0 σ0 + ε1·σ,  U_q = u0 σ0 + u1·σ.

Second-order self-energy with bare propagators (paper Eqs. 10-11),

    Σ(z) = Σ_q U_q Σ̃_q(z) U_{−q},   Σ̃_q = Σ̃0q σ0 + Σ̃1q·σ,
    Σ̃_q(z) = ½ Σ_s P_s [ (1 − f(ε_s) + n_B(ω_q)) / (z − ε_s − ω_q) + (f(ε_s) + n_B(ω_q)) / (z − ε_s + ω_q) ],

with ε_s = ε0 + s|ε1| and P_s = σ0 + s ε̂1·σ (so that ½Σ_s P_s(...) reproduces Eqs. 11a-b).
Couplings are q-independent here (u0, u1 constant vectors), so U_{−q} = U_q = U (Hermitian) and
Σ = U Σ̃ U with Σ̃ the bath average of Σ̃_q.

Phonon bath (the paper leaves the q-measure implicit; this is our stated choice):
acoustic ω_q = c|q| with a dimensionless wave number q uniformly filling a d-dimensional ball
of radius q_c (default d = 3, q_c = 1) and the sum normalised per mode,
Σ_q F(ω_q) → ∫_0^{q_c} d q^{d−1}/q_c^d F(cq) dq  (one "mode" of unit weight: scale u0, u1 to
change the number of modes). The ν = cq integral is done by Gauss–Legendre quadrature.

Retarded functions are evaluated at z = ω + iδ with a small broadening δ (default 0.01 meV);
outside the phonon band (|ω − ε0| > c q_c) Im Σ vanishes and peaks have width δ. The moment is
also computed at δ → 0 by a Matsubara sum (:meth:`Model.moment_matsubara`), used for T_xo.
DOS matrix ρ(ω) = −(G^r − G^r†)/(2πi); total DOS Tr ρ; moment m = ∫ f(ω) Tr(σ ρ(ω)) dω
(lesser function with the fluctuation–dissipation theorem, G^< = −f (G^r − G^a)).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import brentq

from ..kernel.pauli import SIGMA


def inverse_2x2(a: np.ndarray) -> np.ndarray:
    """Inverse of 2×2 matrices (..., 2, 2) through Pauli components, A = a0σ0 + a·σ,
    A⁻¹ = (a0σ0 − a·σ)/(a0² − a·a) (paper Eq. 12): no cancellation in the spin part."""
    c = 0.5 * np.einsum("kji,...ij->...k", SIGMA, a)
    det = c[..., 0] ** 2 - np.sum(c[..., 1:] ** 2, axis=-1)
    inv = np.concatenate([c[..., :1], -c[..., 1:]], axis=-1) / det[..., None]
    return np.einsum("...k,kij->...ij", inv, SIGMA)


def fermi(w, mu, kT):
    return 0.5 * (1.0 - np.tanh((np.asarray(w) - mu) / (2.0 * kT)))


def bose(nu, kT):
    return 1.0 / np.expm1(np.asarray(nu) / kT)


@dataclasses.dataclass
class Bath:
    """Acoustic phonons ω = c q, q ∈ [0, q_c] in a d-dimensional ball, per-mode normalised."""
    c: float = 0.01          # meV per unit q
    qc: float = 1.0
    dim: int = 3
    nquad: int = 400

    def nodes(self):
        """Phonon energies ν_i (meV) and weights w_i with Σ w_i F(ν_i) ≈ ∫ d q^{d−1}/q_c^d F(cq) dq."""
        if self.dim < 2:
            raise ValueError("dim must be ≥ 2: in 1D the thermal bath average of 1/ω diverges")
        x, w = np.polynomial.legendre.leggauss(self.nquad)
        q = 0.5 * self.qc * (x + 1.0)
        wq = 0.5 * self.qc * w * self.dim * q ** (self.dim - 1) / self.qc ** self.dim
        return self.c * q, wq


@dataclasses.dataclass
class Level:
    eps0: float = 0.1
    eps1: tuple = (0.0, 0.0, 0.0)
    mu: float = 0.0          # chemical potential, meV

    def matrix(self):
        e1 = np.asarray(self.eps1, float)
        return self.eps0 * SIGMA[0] + np.einsum("a,aij->ij", e1, SIGMA[1:])


@dataclasses.dataclass
class Model:
    level: Level
    bath: Bath
    u0: float = 0.01
    u1: tuple = (0.0, 0.0, 0.0)
    delta: float = 0.01      # broadening of retarded functions, meV

    @property
    def U(self):
        return self.u0 * SIGMA[0] + np.einsum("a,aij->ij", np.asarray(self.u1, float), SIGMA[1:])

    # -- bare bath-averaged exchange loop Σ̃(z) as a 2×2 matrix ---------------------------------
    def _z(self, omega):
        """Real frequencies get +iδ (retarded); complex ones (Matsubara) are used as given."""
        w = np.asarray(omega)
        return w + 1j * self.delta if not np.iscomplexobj(w) else w

    def sigma_tilde(self, omega, kT):
        """Σ̃(z), z = ω + iδ for real ω (or the given complex z), shape (nω, 2, 2)."""
        z = self._z(omega)
        lv = self.level
        e1 = np.asarray(lv.eps1, float)
        a1 = np.linalg.norm(e1)
        n1 = e1 / a1 if a1 > 0 else np.zeros(3)
        nu, wq = self.bath.nodes()
        nb = bose(nu, kT)
        out = np.zeros(z.shape + (2, 2), complex)
        for s in (1, -1):
            es = lv.eps0 + s * a1
            fs = fermi(es, lv.mu, kT)
            wz = z[:, None] - es
            scalar = np.sum(wq * ((1 - fs + nb) / (wz - nu) + (fs + nb) / (wz + nu)), axis=1)
            P = SIGMA[0] + s * np.einsum("a,aij->ij", n1, SIGMA[1:])
            out += 0.5 * scalar[:, None, None] * P
        return out

    def self_energy(self, omega, kT):
        st = self.sigma_tilde(omega, kT)
        U = self.U
        return U @ st @ U.conj().T

    def green(self, omega, kT):
        """G(z) = [z − ε − Σ(z)]^{-1}, z = ω + iδ (retarded) for real ω, shape (nω, 2, 2)."""
        z = self._z(omega)
        a = z[:, None, None] * SIGMA[0] - self.level.matrix() - self.self_energy(omega, kT)
        return inverse_2x2(a)

    def dos_matrix(self, omega, kT):
        g = self.green(omega, kT)
        return -(g - np.conj(np.swapaxes(g, -1, -2))) / (2j * np.pi)

    def dos(self, omega, kT):
        """Total DOS Tr ρ(ω), states/meV (integrates to 2)."""
        return np.real(np.trace(self.dos_matrix(omega, kT), axis1=-2, axis2=-1))

    def spin_dos(self, omega, kT, axis=(0.0, 0.0, 1.0)):
        """Spin-resolved DOS along ``axis``: ⟨±n|ρ|±n⟩ (each integrates to 1)."""
        n = np.asarray(axis, float) / np.linalg.norm(axis)
        rho = self.dos_matrix(omega, kT)
        sn = np.einsum("a,aij->ij", n, SIGMA[1:])
        tot = np.real(np.trace(rho, axis1=-2, axis2=-1))
        proj = np.real(np.einsum("ij,wji->w", sn, rho))
        return 0.5 * (tot + proj), 0.5 * (tot - proj)

    def moment_matsubara(self, kT, emax: float = 2000.0):
        """Moment at δ → 0 from the Matsubara sum m_α = 2 kT Σ_{n≥0} Re Tr σ_α G(μ + iω_n),
        ω_n = (2n+1)πkT up to ``emax`` meV, plus the analytic 1/ω_n² tail. Independent of the
        real-axis grid and of δ: the check on :meth:`moment`."""
        mu = self.level.mu
        n = np.arange(int(np.ceil(emax / (2 * np.pi * kT))) + 1)
        wn = (2 * n + 1) * np.pi * kT
        g = self.green(mu + 1j * wn, kT)
        tr = np.real(np.einsum("aij,wji->wa", SIGMA[1:], g))
        total = 2 * kT * tr.sum(axis=0)
        # tail: Tr σ G ≈ C/(iω)² → Re = −C/ω²; fit C on the last points and add Σ_{n>N}
        C = -tr[-1] * wn[-1] ** 2
        wN = wn[-1]
        tail = -C * 2 * kT / (2 * np.pi * kT) / wN      # Σ_{n>N} 1/ω_n² ≈ 1/(2πkT ω_N)
        return total + tail

    def moment(self, omega, kT):
        """Moment vector m = ∫ f(ω) Tr(σ ρ(ω)) dω on the given frequency grid (finite δ)."""
        rho = self.dos_matrix(omega, kT)
        f = fermi(omega, self.level.mu, kT)
        dens = np.real(np.einsum("aij,wji->wa", SIGMA[1:], rho)) * f[:, None]
        return np.trapezoid(dens, omega, axis=0)


def frequency_grid(model: "Model", window: float = 40.0, per_delta: int = 5):
    """Uniform grid over ε0 ± window (meV) with spacing δ/per_delta: every retarded peak has
    width ≥ δ and is resolved."""
    step = model.delta / per_delta
    e0 = model.level.eps0
    return np.arange(e0 - window, e0 + window + step / 2, step)


def crossover_temperature(moment_of_kT, kT_grid) -> float | None:
    """First sign change of M(kT) on the grid, refined by Brent's method; None if no change."""
    vals = np.array([moment_of_kT(t) for t in kT_grid])
    idx = np.flatnonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) < 0)
    if idx.size == 0:
        return None
    i = int(idx[0])
    return brentq(moment_of_kT, kT_grid[i], kT_grid[i + 1], xtol=1e-10, rtol=1e-12)
