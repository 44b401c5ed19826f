"""``dfptmag bands WORKFLOW --interpolate``: magnetization bands on a dense path (and BZ maps) from
DFPT with δψ capture only at the irreducible q-points of the ``[interpolation] qgrid``.

Steps: the crystal's operations (spglib) → irreducible q of the N×N grid → DFPT with capture there
(all patterns, real-space fields) and the ``[dispersion]`` chain (ph.x ldisp, q2r.x, matdyn.x on the
dense path plus a BZ sampling) → the fields unfolded to the full grid and turned into F_{κα}(q)
(``analysis.grid``; saved as ``grid.h5`` next to bands.h5) → modes at every dense q from matdyn.x's
dynamical matrices, cell integrals Σ U_ν F, RMS → bands.h5 with the dense path (grid points on
the path are marked ``path/dfpt_point``) and figures, and ``bz_maps_inplane.png``/``bz_maps_outofplane.png`` (per tracked branch, in-plane
and out-of-plane RMS over the 2D Brillouin zone; data in ``bz_maps.h5``).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from ..analysis import grid as gi
from ..constants import BOHR_RADIUS_ANGS
from ..errors import DfptmagError, InputFileError
from ..kernel import bandpath
from ..kernel import modes as km
from ..kernel import observables as obs
from ..kernel import symmetry as ks
from ..kernel.bzsampling import bz_branches, bz_sampling

log = logging.getLogger(__name__)


@dataclasses.dataclass
class InterpolatedBandsRun:
    output: Path
    grid_file: Path
    figures: list[Path]
    irreducible: list[str]          # q-run labels where DFPT ran
    grid: tuple[int, int, int]
    failures: dict[str, str]
    qe_wall_s: float                # summed wall time of the DFPT q-runs (from ph.x outputs)
    steps_ran: int
    steps_skipped: int


@dataclasses.dataclass
class _Modes:
    """Modes and RMS magnetization at every interpolated q: the dense path, then the BZ sampling."""
    frequency_ry: np.ndarray        # (nq, nmode), ascending at each q
    eigenvector: np.ndarray         # (nq, nmode, nmode), mass-scaled
    groups: np.ndarray              # degenerate groups (nq, nmode)
    cell_integral: np.ndarray       # Σ U_ν F (nq, nmode, 4)
    rms: np.ndarray
    inplane: np.ndarray
    outofplane: np.ndarray
    subspace: np.ndarray
    displacement: np.ndarray | None = None    # (nq, nmode, nat, 3) U at the workflow's amplitude, bohr
    odd_peak: np.ndarray | None = None        # (nq, nmode, 3) time-odd peak −2iħω m[X·U], μB
    odd_inplane: np.ndarray | None = None
    odd_outofplane: np.ndarray | None = None


def run_interpolated_bands(workflow, path: str | None = None, npoints: int | None = None,
                           workers: int | None = None, run_dir=None, output=None, progress: bool = True,
                           figures=("png", "pdf"), tol_cm1: float = km.DEGENERACY_TOL_CM1,
                           nproc: int | None = None, bz_points: int = 40, discard_dwf: bool | None = None,
                           keep_scratch: bool | None = None) -> InterpolatedBandsRun:
    """Run (or resume) the interpolated band workflow and write bands.h5, grid.h5, bz_maps.h5 and
    figures; see the module doc. ``nproc`` overrides the workflow's [parallel] nproc = npool;
    ``bz_points``: points per side of the BZ sampling (0: no BZ maps);
    ``discard_dwf``/``keep_scratch``: contract-and-discard (:mod:`.storage`)."""
    from ..analysis.bands import track_branches
    from ..io.qe_output import ph_wall_seconds
    from ..results.bandsfile import write
    from ..workflow import inputs

    wf = _load(workflow, nproc)
    qgrid = tuple(wf.interpolation["qgrid"])
    path = path or wf.bands["path"]
    atoms = inputs.build_atoms(wf)
    cell_ang = np.array(atoms.cell)
    qpts, calib, n_grid = _dfpt_points(wf, atoms, qgrid)
    bp = bandpath.band_path(atoms, path, npoints or wf.bands["npoints"], wf.bands.get("extra_points"))
    dense_bp, _ = bandpath.refine(bp, atoms, wf.dispersion["npoints"])
    run_dir = Path(run_dir or Path("runs") / wf.name)
    output = Path(output or run_dir / "bands.h5")
    bz_q, bz_ij = bz_sampling(cell_ang, bz_points, with_index=True) if bz_points else (np.zeros((0, 3)), None)
    all_q = np.vstack([dense_bp.q_crystal, bz_q])

    runner, res = _run_dfpt(wf, run_dir, qpts, workers or wf.bands["workers"], all_q, progress,
                            discard_dwf, keep_scratch)
    grid, ref, grid_file = _grid_response(wf, res.qdirs, qpts, n_grid, calib, qgrid[0], tol_cm1,
                                          output.with_name("grid.h5"))
    modes = _modes(wf, res.dispersion, len(atoms), all_q, ref["masses_amu"], grid, tol_cm1)
    if ref.get("grid_time_odd") is not None:
        _time_odd_modes(modes, ref["grid_time_odd"], all_q)
    b = _bands(wf, dense_bp, modes, ref, len(atoms), path, qgrid, len(qpts), calib, tol_cm1)
    track_branches(b, None)
    write(output, b)
    nd = dense_bp.nq
    bz_branch, bz_seam = _write_bz_maps(output.with_name("bz_maps.h5"), bz_q, bz_ij, modes, nd, cell_ang,
                                        b["attrs"]["amplitude"])
    figs = _figures(b, output.parent, figures, bz_q, modes, nd, ref["cell_bohr"], bz_branch, bz_seam)
    wall = sum(ph_wall_seconds(res.qdirs[q.label]) for q in qpts)
    return InterpolatedBandsRun(output, grid_file, figs, [q.label for q in qpts], qgrid, res.failures, wall,
                                len(runner.steps.ran), len(runner.steps.skipped))


def _load(workflow, nproc: int | None):
    """The workflow, checked for what --interpolate needs, with ``nproc`` applied."""
    from ..workflow import config
    wf = config.load(workflow)
    if wf.interpolation is None:
        raise InputFileError(wf.path, "--interpolate needs an [interpolation] section with qgrid = [N, N, 1]")
    if wf.dispersion is None:
        raise InputFileError(wf.path, "--interpolate takes the modes at every dense q from the "
                                      "[dispersion] section (ph.x ldisp, q2r.x, matdyn.x); add one")
    if nproc is not None:
        if nproc < 1:
            raise DfptmagError(f"nproc = {nproc}: give a positive number of processes")
        wf.nproc = wf.npool = nproc
    return wf


def _dfpt_points(wf, atoms, qgrid):
    """Where DFPT runs: the irreducible q of the grid under the crystal's operations (spglib),
    then the long-range pair not already among them. Returns (q-points, labels of the long-range
    pair, number of grid points)."""
    from ..workflow import config
    cell_ang = np.array(atoms.cell)
    ops = gi.crystal_operations(cell_ang, atoms.get_positions(), atoms.get_chemical_symbols())
    irr, _, _ = ks.irreducible_grid(ops, qgrid)
    known = bandpath.special_points(atoms, wf.bands.get("extra_points"))
    qpts = [config.QPoint(bandpath.point_label(q, known), q) for q in irr]
    calib = _long_range_points(wf, cell_ang, known)
    for qp in calib:
        if all(p.label != qp.label for p in qpts):
            qpts.append(qp)
    return qpts, [qp.label for qp in calib], len(irr)


def _long_range_points(wf, cell_ang, known) -> list:
    """The two direct runs of the long-range fit ([interpolation] long_range; they must differ in
    |q|), or [] without one."""
    from ..workflow import config
    long_range = wf.interpolation.get("long_range")
    if not long_range:
        return []
    B2 = 2 * np.pi * np.linalg.inv(cell_ang).T[:2, :2]
    lens = [float(np.linalg.norm(np.asarray(q[:2]) @ B2)) for q in long_range]
    if abs(lens[0] - lens[1]) < 1e-3 * max(lens):
        raise InputFileError(wf.path, f"[interpolation] long_range = {long_range}: the "
                                      "two q-points must differ in length (|q| "
                                      f"{lens[0] * BOHR_RADIUS_ANGS:.4f} and {lens[1] * BOHR_RADIUS_ANGS:.4f} 1/bohr)")
    return [config.QPoint(bandpath.point_label(np.asarray(q, float), known), np.asarray(q, float))
            for q in long_range]


def _run_dfpt(wf, run_dir: Path, qpts, workers, all_q, progress, discard_dwf, keep_scratch):
    """DFPT with capture at ``qpts`` and the [dispersion] chain with matdyn.x at ``all_q``;
    returns (runner, its result), or raises if a q-run or the dispersion failed."""
    from ..workflow.runner import Runner
    from . import storage
    runner = Runner(wf, run_dir, progress=progress)
    storage.attach(runner, storage.settings(wf, None, discard_dwf, keep_scratch))
    res = runner.run_parallel(qpts, None, workers, all_q)
    missing = [q.label for q in qpts if q.label not in res.qdirs]
    if missing:
        raise DfptmagError(f"DFPT failed at irreducible q {missing}: " +
                           "; ".join(f"{k}: {v.splitlines()[0] if v else ''}" for k, v in res.failures.items()))
    if res.dispersion is None:
        raise DfptmagError(f"no interpolated dispersion: {res.failures.get('dispersion', 'not run')}")
    return runner, res


def _grid_response(wf, qdirs, qpts, n_grid: int, calib: list[str], N: int, tol_cm1: float, grid_path: Path):
    """Analyze every q-run (real-space fields), unfold the first ``n_grid`` to the N×N grid, fit
    the long-range part to the ``calib`` runs, save ``grid_path``. Returns (grid response, the
    structure of the first run, grid_path)."""
    from ..analysis.qrun import analyze_qrun
    from .options import analysis_options
    opts = analysis_options(wf, realspace=True, degeneracy_tol_cm1=tol_cm1)
    t0 = time.perf_counter()
    results = [analyze_qrun(qdirs[q.label], opts) for q in qpts]
    ref = {k: results[0][k] for k in ("masses_amu", "cell_bohr", "positions_bohr", "symbols")}
    grid = gi.from_results(results[:n_grid], N)
    ref["grid_time_odd"] = _time_odd_grid(wf, qdirs, qpts[:n_grid], results[:n_grid], N, grid_path)
    if calib:
        by_label = {q.label: r for q, r in zip(qpts, results)}
        grid.long_range = gi.long_range_from([by_label[c] for c in calib])
        log.info("long-range part fitted at %s: screening lengths %s bohr", ", ".join(calib),
                 np.unique(np.round(grid.long_range.r[grid.long_range.r > 0], 2)).tolist())
    del results
    grid_file = gi.save(grid_path, grid)
    log.info("grid response built in %.1f s", time.perf_counter() - t0)
    return grid, ref, grid_file


def _time_odd_grid(wf, qdirs, qpts, results, N: int, grid_path: Path):
    """With [timeodd]: the time-odd response X of the irreducible q-points unfolded to the grid
    (as the one-sided fields are; no long-range separation: its linear term is not fitted) and
    saved as ``grid_time_odd.h5``; else None."""
    if wf.timeodd is None:
        return None
    from ..analysis.timeodd import attach_if_present
    for q, r in zip(qpts, results):
        if not attach_if_present(r, qdirs[q.label], wf.timeodd["closure"], realspace=True):
            raise DfptmagError(f"{qdirs[q.label]}: no empty states for the time-odd response")
    g = gi.from_results(results, N, key="time_odd_pattern_field")
    gi.save(grid_path.with_name("grid_time_odd.h5"), g)
    return g


def _time_odd_modes(m: _Modes, grid_odd, all_q) -> None:
    """The time-odd peak and RMS of every interpolated mode (in place): −2iħω_ν m[X(q)·U_ν]."""
    X = grid_odd.evaluate(all_q)                                        # (nq, nat, 3, 4) per Ry
    ci = np.einsum("qnka,qkac->qnc", m.displacement, X)
    w = np.where(m.frequency_ry > 0, m.frequency_ry, np.nan)
    m.odd_peak = -2j * w[..., None] * ci[..., 1:]
    rms = np.abs(m.odd_peak) / np.sqrt(2)
    m.odd_inplane, m.odd_outofplane = np.hypot(rms[..., 0], rms[..., 1]), rms[..., 2]


def _modes(wf, dispersion: Path, nat: int, all_q, masses, grid, tol_cm1: float) -> _Modes:
    """Modes at every q of ``all_q`` from matdyn.x's dynamical matrices, cell integrals Σ U_ν F
    with F from the grid response, and their RMS."""
    from ..analysis.bands import dispersion_modes
    from ..io.qe_dyn import read_dyn_blocks
    _, dyn = read_dyn_blocks(dispersion, nat)
    if len(dyn) != len(all_q):
        raise DfptmagError(f"{dispersion}: {len(dyn)} q-points, expected {len(all_q)}")
    w, e, groups = dispersion_modes(dyn, masses, tol_cm1)
    U = np.array([km.displacements(e[i], masses, w[i], wf.analysis["amplitude"], wf.analysis["amplitude_bohr"])
                  for i in range(len(w))]).reshape(len(w), -1, nat, 3)
    F = grid.evaluate(all_q)                                           # (nq, nat, 3, 4)
    ci = np.einsum("qnka,qkac->qnc", U, F)
    rms, inp, outp, sub = [], [], [], []
    for i in range(len(all_q)):
        o = obs.mode_observables(ci[i], groups[i])
        rms.append(o["rms"]), inp.append(o["inplane"]), outp.append(o["outofplane"]), sub.append(o["subspace"])
    rms, inp, outp, sub = map(np.array, (rms, inp, outp, sub))
    return _Modes(w, e, groups, ci, rms, inp, outp, sub, U)


def _bands(wf, dense_bp, m: _Modes, ref: dict, nat: int, path: str, qgrid, n_dfpt: int, calib: list[str],
           tol_cm1: float) -> dict:
    """The bands dict of the dense path (its first ``dense_bp.nq`` points of ``m``); the points of
    the DFPT grid are marked path/dfpt_point."""
    from ..results import bandsfile
    nd = dense_bp.nq
    N = qgrid[0]
    on_grid = np.array([ks.equivalent(q * N, np.round(q * N)) is not None for q in dense_bp.q_crystal])
    how = bandsfile.Interpolation(qgrid, n_dfpt, calib, wf.dispersion["asr"], bool(wf.dispersion["loto_2d"]))
    b = bandsfile.build(
        dense_bp, computed=np.ones(nd, bool), dfpt_point=on_grid, frequency_ry=m.frequency_ry[:nd],
        rms=m.rms[:nd], rms_inplane=m.inplane[:nd], rms_outofplane=m.outofplane[:nd], rms_subspace=m.subspace[:nd],
        degenerate_group=m.groups[:nd], cell_integral=m.cell_integral[:nd],
        eigenvector=m.eigenvector[:nd].reshape(nd, -1, nat, 3), structure=ref,
        amplitude=wf.analysis["amplitude"], amplitude_bohr=wf.analysis["amplitude_bohr"], tol_cm1=tol_cm1,
        workflow=str(wf.path), path_name=path, interpolation=how)
    if m.odd_peak is not None:
        b.update({"modes/time_odd_peak": m.odd_peak[:nd], "modes/time_odd_rms_inplane": m.odd_inplane[:nd],
                  "modes/time_odd_rms_outofplane": m.odd_outofplane[:nd]})
        b["attrs"].update(time_odd_empty_bands=wf.timeodd["empty_bands"], time_odd_closure=wf.timeodd["closure"],
                          time_odd_interpolation="Fourier-interpolated from the grid, no long-range separation")
    return b


def _write_bz_maps(path: Path, bz_q, bz_ij, m: _Modes, nd: int, cell_ang, amplitude: str):
    """Branches tracked over the BZ sampling (the points of ``m`` after the first ``nd``) and
    bz_maps.h5; returns (branch, seam), both None without a sampling."""
    if not len(bz_q):
        return None, None
    from ..results import bzmapfile
    branch, overlap, seam = bz_branches(bz_q, bz_ij, m.eigenvector[nd:], m.groups[nd:], cell_ang)
    bzmapfile.write(path, bz_q, m.inplane[nd:], m.outofplane[nd:], km.ry_to_mev(m.frequency_ry[nd:]), amplitude,
                    branch, overlap, seam)
    return branch, seam


def _figures(b: dict, outdir: Path, formats, bz_q, m: _Modes, nd: int, cell_bohr, bz_branch, bz_seam) -> list[Path]:
    """The band figures and, with a BZ sampling, the BZ maps; [] without ``formats``."""
    if not formats:
        return []
    from ..plot.bands import save_figures
    figs = save_figures(b, outdir, formats=formats)
    if len(bz_q):
        from ..plot.bzmap import save_bz_maps
        figs += save_bz_maps(bz_q, m.inplane[nd:], m.outofplane[nd:], km.ry_to_mev(m.frequency_ry[nd:]), cell_bohr,
                             outdir, formats=formats, branch=bz_branch, seam=bz_seam)
    return figs
