"""The ``bands.h5`` schema in one place: write (atomically) and read.

Layout (nq points on the path, nmode = 3·nat modes in ascending frequency at each q)::

    path/q_crystal (nq, 3)           reciprocal-lattice crystal coordinates
    path/distance (nq,)              cumulative |Δq|, 1/Å (2π included)
    path/labels (nl,) str, path/label_index (nl,)   high-symmetry labels and their indices
    path/breaks (nb,)                indices where a disconnected segment starts
    path/computed (nq,) bool         False where the DFPT run failed (values are NaN there)
    modes/frequency_meV, modes/frequency_cm1 (nq, nmode)   dfptmag's diagonalisation
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
    dispersion/ (optional)           interpolated dispersion from a coarse DFPT q-grid
        q_crystal (nd, 3), distance (nd,), frequency_meV (nd, nmode), branch (nd, nmode),
        dfpt_index (nq,)             index of each DFPT path point in the dense list

Attributes: ``object`` (which quantity: the one-sided amplitude of paper Eq. 1), ``amplitude``
(the mode amplitude convention), ``units`` on every dataset, ``degenerate_tolerance_cm1``.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from . import ONE_SIDED_NOTE, __version__
from .errors import InputFileError

RMS_UNITS = ("RMS over one period at the stated amplitude: electrons (n) and Bohr magnetons "
             "(m_x, m_y, m_z) per unit cell; m_a = Tr(sigma_a dn) (QE convention)")


def _ds(g, name, data, units):
    d = g.create_dataset(name, data=data)
    d.attrs["units"] = units
    return d


def write(path, b: dict) -> Path:
    """Write a bands dict (keys as in the layout, '/'-joined) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    units = {
        "path/q_crystal": "reciprocal lattice vectors", "path/distance": "1/angstrom (2pi included)",
        "path/labels": "", "path/label_index": "index", "path/breaks": "index", "path/computed": "bool",
        "modes/frequency_meV": "meV (negative = imaginary)",
        "modes/frequency_cm1": "cm^-1 (negative = imaginary)",
        "modes/frequency_phx_cm1": "cm^-1, printed by ph.x (fildyn)",
        "modes/rms": RMS_UNITS, "modes/rms_subspace": RMS_UNITS,
        "modes/rms_inplane": "Bohr magnetons per unit cell, RMS over a period, sqrt(x^2+y^2)",
        "modes/rms_outofplane": "Bohr magnetons per unit cell, RMS over a period, |z| term",
        "modes/branch": "index", "modes/branch_overlap": "dimensionless", "modes/degenerate_group": "index",
        "modes/cell_integral": "complex amplitude; electrons and Bohr magnetons per unit cell",
        "modes/eigenvector": "dimensionless (mass-scaled, orthonormal)",
        "dispersion/q_crystal": "reciprocal lattice vectors", "dispersion/distance": "1/angstrom",
        "dispersion/frequency_meV": "meV (negative = imaginary)", "dispersion/branch": "index",
        "dispersion/dfpt_index": "index",
    }
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["dfptmag_version"] = __version__
            f.attrs["object"] = ONE_SIDED_NOTE
            for k, v in b.get("attrs", {}).items():
                f.attrs[k] = v
            for key, val in b.items():
                if "/" not in key or val is None:
                    continue
                if key == "path/labels":
                    val = np.array(val, dtype=h5py.string_dtype())
                _ds(f, key, val, units.get(key, ""))
            if "dispersion/frequency_meV" in b:
                for k, v in b.get("dispersion_attrs", {}).items():
                    f["dispersion"].attrs[k] = v
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
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
    if "path/labels" in out:
        out["path/labels"] = [s.decode() if isinstance(s, bytes) else str(s) for s in out["path/labels"]]
    return out
