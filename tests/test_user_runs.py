"""Runs made by hand, as docs/tutorial-own-run.md describes: pw.x and ph.x
inputs written here as a user would (prefix 'mylayer', outdir 'scratch/tmp', fildyn and
fildrho under other names, q = K typed in 2π/a), every irrep through ``dfptmag capture`` on
the command line, then ``dfptmag analyze``.

The matrix: an even (2×2) grid with ph.x in 1, 2 and 3 pools and an odd (3×1) grid in 1 and 2
pools (QE 6.7 deals out blocks of (k, k+q) evenly, the first pools taking one more: the table
of docs/tutorial-own-run.md; the even grid in 3 pools and the odd one in 2 are both uneven
splits, so the odd grid in 3 pools, a third uneven split by the same rule, is not run). All cells of one grid start from the same serial pw.x scf (copied), so they differ only
in ph.x's pool layout; each must equal its own fildrho exactly, and the serial cell's pattern
results within the scatter of ph.x's own fildrho between the two runs (1e-12 relative on QE 6.7;
~1e-5 on the 7.x builds, which are not bitwise reproducible).
Also: re-capturing a finished irrep keeps the earlier capture byte-identical, and capture
integrity: zeroed, truncated or swapped δψ captures fail with the file named, with
and without fildrho, for both writers (``dfptmag capture`` and the workflow runner).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import CELL_INTEGRAL_PER_SCATTER, ROOT, TINY, phx_drho

pytestmark = pytest.mark.qe

PREFIX, OUTDIR = "mylayer", "scratch/tmp"
GRIDS = {"even": "2 2 1", "odd": "3 1 1"}
POOLS = {"even": (1, 2, 3), "odd": (1, 2)}
K_TPIBA = "0.3333333333333333 0.5773502691896258 0.0"      # K = (b1 + b2)/3 in 2π/a
TIMES: dict[str, float] = {}

PW_IN = """&control
  calculation = 'scf', prefix = '{prefix}', outdir = '{outdir}', pseudo_dir = '{pseudo}'
/
&system
  ibrav = 0, nat = 3, ntyp = 2, ecutwfc = 20.0,
  noncolin = .true., lspinorb = .true., nosym = .true., noinv = .true., occupations = 'fixed'
/
&electrons
  conv_thr = 1.0d-10, mixing_beta = 0.5, mixing_mode = 'local-TF'
/
ATOMIC_SPECIES
W  183.84 W.rel-pbe-nc.UPF
Se 78.971 Se.rel-pbe-nc.UPF
CELL_PARAMETERS angstrom
   3.32  0.0                0.0
  -1.66  2.875204340564336  0.0
   0.0   0.0               10.0
ATOMIC_POSITIONS angstrom
W   0.0  0.0                0.0
Se  0.0  1.916802893709557  1.68
Se  0.0  1.916802893709557 -1.68
K_POINTS automatic
{grid} 0 0 0
"""

PH_IN = """phonons at K, written by hand
&inputph
  prefix = '{prefix}', outdir = '{outdir}', tr2_ph = 1.0d-14, fildyn = 'mylayer.dyn',
  {extra}
/
{q}
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    if os.geteuid() == 0:
        env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    return env


def _launch(exe: str, npool: int, infile: str) -> list[str]:
    if npool == 1:
        return [exe, "-in", infile]
    return ["mpirun", "--oversubscribe", "-np", str(npool), exe, "-nk", str(npool), "-in", infile]


def _qe(cmd, cwd, log, key):
    t0 = time.time()
    with open(cwd / log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_env())
    TIMES[key] = TIMES.get(key, 0.0) + time.time() - t0
    assert proc.returncode == 0 and "JOB DONE" in (cwd / log).read_text(), (cmd, (cwd / log).read_text()[-2000:])


def cli(*args, cwd=None, key=None):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=_env())
    if key:
        TIMES[key] = TIMES.get(key, 0.0) + time.time() - t0
    return proc


def capture(cell: Path, npool: int, irr: int, fildrho: bool = True, redo: bool = False):
    extra = f"recover = .true., start_irr = {irr}, last_irr = {irr}"
    if fildrho:
        extra += ", fildrho = 'dvscf'"
    (cell / f"ph.irr{irr}.in").write_text(PH_IN.format(prefix=PREFIX, outdir=OUTDIR, extra=extra, q=K_TPIBA))
    return cli("capture", "--dir", ".", *(["--redo"] if redo else []), "--", *_launch("ph.x", npool, f"ph.irr{irr}.in"), cwd=cell,
               key="capture (ph.x)")


@pytest.fixture(scope="module")
def matrix(qe_cache, tmp_path_factory):
    """{(grid, npool): cell directory}, each with irrep 3 captured (with fildrho); the odd
    2-pool cell also has irrep 1 (without fildrho)."""
    if shutil.which("pw.x") is None:
        pytest.skip("Quantum ESPRESSO not installed")
    from dfptmag.workflow import config, pseudo
    root = tmp_path_factory.mktemp("user_runs")
    pseudos = root / "upf"
    for ld1 in config.load(TINY).pseudopotentials.values():
        pseudo.generate(ld1, pseudos)
    cells = {}
    for grid, kgrid in GRIDS.items():
        for npool in POOLS[grid]:
            cell = root / f"{grid}_np{npool}"
            cell.mkdir()
            if npool == 1:
                (cell / OUTDIR).mkdir(parents=True)      # pw.x makes one directory level only
                (cell / "scf.in").write_text(PW_IN.format(prefix=PREFIX, outdir=OUTDIR, pseudo=pseudos,
                                                          grid=kgrid))
                _qe(["pw.x", "-in", "scf.in"], cell, "scf.out", "pw.x scf")
                scf = cell
            else:                                        # the serial pw.x outputs only
                shutil.copytree(scf / "scratch", cell / "scratch", ignore=shutil.ignore_patterns("_ph0"))
            (cell / "ph.wfc.in").write_text(PH_IN.format(prefix=PREFIX, outdir=OUTDIR, q=K_TPIBA,
                                                         extra="only_wfc = .true."))
            _qe(_launch("ph.x", npool, "ph.wfc.in"), cell, "ph.wfc.out", "ph.x only_wfc")
            proc = capture(cell, npool, 3)
            assert proc.returncode == 0, proc.stderr
            cells[grid, npool] = cell
    proc = capture(cells["odd", 2], 2, 1, fildrho=False)
    assert proc.returncode == 0, proc.stderr
    # only_wfc in 3 pools, the captured irrep in 2: ψ buffer rewritten with 2 pools, wfc3 left over
    cell = root / "odd_mixed"
    cell.mkdir()
    shutil.copytree(cells["odd", 1] / "scratch", cell / "scratch", ignore=shutil.ignore_patterns("_ph0"))
    (cell / "ph.wfc.in").write_text(PH_IN.format(prefix=PREFIX, outdir=OUTDIR, q=K_TPIBA, extra="only_wfc = .true."))
    _qe(_launch("ph.x", 3, "ph.wfc.in"), cell, "ph.wfc.out", "ph.x only_wfc")
    proc = capture(cell, 2, 3)
    assert proc.returncode == 0, proc.stderr
    cells["odd", "mixed"] = cell
    yield cells
    print("\nQE time of the user-run matrix (s): " + ", ".join(f"{k} {v:.1f}" for k, v in TIMES.items())
          + f"; total {sum(TIMES.values()):.1f}")


def analyze(cell: Path, out: Path, *extra):
    proc = cli("analyze", cell, "-o", out, "--quiet", *extra)
    return proc


def _read(h5):
    with h5py.File(h5) as f:
        g = f["q"][list(f["q"])[0]]
        return {"index": g["patterns/index"][()], "ci": g["patterns/cell_integral"][()],
                "field": g["patterns/field"][()], "attrs": dict(g.attrs),
                "drho": g["checks/drho_relative_error"][()]}


@pytest.fixture(scope="module")
def results(matrix, tmp_path_factory):
    out = tmp_path_factory.mktemp("user_results")
    res = {}
    for key, cell in matrix.items():
        proc = analyze(cell, out / f"{key[0]}_{key[1]}.h5")
        assert proc.returncode == 0, proc.stderr
        res[key] = _read(out / f"{key[0]}_{key[1]}.h5")
    return res


def _sha(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _drho(cell: Path, r: dict, pattern: int = 3) -> np.ndarray:
    """ph.x's own fildrho record of ``pattern`` in a cell (the capture's copy)."""
    return phx_drho(cell, pattern, r["field"].shape[2:])


def _compare(matrix, results, ref_key, key):
    """Cell vs serial cell, pattern 3. ph.x itself does not give bitwise equal δψ in different
    pool layouts (its sums over k run in another order); the part of the difference that is
    ph.x's is measured on its own fildrho, which dfptmag's charge channel equals per cell to
    ~5e-16 (so a wrong record mapping, an O(1) error, cannot hide)."""
    ref, got = results[ref_key], results[key]
    i, j = list(got["index"]).index(3), list(ref["index"]).index(3)
    rel = lambda a, b: np.max(np.abs(a - b)) / np.max(np.abs(b))      # noqa: E731
    d_got, d_ref = _drho(matrix[key], got), _drho(matrix[ref_key], ref)
    out = {"field": rel(got["field"][i], ref["field"][j]), "cell_integral": rel(got["ci"][i], ref["ci"][j]),
           "phx_drho": rel(d_got, d_ref), "ours_vs_own_drho": rel(2 * got["field"][i, 0], d_got),
           # the layout difference of our charge channel is exactly ph.x's
           "diff_vs_phx_diff": np.max(np.abs(2 * (got["field"][i, 0] - ref["field"][j, 0]) - (d_got - d_ref)))
           / np.max(np.abs(d_ref))}
    print(f"{key} vs serial: " + ", ".join(f"{k} {v:.2e}" for k, v in out.items()))
    assert out["ours_vs_own_drho"] <= 1e-14
    assert out["diff_vs_phx_diff"] <= 1e-14
    # two separate ph.x runs agree within the scatter ph.x's own fildrho shows between them: on
    # QE 6.7 3e-13 – 8e-13 (field = ph.x's drho difference; cell integrals 3e-12 – 1.1e-11, the
    # G = 0 integrals cancel), on the 7.x builds 2e-6 – 2e-5 (not bitwise reproducible)
    assert out["field"] <= max(1e-12, 2 * out["phx_drho"])
    assert out["cell_integral"] <= max(3e-11, CELL_INTEGRAL_PER_SCATTER * out["phx_drho"])
    assert np.abs(ref["ci"][j]).max() > 1e-4


@pytest.mark.parametrize("grid, npool", [(g, n) for g in sorted(GRIDS) for n in POOLS[g] if n > 1],
                         ids=lambda v: str(v))
def test_pools_equal_serial(matrix, results, grid, npool):
    _compare(matrix, results, (grid, 1), (grid, npool))


def test_pool_counts_differ_between_runs(matrix, results):
    """only_wfc in 3 pools, the irrep in 2: the 3-pool run's leftover ψ file is ignored (and
    said so); the numbers equal the serial run's."""
    _compare(matrix, results, ("odd", 1), ("odd", "mixed"))
    got = results["odd", "mixed"]
    assert re.search(r"mylayer\.wfc3: ignored \(process 3; the buffer was written by 2 pool\(s\)\)",
                     got["attrs"]["input_notes"])


def test_pool_layout_is_qe_divide_et_impera(matrix):
    """The capture files of the uneven cells hold what QE 6.7's rule predicts: 4 pairs in 3
    pools = 2 + 1 + 1, 3 pairs in 2 pools = 2 + 1 (record = nbnd·2·npwx complex numbers)."""
    from dfptmag.io.qe_buffers import pool_ranges
    from dfptmag.io.qe_xml import read_data_file_schema
    for (_grid, npool), cell in matrix.items():
        if npool == "mixed":
            npool = 2
        man = json.loads((cell / "dfptmag-q.json").read_text())
        cap = man["captures"]["3"]
        assert cap["npool"] == npool and cap["irrep"] == 3
        x = read_data_file_schema(cell / OUTDIR / "_ph0" / f"{PREFIX}.save" / "data-file-schema.xml")
        recl = x.nbnd * 2 * x.npwx * 16
        sizes = [(cell / f).stat().st_size // recl for f in cap["dwf"]]
        want = [n // 2 for _, n in pool_ranges(len(x.xk), npool, 2) if n]
        assert sizes == want
    assert [n for _, n in pool_ranges(8, 3, 2)] == [4, 2, 2]
    assert [n for _, n in pool_ranges(6, 2, 2)] == [4, 2]


def test_modes_message_names_pattern_count(results):
    assert results["even", 1]["attrs"]["modes_missing_reason"] == "modes need all 9 patterns; 1 computed"


def test_recapture_keeps_files_and_says_how_to_redo(matrix, tmp_path):
    cell = tmp_path / "cell"
    shutil.copytree(matrix["odd", 2], cell)
    cap_files = sorted((cell / "capture").iterdir())
    before = _sha(cap_files)
    man_before = (cell / "dfptmag-q.json").read_bytes()
    proc = capture(cell, 2, 3)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    done = cell / OUTDIR / "_ph0" / f"{PREFIX}.phsave" / "dynmat.1.3.xml"
    assert f"irrep 3 is already done ({done} marks it" in lines[0] and "kept unchanged" in lines[0]
    assert "To redo irrep 3, run the same command with 'dfptmag capture --redo'" in lines[0]
    assert sorted((cell / "capture").iterdir()) == cap_files and _sha(cap_files) == before
    assert (cell / "dfptmag-q.json").read_bytes() == man_before
    # following the advice redoes the irrep; the new capture replaces the old one
    proc = capture(cell, 2, 3, redo=True)
    assert proc.returncode == 0, proc.stderr
    man = json.loads((cell / "dfptmag-q.json").read_text())
    new = [cell / f for f in man["captures"]["3"]["dwf"]]
    assert all(p.is_file() for p in new) and not any(p in cap_files for p in new)
    assert not (cell / "capture" / "dwf.irr3.1").exists()       # old files gone only now
    proc = analyze(cell, tmp_path / "redo.h5")
    assert proc.returncode == 0, proc.stderr
    old = _read_cell_h5(matrix["odd", 2], tmp_path / "orig.h5")
    redo = _read(tmp_path / "redo.h5")
    i, j = list(redo["index"]).index(3), list(old["index"]).index(3)
    rel = np.max(np.abs(redo["ci"][i] - old["ci"][j])) / np.max(np.abs(old["ci"][j]))
    # the redo is a second ph.x run: exact against its own fildrho, and within the scatter of
    # ph.x's own fildrho between the two runs (0 on QE 6.7, which is bitwise reproducible)
    assert redo["drho"][i] <= 1e-12
    d_redo, d_old = _drho(cell, redo), _drho(matrix["odd", 2], old)
    scatter = np.max(np.abs(d_redo - d_old)) / np.max(np.abs(d_old))
    assert rel <= max(1e-12, CELL_INTEGRAL_PER_SCATTER * scatter), (rel, scatter)


def _read_cell_h5(cell, out):
    proc = analyze(cell, out)
    assert proc.returncode == 0, proc.stderr
    return _read(out)


def test_trailing_records_ignored_and_recorded(matrix, tmp_path, results):
    """ψ buffer files with records past their pool's points: ph.x 6.7 itself leaves one in some
    layouts (e.g. 3 pools, 4 pairs: the second file holds 3 records for 2 points), and a buffer
    reused by a later run with more pools keeps its old tail. Accepted, the same numbers, and
    the output says what was ignored."""
    print("notes of the 3-pool even cell:", results["even", 3]["attrs"].get("input_notes"))
    cell = tmp_path / "cell"
    shutil.copytree(matrix["even", 2], cell)
    buf = cell / OUTDIR / "_ph0" / f"{PREFIX}.wfc2"
    before = buf.stat().st_size // 4                              # one record: 4 points in pool 2
    with open(buf, "ab") as f:
        f.write(buf.read_bytes()[:before])
    proc = analyze(cell, tmp_path / "t.h5")
    assert proc.returncode == 0, proc.stderr
    r = _read(tmp_path / "t.h5")
    assert np.array_equal(r["ci"], results["even", 2]["ci"])
    assert f"{buf}: 1 trailing record(s) ignored (pool 2 of 2 uses 4 of 5)" in r["attrs"]["input_notes"]


def test_missing_records_message_says_what_is_wrong(matrix, tmp_path):
    cell = tmp_path / "cell"
    shutil.copytree(matrix["even", 2], cell)
    buf = cell / OUTDIR / "_ph0" / f"{PREFIX}.wfc2"
    with open(buf, "r+b") as f:
        f.truncate(buf.stat().st_size // 4 * 3)                  # 4 records → 3
    proc = analyze(cell, tmp_path / "t.h5")
    assert proc.returncode == 2
    assert f"{buf}: pool 2 of 2 holds 3 records, its 4 k-points (5–8) use 4" in proc.stderr


# -- capture integrity: no fildrho needed ---------------------------------------------------
def _corrupt(cell: Path, how: str, victim: str, other: str | None = None):
    v = cell / "capture" / victim
    if how == "zeroed":
        v.write_bytes(bytes(v.stat().st_size))
    elif how == "truncated":
        with open(v, "r+b") as f:
            f.truncate(v.stat().st_size - 16)
    elif how == "swapped":
        o = cell / "capture" / other
        a, b = v.read_bytes(), o.read_bytes()
        v.write_bytes(b)
        o.write_bytes(a)
    return v


CORRUPT = [("zeroed", "dwf.irr3.1", None, "dwf.irr3.1", "capture of irrep 3 changed since capture: sha256 differs"),
           ("zeroed", "dwf.irr1.2", None, "dwf.irr1.2", "capture of irrep 1 changed since capture: sha256 differs"),
           ("truncated", "dwf.irr3.2", None, "dwf.irr3.2", "capture of irrep 3 truncated since capture"),
           ("truncated", "dwf.irr1.1", None, "dwf.irr1.1", "capture of irrep 1 truncated since capture"),
           ("swapped", "dwf.irr3.1", "dwf.irr1.1", "dwf.irr1.1", "capture of irrep 1 holds the data of irrep 3"),
           ("swapped", "dwf.irr3.2", "dwf.irr1.2", "dwf.irr1.2", "capture of irrep 1 holds the data of irrep 3")]


@pytest.mark.parametrize("how,victim,other,named,message", CORRUPT)
@pytest.mark.parametrize("field", ["field", "no-field"])
def test_corrupted_capture_named(matrix, tmp_path, how, victim, other, named, message, field):
    """Irrep 3 was captured with fildrho, irrep 1 without: the checksums catch both (a swap
    is reported on the first irrep checked)."""
    cell = tmp_path / "cell"
    shutil.copytree(matrix["odd", 2], cell)
    _corrupt(cell, how, victim, other)
    v = cell / "capture" / named
    out = tmp_path / "x.h5"
    proc = analyze(cell, out, *(["--no-field"] if field == "no-field" else []))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"dfptmag: error: {v}: ") and message in lines[0], proc.stderr
    assert not out.exists()


def test_old_manifest_without_checksums_loads(matrix, tmp_path, results):
    cell = tmp_path / "cell"
    shutil.copytree(matrix["even", 2], cell)
    man = json.loads((cell / "dfptmag-q.json").read_text())
    for cap in man["captures"].values():
        for k in ("checksums", "npool", "irrep", "q_tpiba"):
            cap.pop(k)
    (cell / "dfptmag-q.json").write_text(json.dumps(man))
    proc = analyze(cell, tmp_path / "o.h5")
    assert proc.returncode == 0, proc.stderr
    r = _read(tmp_path / "o.h5")
    assert np.array_equal(r["ci"], results["even", 2]["ci"])
    assert "only fildrho guards them" in r["attrs"]["input_notes"]


def test_runner_records_checksums(tiny_run, tmp_path):
    """The workflow's own writer (Runner.qpoint): redo pattern 3 of a copy of the tiny run (as
    the capture error advises: delete its dynmat file), then corrupt it."""
    from dfptmag.workflow import capture, config
    from dfptmag.workflow.runner import Runner
    runner, dirs = tiny_run
    run = tmp_path / "run"
    shutil.copytree(runner.run_dir, run, ignore=shutil.ignore_patterns("q_G", "q_-K"))
    q = run / "q_K"
    (q / "ph.irr3.done").unlink()
    capture.redo_irrep(q / "out" / "_ph0", "wse2", 3)       # after ph.final: status 30 → 20
    t0 = time.time()
    Runner(config.load(TINY), run, progress=False).run([config.parse_q("K", "test")], [3])
    TIMES["runner pattern 3"] = time.time() - t0
    cap = json.loads((q / "dfptmag-q.json").read_text())["captures"]["3"]
    assert cap["irrep"] == 3 and cap["npool"] == 2 and len(cap["checksums"]) == 3
    for name, c in cap["checksums"].items():
        assert c["sha256"] == hashlib.sha256((q / name).read_bytes()).hexdigest()
    v = q / cap["dwf"][0]
    v.write_bytes(bytes(v.stat().st_size))
    for extra in ([], ["--no-field"]):
        proc = analyze(q, tmp_path / "x.h5", *extra)
        assert proc.returncode == 2 and f"{v}: capture of irrep 3 changed since capture" in proc.stderr
