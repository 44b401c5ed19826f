"""Reader for ph.x's direct-access wavefunction buffers: ψ (``<prefix>.wfc``) and
δψ (``<prefix>.dwf``), one file per MPI process (``.wfc1``, ``.dwf2`` ...; no suffix from a
QE built without MPI).

No record markers. One record = nbnd*npol*npwx complex128, per band npwx spin-up then npwx
spin-down coefficients; entries past a point's own plane-wave count are zero. npwx is the
maximum over *all* k-points (QE 6.7 n_plane_waves takes mp_max over pools), so every pool's
file has the same record length, the one in data-file-schema.xml.

With k-point pools (one process per pool, process r + 1 = pool r) each file holds the records
of that pool's k-points only, numbered locally. Which k-points a pool holds is QE 6.7's
``divide_et_impera`` (PW/src/divide_et_impera.f90): blocks of ``kunit`` consecutive points
(kunit = 2 in ph.x at q ≠ 0, so that k and k+q stay together; 1 at q = 0, non-magnetic) are
dealt out evenly and the first ``rest`` pools take one block more (see :func:`pool_ranges`).
- ψ buffer: record i of pool p is point ``first_p + i`` of the global (k, k+q) list.
- δψ buffer (``iudwf``): record ``ipert * nksq_p + ik`` (0-based) of pool p holds perturbation
  ipert of the pool's ik-th k (nksq_p = the pool's points / kunit at q ≠ 0).

A file may hold more records than its pool uses (a buffer reused by a later ph.x run with
another pool layout keeps the old tail: direct-access files are not truncated): such trailing
records are ignored and reported. With plane-wave (R&G) parallelisation each file holds
slices of vectors, which dfptmag refuses.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputFileError


def record_nbytes(nbnd: int, npol: int, npwx: int) -> int:
    return nbnd * npol * npwx * 16


def pool_ranges(nkstot: int, npool: int, kunit: int) -> list[tuple[int, int]]:
    """(first global point, number of points) of every pool, 0-based: QE 6.7's
    divide_et_impera / global_kpoint_index."""
    if npool < 1:
        raise ValueError(f"npool = {npool}")
    if npool == 1:
        return [(0, nkstot)]
    if nkstot % kunit:
        raise ValueError(f"{nkstot} points are not a whole number of blocks of {kunit}")
    nks = kunit * (nkstot // kunit // npool)
    rest = (nkstot - nks * npool) // kunit
    out = []
    for p in range(npool):
        n = nks + kunit if p < rest else nks
        base = n * p if p < rest else nks * p + rest * kunit
        out.append((base, n))
    return out


def pool_of_name(name: str) -> int:
    """Pool index (0-based) from a buffer file name: ``.wfc3`` / ``dwf.irr4.3`` → process 3 →
    pool 2; no number (QE built without MPI) or 0 → pool 0."""
    m = re.search(r"(\d+)$", name)
    if not m or name.endswith((".wfc", ".dwf")):
        return 0
    return max(int(m.group(1)) - 1, 0)


class PoolBuffer:
    """Records of one buffer distributed over pools, addressed by global unit (k-point for ψ,
    k of the (k, k+q) pairs for δψ) and sub-record (perturbation)."""

    def __init__(self, arrays, ranges, nsub, paths, notes):
        self.arrays = arrays          # per pool: memmap (nrec, nbnd, npol, npwx) or None
        self.ranges = ranges          # per pool: (first unit, number of units)
        self.nsub = nsub
        self.paths = paths            # per pool: Path or None
        self.notes = notes            # ignored trailing records, one line per file
        self.starts = np.array([r[0] for r in ranges])

    def locate(self, unit: int, sub: int = 0) -> tuple[int, int]:
        """(pool, local record) of a global unit."""
        for p, (s, n) in enumerate(self.ranges):
            if s <= unit < s + n:
                return p, sub * n + (unit - s)
        raise IndexError(f"unit {unit} outside every pool")

    def record(self, unit: int, sub: int = 0) -> np.ndarray:
        p, i = self.locate(unit, sub)
        return self.arrays[p][i]

    def __getitem__(self, unit):
        """``buf[j]``: the record of global unit j, sub-record 0 (ψ buffers: point j)."""
        if not isinstance(unit, (int, np.integer)):
            raise TypeError("index one record at a time")
        return self.record(int(unit))

    def __len__(self):
        return int(sum(n for _, n in self.ranges))

    def where(self, unit: int, sub: int = 0) -> str:
        p, i = self.locate(unit, sub)
        return f"{self.paths[p]} record {i + 1}"


def open_pool_buffer(files: dict[int, Path], npool: int, ranges: list[tuple[int, int]], nsub: int,
                     nbnd: int, npol: int, npwx: int, what: str, unit_name: str = "k-points",
                     sub_name: str = "perturbation", extra_ok: bool = False) -> PoolBuffer:
    """Map one buffer: ``files`` {pool index: path}; ``ranges`` from :func:`pool_ranges` in the
    units the records are indexed by; ``nsub`` records per unit (perturbations of an irrep).
    ``extra_ok``: files of processes beyond ``npool`` (left by an earlier run with more pools)
    are ignored and reported instead of refused."""
    recl = record_nbytes(nbnd, npol, npwx)
    extra = [p for p in files if p >= npool]
    notes = []
    for p in extra:
        if files[p].is_file() and files[p].stat().st_size:
            if extra_ok:
                notes.append(f"{files[p]}: ignored (process {p + 1}; the buffer was written by "
                             f"{npool} pool(s))")
                continue
            raise InputFileError(files[p], f"{what}: data from process {p + 1}, but the run had "
                                           f"{npool} pool(s): a plane-wave (R&G) parallel layout, or "
                                           "a file from another run")
    arrays, paths = [], []
    for p, (s, n) in enumerate(ranges):
        need = n * nsub
        path = files.get(p)
        paths.append(path)
        if path is None or not path.is_file():
            if need == 0:
                arrays.append(None)
                continue
            shown = path if path is not None else f"{what} (pool {p + 1} of {npool})"
            raise InputFileError(shown, f"buffer file not found: pool {p + 1} of {npool} holds "
                                        f"{unit_name} {s + 1}–{s + n}")
        size = path.stat().st_size
        if size % recl:
            raise InputFileError(path, f"size {size} B is not a multiple of the record length "
                                       f"{recl} B (nbnd={nbnd}, npol={npol}, npwx={npwx}): cut "
                                       "mid-record, or written by a run with another basis or a "
                                       "plane-wave (R&G) parallel layout")
        nrec = size // recl
        if nrec < need:
            per = f" × {nsub} {sub_name}s" if nsub > 1 else ""
            raise InputFileError(path, f"pool {p + 1} of {npool} holds {nrec} records, its {n} "
                                       f"{unit_name} ({s + 1}–{s + n}){per} use {need}: records are "
                                       "missing (cut short, or written with another pool count)")
        if nrec > need:
            notes.append(f"{path}: {nrec - need} trailing record(s) ignored (pool {p + 1} of {npool} "
                         f"uses {need} of {nrec})")
        arrays.append(np.memmap(path, dtype=np.complex128, mode="r").reshape(-1, nbnd, npol, npwx)
                      if nrec else None)
    return PoolBuffer(arrays, ranges, nsub, paths, notes)


def files_by_pool(paths) -> dict[int, Path]:
    """{pool index: path} from buffer file names; two files claiming one pool is an error."""
    out: dict[int, Path] = {}
    for p in paths:
        p = Path(p)
        i = pool_of_name(p.name)
        if i in out:
            a, b = out[i], p
            if a.stat().st_size and b.stat().st_size:
                raise InputFileError(b, f"and {a} both hold pool {i + 1}: files from two runs")
            if not b.stat().st_size:
                continue
        out[i] = p
    return out


def open_buffer(paths, nbnd: int, npol: int, npwx: int, expected_records: int):
    """Serial view (one pool, or equal whole files concatenated in process order) of a buffer:
    kept for callers that index records globally. Pool-aware readers use
    :func:`open_pool_buffer`."""
    by_pool = files_by_pool(paths)
    npool = max(by_pool) + 1
    if npool == 1:
        return open_pool_buffer(by_pool, 1, [(0, expected_records)], 1, nbnd, npol, npwx, "buffer")
    per = expected_records // npool
    return open_pool_buffer(by_pool, npool, [(p * per, per) for p in range(npool)], 1, nbnd, npol,
                            npwx, "buffer")
