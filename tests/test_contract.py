"""Contract-and-discard (``--discard-dwf``, ``[storage] discard_dwf``): each pattern's δψ is
contracted as soon as it is captured, verified against ph.x's fildrho, written durably, recorded,
and only then deleted; the q's ph.x scratch goes once every pattern is contracted.

Oracles: the keep-everything analysis of the same δψ (bitwise: same kernels, same k order, the
G = 0 product batched per irrep in both paths) and ph.x's fildrho. The kill test SIGKILLs a real
``dfptmag run --discard-dwf`` at each step of the contraction and resumes it; the damaged-capture
test shows that nothing unverified is deleted.
"""
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import CELL_INTEGRAL_PER_SCATTER, contract_captures, run_scatter

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "workflows" / "wse2-tiny.toml"


def _arrays(r: dict) -> dict:
    return {k: v for k, v in r.items() if isinstance(v, np.ndarray) and v.dtype != object}


def _contract_all(qdir: Path) -> dict:
    """Every irrep of a finished q-run contracted and its δψ deleted, then the scratch removal:
    returns {irrep: manifest record}."""
    from dfptmag.workflow import capture
    recs = contract_captures(qdir)
    capture.remove_scratch(qdir)
    return recs


@pytest.mark.qe
def test_contracted_analysis_equals_keep_everything_bitwise(tiny_run, analyzed_run, tmp_path):
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    from dfptmag.io.qrun_dir import read_manifest
    src = tiny_run[1]["K"]
    q = shutil.copytree(src, tmp_path / "q_K")
    before = sum(f.stat().st_size for f in q.rglob("*") if f.is_file())
    recs = _contract_all(q)
    after = sum(f.stat().st_size for f in q.rglob("*") if f.is_file())
    man = read_manifest(q)
    assert not list((q / "capture").glob("dwf.*")), "δψ must be gone"
    assert not list((q / "out").rglob("*.dat")) and not list((q / "out").rglob("wse2.wfc*"))
    assert man["scratch_removed"]["bytes"] > 0
    assert all(r["charge_error"] <= 1e-12 for r in recs.values()), recs       # measured 3.3e-16
    ref = _arrays(analyzed_run["K"])
    full = _arrays(analyze_qrun(q, AnalysisOptions()))
    assert set(ref) == set(full)
    differ = [k for k in ref if ref[k].shape != full[k].shape or ref[k].tobytes() != full[k].tobytes()]
    assert differ == [], differ                 # every array bitwise, the field and the checks too
    # without the field (the bands path): the same numbers; the oracle is the one measured on the
    # grid at contraction instead of fildrho's largest Fourier components
    ref0 = _arrays(analyze_qrun(src, AnalysisOptions(realspace=False)))
    g0 = _arrays(analyze_qrun(q, AnalysisOptions(realspace=False)))
    skip = {"drho_relative_error", "drho_probe_miller"}
    differ = [k for k in ref0 if k not in skip and ref0[k].tobytes() != g0[k].tobytes()]
    assert differ == [], differ
    assert np.nanmax(g0["drho_relative_error"]) <= 1e-12
    print(f"q_K: {before / 1e6:.1f} MB kept everything, {after / 1e6:.1f} MB contracted; "
          f"charge errors ≤ {max(r['charge_error'] for r in recs.values()):.1e}")


@pytest.mark.qe
def test_tampered_contracted_file_is_refused(tiny_run, tmp_path):
    from dfptmag.analysis.qrun import analyze_qrun
    from dfptmag.errors import InputFileError
    q = shutil.copytree(tiny_run[1]["K"], tmp_path / "q_K")
    _contract_all(q)
    f = q / "contracted" / "irr3.h5"
    with h5py.File(f, "r+") as h:
        h["density_matrix"][0, 0, 0] += 1e-3
    with pytest.raises(InputFileError, match="irr3.h5.*changed since capture"):
        analyze_qrun(q)


# -- the real command, SIGKILLed at every step of the contraction ------------------------------------
# A child process runs `dfptmag run --discard-dwf` with one function wrapped so that the process
# SIGKILLs itself at that moment (no cleanup can run: what a node failure or `kill -9` does).
_KILLER = textwrap.dedent('''
    import os, signal, sys
    point, args = sys.argv[1], sys.argv[2:]
    from dfptmag.analysis import contract
    from dfptmag.io import qrun_dir
    from dfptmag.results import contracted
    from dfptmag.workflow import capture

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(mod, name, before=False, partial=None):
        orig = getattr(mod, name)
        def f(*a, **k):
            if before:
                die()
            if partial is not None:
                partial(*a, **k)
                die()
            out = orig(*a, **k)
            die()
            return out
        setattr(mod, name, f)

    def half_delete(qdir, irrep, *a, **k):      # the first δψ file deleted, then the kill
        cap = qrun_dir.read_manifest(qdir)["captures"][str(irrep)]
        os.unlink(os.path.join(qdir, cap["dwf"][0]))

    def damage(cmd, out, cwd, ph0, prefix, dest, tag, fildrho):
        dwf, drho = orig_run(cmd, out, cwd, ph0, prefix, dest, tag, fildrho)
        with open(dwf[0], "r+b") as fh:        # zero the records: the oracle must catch it
            fh.write(bytes(os.path.getsize(dwf[0])))
        return dwf, drho

    if point == "contracting":
        wrap(contracted, "write", before=True)
    elif point == "written":
        wrap(contracted, "write")
    elif point == "recorded":
        wrap(qrun_dir, "record_contraction")
    elif point == "deleting":
        wrap(capture, "discard_dwf", partial=half_delete)
    elif point == "discarded":
        wrap(capture, "discard_dwf")
    elif point == "damaged":
        orig_run = capture.captured_run
        capture.captured_run = damage
    from dfptmag.cli import main
    sys.exit(main(args))
''')


def _run(tmp_path, point, *args):
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    return subprocess.run([sys.executable, str(script), point, *map(str, args)], capture_output=True,
                          text=True, timeout=900)


@pytest.mark.qe
def test_sigkill_at_every_contraction_step_then_resume_equals_keep_everything(tiny_run, analyzed_run, tmp_path):
    from dfptmag.io.qrun_dir import read_manifest
    run_dir = tmp_path / "run"
    q = run_dir / "q_K"
    out = run_dir / "res.h5"
    args = ("run", TINY, "--q", "K", "--patterns", "1,2", "--run-dir", run_dir, "-o", out, "--quiet",
            "--no-snapshots", "--discard-dwf")
    phx_runs = []
    for point in ("contracting", "written", "recorded", "deleting", "discarded"):
        r = _run(tmp_path, point, *args)
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-2000:])
        man = read_manifest(q)
        cap = man["captures"]["1"]
        assert not (q / "ph.irr1.done").is_file()          # killed inside pattern 1's step
        # nothing unverified is ever deleted: δψ are complete unless the contraction is recorded
        dwf_left = [p for p in cap["dwf"] if (q / p).is_file()]
        if not cap.get("contracted"):
            assert len(dwf_left) == len(cap["dwf"]) > 0, point
        else:
            c = cap["contracted"]
            assert (q / c["file"]).stat().st_size == c["size"], point
        phx_runs.append((q / "ph.irr1.out").stat().st_mtime)
    r = _run(tmp_path, "none", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "QE steps run: 2," in r.stdout, r.stdout     # resume: only patterns 1 and 2 ran ph.x
    man = read_manifest(q)
    for p in ("1", "2"):
        assert man["captures"][p]["contracted"] and man["captures"][p].get("dwf_discarded")
    assert not list((q / "capture").glob("dwf.*"))
    assert not list(run_dir.rglob(".*.part-*"))
    assert "scratch_removed" not in man             # 2 of 9 patterns: fildyn not written, scratch kept
    with h5py.File(out) as f:
        g = f["q/K/patterns"]
        idx, ci, field = g["index"][()], g["cell_integral"][()], g["field"][()]
        assert f["q/K/checks/drho_relative_error"][()].max() <= 1e-12
    ref = analyzed_run["K"]
    assert list(idx) == [1, 2]
    # a fresh run directory: every QE step ran again, so equal to the session's keep-everything run
    # within ph.x's run-to-run scatter (0 on QE 6.7, bitwise reproducible)
    scatter = run_scatter(q, tiny_run[1]["K"], [1, 2], field.shape[2:])
    rel = np.abs(ci - ref["pattern_cell_integral"][:2]).max() / np.abs(ref["pattern_cell_integral"][:2]).max()
    relf = np.abs(field - ref["pattern_field"][:2]).max() / np.abs(ref["pattern_field"][:2]).max()
    assert rel <= max(1e-12, CELL_INTEGRAL_PER_SCATTER * scatter) and relf <= max(1e-12, 2 * scatter), \
        (rel, relf, scatter)
    print(f"5 SIGKILLs inside pattern 1's contraction, each resumed by redoing pattern 1 only; final "
          f"relative difference to the keep-everything run {rel:.1e} (cell integrals), {relf:.1e} (field); "
          f"ph.x's run-to-run scatter {scatter:.1e}")


@pytest.mark.qe
def test_a_capture_failing_the_charge_oracle_is_kept(tmp_path):
    from dfptmag.io.qrun_dir import read_manifest
    run_dir = tmp_path / "run"
    q = run_dir / "q_K"
    r = _run(tmp_path, "damaged", "run", TINY, "--q", "K", "--patterns", "1", "--run-dir", run_dir,
             "--quiet", "--no-snapshots", "--discard-dwf")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "charge check failed for pattern 1" in err[0], r.stderr
    cap = read_manifest(q)["captures"]["1"]
    assert "contracted" not in cap
    assert all((q / p).is_file() and (q / p).stat().st_size > 0 for p in cap["dwf"])   # kept
    assert not (q / "contracted" / "irr1.h5").exists()
    assert not (q / "ph.irr1.done").exists()           # the step failed: a rerun redoes it
