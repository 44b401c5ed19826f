"""Reader for ph.x's direct-access wavefunction buffers: ψ (``<prefix>.wfc``) and
δψ (``<prefix>.dwf``), with or without the MPI process suffix (``.wfc1``, ``.dwf2`` ...).

No record markers. One record = nbnd*npol*npwx complex128, per band npwx spin-up then npwx
spin-down coefficients; entries past a point's own plane-wave count are zero. With k-point
pools each file holds a contiguous block of records (local numbering): the global record list
is the concatenation of the files in process order. With plane-wave parallelisation each file
holds slices of vectors, which dfptmag refuses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError


def record_nbytes(nbnd: int, npol: int, npwx: int) -> int:
    return nbnd * npol * npwx * 16


def open_buffer(paths, nbnd: int, npol: int, npwx: int, expected_records: int) -> np.ndarray:
    """Map the buffer files (in process order) as one array (nrec, nbnd, npol, npwx).

    Empty files (ranks that wrote nothing) are skipped. Sizes are checked against the record
    length implied by the run's XML: a mismatch means a truncated file, a buffer from another
    run, or a plane-wave-parallel layout.
    """
    paths = [Path(p) for p in paths]
    recl = record_nbytes(nbnd, npol, npwx)
    arrays = []
    for p in paths:
        if not p.is_file():
            raise InputFileError(p, "buffer file not found")
        size = p.stat().st_size
        if size == 0:
            continue
        if size % recl:
            raise InputFileError(p, f"size {size} B is not a multiple of the record length "
                                    f"{recl} B (nbnd={nbnd}, npol={npol}, npwx={npwx}): truncated, "
                                    "written by a different run, or a plane-wave (R&G) parallel "
                                    "layout")
        arrays.append(np.memmap(p, dtype=np.complex128, mode="r").reshape(-1, nbnd, npol, npwx))
    if not arrays:
        raise InputFileError(paths[0] if paths else "<buffer>", "all buffer files are empty")
    nrec = sum(a.shape[0] for a in arrays)
    if nrec != expected_records:
        raise InputFileError(paths[0], f"holds {nrec} records in {len(arrays)} file(s), expected "
                                       f"{expected_records}: truncated, from a different run, or a "
                                       "plane-wave parallel layout")
    if len(arrays) == 1:
        return arrays[0]
    return _Concat(arrays)


class _Concat:
    """Concatenation of memory maps along the record axis, indexed one record at a time."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.offsets = np.cumsum([0] + [a.shape[0] for a in arrays])
        self.shape = (int(self.offsets[-1]),) + arrays[0].shape[1:]

    def __getitem__(self, irec):
        if not isinstance(irec, (int, np.integer)):
            raise TypeError("index one record at a time")
        i = int(np.searchsorted(self.offsets, irec, side="right") - 1)
        return self.arrays[i][irec - self.offsets[i]]

    def __len__(self):
        return self.shape[0]
