"""Contract one irrep's captured δψ into what every later stage needs, so that the δψ can be
deleted (``[storage] discard_dwf``, ``dfptmag run/bands --discard-dwf``).

For irrep p of a q-run directory this runs the analysis stages 1–5 of :mod:`.qrun` on that
irrep's capture alone: the capture's checksums, ψ at k and k+q verified against ph.x's ψ buffer,
paper Eq. 1 accumulated over k (the 2×2 cell integral from overlaps and the field on the FFT
grid), and the charge oracle on the grid against ph.x's fildrho. Only when the oracle passes is
the result written (``contracted/irr<p>.h5``, :mod:`dfptmag.results.contracted`), atomically and
fsync'ed, read back and compared bitwise with what was computed. The caller then records it in
the manifest and only then deletes the δψ (:func:`dfptmag.workflow.capture.discard_dwf`).

The per-pattern sums are those of the whole-q analysis (same k order, same kernels, each pattern
independent), so a q-run analysed from contracted results equals, bitwise, one analysed from
its δψ (tested on real runs).
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DfptmagError, InputFileError
from ..io.qe_grid import read_grid_record
from ..io.qrun_dir import check_manifest_types, locate, sha256_file, verify_captures
from ..results import contracted as rc
from .qrun import (AnalysisOptions, ChargeCheckError, accumulate_eq1, cell_integrals_and_oracle,
                   open_captures, read_ground_state)


class NotVerified(DfptmagError):
    """The contraction could not be verified against fildrho: the δψ must be kept."""


def contract_irrep(qdir, irrep: int, charge_tolerance: float = 1e-6) -> dict:
    """Contract irrep ``irrep`` of the q-run ``qdir``; returns the manifest record
    ``{"file", "size", "sha256", "patterns", "charge_error", "seconds"}`` (``file`` relative to
    ``qdir``). Raises :class:`ChargeCheckError` when the δψ does not reproduce fildrho and
    :class:`NotVerified` when there is no fildrho to check it against; nothing is written then."""
    t_start = time.perf_counter()
    tm = defaultdict(float)
    qdir = Path(qdir)
    check_manifest_types(qdir)
    files = locate(qdir)
    cap = files.captures.get(int(irrep))
    if cap is None:
        raise InputFileError(qdir / "dfptmag-q.json", f"no capture of irrep {irrep} to contract")
    one = dataclasses.replace(files, captures={int(irrep): cap})
    verify_captures(one)                    # this irrep only: other patterns' tasks run beside it
    if cap.get("contracted"):
        raise DfptmagError(f"{qdir}: irrep {irrep} is already contracted ({cap['contracted']['file']})")
    if not cap.get("drho") or not Path(cap["drho"]).is_file():
        raise NotVerified(f"{qdir}: irrep {irrep} has no fildrho copy, so its contraction cannot be "
                          "checked against ph.x; its δψ is kept")
    t0 = time.perf_counter()
    gs = read_ground_state(one)
    caps = open_captures(one, gs)
    tm["open"] += time.perf_counter() - t0
    opts = AnalysisOptions(realspace=True, charge_tolerance=charge_tolerance)
    acc = accumulate_eq1(one, gs, caps, opts, tm)
    res = cell_integrals_and_oracle(one, gs, caps, acc, opts, [], tm)   # raises ChargeCheckError
    if not str(res.get("charge_check", "")).startswith("passed"):
        raise NotVerified(f"{qdir}: irrep {irrep}: {res.get('charge_check')}; its δψ is kept")
    rec = {"irrep": int(irrep), "qe_version": res["qe_version"], "charge_check": res["charge_check"],
           "q_tpiba": files.q_tpiba, "fft_grid": gs.x.fft_grid,
           "source_sha256": {Path(p).name: c["sha256"] for p, c in (cap.get("checksums") or {}).items()},
           "pattern_id": np.array(caps.pattern_ids), "density_matrix": res["pattern_matrix"],
           "field": res["pattern_field"],
           "fildrho": np.array([read_grid_record(cap["drho"], mu + 1, gs.x.fft_grid)[0] for mu in caps.pattern_ids]),
           "drho_relative_error": res["drho_relative_error"],
           "drho_g0_relative_error": res["drho_g0_relative_error"],
           "time_odd": _time_odd_record(qdir, irrep)}
    t0 = time.perf_counter()
    path = rc.write(rc.path_for(qdir, irrep), rec)
    tm["write"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    back = rc.read(path)
    pairs = [(key, rec[key], back[key]) for key in rc.ARRAYS]
    if rec["time_odd"] is not None:
        pairs += [(f"time_odd/{k}", rec["time_odd"][k], (back["time_odd"] or {}).get(k)) for k in rc.TIME_ODD_ARRAYS]
    for key, a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.tobytes() != b.tobytes():
            path.unlink(missing_ok=True)
            raise DfptmagError(f"{path}: read back differs from what was written ({key}); δψ kept")
    size = path.stat().st_size
    digest = sha256_file(path)
    tm["verify_written"] += time.perf_counter() - t0
    worst = float(np.nanmax(np.fmax(res["drho_relative_error"], res["drho_g0_relative_error"])))
    tm["total"] = time.perf_counter() - t_start
    return {"file": os.path.relpath(path, qdir), "size": int(size), "sha256": digest,
            "patterns": [int(m) + 1 for m in caps.pattern_ids], "charge_error": worst,
            "seconds": {k: round(v, 4) for k, v in tm.items()}}


def _time_odd_record(qdir: Path, irrep: int) -> dict | None:
    """With empty states next to the q-run, the time-odd parts of this irrep (fields included),
    for the contracted file: what the time-odd analysis needs once the δψ is gone."""
    from .timeodd import analyze_time_odd, find_empty_states
    save = find_empty_states(qdir)
    if save is None:
        return None
    t = analyze_time_odd(qdir, save, realspace=True, irreps={int(irrep)})
    out = {f"{k}_matrix": t.matrices[k] for k in ("sum", "tail", "one", "proj")}
    out.update(residual2=t.residual2, dpsi2=t.dpsi2, sum_field=t.fields["sum"], tail_field=t.fields["tail"],
               n_empty=t.n_empty, gap_ry=t.gap_ry, orthogonality=t.orthogonality)
    return out


__all__ = ["contract_irrep", "NotVerified", "ChargeCheckError"]


def contractor(charge_tolerance: float = 1e-6):
    """The callable a runner's ``contract`` takes: contract, or return None (δψ kept, with a
    warning) where there is no fildrho to verify against; a failed charge check raises."""
    import logging

    def contract(qdir, irrep):
        try:
            return contract_irrep(qdir, irrep, charge_tolerance)
        except NotVerified as exc:
            logging.getLogger(__name__).warning("%s", exc)
            return None
    return contract
