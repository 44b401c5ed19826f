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


AMBIGUOUS_OVERLAP = 0.5    # a branch step whose matched eigenvector overlap is below this is marked


def ambiguous(b) -> np.ndarray | None:
    """(nq, nbranch) bool, per branch: the step into this q matched eigenvectors with an overlap
    below AMBIGUOUS_OVERLAP (modes/branch_overlap), so the branch assignment there is uncertain."""
    if "modes/branch_overlap" not in b:
        return None
    return np.nan_to_num(per_branch(b, "modes/branch_overlap"), nan=1.0) < AMBIGUOUS_OVERLAP


def _interpolated(ax, b):
    """The q2r.x/matdyn.x dispersion of the direct route as thin grey dashed lines."""
    if "dispersion/frequency_meV" not in b:
        return False
    for j in range(b["dispersion/frequency_meV"].shape[1]):
        ax.plot(b["dispersion/distance"], b["dispersion/frequency_meV"][:, j], color="0.6", lw=0.7,
                ls="--", zorder=1, label=None)
    return True


def _grid_text(g) -> str:
    return "×".join(str(int(x)) for x in g) if g is not None and len(g) else "?"


def _header(fig, ax, b, dashed: bool, marked: float | None):
    """A legend above the top panel that says what lines, dots, dashes and crosses are, and a
    line on how ω was obtained and what was imposed (the acoustic sum rule)."""
    from matplotlib.lines import Line2D
    a = b.get("attrs", {})
    interpolated = b.get("path/dfpt_point") is not None
    if interpolated:
        g = _grid_text(a.get("interpolation_qgrid"))
        handles = [Line2D([], [], color="0.25", lw=1.0, label=f"interpolated from the {g} DFPT grid"),
                   Line2D([], [], ls="none", marker="o", ms=3.5, mfc="0.7", mec="k", mew=0.4,
                          label="DFPT grid point on the path")]
        asr, loto = a.get("dispersion_asr"), a.get("dispersion_loto_2d")
        how = (f"ω: q2r.x/matdyn.x on the {g} grid, asr = '{asr}' imposed" + (", 2D LO–TO" if loto else "")
               + f"\nM: one-sided response Fourier-interpolated from the {g} grid") if asr else ""
    else:
        da = b.get("dispersion_attrs", {})
        handles = [Line2D([], [], color="0.25", lw=1.0, marker="o", ms=3.5, mfc="0.7", mec="k", mew=0.4,
                          label="DFPT at each q, joined per branch")]
        if dashed:
            handles.append(Line2D([], [], color="0.6", lw=0.7, ls="--",
                                  label=f"ω interpolated ({_grid_text(da.get('qgrid'))} grid)"))
        how = (f"dashed ω: q2r.x/matdyn.x, asr = '{da.get('asr')}' imposed\nDFPT ω: ph.x at each q, no sum rule imposed"
               if dashed else "ω: ph.x at each q, no sum rule imposed")
    if marked is not None:
        handles.append(Line2D([], [], ls="none", marker="x", ms=4, color="k", mew=0.8,
                              label=f"uncertain branch step (overlap < {AMBIGUOUS_OVERLAP}); "
                                    f"smallest overlap on the path {marked:.2f}"))
    ax.legend(handles=handles[:2], loc="lower left", bbox_to_anchor=(-0.02, 1.0), ncol=2, fontsize=6,
              frameon=False, handlelength=1.8, columnspacing=1.0, borderaxespad=0.2)
    if len(handles) > 2:       # the second row on its own legend: its labels are long
        ax.add_artist(ax.get_legend())
        ax.legend(handles=handles[2:], loc="lower left", bbox_to_anchor=(-0.02, 1.06), ncol=1, fontsize=6,
                  frameon=False, handlelength=1.8, borderaxespad=0.2)
    if how:
        fig.text(0.5, 0.995, how, ha="center", va="top", fontsize=6, color="0.3", linespacing=1.3)


# what each magnetization figure shows: (in-plane key, out-of-plane key, symbol suffix, note)
KINDS = {
    "one-sided": ("modes/rms_inplane", "modes/rms_outofplane", "", None),
    "time-odd": ("modes/time_odd_rms_inplane", "modes/time_odd_rms_outofplane", r",{\rm odd}",
                 "time-odd spin response, in phase with the lattice velocity (not the one-sided amplitude)"),
}


def magnetization_figure(b, kind: str = "one-sided"):
    """Fig. 3 of the paper: ω and the in-plane and out-of-plane RMS magnetization per branch,
    of the one-sided amplitude or (``kind="time-odd"``) of the time-odd response."""
    key_in, key_out, odd, note = KINDS[kind]
    plt = _mpl()
    nmode = b["modes/frequency_meV"].shape[1]
    colors = _colors(nmode)
    d = b["path/distance"]
    fig, axes = plt.subplots(3, 1, figsize=(4.2, 7.0), sharex=True,
                             gridspec_kw={"height_ratios": [1.3, 1, 1], "hspace": 0.08})
    ax = axes[0]
    dashed = _interpolated(ax, b)
    w = per_branch(b, "modes/frequency_meV")
    amb = ambiguous(b)
    # interpolated magnetization bands (--interpolate): lines, dots only where DFPT ran
    dots = b.get("path/dfpt_point")
    style = "-o" if dots is None else "-"

    def mark(ax, y, br, ms):
        if dots is not None:
            ax.plot(d[dots], y[dots], "o", ms=ms, color=colors[br], mec="k", mew=0.4, zorder=3)
        if amb is not None and amb[:, br].any():
            ax.plot(d[amb[:, br]], y[amb[:, br]], "x", ms=4, color="k", mew=0.8, zorder=4)

    for br in range(nmode):
        ax.plot(d, w[:, br], style, ms=3.5, color=colors[br], mec="k", mew=0.4, lw=1.0)
        mark(ax, w[:, br], br, 3.5)
    ax.set_ylabel("ω (meV)")
    ax.set_ylim(bottom=min(0.0, np.nanmin(w) * 1.05))
    ax.axhline(0, color="0.5", lw=0.5)
    for ax, key, sym in ((axes[1], key_in, r"M_\parallel^{\rm rms" + odd + "}"),
                         (axes[2], key_out, r"M_z^{\rm rms" + odd + "}")):
        v = per_branch(b, key)
        vmax = np.nanmax(v) if np.any(np.isfinite(v)) else 1.0
        k = int(np.floor(np.log10(vmax))) if vmax > 0 else 0
        for br in range(nmode):
            ax.plot(d, v[:, br] / 10.0 ** k, style, ms=3, lw=1.0, color=colors[br], mec="k", mew=0.3,
                    label=f"{br + 1}")
            mark(ax, v[:, br] / 10.0 ** k, br, 3)
        ax.set_ylabel(f"${sym}$ ($10^{{{k}}}\\,\\mu_B$/cell)")
        ax.set_ylim(bottom=0, top=1.08 * vmax / 10.0 ** k)
    for ax in axes:
        _path_axis(ax, b)
    axes[1].legend(title="branch", fontsize=6, title_fontsize=6, ncol=3, loc="upper right",
                   frameon=False, handlelength=1.2, columnspacing=0.8)
    lowest = None
    if amb is not None:
        sc = per_branch(b, "modes/branch_overlap")
        lowest = float(np.nanmin(sc)) if np.isfinite(sc).any() else None
    _header(fig, axes[0], b, dashed, lowest)
    axes[2].set_xlabel("q path")
    fig.text(0.5, 0.005, note or NOTE, ha="center", va="bottom", fontsize=6, color="0.35")
    fig.subplots_adjust(left=0.17, right=0.97, top=0.885, bottom=0.075)
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
        _interpolated(ax, b)
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
    makers = [(f"{stem}_magnetization", magnetization_figure), (f"{stem}_fat", fat_band_figure)]
    if "modes/time_odd_rms_inplane" in b:
        makers.append((f"{stem}_magnetization_time_odd", lambda b: magnetization_figure(b, "time-odd")))
    for name, make in makers:
        fig = make(b)
        for fmt in formats:
            written.append(savefig(fig, outdir / f"{name}.{fmt}"))
        plt.close(fig)
    return written
