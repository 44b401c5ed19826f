#!/usr/bin/env python3
"""Time dfptmag's post-processing of one q-point against ph.x's wall time for the same q.

Usage:
    python benchmarks/bench_postprocess.py [RUN_DIR] [--q K] [--repeat 3]

Without RUN_DIR it runs the tiny WSe2 workflow (q = K, all patterns) into
benchmarks/_run (resumable; reused on later calls). Prints ph.x wall time (sum over the q's
only_wfc, irrep-0, pattern and final runs, from ph.x's own "PHONON ... WALL" line),
the analysis time with and without the real-space field, their ratios, and peak memory (RSS)
of each analysis, measured in a fresh subprocess.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from dfptmag.io.qe_output import ph_wall_seconds       # noqa: E402

CHILD = r"""
import json, resource, sys, time
from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
qdir, realspace, repeat = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
best = 1e99
for _ in range(repeat):
    t0 = time.perf_counter()
    analyze_qrun(qdir, AnalysisOptions(realspace=realspace))
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", help="a dfptmag run directory (default: run the tiny workflow)")
    ap.add_argument("--q", default="K", help="q label of the q-run directory (default K)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N analysis timings (default 3)")
    a = ap.parse_args()
    if a.run_dir is None:
        run_dir = HERE / "_run"
        subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", str(ROOT / "workflows" / "wse2-tiny.toml"),
                        "--run-dir", str(run_dir), "-o", str(run_dir / "dfptmag.h5"), "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        run_dir = Path(a.run_dir)
    qdir = run_dir / f"q_{a.q}"
    phx = ph_wall_seconds(qdir)
    print(f"q-run directory: {qdir}")
    print(f"ph.x wall time for this q (all runs): {phx:10.2f} s")
    for realspace in (False, True):
        res = json.loads(subprocess.run([sys.executable, "-c", CHILD, str(qdir), "1" if realspace else "0",
                                         str(a.repeat)], capture_output=True, text=True, check=True).stdout)
        what = "G=0 + real-space field" if realspace else "G=0 only (cell integrals)"
        print(f"dfptmag analysis, {what:27s}: {res['seconds']:8.3f} s  "
              f"= {100 * res['seconds'] / phx:6.2f} % of ph.x   peak RSS {res['peak_rss_mb']:7.1f} MB")
    print("goals (post-processing cost): with the field ≤ 1 % of ph.x time, G = 0 only ≤ 0.2 %; "
          "benchmarks/bench_medium.py measures them at a realistic size")


if __name__ == "__main__":
    main()
