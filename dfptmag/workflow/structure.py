"""Reading a structure file for a workflow (ASE, else pymatgen), imported by both
:mod:`.config` (to check the elements before any QE run) and :mod:`.inputs` (to build the QE
inputs): config and inputs no longer import each other (inputs → config only)."""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.io import read

from ..errors import InputFileError


def read_structure(path) -> Atoms:
    """Any structure file ASE reads (extended XYZ, CIF, POSCAR, pw.x input, ...), else one that
    pymatgen reads (``Structure.from_file``: its JSON, CSSR, ...). A slab that the file wraps
    across the cell boundary along c (CIF and POSCAR store fractional coordinates in [0, 1)) is
    made contiguous again by moving the atoms above the largest vacuum gap down by one c
    vector; a layer that is already contiguous is left exactly as it is."""
    try:
        atoms = read(path)
    except Exception as ase_exc:       # ASE raises many kinds for files it cannot parse
        try:
            import warnings

            from pymatgen.core import Structure
            from pymatgen.io.ase import AseAtomsAdaptor
            with warnings.catch_warnings():          # pymatgen warns line by line on bad files
                warnings.simplefilter("ignore")
                atoms = AseAtomsAdaptor.get_atoms(Structure.from_file(str(path)))
        except Exception:
            raise InputFileError(path, f"neither ASE nor pymatgen can read this structure "
                                       f"(ASE: {str(ase_exc).splitlines()[0] if str(ase_exc) else type(ase_exc).__name__})") from None
    if len(atoms) == 0:
        raise InputFileError(path, "the structure has no atoms")
    return _contiguous_along_c(atoms)


def _contiguous_along_c(atoms: Atoms) -> Atoms:
    z = atoms.get_scaled_positions(wrap=False)[:, 2]
    zm = np.mod(z, 1.0)
    order = np.sort(zm)
    gaps = np.diff(np.concatenate([order, [order[0] + 1.0]]))
    i = int(np.argmax(gaps))
    if i == len(order) - 1:                                # the largest gap spans the boundary
        new = zm
    else:                                                  # atoms above the gap go down by one c
        new = np.where(zm >= order[i + 1] - 1e-12, zm - 1.0, zm)
    if np.ptp(z) <= np.ptp(new) + 1e-9:                   # already contiguous: keep the file's numbers
        return atoms
    shift = np.round(new - z)
    atoms.positions += shift[:, None] * atoms.cell.array[2][None, :]
    return atoms
