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
from ..kernel import branches as kb
from ..kernel import modes as km
from ..kernel import observables as obs
from ..kernel import symmetry as ks
from ..kernel.modes import amplitude_text

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


def bz_sampling(cell_bohr, n: int = 40, with_index: bool = False):
    """Crystal coordinates of a Cartesian n×n-ish sampling of the first Brillouin zone (Wigner–Seitz
    cell of the in-plane reciprocal lattice), boundary included; with ``with_index`` also the
    integer (i, j) of every point on the square grid (for branch tracking between neighbours)."""
    B = 2 * np.pi * np.linalg.inv(np.asarray(cell_bohr, float)).T[:2, :2]      # rows b1, b2 (1/bohr)
    gmax = np.abs(B).max() * 0.75
    xs = np.linspace(-gmax, gmax, n)
    ij = np.array([(i, j) for i in range(n) for j in range(n)])
    pts = xs[ij]
    G = np.array([i * B[0] + j * B[1] for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)])
    inside = np.all(pts @ G.T <= 0.5 * np.sum(G * G, axis=1)[None, :] * (1 + 1e-9), axis=1)
    pts = pts[inside]
    qc = pts @ np.linalg.inv(B)
    q = np.column_stack([qc, np.zeros(len(qc))])
    return (q, ij[inside]) if with_index else q


BZ_START_POINTS = 8     # the BZ labelling starts from the 8 sampled q nearest Γ, by ascending ω there


def bz_branches(q_crystal, ij, eig, groups, cell):
    """Branch tracking over the BZ sampling (kernel.branches.track_tree): branches are numbered by
    ascending ω on the ring of the BZ_START_POINTS sampled q nearest Γ (Γ itself excluded: its
    acoustic modes have ω = 0), and followed outward by eigenvector overlap. Returns (branch,
    overlap) per point and mode, and the seam points (kernel.branches.seams). ``cell``: rows a_i,
    any length unit (only the ordering by |q| is used)."""
    B = np.linalg.inv(np.asarray(cell, float)).T[:2, :2]
    r = np.linalg.norm(np.asarray(q_crystal)[:, :2] @ B, axis=1)
    order = [i for i in np.argsort(r) if r[i] > 1e-9 * r.max()]
    nb = kb.grid_neighbours(ij)
    branch, score, _ = kb.track_tree(eig, groups, nb, order[:BZ_START_POINTS])
    return branch, score, kb.seams(eig, groups, nb, branch)


def _write_bz(path: Path, q, rms_in, rms_out, freq_mev, attrs, branch=None, overlap=None, seam=None) -> Path:
    """The BZ-map data (modes by ascending frequency at each q; ``branch`` maps them to tracked
    branches), atomically."""
    import h5py

    from ..atomic import atomic_path
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h:
            h.attrs["object"] = ("interpolated RMS magnetization over the 2D Brillouin zone, modes by ascending "
                                 "frequency; branch: the tracked branch of each mode")
            h.attrs["amplitude"] = attrs["amplitude"]
            h.create_dataset("q_crystal", data=q).attrs["units"] = "1"
            h.create_dataset("rms_inplane", data=rms_in).attrs["units"] = "muB"
            h.create_dataset("rms_outofplane", data=rms_out).attrs["units"] = "muB"
            h.create_dataset("frequency_meV", data=freq_mev).attrs["units"] = "meV"
            if branch is not None:
                d = h.create_dataset("branch", data=branch)
                d.attrs["units"] = "1"
                d.attrs["description"] = (f"branch index: ascending ω at the {BZ_START_POINTS} sampled q nearest "
                                          "Γ, then by eigenvector overlap along a breadth-first forest of grid "
                                          "neighbours")
                h.create_dataset("branch_overlap", data=overlap).attrs["units"] = "1"
                h.create_dataset("branch_seam", data=seam).attrs["description"] = (
                    "True where, towards a grid neighbour, some branch's eigenvector overlap is below 0.5: "
                    "branches exchange there (no labelling of the 2D zone is continuous everywhere)")
    return path


def ph_wall_seconds(qdir: Path) -> float:
    """Summed ph.x wall time of a q-run (the last 'PHONON ... WALL' line of each output)."""
    total = 0.0
    for out in Path(qdir).glob("ph.*.out"):
        last = None
        for line in out.read_text(errors="replace").splitlines():
            if "PHONON" in line and "WALL" in line:
                last = line
        if last:
            tok = last.split("CPU")[-1].replace("WALL", "").strip()
            total += _qe_seconds(tok)
    return total


def _qe_seconds(tok: str) -> float:
    """QE's clock strings: '12.15s', '1m23.45s', '1h 2m'."""
    tok = tok.replace(" ", "")
    sec = 0.0
    for unit, mult in (("h", 3600), ("m", 60), ("s", 1)):
        if unit in tok:
            head, tok = tok.split(unit, 1)
            try:
                sec += float(head) * mult
            except ValueError:
                pass
    return sec


def run_interpolated_bands(workflow, path: str | None = None, npoints: int | None = None,
                           workers: int | None = None, run_dir=None, output=None, progress: bool = True,
                           figures=("png", "pdf"), tol_cm1: float = km.DEGENERACY_TOL_CM1,
                           nproc: int | None = None, bz_points: int = 40, discard_dwf: bool | None = None,
                           keep_scratch: bool | None = None) -> InterpolatedBandsRun:
    from ..analysis.bands import dispersion_modes, track_branches
    from ..analysis.qrun import AnalysisOptions, analyze_qrun
    from ..io.qe_dyn import read_dyn_blocks
    from ..results.bandsfile import write
    from ..workflow import config, inputs
    from ..workflow.runner import Runner

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
    qgrid = tuple(wf.interpolation["qgrid"])
    N = qgrid[0]
    path = path or wf.bands["path"]
    workers = workers or wf.bands["workers"]
    atoms = inputs.build_atoms(wf)
    cell_ang = np.array(atoms.cell)
    ops = gi.crystal_operations(cell_ang, atoms.get_positions(), atoms.get_chemical_symbols())
    irr, _, owner = ks.irreducible_grid(ops, qgrid)
    known = bandpath.special_points(atoms, wf.bands.get("extra_points"))
    qpts = [config.QPoint(bandpath.point_label(q, known), q) for q in irr]
    calib = []                                   # the long-range part's two direct runs
    if wf.interpolation.get("long_range"):
        B2 = 2 * np.pi * np.linalg.inv(cell_ang).T[:2, :2]
        lens = [float(np.linalg.norm(np.asarray(q[:2]) @ B2)) for q in wf.interpolation["long_range"]]
        if abs(lens[0] - lens[1]) < 1e-3 * max(lens):
            raise InputFileError(wf.path, f"[interpolation] long_range = {wf.interpolation['long_range']}: the "
                                          "two q-points must differ in length (|q| "
                                          f"{lens[0] * BOHR_RADIUS_ANGS:.4f} and {lens[1] * BOHR_RADIUS_ANGS:.4f} 1/bohr)")
        for q in wf.interpolation["long_range"]:
            qp = config.QPoint(bandpath.point_label(np.asarray(q, float), known), np.asarray(q, float))
            calib.append(qp.label)
            if all(p.label != qp.label for p in qpts):
                qpts.append(qp)
    n_grid = len(irr)
    bp = bandpath.band_path(atoms, path, npoints or wf.bands["npoints"], wf.bands.get("extra_points"))
    dense_bp, _ = bandpath.refine(bp, atoms, wf.dispersion["npoints"])
    run_dir = Path(run_dir or Path("runs") / wf.name)
    output = Path(output or run_dir / "bands.h5")
    bz_q, bz_ij = bz_sampling(cell_ang, bz_points, with_index=True) if bz_points else (np.zeros((0, 3)), None)
    all_q = np.vstack([dense_bp.q_crystal, bz_q])

    runner = Runner(wf, run_dir, progress=progress)
    from . import storage
    storage.attach(runner, storage.settings(wf, None, discard_dwf, keep_scratch))
    res = runner.run_parallel(qpts, None, workers, all_q)
    missing = [q.label for q in qpts if q.label not in res.qdirs]
    if missing:
        raise DfptmagError(f"DFPT failed at irreducible q {missing}: " +
                           "; ".join(f"{k}: {v.splitlines()[0] if v else ''}" for k, v in res.failures.items()))
    if res.dispersion is None:
        raise DfptmagError(f"no interpolated dispersion: {res.failures.get('dispersion', 'not run')}")
    opts = AnalysisOptions(realspace=True, amplitude=wf.analysis["amplitude"],
                           amplitude_bohr=wf.analysis["amplitude_bohr"], degeneracy_tol_cm1=tol_cm1)
    t0 = time.perf_counter()
    results = [analyze_qrun(res.qdirs[q.label], opts) for q in qpts]
    ref = {k: results[0][k] for k in ("masses_amu", "cell_bohr", "positions_bohr", "symbols")}
    masses = ref["masses_amu"]
    grid = gi.from_results(results[:n_grid], N)
    if calib:
        by_label = {q.label: r for q, r in zip(qpts, results)}
        grid.long_range = gi.long_range_from([by_label[c] for c in calib])
        log.info("long-range part fitted at %s: screening lengths %s bohr", ", ".join(calib),
                 np.unique(np.round(grid.long_range.r[grid.long_range.r > 0], 2)).tolist())
    del results
    grid_file = gi.save(output.with_name("grid.h5"), grid)
    log.info("grid response built in %.1f s", time.perf_counter() - t0)

    _, dyn = read_dyn_blocks(res.dispersion, len(atoms))
    if len(dyn) != len(all_q):
        raise DfptmagError(f"{res.dispersion}: {len(dyn)} q-points, expected {len(all_q)}")
    w, e, groups = dispersion_modes(dyn, masses, tol_cm1)
    U = np.array([km.displacements(e[i], masses, w[i], wf.analysis["amplitude"], wf.analysis["amplitude_bohr"])
                  for i in range(len(w))]).reshape(len(w), -1, len(atoms), 3)
    F = grid.evaluate(all_q)                                           # (nq, nat, 3, 4)
    ci = np.einsum("qnka,qkac->qnc", U, F)
    rms, inp, outp, sub = [], [], [], []
    for i in range(len(all_q)):
        o = obs.mode_observables(ci[i], groups[i])
        rms.append(o["rms"]), inp.append(o["inplane"]), outp.append(o["outofplane"]), sub.append(o["subspace"])
    rms, inp, outp, sub = map(np.array, (rms, inp, outp, sub))
    nd = dense_bp.nq
    on_grid = np.array([ks.equivalent(q * N, np.round(q * N)) is not None for q in dense_bp.q_crystal])
    b = {"path/q_crystal": dense_bp.q_crystal, "path/distance": dense_bp.distance,
         "path/labels": [lab for _, lab in dense_bp.labels],
         "path/label_index": np.array([i for i, _ in dense_bp.labels]),
         "path/breaks": np.array(dense_bp.breaks, dtype=int),
         "path/computed": np.ones(nd, bool), "path/dfpt_point": on_grid,
         "modes/frequency_meV": km.ry_to_mev(w[:nd]), "modes/frequency_THz": km.ry_to_thz(w[:nd]),
         "modes/frequency_cm1": km.ry_to_cm1(w[:nd]), "modes/frequency_phx_cm1": np.full(w[:nd].shape, np.nan),
         "modes/rms": rms[:nd], "modes/rms_inplane": inp[:nd], "modes/rms_outofplane": outp[:nd],
         "modes/rms_subspace": sub[:nd], "modes/degenerate_group": groups[:nd],
         "modes/cell_integral": ci[:nd], "modes/eigenvector": e[:nd].reshape(nd, -1, len(atoms), 3),
         "structure/cell_bohr": ref["cell_bohr"], "structure/positions_bohr": ref["positions_bohr"],
         "structure/symbols": list(ref["symbols"]), "structure/masses_amu": masses}
    b["attrs"] = {"amplitude": amplitude_text(wf.analysis["amplitude"], wf.analysis["amplitude_bohr"]),
                  "degenerate_tolerance_cm1": tol_cm1, "workflow": str(wf.path), "path": path,
                  "interpolation": (f"F(q) from DFPT fields at {len(qpts)} irreducible q of the "
                                    f"{N}x{N} grid, unfolded by symmetry and time reversal, one-displaced-"
                                    "atom response on the supercell (Wigner-Seitz), Fourier transformed; "
                                    "frequencies and eigenvectors from matdyn.x"),
                  "interpolation_qgrid": list(qgrid), "dfpt_qpoints": len(qpts),
                  "interpolation_long_range": (
                      "screened linear term L.q exp(-sigma^2 q^2)/(1 + r|q|) of the magnetization separated "
                      f"before the interpolation, fitted to direct DFPT at {', '.join(calib)}; r per atom, "
                      "displacement and component in grid.h5 long_range/r" if calib else "none"),
                  "dispersion_asr": wf.dispersion["asr"], "dispersion_loto_2d": bool(wf.dispersion["loto_2d"])}
    track_branches(b, None)
    write(output, b)
    bz_branch = bz_overlap = bz_seam = None
    if len(bz_q):
        bz_branch, bz_overlap, bz_seam = bz_branches(bz_q, bz_ij, e[nd:], groups[nd:], cell_ang)
        _write_bz(output.with_name("bz_maps.h5"), bz_q, inp[nd:], outp[nd:], km.ry_to_mev(w[nd:]), b["attrs"],
                  bz_branch, bz_overlap, bz_seam)
    figs = []
    if figures:
        from ..plot.bands import save_figures
        figs = save_figures(b, output.parent, formats=figures)
        if len(bz_q):
            from ..plot.bzmap import save_bz_maps
            figs += save_bz_maps(bz_q, inp[nd:], outp[nd:], km.ry_to_mev(w[nd:]), ref["cell_bohr"],
                                 output.parent, formats=figures, branch=bz_branch,
                                 seam=bz_seam)
    wall = sum(ph_wall_seconds(res.qdirs[q.label]) for q in qpts)
    return InterpolatedBandsRun(output, grid_file, figs, [q.label for q in qpts], qgrid, res.failures, wall,
                                len(runner.steps.ran), len(runner.steps.skipped))
