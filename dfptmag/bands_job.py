"""``dfptmag bands``: DFPT with δψ capture at every q of a band path (all patterns), the
optional interpolated dispersion from a coarse q-grid, per-q analysis, branch tracking by
eigenvector overlap, ``bands.h5`` and figures. Orchestration only: the physics is in
``analysis`` and ``kernel``, the files in ``io`` and ``bands_file``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from . import bandpath
from .errors import DfptmagError
from .kernel import branches as kb
from .kernel import modes as km
from .results import amplitude_text

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BandsRun:
    output: Path
    figures: list[Path]
    qdirs: dict[str, Path]
    failures: dict[str, str]
    steps_ran: int
    steps_skipped: int


def assemble(bp: bandpath.BandPath, per_point: list[dict | None]) -> dict:
    """Stack per-q analysis results (None where a run failed) into (nq, nmode, ...) arrays. The
    RMS values and degenerate groups are the analysis's own (derived once, with its tolerance)."""
    ref = next((r for r in per_point if r is not None), None)
    if ref is None:
        raise DfptmagError("no q-point of the band path finished; nothing to write")
    nmode = len(ref["frequency_ry"])
    nat = nmode // 3
    nq = bp.nq
    nan = np.full((nq, nmode), np.nan)
    out = {"path/q_crystal": bp.q_crystal, "path/distance": bp.distance,
           "path/labels": [lab for _, lab in bp.labels],
           "path/label_index": np.array([i for i, _ in bp.labels]),
           "path/breaks": np.array(bp.breaks, dtype=int),
           "path/computed": np.array([r is not None for r in per_point])}
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
    out.update({"modes/frequency_meV": km.ry_to_mev(freq), "modes/frequency_THz": km.ry_to_thz(freq),
                "modes/frequency_cm1": km.ry_to_cm1(freq),
                "modes/frequency_phx_cm1": phx, "modes/rms": rms, "modes/rms_inplane": inp,
                "modes/rms_outofplane": outp, "modes/rms_subspace": sub,
                "modes/degenerate_group": groups, "modes/cell_integral": ci, "modes/eigenvector": eig,
                "structure/cell_bohr": ref["cell_bohr"], "structure/positions_bohr": ref["positions_bohr"],
                "structure/symbols": list(ref["symbols"]), "structure/masses_amu": ref["masses_amu"]})
    out["attrs"] = {"amplitude": amplitude_text(ref["amplitude"], ref["amplitude_bohr"]),
                    "degenerate_tolerance_cm1": ref["degeneracy_tol_cm1"]}
    return out


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


def run_bands(workflow, path: str | None = None, npoints: int | None = None, workers: int | None = None,
              run_dir=None, output=None, progress: bool = True, figures=("png", "pdf"),
              tol_cm1: float = km.DEGENERACY_TOL_CM1, nproc: int | None = None) -> BandsRun:
    """Run (or resume) the band workflow and write bands.h5 and figures; see the module doc.
    ``nproc`` overrides the workflow's [parallel] nproc = npool for every QE run."""
    from .analysis import AnalysisOptions, analyze_qrun
    from .bands_file import write
    from .io.qe_dyn import read_dyn_blocks
    from .workflow import config, inputs
    from .workflow.runner import Runner

    wf = config.load(workflow)
    if nproc is not None:
        if nproc < 1:
            raise DfptmagError(f"nproc = {nproc}: give a positive number of processes")
        wf.nproc = wf.npool = nproc
    path = path or wf.bands["path"]
    npoints = npoints or wf.bands["npoints"]
    workers = workers or wf.bands["workers"]
    atoms = inputs.build_atoms(wf)
    bp = bandpath.band_path(atoms, path, npoints, wf.bands.get("extra_points"))
    known = bandpath.special_points(atoms, wf.bands.get("extra_points"))
    uniq, index = bandpath.unique_points(bp.q_crystal)
    qpts = [config.QPoint(bandpath.point_label(q, known), q) for q in uniq]
    run_dir = Path(run_dir or Path("runs") / wf.name)
    output = Path(output or run_dir / "bands.h5")
    dense_bp, dfpt_index = (bandpath.refine(bp, atoms, wf.dispersion["npoints"])
                            if wf.dispersion else (None, None))

    runner = Runner(wf, run_dir, progress=progress)
    res = runner.run_parallel(qpts, None, workers, dense_bp.q_crystal if dense_bp is not None else None)

    opts = AnalysisOptions(realspace=False, amplitude=wf.analysis["amplitude"],
                           amplitude_bohr=wf.analysis["amplitude_bohr"], degeneracy_tol_cm1=tol_cm1)
    analysed = {}
    for q in qpts:
        if q.label in res.qdirs:
            try:
                analysed[q.label] = analyze_qrun(res.qdirs[q.label], opts)
            except DfptmagError as exc:
                res.failures[q.label] = f"analysis: {exc}"
    per_point = [analysed.get(qpts[j].label) for j in index]
    b = assemble(bp, per_point)
    b["attrs"]["workflow"] = str(wf.path)
    b["attrs"]["path"] = path
    dense = None
    if res.dispersion is not None:
        nat = len(atoms)
        _, dyn = read_dyn_blocks(res.dispersion, nat)
        if len(dyn) != dense_bp.nq:
            raise DfptmagError(f"{res.dispersion}: {len(dyn)} q-points, expected {dense_bp.nq}")
        w, e, g = dispersion_modes(dyn, b["structure/masses_amu"], tol_cm1)
        dense = {"eig": e, "groups": g, "breaks": dense_bp.breaks, "dfpt_index": dfpt_index}
        b.update({"dispersion/q_crystal": dense_bp.q_crystal, "dispersion/distance": dense_bp.distance,
                  "dispersion/frequency_meV": km.ry_to_mev(w), "dispersion/frequency_THz": km.ry_to_thz(w),
                  "dispersion/dfpt_index": dfpt_index})
        b["dispersion_attrs"] = {"method": wf.dispersion["method"], "qgrid": wf.dispersion["qgrid"],
                                 "asr": wf.dispersion["asr"], "loto_2d": wf.dispersion["loto_2d"],
                                 "source": "ph.x ldisp on the coarse q-grid, q2r.x, matdyn.x (fldyn), "
                                           "diagonalised by dfptmag"}
    elif wf.dispersion is not None:
        log.warning("no interpolated dispersion: %s", res.failures.get("dispersion", "not run"))
    track_branches(b, dense)
    write(output, b)
    figs = []
    if figures:
        from .plot.bands import save_figures
        figs = save_figures(b, output.parent, formats=figures)
    return BandsRun(output=output, figures=figs, qdirs=res.qdirs, failures=res.failures,
                    steps_ran=len(runner.steps.ran), steps_skipped=len(runner.steps.skipped))
