"""Render the exported XSF (read back with ase.io.read) for docs/howto-exports.md: the tiny run's
K mode 2 at t = 0.25, δm_z in the x–z plane through a row of W atoms, plus the in-plane RMS
profile against z with every atom's z.

    python3 docs/figures/render_xsf_export_slice.py RUN_DIR

RUN_DIR is a finished tiny WSe2 run with q_K/ and q_-K/ (e.g. runs/wse2-tiny, or
$DFPTMAG_TEST_WORKDIR/wse2_tiny after the test suite). Run it from an empty directory: it writes
res.h5, the snapshot's XSF files and xsf_export_centred_slice.png there, and prints the atoms'
z range, the cell height and the grid shape.
"""
import argparse
from pathlib import Path

import numpy as np


def render(d: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.io import read

    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    from dfptmag.jobs.snapshot import run_snapshot
    from dfptmag.results import qfile

    res = {lab: analyze_qrun(d / f"q_{lab}", AnalysisOptions()) for lab in ("K", "-K")}
    f = qfile.write("res.h5", res)
    files = run_snapshot(f, "K", mode=2, cells=(3, 3), t=0.25, formats=("xsf",), outdir=".")
    p = [x for x in files if x.name.endswith("_mz.xsf")][0]
    atoms = read(p)
    data = read(p, read_data=True)
    cell = atoms.cell.array
    # slice through the plane y = const containing W atoms: pick grid row j nearest the first W's fractional y
    fr = atoms.get_scaled_positions(wrap=False)
    w = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "W"][0]
    j = int(round(fr[w, 1] * (data.shape[1] - 1))) % (data.shape[1] - 1)
    sl = data[:, j, :]
    n1, n3 = sl.shape
    u = np.linspace(0, 1, n1)
    v = np.linspace(0, 1, n3)
    U, V = np.meshgrid(u, v, indexing="ij")
    X = U * cell[0, 0] + fr[w, 1] * cell[1, 0]
    Z = V * cell[2, 2]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 5), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    lim = np.abs(sl).max()
    m = ax.pcolormesh(X, Z, sl, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="gouraud")
    near = np.abs(((fr[:, 1] - fr[w, 1] + 0.5) % 1) - 0.5) < 0.2 / 3
    for s, mk, col in (("W", "o", "k"), ("Se", "^", "g")):
        sel = near & (np.array(atoms.get_chemical_symbols()) == s)
        ax.plot(atoms.positions[sel, 0], atoms.positions[sel, 2], mk, color=col, ms=8, mfc="none", label=s)
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("z (Å)")
    ax.set_aspect("equal")
    ax.set_title(f"{p.name}\nread back with ase.io.read; slice y≈{fr[w,1]*np.linalg.norm(cell[1]):.2f} Å (W row)",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.colorbar(m, label="δm_z (μB/Å³)")
    prof = np.sqrt((data[:-1, :-1, :-1] ** 2).mean(axis=(0, 1)))
    zg = np.arange(n3 - 1) / (n3 - 1) * cell[2, 2]
    ax2.plot(prof, zg, "k-")
    for s_, col in (("W", "k"), ("Se", "g")):
        for zz in atoms.positions[np.array(atoms.get_chemical_symbols()) == s_, 2]:
            ax2.axhline(zz, color=col, lw=0.6, ls="--")
    ax2.set_xlabel("in-plane RMS δm_z (μB/Å³)")
    ax2.set_title("all 27 atoms' z (dashed: W black, Se green)", fontsize=8)
    fig.savefig("xsf_export_centred_slice.png", dpi=110, bbox_inches="tight")
    print(atoms.positions[:, 2].min(), atoms.positions[:, 2].max(), cell[2, 2], data.shape)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path,
                    help="finished tiny WSe2 run directory (with q_K/ and q_-K/), e.g. runs/wse2-tiny")
    a = ap.parse_args(argv)
    for lab in ("K", "-K"):
        if not (a.run_dir / f"q_{lab}").is_dir():
            ap.error(f"{a.run_dir / f'q_{lab}'}: not found (give a finished tiny WSe2 run directory)")
    render(a.run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
