"""Brillouin-zone maps of the interpolated magnetization: per band index (modes in ascending
frequency at each q), the in-plane and out-of-plane RMS over the first BZ of the 2D hexagonal
lattice, with the zone boundary and Γ, M, K, K′ marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _bz_corners(B):
    """Corners of the Wigner–Seitz cell of the 2D reciprocal lattice B (rows), in order."""
    G = np.array([i * B[0] + j * B[1] for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)])
    pts = []
    for a in range(len(G)):
        for c in range(a + 1, len(G)):
            M = np.array([G[a], G[c]])
            if abs(np.linalg.det(M)) < 1e-12:
                continue
            x = np.linalg.solve(M, 0.5 * np.array([G[a] @ G[a], G[c] @ G[c]]))
            if np.all(G @ x <= 0.5 * np.sum(G * G, axis=1) + 1e-9):
                pts.append(x)
    pts = np.unique(np.round(np.array(pts), 10), axis=0)
    ang = np.arctan2(pts[:, 1], pts[:, 0])
    return pts[np.argsort(ang)]


def bz_figure(q_crystal, rms_in, rms_out, freq_mev, cell_bohr):
    """rms_in/rms_out: (nq, nmode) in μB per cell; returns the matplotlib Figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.tri import Triangulation
    B = 2 * np.pi * np.linalg.inv(np.asarray(cell_bohr, float)).T[:2, :2] / 0.529177210903   # 1/Å
    xy = np.asarray(q_crystal)[:, :2] @ B
    corners = _bz_corners(B)
    K = (B[0] + B[1]) / 3
    marks = {"Γ": np.zeros(2), "M": B[0] / 2, "K": K, "K′": -K}
    nmode = rms_in.shape[1]
    fig, axes = plt.subplots(2, nmode, figsize=(2.1 * nmode, 4.6), squeeze=False)
    for j in range(nmode):
        wmean = np.nanmean(freq_mev[:, j])
        for row, (vals, name) in enumerate(((rms_in, "in-plane"), (rms_out, "out-of-plane"))):
            ax = axes[row, j]
            v = np.array(vals[:, j], float)
            ok = np.isfinite(v)
            if ok.sum() >= 3:
                vmax = np.nanpercentile(v[ok], 99.5) or 1.0
                pc = ax.tripcolor(Triangulation(xy[ok, 0], xy[ok, 1]), v[ok], shading="gouraud",
                                  cmap="viridis", vmin=0, vmax=vmax)
                cb = fig.colorbar(pc, ax=ax, fraction=0.046, pad=0.02, format="%.0e")
                cb.ax.tick_params(labelsize=5)
            c = np.vstack([corners, corners[:1]])
            ax.plot(c[:, 0], c[:, 1], "k-", lw=0.8)
            for lab, p in marks.items():
                ax.plot(*p, "o", ms=2.5, color="r", mec="k", mew=0.3)
                ax.annotate(lab, p, color="w", fontsize=7, xytext=(2, 2), textcoords="offset points",
                            path_effects=[patheffects.withStroke(linewidth=1.5, foreground="k")])
            pad = 0.08 * np.abs(corners).max()
            ax.set_xlim(corners[:, 0].min() - pad, corners[:, 0].max() + pad)
            ax.set_ylim(corners[:, 1].min() - pad, corners[:, 1].max() + pad)
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(f"band {j + 1}\n(~{wmean:.1f} meV)", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{name} RMS (μB/cell)", fontsize=7)
    fig.suptitle("Interpolated magnetization over the Brillouin zone (modes by ascending frequency; "
                 "one phonon quantum)", fontsize=8)
    fig.tight_layout()
    return fig


def save_bz_maps(q_crystal, rms_in, rms_out, freq_mev, cell_bohr, outdir, formats=("png",),
                 stem="bz_maps") -> list[Path]:
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path
    fig = bz_figure(q_crystal, rms_in, rms_out, freq_mev, cell_bohr)
    out = []
    for fmt in formats:
        p = Path(outdir) / f"{stem}.{fmt}"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=110, format=fmt)
        out.append(p)
    plt.close(fig)
    return out
