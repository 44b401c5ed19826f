"""One q-point's ph.x chain on this machine, two ways, and the cost of the per-pattern state copy.

    python benchmarks/bench_cluster.py [--workflow W.toml] [--q K] [--scf-from RUN_DIR] [--keep DIR]

1. sequential: the runner's chain (only_wfc, irrep 0, the 3·nat patterns one after another, final)
   with [parallel] nproc = npool = 2 (2 pools on 2 cores);
2. pattern tasks: the same q as tasks (dfptmag.workflow.tasks) on the local engine: common and
   gather with 2 pools, then the patterns as 2 tasks at a time × 1 process each, every pattern in
   its own copy of the q's ph.x state.

Prints the wall time of the whole q and of its pattern phase for both, and per pattern task the
bytes and seconds of the state copy against the pattern's ph.x time. Run it while no other QE job
runs: on a shared machine, under whatever lock its users take around QE jobs (e.g. ``flock
LOCKFILE python benchmarks/bench_cluster.py ...``; dfptmag's own locks guard run directories, not
the machine). ``--scf-from`` reuses a finished run's pseudo/ and scf/ (the tiny test run, e.g.
$DFPTMAG_TEST_WORKDIR/wse2_tiny) so only the q chain is timed.
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def marker_seconds(qdir: Path, name: str) -> float:
    return float(json.loads((qdir / f"{name}.done").read_text())["seconds"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workflow", default=str(ROOT / "workflows" / "wse2-tiny.toml"))
    ap.add_argument("--q", default="K")
    ap.add_argument("--scf-from", help="run directory whose pseudo/ and scf/ are reused")
    ap.add_argument("--keep", help="work here instead of a temporary directory (kept)")
    a = ap.parse_args(argv)

    from dfptmag.engines.local import LocalEngine
    from dfptmag.jobs.cluster import execute
    from dfptmag.workflow import config, tasks
    from dfptmag.workflow.runner import Runner

    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    wf = config.load(a.workflow)
    q = config.parse_q(a.q, "--q")
    runs = {}
    for name in ("sequential", "tasks"):
        run = base / name
        run.mkdir(parents=True, exist_ok=True)
        if a.scf_from:
            for part in ("pseudo", "scf"):
                if not (run / part).exists():
                    shutil.copytree(Path(a.scf_from) / part, run / part)
        runs[name] = run

    # 1. sequential, 2 pools
    wf.nproc = wf.npool = 2
    r = Runner(wf, runs["sequential"], progress=False)
    _, h = r.prepare()
    t0 = time.time()
    r.qpoint(q, h, None)
    seq_wall = time.time() - t0
    qs = runs["sequential"] / f"q_{q.label}"
    nmodes = 3 * len(r.atoms)
    seq_pat = sum(marker_seconds(qs, f"ph.irr{p}") for p in range(1, nmodes + 1))

    # 2. tasks: common/gather with 2 pools, patterns 2 at a time × 1 process
    run = runs["tasks"]
    plan = tasks.Plan(workflow=str(wf.path), run_dir=str(run.resolve()), qpoints={q.label: q.crystal.tolist()},
                      patterns=list(range(1, nmodes + 1)),
                      nproc={"default": 1, "prepare": 2, "common": 2, "gather": 2}, bands={})
    plan.save()
    graph = [t for t in tasks.graph(plan) if t.id != "bands"]
    fn = functools.partial(execute, plan.workflow, plan.run_dir)
    LocalEngine(fn, 1).run([t for t in graph if t.stage == "prepare"])
    t0 = time.time()
    LocalEngine(fn, 1).run([t for t in graph if t.stage == "common"])
    t1 = time.time()
    out = LocalEngine(fn, 2).run([t for t in graph if t.stage == "pattern"])
    t2 = time.time()
    LocalEngine(fn, 1).run([t for t in graph if t.stage == "gather"])
    t3 = time.time()
    if out.failures:
        raise SystemExit(f"pattern tasks failed: {out.failures}")
    qt = run / f"q_{q.label}"
    copies = [json.loads((qt / f"pattern{p}" / "copy.json").read_text()) for p in range(1, nmodes + 1)]
    pats = [marker_seconds(qt, f"ph.irr{p}") for p in range(1, nmodes + 1)]
    capture = sum(f.stat().st_size for f in (qt / "capture").iterdir())

    print(f"workflow {wf.path.name}, q = {q.label}, {nmodes} patterns, 2 cores; directories under {base}")
    print(f"{'':34}{'whole q (s)':>12}{'patterns (s)':>14}")
    seq_common = marker_seconds(qs, "ph.wfc") + marker_seconds(qs, "ph.irr0")
    print(f"{'sequential, 2 pools':34}{seq_wall:12.1f}{seq_pat:14.1f}   (only_wfc + irrep 0: {seq_common:.1f} s, "
          f"final: {marker_seconds(qs, 'ph.final'):.1f} s)")
    print(f"{'2 pattern tasks x 1 process':34}{t3 - t0:12.1f}{t2 - t1:14.1f}   (common: {t1 - t0:.1f} s, "
          f"gather: {t3 - t2:.1f} s; sum of pattern tasks {sum(pats):.1f} s)")
    print(f"speed-up of the pattern phase: {seq_pat / (t2 - t1):.2f}x; of the whole q: {seq_wall / (t3 - t0):.2f}x")
    cb = [c["bytes"] for c in copies]
    cs = [c["seconds"] for c in copies]
    print(f"state copy per pattern task: {statistics.mean(cb) / 1e6:.2f} MB in {statistics.median(cs) * 1e3:.1f} ms "
          f"(median; max {max(cs) * 1e3:.1f} ms) against {statistics.median(pats):.1f} s of ph.x "
          f"(median pattern): {statistics.median(cs) / statistics.median(pats) * 100:.3f} % of the pattern's time")
    print(f"δψ captures + fildrho copies of the q: {capture / 1e6:.2f} MB ({capture / nmodes / 1e6:.2f} MB per pattern)")


if __name__ == "__main__":
    main()
