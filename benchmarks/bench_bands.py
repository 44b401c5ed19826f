#!/usr/bin/env python3
"""Time the band workflow: QE wall time (from the step markers) against dfptmag's own share
(resume check, per-q analysis, branch tracking, bands.h5, figures) on a finished band run.

Usage:
    python benchmarks/bench_bands.py [RUN_DIR] [--workflow WORKFLOW.toml]

Without RUN_DIR it runs (or resumes) the built-in tiny band workflow into benchmarks/_bands.
Prints the QE seconds per kind of step, the post-processing wall time (measured in a fresh
subprocess, all QE steps already done) and its peak memory (RSS).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TINY = ROOT / "workflows" / "wse2-tiny.toml"

CHILD = r"""
import json, resource, sys, time
from dfptmag.jobs.bands import run_bands
t0 = time.perf_counter()
r = run_bands(sys.argv[1], run_dir=sys.argv[2], progress=False, figures=("png", "pdf"))
print(json.dumps({"seconds": time.perf_counter() - t0, "qe_steps_run": r.steps_ran,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def qe_seconds(run_dir: Path) -> dict[str, float]:
    out = defaultdict(float)
    for m in run_dir.rglob("*.done"):
        kind = m.stem.rstrip("0123456789") if m.stem.startswith("ph.irr") else m.stem
        out[f"{m.parent.name if m.parent.name in ('scf', 'dispersion') else 'q'}/{kind}"] += \
            json.loads(m.read_text()).get("seconds", 0.0)
    return dict(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", default=str(HERE / "_bands"))
    ap.add_argument("--workflow", default=str(TINY))
    a = ap.parse_args()
    run_dir = Path(a.run_dir)
    subprocess.run([sys.executable, "-m", "dfptmag.cli", "bands", a.workflow, "--run-dir", str(run_dir),
                    "--quiet", "--format", "png"], check=True)
    qe = qe_seconds(run_dir)
    res = json.loads(subprocess.run([sys.executable, "-c", CHILD, a.workflow, str(run_dir)], check=True,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1])
    total = sum(qe.values())
    print(f"QE steps (wall seconds, from the .done markers), total {total:.1f} s:")
    for k, v in sorted(qe.items()):
        print(f"  {k:<22} {v:8.1f} s")
    print(f"dfptmag post-processing (all QE steps done, {res['qe_steps_run']} rerun): "
          f"{res['seconds']:.2f} s = {100 * res['seconds'] / total:.2f} % of QE; peak RSS {res['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
