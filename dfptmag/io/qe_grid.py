"""Reader for ph.x's fildrho / fildvscf files (``_ph0/<prefix>.<name>[N]``).

Direct access, no record markers; record = global pattern number (1-based), each holding
nr1*nr2*nr3*nspin_mag complex128 on the dense FFT grid in Fortran order (first index
fastest). Returned arrays are indexed [ispin, i1, i2, i3].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError
from . import reader


@reader('fildrho/fildvscf file')
def read_grid_record(path, record: int, fft_grid, nspin_mag: int = 1) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "fildrho/fildvscf file not found")
    nr1, nr2, nr3 = fft_grid
    n = nr1 * nr2 * nr3 * nspin_mag
    size = path.stat().st_size
    if size % (16 * n):
        raise InputFileError(path, f"size {size} B is not a multiple of the record length "
                                   f"{16 * n} B for FFT grid {fft_grid} x nspin {nspin_mag}")
    nrec = size // (16 * n)
    if not 1 <= record <= nrec:
        raise InputFileError(path, f"has {nrec} records, record {record} requested")
    data = np.fromfile(path, dtype=np.complex128, count=n, offset=(record - 1) * 16 * n)
    grid = data.reshape(nspin_mag, nr3, nr2, nr1).transpose(0, 3, 2, 1)
    if not np.any(grid):
        raise InputFileError(path, f"record {record} is all zeros: that pattern was not computed "
                                   "in the run that wrote this file")
    return np.ascontiguousarray(grid)
