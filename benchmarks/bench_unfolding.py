"""Unfolding by symmetry against independent direct ph.x runs: K → −K.

    python benchmarks/bench_unfolding.py RUN_DIR

RUN_DIR holds q_K and q_-K (all nine patterns). For every space-group operation g (spglib), with
and without time reversal, that maps K onto −K (up to a reciprocal vector G), prints the relative
L2 difference between the unfolded and the direct fields (all displacements × 4 components × FFT
grid), its magnetization part, and the cell integrals' largest difference over their largest value.
The tiny workflow gives ~1.4e-5 for G = 0 (ph.x convergence) and 4.7e-4 for G ≠ 0; with
conv_thr = 1e-14 and tr2_ph = 1e-18 (a copy of wse2-tiny.toml with those two values) ≤ 2.4e-7 and
4.7e-4 (README, "Symmetry, selection rules and F(q) at any q").
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfptmag.analysis import grid as gi                     # noqa: E402
from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun  # noqa: E402
from dfptmag.kernel import symmetry as ks                  # noqa: E402


def main(run_dir: str) -> int:
    rK = analyze_qrun(Path(run_dir) / "q_K", AnalysisOptions())
    rm = analyze_qrun(Path(run_dir) / "q_-K", AnalysisOptions())
    ops = gi.crystal_operations(rK["cell_bohr"], rK["positions_bohr"], rK["symbols"])
    FK, Fm = gi.cartesian_fields(rK), gi.cartesian_fields(rm)
    print(f"{'W (crystal)':<34s} det  T  G          field     δm part   cell integrals")
    for op in ops:
        for tr in (False, True):
            qp = op.q(rK["q_crystal"]) * (-1 if tr else 1)
            G = ks.equivalent(rm["q_crystal"], qp)
            if G is None:
                continue
            _, F = ks.transform(FK, rK["q_crystal"], op, tr)
            F = ks.shift_to(F, qp, rm["q_crystal"])
            e = np.linalg.norm(F - Fm) / np.linalg.norm(Fm)
            em = np.linalg.norm(F[:, :, 1:] - Fm[:, :, 1:]) / np.linalg.norm(Fm[:, :, 1:])
            ci, cim = F.sum(axis=(3, 4, 5)), Fm.sum(axis=(3, 4, 5))
            print(f"{str(op.W.tolist()):<34s} {op.det:+d}  {int(tr)}  {str(G.tolist()):<10s} {e:.2e}  {em:.2e}  "
                  f"{np.abs(ci - cim).max() / np.abs(cim).max():.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
