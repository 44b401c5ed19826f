"""Mode amplitudes A^α_ν(Q) at any momentum transfer Q = q + G for the structure factor of paper
Eq. 5 (kernel.structure_factor), from one of two sources:

- :class:`InterpolatedSource` — a ``dfptmag bands --interpolate`` result (``bands.h5`` with
  ``grid.h5`` and ``dispersion/`` beside it): the one-displaced-atom response
  F_{κα}(Q) = ∫ e^{-iQ·r} δñ⁽⁰⁾_{κα}(r) d³r of ``grid.h5`` (NOT periodic in the reciprocal lattice,
  so it holds every zone), and the modes at q ≡ Q (mod G) from matdyn.x on the run's own force
  constants ``dispersion/fc`` with the run's ``asr`` and ``loto_2d`` (the same program and input
  that made bands.h5's frequencies). Any in-plane Q.
- :class:`DirectSource` — the DFPT q-points of a ``dfptmag run`` result (dfptmag.h5 with real-space
  fields): A_ν(q + G) = Ω/N_r Σ_r e^{-iG·r} f_ν(r) from the periodic parts f_ν of the fields on
  QE's FFT grid, the modes of ph.x's own dynamical matrix. Q = q + G for the G of the FFT grid.

In both, the mode amplitude is the zero-point one, U_ν = sqrt(ħ/2ω_ν) e_ν/√M, whatever amplitude
the file states: A_ν is then the one-phonon matrix element that Eq. 5 needs.

Out-of-plane momentum. A monolayer has no lattice along z, so Q_z is continuous: the field of
ONE layer is Fourier transformed along z, with z measured from the layer's centre (the mean z of
its atoms) and taken in the cell [z₀ − c/2, z₀ + c/2), where the vacuum isolates the layer from
its periodic images. This is not a sampling at the slab images' 2πn/c: any Q_z is allowed, and
Q_z = 0 (the default) is the z-integral. For the interpolated source, Q_z ≠ 0 rebuilds the grid
response from the irreducible q-runs' fields (their δψ must still be on disk).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..constants import BOHR_RADIUS_ANGS
from ..errors import DfptmagError, InputFileError
from ..kernel import modes as km

TWO_PI = 2.0 * np.pi


def reciprocal_bohr(cell_bohr) -> np.ndarray:
    """Reciprocal lattice vectors (rows) b_i with a_i·b_j = 2π δ_ij, bohr⁻¹."""
    return TWO_PI * np.linalg.inv(np.asarray(cell_bohr, float)).T


def cartesian_inv_angstrom(q_crystal, cell_bohr) -> np.ndarray:
    """Cartesian Q (…, 3) in Å⁻¹ (2π included) of crystal coordinates."""
    return np.asarray(q_crystal, float) @ reciprocal_bohr(cell_bohr) / BOHR_RADIUS_ANGS


def z_phase(cell_bohr, positions_bohr, n3: int, qz_inv_angstrom: float) -> np.ndarray:
    """e^{-i Q_z (z − z₀)} on the n3 FFT planes, z wrapped into [z₀ − c/2, z₀ + c/2) around the
    layer centre z₀ (mean atomic z); (n3,) complex. Needs a3 along z (dfptmag's slabs)."""
    cell = np.asarray(cell_bohr, float)
    if abs(cell[2, 0]) > 1e-8 or abs(cell[2, 1]) > 1e-8 or abs(cell[0, 2]) > 1e-8 or abs(cell[1, 2]) > 1e-8:
        raise DfptmagError("Q_z needs a slab cell with a3 along z and a1, a2 in the plane")
    c = cell[2, 2]
    z0 = float(np.mean(np.asarray(positions_bohr, float)[:, 2]))
    z = np.arange(n3) / n3 * c
    rel = (z - z0 + 0.5 * c) % c - 0.5 * c
    return np.exp(-1j * (qz_inv_angstrom * BOHR_RADIUS_ANGS) * rel)


# --------------------------------------------------------------------------- interpolated source
def _matdyn_settings(matdyn_in: Path) -> tuple[str, bool]:
    text = matdyn_in.read_text()
    asr = re.search(r"asr\s*=\s*'([^']*)'", text)
    loto = re.search(r"loto_2d\s*=\s*\.(true|false)\.", text, re.I)
    if asr is None:
        raise InputFileError(matdyn_in, "no asr = '...' in the run's matdyn.x input")
    return asr.group(1), bool(loto and loto.group(1).lower() == "true")


class InterpolatedSource:
    """Modes and F(Q) at any in-plane Q from a ``bands --interpolate`` result."""

    kind = "interpolated"

    def __init__(self, bands_file, qe_bin_dir=None):
        from ..analysis import grid as gi
        from ..results.bandsfile import read
        self.bands_file = Path(bands_file)
        if not self.bands_file.is_file():
            raise InputFileError(self.bands_file, "file not found")
        self.run_dir = self.bands_file.parent
        grid_file = self.run_dir / "grid.h5"
        if not grid_file.is_file():
            raise InputFileError(self.bands_file, "no grid.h5 beside it: the structure factor needs the output of "
                                                  "`dfptmag bands --interpolate` (or give a dfptmag.h5 with fields)")
        self.fc = self.run_dir / "dispersion" / "fc"
        matdyn_in = self.run_dir / "dispersion" / "matdyn.in"
        if not self.fc.is_file() or not matdyn_in.is_file():
            raise InputFileError(self.bands_file, f"no {self.fc.relative_to(self.run_dir)} / matdyn.in beside it: "
                                                  "the run's force constants give the modes at every Q")
        self.asr, self.loto_2d = _matdyn_settings(matdyn_in)
        b = read(self.bands_file)
        self.attrs = b["attrs"]
        self.cell_bohr = np.asarray(b["structure/cell_bohr"], float)
        self.positions_bohr = np.asarray(b["structure/positions_bohr"], float)
        self.symbols = [str(s) for s in b["structure/symbols"]]
        self.masses_amu = np.asarray(b["structure/masses_amu"], float)
        self.grid = gi.load(grid_file)
        self.grid_file = grid_file
        self.qe_bin_dir = qe_bin_dir
        self._qz_grids: dict[float, object] = {}
        self.description = (f"interpolated: F(Q) from {grid_file.name} ({self.grid.N}x{self.grid.N} q grid, "
                            f"{len(self.grid.irreducible_q)} irreducible DFPT q), modes from matdyn.x on "
                            f"dispersion/fc (asr = {self.asr}, loto_2d = {self.loto_2d})")

    def modes(self, q_crystal):
        """(frequency Ry (nq, nmode), eigenvectors (nq, nmode, 3nat)) from matdyn.x at q."""
        from ..analysis.bands import dispersion_modes
        from ..io.qe_dyn import read_dyn_blocks
        from ..workflow import inputs, qe
        q = np.atleast_2d(np.asarray(q_crystal, float))
        q = q - np.round(q)                         # matdyn.x's matrices are periodic; keep q small
        exe = qe.program("matdyn.x", self.qe_bin_dir)
        with tempfile.TemporaryDirectory(prefix="dfptmag-matdyn-") as tmp:
            shutil.copy(self.fc, Path(tmp) / "fc")
            text = inputs.matdyn_input("fc", "matdyn.dyn", "matdyn.freq", self.asr, self.loto_2d, q)
            proc = subprocess.run([exe], input=text, capture_output=True, text=True, cwd=tmp)
            if proc.returncode != 0 or not (Path(tmp) / "matdyn.dyn").is_file():
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
                raise DfptmagError(f"matdyn.x failed on {self.fc} (exit {proc.returncode}): {' | '.join(tail)}")
            _, dyn = read_dyn_blocks(Path(tmp) / "matdyn.dyn", len(self.symbols))
        if len(dyn) != len(q):
            raise DfptmagError(f"matdyn.x gave {len(dyn)} matrices for {len(q)} q-points")
        w, e, _ = dispersion_modes(dyn, self.masses_amu, km.DEGENERACY_TOL_CM1)
        return w, e

    def _grid_at(self, qz: float):
        if qz == 0.0:
            return self.grid
        if qz not in self._qz_grids:
            from ..analysis import grid as gi
            from ..analysis.qrun import AnalysisOptions, analyze_qrun
            from ..kernel import qpoints
            results = []
            for q in self.grid.irreducible_q:
                qdir = self.run_dir / f"q_{qpoints.run_label(q)}"
                if not qdir.is_dir():
                    raise InputFileError(self.bands_file, f"Q_z ≠ 0 rebuilds the grid response from the q-runs' "
                                                          f"fields, and {qdir.name} is not beside it")
                results.append(analyze_qrun(qdir, AnalysisOptions()))
            self._qz_grids[qz] = gi.from_results(results, self.grid.N, qz_inv_angstrom=qz)
        return self._qz_grids[qz]

    def response(self, Q_crystal, qz: float = 0.0) -> np.ndarray:
        """F_{κα}(Q) (nQ, nat, 3, 4): e and μB per bohr of Cartesian displacement."""
        return self._grid_at(float(qz)).evaluate(np.atleast_2d(np.asarray(Q_crystal, float)))

    def amplitudes(self, Q_crystal, qz: float = 0.0):
        """(frequency meV (nQ, nmode), A (nQ, nmode, 4) at the zero-point amplitude)."""
        Q = np.atleast_2d(np.asarray(Q_crystal, float))
        w, e = self.modes(Q)
        nat = len(self.symbols)
        U = np.array([km.displacements(e[i], self.masses_amu, w[i], "zero-point") for i in range(len(Q))])
        U = U.reshape(len(Q), 3 * nat, nat, 3)
        F = self.response(Q, qz)
        return km.ry_to_mev(w), np.einsum("qnka,qkac->qnc", U, F)


SECTORS = ("one-sided", "time-odd")


# --------------------------------------------------------------------------------- direct source
class DirectSource:
    """The DFPT q-points of a run result with real-space fields: Q = q + G, G on the FFT grid."""

    kind = "direct"

    def __init__(self, results: dict[str, dict], path=None, sector: str = "one-sided"):
        """``results``: {label: analysis result} with ``pattern_field`` (analyze_qrun's dicts, or
        :meth:`from_file`). ``sector="time-odd"``: the amplitudes are those of the time-odd spin
        response (``time_odd_pattern_field``), A_ν = −2iħω_ν m[X·U_ν](Q), with no charge."""
        if sector not in SECTORS:
            raise ValueError(f"sector {sector!r}: one of {', '.join(SECTORS)}")
        self.sector = sector
        key = "pattern_field" if sector == "one-sided" else "time_odd_pattern_field"
        self.results = {k: dict(r, pattern_field=r.get(key)) for k, r in results.items() if r.get(key) is not None}
        if not self.results and sector == "time-odd":
            raise InputFileError(path or "results", "no q-point with a time-odd field: run with --time-odd "
                                                    "and [analysis] realspace = true")
        if not self.results:
            raise InputFileError(path or "results", "no q-point with real-space fields: run with "
                                                    "[analysis] realspace = true")
        r0 = next(iter(self.results.values()))
        self.cell_bohr = np.asarray(r0["cell_bohr"], float)
        self.positions_bohr = np.asarray(r0["positions_bohr"], float)
        self.symbols = list(r0["symbols"])
        self.masses_amu = np.asarray(r0["masses_amu"], float)
        self.path = path
        self.description = (f"direct: {sector} fields of the DFPT q-points {', '.join(self.results)}"
                            + (f" of {path}" if path else ""))

    @classmethod
    def from_file(cls, path, sector: str = "one-sided"):
        """A dfptmag.h5 (``run``/``analyze``) with ``patterns/field`` (and ``time_odd/pattern_field``)."""
        from ..results import qfile
        path = Path(path)
        out = {}
        for label in qfile.labels(path):
            d = qfile.read_q(path, label)
            if "patterns/field" not in d or "modes/eigenvector" not in d:
                continue
            out[label] = {"pattern_field": d["patterns/field"],
                          "pattern_vectors": d["patterns/displacement"].reshape(len(d["patterns/displacement"]), -1),
                          "eigenvector": d["modes/eigenvector"].reshape(len(d["modes/eigenvector"]), -1),
                          "frequency_ry": d["modes/frequency_meV"] / km.ry_to_mev(1.0),
                          "masses_amu": d["structure/masses_amu"], "cell_bohr": d["structure/cell_bohr"],
                          "positions_bohr": d["structure/positions_bohr"],
                          "symbols": [s.decode() if isinstance(s, bytes) else str(s) for s in d["structure/symbols"]],
                          "omega_bohr3": abs(float(np.linalg.det(d["structure/cell_bohr"]))),
                          "q_crystal": d["q_crystal"],
                          "time_odd_pattern_field": d.get("time_odd/pattern_field")}
        return cls(out, path, sector)

    def q_crystal(self, label: str) -> np.ndarray:
        return np.asarray(self.results[label]["q_crystal"], float)

    def pattern_components(self, label: str, G, qz: float = 0.0) -> np.ndarray:
        """Ω/N_r Σ_r e^{-iG·r} e^{-iQ_z(z − z₀)} f_μ(r) per pattern: (npat, nG, 4), e or μB per bohr."""
        r = self.results[label]
        f = np.asarray(r["pattern_field"])                            # (npat, 4, n1, n2, n3)
        n1, n2, n3 = f.shape[-3:]
        omega = float(r.get("omega_bohr3") or abs(np.linalg.det(self.cell_bohr)))
        zp = z_phase(self.cell_bohr, self.positions_bohr, n3, qz) if qz else np.ones(n3)
        cols = np.tensordot(f, zp, axes=([-1], [0])) * (omega / (n1 * n2 * n3))   # (npat, 4, n1, n2)
        ft = np.fft.fft2(cols, axes=(-2, -1))                          # Σ e^{-2πi(G1 i1/n1 + G2 i2/n2)}
        G = np.atleast_2d(np.asarray(G, int))
        if np.any(np.abs(G[:, 0]) > n1 // 2) or np.any(np.abs(G[:, 1]) > n2 // 2):
            raise DfptmagError(f"G beyond the FFT grid's ±{n1 // 2}, ±{n2 // 2}")
        out = ft[:, :, G[:, 0] % n1, G[:, 1] % n2]                    # (npat, 4, nG)
        return np.moveaxis(out, 2, 1)

    def amplitudes(self, label: str, G, qz: float = 0.0):
        """(frequency meV (nmode,), A (nG, nmode, 4)) at Q = q + G, zero-point amplitude."""
        r = self.results[label]
        w = np.asarray(r["frequency_ry"], float)
        U = km.displacements(np.asarray(r["eigenvector"]).reshape(len(w), -1), self.masses_amu, w, "zero-point")
        c = km.pattern_coefficients(np.asarray(r["pattern_vectors"]).reshape(len(w), -1), np.nan_to_num(U))
        c[~np.isfinite(U).all(axis=1)] = np.nan
        comp = self.pattern_components(label, G, qz)                  # (npat, nG, 4)
        A = np.einsum("nm,mgc->gnc", c, comp)
        if self.sector == "time-odd":            # the peak at the velocity of one phonon quantum
            A[..., 0] = 0.0
            A[..., 1:] *= -2j * np.where(w > 0, w, np.nan)[None, :, None]
        return km.ry_to_mev(w), A
