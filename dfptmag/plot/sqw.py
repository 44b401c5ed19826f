"""Figures of the structure factor (jobs.sqw.StructureFactor): a Q–ω colour map along a path with
the special points and the zone boundaries crossed marked and the dispersion overlaid; a
constant-energy map over several Brillouin zones with every zone boundary drawn; a cut S(ω).
Each carries the channel, its units, the temperature, the resolution and Q_z."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.sqw import reciprocal_bohr
from ..atomic import savefig
from ..constants import BOHR_RADIUS_ANGS
from .bzmap import _bz_corners, _scale

TEXT = {"inplane": r"in-plane spin $S^{xx}+S^{yy}$", "outofplane": r"out-of-plane spin $S^{zz}$",
        "spin": r"spin $S^{xx}+S^{yy}+S^{zz}$",
        "neutron": r"magnetic neutron $\sum_{ab}(\delta_{ab}-\hat Q_a\hat Q_b)S^{ab}$"}
UNIT_TEX = {"muB^2/meV": r"$\mu_B^2$ meV$^{-1}$ cell$^{-1}$", "e^2/meV": r"$e^2$ meV$^{-1}$ cell$^{-1}$",
            "e*muB/meV": r"$e\,\mu_B$ meV$^{-1}$ cell$^{-1}$", "barn/sr/meV": r"barn sr$^{-1}$ meV$^{-1}$ cell$^{-1}$"}


def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def channel_text(name: str) -> str:
    if name in TEXT:
        return TEXT[name]
    a, b = name
    t = f"$S^{{{a}{b}}}$"
    return t if a == b else f"Re {t}"


def _subtitle(res) -> str:
    fw = res.fwhm if not callable(res.fwhm) else "E-dependent"
    if isinstance(fw, (list, tuple, np.ndarray)) and len(fw) == 1:
        fw = fw[0]
    return (f"T = {res.temperature_k:g} K, {res.shape} FWHM {fw} meV, $Q_z$ = {res.qz:g} Å$^{{-1}}$\n"
            + ("one-sided amplitude (paper Eq. 1)" if getattr(res, "sector", "one-sided") == "one-sided"
               else "time-odd spin response (in phase with the velocity)")
            + ", zero-point modes, no Debye–Waller")


def _norm(z, log: bool):
    """Colour limits: linear from 0 to the 99.5th percentile (a few hot pixels — the acoustic
    modes next to Q = G ≠ 0, whose weight grows as k_BT/ω² — would otherwise hide the rest; the
    colour bar is extended), log over four decades below the maximum. Returns (norm, clipped)."""
    from matplotlib.colors import LogNorm, Normalize
    zf = z[np.isfinite(z)]
    zmax = float(zf.max()) if zf.size else 1.0
    if log:
        zmax = zmax if zmax > 0 else 1.0
        return LogNorm(vmin=zmax * 1e-4, vmax=zmax), False
    top = float(np.percentile(zf, 99.5)) if zf.size else 1.0
    top = top if top > 0 else (zmax if zmax > 0 else 1.0)
    return Normalize(vmin=min(0.0, float(zf.min()) if zf.size else 0.0), vmax=top), zmax > top * (1 + 1e-9)


def _nearest_G(q_crystal, B2):
    """Index of the nearest reciprocal-lattice vector (h, k) of each in-plane Q (Cartesian B2)."""
    q = np.asarray(q_crystal, float)[:, :2]
    base = np.floor(q)
    best, arg = None, None
    for d1 in (-1, 0, 1, 2):
        for d2 in (-1, 0, 1, 2):
            g = base + [d1, d2]
            dist = np.linalg.norm((q - g) @ B2, axis=1)
            if best is None:
                best, arg = dist, g.copy()
            else:
                sel = dist < best - 1e-9
                best = np.where(sel, dist, best)
                arg[sel] = g[sel]
    return arg


def _cmap(log: bool):
    import matplotlib
    cmap = matplotlib.colormaps["magma" if log else "viridis"].copy()
    cmap.set_bad(cmap(0.0))            # log scale: zero weight (modes below omega_min) as the floor
    cmap.set_under(cmap(0.0))
    return cmap


def sqw_figure(res, channel: str = "inplane", log: bool = False, overlay: bool = True, ax=None):
    plt = _mpl()
    z = res.channel(channel)
    units = UNIT_TEX.get(res.units(channel), res.units(channel))
    fac, fac_text = (1.0, "") if (log or res.kind == "cut") else _scale(float(np.nanpercentile(np.abs(z), 99.5)))
    z = z / fac
    B = reciprocal_bohr(res.cell_bohr) / BOHR_RADIUS_ANGS
    if ax is None:
        size = (6.2, 5.8) if res.kind == "map" else (7.0, 4.6)
        fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    else:
        fig = ax.figure
    if res.kind == "path":
        m, clipped = _path_panel(ax, res, z, log, overlay, B)
    elif res.kind == "map":
        m, clipped = _map_panel(ax, res, z, log, B)
    else:
        _cut_panel(ax, res, z, log, units)
        m = None
    if m is not None:
        cb = fig.colorbar(m, ax=ax, extend="max" if clipped else "neither")
        cb.set_label(f"S ({fac_text}{units})" + ("\nclipped at the 99.5th percentile" if clipped else ""))
    head = channel_text(channel) + (f" at E = {res.energies[0]:g} meV" if res.kind == "map" else "")
    ax.set_title(f"{head}\n{_subtitle(res)}", fontsize=8.5, loc="left")
    return fig


def _path_panel(ax, res, z, log: bool, overlay: bool, B):
    """The Q–ω map along a path: the dispersion overlaid (``overlay``), dotted lines where the
    nearest reciprocal-lattice vector changes (a zone boundary crossed), the special points as
    ticks. Returns (the colour mesh, whether its colour scale is clipped)."""
    x = res.distance
    norm, clipped = _norm(z, log)
    m = ax.pcolormesh(x, res.energies, z.T, shading="gouraud" if not log else "nearest",
                      norm=norm, cmap=_cmap(log), rasterized=True)
    if overlay:
        w = np.where(res.kept, res.frequency_meV, np.nan)
        for sign in (1, -1):
            ax.plot(x, sign * w, color="white", lw=0.5, alpha=0.55)
    ng = _nearest_G(res.q_crystal, B[:2, :2])
    change = np.flatnonzero(np.any(ng[1:] != ng[:-1], axis=1))
    for i in change:
        ax.axvline(0.5 * (x[i] + x[i + 1]), color="w", ls=":", lw=0.9)
    for i, _ in res.ticks:
        ax.axvline(x[i], color="0.85", lw=0.6)
    ax.set_xticks([x[i] for i, _ in res.ticks], [lab for _, lab in res.ticks])
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel(r"$\mathbf{Q}$ (r.l.u.; path length in Å$^{-1}$); dotted: zone boundary")
    ax.set_ylabel("energy transfer (meV)")
    ax.axhline(0, color="w", lw=0.4)
    return m, clipped


def _map_panel(ax, res, z, log: bool, B):
    """The constant-energy map over the Q plane with every zone boundary and every Γ in it
    drawn. Returns (the colour mesh, whether its colour scale is clipped)."""
    qx, qy = res.plane_axes
    Z = z[:, 0].reshape(len(qx), len(qy))
    norm, clipped = _norm(Z, log)
    m = ax.pcolormesh(qx, qy, Z.T, shading="gouraud" if not log else "nearest", norm=norm,
                      cmap=_cmap(log), rasterized=True)
    _zone_boundaries(ax, B, max(abs(qx).max(), abs(qy).max()))
    ax.set_xlim(qx[0], qx[-1])
    ax.set_ylim(qy[0], qy[-1])
    ax.set_aspect("equal")
    ax.set_xlabel(r"$Q_x$ (Å$^{-1}$)")
    ax.set_ylabel(r"$Q_y$ (Å$^{-1}$)")
    return m, clipped


def _zone_boundaries(ax, B, ext: float) -> None:
    """The boundary of every Brillouin zone that reaches into [−ext, ext]² (and the zones one
    further out), and a cross at each zone centre inside that square."""
    corners = _bz_corners(B[:2, :2])
    nmax = int(np.ceil(ext / np.linalg.norm(B[0, :2]))) + 1
    for h in range(-nmax, nmax + 1):
        for k in range(-nmax, nmax + 1):
            c = h * B[0, :2] + k * B[1, :2]
            poly = np.vstack([corners, corners[:1]]) + c
            ax.plot(poly[:, 0], poly[:, 1], color="w", lw=0.6, alpha=0.8)
            if abs(c[0]) <= ext and abs(c[1]) <= ext:
                ax.plot(*c, "w+", ms=4)


def _cut_panel(ax, res, z, log: bool, units: str) -> None:
    """The cut S(ω) at one Q."""
    ax.plot(res.energies, z[0], color="C0")
    ax.set_xlabel("energy transfer (meV)")
    ax.set_ylabel(f"S ({units})")
    ax.axvline(0, color="0.6", lw=0.5)
    if log:
        ax.set_yscale("log")
    q = res.q_crystal[0]
    ax.text(0.99, 0.97, f"Q = ({q[0]:.4g}, {q[1]:.4g}) r.l.u.", transform=ax.transAxes, ha="right", va="top",
            fontsize=9, bbox=dict(fc="w", ec="none", alpha=0.85, pad=1.5))


def save_figures(res, outdir, stem: str, channels, formats=("png",), log: bool = False,
                 overlay: bool = True) -> list[Path]:
    plt = _mpl()
    out = []
    for ch in channels:
        fig = sqw_figure(res, ch, log=log, overlay=overlay)
        out += [savefig(fig, Path(outdir) / f"{stem}_{ch}.{fmt}", dpi=150) for fmt in formats]
        plt.close(fig)
    return out
