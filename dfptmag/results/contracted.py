"""The contracted result of one irrep (``q_<label>/contracted/irr<p>.h5``): what remains of its
captured δψ once paper Eq. 1 has been contracted and the δψ discarded (``[storage]
discard_dwf``, ``--discard-dwf``).

Layout (``schema = dfptmag-contracted/1``; root attributes ``irrep``, ``qe_version``,
``q_tpiba``, ``fft_grid``, ``object``, ``charge_check`` and ``source_sha256``, the JSON map of
the δψ files' names to the sha256 they had at capture time)::

    pattern_id (npert,)                        global pattern number μ (0-based) of each perturbation
    density_matrix (npert, 2, 2)               complex ∫_Ω δñ^{σσ'} d³r per bohr (G = 0 overlaps)
    field (npert, 4, n1, n2, n3)               complex [δn, δm_x, δm_y, δm_z](r) per bohr, FFT grid
    fildrho (npert, n1, n2, n3)                complex: ph.x's own fildrho records of these patterns
                                               (the oracle: 2 Tr δñ = fildrho), copied from its file
    drho_relative_error (npert,)               ‖2 Tr δñ − fildrho‖/‖fildrho‖ on the grid
    drho_g0_relative_error (npert,)            the same at G = 0, relative to fildrho's RMS

With empty states next to the q-run (the time-odd response, ``[timeodd]``) a group ``time_odd``
holds, per perturbation, the 2×2 cell integrals of the parts of :data:`dfptmag.analysis.timeodd.PARTS`
(``sum_matrix``, ``tail_matrix``, ``one_matrix``, ``proj_matrix``), ``residual2`` and ``dpsi2``,
and the fields ``sum_field`` and ``tail_field``; attributes ``n_empty``, ``gap_ry``,
``orthogonality``. The closure's tail is kept apart, so the closure is chosen at analysis.

The arrays are the same floating-point numbers the analysis would accumulate from the δψ
(one k-point at a time, in the same order), so a q-run analysed from contracted results is
bitwise equal to one analysed from its δψ. Written atomically and flushed to disk (fsync)
before the δψ it replaces may be deleted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputFileError
from ._h5 import U_FIELD, create

SCHEMA = "dfptmag-contracted/1"
DIRNAME = "contracted"
ARRAYS = ("pattern_id", "density_matrix", "field", "fildrho", "drho_relative_error", "drho_g0_relative_error")
BULK = ("field", "fildrho")         # left out by read(field=False)
TIME_ODD_ARRAYS = ("sum_matrix", "tail_matrix", "one_matrix", "proj_matrix", "residual2", "dpsi2",
                   "sum_field", "tail_field")
TIME_ODD_ATTRS = ("n_empty", "gap_ry", "orthogonality")


def path_for(qdir, irrep: int) -> Path:
    return Path(qdir) / DIRNAME / f"irr{int(irrep)}.h5"


def write(path, rec: dict) -> Path:
    """Write ``rec`` (the arrays of :data:`ARRAYS` and the root attributes) atomically, then
    fsync the file and its directory: on return it is durably on disk."""
    path = Path(path)
    with create(path, SCHEMA) as f:
        for key in ("irrep", "qe_version", "charge_check"):
            f.attrs[key] = rec[key]
        f.attrs["q_tpiba"] = np.asarray(rec["q_tpiba"], dtype=float)
        f.attrs["fft_grid"] = np.asarray(rec["fft_grid"], dtype=int)
        f.attrs["source_sha256"] = json.dumps(rec.get("source_sha256", {}), sort_keys=True)
        f.attrs["components"] = "n, m_x, m_y, m_z; m_a = Tr(sigma_a dn) (QE convention)"
        f.create_dataset("pattern_id", data=np.asarray(rec["pattern_id"], dtype=np.int64))
        f.create_dataset("density_matrix", data=rec["density_matrix"]).attrs["units"] = "e/bohr"
        d = f.create_dataset("field", data=rec["field"])
        d.attrs["units"] = U_FIELD
        d.attrs["grid"] = "QE dense FFT grid, r = i1/n1 a1 + i2/n2 a2 + i3/n3 a3; periodic part"
        d = f.create_dataset("fildrho", data=rec["fildrho"])
        d.attrs["units"] = "e/bohr^4"
        d.attrs["description"] = "ph.x's fildrho records of these patterns (2 x the one-sided charge)"
        for key in ("drho_relative_error", "drho_g0_relative_error"):
            f.create_dataset(key, data=np.asarray(rec[key], dtype=float)).attrs["units"] = "1"
        if rec.get("time_odd") is not None:
            g = f.create_group("time_odd")
            for key in TIME_ODD_ARRAYS:
                g.create_dataset(key, data=rec["time_odd"][key])
            for key in TIME_ODD_ATTRS:
                g.attrs[key] = rec["time_odd"][key]
    for target in (path, path.parent):
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def read(path, field: bool = True) -> dict:
    """The record written by :func:`write` (``field=False``: without the real-space field and the
    fildrho records, the bulk of the file)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise InputFileError(path, f"schema {f.attrs.get('schema')!r}, expected {SCHEMA!r}")
            rec = {k: f[k][()] for k in ARRAYS if field or k not in BULK}
            for key in ("irrep", "qe_version", "charge_check"):
                rec[key] = f.attrs[key]
            rec["irrep"] = int(rec["irrep"])
            rec["q_tpiba"] = np.array(f.attrs["q_tpiba"])
            rec["fft_grid"] = tuple(int(n) for n in f.attrs["fft_grid"])
            rec["source_sha256"] = json.loads(f.attrs["source_sha256"])
            rec["time_odd"] = None
            if "time_odd" in f:
                g = f["time_odd"]
                rec["time_odd"] = {k: g[k][()] for k in TIME_ODD_ARRAYS if field or not k.endswith("_field")}
                rec["time_odd"].update({k: g.attrs[k].item() for k in TIME_ODD_ATTRS})
    except (OSError, KeyError) as exc:
        raise InputFileError(path, f"unreadable contracted result ({type(exc).__name__}: {exc})") from None
    return rec
