"""Plain-text tables of analysis results for the terminal."""
from __future__ import annotations

import numpy as np

from .. import ONE_SIDED_NOTE
from ..kernel import modes as km


def mode_table(label: str, r: dict) -> str:
    lines = [f"q = {label}  (crystal {np.round(r['q_crystal'], 6).tolist()}), "
             f"{r['nk']} k-points, {r['nocc']} occupied bands, QE {r['qe_version']}"]
    if "drho_relative_error" in r and np.any(np.isfinite(r["drho_relative_error"])):
        lines.append(f"charge oracle: max ‖2·Tr δñ − drho(ph.x)‖/‖drho‖ = "
                     f"{np.nanmax(r['drho_relative_error']):.2e} over {np.sum(np.isfinite(r['drho_relative_error']))} patterns")
    for note in r.get("input_notes", []):
        lines.append("note: " + note)
    if "mode_cell_integral" not in r:
        lines.append("modes: " + r.get("modes_missing_reason", "not available"))
        lines.append("per pattern |∫δn| (e/bohr), |∫δm_x|, |∫δm_y|, |∫δm_z| (μB/bohr):")
        for idx, ci in zip(r["pattern_index"], r["pattern_cell_integral"]):
            lines.append(f"  pattern {idx:3d}  " + "  ".join(f"{v:10.3e}" for v in np.abs(ci)))
        return "\n".join(lines)
    mev = km.ry_to_mev(r["frequency_ry"])
    cm1 = km.ry_to_cm1(r["frequency_ry"])
    ci = np.abs(r["mode_cell_integral"])
    lines.append(km.amplitude_text(r["amplitude"], r["amplitude_bohr"]))
    lines.append("cell integrals ∫_Ω d³r per unit cell: |δn| in electrons, |δm_α| in μB "
                 "(m_α = Tr σ_α δñ, QE convention)")
    lines.append(f"{'mode':>4} {'meV':>9} {'cm-1':>9} {'|dn| e':>11} {'|dm_x| uB':>11} "
                 f"{'|dm_y| uB':>11} {'|dm_z| uB':>11} {'group':>5}")
    for n in range(len(mev)):
        lines.append(f"{n + 1:4d} {mev[n]:9.3f} {cm1[n]:9.3f} " + " ".join(f"{v:11.3e}" for v in ci[n])
                     + f" {r['degenerate_group'][n]:5d}")
    if "fildyn_freq_cm1" in r:
        lines.append(f"max |ω(dfptmag) − ω(ph.x)| = {np.max(np.abs(cm1 - r['fildyn_freq_cm1'])):.2e} cm-1")
    lines.append("object: " + ONE_SIDED_NOTE)
    if "time_odd_mode_rms_inplane" in r:
        lines += time_odd_lines(r, mev)
    return "\n".join(lines)


def time_odd_lines(r, mev) -> list[str]:
    """The time-odd table beside the one-sided one: RMS of both per mode, μB per cell."""
    st = r["time_odd_settings"]
    lines = [f"time-odd spin response (in phase with the lattice velocity, at each mode's frequency and "
             f"amplitude; {st['empty_bands']} empty states, closure {st['closure']}, δψ outside them "
             f"≤ {np.max(r['time_odd_residual_norm']):.2f}):",
             f"{'mode':>4} {'meV':>9} {'one-sided RMS in':>17} {'out':>10} {'time-odd RMS in':>16} {'out':>10}  μB"]
    for n in range(len(mev)):
        lines.append(f"{n + 1:4d} {mev[n]:9.3f} {r['mode_rms_inplane'][n]:17.3e} {r['mode_rms_outofplane'][n]:10.3e} "
                     f"{r['time_odd_mode_rms_inplane'][n]:16.3e} {r['time_odd_mode_rms_outofplane'][n]:10.3e}")
    return lines


def bands_table(b: dict) -> str:
    """Per q-point and branch: frequency (meV), in-plane and out-of-plane RMS magnetization."""
    from ..kernel.branches import per_branch

    def per(key):
        return per_branch(b[key], b["modes/branch"], b["path/computed"])
    w = per("modes/frequency_meV")
    mi = per("modes/rms_inplane")
    mo = per("modes/rms_outofplane")
    labels = dict(zip(b["path/label_index"], b["path/labels"]))
    lines = [b["attrs"].get("amplitude", ""),
             "per branch: ω (meV) / RMS in-plane M (μB per cell) / RMS out-of-plane M (μB per cell)",
             "object: " + ONE_SIDED_NOTE]
    for iq, q in enumerate(b["path/q_crystal"]):
        lab = labels.get(iq, "")
        if not b["path/computed"][iq]:
            lines.append(f"q = {np.round(q, 4).tolist()} {lab}: not computed")
            continue
        lines.append(f"q = {np.round(q, 4).tolist()} {lab}")
        for br in range(w.shape[1]):
            lines.append(f"  branch {br + 1:2d}  {w[iq, br]:9.3f} meV  {mi[iq, br]:10.3e}  {mo[iq, br]:10.3e}")
    return "\n".join(lines)
