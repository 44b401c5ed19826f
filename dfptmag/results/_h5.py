"""HDF5 pieces shared by dfptmag.h5 (``qfile``) and bands.h5 (``bandsfile``): datasets with a
plain ``units`` string and a prose ``description``, the structure block (phonopy's band.hdf5
quantities plus QE's bohr), the phase-convention attribute and the amplitude text."""
from __future__ import annotations

import h5py
import numpy as np

from ..constants import BOHR_RADIUS_ANGS

# units of [δn, δm_x, δm_y, δm_z] datasets
U_CELL = np.array(["e", "muB", "muB", "muB"], dtype=h5py.string_dtype())
U_PER_BOHR = np.array(["e/bohr", "muB/bohr", "muB/bohr", "muB/bohr"], dtype=h5py.string_dtype())
U_FIELD = np.array(["e/bohr^4", "muB/bohr^4", "muB/bohr^4", "muB/bohr^4"], dtype=h5py.string_dtype())
PHASE_CONVENTION = "lattice_vector"
PHASE_NOTE = ("u(R, kappa, t) = Re[U_kappa exp(i q.R - i omega t)] with R the lattice vector of the "
              "cell (QE's convention); phonopy writes exp(i q.(R + tau_kappa)), tau_kappa the atom's "
              "position in the cell: its eigenvector is this one times exp(-i q.tau_kappa)")


def dataset(g, name, data, units, description: str | None = None, **attrs):
    """Create ``g[name]`` with its ``units`` (a unit string, or one per component) and an optional
    ``description``; further keyword arguments become attributes."""
    d = g.create_dataset(name, data=data)
    d.attrs["units"] = units
    if description:
        d.attrs["description"] = description
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


_ds = dataset


def write_structure(s, cell_bohr, positions_bohr, symbols, masses_amu):
    """The structure as datasets in group ``s``: phonopy's band.hdf5 quantities (lattice in Å,
    fractional coordinates, symbols, masses) and QE's (bohr)."""
    cell_bohr = np.asarray(cell_bohr, dtype=float)
    positions_bohr = np.asarray(positions_bohr, dtype=float)
    _ds(s, "lattice_angstrom", cell_bohr * BOHR_RADIUS_ANGS, "angstrom", "lattice vectors a1, a2, a3 (rows)")
    _ds(s, "scaled_positions", positions_bohr @ np.linalg.inv(cell_bohr), "1",
        "fractional coordinates of the atoms in the lattice vectors")
    _ds(s, "symbols", np.array([str(x) for x in symbols], dtype=h5py.string_dtype()), "", "chemical symbols")
    _ds(s, "masses_amu", np.asarray(masses_amu, dtype=float), "amu", "atomic masses used for the modes")
    _ds(s, "cell_bohr", cell_bohr, "bohr", "lattice vectors (rows), as QE")
    _ds(s, "positions_bohr", positions_bohr, "bohr", "Cartesian atomic positions, as QE")
