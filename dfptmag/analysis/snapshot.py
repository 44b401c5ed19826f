"""Real-space snapshots of one mode (or pattern): the periodic complex amplitude δñ(r) →
the time-dependent field Re[δñ(r) e^{i(q·r − ωt)}] tiled over N×M cells, and the displaced atoms
R⁰ + Re[U e^{i(q·R − ωt)}] (QE's convention: the phase uses the lattice vector R of the cell).

Pure array code; reading the HDF5 file is :func:`load` (through dfptmag.results).
"""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import scipy.fft

from ..results import qfile as results
from ..constants import BOHR_RADIUS_ANGS
from ..errors import InputFileError

COMPONENTS = ("n", "m_x", "m_y", "m_z")


@dataclasses.dataclass
class Amplitude:
    """Complex periodic amplitude of one mode or pattern, with what is needed to place it."""
    label: str                 # q label
    what: str                  # "mode 2" or "pattern 3"
    q_crystal: np.ndarray
    cell_bohr: np.ndarray      # rows a1..a3
    positions_bohr: np.ndarray
    symbols: list[str]
    field: np.ndarray          # (4, n1, n2, n3) complex [δn, δm_x, δm_y, δm_z] per bohr³
    displacement: np.ndarray   # (nat, 3) complex, bohr
    cell_integral: np.ndarray  # (4,) complex
    frequency_mev: float | None
    amplitude_note: str
    kind: str = "one-sided"    # or "time-odd": the magnetization in phase with the lattice velocity

    @property
    def omega_bohr3(self) -> float:
        return float(abs(np.linalg.det(self.cell_bohr)))


def load(path, label: str, mode: int | None = None, pattern: int | None = None,
         kind: str = "one-sided") -> Amplitude:
    """Mode ν (1-based) = Σ_μ c[ν, μ] × pattern μ field; or a single pattern (1-based).
    ``kind="time-odd"`` (a mode only): the time-odd spin response at the mode's frequency and
    amplitude, −2iħω_ν m[X·U_ν](r), a quarter period away from the displacement; its charge is
    zero (time reversal cancels it)."""
    if kind not in ("one-sided", "time-odd"):
        raise ValueError(f"kind {kind!r}: 'one-sided' or 'time-odd'")
    try:
        labs = results.labels(path)
    except (OSError, KeyError):
        raise InputFileError(path, "not a dfptmag results file") from None
    if label not in labs:
        raise InputFileError(path, f"no q-point '{label}' (has: {', '.join(labs)})")
    d = results.read_q(path, label)
    if "patterns/field" not in d:
        raise InputFileError(path, f"q '{label}' has no real-space field (analyzed with --no-field)")
    pf, idx = d["patterns/field"], list(d["patterns/index"])
    common = dict(label=label, q_crystal=d["q_crystal"], cell_bohr=d["structure/cell_bohr"],
                  positions_bohr=d["structure/positions_bohr"],
                  symbols=[s.decode() if isinstance(s, bytes) else s for s in d["structure/symbols"]])
    if (mode is None) == (pattern is None):
        raise ValueError("give exactly one of mode, pattern")
    if pattern is not None:
        if kind == "time-odd":
            raise InputFileError(path, "a pattern has no frequency and so no velocity: the time-odd snapshot "
                                       "is of a mode (--mode)")
        if pattern not in idx:
            raise InputFileError(path, f"pattern {pattern} not computed at '{label}' (has {idx})")
        n = idx.index(pattern)
        return Amplitude(what=f"pattern {pattern}", field=pf[n],
                         displacement=d["patterns/displacement"][n], cell_integral=d["patterns/cell_integral"][n],
                         frequency_mev=None, amplitude_note="1 bohr along the pattern", **common)
    if "modes/pattern_coefficients" not in d:
        raise InputFileError(path, f"no modes at '{label}': {d['attrs'].get('modes_missing_reason', 'not all patterns computed')}")
    c = d["modes/pattern_coefficients"]
    if not 1 <= mode <= c.shape[0]:
        raise InputFileError(path, f"mode {mode} out of range 1..{c.shape[0]}")
    with h5py.File(path) as f:
        note = str(f["q"][label]["modes"].attrs.get("amplitude", ""))
    if kind == "time-odd":
        return _time_odd_mode(path, d, c, mode, note, common)
    field = np.tensordot(c[mode - 1], pf, axes=(0, 0))
    return Amplitude(what=f"mode {mode}", field=field, displacement=d["modes/displacement_bohr"][mode - 1],
                     cell_integral=d["modes/cell_integral"][mode - 1],
                     frequency_mev=float(d["modes/frequency_meV"][mode - 1]), amplitude_note=note, **common)


def _time_odd_mode(path, d: dict, c: np.ndarray, mode: int, note: str, common: dict) -> Amplitude:
    from ..kernel import modes as km
    if "time_odd/pattern_field" not in d or "time_odd/mode_peak" not in d:
        raise InputFileError(path, f"q '{common['label']}' has no time-odd field (run with --time-odd, "
                                   "and with the real-space field)")
    w_ry = float(d["modes/frequency_meV"][mode - 1]) / km.ry_to_mev(1.0)
    if not w_ry > 0:
        raise InputFileError(path, f"mode {mode} at '{common['label']}' has ω ≤ 0: no velocity, no time-odd field")
    x = np.tensordot(c[mode - 1], d["time_odd/pattern_field"], axes=(0, 0))
    field = np.zeros_like(x)
    field[1:] = -2j * w_ry * x[1:]
    peak = d["time_odd/mode_peak"][mode - 1]
    return Amplitude(what=f"mode {mode}", field=field, displacement=d["modes/displacement_bohr"][mode - 1],
                     cell_integral=np.concatenate([[0.0], peak]),
                     frequency_mev=float(d["modes/frequency_meV"][mode - 1]),
                     amplitude_note=note + "; time-odd spin response, in phase with the velocity",
                     kind="time-odd", **common)


def resample(field: np.ndarray, shape) -> np.ndarray:
    """Fourier-interpolate a periodic complex field (..., n1, n2, n3) onto another grid."""
    old = field.shape[-3:]
    if tuple(shape) == tuple(old):
        return field
    fk = scipy.fft.fftn(field, axes=(-3, -2, -1)) / np.prod(old)
    out = np.zeros(field.shape[:-3] + tuple(shape), dtype=complex)
    # copy the common set of frequencies (centred) axis by axis
    def idx(n_old, n_new):
        k = min(n_old, n_new)
        freqs = np.fft.fftfreq(k, 1.0 / k).astype(int)
        return freqs % n_old, freqs % n_new
    (a1, b1), (a2, b2), (a3, b3) = (idx(o, n) for o, n in zip(old, shape))
    out[..., b1[:, None, None], b2[None, :, None], b3[None, None, :]] = fk[..., a1[:, None, None], a2[None, :, None], a3[None, None, :]]
    return scipy.fft.ifftn(out, axes=(-3, -2, -1)) * np.prod(shape)


def supercell_field(field: np.ndarray, q_crystal, cells=(4, 4, 1), t: float = 0.0) -> np.ndarray:
    """Re[F(r) e^{i q·r} e^{-2πi t}] on the (N n1, M n2, L n3) supercell grid; t in periods."""
    n1, n2, n3 = field.shape[-3:]
    N, M, L = cells
    tiled = np.tile(field, (1,) * (field.ndim - 3) + (N, M, L))
    x = [np.arange(N * n1) / n1, np.arange(M * n2) / n2, np.arange(L * n3) / n3]   # crystal coords
    q = np.asarray(q_crystal, dtype=float)
    phase = np.exp(2j * np.pi * (q[0] * x[0][:, None, None] + q[1] * x[1][None, :, None]
                                 + q[2] * x[2][None, None, :] - t))
    return np.real(tiled * phase)


def supercell_atoms(amp: Amplitude, cells=(4, 4, 1), t: float = 0.0):
    """(symbols, equilibrium positions (bohr), displacements (bohr)) over the supercell."""
    N, M, L = cells
    syms, pos, disp = [], [], []
    for i in range(N):
        for j in range(M):
            for k in range(L):
                R = np.array([i, j, k], dtype=float)
                ph = np.exp(2j * np.pi * (np.dot(amp.q_crystal, R) - t))
                for s, p, u in zip(amp.symbols, amp.positions_bohr, amp.displacement):
                    syms.append(s)
                    pos.append(p + R @ amp.cell_bohr)
                    disp.append(np.real(u * ph))
    return syms, np.array(pos), np.array(disp)


def metal_symbol(symbols) -> str:
    """The heaviest element present (W in WSe2, Mo in MoS2): the default snapshot plane and the
    atoms drawn as circles; the lighter atoms above and below it are drawn as triangles."""
    from ase.data import atomic_numbers
    return max(dict.fromkeys(symbols), key=lambda s: atomic_numbers.get(s, 0))


def plane_index(amp: Amplitude, plane: str | None) -> int | None:
    """Grid index along a3 of the requested plane: an element symbol (first such atom),
    'z=<Å>', 'avg' (None: average over z), or None (the heaviest atom's plane, ``metal_symbol``)."""
    n3 = amp.field.shape[-1]
    c = amp.cell_bohr[2, 2]
    if plane is None:
        plane = metal_symbol(amp.symbols)
    if plane == "avg":
        return None
    if plane.startswith("z="):
        try:
            z = float(plane[2:]) / BOHR_RADIUS_ANGS
        except ValueError:
            raise InputFileError(plane, "plane must be an element, z=<Å> or avg") from None
    else:
        hits = [p for s, p in zip(amp.symbols, amp.positions_bohr) if s == plane]
        if not hits:
            raise InputFileError(plane, f"no atom '{plane}' in the structure ({', '.join(sorted(set(amp.symbols)))})")
        z = hits[0][2]
    return int(round(z / c * n3)) % n3
