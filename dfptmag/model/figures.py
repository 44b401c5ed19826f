"""Figures of the model, like the paper's Figs. 2, 3, 5/7 and 6."""
from __future__ import annotations

import numpy as np



def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def dos_figure(models: dict, kTs, omega, spin_axis=(1.0, 0.0, 0.0), xlim=(-3, 3)):
    """Rows: total DOS, spin-up and spin-down DOS along ``spin_axis``; one column per model
    (e.g. per phonon velocity); one curve per temperature; the bare DOS for reference."""
    plt = _plt()
    cols = len(models)
    fig, axes = plt.subplots(3, cols, figsize=(5.2 * cols, 9), sharex=True, squeeze=False,
                             constrained_layout=True)
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
        for i, lab in enumerate(("DOS (states/meV)", "spin-up DOS", "spin-down DOS")):
            axes[i, j].set_ylabel(lab)
            axes[i, j].set_xlim(*xlim)
            top = max(np.percentile(d[i], 99.9) for k, d in data.items() if k[0] == name)
            axes[i, j].set_ylim(0, 1.2 * top)
        axes[2, j].set_xlabel("energy ω (meV)")
    axes[0, 0].legend(fontsize=8)
    ax = np.asarray(spin_axis) / np.linalg.norm(spin_axis)
    fig.suptitle(f"localized level: ε0 = {m.level.eps0} meV, u0 = {m.u0} meV, u1 = {tuple(m.u1)} meV, "
                 f"δ = {m.delta} meV; spin axis {np.round(ax, 3).tolist()}", fontsize=10)
    return fig, data


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
