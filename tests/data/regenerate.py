#!/usr/bin/env python3
"""Regenerate the stored real QE outputs under tests/data/ (the fast test tier reads them; no
QE is started there). Needs pw.x, ph.x and ld1.x; about 3 minutes on 2 cores with QE 6.7.

    python3 tests/data/regenerate.py                 # rewrite tests/data/wse2-tiny/ and PROVENANCE.json
    python3 tests/data/regenerate.py --out /tmp/x    # write elsewhere (e.g. to compare by hand)

What is stored (the tiny WSe2 workflow, workflows/wse2-tiny.toml, as tests/conftest.py's
``tiny_run`` computes it):

* ``q_K`` and ``q_-K``: all nine patterns, contracted and discarded (``[storage] discard_dwf``:
  each pattern's Eq. 1 field, 2×2 cell integral and ph.x's own fildrho record in
  ``contracted/irr<p>.h5``), with the q's ph.x scratch removed; the manifest, ph.x's dynamical
  matrix and outputs kept. The analysis of such a q-run equals, bitwise, that of its δψ.
* ``q_G``: patterns 3 and 9 at Γ with their raw δψ captures, ψ buffers and the XML (the readers'
  path), less the files no reader opens (charge density, ph.x's own drho scratch, the UPFs);
  and in ``q_G/empty`` the pw.x run of 30 empty states at its k-points (``[timeodd]``: the
  time-odd response's fast tests).

``PROVENANCE.json`` records the QE version, the workflow and its hash, this command, the
dfptmag commit and the sha256 of every stored file. tests/test_stored_data.py checks those
hashes in the fast tier, and (QE tier) that a fresh run of the same build reproduces the stored
analysis: bitwise on the build that wrote it, within ph.x's run-to-run scatter on another.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORKFLOW = ROOT / "workflows" / "wse2-tiny.toml"
NAME = "wse2-tiny"
sys.path.insert(0, str(ROOT))                  # this checkout's dfptmag, installed or not
# files of a raw q-run that no reader opens (dfptmag.io.qrun_dir.locate and the readers below it)
UNREAD = ("out/*.save/charge-density.dat", "out/*.save/*.UPF", "out/_ph0/*.drho1", "*.done",
          "empty/out/*.save/charge-density.dat", "empty/out/*.save/*.UPF", "empty/out/*.wfc*",
          "empty/out/*.xml", "empty/*.done")
EMPTY_BANDS = 30        # empty states stored for the Γ run (the time-odd response's fast tests)


def run_tiny(run_dir: Path) -> dict[str, Path]:
    """The tiny workflow at K and −K (all patterns, contracted and discarded) and at Γ (patterns 3
    and 9, raw captures kept) in ``run_dir``; {label: q-run dir}."""
    from dfptmag.jobs.storage import attach
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    wf = config.load(WORKFLOW)
    runner = Runner(wf, run_dir, progress=False)
    attach(runner, {"discard_dwf": True, "keep_scratch": False})
    k, mk = runner.run([config.parse_q("K", "data"), config.parse_q("-K", "data")], None)
    wf.timeodd = {"empty_bands": EMPTY_BANDS, "closure": "none"}     # Γ only: its empty states
    raw = Runner(wf, run_dir, progress=False)
    gamma = raw.run([config.parse_q("G", "data")], [3, 9])[0]
    return {"K": k, "-K": mk, "G": gamma}


def prune(qdir: Path) -> None:
    for pattern in UNREAD:
        for p in qdir.glob(pattern):
            p.unlink()


def files_of(root: Path) -> dict[str, dict]:
    from dfptmag.io.qrun_dir import sha256_file
    return {str(p.relative_to(root)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file()}


def qe_build() -> dict:
    from dfptmag.workflow import qe
    pw = qe.program("pw.x")
    return {"version": str(qe.version_of(pw)), "pw.x": Path(pw).name}


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE, help="where to write NAME/ and PROVENANCE.json "
                                                           "(default: tests/data)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dfptmag-data-") as tmp:
        dirs = run_tiny(Path(tmp) / "run")
        dest = a.out / NAME
        part = a.out / (NAME + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        for qdir in dirs.values():
            shutil.copytree(qdir, part / qdir.name, ignore=shutil.ignore_patterns(".dfptmag.lock"))
            prune(part / qdir.name)
        shutil.rmtree(dest, ignore_errors=True)
        part.rename(dest)
    from dfptmag.io.qrun_dir import sha256_file
    prov = {"workflow": str(WORKFLOW.relative_to(ROOT)), "workflow_sha256": sha256_file(WORKFLOW),
            "qe": qe_build(), "command": "python3 tests/data/regenerate.py", "dfptmag_commit": commit(),
            "date": datetime.date.today().isoformat(),
            "runs": {"q_K": "K, patterns 1-9, contracted and discarded",
                     "q_-K": "-K, patterns 1-9, contracted and discarded",
                     "q_G": "Gamma, patterns 3 and 9, raw delta-psi captures, "
                             f"{EMPTY_BANDS} empty states (q_G/empty)"},
            "files": files_of(dest)}
    (a.out / "PROVENANCE.json").write_text(json.dumps(prov, indent=1, sort_keys=True) + "\n")
    print(f"wrote {dest} ({sum(f['size'] for f in prov['files'].values()) / 1e6:.1f} MB, "
          f"{len(prov['files'])} files) with QE {prov['qe']['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
