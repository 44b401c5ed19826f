#!/usr/bin/env python3
"""Interpolation error against direct DFPT as the k-sampling grows.

    python benchmarks/bench_interpolation_k.py [--kgrids 2,4,6] [--grids 3,4,6] [--out DIR]
                                               [--table docs/_generated/interp_k.md]

For each k-grid N_k × N_k × 1, the tiny workflow (20 Ry, c = 10 Å) with that k-grid runs ph.x
(all nine patterns, δψ contracted and discarded: ``--discard-dwf``) at

- the irreducible q-points of every q-grid of ``--grids`` (3×3: Γ, K, (1/3,0); 4×4: Γ, (1/4,0),
  M, (1/4,1/4); 6×6: seven), and
- the check points off the grids: the middle of Γ–M (1/4,0,0; on the 4×4 grid, so a check for
  3×3 and 6×6 only), ⅓ΓK (1/9,1/9,0), ⅔ΓK (2/9,2/9,0) and near Γ (0.05,0,0), and two nearer
  Γ: (0.04,0.04,0) along Γ–K and (0.025,0,0);
- the two calibration points of the long-range part, (0.1,0,0) and (1/6,0,0) (on the 6×6 grid),
  which are then not checks.

Then ``bench_interpolation.py`` interpolates F_{κα}(q) from each q-grid and prints, per check
point, the error of δn and δm (per displacement, % of the largest value at that q) and of the
mode RMS values against the direct DFPT run at that q, without and with the long-range part
separated (``--long-range`` of bench_interpolation.py, fitted to the two calibration runs); and the
locality of the response to one displaced atom (column amplitude beyond 10 Å relative to its
peak) on the largest grid. The
runs are resumable (finished ph.x steps are skipped), so the command can be stopped and
restarted, and a larger k-grid added later. Cost on 2 cores: about 100 s per q-point at 2×2 k,
roughly ∝ N_k² beyond.
"""
from __future__ import annotations

import argparse
import io
import re
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
TINY = ROOT / "workflows" / "wse2-tiny.toml"
# worst-interpolated first, so a run stopped early (a large k-grid) still has them
CHECKS = {"near Γ": (0.05, 0.0, 0.0), "⅓ΓK": (1 / 9, 1 / 9, 0.0), "⅔ΓK": (2 / 9, 2 / 9, 0.0),
          "mid Γ–M": (0.25, 0.0, 0.0), "near Γ–K": (0.04, 0.04, 0.0), "nearer Γ": (0.025, 0.0, 0.0)}
# the long-range part's two direct runs: small q of different length on one line (their stars give
# every direction); (1/6, 0) is on the 6×6 grid, (0.1, 0) is not
CALIBRATION = ((0.1, 0.0, 0.0), (1 / 6, 0.0, 0.0))


def workflow(out: Path, nk: int) -> Path:
    text = TINY.read_text().replace('"../structures/', f'"{ROOT}/structures/')
    text = text.replace('= "pseudo/', f'= "{ROOT}/workflows/pseudo/')
    text = re.sub(r"\[dispersion\].*?(?=\[parallel\])", "", text, flags=re.S)
    text = re.sub(r"\[interpolation\][^\n]*\n(?:[^\[\n][^\n]*\n)*", "", text)
    text = re.sub(r"kgrid = \[2, 2, 1\]", f"kgrid = [{nk}, {nk}, 1]", text)
    text = re.sub(r'name = "wse2-tiny"', f'name = "wse2-tiny-k{nk}"', text)
    path = out / f"wse2-tiny-k{nk}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def qpoints(wf, grids):
    from dfptmag.analysis import grid as gi
    from dfptmag.kernel import bandpath
    from dfptmag.kernel import symmetry as ks
    from dfptmag.workflow import config, inputs
    atoms = inputs.build_atoms(wf)
    ops = gi.crystal_operations(np.array(atoms.cell), atoms.get_positions(), atoms.get_chemical_symbols())
    known = bandpath.special_points(atoms, {})
    out = {}

    def add(N):
        irr, _, _ = ks.irreducible_grid(ops, (N, N, 1))
        for q in irr:
            out.setdefault(bandpath.point_label(q, known), q)
    # the first grid and the check points first: a run stopped early still gives that grid's rows
    add(grids[0])
    for q in list(CHECKS.values()) + list(CALIBRATION):
        out.setdefault(bandpath.point_label(np.array(q), known), np.array(q))
    for N in grids[1:]:
        add(N)
    return [config.QPoint(lab, np.asarray(q, dtype=float)) for lab, q in out.items()]


def slope_profile(res: dict) -> list:
    """(label, direction, |q| in 1/bohr, c) along Γ–M and Γ–K, c = |Re δm of the W displacements| / |q|
    in 1e-3 μB. Time reversal (F₋q = −conj F_q for δm) makes Re δm odd in q, and it vanishes at Γ:
    analytic at Γ, Re δm = A·q + O(q³), so c(q) = c₀ + O(q²) is flat at small q; a 2D long-range
    part (odd, non-analytic: |q| q) gives a cusp c₀ − b|q|."""
    import bench_interpolation as bi
    out = []
    for lab, r in res.items():
        q = np.asarray(r["q_crystal"], dtype=float)
        B = 2 * np.pi * np.linalg.inv(r["cell_bohr"]).T
        nq = float(np.linalg.norm(q @ B))
        if nq < 1e-9:
            continue
        d = "Γ–M" if abs(q[1]) < 1e-6 else ("Γ–K" if abs(q[0] - q[1]) < 1e-6 else None)
        if d is None:
            continue
        F = bi.direct_cell_integrals(r)                      # (nat, 3, 4)
        out.append((lab, d, nq, 1e3 * float(np.linalg.norm(F[0, :, 1:].real)) / nq))
    return sorted(out, key=lambda t: t[2])


def near_gamma_ratios(res: dict, grids: dict) -> list:
    """Interpolated / direct W magnetization at the near-Γ check point, projected on the direct one,
    per grid (N -> GridResponse)."""
    import bench_interpolation as bi
    r = next((r for r in res.values() if np.allclose(r["q_crystal"], CHECKS["near Γ"], atol=1e-6)), None)
    if r is None:
        return []
    Fd = bi.direct_cell_integrals(r)[0, :, 1:]
    out = []
    for N, g in grids.items():
        F = g.supercell.evaluate(np.asarray(r["q_crystal"], dtype=float))[0, :, 1:]
        out.append((N, float(np.vdot(Fd, F).real / np.vdot(Fd, Fd).real)))
    return out


def plot_cusp(res: dict, grids: dict, lr_grids: dict, path: Path, label: str = "") -> None:
    """c(q) = |Re δm(u_W)| / |q| along Γ–M and Γ–K: direct DFPT (points, from :func:`slope_profile`),
    the plain interpolation from each grid and, with the long-range part separated (``lr_grids``,
    N -> GridResponse; may be empty), from the same grids (lines)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import bench_interpolation as bi
    r0 = next(iter(res.values()))
    B = 2 * np.pi * np.linalg.inv(r0["cell_bohr"]).T
    calib = {bi.find(res, q) for q in CALIBRATION}
    direct = slope_profile(res)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, (name, end) in zip(axes, (("Γ–M", (0.5, 0, 0)), ("Γ–K", (1 / 3, 1 / 3, 0)))):
        t = np.linspace(0.02, 1.0, 120)
        qs = t[:, None] * np.asarray(end)[None, :]
        nq = np.linalg.norm(qs @ B, axis=1)

        def c_of(F):
            return 1e3 * np.linalg.norm(F[:, 0, :, 1:].real, axis=(1, 2)) / nq   # noqa: B023 (used in this iteration)
        for (N, g), col in zip(sorted(grids.items()), ("C0", "C1", "C2")):
            ax.plot(nq, c_of(g.evaluate(qs)), "--", color=col, lw=1, label=f"{N}×{N} grid")
            if N in lr_grids:
                ax.plot(nq, c_of(lr_grids[N].evaluate(qs)), "-", color=col, lw=1.4,
                        label=f"{N}×{N}, long range separated")
        for lab, d, k, c in direct:
            if d == name:
                ax.plot([k], [c], "s" if lab in calib else "o", color="k", ms=5 if lab in calib else 4,
                        mfc="none" if lab in calib else "k")
        ax.set_xlabel(f"|q| along {name} (1/bohr)")
        ax.set_title(f"W displacement, |Re δm| / |q|{label}", fontsize=10)
    axes[0].plot([], [], "ok", ms=4, label="direct DFPT")
    axes[0].plot([], [], "sk", mfc="none", label="direct, calibration")
    axes[0].set_ylabel("c(q) (1e-3 μB per bohr·bohr⁻¹)")
    axes[0].legend(fontsize=7, ncol=1)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kgrids", default="2,4,6")
    ap.add_argument("--grids", default="3,4,6")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-interp-k"))
    ap.add_argument("--table", type=Path, default=None, help="write the Markdown table here")
    ap.add_argument("--no-run", action="store_true", help="analyse what is there, run no QE")
    a = ap.parse_args(argv)
    import bench_interpolation as bi

    from dfptmag.jobs import storage
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    grids = [int(v) for v in a.grids.split(",")]
    rows, slopes, ratio_rows = [], [], []
    for nk in [int(v) for v in a.kgrids.split(",")]:
        wf = config.load(workflow(a.out, nk))
        run_dir = a.out / f"k{nk}"
        qs = qpoints(wf, grids)
        if not a.no_run:
            r = Runner(wf, run_dir, progress=False)
            storage.attach(r, {"discard_dwf": True, "keep_scratch": False})
            t0 = time.time()
            _, h = r.prepare()
            for q in qs:
                t1 = time.time()
                r.qpoint(q, h, None)
                print(f"k {nk}×{nk}: q {q.label} done in {time.time() - t1:.0f} s", flush=True)
            print(f"k {nk}×{nk}: {len(qs)} q-points in {time.time() - t0:.0f} s", flush=True)
        buf = io.StringIO()
        calib = ["{},{},{}".format(*q) for q in CALIBRATION]
        with redirect_stdout(buf):
            bi.main([str(run_dir), "--grids", a.grids, "--plot", str(a.out / f"locality_k{nk}.png"),
                     "--label", f", {nk}×{nk} k", "--long-range", *calib])
        text = buf.getvalue()
        print(f"=== k-grid {nk}×{nk}\n{text}", flush=True)
        rows += [(nk, *r) for r in bi.LAST_ROWS]
        loc = bi.LAST_LOCALITY
        if loc and loc['N'] >= 6:        # beyond 10 Å exists only on a 6×6 supercell or larger
            print(f"k {nk}×{nk}: locality on the {loc['N']}×{loc['N']} supercell: column amplitude beyond "
                  f"10 Å / peak: δn {loc['n']:.1e}, |δm| {loc['m']:.1e}")
        slopes.append((nk, slope_profile(bi.LAST_RESULTS)))
        plot_cusp(bi.LAST_RESULTS, bi.LAST_GRIDS, bi.LAST_LR_GRIDS, a.out / f"cusp_k{nk}.png", f", {nk}×{nk} k")
        ratio_rows.append((nk, near_gamma_ratios(bi.LAST_RESULTS, bi.LAST_GRIDS)))
        if 3 in bi.LAST_GRIDS:      # one yardstick every k-grid has: the 3×3 supercell, beyond 4 Å
            loc3 = bi.locality(bi.LAST_GRIDS[3], beyond_angstrom=4.0)
            print(f"k {nk}×{nk}: locality on the 3×3 supercell: column amplitude beyond 4 Å / peak: "
                  f"δn {loc3['n']:.1e}, |δm| {loc3['m']:.1e}")
    if slopes:
        print("\nNear-Γ slope of the W magnetization, c(q) = |Re δm(u_W)| / |q| in 1e-3 μB (cell integral "
              "per bohr of W displacement, μB/bohr, over |q| in 1/bohr; direct DFPT): flat at small q if the "
              "response is analytic at Γ, a cusp c₀ − b|q| if it has a 2D long-range part")
        qs = sorted({(lab, d, round(nq, 3)) for _, prof in slopes for lab, d, nq, _ in prof}, key=lambda t: t[2])
        print("| q | direction | \\|q\\| (1/bohr) | " + " | ".join(f"k {nk}×{nk}" for nk, _ in slopes) + " |")
        print("|---|---|---|" + "---|" * len(slopes))
        for lab, d, nq in qs:
            cells = [next((f"{c:.0f}" for la, *_, c in prof if la == lab), "") for _, prof in slopes]
            print(f"| {lab} | {d} | {nq:.3f} | " + " | ".join(cells) + " |")
        from scipy.optimize import curve_fit
        for nk, prof in slopes:
            if len(prof) < 4:
                continue
            q = np.array([t[2] for t in prof])
            c = np.array([t[3] for t in prof])
            cusp = lambda x, c0, r: c0 / (1 + r * x)          # noqa: E731  2D-screened: a cusp at Γ
            flat = lambda x, c0, b: c0 - b * x * x             # noqa: E731  analytic: flat at Γ
            pc, _ = curve_fit(cusp, q, c, p0=[c[0], 1.0])
            pf, _ = curve_fit(flat, q, c, p0=[c[0], 0.0])
            print(f"k {nk}×{nk}: c₀/(1 + r|q|): c₀ = {pc[0]:.0f}, r = {pc[1]:.2f} bohr, worst point "
                  f"{100 * np.abs(cusp(q, *pc) / c - 1).max():.1f} %; c₀ − b q²: c₀ = {pf[0]:.0f}, worst point "
                  f"{100 * np.abs(flat(q, *pf) / c - 1).max():.1f} % ({len(q)} points)")
        for nk, ratios in ratio_rows:
            print(f"k {nk}×{nk}: interpolated / direct W response near Γ (0.05,0), projected: "
                  + ", ".join(f"{N}×{N} {r:.3f}" for N, r in ratios))
    table = ["| k-grid | q-grid | check point | δn error | δm error | RMS in-plane | RMS out-of-plane | "
             "δm error, long range separated |",
             "|---|---|---|---|---|---|---|---|"]
    names = {np.round(q, 4).tobytes(): k for k, q in CHECKS.items()}
    # the docs' view beside it: one row per check point and q-grid, one column per k-grid, "δm (δn)"
    kgs = sorted({nk for nk, *_ in rows})
    cell, cell_lr = {}, {}
    for nk, N, lab, e, _el, q, elr in rows:
        name = names.get(np.round(np.asarray(q), 4).tobytes())
        if name is None:
            continue
        lr = f"{elr['m']:.1f} %" if elr is not None else "–"
        table.append(f"| {nk}×{nk} | {N}×{N} | {name} ({lab}) | {e['n']:.1f} % | {e['m']:.1f} % | "
                     f"{e['rms_in']:.1f} % | {e['rms_out']:.1f} % | {lr} |")
        cell[(name, N, nk)] = f"{e['m']:.1f} ({e['n']:.1f})"
        if elr is not None:
            cell_lr[(name, N, nk)] = f"{e['m']:.1f} → {elr['m']:.1f}"
    def pivot_of(cells):
        out = ["| check point | q-grid | " + " | ".join(f"k {nk}×{nk}" for nk in kgs) + " |",
               "|---|---|" + "---|" * len(kgs)]
        for name in CHECKS:
            for N in grids:
                if any((name, N, nk) in cells for nk in kgs):
                    out.append(f"| {name} | {N}×{N} | " + " | ".join(cells.get((name, N, nk), "") for nk in kgs) + " |")
        return out
    pivot, pivot_lr = pivot_of(cell), pivot_of(cell_lr)
    print("\nδm error, % of the largest |δm| at that q, per displacement (δn error in brackets):")
    print("\n".join(pivot) + "\n")
    print("δm error without → with the long-range part separated (fitted at "
          + " and ".join(str(tuple(round(v, 4) for v in q)) for q in CALIBRATION) + "):")
    print("\n".join(pivot_lr) + "\n")
    print("\n".join(table))
    table += ["", *pivot, "", *pivot_lr]
    if a.table:
        a.table.parent.mkdir(parents=True, exist_ok=True)
        a.table.write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
