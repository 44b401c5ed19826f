"""Figures like the paper's Figs. 1–2: one plane of the time-dependent induced magnetization
and charge of a phonon over N×M cells, with the displaced atoms."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path, savefig
from ..constants import BOHR_RADIUS_ANGS
from ..analysis.snapshot import Amplitude, metal_symbol, plane_index, supercell_atoms, supercell_field

A3 = BOHR_RADIUS_ANGS ** 3      # bohr³ in Å³: densities per bohr³ ÷ A3 = per Å³


def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plane_data(amp: Amplitude, cells=(4, 4), t: float = 0.0, plane: str | None = None, field=None):
    """Arrays for one snapshot plane: X, Y (Å), components (4, N n1, M n2) per Å³, atoms."""
    N, M = cells
    f = supercell_field(amp.field if field is None else field, amp.q_crystal, (N, M, 1), t)
    k = plane_index(amp, plane)
    sl = f[..., k] if k is not None else f.mean(axis=-1)
    sl = sl / A3
    n1, n2 = amp.field.shape[-3], amp.field.shape[-2]
    u = np.arange(N * n1) / n1
    v = np.arange(M * n2) / n2
    a = amp.cell_bohr * BOHR_RADIUS_ANGS
    X = u[:, None] * a[0, 0] + v[None, :] * a[1, 0]
    Y = u[:, None] * a[0, 1] + v[None, :] * a[1, 1]
    syms, pos, disp = supercell_atoms(amp, (N, M, 1), t)
    return {"X": X, "Y": Y, "comp": sl, "symbols": syms, "pos": pos * BOHR_RADIUS_ANGS,
            "disp": disp * BOHR_RADIUS_ANGS, "plane_index": k}


def _metal_colour(uz: float, zlim: float):
    import matplotlib
    return matplotlib.colormaps["PiYG"](0.5 + 0.5 * uz / zlim) if zlim > 0 else "white"


def _atoms(ax, d, scale, zlim) -> list:
    """The heaviest atoms (the metal plane: W, Mo) as circles coloured by their z displacement;
    atoms above/below that plane as up/down triangles; crosses at equilibrium; in-plane
    displacement arrows (scaled by ``scale``; drawn when longer than 0.03 Å). Returns
    [(marker, arrow, is_metal)] per atom, which :func:`_move_atoms` moves to another time."""
    syms = np.array(d["symbols"])
    z0 = np.median(d["pos"][syms == metal_symbol(list(syms)), 2])
    out = []
    for p, u in zip(d["pos"], d["disp"]):
        q = p + scale * u
        ax.plot(p[0], p[1], "+", color="0.2", ms=5, mew=0.8, zorder=4)
        if p[2] > z0 + 0.1:
            m = ax.scatter(q[0], q[1], marker="^", s=38, facecolor="#d98c00", edgecolor="k", linewidths=0.6, zorder=5)
        elif p[2] < z0 - 0.1:
            m = ax.scatter(q[0], q[1], marker="v", s=38, facecolor="white", edgecolor="#d98c00", linewidths=1.0, zorder=5)
        else:
            m = ax.scatter(q[0], q[1], marker="o", s=70, facecolor=_metal_colour(u[2], zlim), edgecolor="k",
                           linewidths=0.8, zorder=5)
        arrow = ax.annotate("", xy=(q[0], q[1]), xytext=(p[0], p[1]),
                            arrowprops=dict(arrowstyle="-|>", lw=0.7, color="k", mutation_scale=6), zorder=6)
        arrow.set_visible(bool(np.hypot(*u[:2]) * scale > 0.03))
        out.append((m, arrow, abs(p[2] - z0) <= 0.1))
    return out


def _move_atoms(records, d, scale, zlim) -> None:
    """The atoms of :func:`_atoms` at the displacements of ``d`` (same positions, colours and
    arrows as drawn afresh; the axis limits are those :func:`movie_figure` fixed)."""
    for (m, arrow, metal), p, u in zip(records, d["pos"], d["disp"]):
        q = p + scale * u
        m.set_offsets([q[:2]])
        if metal:
            m.set_facecolor(_metal_colour(u[2], zlim))
        arrow.xy = (q[0], q[1])
        arrow.set_visible(bool(np.hypot(*u[:2]) * scale > 0.03))


def _q_arrow(ax, amp, X, Y):
    b = np.linalg.inv(amp.cell_bohr).T            # rows b_i / 2π, 1/bohr
    qc = amp.q_crystal @ b
    if np.hypot(qc[0], qc[1]) < 1e-12:
        return
    d = qc[:2] / np.hypot(qc[0], qc[1])
    from matplotlib import patheffects
    halo = [patheffects.withStroke(linewidth=3, foreground="w")]
    # inside the axes (an arrow whose head leaves them is not drawn), clear of the top edge
    x0, y0 = X.min() + 0.8 - min(0.0, 1.5 * d[0]), Y.max() - 1.2 - max(0.0, 1.5 * d[1])
    ax.annotate("", xy=(x0 + 1.5 * d[0], y0 + 1.5 * d[1]), xytext=(x0, y0), annotation_clip=False, zorder=7,
                arrowprops=dict(arrowstyle="-|>", lw=1.6, color="m", path_effects=halo))
    ax.text(x0 + 1.5 * d[0] + 0.5, y0 + 1.5 * d[1], "q", color="m", fontsize=11, ha="left", va="center",
            zorder=7, path_effects=halo)


def _title(amp: Amplitude, cells, t: float, plane, d, disp_scale: float) -> str:
    metal = metal_symbol(amp.symbols)
    where = f"plane {plane or metal}" if d["plane_index"] is not None else "average over z"
    title = (f"q = {amp.label}, {amp.what}"
             + (f" ({amp.frequency_mev:.2f} meV)" if amp.frequency_mev is not None else "")
             + f", t = {t:.3f} T, {where}, {cells[0]}×{cells[1]} cells")
    return (title + "\n" + amp.amplitude_note
            + f"; in-plane displacements drawn ×{disp_scale:.3g} (arrows), {metal} colour = z displacement"
            + ("" if amp.kind == "time-odd" else "; one-sided amplitude of Eq. 1"))


def snapshot_figure(amp: Amplitude, cells=(4, 4), t: float = 0.0, plane: str | None = None,
                    arrows_every: int = 3, disp_scale: float | None = None, fixed_limits: bool = False):
    """Three panels: in-plane δm (arrows coloured by magnitude), δm_z and δn (diverging maps).
    With ``fixed_limits`` the colour ranges are the bounds over a whole period (|complex
    amplitude|), as a movie needs. Returns (figure, data) with exactly the plotted arrays."""
    fig, d, _ = _snapshot(amp, cells, t, plane, arrows_every, disp_scale, fixed_limits)
    return fig, d


def _snapshot(amp, cells, t, plane, arrows_every, disp_scale, fixed_limits):
    """:func:`snapshot_figure` and the handles of what changes with t (for :func:`_set_time`)."""
    plt = _mpl()
    d = plane_data(amp, cells, t, plane)
    X, Y, comp = d["X"], d["Y"], d["comp"]
    umax = np.abs(d["disp"]).max()
    if disp_scale is None:
        disp_scale = 0.35 / umax if umax > 0 else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.0), constrained_layout=True)
    title = fig.suptitle(_title(amp, cells, t, plane, d, disp_scale), fontsize=10)
    # (a) in-plane magnetization
    ax = axes[0]
    s = slice(None, None, arrows_every)
    mx, my = comp[1][s, s], comp[2][s, s]
    mag = np.hypot(mx, my)
    if fixed_limits:
        lim = {c: np.abs(amp.field[c]).max() / A3 for c in range(4)}
        lim_xy = np.sqrt(np.abs(amp.field[1]) ** 2 + np.abs(amp.field[2]) ** 2).max() / A3
    else:
        lim = {c: np.abs(comp[c]).max() for c in range(4)}
        lim_xy = mag.max()
    qv = ax.quiver(X[s, s], Y[s, s], mx, my, mag, cmap="viridis", pivot="middle", clim=(0, lim_xy),
                   scale=lim_xy * 20 if lim_xy > 0 else None, width=0.0035, headwidth=3.5)
    fig.colorbar(qv, ax=ax, shrink=0.75, label=r"$|\delta m_{xy}|$ ($\mu_B$/Å$^3$)")
    ax.set_title(r"in-plane magnetization $\delta m_x, \delta m_y$")
    # (b), (c) out-of-plane magnetization and charge
    meshes = {}
    for ax, c, lab, name in ((axes[1], 3, r"$\delta m_z$ ($\mu_B$/Å$^3$)", "out-of-plane magnetization"),
                             (axes[2], 0, r"$\delta n$ (e/Å$^3$)",
                              "induced charge" if amp.kind != "time-odd" else "no time-odd charge (time reversal)")):
        v = lim[c] or 1.0
        meshes[c] = ax.pcolormesh(X, Y, comp[c], cmap="RdBu_r", vmin=-v, vmax=v, shading="gouraud", rasterized=True)
        fig.colorbar(meshes[c], ax=ax, shrink=0.75, label=lab)
        ax.set_title(name)
    zlim = np.abs(d["disp"][:, 2]).max()
    atoms = []
    for ax in axes:
        atoms.append(_atoms(ax, d, disp_scale, zlim))
        _q_arrow(ax, amp, X, Y)
        ax.set_aspect("equal")
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
    d.update(mx=mx, my=my, disp_scale=disp_scale)
    handles = {"axes": axes, "title": title, "quiver": qv, "meshes": meshes, "atoms": atoms}
    return fig, d, handles


def _set_time(handles, amp, cells, t, plane, arrows_every, disp_scale):
    """Move a figure of :func:`_snapshot` (``fixed_limits``) to time t: the same arrays, atoms
    and title as a figure drawn afresh at t, without rebuilding the axes and colour bars."""
    d = plane_data(amp, cells, t, plane)
    comp = d["comp"]
    s = slice(None, None, arrows_every)
    mx, my = comp[1][s, s], comp[2][s, s]
    handles["quiver"].set_UVC(mx, my, np.hypot(mx, my))
    for c, mesh in handles["meshes"].items():
        mesh.set_array(comp[c])
    zlim = np.abs(d["disp"][:, 2]).max()
    for records in handles["atoms"]:
        _move_atoms(records, d, disp_scale, zlim)
    handles["title"].set_text(_title(amp, cells, t, plane, d, disp_scale))
    d.update(mx=mx, my=my, disp_scale=disp_scale)
    return d


def movie_figure(amp: Amplitude, frames: int, cells=(4, 4), plane: str | None = None, dpi: int = 70,
                 arrows_every: int = 3):
    """The movie's one figure at t = 0, with the axis limits and the layout fixed for the whole
    period: the limits cover the field and every atom at every frame (a figure drawn afresh
    per frame would follow the displaced atoms, and the panels would jump in size whenever an
    atom crosses the edge of the field), the constrained layout is solved once at ``dpi``.
    Returns (figure, handles for :func:`_set_time`, displacement scale)."""
    umax = np.abs(plane_data(amp, cells, 0.0, plane)["disp"]).max()
    scale = 0.35 / umax if umax > 0 else 1.0
    fig, _, handles = _snapshot(amp, cells, 0.0, plane, arrows_every, scale, True)
    drawn = []
    for i in range(frames):
        _, pos, disp = supercell_atoms(amp, (cells[0], cells[1], 1), i / frames)
        drawn.append((pos + scale * disp)[:, :2] * BOHR_RADIUS_ANGS)
    drawn = np.concatenate(drawn)
    for ax in handles["axes"]:
        ax.update_datalim(drawn)
        ax.autoscale_view()
    fig.set_dpi(dpi)
    fig.canvas.draw()                       # constrained layout once, at the movie's dpi
    fig.set_layout_engine("none")           # then frozen
    for ax in handles["axes"]:
        ax.set_autoscale_on(False)
    return fig, handles, scale


def movie(amp: Amplitude, path, frames: int = 48, cells=(4, 4), plane: str | None = None, fps: int = 12,
          dpi: int = 70, progress: bool = False, arrows_every: int = 3):
    """One period as GIF or MP4 through matplotlib.animation's writers (PillowWriter for GIF,
    FFMpegWriter for MP4 — a clear error when ffmpeg is missing). One figure: its layout is
    solved once and frozen, and each frame only moves the time-dependent artists
    (:func:`_set_time`) before ``grab_frame``; displacement scale, colour limits and axis
    limits are fixed over the period (:func:`movie_figure`). Measured 0.5 s a frame against
    1.0 s for the loop it replaced (a new figure per frame). Not FuncAnimation.save: on the Agg
    backend its ``draw_idle`` after each frame renders the figure a second time (0.7 s a frame).
    """
    from matplotlib import animation

    from ..errors import DfptmagError
    plt = _mpl()
    path = Path(path)
    if path.suffix not in (".gif", ".mp4"):
        raise DfptmagError(f"{path}: movie format must be .gif or .mp4")
    if path.suffix == ".mp4" and not animation.FFMpegWriter.isAvailable():
        raise DfptmagError("MP4 needs ffmpeg, which is not installed (Debian: apt-get install ffmpeg); "
                           "use --movie gif instead")
    fig, handles, scale = movie_figure(amp, frames, cells, plane, dpi, arrows_every)
    it = range(frames)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="movie frames", unit="frame", leave=False)
    writer = (animation.PillowWriter(fps=fps) if path.suffix == ".gif"
              else animation.FFMpegWriter(fps=fps, extra_args=["-f", "mp4"]))
    try:
        with atomic_path(path) as tmp, writer.saving(fig, tmp, dpi):
            for i in it:
                _set_time(handles, amp, cells, i / frames, plane, arrows_every, scale)
                writer.grab_frame()
    finally:
        plt.close(fig)
    return path


def save_snapshot(amp: Amplitude, stem, formats=("png",), cells=(4, 4), t: float = 0.0,
                  plane: str | None = None, dpi: int = 150) -> list[Path]:
    """Write the snapshot figure as ``<stem>.<ext>`` for each of png/pdf in ``formats`` (atomic
    writes); returns the files written."""
    plt = _mpl()
    fig, _ = snapshot_figure(amp, cells, t, plane)
    try:
        return [savefig(fig, Path(f"{stem}.{ext}"), dpi=dpi) for ext in ("png", "pdf") if ext in formats]
    finally:
        plt.close(fig)
