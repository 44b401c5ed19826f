"""Figures of a bands.h5: (1) three stacked panels sharing the path axis — phonon dispersion
(interpolated lines and DFPT points), in-plane and out-of-plane RMS magnetization per branch —
with one colour per branch in every panel (the paper's Fig. 3); (2) "fat bands": the dispersion
with marker area proportional to the in-plane / out-of-plane magnetization."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import savefig
from ..kernel import branches as kb

NOTE = "zero-point amplitude; one-sided ψ*δψ amplitude (paper Eq. 1)"


def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.linewidth": 0.8, "xtick.direction": "in",
                         "ytick.direction": "in", "ytick.right": True, "savefig.dpi": 300})
    return plt


def _colors(n):
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _ticks(b):
    """High-symmetry positions and labels; labels at the same distance (a break) become 'K|Γ'."""
    d = b["path/distance"]
    pos, labs = [], []
    for i, lab in zip(b["path/label_index"], b["path/labels"]):
        x = d[i]
        if pos and abs(pos[-1] - x) < 1e-9:
            if labs[-1] != lab:
                labs[-1] = labs[-1] + "|" + lab
        else:
            pos.append(x)
            labs.append(lab)
    return pos, labs


def _path_axis(ax, b):
    pos, labs = _ticks(b)
    for x in pos:
        ax.axvline(x, color="0.75", lw=0.6, zorder=0)
    ax.set_xticks(pos)
    ax.set_xticklabels(labs)
    ax.set_xlim(b["path/distance"][0], b["path/distance"][-1])


def per_branch(b, key):
    """(nq, nbranch) values of ``key`` of a bands dict reordered by branch (NaN where not computed)."""
    return kb.per_branch(b[key], b["modes/branch"], b["path/computed"])


def _interpolated(ax, b, label=True):
    """The interpolated dispersion as thin grey dashed lines (a guide between DFPT points)."""
    if "dispersion/frequency_meV" not in b:
        return
    grid = b.get("dispersion_attrs", {}).get("qgrid")
    for j in range(b["dispersion/frequency_meV"].shape[1]):
        ax.plot(b["dispersion/distance"], b["dispersion/frequency_meV"][:, j], color="0.6", lw=0.7,
                ls="--", zorder=1, label=None)
    if label:
        txt = "dashed: interpolated (q2r.x/matdyn.x" + (f", {'×'.join(map(str, grid))} grid)" if grid is not None else ")")
        ax.text(0.01, 1.01, "dots: DFPT at each q; " + txt, transform=ax.transAxes, fontsize=6.5,
                va="bottom", ha="left", color="0.3")


def magnetization_figure(b):
    plt = _mpl()
    nmode = b["modes/frequency_meV"].shape[1]
    colors = _colors(nmode)
    d = b["path/distance"]
    fig, axes = plt.subplots(3, 1, figsize=(4.2, 6.6), sharex=True,
                             gridspec_kw={"height_ratios": [1.3, 1, 1], "hspace": 0.08})
    ax = axes[0]
    _interpolated(ax, b)
    w = per_branch(b, "modes/frequency_meV")
    for br in range(nmode):
        ax.plot(d, w[:, br], "-o", ms=3.5, color=colors[br], mec="k", mew=0.4, lw=1.0)
    ax.set_ylabel("ω (meV)")
    ax.set_ylim(bottom=min(0.0, np.nanmin(w) * 1.05))
    ax.axhline(0, color="0.5", lw=0.5)
    for ax, key, sym in ((axes[1], "modes/rms_inplane", r"M_\parallel^{\rm rms}"),
                         (axes[2], "modes/rms_outofplane", r"M_z^{\rm rms}")):
        v = per_branch(b, key)
        vmax = np.nanmax(v) if np.any(np.isfinite(v)) else 1.0
        k = int(np.floor(np.log10(vmax))) if vmax > 0 else 0
        for br in range(nmode):
            ax.plot(d, v[:, br] / 10.0 ** k, "-o", ms=3, lw=1.0, color=colors[br], mec="k", mew=0.3,
                    label=f"{br + 1}")
        ax.set_ylabel(f"${sym}$ ($10^{{{k}}}\\,\\mu_B$/cell)")
        ax.set_ylim(bottom=0, top=1.08 * vmax / 10.0 ** k)
    for ax in axes:
        _path_axis(ax, b)
    axes[1].legend(title="branch", fontsize=6, title_fontsize=6, ncol=3, loc="upper right",
                   frameon=False, handlelength=1.2, columnspacing=0.8)
    axes[2].set_xlabel("q path")
    fig.text(0.5, 0.005, NOTE, ha="center", va="bottom", fontsize=6, color="0.35")
    fig.subplots_adjust(left=0.17, right=0.97, top=0.96, bottom=0.08)
    return fig


def fat_band_figure(b):
    plt = _mpl()
    nmode = b["modes/frequency_meV"].shape[1]
    colors = _colors(nmode)
    d = b["path/distance"]
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.4), sharey=True, gridspec_kw={"wspace": 0.06})
    w = per_branch(b, "modes/frequency_meV")
    for ax, key, title in ((axes[0], "modes/rms_inplane", "in-plane $M_\\parallel^{\\rm rms}$"),
                           (axes[1], "modes/rms_outofplane", "out-of-plane $M_z^{\\rm rms}$")):
        _interpolated(ax, b, label=False)
        v = per_branch(b, key)
        vmax = np.nanmax(v) if np.any(np.isfinite(v)) else 1.0
        for br in range(nmode):
            size = 250.0 * np.nan_to_num(v[:, br] / vmax)
            ax.scatter(d, w[:, br], s=size, color=colors[br], alpha=0.6, edgecolors="k", linewidths=0.3)
            ax.plot(d, w[:, br], "-", lw=0.6, color=colors[br], alpha=0.8)
            ax.plot(d, w[:, br], ".", ms=1.5, color="k")
        ax.set_title(f"{title}; largest marker = {vmax:.2e} $\\mu_B$/cell", fontsize=8)
        _path_axis(ax, b)
    axes[0].set_ylabel("ω (meV)")
    fig.text(0.5, 0.005, NOTE, ha="center", va="bottom", fontsize=6, color="0.35")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.1)
    return fig


def save_figures(b, outdir, formats=("png", "pdf"), stem="bands") -> list[Path]:
    plt = _mpl()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in ((f"{stem}_magnetization", magnetization_figure), (f"{stem}_fat", fat_band_figure)):
        fig = make(b)
        for fmt in formats:
            written.append(savefig(fig, outdir / f"{name}.{fmt}"))
        plt.close(fig)
    return written
