"""``dfptmag bands``: DFPT with δψ capture at every q of a band path (all patterns), the
optional interpolated dispersion from a coarse q-grid, per-q analysis, branch tracking by
eigenvector overlap, ``bands.h5`` and figures. Orchestration only: the physics is in
``analysis`` and ``kernel``, the files in ``io`` and ``results``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

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


@dataclasses.dataclass
class BandsSetup:
    """The band path of a workflow: its DFPT q-points (unique, labelled) and the dense path."""
    wf: object
    path: str
    atoms: object
    bp: object
    qpts: list
    index: np.ndarray
    dense_bp: object
    dfpt_index: np.ndarray | None


def setup(workflow, path: str | None = None, npoints: int | None = None, nproc: int | None = None) -> BandsSetup:
    from ..workflow import config, inputs
    wf = config.load(workflow)
    if nproc is not None:
        if nproc < 1:
            raise DfptmagError(f"nproc = {nproc}: give a positive number of processes")
        wf.nproc = wf.npool = nproc
    path = path or wf.bands["path"]
    npoints = npoints or wf.bands["npoints"]
    atoms = inputs.build_atoms(wf)
    bp = bandpath.band_path(atoms, path, npoints, wf.bands.get("extra_points"))
    known = bandpath.special_points(atoms, wf.bands.get("extra_points"))
    uniq, index = bandpath.unique_points(bp.q_crystal)
    qpts = [config.QPoint(bandpath.point_label(q, known), q) for q in uniq]
    dense_bp, dfpt_index = (bandpath.refine(bp, atoms, wf.dispersion["npoints"])
                            if wf.dispersion else (None, None))
    return BandsSetup(wf, path, atoms, bp, qpts, index, dense_bp, dfpt_index)


def run_bands(workflow, path: str | None = None, npoints: int | None = None, workers: int | None = None,
              run_dir=None, output=None, progress: bool = True, figures=("png", "pdf"),
              tol_cm1: float = km.DEGENERACY_TOL_CM1, nproc: int | None = None,
              discard_dwf: bool | None = None, keep_scratch: bool | None = None) -> BandsRun:
    """Run (or resume) the band workflow and write bands.h5 and figures; see the module doc.
    ``nproc`` overrides the workflow's [parallel] nproc = npool for every QE run;
    ``discard_dwf``/``keep_scratch``: contract-and-discard (:mod:`.storage`)."""
    from ..workflow.runner import Runner

    st = setup(workflow, path, npoints, nproc)
    wf = st.wf
    workers = workers or wf.bands["workers"]
    run_dir = Path(run_dir or Path("runs") / wf.name)
    output = Path(output or run_dir / "bands.h5")
    runner = Runner(wf, run_dir, progress=progress)
    from . import storage
    storage.attach(runner, storage.settings(wf, None, discard_dwf, keep_scratch))
    res = runner.run_parallel(st.qpts, None, workers,
                              st.dense_bp.q_crystal if st.dense_bp is not None else None)
    figs = write_bands(st, res.qdirs, res.failures, res.dispersion, output, figures, tol_cm1)
    return BandsRun(output=output, figures=figs, qdirs=res.qdirs, failures=res.failures,
                    steps_ran=len(runner.steps.ran), steps_skipped=len(runner.steps.skipped))


def write_bands(st: BandsSetup, qdirs: dict, failures: dict, dispersion, output, figures=("png", "pdf"),
                tol_cm1: float = km.DEGENERACY_TOL_CM1) -> list[Path]:
    """Analyze every finished q-run (``qdirs``: label → directory; analysis errors are added to
    ``failures``), stack them along the path, add the interpolated dispersion (matdyn.x's file,
    or None), track branches, write ``output`` and the figures; returns the figure paths."""
    from ..analysis.qrun import analyze_qrun
    from ..io.qe_dyn import read_dyn_blocks
    from ..results.bandsfile import write
    from .options import analysis_options
    wf, bp, dense_bp, dfpt_index = st.wf, st.bp, st.dense_bp, st.dfpt_index
    output = Path(output)
    opts = analysis_options(wf, realspace=False, degeneracy_tol_cm1=tol_cm1)
    analysed = {}
    from ..analysis.timeodd import attach_if_present
    closure = (wf.timeodd or {}).get("closure", "kinetic")
    for q in st.qpts:
        if q.label in qdirs:
            try:
                analysed[q.label] = analyze_qrun(qdirs[q.label], opts)
                attach_if_present(analysed[q.label], qdirs[q.label], closure)
            except DfptmagError as exc:
                failures[q.label] = f"analysis: {exc}"
    per_point = [analysed.get(st.qpts[j].label) for j in st.index]
    b = assemble(bp, per_point)
    b["attrs"]["workflow"] = str(wf.path)
    b["attrs"]["path"] = st.path
    dense = None
    if dispersion is not None:
        nat = len(st.atoms)
        _, dyn = read_dyn_blocks(dispersion, nat)
        if len(dyn) != dense_bp.nq:
            raise DfptmagError(f"{dispersion}: {len(dyn)} q-points, expected {dense_bp.nq}")
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
        log.warning("no interpolated dispersion: %s", failures.get("dispersion", "not run"))
    track_branches(b, dense)
    write(output, b)
    figs = []
    if figures:
        from ..plot.bands import save_figures
        figs = save_figures(b, output.parent, formats=figures)
    return figs
