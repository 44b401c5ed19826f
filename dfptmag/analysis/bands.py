"""A band path's analysis: per-q results stacked into (nq, nmode, ...) arrays, the interpolated
dispersion diagonalised, branches tracked by eigenvector overlap (``kernel.branches``). The job
that runs QE for it is ``dfptmag.jobs.bands``; the file is ``results.bandsfile``.
"""
from __future__ import annotations

import numpy as np

from ..errors import DfptmagError
from ..kernel import bandpath
from ..kernel import branches as kb
from ..kernel import modes as km
from ..results import bandsfile


def assemble(bp: bandpath.BandPath, per_point: list[dict | None]) -> dict:
    """Stack per-q analysis results (None where a run failed) into (nq, nmode, ...) arrays, as a
    bands dict (results.bandsfile.build). The RMS values and degenerate groups are the
    analysis's own (derived once, with its tolerance)."""
    ref = next((r for r in per_point if r is not None), None)
    if ref is None:
        raise DfptmagError("no q-point of the band path finished; nothing to write")
    nmode = len(ref["frequency_ry"])
    nat = nmode // 3
    nq = bp.nq
    nan = np.full((nq, nmode), np.nan)
    freq = nan.copy()
    phx = nan.copy()
    ci = np.full((nq, nmode, 4), np.nan + 0j)
    eig = np.full((nq, nmode, nat, 3), np.nan + 0j)
    rms, sub = np.full((nq, nmode, 4), np.nan), np.full((nq, nmode, 4), np.nan)
    inp, outp = nan.copy(), nan.copy()
    groups = np.full((nq, nmode), -1)
    for iq, r in enumerate(per_point):
        if r is None:
            continue
        if "mode_cell_integral" not in r:
            raise DfptmagError(f"q = {bp.q_crystal[iq]}: {r.get('modes_missing_reason', 'no modes')}")
        freq[iq] = r["frequency_ry"]
        phx[iq] = r.get("fildyn_freq_cm1", np.full(nmode, np.nan))
        ci[iq] = r["mode_cell_integral"]
        eig[iq] = r["eigenvector"]
        groups[iq] = r["degenerate_group"]
        rms[iq], sub[iq] = r["mode_rms"], r["mode_rms_subspace"]
        inp[iq], outp[iq] = r["mode_rms_inplane"], r["mode_rms_outofplane"]
    b = bandsfile.build(bp, computed=np.array([r is not None for r in per_point]), frequency_ry=freq,
                        frequency_phx_cm1=phx, rms=rms, rms_inplane=inp, rms_outofplane=outp,
                        rms_subspace=sub, degenerate_group=groups, cell_integral=ci, eigenvector=eig,
                        structure=ref, amplitude=ref["amplitude"], amplitude_bohr=ref["amplitude_bohr"],
                        tol_cm1=ref["degeneracy_tol_cm1"])
    _time_odd(b, per_point, nq, nmode)
    return b


def _time_odd(b: dict, per_point: list, nq: int, nmode: int) -> None:
    """The time-odd RMS per mode beside the one-sided one (in place), when every finished q-point
    has it (with the empty-state settings of the first); a path with some q-points without
    empty states gets none, rather than a curve with holes that reads like zeros."""
    done = [r for r in per_point if r is not None]
    if not done or any(r.time_odd_mode_rms_inplane is None for r in done):
        return
    peak = np.full((nq, nmode, 3), np.nan + 0j)
    inp, outp = np.full((nq, nmode), np.nan), np.full((nq, nmode), np.nan)
    for iq, r in enumerate(per_point):
        if r is not None:
            peak[iq] = r["time_odd_mode_cell_integral"]
            inp[iq], outp[iq] = r["time_odd_mode_rms_inplane"], r["time_odd_mode_rms_outofplane"]
    b.update({"modes/time_odd_peak": peak, "modes/time_odd_rms_inplane": inp, "modes/time_odd_rms_outofplane": outp})
    st = done[0]["time_odd_settings"]
    b["attrs"].update(time_odd_empty_bands=st["empty_bands"], time_odd_closure=st["closure"])


def dispersion_modes(dyn: np.ndarray, masses_amu, tol_cm1: float):
    """Frequencies (Ry), eigenvectors and degenerate groups of matdyn.x's interpolated matrices."""
    w, e, g = [], [], []
    for d in dyn:
        om, ev = km.diagonalize(d, masses_amu)
        w.append(om)
        e.append(ev)
        g.append(km.degenerate_groups(km.ry_to_cm1(om), tol_cm1))
    return np.array(w), np.array(e), np.array(g)


def track_branches(b: dict, dense: dict | None) -> None:
    """Add modes/branch and modes/branch_overlap (and dispersion/branch) to ``b`` in place.

    With an interpolated dispersion the tracking runs on its dense path (small steps, so the
    overlaps are unambiguous) and each DFPT point takes the branches of the dense point at the
    same q by overlap; otherwise it runs on the DFPT points themselves, skipping failed ones."""
    computed = b["path/computed"]
    nq, nmode = b["modes/frequency_cm1"].shape
    e = b["modes/eigenvector"].reshape(nq, nmode, -1)
    branch = np.full((nq, nmode), -1)
    score = np.full((nq, nmode), np.nan)
    if dense is not None:
        dbranch, _ = kb.track(dense["eig"], dense["groups"], dense["breaks"])
        b["dispersion/branch"] = dbranch
        for iq in np.flatnonzero(computed):
            j = dense["dfpt_index"][iq]
            which, s = kb.match(dense["eig"][j], e[iq], b["modes/degenerate_group"][iq])
            branch[iq] = dbranch[j][which]
            score[iq] = s
    else:
        idx = np.flatnonzero(computed)
        tb, ts = kb.track(e[idx], b["modes/degenerate_group"][idx])
        branch[idx], score[idx] = tb, ts
    b["modes/branch"] = branch
    b["modes/branch_overlap"] = score
