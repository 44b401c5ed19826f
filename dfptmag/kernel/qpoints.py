"""Named q-points: the one table of names, their aliases and the labels of q-run directories.

Crystal coordinates of the reciprocal lattice of a 2D hexagonal cell (a1, a2 at 120°, as in
``structures/`` and ASE's HEX2D lattice). K' is the time-reversal partner −K; it is accepted as
``K'``, ``-K`` or ``Kp`` (ASE path syntax) and its q-run label (directory ``q_-K``, HDF5 group
``/q/-K``) is ``-K``. Any other q is labelled by its coordinates, ``0.2222_0.2222_0.0000``
(directory ``q_0.2222_0.2222_0.0000``).
"""
from __future__ import annotations

import numpy as np

HEX2D = {
    "G": (0.0, 0.0, 0.0),
    "M": (0.5, 0.0, 0.0),
    "K": (1.0 / 3.0, 1.0 / 3.0, 0.0),
    "K'": (-1.0 / 3.0, -1.0 / 3.0, 0.0),
}
ALIASES = {"Γ": "G", "-K": "K'", "Kp": "K'"}
RUN_LABEL = {"G": "G", "M": "M", "K": "K", "K'": "-K"}     # q-run directory / HDF5 group label
PLOT_LABEL = {"G": "Γ", "M": "M", "K": "K", "K'": "K'"}


def canonical(name: str) -> str | None:
    """'Γ' → 'G', '-K'/'Kp' → "K'", a canonical name → itself; None if not a named point."""
    name = name.strip()
    name = ALIASES.get(name, name)
    return name if name in HEX2D else None


def stored_label(label: str, available) -> str:
    """A q label in any spelling (G, Γ, Gamma; K', -K, Kp; a coordinate label as stored) → the
    spelling that ``available`` (the labels a file stores) uses; ``label`` itself if none."""
    if label in available:
        return label
    name = canonical("G" if label.strip().lower() == "gamma" else label)
    if name is not None:
        for spelling in (RUN_LABEL[name], PLOT_LABEL[name], name):
            if spelling in available:
                return spelling
    return label


def names() -> list[str]:
    """Every accepted spelling, for messages."""
    return list(HEX2D) + list(ALIASES)


def coordinate_label(q) -> str:
    """Label of an unnamed q: its crystal coordinates, four decimals, '_'-joined."""
    return "_".join(f"{round(float(v), 4) + 0.0:.4f}" for v in q)     # + 0.0: no "-0.0000"


def run_label(q, known: dict[str, np.ndarray] | None = None, tol: float = 1e-6) -> str:
    """The q-run label of crystal coordinates ``q``: a named point's label if ``q`` is one of
    ``known`` (canonical name → coordinates; default the hexagonal table), else the coordinates."""
    known = HEX2D if known is None else known
    for name in ("G", "M", "K", "K'"):
        if name in known and np.all(np.abs(np.asarray(q, float) - np.asarray(known[name], float)) < tol):
            return RUN_LABEL[name]
    return coordinate_label(q)
