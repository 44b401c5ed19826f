"""The ``bands.h5`` schema in one place: build the bands dict, write it (atomically), read it.

Layout (nq points on the path, nmode = 3·nat modes in ascending frequency at each q)::

    path/q_crystal (nq, 3)           reciprocal-lattice crystal coordinates
    path/distance (nq,)              cumulative |Δq|, 1/Å (2π included)
    path/labels (nl,) str, path/label_index (nl,)   high-symmetry labels and their indices
    path/breaks (nb,)                indices where a disconnected segment starts
    path/computed (nq,) bool         False where the DFPT run failed (values are NaN there)
    path/dfpt_point (nq,) bool       bands --interpolate only: True where q is a point of the DFPT grid
    modes/frequency_meV, modes/frequency_THz, modes/frequency_cm1 (nq, nmode)   dfptmag's diagonalisation
    modes/frequency_phx_cm1 (nq, nmode)                    ph.x's own (fildyn), oracle
    modes/rms (nq, nmode, 4)         RMS over a period of [∫δn, ∫δm_x, ∫δm_y, ∫δm_z] (Eq. 3)
    modes/rms_inplane (nq, nmode)    sqrt(rms_x² + rms_y²)
    modes/rms_outofplane (nq, nmode) rms_z
    modes/rms_subspace (nq, nmode, 4)  basis-independent totals over the degenerate subspace
    modes/branch (nq, nmode)         branch index after eigenvector-overlap tracking
    modes/branch_overlap (nq, nmode) matched overlap of that step (1 = same character)
    modes/degenerate_group (nq, nmode)
    modes/cell_integral (nq, nmode, 4) complex amplitudes behind the RMS
    modes/eigenvector (nq, nmode, nat, 3) complex, mass-scaled, orthonormal
    structure/{lattice_angstrom, scaled_positions, symbols, masses_amu, cell_bohr, positions_bohr}
    dispersion/ (optional)           interpolated dispersion from a coarse DFPT q-grid
        q_crystal (nd, 3), distance (nd,), frequency_meV, frequency_THz (nd, nmode), branch (nd, nmode),
        dfpt_index (nq,)             index of each DFPT path point in the dense list

Attributes: ``schema`` (``bands.h5/2``; older files have none), ``object`` (which quantity: the
one-sided amplitude of paper Eq. 1), ``amplitude`` (the mode amplitude convention),
``degenerate_tolerance_cm1``, ``workflow`` and ``path`` (the band path as given); from ``bands
--interpolate`` also ``interpolation``, ``interpolation_qgrid``, ``dfpt_qpoints``,
``interpolation_long_range``, ``dispersion_asr``, ``dispersion_loto_2d``. On every dataset
``units`` (a plain unit string as in dfptmag.results, or one per component of [δn, δm_x, δm_y,
δm_z]) and ``description``. Version-1 files (structure as root attributes, prose units) are still read.

``build`` makes the in-memory bands dict (the layout's keys, '/'-joined, plus ``attrs``) that the
figures take and ``write`` stores; ``read`` returns the same dict.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputFileError
from ..kernel import modes as km
from ._h5 import PHASE_CONVENTION, PHASE_NOTE, U_CELL, create, dataset, write_structure

SCHEMA = "bands.h5/2"
_AT = "per unit cell, RMS over one period at the stated amplitude"
_OMEGA = "phonon frequency, ascending at each q; negative = imaginary"
# dataset -> (units, description)
UNITS = {
    "path/q_crystal": ("1", "q in crystal coordinates of the reciprocal lattice vectors b_i"),
    "path/distance": ("1/angstrom", "cumulative |dq| along the path, 2 pi included"),
    "path/labels": ("", "high-symmetry labels"), "path/label_index": ("1", "index of each label in the path"),
    "path/breaks": ("1", "indices where a disconnected segment starts"),
    "path/computed": ("1", "False where the DFPT run failed (values are NaN there)"),
    "path/dfpt_point": ("1", "bands --interpolate: True where q is a point of the DFPT grid (the other "
                             "points are interpolated)"),
    "modes/frequency_meV": ("meV", _OMEGA), "modes/frequency_THz": ("THz", _OMEGA),
    "modes/frequency_cm1": ("cm-1", _OMEGA),
    "modes/frequency_phx_cm1": ("cm-1", "ph.x's own frequencies (fildyn), the oracle"),
    "modes/rms": (U_CELL, f"[dn, dm_x, dm_y, dm_z] {_AT}; m_a = Tr(sigma_a dn) (QE convention)"),
    "modes/rms_subspace": (U_CELL, f"basis-independent totals over each mode's degenerate subspace, {_AT}"),
    "modes/rms_inplane": ("muB", f"in-plane magnetization sqrt(rms_x^2 + rms_y^2), {_AT}"),
    "modes/rms_outofplane": ("muB", f"out-of-plane magnetization |rms_z|, {_AT}"),
    "modes/time_odd_peak": ("muB", "time-odd spin response, complex peak [dm_x, dm_y, dm_z] in phase with the "
                                   "lattice velocity, per unit cell at the mode's frequency and stated amplitude "
                                   "(not the one-sided amplitude; docs: theory, the time-odd response)"),
    "modes/time_odd_rms_inplane": ("muB", f"time-odd in-plane magnetization, {_AT}"),
    "modes/time_odd_rms_outofplane": ("muB", f"time-odd out-of-plane magnetization, {_AT}"),
    "modes/branch": ("1", "branch index after eigenvector-overlap tracking"),
    "modes/branch_overlap": ("1", "matched overlap of the assignment (1: same character)"),
    "modes/degenerate_group": ("1", "modes closer than degenerate_tolerance_cm1 share a group"),
    "modes/cell_integral": (U_CELL, "complex cell integrals [dn, dm_x, dm_y, dm_z] per unit cell at the "
                                    "stated amplitude, behind the RMS"),
    "modes/eigenvector": ("1", "mass-scaled, orthonormal eigenvectors [q, mode, atom, xyz]"),
    "dispersion/q_crystal": ("1", "q of the interpolated path, crystal coordinates"),
    "dispersion/distance": ("1/angstrom", "cumulative |dq|, same axis as path/distance"),
    "dispersion/frequency_meV": ("meV", "interpolated frequencies (q2r.x/matdyn.x)"),
    "dispersion/frequency_THz": ("THz", "interpolated frequencies (q2r.x/matdyn.x)"),
    "dispersion/branch": ("1", "branch index on the dense path"),
    "dispersion/dfpt_index": ("1", "index of each DFPT path point in the dense list"),
}


@dataclasses.dataclass
class Interpolation:
    """How ``bands --interpolate`` made its path: root attributes of its bands.h5."""
    qgrid: tuple                    # the DFPT grid (N, N, 1)
    dfpt_qpoints: int               # q-points where DFPT ran (irreducible ones and the long-range pair)
    long_range: list[str]           # labels of the two direct runs of the long-range fit; [] if none
    dispersion_asr: str             # matdyn.x's acoustic sum rule
    dispersion_loto_2d: bool

    def attrs(self) -> dict:
        """The root attributes, in the order they are written."""
        n = self.qgrid[0]
        return {"interpolation": (f"F(q) from DFPT fields at {self.dfpt_qpoints} irreducible q of the "
                                  f"{n}x{n} grid, unfolded by symmetry and time reversal, one-displaced-"
                                  "atom response on the supercell (Wigner-Seitz), Fourier transformed; "
                                  "frequencies and eigenvectors from matdyn.x"),
                "interpolation_qgrid": list(self.qgrid), "dfpt_qpoints": self.dfpt_qpoints,
                "interpolation_long_range": (
                    "screened linear term L.q exp(-sigma^2 q^2)/(1 + r|q|) of the magnetization separated "
                    f"before the interpolation, fitted to direct DFPT at {', '.join(self.long_range)}; r per "
                    "atom, displacement and component in grid.h5 long_range/r" if self.long_range else "none"),
                "dispersion_asr": self.dispersion_asr, "dispersion_loto_2d": self.dispersion_loto_2d}


def build(bp, *, computed, frequency_ry, rms, rms_inplane, rms_outofplane, rms_subspace, degenerate_group,
          cell_integral, eigenvector, structure, amplitude, amplitude_bohr, tol_cm1, frequency_phx_cm1=None,
          workflow=None, path_name=None, dfpt_point=None, interpolation: Interpolation | None = None) -> dict:
    """The bands dict of a band path ``bp`` (kernel.bandpath.BandPath) from arrays along it
    (frequencies in Ry; the others as in the layout). ``structure``: a mapping with cell_bohr,
    positions_bohr, symbols, masses_amu (an analysis result is one); ``amplitude``,
    ``amplitude_bohr``: the mode amplitude convention (kernel.modes.amplitude_text);
    ``frequency_phx_cm1`` defaults to NaN (no ph.x oracle). ``workflow``, ``path_name``,
    ``dfpt_point`` and ``interpolation`` are added only where given."""
    b = {"path/q_crystal": bp.q_crystal, "path/distance": bp.distance,
         "path/labels": [lab for _, lab in bp.labels],
         "path/label_index": np.array([i for i, _ in bp.labels]),
         "path/breaks": np.array(bp.breaks, dtype=int),
         "path/computed": computed}
    if dfpt_point is not None:
        b["path/dfpt_point"] = dfpt_point
    if frequency_phx_cm1 is None:
        frequency_phx_cm1 = np.full(np.shape(frequency_ry), np.nan)
    b.update({"modes/frequency_meV": km.ry_to_mev(frequency_ry), "modes/frequency_THz": km.ry_to_thz(frequency_ry),
              "modes/frequency_cm1": km.ry_to_cm1(frequency_ry), "modes/frequency_phx_cm1": frequency_phx_cm1,
              "modes/rms": rms, "modes/rms_inplane": rms_inplane, "modes/rms_outofplane": rms_outofplane,
              "modes/rms_subspace": rms_subspace, "modes/degenerate_group": degenerate_group,
              "modes/cell_integral": cell_integral, "modes/eigenvector": eigenvector,
              "structure/cell_bohr": structure["cell_bohr"], "structure/positions_bohr": structure["positions_bohr"],
              "structure/symbols": list(structure["symbols"]), "structure/masses_amu": structure["masses_amu"]})
    attrs = {"amplitude": km.amplitude_text(amplitude, amplitude_bohr), "degenerate_tolerance_cm1": tol_cm1}
    if workflow is not None:
        attrs["workflow"] = workflow
    if path_name is not None:
        attrs["path"] = path_name
    if interpolation is not None:
        attrs.update(interpolation.attrs())
    b["attrs"] = attrs
    return b


def write(path, b: dict) -> Path:
    """Write a bands dict (keys as in the layout, '/'-joined) atomically."""
    path = Path(path)
    with create(path, SCHEMA) as f:
        for k, v in b.get("attrs", {}).items():
            f.attrs[k] = v
        if "structure/cell_bohr" in b:
            write_structure(f.create_group("structure"), b["structure/cell_bohr"],
                            b["structure/positions_bohr"], b["structure/symbols"], b["structure/masses_amu"])
        for key, val in b.items():
            if "/" not in key or val is None or key.startswith("structure/"):
                continue
            if key == "path/labels":
                val = np.array(val, dtype=h5py.string_dtype())
            units, description = UNITS.get(key, ("", ""))
            extra = ({"phase_convention": PHASE_CONVENTION, "phase_note": PHASE_NOTE}
                     if key == "modes/eigenvector" else {})
            dataset(f, key, val, units, description, **extra)
        if "dispersion/frequency_meV" in b:
            for k, v in b.get("dispersion_attrs", {}).items():
                f["dispersion"].attrs[k] = v
    return path


def read(path) -> dict:
    """Every dataset as a flat dict {'modes/rms': array, ...} plus 'attrs'."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "bands file not found")
    out = {}
    try:
        with h5py.File(path, "r") as f:
            if "modes" not in f or "path" not in f:
                raise InputFileError(path, "not a dfptmag bands file (no /path and /modes groups)")
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
            out["attrs"] = dict(f.attrs)
            if "dispersion" in f:
                out["dispersion_attrs"] = dict(f["dispersion"].attrs)
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    for key in ("path/labels", "structure/symbols"):
        if key in out:
            out[key] = [s.decode() if isinstance(s, bytes) else str(s) for s in out[key]]
    _upgrade(out)
    return out


def _upgrade(b: dict) -> None:
    """Fill what version-1 files lack, in place: the structure (root attributes then) and THz."""
    from ..constants import RY_TO_MEV, RY_TO_THZ
    a = b["attrs"]
    if "structure/cell_bohr" not in b and "cell_bohr" in a:
        b["structure/cell_bohr"] = np.asarray(a["cell_bohr"])
        b["structure/positions_bohr"] = np.asarray(a["positions_bohr"])
        b["structure/masses_amu"] = np.asarray(a["masses_amu"])
        b["structure/symbols"] = [s.decode() if isinstance(s, bytes) else str(s) for s in a["symbols"]]
    for grp in ("modes", "dispersion"):
        if f"{grp}/frequency_meV" in b and f"{grp}/frequency_THz" not in b:
            b[f"{grp}/frequency_THz"] = b[f"{grp}/frequency_meV"] * (RY_TO_THZ / RY_TO_MEV)
