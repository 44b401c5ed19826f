"""``dfptmag sqw``: the charge–spin dynamic structure factor S^{αβ}(Q, ω) of paper Eq. 5 from a
finished result — a Q–ω map along a path in Q that may cross several Brillouin zones, a
constant-energy map over an in-plane Q window, or a cut S(ω) at one Q.

Sources (analysis.sqw): a ``bands --interpolate`` result (bands.h5 with grid.h5 and dispersion/
beside it; any in-plane Q), or a ``run`` result (dfptmag.h5 with fields; Q = q + G at its DFPT q).
Conventions, units and what is included: docs/structure-factor.md and kernel.structure_factor.

Files, written beside the input unless ``outdir`` is given: ``sqw_<kind>.h5`` (every axis with
units, the full 4×4 complex S, the per-mode amplitudes and the stick lines), one Euphonic JSON per
channel (``sqw_<kind>_<channel>.json``: ``Spectrum2D`` for maps, ``Spectrum1D`` for cuts; read
back with ``euphonic.Spectrum2D.from_json_file``) and the figures ``sqw_<kind>_<channel>.png``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from .. import ONE_SIDED_NOTE
from ..analysis import sqw as asq
from ..errors import DfptmagError, InputFileError
from ..kernel import qpoints
from ..kernel import structure_factor as sf

log = logging.getLogger(__name__)

DEFAULT_PATH = "G M K G 1,0"          # Γ–M–K–Γ of the first zone, then Γ → M → Γ' = (1,0) of the next
DEFAULT_CHANNELS = ("inplane", "outofplane", "neutron")
KINDS = ("path", "map", "cut")


def channel_units(name: str, cross_section: bool = False) -> str:
    """Units of a channel's S (per unit cell)."""
    if name == "neutron" and cross_section:
        return "barn/sr/meV"
    if name in sf.DERIVED:
        return "muB^2/meV"
    a, b = name
    n = (a == "n") + (b == "n")
    return {2: "e^2/meV", 1: "e*muB/meV", 0: "muB^2/meV"}[n]


PINT_UNITS = {"muB^2/meV": "bohr_magneton**2/meV", "e^2/meV": "elementary_charge**2/meV",
              "e*muB/meV": "elementary_charge*bohr_magneton/meV", "barn/sr/meV": "barn/steradian/meV"}


def check_channels(channels, what: str = "channel") -> list[str]:
    """The channel names, each one of kernel.structure_factor.channel_names(); an
    ArgumentValueError naming ``what`` (e.g. '--channel') and the first bad one otherwise."""
    from ..errors import ArgumentValueError
    channels = list(channels)
    bad = [c for c in channels if c not in sf.channel_names()]
    if bad:
        raise ArgumentValueError(f"{what} {bad[0]!r}: one of {', '.join(sf.channel_names())}")
    return channels


# ------------------------------------------------------------------------------------ Q sampling
def parse_point(token: str) -> tuple[np.ndarray, str]:
    """'G', 'Γ', 'M', 'K', "K'" (…) or 'h,k' / 'h,k,l' in reciprocal-lattice units → (crystal
    coordinates, tick label)."""
    tok = token.strip()
    name = qpoints.canonical("G" if tok.lower() == "gamma" else tok)
    if name is not None:
        return np.array(qpoints.HEX2D[name], float), qpoints.PLOT_LABEL[name]
    try:
        v = [float(x) for x in tok.split(",")]
    except ValueError:
        v = []
    if len(v) == 2:
        v.append(0.0)
    if len(v) != 3 or not all(np.isfinite(v)):
        raise ValueError(f"Q point {token!r}: a name ({', '.join(qpoints.names())}) or h,k in r.l.u. such as 1,0")
    if abs(v[2]) > 0:
        raise ValueError(f"Q point {token!r}: give the in-plane h,k here and Q_z with qz (Å⁻¹)")
    return np.array(v), "(" + ",".join(f"{x:g}" for x in v[:2]) + ")"


def path_tokens(spec: str) -> list[str]:
    """'G M K G 1,0' (whitespace-separated), 'G-M-K-G' / 'Γ–M–K–Γ', or ASE's 'GMKG' (K' as
    Kp) → the point tokens."""
    spec = spec.strip()
    if any(c.isspace() for c in spec):
        return spec.split()
    if "," not in spec and ("–" in spec or "-" in spec.lstrip("-")):
        return [t for t in spec.replace("–", "-").split("-") if t]
    out, i = [], 0
    while i < len(spec):
        if spec[i:i + 2] in ("Kp", "K'"):
            out.append("K'")
            i += 2
        elif spec[i] in "GΓMK":
            out.append(spec[i])
            i += 1
        else:
            return [spec]
    return out


def sample_path(spec: str, cell_bohr, npoints: int = 300):
    """Straight segments between the points of ``spec`` (whitespace-separated, see
    :func:`parse_point`), ``npoints`` in all, spaced evenly in ``|Q|``. Returns (Q crystal (n, 3),
    distance Å⁻¹ (n,), ticks [(index, label)])."""
    pts = [parse_point(t) for t in path_tokens(spec)]
    if len(pts) < 2:
        raise ValueError(f"path {spec!r}: at least two points")
    B = asq.reciprocal_bohr(cell_bohr) / asq.BOHR_RADIUS_ANGS
    lens = [float(np.linalg.norm((b[0] - a[0]) @ B)) for a, b in zip(pts, pts[1:])]
    total = sum(lens)
    if total <= 0:
        raise ValueError(f"path {spec!r} has zero length")
    q, ticks = [], [(0, pts[0][1])]
    for (a, _), (b, lab), L in zip(pts, pts[1:], lens):
        n = max(2, int(round(npoints * L / total)))
        t = np.linspace(0.0, 1.0, n)
        seg = a[None, :] + t[:, None] * (b - a)[None, :]
        q.extend(seg[1:] if q else seg)
        ticks.append((len(q) - 1, lab))
    q = np.array(q)
    d = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0) @ B, axis=1))])
    return q, d, ticks


def sample_plane(cell_bohr, extent: float | None = None, n: int = 81):
    """An n×n grid of in-plane Cartesian Q over [−extent, extent]² (Å⁻¹; default 1.5 ``|b1|``, i.e.
    the first zone and its six neighbours). Returns (Q crystal (n², 3), Qx (n,), Qy (n,))."""
    B = asq.reciprocal_bohr(cell_bohr) / asq.BOHR_RADIUS_ANGS
    extent = float(extent or 1.5 * np.linalg.norm(B[0]))
    x = np.linspace(-extent, extent, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    cart = np.column_stack([X.ravel(), Y.ravel(), np.zeros(X.size)])
    frac = cart[:, :2] @ np.linalg.inv(B[:2, :2])
    return np.column_stack([frac, np.zeros(len(frac))]), x, x


def energy_grid(spec, emax_mev: float) -> np.ndarray:
    """'EMIN:EMAX:N' (meV), a sequence of energies, or None → 401 points on ±1.15 ω_max."""
    if spec is None:
        e = 1.15 * emax_mev
        return np.linspace(-e, e, 401)
    if isinstance(spec, str):
        parts = spec.split(":")
        try:
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise ValueError(f"energies {spec!r}: give EMIN:EMAX:N in meV, e.g. -40:40:401") from None
        if not (hi > lo and n >= 2):
            raise ValueError(f"energies {spec!r}: EMAX > EMIN and N ≥ 2")
        return np.linspace(lo, hi, n)
    e = np.asarray(spec, float).ravel()
    if e.size < 1 or not np.all(np.isfinite(e)):
        raise ValueError("energies: finite numbers (meV)")
    return e


# ------------------------------------------------------------------------------------ the result
@dataclasses.dataclass
class StructureFactor:
    """S^{αβ}(Q, ω) on a set of Q (a path, a plane, or one Q) and an energy grid.

    ``S`` (nQ, nE, 4, 4) complex per meV per unit cell, components [n, x, y, z] (n in e, spin in
    μB, m = Tr σ δñ); ``frequency_meV`` (nQ, nmode) and ``amplitude`` (nQ, nmode, 4) the per-mode
    A^α_ν(Q) at one phonon quantum; ``line_energy``/``line_weight`` the δ-lines before broadening.
    ``channel(name)`` gives a real (nQ, nE) map; ``plot``; ``to_euphonic``; ``save``."""
    kind: str
    q_crystal: np.ndarray
    q_cart: np.ndarray                       # (nQ, 3) Å⁻¹, Q_z included
    energies: np.ndarray                     # (nE,) meV
    S: np.ndarray
    frequency_meV: np.ndarray
    amplitude: np.ndarray
    line_energy: np.ndarray
    line_weight: np.ndarray
    kept: np.ndarray
    temperature_k: float
    fwhm: object
    shape: str
    qz: float
    omega_min_mev: float
    source: str
    cell_bohr: np.ndarray
    distance: np.ndarray | None = None
    ticks: list | None = None
    plane_axes: tuple | None = None          # (Qx, Qy) for a map
    form_factor: tuple | None = None
    cross_section: bool = False
    label: str = ""
    sector: str = "one-sided"                # or "time-odd"

    def channel(self, name: str) -> np.ndarray:
        """A real channel (nQ, nE) in :func:`channel_units` (``cross_section``: the neutron
        channel in barn/sr/meV with (γr₀/2)², the optional j0 form factor; k'/k not included)."""
        out = sf.channel(self.S, name, self.q_cart)
        if name == "neutron" and self.cross_section:
            out = out * sf.NEUTRON_PREFACTOR_BARN
        if name in ("neutron",) and self.form_factor is not None:
            ff = sf.form_factor_j0(np.linalg.norm(self.q_cart, axis=1), self.form_factor)
            out = out * (ff ** 2)[:, None]
        return out

    def units(self, name: str) -> str:
        return channel_units(name, self.cross_section)

    def describe(self) -> str:
        fw = self.fwhm if not callable(self.fwhm) else "callable"
        what = (f"S(Q, ω) of paper Eq. 5 ({ONE_SIDED_NOTE})" if self.sector == "one-sided" else
                "S(Q, ω) of the time-odd spin response (the magnetization in phase with the lattice velocity, "
                "A = -2i hbar omega m[X U]; the physical spin sector, no charge)")
        return (f"{what}; T = {self.temperature_k:g} K; "
                f"{self.shape} resolution FWHM {fw} meV; Q_z = {self.qz:g} 1/Å; modes below "
                f"{self.omega_min_mev:g} meV excluded; Debye–Waller factor not included; source: {self.source}")

    # --- figures / files ----------------------------------------------------------------------
    def plot(self, channel: str = "inplane", log: bool = False, overlay: bool = True, ax=None):
        """The figure of one channel (matplotlib Figure)."""
        from ..plot.sqw import sqw_figure
        return sqw_figure(self, channel, log=log, overlay=overlay, ax=ax)

    def to_euphonic(self, channel: str = "inplane"):
        """Euphonic's ``Spectrum2D`` (path: x = ``|Q|`` distance in 1/Å with tick labels; map: x = Qx,
        y = energy, one energy → Spectrum2D over Qx, Qy is not Euphonic's; see ``save``) or
        ``Spectrum1D`` (cut)."""
        from euphonic import Spectrum1D, Spectrum2D, ureg
        z = self.channel(channel)
        u = ureg(PINT_UNITS[self.units(channel)]).units
        meta = {"channel": channel, "temperature_K": float(self.temperature_k), "qz_inv_angstrom": float(self.qz),
                "label": "dfptmag S(Q,w) " + channel, "description": self.describe()[:400]}
        if self.kind == "cut":
            return Spectrum1D(self.energies * ureg("meV"), z[0] * u, metadata=meta)
        if self.kind == "path":
            return Spectrum2D(self.distance * ureg("1/angstrom"), self.energies * ureg("meV"), z * u,
                              x_tick_labels=[(int(i), str(lab)) for i, lab in self.ticks], metadata=meta)
        qx, qy = self.plane_axes
        return Spectrum2D(qx * ureg("1/angstrom"), qy * ureg("1/angstrom"),
                          z[:, 0].reshape(len(qx), len(qy)) * u, metadata=meta)

    def save(self, outdir, channels=DEFAULT_CHANNELS, formats=("png",), log: bool = False,
             overlay: bool = True) -> list[Path]:
        """Write sqw_<kind>.h5, the Euphonic JSON of each channel and its figure(s)."""
        from ..plot.sqw import save_figures
        from ..results.sqwfile import write
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        stem = (f"sqw_{self.kind}" + ("_time_odd" if self.sector == "time-odd" else "")
                + (f"_{self.label}" if self.label else ""))
        paths = [write(self, outdir / f"{stem}.h5", channels)]
        from ..atomic import atomic_path
        for ch in channels:
            p = outdir / f"{stem}_{ch}.json"
            with atomic_path(p) as tmp:
                self.to_euphonic(ch).to_json_file(str(tmp))
            paths.append(p)
        if formats:
            paths += save_figures(self, outdir, stem, channels, formats, log=log, overlay=overlay)
        return paths


# ------------------------------------------------------------------------------------ the job
def _source(path, qe_bin_dir=None, sector: str = "one-sided"):
    path = Path(path)
    if path.is_dir():
        for name in ("bands.h5", "dfptmag.h5"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise InputFileError(path, "no bands.h5 (from bands --interpolate) or dfptmag.h5 in this folder")
    if not path.is_file():
        raise InputFileError(path, "file not found")
    import h5py
    try:
        with h5py.File(path, "r") as f:
            kind = "direct" if "q" in f else ("interpolated" if "path" in f else None)
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    if kind == "interpolated":
        if sector != "one-sided":
            raise InputFileError(path, "the time-odd sector comes from a dfptmag.h5 of 'dfptmag run --time-odd' "
                                       "(cuts at Q = q + G); the interpolated route has no time-odd response yet")
        return asq.InterpolatedSource(path, qe_bin_dir), path
    if kind == "direct":
        return asq.DirectSource.from_file(path, sector), path
    raise InputFileError(path, "not a dfptmag bands.h5 or dfptmag.h5")


def compute(source, kind: str = "path", path: str = DEFAULT_PATH, npoints: int = 300, at: str = "K",
            G=(0, 0), energy: float | None = None, extent: float | None = None, nplane: int = 81,
            energies=None, temperature: float = 300.0, fwhm=1.0, shape: str = "gauss", qz: float = 0.0,
            omega_min: float = 0.5, form_factor=None, cross_section: bool = False) -> StructureFactor:
    """S(Q, ω) from a source (analysis.sqw.InterpolatedSource or DirectSource)."""
    _check_options(kind, shape, temperature, fwhm, qz)
    cell = source.cell_bohr
    distance = ticks = axes = None
    if isinstance(source, asq.DirectSource):
        Q, w, A, label = _direct_q(source, kind, at, G, qz)
    else:
        Q, distance, ticks, axes, label = _sampled_q(kind, cell, path, npoints, extent, nplane, at, G)
        w, A = source.amplitudes(Q, qz)
    cart = asq.cartesian_inv_angstrom(Q, cell)
    cart[:, 2] = qz
    if kind == "map":
        if energy is None:
            raise ValueError("a constant-energy map needs energy (meV)")
        E = np.array([float(energy)])
    else:
        E = energy_grid(energies, float(np.nanmax(w)))
    le, lw, kept = sf.sticks(w, A, temperature, omega_min)
    S = sf.spectrum(E, le, lw, fwhm, shape)
    return StructureFactor(kind, Q, cart, E, S, w, A, le, lw, kept, float(temperature), fwhm, shape, float(qz),
                           float(omega_min), source.description, np.asarray(cell), distance, ticks, axes,
                           None if form_factor is None else tuple(float(c) for c in form_factor),
                           bool(cross_section), label, getattr(source, "sector", "one-sided"))


def _check_options(kind, shape, temperature, fwhm, qz) -> None:
    """A ValueError naming the first option of :func:`compute` out of its range."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    if shape not in sf.SHAPES:
        raise ValueError(f"shape {shape!r}: one of {', '.join(sf.SHAPES)}")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature {temperature!r}: a number of kelvin ≥ 0")
    if not callable(fwhm):
        c = np.atleast_1d(np.asarray(fwhm, float))
        if c.size < 1 or not np.all(np.isfinite(c)) or c[0] <= 0 or np.any(c[1:] < 0):
            raise ValueError(f"resolution FWHM {c.tolist()}: c0 > 0 meV and c1, c2 ≥ 0 (FWHM = c0 + c1|E| + c2 E²)")
    if not np.isfinite(qz):
        raise ValueError(f"qz {qz!r}: a finite number (1/Å)")


def _direct_q(source, kind, at, G, qz):
    """A direct source's cut: Q = q + G at its DFPT q-point ``at`` (one Q per row of ``G``).
    Returns (Q crystal, frequencies (nQ, nmode), amplitudes, file label)."""
    if kind != "cut":
        raise DfptmagError("a dfptmag.h5 (direct DFPT q-points) gives cuts at Q = q + G only (kind 'cut'); "
                           "Q–ω and constant-energy maps need `dfptmag bands --interpolate`")
    q_label = qpoints.stored_label(at, source.results)
    if q_label not in source.results:
        raise ValueError(f"q {at!r}: the file has {', '.join(source.results)}")
    g = np.atleast_2d(np.asarray(G, int))
    w, A = source.amplitudes(q_label, g, qz)
    Q = source.q_crystal(q_label)[None, :] + np.column_stack([g, np.zeros(len(g))])
    w = np.repeat(w[None, :], len(Q), axis=0)
    label = f"{q_label}+G{g[0, 0]}_{g[0, 1]}".replace("-", "m") if np.any(g) else q_label.replace("-", "m")
    return Q, w, A, label


def _sampled_q(kind, cell, path, npoints, extent, nplane, at, G):
    """The Q of an interpolated source: a path, a plane or one point ``at`` + G. Returns
    (Q crystal, path distance, path ticks, plane axes, file label), None where not that kind."""
    if kind == "path":
        Q, distance, ticks = sample_path(path, cell, npoints)
        return Q, distance, ticks, None, ""
    if kind == "map":
        Q, qx, qy = sample_plane(cell, extent, nplane)
        return Q, None, None, (qx, qy), ""
    q0, lab = parse_point(at)
    g = np.asarray(G, float).ravel()
    Q = (q0 + np.array([g[0], g[1], 0.0]))[None, :]
    label = (lab.strip("()").replace(",", "_") + (f"+G{int(g[0])}_{int(g[1])}" if np.any(g) else "")
             ).replace("Γ", "G").replace("'", "p").replace("-", "m")
    return Q, None, None, None, label


def run_sqw(input_path, kind: str = "path", outdir=None, channels=DEFAULT_CHANNELS, formats=("png",),
            log_scale: bool = False, overlay: bool = True, qe_bin_dir=None, sector: str = "one-sided", **kw):
    """The command: read the source, compute, write the files beside the input (or into
    ``outdir``). ``sector="time-odd"``: the physical spin sector from the time-odd amplitudes
    (a dfptmag.h5 of ``run --time-odd``). Returns (StructureFactor, [paths])."""
    channels = check_channels(channels)
    source, path = _source(input_path, qe_bin_dir, sector)
    res = compute(source, kind=kind, **kw)
    out = Path(outdir) if outdir is not None else path.parent
    paths = res.save(out, channels, formats, log=log_scale, overlay=overlay)
    nskip = int((~res.kept).sum())
    if nskip:
        log.info("%d mode(s) below %.3g meV carry no weight (acoustic at Γ or imaginary)", nskip, res.omega_min_mev)
    return res, paths
