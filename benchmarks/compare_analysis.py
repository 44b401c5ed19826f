#!/usr/bin/env python3
"""Old against new: analyze one q-run directory with the dfptmag of a git revision and with this
working tree, and compare every numeric result.

Usage:
    python benchmarks/compare_analysis.py QDIR [--ref de38daf] [--tol 1e-12]

Each version runs in its own subprocess (``git archive REF dfptmag`` unpacked into a temporary
directory comes first on sys.path). Prints, per result array, max|new − old| / max|old| and
whether the arrays are bitwise equal; exits non-zero if any physical result differs by more than
--tol (relative to its own maximum). Roundoff diagnostics (the charge-oracle residuals and
cell_average_vs_g0, themselves ~1e-16) are printed but not judged.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIAGNOSTICS = {"cell_average_vs_g0", "drho_relative_error", "drho_g0_relative_error"}

CHILD = r"""
import logging, sys, time
sys.path.insert(0, sys.argv[1])
logging.disable(logging.WARNING)
import numpy as np
import dfptmag
try:                       # the package layout (analysis/qrun.py)
    import dfptmag.analysis.qrun as A
except ImportError:        # older revisions: one module dfptmag/analysis.py
    import dfptmag.analysis as A
assert dfptmag.__file__.startswith(sys.argv[1]), dfptmag.__file__
t0 = time.perf_counter()
r = A.analyze_qrun(sys.argv[2], A.AnalysisOptions(realspace=True))
print(f"{time.perf_counter() - t0:.3f}")
out = {k: v for k, v in r.items() if isinstance(v, np.ndarray) and v.dtype != object}
out.update({k: np.array(v) for k, v in r.items() if isinstance(v, (float, int)) and not isinstance(v, bool)})
np.savez(sys.argv[3], **out)
"""


def run(code_root: Path, qdir: Path, out: Path) -> float:
    p = subprocess.run([sys.executable, "-c", CHILD, str(code_root), str(qdir), str(out)],
                       capture_output=True, text=True, check=True)
    return float(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("qdir")
    ap.add_argument("--ref", default="de38daf", help="git revision of the old code (default: %(default)s)")
    ap.add_argument("--tol", type=float, default=1e-12)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "old"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.ref, "dfptmag"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        t_old = run(old, Path(a.qdir), tmp / "old.npz")
        t_new = run(ROOT, Path(a.qdir), tmp / "new.npz")
        A, B = np.load(tmp / "old.npz"), np.load(tmp / "new.npz")
        worst = 0.0
        print(f"{a.qdir}: old ({a.ref}) {t_old:.2f} s, new {t_new:.2f} s (one run each, with the field)")
        for k in sorted(set(A.files) & set(B.files)):
            x, y = A[k], B[k]
            if x.dtype.kind not in "fc" or not x.size:
                if not np.array_equal(x, y):
                    print(f"{k:28s} differs")
                    worst = np.inf
                continue
            d = float(np.nanmax(np.abs(x - y)) / (np.nanmax(np.abs(x)) or 1.0))
            tag = "bitwise equal" if np.array_equal(x, y, equal_nan=True) else f"{d:.2e}"
            judged = k not in DIAGNOSTICS
            print(f"{k:28s} {str(x.shape):22s} {tag}{'' if judged else '  (roundoff diagnostic)'}")
            if judged:
                worst = max(worst, d)
        only = set(A.files) ^ set(B.files)
        if only:
            print("only in one version:", ", ".join(sorted(only)))
        print(f"largest relative difference of a result: {worst:.2e} (tolerance {a.tol:g})")
        sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
