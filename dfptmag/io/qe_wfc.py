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
    """Read ``wfcN.dat``; ``nbnd`` limits how many bands are read (the occupied ones).

    The band records are read in one call (a structured view of marker, coefficients, marker),
    and every record marker is checked."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "wavefunction file not found")
    try:
        with open(path, "rb") as f:
            head = _record(f, path, _HEADER)[0]
            ngw, igwx, npol, nbnd_file = (int(x) for x in _record(f, path, np.dtype("<i4")))
            b = _record(f, path, np.dtype("<f8")).reshape(3, 3)
            miller = _record(f, path, np.dtype("<i4")).reshape(igwx, 3)
            coeffs = None
            if not header_only:
                nread = nbnd_file if nbnd is None else min(nbnd, nbnd_file)
                nbytes = npol * igwx * 16
                rec = np.dtype([("head", "<i4"), ("c", "<c16", (npol * igwx,)), ("tail", "<i4")])
                bands = np.fromfile(f, dtype=rec, count=nread)
                if len(bands) < nread:
                    raise InputFileError(path, f"truncated or not a QE wfc file ({len(bands)} of "
                                               f"{nread} band records)")
                bad = np.flatnonzero((bands["head"] != nbytes) | (bands["tail"] != nbytes))
                if bad.size:
                    ib = int(bad[0])
                    raise InputFileError(path, f"band {ib + 1} has a record of {bands['head'][ib]} B, "
                                               f"expected npol*igwx*16 = {nbytes} B")
                # an aligned, contiguous copy: the field view is offset by the 4-byte markers,
                # and numpy's unaligned complex paths are an order of magnitude slower
                coeffs = np.ascontiguousarray(bands["c"]).reshape(nread, npol, igwx)
    except ValueError as exc:
        raise InputFileError(path, f"truncated or not a QE wfc file ({exc})") from None
    return Wavefunctions(path=path, ik=int(head["ik"]), xk=np.array(head["xk"]),
                         gamma_only=bool(head["gamma_only"]), npol=npol, nbnd=nbnd_file,
                         b=b, miller=miller, coeffs=coeffs)


def _record(f, path, dtype: np.dtype) -> np.ndarray:
    """One Fortran sequential record (4-byte length markers) as an array of ``dtype``."""
    m = np.fromfile(f, dtype="<i4", count=1)
    if m.size != 1 or m[0] < 0 or m[0] % dtype.itemsize:
        raise ValueError(f"bad record marker at byte {f.tell() - 4 * m.size}")
    data = np.fromfile(f, dtype=dtype, count=int(m[0]) // dtype.itemsize)
    t = np.fromfile(f, dtype="<i4", count=1)
    if data.nbytes != m[0] or t.size != 1 or t[0] != m[0]:
        raise ValueError(f"record of {m[0]} B truncated or with a mismatched end marker")
    return data
