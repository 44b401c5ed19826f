"""Reader for QE's collected wavefunction files ``wfcN.dat`` (Modules/io_base.f90, write_wfc).

Fortran sequential records: [ik, xk(3) (1/bohr, Cartesian), ispin, gamma_only, scalef],
[ngw, igwx, npol, nbnd], [b1 b2 b3 (1/bohr)], [Miller indices (3, igwx)], then one record per
band of npol*igwx complex128 (spin-up block, then spin-down). Plane waves are in QE's global
G-list order.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy.io import FortranFile, FortranFormattingError

from ..errors import InputFileError
from . import reader

_HEADER = np.dtype([("ik", "<i4"), ("xk", "<f8", 3), ("ispin", "<i4"), ("gamma_only", "<i4"),
                    ("scalef", "<f8")])


@dataclasses.dataclass
class Wavefunctions:
    path: Path
    ik: int
    xk: np.ndarray          # (3,) Cartesian, 1/bohr
    gamma_only: bool
    npol: int
    nbnd: int
    b: np.ndarray           # (3, 3) rows b1..b3, 1/bohr
    miller: np.ndarray      # (npw, 3) int
    coeffs: np.ndarray | None  # (nbnd, npol, npw) complex128, or None if header_only

    @property
    def npw(self) -> int:
        return self.miller.shape[0]


@reader('QE wfcN.dat wavefunction file')
def read_wfc(path, nbnd: int | None = None, header_only: bool = False) -> Wavefunctions:
    """Read ``wfcN.dat``; ``nbnd`` limits how many bands are read (the occupied ones)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "wavefunction file not found")
    try:
        with FortranFile(path, "r") as f:
            head = f.read_record(_HEADER)[0]
            ngw, igwx, npol, nbnd_file = (int(x) for x in f.read_record("<i4"))
            b = f.read_record("<f8").reshape(3, 3)
            miller = f.read_record("<i4").reshape(igwx, 3)
            coeffs = None
            if not header_only:
                nread = nbnd_file if nbnd is None else min(nbnd, nbnd_file)
                coeffs = np.empty((nread, npol, igwx), dtype=np.complex128)
                for ib in range(nread):
                    rec = f.read_record("<c16")
                    if rec.size != npol * igwx:
                        raise InputFileError(path, f"band {ib + 1} has {rec.size} coefficients, "
                                                   f"expected npol*igwx = {npol * igwx}")
                    coeffs[ib] = rec.reshape(npol, igwx)
    except (FortranFormattingError, ValueError, TypeError) as exc:
        raise InputFileError(path, f"truncated or not a QE wfc file ({exc})") from None
    return Wavefunctions(path=path, ik=int(head["ik"]), xk=np.array(head["xk"]),
                         gamma_only=bool(head["gamma_only"]), npol=npol, nbnd=nbnd_file,
                         b=b, miller=miller, coeffs=coeffs)
