#!/usr/bin/env python3
"""Time and memory of ``dfptmag sqw`` (the structure factor of paper Eq. 5).

Usage:
    python benchmarks/bench_sqw.py BANDS_H5 [--nq 300] [--ne 400]

BANDS_H5 is the output of ``dfptmag bands --interpolate`` (grid.h5 and dispersion/ beside it).
Prints, for a Q–ω map of nq Q-points × ne energies with all 16 channels (the full 4×4 S):
the seconds spent in matdyn.x (modes at every Q), in F(Q) (the one-displaced-atom response),
in the lines and their broadening, and the peak memory (RSS). Then the same steps at converged
sizes (a 6×6 q grid, a 32×32 in-plane FFT grid, 3 atoms, 1000 Q) on a synthetic response of that
shape (the cost does not depend on the numbers), and the size of such a grid.h5.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bands")
    ap.add_argument("--nq", type=int, default=300)
    ap.add_argument("--ne", type=int, default=400)
    a = ap.parse_args()

    from dfptmag.analysis.sqw import InterpolatedSource
    from dfptmag.jobs.sqw import sample_path
    from dfptmag.kernel import interpolation as ki
    from dfptmag.kernel import modes as km
    from dfptmag.kernel import structure_factor as sf

    t = time.perf_counter()
    src = InterpolatedSource(a.bands)
    t_load = time.perf_counter() - t
    Q, _, _ = sample_path("G M K G 1,0", src.cell_bohr, a.nq)
    t = time.perf_counter()
    w, e = src.modes(Q)
    t_modes = time.perf_counter() - t
    t = time.perf_counter()
    F = src.response(Q)
    t_F = time.perf_counter() - t
    nat = len(src.symbols)
    U = np.array([km.displacements(e[i], src.masses_amu, w[i], "zero-point") for i in range(len(Q))])
    A = np.einsum("qnka,qkac->qnc", U.reshape(len(Q), 3 * nat, nat, 3), F)
    t = time.perf_counter()
    le, lw, _ = sf.sticks(km.ry_to_mev(w), A, 300.0)
    S = sf.spectrum(np.linspace(-45, 45, a.ne), le, lw, 1.0)
    t_S = time.perf_counter() - t
    print(f"tiny {src.grid.N}x{src.grid.N} grid, FFT {src.grid.columns.shape[-2:]}, {nat} atoms: "
          f"{len(Q)} Q x {a.ne} energies x 16 channels (S {S.nbytes / 1e6:.0f} MB)")
    print(f"  load {t_load:.2f} s, matdyn.x {t_modes:.2f} s, F(Q) {t_F:.3f} s, lines + broadening {t_S:.2f} s; "
          f"total {t_load + t_modes + t_F + t_S:.2f} s; peak RSS {rss_mb():.0f} MB")

    # converged sizes, synthetic response of the right shape
    N, n1, nat, nq = 6, 32, 3, 1000
    rng = np.random.default_rng(0)
    cols = rng.standard_normal((N, N, nat, 3, 4, n1, n1)) + 1j * rng.standard_normal((N, N, nat, 3, 4, n1, n1))
    cell = np.array([[6.2, 0, 0], [-3.1, 5.37, 0], [0, 0, 28.0]])
    tau = np.array([[0, 0, 0.5], [1 / 3, 2 / 3, 0.44], [1 / 3, 2 / 3, 0.56]])
    t = time.perf_counter()
    sc = ki.build(cols, N, cell, tau)
    t_build = time.perf_counter() - t
    q = rng.uniform(-2, 2, (nq, 3))
    q[:, 2] = 0
    t = time.perf_counter()
    Fc = sc.evaluate(q)
    t_eval = time.perf_counter() - t
    Ac = rng.standard_normal((nq, 3 * nat, 4)) + 1j * rng.standard_normal((nq, 3 * nat, 4))
    wc = rng.uniform(1, 40, (nq, 3 * nat))
    t = time.perf_counter()
    le, lw, _ = sf.sticks(wc, Ac, 300.0)
    S = sf.spectrum(np.linspace(-45, 45, a.ne), le, lw, 1.0)
    t_S = time.perf_counter() - t
    print(f"converged {N}x{N} grid, FFT {n1}x{n1}, {nat} atoms, {nq} Q x {a.ne} energies: build {t_build:.2f} s, "
          f"F(Q) {t_eval:.2f} s ({Fc.shape}), lines + broadening {t_S:.2f} s (S {S.nbytes / 1e6:.0f} MB); "
          f"grid.h5 columns {cols.nbytes / 1e6:.0f} MB; peak RSS {rss_mb():.0f} MB "
          "(matdyn.x on 1000 q: add its time, ~linear in nq)")


if __name__ == "__main__":
    main()
