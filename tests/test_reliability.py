"""Failure and recovery: no QE process outlives dfptmag (SIGKILL included), one command per
directory (locks), every step redone from a clean state after a kill, corrupted data never exits
0, a failing q-point does not lose the others.

The fault-injection test SIGKILLs a real `dfptmag run --q K --patterns 1,2` at five moments (pw.x
scf, ph.x only_wfc, ph.x irrep 0, inside the captured pattern 1, the analysis), checks after
each kill that no process is left working in the run directory, reruns, and compares the final
result with the uninterrupted run of the session fixture.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dfptmag.workflow import locks
from conftest import CELL_INTEGRAL_PER_SCATTER, phx_drho, run_scatter

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "workflows" / "wse2-tiny.toml"
SUPERVISE = ROOT / "dfptmag" / "workflow" / "supervise.py"


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "dfptmag.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _procs_in(directory) -> list[tuple[int, str]]:
    """Every process (any name) whose current directory is inside ``directory``."""
    root = os.path.realpath(directory)
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + os.sep)):
            out.append((int(pid), comm))
    return out


def _wait_empty(directory, limit=20.0) -> float:
    t0 = time.time()
    while _procs_in(directory):
        if time.time() - t0 > limit:
            raise AssertionError(f"processes survive in {directory}: {_procs_in(directory)}")
        time.sleep(0.1)
    return time.time() - t0


# -- supervisor and locks (real processes, no QE) ---------------------------------------------------

@pytest.mark.parametrize("inner", ["sleep 301 & setsid sleep 302 & wait",
                                   "exec mpirun -np 2 sleep 303"])
def test_supervisor_stops_everything_when_its_parent_is_killed(tmp_path, inner):
    """The parent (standing in for dfptmag) is SIGKILLed: the supervisor stops the command's
    whole tree — including a process that left the session (setsid) and MPI ranks — within its
    5 s grace period."""
    from conftest import real_program
    if "mpirun" in inner and real_program("mpirun") is None:
        pytest.skip("no mpirun")
    work = tmp_path / "w"
    work.mkdir()
    parent_code = (f"import os, subprocess, sys, time\n"
                   f"subprocess.Popen([sys.executable, {str(SUPERVISE)!r}, '--parent', str(os.getpid()), '--',"
                   f" 'sh', '-c', {inner!r}], cwd={str(work)!r}, start_new_session=True,"
                   f" env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1'))\n"
                   f"time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    t0 = time.time()
    while len([c for _, c in _procs_in(work) if c == "sleep"]) < 2 and time.time() - t0 < 20:
        time.sleep(0.1)
    assert len([c for _, c in _procs_in(work) if c == "sleep"]) >= 2
    parent.kill()
    parent.wait()
    assert _wait_empty(work, limit=10.0) < 10.0


def test_supervisor_passes_the_exit_code(tmp_path):
    r = subprocess.run([sys.executable, str(SUPERVISE), "--parent", str(os.getpid()), "--", "sh", "-c", "exit 3"],
                       start_new_session=True)
    assert r.returncode == 3


def test_second_command_gets_the_lock_message_and_touches_nothing(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\nfrom dfptmag.workflow import locks\n"
                               f"with locks.locked({str(run_dir)!r}, 'test holder'):\n"
                               "    print('held', flush=True)\n    time.sleep(600)\n"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    before = sorted(p.name for p in run_dir.iterdir())
    p = _cli("run", TINY, "--run-dir", run_dir, "--quiet")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert len(err.strip().splitlines()) == 1
    assert f"in use by PID {holder.pid} on " in err and "(test holder)" in err
    assert sorted(p.name for p in run_dir.iterdir()) == before        # no pseudo/, no scf/
    # a dead holder's lock is taken over (the kernel released it)
    holder.kill()
    holder.wait()
    with locks.locked(run_dir, "next") as lockfile:
        assert json.loads(lockfile.read_text())["pid"] == os.getpid()


def test_live_qe_process_in_a_directory_is_refused(tmp_path):
    """A process named ph.x still working in a q directory (left by a command whose supervisor
    could not stop it) makes the task refuse to start."""
    qdir = tmp_path / "q_K"
    qdir.mkdir()
    fake = tmp_path / "ph.x"
    shutil.copy(shutil.which("sleep"), fake)
    proc = subprocess.Popen([str(fake), "60"], cwd=qdir)
    t0 = time.time()                   # Popen may return before the child's exec: wait for it
    while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "ph.x" and time.time() - t0 < 10:
        time.sleep(0.02)
    try:
        with pytest.raises(locks.LockedError, match=rf"QE processes still work here: ph.x \(PID {proc.pid}\)"):
            with locks.task(qdir):
                pass
    finally:
        proc.kill()
        proc.wait()
    with locks.task(qdir):
        pass


# -- fault injection on a real tiny run --------------------------------------------------------------

def _pattern_integrals(path, label="K"):
    with h5py.File(path) as f:
        g = f["q"][label]["patterns"]
        return g["index"][()], g["cell_integral"][()], g["field"][()]


@pytest.mark.qe
def test_sigkill_at_five_moments_then_resume_equals_uninterrupted(tiny_run, analyzed_run, tmp_path):
    run_dir = tmp_path / "run"
    out = run_dir / "res.h5"
    args = ("run", TINY, "--q", "K", "--patterns", "1,2", "--run-dir", run_dir, "-o", out, "--quiet",
            "--no-snapshots")

    def in_step(step):
        def ready():
            live = [c for _, c in _procs_in(run_dir) if c in ("pw.x", "ph.x")]
            return (run_dir / f"{step}.in").is_file() and bool(live)
        return ready

    def analysing():
        return (run_dir / "q_K" / "ph.irr2.done").is_file()

    kill_points = [("scf", in_step("scf/pw.scf"), 1.0), ("only_wfc", in_step("q_K/ph.wfc"), 0.5),
                   ("irrep 0", in_step("q_K/ph.irr0"), 0.3), ("captured pattern 1", in_step("q_K/ph.irr1"), 3.0),
                   ("analysis", analysing, 0.0)]
    hits, survivors = [], []
    for name, ready, delay in kill_points:
        p = _cli(*args)
        t0 = time.time()
        while not ready() and p.poll() is None and time.time() - t0 < 300:
            time.sleep(0.05)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            hits.append(name)
        p.communicate()
        survivors.append(_wait_empty(run_dir, limit=15.0))
    # kill points that landed: the four QE moments always (the analysis one when not too late)
    assert hits[:4] == [k[0] for k in kill_points[:4]], hits
    assert max(survivors) < 15.0
    p = _cli(*args)
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    assert not list(run_dir.glob(".res.part-*.h5"))
    idx, ci, field = _pattern_integrals(out)
    ref = analyzed_run["K"]
    assert list(idx) == [1, 2]
    rel = np.abs(ci - ref["pattern_cell_integral"][:2]).max() / np.abs(ref["pattern_cell_integral"][:2]).max()
    relf = np.abs(field - ref["pattern_field"][:2]).max() / np.abs(ref["pattern_field"][:2]).max()
    # the kills hit the scf, so every QE step was recomputed: the resumed run is a second run of
    # the build, exact against its own fildrho and within the build's run-to-run scatter (ph.x's
    # own fildrho between the two runs: 0 on QE 6.7, which is bitwise reproducible; ~1e-5 on 7.x)
    with h5py.File(out) as f:
        assert f["q/K/checks/drho_relative_error"][()].max() <= 1e-12
    scatter = run_scatter(run_dir / "q_K", tiny_run[1]["K"], [1, 2], field.shape[2:])
    assert rel <= max(1e-12, CELL_INTEGRAL_PER_SCATTER * scatter) and relf <= max(1e-12, 2 * scatter), \
        (rel, relf, scatter)
    print(f"kill points that landed: {len(hits)} ({', '.join(hits)}); slowest cleanup "
          f"{max(survivors):.1f} s; final relative difference {rel:.1e} (cell integrals), {relf:.1e} (field); "
          f"ph.x's own run-to-run scatter {scatter:.1e}")

    # ph.x finished pattern 2 but its dfptmag died before the marker: ph.x's restart data says
    # "done" without our marker. Two commands start together on the directory: one redoes the
    # pattern from a clean state, the other gets the lock message and exits 2.
    drho_before = phx_drho(run_dir / "q_K", 2, field.shape[2:])
    (run_dir / "q_K" / "ph.irr2.done").unlink()
    assert (run_dir / "q_K" / "out" / "_ph0" / "wse2.phsave" / "dynmat.1.2.xml").is_file()
    out.unlink()
    procs = [_cli(*args), _cli(*args)]
    res = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in res)
    assert codes == [0, 2], res
    loser = next(e for c, e in res if c == 2)
    assert "in use by PID" in loser and len(loser.strip().splitlines()) == 1
    idx2, ci2, field2 = _pattern_integrals(out)
    # pattern 2 was recomputed: equal within this build's scatter (its own fildrho, before and
    # after; bitwise on QE 6.7), pattern 1 was not: bitwise on every build
    d2 = phx_drho(run_dir / "q_K", 2, field.shape[2:])
    scatter2 = float(np.abs(d2 - drho_before).max() / np.abs(drho_before).max())
    assert np.array_equal(ci2[0], ci[0])
    assert np.array_equal(ci2, ci) or np.abs(ci2 - ci).max() <= max(1e-12, CELL_INTEGRAL_PER_SCATTER * scatter2) * np.abs(ci).max()


# -- honest numbers and partial results (copies of the session's real run) ---------------------------

def _qcopy(src, dst):
    """A copy of a q-run directory whose manifest keeps only the pre-checksum fields, so that
    the charge oracle alone has to catch what is done to the captures."""
    from dfptmag.io.qrun_dir import read_manifest, write_manifest
    shutil.copytree(src, dst)
    man = read_manifest(dst)
    man["captures"] = {k: {"dwf": v["dwf"], "drho": v["drho"]} for k, v in man["captures"].items()}
    write_manifest(dst, man)
    return dst


def _run_main(argv, capsys):
    from dfptmag.cli import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("field", [True, False], ids=["grid", "G=0 only"])
@pytest.mark.parametrize("damage", ["zeroed", "swapped"])
def test_charge_oracle_is_enforced(stored_runs, tmp_path, capsys, field, damage):
    """On the stored Γ run's raw δψ (patterns 3 and 9): a zeroed or a swapped capture fails the
    charge oracle, with the pattern and fildrho named; overriding records the failure."""
    q = _qcopy(stored_runs["G"], tmp_path / "qG")
    cap = q / "capture"
    if damage == "zeroed":                        # right size, all zeros
        victim = cap / "dwf.irr3.1"
        victim.write_bytes(bytes(victim.stat().st_size))
        damaged = (3,)
    else:                                          # irrep 3's δψ where irrep 9's is expected and back
        for r in (1, 2):
            a, b = cap / f"dwf.irr3.{r}", cap / f"dwf.irr9.{r}"
            a.rename(tmp_path / "t")
            b.rename(a)
            (tmp_path / "t").rename(b)
        damaged = (3, 9)
    out = tmp_path / "o.h5"
    argv = ["analyze", q, "-o", out, "--quiet"] + ([] if field else ["--no-field"])
    code, err = _run_main(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    named = [p for p in damaged if f"{cap / f'drho.irr{p}'}: charge check failed for pattern {p} (" in err]
    assert named, err                              # the worst of the damaged patterns is named
    assert ("on the grid" if field else "at fildrho's") in err
    assert not out.exists()
    code, err = _run_main(argv + ["--allow-charge-mismatch"], capsys)
    assert code == 0, err
    with h5py.File(out) as f:
        note = f["q/G/checks"].attrs["charge_check"]
        errs = dict(zip(f["q/G/patterns/index"][()], f["q/G/checks/drho_relative_error"][()]))
    assert note.startswith("FAILED, overridden by --allow-charge-mismatch: patterns [") and str(damaged[0]) in note
    assert all(errs[p] > 1e-3 for p in damaged)
    assert all(errs[p] < 1e-8 for p in errs if p not in damaged)


def test_charge_oracle_passes_and_is_recorded(stored_runs, tmp_path, capsys):
    out = tmp_path / "o.h5"
    code, err = _run_main(["analyze", stored_runs["G"], "-o", out, "--quiet", "--no-field"], capsys)
    assert code == 0, err
    with h5py.File(out) as f:
        c = f["q/G/checks"]
        assert c.attrs["charge_check"].startswith("passed: max relative error ")
        assert np.nanmax(c["drho_g0_relative_error"][()]) < 1e-10       # measured ~1e-13
        assert c.attrs["charge_tolerance"] == 1e-6


def test_analyze_keeps_the_good_q_points_and_records_the_failure(stored_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(stored_runs["K"], run / "q_K")
    shutil.copytree(stored_runs["G"], run / "q_G")
    (run / "q_G" / "capture" / "dwf.irr9.1").unlink()
    out = tmp_path / "o.h5"
    code, err = _run_main(["analyze", run, "-o", out, "--quiet", "--no-field"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("dfptmag: error: q G: ") and "dwf.irr9.1" in lines[0]
    assert lines[-1].startswith("dfptmag: error: 1 of 2 q-points failed (G): the others are in")
    with h5py.File(out) as f:
        assert list(f["q"]) == ["K"]
        assert not f.attrs["complete"]
        assert "dwf.irr9.1" in f["failures"].attrs["G"]


def test_duplicate_labels_are_an_error(stored_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(stored_runs["K"], run / "a")
    shutil.copytree(stored_runs["K"], run / "b")
    out = tmp_path / "o.h5"
    code, err = _run_main(["analyze", run, "-o", out, "--quiet", "--no-field"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{run / 'b' / 'dfptmag-q.json'}: q label 'K' is also the label of {run / 'a'}" in err
    assert not out.exists()
