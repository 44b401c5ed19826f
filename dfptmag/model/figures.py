"""Figures of the model, like the paper's Figs. 2, 3, 5/7 and 6."""
from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _wrap(text, width):
    import textwrap
    return "\n".join(textwrap.wrap(text, width))


def dos_figure(models: dict, kTs, omega, spin_axis=(1.0, 0.0, 0.0), xlim=(-3, 3), title=None,
               caption=None, spin_labels=("spin-up DOS", "spin-down DOS")):
    """Rows: total DOS, spin-up and spin-down DOS along ``spin_axis``; one column per model
    (e.g. per phonon velocity); one curve per temperature; the bare DOS for reference.
    ``title`` (wrapped) and ``caption`` (below the panels, wrapped) are optional."""
    plt = _plt()
    cols = len(models)
    cap_lines = 0 if not caption else len(_wrap(caption, 55 * cols).splitlines())
    fig, axes = plt.subplots(3, cols, figsize=(5.2 * cols, 9 + 0.2 * cap_lines), sharex=True,
                             squeeze=False, constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(kTs)))
    data = {}
    for j, (name, m) in enumerate(models.items()):
        for kT, col in zip(kTs, colors):
            tot = m.dos(omega, kT)
            up, dn = m.spin_dos(omega, kT, spin_axis)
            data[(name, kT)] = (tot, up, dn)
            axes[0, j].plot(omega, tot, color=col, lw=1.2, label=f"$k_BT$ = {kT:g} meV")
            axes[1, j].plot(omega, up, color=col, lw=1.2)
            axes[2, j].plot(omega, dn, color=col, lw=1.2)
        bare = (m.delta / np.pi) / ((omega - m.level.eps0) ** 2 + m.delta ** 2)
        axes[0, j].plot(omega, 2 * bare, color="red", lw=0.8, alpha=0.7, label="bare")
        axes[0, j].set_title(name)
        inside = (omega >= xlim[0]) & (omega <= xlim[1])
        for i, lab in enumerate(("DOS (states/meV)",) + tuple(spin_labels)):
            axes[i, j].set_ylabel(lab)
            axes[i, j].set_xlim(*xlim)
            top = max(d[i][inside].max() for k, d in data.items() if k[0] == name)
            axes[i, j].set_ylim(0, 1.08 * top)
        axes[2, j].set_xlabel("energy ω (meV)")
    axes[0, 0].legend(fontsize=8)
    ax = np.asarray(spin_axis) / np.linalg.norm(spin_axis)
    if title is None:
        title = (f"localized level: ε0 = {m.level.eps0:g} meV, u0 = {m.u0:g} meV, "
                 f"u1 = {tuple(float(v) for v in m.u1)} meV, δ = {m.delta:g} meV; "
                 f"spin axis {np.round(ax, 3).tolist()}")
    fig.suptitle(_wrap(title, 60 * cols), fontsize=10)
    if caption:
        fig.supxlabel(_wrap(caption, 55 * cols), fontsize=8.5, ha="center")
    return fig, data


def moment_comparison_figure(paper: dict, consistent: dict, txo_paper=None, txo_limit=None,
                             titles=("paper convention (printed Eq. 14)", "consistent model")):
    """Two panels side by side: the paper-convention curves and the consistent model's, one
    curve per velocity; dashed vertical line at the strong-coupling T_xo = ε0/ln 3."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for ax, curves, title in zip(axes, (paper, consistent), titles):
        for label, (kT, M) in curves.items():
            ax.plot(kT, M, lw=1.5, label=label)
        ax.axhline(0, color="0.5", lw=0.7)
        ax.set_xscale("log")
        ax.set_xlabel(r"$k_BT$ (meV)")
        ax.set_title(title, fontsize=10)
    if txo_limit is not None:
        axes[0].axvline(txo_limit, color="k", ls="--", lw=0.8,
                        label=rf"$\varepsilon_0/\ln 3$ = {txo_limit:.4f} meV")
    axes[0].set_ylabel(r"$M_{paper} = \frac{1}{4}n_+ - \frac{1}{2}n_-$ (μB)")
    axes[1].set_ylabel(r"$M = n_+ - n_-$ along $\hat u_1$ (μB)")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def moment_figure(curves: dict, component_label="M (μB)"):
    """M versus k_BT, one curve per label: curves = {label: (kT array, M array)}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for label, (kT, M) in curves.items():
        ax.plot(kT, M, lw=1.5, label=label)
    ax.axhline(0, color="0.5", lw=0.7)
    ax.set_xscale("log")
    ax.set_xlabel(r"$k_BT$ (meV)")
    ax.set_ylabel(component_label)
    ax.legend(fontsize=8)
    return fig
