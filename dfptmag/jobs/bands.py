"""``dfptmag bands``: DFPT with δψ capture at every q of a band path (all patterns), the
optional interpolated dispersion from a coarse q-grid, per-q analysis, branch tracking by
eigenvector overlap, ``bands.h5`` and figures. Orchestration only: the physics is in
``analysis`` and ``kernel``, the files in ``io`` and ``results``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..analysis.bands import assemble, dispersion_modes, track_branches
from ..errors import DfptmagError
from ..kernel import bandpath
from ..kernel import modes as km

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BandsRun:
    output: Path
    figures: list[Path]
    qdirs: dict[str, Path]
    failures: dict[str, str]
    steps_ran: int
    steps_skipped: int


def run_bands(workflow, path: str | None = None, npoints: int | None = None, workers: int | None = None,
              run_dir=None, output=None, progress: bool = True, figures=("png", "pdf"),
              tol_cm1: float = km.DEGENERACY_TOL_CM1, nproc: int | None = None) -> BandsRun:
    """Run (or resume) the band workflow and write bands.h5 and figures; see the module doc.
    ``nproc`` overrides the workflow's [parallel] nproc = npool for every QE run."""
    from ..analysis.qrun import AnalysisOptions, analyze_qrun
    from ..results.bandsfile import write
    from ..io.qe_dyn import read_dyn_blocks
    from ..workflow import config, inputs
    from ..workflow.runner import Runner

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
        from ..plot.bands import save_figures
        figs = save_figures(b, output.parent, formats=figures)
    return BandsRun(output=output, figures=figs, qdirs=res.qdirs, failures=res.failures,
                    steps_ran=len(runner.steps.ran), steps_skipped=len(runner.steps.skipped))
