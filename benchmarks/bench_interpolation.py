"""Interpolation of F_{κα}(q) from a q grid against direct DFPT at q-points off the grid.

    python benchmarks/bench_interpolation.py RUN_DIR [--grids 3,4,6] [--plot locality.png]

RUN_DIR is a run directory of the tiny workflow holding q_<label>/ directories with all nine
patterns (``dfptmag run`` or the Runner) at the irreducible q-points of each grid
(3×3: Γ, K, (1/3,0); 4×4: Γ, (1/4,0), M, (1/4,1/4); 6×6: Γ, (1/6,0), (1/3,0), M, (1/6,1/6),
(1/3,1/6), K) and at the check points. Every computed q that is not on a grid is a check point
for that grid. For each grid and check point it prints, as % of the largest value at that q:
- per displacement (cell integrals of the nine Cartesian displacements): max error of δn and of
  |δm| (vector over x, y, z), for the supercell route and for the plain lattice Fourier series of
  the cell integrals;
- per mode (the direct run's own modes, zero-point amplitude): max error of the charge,
  in-plane and out-of-plane RMS.

With ``--long-range Q1 Q2`` (crystal coordinates, e.g. ``0.1,0,0 0.1667,0,0``; two computed q of
different length near Γ) the screened linear term fitted to those two direct runs
(``analysis.grid.long_range_from``) is separated before the interpolation and added back; the
errors with it are printed beside the plain ones, and the two runs are not used as checks.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfptmag.analysis import grid as gi                      # noqa: E402
from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun   # noqa: E402
from dfptmag.kernel import interpolation as ki              # noqa: E402
from dfptmag.kernel import symmetry as ks                   # noqa: E402


LAST_ROWS: list = []         # (N, label, errors supercell, errors lattice series, q, errors with the
#                              long-range part or None) of the last main()
LAST_LOCALITY: dict = {}     # the largest grid's column amplitude beyond 10 Å / peak (δn, |δm|)
LAST_GRIDS: dict = {}        # N -> GridResponse of the last call, for callers that compare grids
LAST_RESULTS: dict = {}      # label -> analysed direct run of the last call
LAST_LR_GRIDS: dict = {}     # N -> GridResponse with the long-range part separated (--long-range)


def find(res: dict, q) -> str | None:
    """The label of the computed q-point at crystal q, or None."""
    return next((lab for lab, r in res.items() if np.allclose(r["q_crystal"], q, atol=1e-4)), None)


def load_all(run_dir: Path) -> dict:
    out = {}
    for d in sorted(run_dir.glob("q_*")):
        if not (d / "ph.final.done").is_file():
            continue
        r = analyze_qrun(d, AnalysisOptions())
        if "mode_cell_integral" in r:
            out[d.name[2:]] = r
    return out


def direct_cell_integrals(r) -> np.ndarray:
    return gi.cartesian_fields(r, "pattern_cell_integral")      # (nat, 3, 4)


def errors(F, Fd, U) -> dict:
    """Percent errors at one q: displacements and modes."""
    e = {}
    e["n"] = 100 * np.abs(F[..., 0] - Fd[..., 0]).max() / np.abs(Fd[..., 0]).max()
    dm = np.linalg.norm(F[..., 1:] - Fd[..., 1:], axis=-1)
    e["m"] = 100 * dm.max() / np.linalg.norm(Fd[..., 1:], axis=-1).max()
    mi, md = gi.mode_values(F, U), gi.mode_values(Fd, U)
    ok = np.all(np.isfinite(U.reshape(len(U), -1)), axis=1)
    for key, f in (("rms_n", lambda c: np.abs(c[:, 0])), ("rms_in", lambda c: np.linalg.norm(c[:, 1:3], axis=1)),
                   ("rms_out", lambda c: np.abs(c[:, 3]))):
        a, b = f(mi[ok]) / np.sqrt(2), f(md[ok]) / np.sqrt(2)
        e[key] = 100 * np.abs(a - b).max() / b.max()
    return e


def grid_sources(res: dict, N: int, ops) -> list | None:
    irr, pts, owner = ks.irreducible_grid(ops, (N, N, 1))
    chosen = []
    for q in irr:
        hit = None
        for lab, r in res.items():
            if ks.find_operation(ops, r["q_crystal"], q) is not None:
                hit = lab
                break
        if hit is None:
            return None
        chosen.append(hit)
    return list(dict.fromkeys(chosen))


def on_grid(q, N) -> bool:
    return np.abs(np.asarray(q[:2]) * N - np.round(np.asarray(q[:2]) * N)).max() < 1e-6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--grids", default="3,4,6")
    ap.add_argument("--plot", type=Path, default=None, help="locality figure (largest grid)")
    ap.add_argument("--label", default="", help="appended to the figure's titles, e.g. ', 4×4 k'")
    ap.add_argument("--long-range", nargs=2, metavar="Q", default=None,
                    help="two computed q (crystal, 'x,y,z') that fix the separated long-range part")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = load_all(args.run_dir)
    LAST_RESULTS.clear()
    LAST_RESULTS.update(res)
    print(f"analysed {len(res)} q-points in {time.perf_counter() - t0:.1f} s: {', '.join(res)}")
    r0 = next(iter(res.values()))
    ops = gi.crystal_operations(r0["cell_bohr"], r0["positions_bohr"], r0["symbols"])
    rows, biggest = [], None
    LAST_GRIDS.clear()
    LAST_LR_GRIDS.clear()
    lr, calib = None, []
    if args.long_range:
        calib = [find(res, [float(v) for v in q.split(",")]) for q in args.long_range]
        if None in calib:
            print(f"long range: q {args.long_range} not all computed, not separated")
        else:
            lr = gi.long_range_from([res[c] for c in calib], ops)
            sep = lr.r > 0
            print(f"long range fitted at {', '.join(calib)}: separated in {int(sep.sum())} of {sep.size} "
                  f"(atom, direction, component) entries; r = "
                  + ", ".join(f"{r0['symbols'][k]}{k + 1} {np.unique(np.round(lr.r[k][lr.r[k] > 0], 2)).tolist()}"
                              for k in range(lr.r.shape[0])) + " bohr")
    for N in [int(v) for v in args.grids.split(",")]:
        labs = grid_sources(res, N, ops)
        if labs is None:
            print(f"{N}x{N}: irreducible q-points missing, skipped")
            continue
        t1 = time.perf_counter()
        g = gi.from_results([res[lab] for lab in labs], N, ops)
        sc = g.supercell
        lat = g.lattice_series()
        t_build = time.perf_counter() - t1
        biggest = g
        LAST_GRIDS[N] = g
        # on-grid: exact
        qs = ki.grid_points(N)
        dev = np.abs(g.evaluate(qs) - g.cell_integrals_on_grid().reshape((N * N,) + g.columns.shape[2:5])).max()
        print(f"{N}x{N}: DFPT at {len(labs)} irreducible q ({', '.join(labs)}), build {t_build:.2f} s, "
              f"on-grid max deviation {dev:.1e} (max |F| {np.abs(g.cell_integrals_on_grid()).max():.2f})")
        glr = dataclasses.replace(g, long_range=lr, _sc=None) if lr is not None else None
        if glr is not None:
            LAST_LR_GRIDS[N] = glr
        for lab, r in res.items():
            q = r["q_crystal"]
            if on_grid(q, N) or lab in calib:
                continue
            Fd = direct_cell_integrals(r)
            U = r["displacement_bohr"]
            e = errors(sc.evaluate(q), Fd, U)
            el = errors(lat.evaluate(q), Fd, U)
            elr = errors(glr.evaluate(q), Fd, U) if glr is not None else None
            rows.append((N, lab, e, el, q, elr))
            print(f"   {lab:>22s} |q|={np.linalg.norm(q[:2] @ np.linalg.inv(r0['cell_bohr'][:2, :2]).T) * 2 * np.pi:.3f}/bohr  "
                  f"supercell: δn {e['n']:5.2f}%  δm {e['m']:5.1f}%  RMS n {e['rms_n']:5.2f}% in {e['rms_in']:5.1f}% "
                  f"out {e['rms_out']:5.1f}%   | lattice series: δn {el['n']:5.1f}%  δm {el['m']:5.1f}%  "
                  f"RMS in {el['rms_in']:5.1f}% out {el['rms_out']:5.1f}%"
                  + (f"   | with long range: δn {elr['n']:5.2f}%  δm {elr['m']:5.1f}%  RMS in {elr['rms_in']:5.1f}% "
                     f"out {elr['rms_out']:5.1f}%" if elr is not None else ""))
        t2 = time.perf_counter()
        dense = np.random.default_rng(0).random((500, 3)) * [1, 1, 0]
        sc.evaluate(dense)
        print(f"   evaluate at 500 q: {time.perf_counter() - t2:.2f} s "
              f"({sum(len(p) for p in sc.points)} supercell points)")
    LAST_ROWS[:] = rows
    LAST_LOCALITY.clear()
    if biggest is not None:
        LAST_LOCALITY.update(locality(biggest))
    if args.plot and biggest is not None:
        plot_locality(biggest, args.plot, args.label)
    return 0


def locality(g: gi.GridResponse, beyond_angstrom: float = 10.0) -> dict:
    """Largest column amplitude farther than ``beyond_angstrom`` from the displaced atom,
    relative to its peak, over the displaced atoms: how local the one-atom response is."""
    sc = g.supercell
    out = {"N": g.N, "n": 0.0, "m": 0.0}
    for p, v in zip(sc.points, sc.values):
        d = np.linalg.norm(p @ sc.cell2d, axis=1) * 0.529177
        far = d > beyond_angstrom
        if not far.any():
            continue
        amp_n = np.abs(v[:, :, 0]).sum(axis=1)
        amp_m = np.linalg.norm(v[:, :, 1:], axis=2).sum(axis=1)
        out["n"] = max(out["n"], float(amp_n[far].max() / amp_n.max()))
        out["m"] = max(out["m"], float(amp_m[far].max() / amp_m.max()))
    return out


def plot_locality(g: gi.GridResponse, path: Path, label: str = "") -> None:
    """|δñ⁽⁰⁾| per column, summed over α, vs in-plane distance from the displaced atom."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sc = g.supercell
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    names = g.symbols
    for k, (p, _w, v) in enumerate(zip(sc.points, sc.weights, sc.values)):
        if k == 2:
            continue                        # Se2 mirrors Se1
        d = np.linalg.norm(p @ sc.cell2d, axis=1) * 0.529177
        amp_n = np.abs(v[:, :, 0]).sum(axis=1)
        amp_m = np.linalg.norm(v[:, :, 1:], axis=2).sum(axis=1)
        for ax, amp, lab in ((axes[0], amp_n, "δn"), (axes[1], amp_m, "|δm|")):
            ax.semilogy(d, amp / amp.max(), ".", ms=2, alpha=0.5, label=f"{names[k]} displaced")
            ax.set_title(f"{lab}: one displaced atom, {g.N}×{g.N} supercell{label}", fontsize=10)
    for ax in axes:
        ax.set_xlabel("in-plane distance from the displaced atom (Å)")
        ax.set_ylabel("column amplitude / max")
        ax.set_ylim(1e-6, 2)
        ax.legend(markerscale=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
