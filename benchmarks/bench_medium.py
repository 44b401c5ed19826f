#!/usr/bin/env python3
"""Post-processing cost at a realistic size: a medium WSe2 q-run against ph.x.

Usage:
    python benchmarks/bench_medium.py [RUN_DIR] [--workflow TOML] [--no-run] [--tiny DIR]
                                      [--repeat 5] [--q K]

RUN_DIR (default runs/bench-medium) is made by ``dfptmag run`` with the medium workflow
``benchmarks/wse2-medium.toml`` (the tiny workflow at 40 Ry, 6×6×1 k, c = 15 Å; q = K, pattern
4 only; about 6 min of ph.x on 2 cores). The run is resumable: finished QE steps are skipped, so a
second call only measures. ``--no-run`` takes RUN_DIR as it is (any dfptmag run or capture
directory). ``--tiny DIR`` is the tiny reference run (default runs/bench-tiny, made with the tiny
workflow at q = K, all nine patterns, about 1.5 min of QE, if missing).

Printed, for the medium and the tiny run:
- ph.x wall time of the q-run (only_wfc, irrep 0, the captured pattern runs, final), from ph.x's
  own "PHONON ... WALL" lines, and per captured pattern;
- analysis wall time without and with the real-space field, best and median of --repeat fresh
  subprocesses (other agents may share the CPU: compare best values), and the ratios to ph.x;
- peak memory: the numpy heap (tracemalloc peak, which counts every numpy array) against the
  stated bound, and the peak resident set (ru_maxrss, includes the interpreter and libraries)
  above the resident set after the imports;
- the stage breakdown (analysis result's ``timing_s``) and the analysis cost per k-point (ψ
  work) and per k-point × pattern (δψ work), medium against tiny, with the FFT-work ratio
  N_batch · N_grid · log2(N_grid) that the scaling law predicts.

Memory bound of the streamed analysis (dfptmag.kernel.density_matrix.FieldStream), N = n1·n2·n3:
    npat · 4 · N · 16 B                          field accumulators (they become the output)
  + 2 · (2 · nocc · N) · 16 B                    one k-point's w_k·conj(u_k) and δu on the grid
  + 3 · N · 16 B                                 layout/Pauli scratch, charge-oracle record
  + GridPlan.work_bytes(2 · nocc)                sticks of one batched transform
  + (npat + 4) · nocc · 2 · npwx · 16 B          one k-point's ψ, δψ and G = 0 operands
(without the field only the last term). Checked against tracemalloc's peak, which counts every
numpy array.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MEDIUM = HERE / "wse2-medium.toml"
TINY = ROOT / "workflows" / "wse2-tiny.toml"
sys.path.insert(0, str(ROOT))

from dfptmag.io.qe_output import ph_step_clocks        # noqa: E402

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
from dfptmag.io.qe_xml import read_data_file_schema
from dfptmag.kernel.density_matrix import GridPlan
from dfptmag.io.qrun_dir import locate
qdir, realspace, trace = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if trace:                       # a separate run: tracing costs time
    tracemalloc.start()
t0 = time.perf_counter()
r = analyze_qrun(qdir, AnalysisOptions(realspace=realspace))
seconds = time.perf_counter() - t0
heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
tracemalloc.stop()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# the stated bound, from the run's own sizes
x = read_data_file_schema(locate(qdir).xml)
npat, nocc, grid = len(r["pattern_index"]), int(r["nocc"]), int(np.prod(r["fft_grid"]))
from dfptmag.io.qe_wfc import read_wfc
sticks = max(GridPlan(read_wfc(f, header_only=True).miller, r["fft_grid"]).work_bytes(2 * nocc)
             for f in locate(qdir).wfc_dir.glob("wfc*.dat"))     # the largest k-point's sticks
coeff = (npat + 4) * nocc * 2 * x.npwx * 16          # ψ_k, ψ_{k+q} (1 band), δψ gathers, G = 0 operands
bound = coeff
if realspace:
    bound += (npat * 4 + 2 * 2 * nocc + 3) * grid * 16 + sticks
print(json.dumps({"seconds": seconds, "timing_s": r["timing_s"], "heap_peak_mb": heap_peak,
                  "rss_peak_mb": rss, "rss_after_imports_mb": rss0, "bound_mb": bound / 2**20,
                  "nk": int(r["nk"]), "npat": npat, "nocc": nocc, "fft_grid": [int(n) for n in r["fft_grid"]],
                  "npwx": int(x.npwx)}))
"""


def phx_seconds(qdir: Path) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """ph.x wall and CPU seconds of a q-run (sum over its ph.x steps, each from its output's
    total clock: dfptmag.io.qe_output), and (wall, cpu) per step. The CPU time is rank 0's: with
    k-point pools on free cores it is the wall time ph.x would need without other work on the
    machine."""
    steps = ph_step_clocks(qdir)
    return sum(w for w, _ in steps.values()), sum(c for _, c in steps.values()), steps


def _child(qdir: Path, realspace: bool, trace: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(qdir), "1" if realspace else "0", "1" if trace else "0"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def analysis(qdir: Path, realspace: bool, repeat: int) -> dict:
    """Best and median of ``repeat`` timed runs, each in a fresh process, plus one traced run
    for the numpy heap peak."""
    runs = [_child(qdir, realspace, False) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    best["median_seconds"] = statistics.median(r["seconds"] for r in runs)
    best["rss_peak_mb"] = max(r["rss_peak_mb"] for r in runs)
    best["heap_peak_mb"] = _child(qdir, realspace, True)["heap_peak_mb"]
    return best


def ensure_run(workflow: Path, run_dir: Path, extra: list[str]):
    cmd = [sys.executable, "-m", "dfptmag.cli", "run", str(workflow), "--run-dir", str(run_dir),
           "--no-snapshots", "--quiet", *extra]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def measure(name: str, qdir: Path, repeat: int) -> dict:
    phx, phx_cpu, steps = phx_seconds(qdir)
    g0 = analysis(qdir, False, repeat)
    rs = analysis(qdir, True, repeat)
    nk, npat, nocc, grid = rs["nk"], rs["npat"], rs["nocc"], rs["fft_grid"]
    ngrid = math.prod(grid)
    print(f"\n== {name}: {qdir}")
    print(f"   {nk} k-points (+ k+q), {nocc} occupied bands, FFT grid {grid[0]}x{grid[1]}x{grid[2]} "
          f"= {ngrid}, npwx {rs['npwx']}, {npat} captured pattern(s)")
    print(f"   ph.x time of this q-run: {phx:9.2f} s wall, {phx_cpu:9.2f} s CPU (rank 0)  (wall/CPU: " +
          ", ".join(f"{k.removeprefix('ph.')} {w:.1f}/{c:.1f}" for k, (w, c) in steps.items()) + ")")
    for label, r in (("G = 0 only (cell integrals)", g0), ("G = 0 + real-space field", rs)):
        print(f"   analysis, {label:28s}: best {r['seconds']:7.3f} s (median {r['median_seconds']:7.3f})"
              f" = {100 * r['seconds'] / phx:6.3f} % of ph.x wall, {100 * r['seconds'] / phx_cpu:6.3f} % of ph.x CPU")
        print(f"      memory: numpy heap peak {r['heap_peak_mb']:7.1f} MB, stated bound "
              f"{r['bound_mb']:7.1f} MB -> {'within' if r['heap_peak_mb'] <= r['bound_mb'] else 'ABOVE'}; "
              f"peak RSS {r['rss_peak_mb']:.0f} MB ({r['rss_peak_mb'] - r['rss_after_imports_mb']:.0f} MB "
              "above the imports)")
        print("      stages (s): " + ", ".join(f"{k} {v:.3f}" for k, v in r["timing_s"].items()))
    t = rs["timing_s"]
    per = {
        "psi_per_k": (t.get("read_psi", 0) + t.get("order", 0) + t.get("verify", 0)) / nk,
        "g0_per_k_pattern": t.get("dpsi_g0", 0) / (nk * npat),
        "fft_psi_per_k": t.get("field_psi", 0) / nk,
        "field_per_k_pattern": t.get("field_dpsi", 0) / (nk * npat),
    }
    print("   per unit of work (ms): " + ", ".join(f"{k} {1e3 * v:.2f}" for k, v in per.items()))
    return {"phx": phx, "phx_cpu": phx_cpu, "steps": steps, "g0": g0, "rs": rs, "per": per, "fft_work": 2 * nocc * ngrid * math.log2(ngrid),
            "coeff_work": 2 * nocc * rs["npwx"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", default=str(ROOT / "runs" / "bench-medium"))
    ap.add_argument("--workflow", default=str(MEDIUM), help="workflow of the medium run (default: %(default)s)")
    ap.add_argument("--no-run", action="store_true", help="take RUN_DIR as it is (no QE)")
    ap.add_argument("--tiny", default=str(ROOT / "runs" / "bench-tiny"),
                    help="tiny reference run (made with the tiny workflow at K if missing)")
    ap.add_argument("--q", default="K", help="q label of the q-run directory (default K)")
    ap.add_argument("--repeat", type=int, default=5, help="analysis timings per case (default 5)")
    a = ap.parse_args()
    run_dir, tiny = Path(a.run_dir), Path(a.tiny)
    if not a.no_run:
        ensure_run(Path(a.workflow), run_dir, [])
    if not (tiny / f"q_{a.q}" / "dfptmag-q.json").is_file():
        ensure_run(TINY, tiny, [f"--q={a.q}"])
    med = measure("medium", run_dir / f"q_{a.q}", a.repeat)
    tin = measure("tiny", tiny / f"q_{a.q}", a.repeat)

    print("\n== medium against tiny")
    print(f"   ph.x (whole q-run): x{med['phx'] / tin['phx']:.1f} wall, x{med['phx_cpu'] / tin['phx_cpu']:.1f} CPU")
    for key, work in (("psi_per_k", "coeff_work"), ("g0_per_k_pattern", "coeff_work"),
                      ("fft_psi_per_k", "fft_work"), ("field_per_k_pattern", "fft_work")):
        if tin["per"][key] > 0:
            print(f"   {key:20s}: x{med['per'][key] / tin['per'][key]:6.1f}  "
                  f"(work model {work.replace('_work', '')}: x{med[work] / tin[work]:6.1f})")
    for label in ("g0", "rs"):
        print(f"   analysis {'G = 0 only' if label == 'g0' else 'with field'}: medium "
              f"{100 * med[label]['seconds'] / med['phx']:.3f} % of ph.x wall "
              f"({100 * med[label]['seconds'] / med['phx_cpu']:.3f} % of CPU), tiny "
              f"{100 * tin[label]['seconds'] / tin['phx']:.3f} % ({100 * tin[label]['seconds'] / tin['phx_cpu']:.3f} %)")
    print("   goals (post-processing cost): with field <= 1 %, G = 0 only <= 0.2 %, heap within the bound")


if __name__ == "__main__":
    main()
