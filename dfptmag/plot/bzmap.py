"""Brillouin-zone maps of the interpolated magnetization: per tracked branch (or, without branch
data, per band index: modes in ascending frequency at each q), the in-plane and out-of-plane RMS over the first BZ of the 2D hexagonal
lattice, with the zone boundary and Γ, M, K, K′ marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _bz_corners(B):
    """Corners of the Wigner–Seitz cell of the 2D reciprocal lattice B (rows), counter-clockwise
    by angle in (−π, π] (a corner on the −x axis comes last): the Voronoi region of the origin
    among its eight neighbours, computed by scipy.spatial.Voronoi (tests/test_libraries.py checks
    it against the intersections of the perpendicular bisectors, to 1e-10)."""
    from scipy.spatial import Voronoi
    B = np.asarray(B, dtype=float)
    G = np.array([i * B[0] + j * B[1] for i in (-1, 0, 1) for j in (-1, 0, 1)])   # G[4] = 0
    vor = Voronoi(G)
    pts = vor.vertices[vor.regions[vor.point_region[4]]]
    ang = np.arctan2(pts[:, 1], pts[:, 0])
    ang[ang < -np.pi + 1e-9] = np.pi              # ±0 noise on the −x axis: always last
    return pts[np.argsort(ang)]


def _scale(vmax: float) -> tuple[float, str]:
    """A power of ten for a colour bar, and its label text (values shown ×10^k)."""
    if not np.isfinite(vmax) or vmax <= 0:
        return 1.0, ""
    k = int(np.floor(np.log10(vmax)))
    return 10.0 ** k, (f"10$^{{{k}}}$ " if k else "")


FORBIDDEN_RATIO = 1e-4     # below this fraction of the figure's maximum a band is forbidden (measured: 1e-6–4e-6 on the tiny run, allowed ones ≥ 0.15)


def bz_figure(q_crystal, rms, freq_mev, cell_bohr, what: str = "in-plane", ncols: int = 3,
              shared: bool = True, branch=None, seam=None):
    """One panel per tracked branch (``branch`` (nq, nmode): the branch of each mode, as
    kernel.branches.track_tree gives it; None: one panel per band index; ``seam`` (nq,) bool: points
    where the labelling exchanges branches, drawn as small grey dots): ``rms`` (nq, nmode) in μB per cell over the BZ sampled at
    ``q_crystal``; the zone boundary and Γ, M, K, K′ marked. ``shared`` (default): one colour
    scale for every panel, so that a symmetry-forbidden band's noise is not drawn full-scale; a
    panel whose maximum is below FORBIDDEN_RATIO of the figure's is marked as forbidden.
    Returns the matplotlib Figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    B = 2 * np.pi * np.linalg.inv(np.asarray(cell_bohr, float)).T[:2, :2] / 0.529177210903   # 1/Å
    xy = np.asarray(q_crystal)[:, :2] @ B
    corners = _bz_corners(B)
    rms, freq_mev = np.asarray(rms, float), np.asarray(freq_mev, float)
    if branch is not None:
        from ..kernel.branches import per_branch
        ok = np.all(np.asarray(branch) >= 0, axis=1)
        rms, freq_mev = per_branch(rms, branch, ok), per_branch(freq_mev, branch, ok)
    unit = "band" if branch is None else "branch"
    K = (B[0] + B[1]) / 3
    marks = {"Γ": np.zeros(2), "M": B[0] / 2, "K": K, "K′": -K}
    nmode = rms.shape[1]
    nrows = -(-nmode // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.9 * nrows), squeeze=False)
    tri = None
    vall = float(np.nanmax(rms)) if np.isfinite(rms).any() else 0.0
    for j, ax in enumerate(axes.flat):
        if j >= nmode:
            ax.axis("off")
            continue
        tri, vpanel, forbidden = _colour_panel(fig, ax, xy, rms[:, j], tri, vall, shared)
        _zone_marks(ax, xy, corners, marks, seam)
        ax.set_title(f"{unit} {j + 1}  (mean {np.nanmean(freq_mev[:, j]):.1f} meV)"
                     + (f"\nforbidden: max {vpanel / vall:.0e} of the largest" if forbidden else ""), fontsize=9)
    fig.suptitle(_suptitle(what, unit, branch is None, seam, shared), fontsize=9)
    fig.tight_layout()
    return fig


def _colour_panel(fig, ax, xy, values, tri, vall: float, shared: bool):
    """One band's RMS as a colour map over the points ``xy`` with their finite values, and its
    colour bar (scale: the figure's maximum ``vall`` if ``shared``, else the panel's). ``tri``:
    the previous panel's triangulation, reused when every value here is finite. Returns (the
    triangulation, the panel's maximum, whether it is below FORBIDDEN_RATIO of ``vall``)."""
    from matplotlib.tri import Triangulation
    v = np.array(values, float)
    ok = np.isfinite(v)
    if ok.sum() < 3:
        return tri, 0.0, False
    if tri is None or not np.all(ok):
        tri = Triangulation(xy[ok, 0], xy[ok, 1])
    vpanel = float(np.nanmax(v[ok]))
    vmax = vall if shared else vpanel
    f, lab = _scale(vmax)
    pc = ax.tripcolor(tri, v[ok] / f, shading="gouraud", cmap="viridis", vmin=0,
                      vmax=vmax / f if vmax > 0 else 1.0)
    cb = fig.colorbar(pc, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(f"{lab}μB/cell", fontsize=10)
    cb.ax.tick_params(labelsize=7)
    return tri, vpanel, vall > 0 and vpanel < FORBIDDEN_RATIO * vall


def _zone_marks(ax, xy, corners, marks, seam) -> None:
    """The zone boundary, the special points ``marks`` (name → Cartesian point) and the seam
    points (if any) on one panel, framed on the zone with equal axes and no ticks."""
    from matplotlib import patheffects
    if seam is not None and np.any(seam):
        ax.plot(xy[seam, 0], xy[seam, 1], ".", ms=1.2, color="0.85", zorder=3)
    c = np.vstack([corners, corners[:1]])
    ax.plot(c[:, 0], c[:, 1], "k-", lw=0.9)
    for name, pt in marks.items():
        ax.plot(*pt, "o", ms=3, color="w", mec="k", mew=0.5)
        ax.annotate(name, pt, color="w", fontsize=9, xytext=(3, 3), textcoords="offset points",
                    path_effects=[patheffects.withStroke(linewidth=1.8, foreground="k")])
    pad = 0.1 * np.abs(corners).max()
    ax.set_xlim(corners[:, 0].min() - pad, corners[:, 0].max() + pad)
    ax.set_ylim(corners[:, 1].min() - pad, corners[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])


def _suptitle(what: str, unit: str, by_index: bool, seam, shared: bool) -> str:
    """The figure's title: what is shown, how the panels are labelled (``by_index``: modes by
    ascending frequency, else tracked branches) and the colour scale."""
    return (f"{what} magnetization RMS over the Brillouin zone (interpolated)\n"
            + ("one phonon quantum; modes by ascending frequency; " if by_index else
               "one phonon quantum; branches tracked by eigenvector overlap"
               + ("; grey dots: seam where branches exchange" if seam is not None and np.any(seam) else "")
               + "\n")
            + "one-sided amplitude of paper Eq. 1; "
            + (f"one colour scale for all {unit}{'es' if unit == 'branch' else 's'}" if shared else f"colour scale per {unit}"))


def save_bz_maps(q_crystal, rms_in, rms_out, freq_mev, cell_bohr, outdir, formats=("png",),
                 stem="bz_maps", branch=None, seam=None) -> list[Path]:
    """``<stem>_inplane.<fmt>`` and ``<stem>_outofplane.<fmt>`` (atomic writes); returns the files."""
    import matplotlib.pyplot as plt

    from ..atomic import savefig
    out = []
    for what, vals, suffix in (("in-plane", rms_in, "inplane"), ("out-of-plane", rms_out, "outofplane")):
        fig = bz_figure(q_crystal, vals, freq_mev, cell_bohr, what, branch=branch, seam=seam)
        out += [savefig(fig, Path(outdir) / f"{stem}_{suffix}.{fmt}", dpi=130) for fmt in formats]
        plt.close(fig)
    return out
