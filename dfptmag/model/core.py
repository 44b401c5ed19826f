"""General 2×2 matrix formulation of the level + phonon-bath model.

H = ψ†εψ + Σ_q ω_q b†_q b_q + Σ_q ψ†U_qψ (b_q + b†_{−q}),  ε = ε0 σ0 + ε1·σ,  U_q = u0 σ0 + u1·σ.

Second-order self-energy with bare propagators (paper Eqs. 10-11),

    Σ(z) = Σ_q U_q Σ̃_q(z) U_{−q},   Σ̃_q = Σ̃0q σ0 + Σ̃1q·σ,
    Σ̃_q(z) = ½ Σ_s P_s [ (1 − f(ε_s) + n_B(ω_q)) / (z − ε_s − ω_q) + (f(ε_s) + n_B(ω_q)) / (z − ε_s + ω_q) ],

with ε_s = ε0 + s|ε1| and P_s = σ0 + s ε̂1·σ (so that ½Σ_s P_s(...) reproduces Eqs. 11a-b).
Couplings are q-independent here (u0, u1 constant vectors), so U_{−q} = U_q = U (Hermitian) and
Σ = U Σ̃ U with Σ̃ the bath average of Σ̃_q.

Phonon baths (the paper leaves the q-measure implicit; these are our stated choices):

* ``Bath(kind="ball")`` (default, the consistent model): acoustic ω_q = c|q| with a
  dimensionless wave number q uniformly filling a d-dimensional ball of radius q_c (default
  d = 3, q_c = 1), the sum normalised per mode, Σ_q F(ω_q) → ∫_0^{q_c} d q^{d−1}/q_c^d F(cq) dq
  (one "mode" of unit weight). The ν = cq integral is done by Gauss–Legendre quadrature.
* ``Bath(kind="plain", nq=N)`` (``--convention paper``): the same ball, but a plain,
  unnormalised sum over N q-points filling it (weights × N). The coupling strength is then
  u² N ⟨1 + 2n_q⟩, strong for N ≳ 10³: the dressed channel is then half filled at k_BT ~ ε0,
  which is what the paper's printed Eq. 14 needs to cross zero at ε0/ln 3.

Retarded functions are evaluated at z = ω + iδ with a small broadening δ (default 0.01 meV);
outside the phonon band Im Σ vanishes and peaks have width δ. The moment is also computed at
δ → 0 by a Matsubara sum (:meth:`Model.matsubara`), used for M(T) and T_xo.
DOS matrix ρ(ω) = −(G^r − G^r†)/(2πi); total DOS Tr ρ; moment m = ∫ f(ω) Tr(σ ρ(ω)) dω
(lesser function with the fluctuation–dissipation theorem, G^< = −f (G^r − G^a)).

``Model.matsubara(kT, self_consistent=True)`` replaces the bare level propagator in the exchange
loop by the dressed one (self-consistent Born / Migdal: bare phonons, dressed electron),
iterated on the Matsubara axis; its first iteration is exactly Eq. 11a.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy.optimize import brentq
from scipy import fft as sfft

from ..errors import DfptmagError
from ..kernel.pauli import SIGMA


class ModelParameterError(DfptmagError):
    """A model parameter is out of range; the message starts with the option name."""

    def __init__(self, option, problem):
        super().__init__(f"{option}: {problem}")


def _finite(name, value, positive=False):
    v = np.asarray(value, float)
    if not np.all(np.isfinite(v)):
        raise ModelParameterError(name, f"must be finite, got {value!r}")
    if positive and not np.all(v > 0):
        raise ModelParameterError(name, f"must be > 0, got {value!r}")


def inverse_2x2(a: np.ndarray) -> np.ndarray:
    """Inverse of 2×2 matrices (..., 2, 2) through Pauli components, A = a0σ0 + a·σ,
    A⁻¹ = (a0σ0 − a·σ)/(a0² − a·a) (paper Eq. 12): no cancellation in the spin part."""
    c = 0.5 * np.einsum("kji,...ij->...k", SIGMA, a)
    det = c[..., 0] ** 2 - np.sum(c[..., 1:] ** 2, axis=-1)
    inv = np.concatenate([c[..., :1], -c[..., 1:]], axis=-1) / det[..., None]
    return np.einsum("...k,kij->...ij", inv, SIGMA)


@functools.lru_cache(maxsize=8)
def _leggauss(n):
    """Gauss–Legendre nodes and weights (cached: numpy takes ~0.1 s for n = 400)."""
    x, w = np.polynomial.legendre.leggauss(n)
    x.flags.writeable = w.flags.writeable = False
    return x, w


def fermi(w, mu, kT):
    return 0.5 * (1.0 - np.tanh((np.asarray(w) - mu) / (2.0 * kT)))


def bose(nu, kT):
    return 1.0 / np.expm1(np.asarray(nu) / kT)


@dataclasses.dataclass
class Bath:
    """Acoustic phonons ω = c q: ``kind="ball"`` q ∈ [0, q_c] in a d-dimensional ball, per-mode
    normalised (Σ w = 1); ``kind="plain"``: plain sum over nq q-points of that ball (Σ w = nq)."""
    c: float = 0.01          # meV per unit q
    qc: float = 1.0
    dim: int = 3
    nquad: int = 400
    kind: str = "ball"
    nq: int = 1000

    def __post_init__(self):
        _finite("--c", self.c, positive=True)
        _finite("--qc", self.qc, positive=True)
        if self.kind not in ("ball", "plain"):
            raise ModelParameterError("bath", f"kind must be 'ball' or 'plain', got {self.kind!r}")
        if self.dim < 2:
            raise ModelParameterError("--dim", "must be ≥ 2: in 1D the thermal bath average of 1/ω diverges")
        if self.kind == "plain" and int(self.nq) < 1:
            raise ModelParameterError("--nq", f"must be ≥ 1, got {self.nq}")

    def nodes(self):
        """Phonon energies ν_i (meV) and weights w_i with Σ w_i F(ν_i) ≈ Σ_q F(ω_q) (see class)."""
        x, w = _leggauss(int(self.nquad))
        q = 0.5 * self.qc * (x + 1.0)
        wq = 0.5 * self.qc * w * self.dim * q ** (self.dim - 1) / self.qc ** self.dim
        return self.c * q, wq * self.weight

    @property
    def weight(self) -> float:
        """Σ_q w_q: 1 per-mode normalised, nq for the plain sum."""
        return float(self.nq) if self.kind == "plain" else 1.0

    def describe(self):
        if self.kind == "plain":
            return (f"ω = c q, plain (unnormalised) sum over {int(self.nq)} q-points filling a "
                    f"{self.dim}-D ball of radius {self.qc:g}")
        return f"ω = c q, q in a {self.dim}-D ball of radius {self.qc:g}, per-mode normalised"


@dataclasses.dataclass
class Level:
    eps0: float = 0.1
    eps1: tuple = (0.0, 0.0, 0.0)
    mu: float = 0.0          # chemical potential, meV

    def __post_init__(self):
        _finite("--eps0", self.eps0)
        _finite("--eps1", self.eps1)
        _finite("--mu", self.mu)

    def matrix(self):
        e1 = np.asarray(self.eps1, float)
        return self.eps0 * SIGMA[0] + np.einsum("a,aij->ij", e1, SIGMA[1:])


@dataclasses.dataclass
class Matsubara:
    """Values on the Matsubara axis at one k_BT (δ-free): moment vector (μB, m = Tr σρ), total
    occupation of the level (0 … 2), and, for the self-consistent Born solution, its iterations."""
    kT: float
    moment: np.ndarray
    occupation: float
    iterations: int = 0


@dataclasses.dataclass
class Model:
    level: Level
    bath: Bath
    u0: float = 0.01
    u1: tuple = (0.0, 0.0, 0.0)
    delta: float = 0.01      # broadening of retarded functions, meV

    def __post_init__(self):
        _finite("--u0", self.u0)
        _finite("--u1", self.u1)
        _finite("--delta", self.delta, positive=True)

    @property
    def U(self):
        return self.u0 * SIGMA[0] + np.einsum("a,aij->ij", np.asarray(self.u1, float), SIGMA[1:])

    # -- bare bath-averaged exchange loop Σ̃(z) as a 2×2 matrix ---------------------------------
    def _z(self, omega):
        """Real frequencies get +iδ (retarded); complex ones (Matsubara) are used as given."""
        w = np.asarray(omega)
        return w + 1j * self.delta if not np.iscomplexobj(w) else w

    def sigma_tilde(self, omega, kT, chunk: int = 4096):
        """Σ̃(z) of Eq. 11, z = ω + iδ for real ω (or the given complex z), shape (nω, 2, 2)."""
        z = np.atleast_1d(self._z(omega))
        lv = self.level
        e1 = np.asarray(lv.eps1, float)
        a1 = np.linalg.norm(e1)
        n1 = e1 / a1 if a1 > 0 else np.zeros(3)
        nu, wq = self.bath.nodes()
        nb = bose(nu, kT)
        out = np.zeros(z.shape + (2, 2), complex)
        for s in ((1,) if a1 == 0 else (1, -1)):
            es = lv.eps0 + s * a1
            fs = fermi(es, lv.mu, kT)
            up, dn = wq * (1 - fs + nb), wq * (fs + nb)
            scalar = np.empty(z.shape, complex)
            for i in range(0, z.size, chunk):
                wz = z[i:i + chunk, None] - es
                scalar[i:i + chunk] = (up / (wz - nu) + dn / (wz + nu)).sum(axis=1)
            if a1 == 0:
                out += scalar[:, None, None] * SIGMA[0]
            else:
                P = SIGMA[0] + s * np.einsum("a,aij->ij", n1, SIGMA[1:])
                out += 0.5 * scalar[:, None, None] * P
        return out

    def self_energy(self, omega, kT):
        st = self.sigma_tilde(omega, kT)
        U = self.U
        return U @ st @ U.conj().T

    def green(self, omega, kT):
        """G(z) = [z − ε − Σ(z)]^{-1}, z = ω + iδ (retarded) for real ω, shape (nω, 2, 2)."""
        z = np.atleast_1d(self._z(omega))
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

    # -- δ-free values on the Matsubara axis -----------------------------------------------------
    def _matsubara_z(self, kT, emax):
        _finite("--kT", kT, positive=True)
        n = np.arange(int(np.ceil(emax / (2 * np.pi * kT))) + 1)
        return (2 * n + 1) * np.pi * kT

    @staticmethod
    def _sum_with_tail(values, wn, kT):
        """2kT Σ_{n≥0} v_n for v_n → −C/ω_n² (real parts of traces): sum plus the analytic tail
        Σ_{n>N} 1/ω_n² ≈ 1/(2πkT ω_N), C fitted on the last point."""
        C = -values[-1] * wn[-1] ** 2
        return 2 * kT * values.sum(axis=0) - C * 2 * kT / (2 * np.pi * kT) / wn[-1]

    def _observables(self, g, wn, kT):
        tr = np.real(np.einsum("aij,wji->wa", SIGMA, g))      # Re Tr σ_a G, a = 0..3
        moment = self._sum_with_tail(tr[:, 1:], wn, kT)
        occ = 1.0 + self._sum_with_tail(tr[:, 0], wn, kT)
        return moment, float(occ)

    def matsubara(self, kT, emax: float = 2000.0, self_consistent: bool = False,
                  tol: float = 1e-10, maxiter: int = 500, mixing: float = 0.5) -> Matsubara:
        """Moment and occupation at δ → 0 from the Matsubara sums
        m_α = 2kT Σ_{n≥0} Re Tr σ_α G(μ + iω_n),  N = 1 + 2kT Σ_{n≥0} Re Tr G(μ + iω_n),
        ω_n = (2n+1)πkT up to ``emax`` meV, plus the analytic 1/ω_n² tail. Independent of the
        real-axis grid and of δ. ``self_consistent``: dressed G in the exchange loop
        (:meth:`scba`)."""
        wn = self._matsubara_z(kT, emax)
        if self_consistent:
            g, it = self.scba(kT, emax, tol=tol, maxiter=maxiter, mixing=mixing)
            g = g[len(g) // 2:]                               # n ≥ 0
        else:
            g, it = self.green(self.level.mu + 1j * wn, kT), 0
        m, occ = self._observables(g, wn, kT)
        return Matsubara(kT, m, occ, it)

    def moment_matsubara(self, kT, emax: float = 2000.0, self_consistent: bool = False):
        """Moment vector at δ → 0 (see :meth:`matsubara`)."""
        return self.matsubara(kT, emax, self_consistent).moment

    def phonon_kernel(self, nu_m, kT=None):
        """Bath-averaged bare phonon propagator K(iν_m) = Σ_q w_q 2ω_q/((iν_m)² − ω_q²)."""
        nu, wq = self.bath.nodes()
        out = np.empty(len(nu_m))
        for i in range(0, len(nu_m), 4096):
            v = np.asarray(nu_m[i:i + 4096])[:, None]
            out[i:i + 4096] = (-2 * wq * nu / (v ** 2 + nu ** 2)).sum(axis=1)
        return out

    def loop_from_green(self, g_ext, kT, _fk=None):
        """Exchange loop Σ̃(iω_n) = −kT Σ_m K(iν_m) G(μ + iω_n − iν_m) for n ∈ [−N, N) from G on
        the fermionic indices [−2N, 2N) (g_ext, shape (4N, 2, 2)). With the bare G = 1/(z − ε)
        this is Eq. 11 (spectral theorem: −kT Σ_m D(iν_m)/(iω_n − iν_m − ε) =
        (1 − f(ε) + n)/(iω_n − ε − ω) + (f(ε) + n)/(iω_n − ε + ω))."""
        N = len(g_ext) // 4
        L, fk = _fk if _fk is not None else self._kernel_fft(N, kT)
        conv = sfft.ifft(sfft.fft(g_ext, L, axis=0) * fk[:, None, None], axis=0)
        return -kT * conv[4 * N: 6 * N]          # index (n + 2N) + (m + 3N) = n + 5N, n ∈ [−N, N)

    def _kernel_fft(self, N, kT):
        m = np.arange(-3 * N, 3 * N + 1)
        L = sfft.next_fast_len(10 * N)
        return L, sfft.fft(self.phonon_kernel(2 * np.pi * kT * m), L)

    def scba(self, kT, emax: float = 2000.0, tol: float = 1e-10, maxiter: int = 500,
             mixing: float = 0.5, first_only: bool = False):
        """Self-consistent Born (Migdal) solution on the Matsubara axis: Σ = U Σ̃[G] U with the
        dressed G in the exchange loop and bare phonons, iterated (linear mixing) from the bare
        G until max|ΔΣ| ≤ tol·max|Σ|. Returns (G at n ∈ [−N, N), iterations). Beyond the window
        (``|ω_n| > emax``) G is the free 1/(z − ε). ``first_only``: return Σ̃ of the first iteration
        (from the bare G), for comparison with Eq. 11."""
        wn0 = self._matsubara_z(kT, emax)
        N = len(wn0)
        n = np.arange(-2 * N, 2 * N)
        z = self.level.mu + 1j * (2 * n + 1) * np.pi * kT
        eps = self.level.matrix()
        free = inverse_2x2(z[:, None, None] * SIGMA[0] - eps)
        if first_only:
            return self.loop_from_green(free, kT)
        U = self.U
        inner = slice(N, 3 * N)
        zin = z[inner, None, None] * SIGMA[0] - eps
        g_ext = free.copy()
        fk = self._kernel_fft(N, kT)
        sigma = np.zeros((2 * N, 2, 2), complex)
        for it in range(1, maxiter + 1):
            new = U @ self.loop_from_green(g_ext, kT, fk) @ U.conj().T
            step = np.abs(new - sigma).max()
            scale = max(np.abs(new).max(), 1e-300)
            sigma = new if it == 1 else (1 - mixing) * sigma + mixing * new
            g_ext[inner] = inverse_2x2(zin - sigma)
            if it > 1 and step <= tol * scale:
                return g_ext[inner], it
        raise DfptmagError(f"self-consistent Born: no convergence in {maxiter} iterations at "
                           f"k_BT = {kT:g} meV (last relative change {step / scale:.2e})")

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


def crossover_temperature(moment_of_kT, kT_grid, values=None) -> float | None:
    """First sign change of M(kT) on the grid, refined by Brent's method; None if no change.
    ``values``: M already computed on the grid (else computed here). Non-finite values raise
    (a NaN never counts as "no sign change")."""
    kT_grid = np.asarray(kT_grid, float)
    vals = np.array([moment_of_kT(t) for t in kT_grid]) if values is None else np.asarray(values, float)
    bad = ~np.isfinite(vals)
    if bad.any():
        raise DfptmagError(f"M is not finite at k_BT = {kT_grid[bad][0]:g} meV: no crossover can be "
                           "decided")
    idx = np.flatnonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) < 0)
    if idx.size == 0:
        return None
    i = int(idx[0])
    return brentq(moment_of_kT, kT_grid[i], kT_grid[i + 1], xtol=1e-10, rtol=1e-12)


def paper_moment(mats: Matsubara, axis) -> float:
    """The paper's Eq. 14 as printed, with its stated conventions undone only where needed to
    compare (``--convention paper``):

    * G = Σ_s P_s g_s with P_s = ½(σ0 + s û1·σ), branch s coupled with (u0 + s|u1|)² (Eq. 12);
      n_s = ∫ f A_s dω its occupation. The consistent moment along û1 is M = n_+ − n_−, the
      occupation N = n_+ + n_−.
    * Eq. 14 as printed, ½ f(ε0) + Im∫ f g_d dω/4π = ½ n_− − ¼ n_+ for u1 = u0 x̂ (n_− = f(ε0),
      the free branch; n_+ = n_d, the dressed one): the dressed branch enters with dω/4π, i.e.
      half its weight relative to the free one. Equivalently ¼[f(ε0) − M], δ-free.
    * Overall sign: Eq. 13 lists the projectors the other way round from Eq. 12; we flip the
      sign so that the moment refers to m = Tr σρ along û1 like the consistent model:
      M_paper = ¼ n_+ − ½ n_− = (3M − N)/8.
    """
    n = np.asarray(axis, float) / np.linalg.norm(axis)
    M = float(mats.moment @ n)
    return (3 * M - mats.occupation) / 8


def kT_crossover_strong_coupling(eps0, mu=0.0) -> float:
    """Strong-coupling limit of the paper-mode crossover for u1 = u0 x̂: n_d → ½, so
    M_paper = ⅛ − ½ f(ε0) vanishes at f(ε0) = ¼, k_B T_xo = (ε0 − μ)/ln 3."""
    return (eps0 - mu) / math.log(3.0)
