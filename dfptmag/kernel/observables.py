"""Paper Eq. 3: RMS over a period of the cell-integrated response, per component and in/out of
plane, and the basis-independent totals over degenerate subspaces."""
from __future__ import annotations

import numpy as np

SQRT2 = np.sqrt(2.0)


def rms(cell_integral: np.ndarray) -> np.ndarray:
    """RMS over a period of Re[X e^{-iωt}] = |X|/√2, elementwise."""
    return np.abs(cell_integral) / SQRT2


def inplane_outofplane(cell_integral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From (..., 4) [n, m_x, m_y, m_z]: in-plane sqrt(|m_x|²+|m_y|²)/√2 and out-of-plane |m_z|/√2."""
    inplane = np.sqrt(np.abs(cell_integral[..., 1]) ** 2 + np.abs(cell_integral[..., 2]) ** 2) / SQRT2
    return inplane, np.abs(cell_integral[..., 3]) / SQRT2


def mode_observables(cell_integral: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """Every RMS quantity of a set of modes (..., 4) in one place: 'rms' (..., 4), 'inplane' and
    'outofplane' (...), 'subspace' (..., 4) (per degenerate group; needs one q, (nmode, 4))."""
    inp, outp = inplane_outofplane(cell_integral)
    return {"rms": rms(cell_integral), "inplane": inp, "outofplane": outp,
            "subspace": subspace_totals(cell_integral, groups)}


def subspace_totals(cell_integral: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per mode, sqrt(Σ_{ν' in its group} |X_ν'|²)/√2 for each component: (nmode, 4).
    Independent of the basis chosen inside a degenerate subspace (equal ω, unitary mixing)."""
    out = np.empty(cell_integral.shape, dtype=float)
    for g in np.unique(groups):
        sel = groups == g
        out[sel] = np.sqrt(np.sum(np.abs(cell_integral[sel]) ** 2, axis=0)) / SQRT2
    return out
