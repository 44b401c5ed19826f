#!/usr/bin/env python3
"""Contract-and-discard (``--discard-dwf``): disk and time, measured on real runs.

    python benchmarks/bench_contract.py disk [--path MK] [--npoints 2] [--out DIR]
    python benchmarks/bench_contract.py cost [--workflow benchmarks/wse2-medium.toml] [--out DIR]

``disk``: the tiny workflow's direct band run (default path M → K, 2 q-points × 9 patterns, no
dispersion) twice from one scf: δψ kept, and contracted and discarded. A thread samples the run
directory's disk use (allocated blocks, hard links counted once) every 0.1 s: printed are the
peak and the final use of each run, per q what stays, and whether every dataset of the two
bands.h5 files is bitwise equal (the keep run's analysis is the oracle).

``cost``: one q-run with ``--discard-dwf`` (default the medium workflow of bench_medium.py: 40 Ry,
6×6×1 k, c = 15 Å, q = K, pattern 4; about 6 min of ph.x on 2 cores) and, per pattern, the
contraction's wall time against the pattern's own ph.x step (its marker), with the breakdown:
reading the ground state, ψ and its checks, Eq. 1 at G = 0 and on the grid, the fildrho oracle,
writing and reading back, manifest and deletion.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
TINY = ROOT / "workflows" / "wse2-tiny.toml"
MEDIUM = HERE / "wse2-medium.toml"


def disk_use(root: Path) -> int:
    """Allocated bytes under ``root`` (st_blocks × 512), each inode once (δψ are hard links)."""
    seen, total = set(), 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


class Sampler(threading.Thread):
    def __init__(self, root: Path, every: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.every, self.peak, self.stop_ = root, every, 0, threading.Event()

    def run(self):
        while not self.stop_.is_set():
            self.peak = max(self.peak, disk_use(self.root))
            time.sleep(self.every)

    def finish(self) -> int:
        self.stop_.set()
        self.join()
        self.peak = max(self.peak, disk_use(self.root))
        return self.peak


def workflow_without_dispersion(tmp: Path) -> Path:
    text = TINY.read_text().replace('"../structures/', f'"{ROOT}/structures/')
    text = text.replace('= "pseudo/', f'= "{ROOT}/workflows/pseudo/')
    text = re.sub(r"\[dispersion\].*?(?=\[parallel\])", "", text, flags=re.S)
    text = re.sub(r"\[interpolation\][^\n]*\n(?:[^\[\n][^\n]*\n)*", "", text)
    path = tmp / "wse2-tiny-direct.toml"
    path.write_text(text)
    return path


def mb(n) -> str:
    return f"{n / 1e6:.1f} MB"


def bench_disk(a) -> None:
    import h5py

    import dfptmag
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    out = Path(a.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    wf = workflow_without_dispersion(out)
    scf = out / "scf-only"
    t0 = time.time()
    Runner(config.load(wf), scf, progress=False).prepare()
    print(f"scf (shared by both runs): {time.time() - t0:.0f} s, {mb(disk_use(scf))}")
    res = {}
    for mode in ("keep", "discard"):
        run = out / mode
        shutil.copytree(scf, run, symlinks=True)
        start = disk_use(run)
        s = Sampler(run)
        s.start()
        t0 = time.time()
        r = dfptmag.bands(wf, path=a.path, npoints=a.npoints, run_dir=run, figures=(), interpolate=False,
                          discard_dwf=(mode == "discard"), progress=False)
        wall = time.time() - t0
        peak = s.finish()
        final = disk_use(run)
        qs = {q.name: disk_use(q) for q in sorted(run.glob("q_*"))}
        res[mode] = (r.output, peak, final, start)
        print(f"{mode:>8}: {wall:.0f} s; disk peak {mb(peak)}, final {mb(final)} (scf {mb(start)}); per q "
              + ", ".join(f"{k} {mb(v)}" for k, v in qs.items()))
    with h5py.File(res["keep"][0]) as fa, h5py.File(res["discard"][0]) as fb:
        names = []
        fa.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        def same(x, y):
            x, y = np.asarray(x), np.asarray(y)
            if x.dtype == object or y.dtype == object:      # strings: compare values, not pointers
                return x.shape == y.shape and x.tolist() == y.tolist()
            return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        differ = [n for n in names if not same(fa[n][()], fb[n][()])]
    print(f"bands.h5: {len(names)} datasets, {len(names) - len(differ)} equal (strings by value, the rest bitwise)"
          + (f"; differ: {differ}" if differ else ""))
    (_, kp, kf, ks), (_, dp, df, _) = res["keep"], res["discard"]
    print(f"| {a.path} ({a.npoints} q × 9 patterns) | keep δψ | discard |\n|---|---|---|\n"
          f"| peak disk | {mb(kp)} | {mb(dp)} ({dp / kp:.2f}×) |\n| final disk | {mb(kf)} | {mb(df)} ({df / kf:.2f}×) |\n"
          f"| of which q-directories | {mb(kf - ks)} | {mb(df - ks)} ({(df - ks) / (kf - ks):.2f}×) |")


def bench_cost(a) -> None:
    from dfptmag.jobs import storage
    from dfptmag.io.qrun_dir import read_manifest
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    import json
    out = Path(a.out).resolve()
    wf = config.load(a.workflow)
    r = Runner(wf, out, progress=False)
    storage.attach(r, {"discard_dwf": True, "keep_scratch": True})
    outer = {}
    orig = r.contract_and_discard

    def timed(work, p, ph0, lock=None):
        t0 = time.perf_counter()
        rec = orig(work, p, ph0, lock)
        outer[p] = time.perf_counter() - t0
        return rec
    r.contract_and_discard = timed
    t0 = time.time()
    qdir = r.run(wf.qpoints, wf.patterns)[0]
    print(f"{wf.path.name}: q-run {qdir.name} in {time.time() - t0:.0f} s "
          f"(contractions timed only when a pattern ran in this call)")
    man = read_manifest(qdir)
    for p, cap in sorted(man["captures"].items(), key=lambda kv: int(kv[0])):
        c = cap.get("contracted")
        if not c:
            continue
        phx = json.loads((qdir / f"ph.irr{p}.done").read_text())["seconds"]
        sec = c["seconds"]
        total = outer.get(int(p), sec["total"])
        step = phx                              # the marker times the whole step, contraction included
        print(f"pattern {p}: pattern step {step:.1f} s (ph.x + contraction), contraction {total:.2f} s "
              f"= {100 * total / step:.2f} % of the step; contracted file {mb(c['size'])} "
              f"(δψ freed {mb(sum(v['size'] for k, v in cap['checksums'].items() if '/dwf.' in '/' + k))}), "
              f"charge error {c['charge_error']:.1e}")
        parts = {"ground state + ψ buffer": sec.get("open", 0.0),
                 "ψ read + order + check": sec.get("read_psi", 0.0) + sec.get("order", 0.0) + sec.get("verify", 0.0),
                 "Eq. 1 at G = 0": sec.get("dpsi_g0", 0.0),
                 "Eq. 1 on the grid (ψ, δψ)": sec.get("field_psi", 0.0) + sec.get("field_dpsi", 0.0),
                 "fildrho oracle": sec.get("field_oracle", 0.0),
                 "write + fsync": sec.get("write", 0.0), "read back + sha256": sec.get("verify_written", 0.0)}
        parts["manifest + deletion + rest"] = max(0.0, total - sum(parts.values()))
        for k, v in parts.items():
            print(f"    {k:<28}{v:8.3f} s  {100 * v / step:6.3f} %")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("disk")
    d.add_argument("--path", default="MK")
    d.add_argument("--npoints", type=int, default=2)
    d.add_argument("--out", default="runs/bench-contract-disk")
    c = sub.add_parser("cost")
    c.add_argument("--workflow", default=str(MEDIUM))
    c.add_argument("--out", default="runs/bench-contract-medium")
    a = ap.parse_args(argv)
    (bench_disk if a.what == "disk" else bench_cost)(a)


if __name__ == "__main__":
    main()
