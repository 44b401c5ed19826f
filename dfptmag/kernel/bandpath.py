"""q-point paths through the Brillouin zone: special points from ASE's band-path machinery,
points spread along the segments in proportion to their length, the cumulative distance axis,
and the de-duplicated list of q-points that actually need a DFPT run.

Coordinates: q in crystal coordinates of the reciprocal lattice (the b_i of the cell, the same
numbers pw.x/ph.x and ASE's ``kpts`` use); distances in Å⁻¹ with the 2π included (|q| = 2π/λ).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from ase.dft.kpoints import parse_path_string

from . import qpoints
from ..errors import DfptmagError

DEFAULT_PATH = "GMKG"


@dataclasses.dataclass
class BandPath:
    q_crystal: np.ndarray                 # (nq, 3)
    distance: np.ndarray                  # (nq,) Å⁻¹, cumulative; breaks add no length
    labels: list[tuple[int, str]]         # (index into q_crystal, label)
    breaks: list[int]                     # indices where a new disconnected segment starts
    path: str

    @property
    def nq(self) -> int:
        return len(self.q_crystal)


def special_points(atoms, extra: dict | None = None) -> dict[str, np.ndarray]:
    """ASE's special points for the lattice of the cell with its periodicity (crystal
    coordinates): a slab (``atoms.pbc = [1, 1, 0]``, as ``inputs.build_atoms`` makes it) gets the
    2D lattice (HEX2D: Γ, M, K; no A, H, L). Plus "K'" = −K and any user-defined ``extra`` points;
    the aliases of dfptmag.qpoints (Γ, -K, Kp) are accepted by :func:`band_path`."""
    pts = {k: np.asarray(v, dtype=float)
           for k, v in atoms.cell.bandpath(npoints=0, pbc=atoms.pbc).special_points.items()}
    if "K" in pts:
        pts["K'"] = 0.0 - pts["K"]       # the time-reversal partner of K (0.0 -: no -0.0)
    for k, v in (extra or {}).items():
        v = np.asarray(v, dtype=float)
        if v.shape != (3,):
            raise DfptmagError(f"point {k}: need three crystal coordinates, got {v.tolist()}")
        pts[k] = v
    return pts


def _reciprocal_angstrom(atoms) -> np.ndarray:
    return 2.0 * np.pi * atoms.cell.reciprocal().array      # rows b_i, Å⁻¹


def band_path(atoms, path: str = DEFAULT_PATH, npoints: int = 7, extra: dict | None = None) -> BandPath:
    """Points along ``path`` (ASE syntax: 'GMKG'; a comma starts a disconnected segment, e.g.
    'GMK,GA'; K' may be written Kp). ``npoints`` is the total number of points; every straight
    piece gets at least one interval, so each special point is on the path exactly.

    The intervals are shared out in proportion to the pieces' lengths, rounded once; ASE's
    ``cell.bandpath(path, npoints)`` rounds piece by piece and so chooses other points for many
    ``npoints`` (31 on GMKG: 10/6/14 intervals for our 11/6/13, other DFPT q-points for existing
    runs), counts a break as a point, and its ``get_linear_kpoint_axis`` gives a one-interval
    piece zero length (tests/test_libraries.py; docs/performance.md)."""
    pts = special_points(atoms, extra)
    segments = _parse_segments(path, pts)
    B = _reciprocal_angstrom(atoms)
    pieces = [(pts[a], pts[b], a, b) for seg in segments for a, b in zip(seg[:-1], seg[1:])]
    lengths = np.array([np.linalg.norm((b - a) @ B) for a, b, _, _ in pieces])
    if np.any(lengths == 0):
        raise DfptmagError(f"band path {path!r} has a zero-length piece")
    n_int = max(int(npoints) - 1, len(pieces))
    intervals = np.maximum(1, np.round(n_int * lengths / lengths.sum()).astype(int))
    q, labels, breaks = _place_points(segments, pieces, intervals)
    dist = _path_distance(q, B, breaks)
    pretty = [(i, qpoints.PLOT_LABEL.get(lab, lab)) for i, lab in labels]
    return BandPath(q_crystal=q, distance=dist, labels=pretty, breaks=breaks, path=path)


def _parse_segments(path: str, pts: dict) -> list[list[str]]:
    """The segments of ``path`` as lists of point names, aliases made canonical (Γ, Kp → G,
    K'); a DfptmagError for a malformed path, an unknown point or a one-point segment."""
    try:
        segments = parse_path_string(path.replace("Γ", "G").replace("K'", "Kp"))
    except Exception as exc:       # ASE raises several kinds for malformed strings
        raise DfptmagError(f"cannot parse band path {path!r}: {exc}") from None
    for seg in segments:
        for i, name in enumerate(seg):
            if name not in pts and qpoints.canonical(name) in pts:
                seg[i] = name = qpoints.canonical(name)        # Γ, Kp → G, K'
            if name not in pts:
                raise DfptmagError(f"band path {path!r}: unknown point {name!r}; known: "
                                   f"{', '.join(sorted(pts))} (K' may be written Kp)")
        if len(seg) < 2:
            raise DfptmagError(f"band path {path!r}: segment {''.join(seg)!r} needs two points")
    return segments


def _place_points(segments, pieces, intervals) -> tuple[np.ndarray, list, list]:
    """The points of every straight piece (its start only where a segment starts, then
    ``intervals`` equal steps to its end). Returns (q (nq, 3), [(index, special point name)],
    indices where a new segment starts)."""
    qs, labels, breaks = [], [], []
    seg_ends = np.cumsum([len(seg) - 1 for seg in segments])
    for ip, ((a, b, la, lb), n) in enumerate(zip(pieces, intervals)):
        new_segment = ip == 0 or ip in seg_ends
        if new_segment:
            if ip:
                breaks.append(len(qs))
            labels.append((len(qs), la))
            qs.append(a)
        for t in np.arange(1, n + 1) / n:
            qs.append(a + t * (b - a))
        labels.append((len(qs) - 1, lb))
    return np.array(qs), labels, breaks


def _path_distance(q: np.ndarray, B: np.ndarray, breaks) -> np.ndarray:
    """Cumulative distance (Å⁻¹, B: rows b_i in Å⁻¹) along the points q; the jump to the first
    point of a new segment (``breaks``) adds no length."""
    step = np.linalg.norm(np.diff(q, axis=0) @ B, axis=1)
    for b in breaks:
        step[b - 1] = 0.0
    return np.concatenate([[0.0], np.cumsum(step)])


def refine(bp: BandPath, atoms, npoints: int) -> tuple[BandPath, np.ndarray]:
    """The same path with every interval split into m equal parts (m chosen so that there are
    about ``npoints`` points), for the interpolated dispersion. Returns (dense path, index of
    each original point in it): the DFPT points are exactly on the dense path."""
    m = max(1, int(np.ceil((npoints - 1) / max(bp.nq - 1, 1))))
    qs, index, breaks = [bp.q_crystal[0]], [0], []
    for i in range(1, bp.nq):
        a, b = bp.q_crystal[i - 1], bp.q_crystal[i]
        if i in bp.breaks:
            breaks.append(len(qs))
            qs.append(b)
        else:
            qs.extend(a + t * (b - a) for t in np.arange(1, m + 1) / m)
        index.append(len(qs) - 1)
    q = np.array(qs)
    dist = _path_distance(q, _reciprocal_angstrom(atoms), breaks)
    index = np.array(index)
    labels = [(int(index[i]), lab) for i, lab in bp.labels]
    return BandPath(q_crystal=q, distance=dist, labels=labels, breaks=breaks, path=bp.path), index


def unique_points(q_crystal: np.ndarray, tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Distinct q-points (exact equality within ``tol``, not modulo G: q and q+G are different
    DFPT runs with different cell-periodic parts). Returns (unique (nu, 3), index (nq,))."""
    uniq, index = [], np.empty(len(q_crystal), dtype=int)
    for i, q in enumerate(q_crystal):
        for j, u in enumerate(uniq):
            if np.all(np.abs(q - u) < tol):
                index[i] = j
                break
        else:
            index[i] = len(uniq)
            uniq.append(q)
    return np.array(uniq), index


def point_label(q: np.ndarray, known: dict[str, np.ndarray], tol: float = 1e-6) -> str:
    """A q-run label (dfptmag.qpoints): the name of a special point at these coordinates, else
    the coordinates 'x_y_z' (the run directory is q_<label>)."""
    return qpoints.run_label(q, known, tol)
