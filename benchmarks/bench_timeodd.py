#!/usr/bin/env python3
"""Convergence and cost of the time-odd response against the number of empty states.

Usage:
    python benchmarks/bench_timeodd.py RUN_DIR [--q K] [--bands 25,50,100,200] [--workflow WF.toml]

RUN_DIR is a finished run of the workflow (default: the tiny WSe2 one) whose q-run ``q_<label>``
still has its δψ (run without --discard-dwf). One pw.x run of the largest number of empty states
is made (or reused) in ``q_<label>/empty``; smaller sets are its lowest bands. Prints, for each
number of empty states and each closure, the largest deviation of the X cell integrals from the
largest set with the kinetic closure (per pattern, relative to that pattern's largest component),
the part of δψ outside the states, and the cost: the pw.x wall time against the q's ph.x time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--q", default="K")
    ap.add_argument("--bands", default="25,50,100,200")
    ap.add_argument("--workflow", default=str(ROOT / "workflows" / "wse2-tiny.toml"))
    a = ap.parse_args(argv)
    from dfptmag.analysis.timeodd import analyze_time_odd
    from dfptmag.io.qe_output import ph_wall_seconds
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    counts = sorted(int(n) for n in a.bands.split(","))
    wf = config.load(a.workflow)
    wf.timeodd = {"empty_bands": counts[-1], "closure": "kinetic"}
    qdir = a.run_dir / f"q_{a.q}"
    from dfptmag.analysis.timeodd import find_empty_states
    from dfptmag.io.qe_xml import read_data_file_schema
    save = find_empty_states(qdir)
    have = read_data_file_schema(save / "data-file-schema.xml") if save else None
    if have is None or have.nbnd - int(round(have.nelec)) < counts[-1]:
        save = Runner(wf, a.run_dir, progress=False).empty_states(qdir, "benchmark")
        have = read_data_file_schema(save / "data-file-schema.xml")
    marker = json.loads((qdir / "empty" / "pw.empty.done").read_text())
    nemp = have.nbnd - int(round(have.nelec))
    print(f"q = {a.q}: pw.x with {nemp} empty states: {marker['seconds']:.1f} s on {wf.nproc} process(es); "
          f"the q's ph.x (all its patterns): {ph_wall_seconds(qdir):.1f} s")
    ref = None
    rows = []
    for n in reversed(counts):
        for closure in ("kinetic", "none"):
            t1 = time.perf_counter()
            r = analyze_time_odd(qdir, save, closure=closure, n_empty=n)
            dt = time.perf_counter() - t1
            if ref is None:
                ref = r.chi_cell_integral
            dev = np.abs(r.chi_cell_integral - ref).max(axis=1) / np.abs(ref).max(axis=1)
            rows.append((n, closure, dev, r.residual_norm, dt))
    print("empty  closure   max dev. of ∫X (per pattern, vs the largest set, kinetic)   δψ outside   analysis s")
    for n, closure, dev, res, dt in sorted(rows, key=lambda t: (t[0], t[1])):
        print(f"{n:5d}  {closure:8s} {np.array2string(dev, precision=3, max_line_width=200):>58s}   "
              f"{res.max():.2f}        {dt:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
