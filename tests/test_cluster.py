"""The band workflow as independent tasks on a real Slurm (tests/slurm_local.py starts a one-node
Slurm in the session) and on the local engine, with real tiny QE runs.

- The local engine on a copy of the session's sequential tiny run (K, −K): every task is found
  done from the runner's own markers (no QE runs) and bands.h5 is assembled: the reference.
- ``dfptmag bands --engine slurm`` on a two-point path K → K′ from a copy of the same run as
  a contract-and-discard Slurm run would leave it with four pattern tasks still to do (every
  other pattern contracted and its δψ deleted): the pattern tasks run in their own copies of
  the q's ph.x state, as job arrays with afterok dependencies. One pattern task is scancel'ed
  while ph.x runs, another is made to fail (its directory name is taken by a file); status
  reports both, the others finish; the resubmission redoes exactly those two (and the gathers
  and bands that waited for them). Every pattern task contracts its own δψ (checked against
  fildrho) and deletes it, every gather removes its q's ph.x scratch. bands.h5 equals the local
  engine's (δψ kept) to 1e-10 relative in every dataset; each q's contracted results equal the
  sequential run's analysis bitwise, although two patterns of K ran side by side (the Slurm
  node declares 4 CPUs, two tasks of 2).
"""
from __future__ import annotations

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

from conftest import CELL_INTEGRAL_PER_SCATTER, TINY, contract_captures, done_markers, needs_qe

ROOT = Path(__file__).resolve().parent.parent


def workflow_file(tmp: Path, cluster: str | None = None) -> Path:
    """The tiny workflow with absolute paths, the band path K → K′ (2 points), no dispersion."""
    text = TINY.read_text()
    text = text.replace('"../structures/', f'"{ROOT}/structures/').replace('= "pseudo/', f'= "{ROOT}/workflows/pseudo/')
    text = re.sub(r"\[dispersion\].*?(?=\[parallel\])", "", text, flags=re.S)
    text = re.sub(r'path = "GMKG"', 'path = "KKp"', text)
    text = re.sub(r"npoints = 7\b", "npoints = 2", text)
    text += cluster if cluster is not None else ('\n[cluster]\nlauncher = "mpirun -np {nproc}"\n'
                                                 'setup = ["export OMP_NUM_THREADS=1"]\n'
                                                 'time = {default = "00:30:00"}\n')
    path = tmp / "wf.toml"
    path.write_text(text)
    return path


def cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "dfptmag.cli", *map(str, args)], capture_output=True,
                          text=True, env=env or os.environ.copy(), timeout=timeout)


def copy_run(src: Path, dst: Path, parts) -> Path:
    dst.mkdir(parents=True)
    for p in parts:
        shutil.copytree(src / p, dst / p, symlinks=True)
    return dst


# The patterns the Slurm test leaves to Slurm: at K, 3 (scancelled while ph.x iterates, then
# resubmitted) beside 4 and 6 (two pattern tasks of one q side by side); at −K, 5 (made to fail,
# then resubmitted). Every other pattern comes from the session's sequential run, contracted.
RERUN = {"K": (3, 4, 6), "-K": (5,)}


def seeded_run(src: Path, dst: Path, rerun: dict) -> Path:
    """A copy of the sequential run (scf, K, −K) as a Slurm run with contract-and-discard would
    leave it with some pattern tasks still to do: every captured pattern contracted (checked
    against fildrho), recorded and its δψ deleted, by the functions the pattern tasks call; the
    patterns in ``rerun`` and each q's gather without their markers (and those patterns without
    ph.x's log, as in a run that has not reached them). QE then runs only those."""
    run = copy_run(src, dst, ["pseudo", "scf", "q_K", "q_-K"])
    for label, patterns in rerun.items():
        q = run / f"q_{label}"
        contract_captures(q)
        for name in [f"ph.irr{p}.{ext}" for p in patterns for ext in ("done", "out")] + ["ph.final.done"]:
            (q / name).unlink()
    return run


def status_rows(out: str) -> dict[str, str]:
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(prepare|dispersion|bands|q/\S+)\s+(done|running|pending|failed|cancelled|not submitted)\b", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


# datasets that depend on the basis chosen inside a degenerate subspace (or on eigenvectors
# through branch tracking): two runs that are not bitwise equal may differ in them at O(1)
BASIS_DEPENDENT = ("modes/cell_integral", "modes/eigenvector", "modes/rms", "modes/rms_inplane",
                   "modes/rms_outofplane", "modes/branch", "modes/branch_overlap", "dispersion/branch")


def compare_bands(a: Path, b: Path, rtol: float, skip=()) -> float:
    """Largest relative difference over every dataset but ``skip`` (scale: the dataset's largest |value|)."""
    worst = 0.0
    with h5py.File(a) as fa, h5py.File(b) as fb:
        names = []
        fa.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert names and set(names) == set(
            n for n in _datasets(fb)), "the two files hold different datasets"
        for n in names:
            if n in skip:
                continue
            x, y = fa[n][()], fb[n][()]
            if getattr(x, "dtype", None) is not None and x.dtype.kind in "fc":
                assert x.shape == y.shape, n
                assert np.array_equal(np.isnan(x), np.isnan(y)), n
                scale = np.nanmax(np.abs(y)) if np.isfinite(y).any() else 0.0
                d = float(np.nanmax(np.abs(x - y)) / scale) if scale > 0 else float(np.nanmax(np.abs(x - y)))
                assert d <= rtol, f"{n}: {d:.3e} relative"
                worst = max(worst, d)
            else:
                assert np.array_equal(x, y), n
    return worst


def _datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


@pytest.fixture(scope="module")
def local_bands(tiny_run, tmp_path_factory):
    """bands.h5 of the local engine from a copy of the sequential tiny run (K, −K): no QE runs."""
    runner, dirs = tiny_run
    tmp = tmp_path_factory.mktemp("local_engine")
    wf = workflow_file(tmp)
    run = copy_run(runner.run_dir, tmp / "run", ["pseudo", "scf", "q_K", "q_-K"])
    before = done_markers(run)
    r = cli("bands", wf, "--engine", "local", "--workers", "2", "--run-dir", run, "--format", "png")
    assert r.returncode == 0, r.stderr
    assert done_markers(run) == before          # every QE task found done: nothing ran
    assert (run / "bands.h5").is_file()
    return wf, run


@pytest.mark.qe
def test_local_engine_reuses_sequential_run_and_status(local_bands):
    wf, run = local_bands
    r = cli("status", run)
    assert r.returncode == 0, r.stderr
    rows = status_rows(r.stdout)
    assert len(rows) == 1 + 2 + 18 + 2 + 1 and set(rows.values()) == {"done"}, r.stdout
    # the dry run is calibrated from the finished tasks' measured times and submits nothing
    d = cli("bands", wf, "--engine", "slurm", "--dry-run", "--run-dir", run)
    assert d.returncode == 0, d.stderr
    assert "24 tasks, 0 to run" in d.stdout and "measured: q/K/pattern/1 took" in d.stdout, d.stdout
    assert not (run / "tasks" / "slurm").exists()


def test_dry_run_prints_graph_and_scripts_and_creates_nothing(tmp_path):
    wf = workflow_file(tmp_path, '\n[cluster]\npartition = "compute"\naccount = "proj42"\n'
                                 'launcher = "srun -n {nproc} --cpu-bind=cores"\n'
                                 'setup = ["module load quantum-espresso/6.7"]\n'
                                 'time = {pattern = "04:00:00", default = "01:00:00"}\nnproc = {pattern = 16}\n')
    run = tmp_path / "run"
    r = cli("bands", wf, "--engine", "slurm", "--dry-run", "--run-dir", run)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "2 q-points × 9 patterns; 24 tasks, 24 to run, 0 done" in out
    assert "7 sbatch submissions" in out, out     # prepare, common, 2 pattern arrays, 2 gathers, bands
    assert out.count("#SBATCH --array=0-8") == 2 and "#SBATCH --partition=compute" in out
    assert "#SBATCH --account=proj42" in out and "#SBATCH --time=04:00:00" in out
    assert "#SBATCH --ntasks=16" in out and "module load quantum-espresso/6.7" in out
    assert "TASKS=(q/K/pattern/1 q/K/pattern/2" in out and "afterok:" in out
    assert re.search(r"^pattern\s+18\s+18\s+16\s", out, re.M), out
    assert not run.exists()


def test_python_api_dry_run_is_the_cli_s(tmp_path):
    """dfptmag.bands(engine=..., dry_run=True) does what the CLI does: the same plan text."""
    import dfptmag
    wf = workflow_file(tmp_path)
    r = dfptmag.bands(wf, engine="slurm", dry_run=True, run_dir=tmp_path / "run")
    assert "2 q-points × 9 patterns; 24 tasks, 24 to run, 0 done" in r.dry_run_text
    assert r.todo and len(r.todo) == 24 and not (tmp_path / "run").exists()
    with pytest.raises(dfptmag.errors.DfptmagError, match="interpolate"):
        dfptmag.bands(wf, engine="local", interpolate=True, run_dir=tmp_path / "run")


@pytest.mark.parametrize("section, problem", [
    ('launcher = "srun -n {nproc}; rm -rf ~"', "shell syntax"),
    ('launcher = "mpirun -np 4"', "must contain {nproc}"),
    ('launcher = "srun -n {nproc} {nodes}"', "only the placeholder {nproc}"),
    ('launcher = "srun \'-n {nproc}"', "launcher"),
    ('time = {pattern = "four hours"}', "a Slurm time"),
    ('time = {patern = "04:00:00"}', "did you mean 'pattern'"),
    ('nproc = {pattern = 0}', "a positive integer"),
    ('partition = "a b"', "partition"),
    ('sbatch_options = ["--array=1-3"]', "set by dfptmag itself"),
    ('sbatch_options = ["qos normal"]', "not an sbatch option"),
    ('setup = "module load qe"', "list of one-line strings"),
    ('nodes = 4', "unknown key 'nodes'"),
])
def test_bad_cluster_settings_exit_2_one_line(tmp_path, section, problem):
    wf = workflow_file(tmp_path, f"\n[cluster]\n{section}\n")
    run = tmp_path / "run"
    r = cli("bands", wf, "--engine", "slurm", "--dry-run", "--run-dir", run)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dfptmag: error: {wf}: ["), lines
    assert problem in lines[0], lines
    assert not run.exists()


def test_slurm_engine_needs_cluster_section_and_task_needs_its_dependencies(tmp_path):
    wf = workflow_file(tmp_path, "")
    r = cli("bands", wf, "--engine", "slurm", "--run-dir", tmp_path / "run")
    assert r.returncode == 2 and "needs a [cluster] section" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    wf = workflow_file(tmp_path)
    from dfptmag.jobs.cluster import make_plan
    plan, _ = make_plan(wf, tmp_path / "run2", engine="slurm")
    plan.save()
    t = cli("task", wf, tmp_path / "run2", "q/K/pattern/4")
    assert t.returncode == 2 and "prepare is not done" in t.stderr, t.stderr
    assert len(t.stderr.strip().splitlines()) == 1
    bad = cli("task", wf, tmp_path / "run2", "q/K/pattern/10")
    assert bad.returncode == 2 and "pattern 10 is not in the plan" in bad.stderr


def _wait(cond, timeout, what, poll=0.5):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.qe
@needs_qe
def test_slurm_band_path_scancel_failure_resubmit_equals_local(slurm, tiny_run, local_bands, tmp_path):
    from dfptmag.engines.slurm import squeue_states
    from dfptmag.io.qrun_dir import read_manifest
    from dfptmag.workflow.locks import live_qe_processes
    runner, dirs = tiny_run
    _, local_run = local_bands
    wf = workflow_file(tmp_path)
    run = seeded_run(runner.run_dir, tmp_path / "run", RERUN)
    (run / "q_-K" / "pattern5").write_text("not a directory: makes q/-K/pattern/5 fail\n")
    env = slurm.env

    r = cli("bands", wf, "--engine", "slurm", "--run-dir", run, env=env)
    assert r.returncode == 0, r.stderr
    assert "submitted 7 task(s) of 7 not done, in 5 job array(s)" in r.stdout, r.stdout
    jobs = json.loads((run / "tasks" / "jobs.json").read_text())
    victim = jobs["q/K/pattern/3"]["job"]
    # scancel pattern 3 at K while its ph.x iterates (SIGTERM, SIGKILL after KillWait)
    _wait(lambda: squeue_states(env).get(victim, "").startswith("RUNNING")
          and "iter #" in (run / "q_K" / "ph.irr3.out").read_text(errors="replace")
          if (run / "q_K" / "ph.irr3.out").is_file() else False, 600, "pattern 3 at K running")
    subprocess.run(["scancel", victim], env=env, check=True)
    _wait(lambda: not live_qe_processes(run / "q_K" / "pattern3"), 30, "ph.x of the cancelled task to end")
    slurm.wait_idle(timeout=900)

    s = cli("status", run, env=env)
    assert s.returncode == 3, s.stdout
    rows = status_rows(s.stdout)
    assert rows["q/K/pattern/3"] == "failed" and rows["q/-K/pattern/5"] == "failed", s.stdout
    assert "pattern5" in s.stdout.split("--- q/-K/pattern/5 failed")[1], s.stdout     # its log tail
    assert {rows[t] for t in ("q/K/gather", "q/-K/gather", "bands")} == {"cancelled"}, s.stdout
    others = [t for t in rows if t not in ("q/K/pattern/3", "q/-K/pattern/5", "q/K/gather", "q/-K/gather", "bands")]
    assert len(others) == 19 and all(rows[t] == "done" for t in others), s.stdout
    assert not (run / "q_K" / "ph.irr3.done").exists()
    before = done_markers(run)

    (run / "q_-K" / "pattern5").unlink()
    r2 = cli("bands", wf, "--engine", "slurm", "--run-dir", run, env=env)
    assert r2.returncode == 0, r2.stderr
    jobs2 = json.loads((run / "tasks" / "jobs.json").read_text())
    resubmitted = {t for t in jobs2 if jobs2[t] != jobs.get(t)}
    assert resubmitted == {"q/K/pattern/3", "q/-K/pattern/5", "q/K/gather", "q/-K/gather", "bands"}, resubmitted
    slurm.wait_idle(timeout=600)
    after = done_markers(run)
    assert {k: v for k, v in after.items() if k in before} == before      # nothing else was redone
    assert set(after) - set(before) == {"q_K/ph.irr3.done", "q_-K/ph.irr5.done", "q_K/ph.final.done",
                                        "q_-K/ph.final.done"}
    s2 = cli("status", run, env=env)
    assert s2.returncode == 0 and set(status_rows(s2.stdout).values()) == {"done"}, s2.stdout

    r3 = cli("bands", wf, "--engine", "slurm", "--run-dir", run, env=env)       # all done: nothing submitted
    assert r3.returncode == 0 and "up to date" in r3.stdout, r3.stdout
    assert json.loads((run / "tasks" / "jobs.json").read_text()) == jobs2

    # The pattern tasks reran ph.x from the sequential run's state, and (Slurm: [storage]
    # discard_dwf = "auto" is on) each contracted its δψ, checked it against fildrho, and deleted
    # it; the gathers removed the q's ph.x scratch. ph.x's own fildrho tells how far two runs of
    # this QE build lie apart: 0 on QE 6.7 (bitwise reproducible), ~1e-5 on the 7.x builds.
    # Bitwise builds must give bitwise contracted results; the others each run's own oracle (the
    # contraction enforces 2 Tr δñ = fildrho) and agreement within that scatter.
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    scatter = 0.0
    for label in ("K", "-K"):
        seq, par = dirs[label], run / f"q_{label}"
        ms, mp = read_manifest(seq)["captures"], read_manifest(par)["captures"]
        assert sorted(ms, key=int) == sorted(mp, key=int) == [str(p) for p in range(1, 10)]
        for irr in ms:
            assert mp[irr]["contracted"]["charge_error"] <= 1e-12 and mp[irr]["dwf_discarded"], mp[irr]
            ds = np.fromfile(seq / ms[irr]["drho"], dtype=np.complex128)
            rec = ds.size // int(irr)
            with h5py.File(par / mp[irr]["contracted"]["file"]) as f:
                dp = f["fildrho"][0].ravel(order="F")        # ph.x's record, kept in C order
            assert dp.size == rec
            scatter = max(scatter, float(np.abs(ds[-rec:] - dp).max() / np.abs(ds[-rec:]).max()))
        assert not list((par / "capture").glob("dwf.*"))              # δψ deleted
        assert read_manifest(par)["scratch_removed"]["bytes"] > 0     # and the q's scratch
        assert not list((par / "out").rglob("*.dat")) and not list((par / "out").rglob("wse2.wfc*"))
    # bitwise builds: every dataset to 1e-10; others: the basis-independent ones (frequencies,
    # subspace totals, ...) within the cell integrals' bound on that scatter
    worst = compare_bands(run / "bands.h5", local_run / "bands.h5",
                          max(1e-10, CELL_INTEGRAL_PER_SCATTER * scatter), skip=BASIS_DEPENDENT if scatter else ())
    print(f"bands.h5 Slurm (δψ contracted and discarded) vs local engine (kept): largest relative "
          f"difference {worst:.2e}; ph.x's own fildrho between the runs {scatter:.1e}")
    for label in ("K", "-K"):
        seq, par = dirs[label], run / f"q_{label}"
        if scatter == 0.0:   # pattern-parallel + contracted equivalence: bitwise the sequential run's
            a = analyze_qrun(seq, AnalysisOptions())
            b = analyze_qrun(par, AnalysisOptions())
            for key in ("pattern_matrix", "pattern_field", "mode_cell_integral", "frequency_ry"):
                assert a[key].tobytes() == b[key].tobytes(), (label, key)
        assert not list(par.glob("pattern*/out"))          # the state copies are removed
        # ...and patterns of this q did run at the same time (copy.json: start, marker: end)
        if label == "K":
            span = {p: ((par / f"pattern{p}" / "copy.json").stat().st_mtime,
                        (par / f"ph.irr{p}.done").stat().st_mtime) for p in RERUN[label]}
            overlaps = [(p, r) for p in span for r in span
                        if p < r and span[p][0] < span[r][1] and span[r][0] < span[p][1]]
            assert overlaps, (label, span)


def _touch_task(task_id: str) -> None:
    """A picklable task for the local engine: records when it ran; 'b' fails."""
    out = Path(os.environ["DFPTMAG_TEST_ENGINE_DIR"])
    (out / task_id).write_text(f"{time.time()}\n")
    time.sleep(1.5)
    (out / (task_id + ".end")).write_text(f"{time.time()}\n")
    if task_id == "b":
        raise RuntimeError("b failed on purpose")


def test_local_engine_honours_dependencies_and_isolates_a_failure(tmp_path, monkeypatch):
    from dfptmag.engines.local import LocalEngine
    from dfptmag.workflow.tasks import Task
    monkeypatch.setenv("DFPTMAG_TEST_ENGINE_DIR", str(tmp_path))
    T = lambda i, deps: Task(i, "x", deps, 1, ".", "x")  # noqa: E731
    graph = [T("a", []), T("b", ["a"]), T("c", ["a"]), T("d", ["b"]), T("e", ["c"])]
    out = LocalEngine(_touch_task, workers=2).run(graph)
    assert set(out.failures) == {"b", "d"} and "b failed on purpose" in out.failures["b"]
    assert out.failures["d"] == "not run: b failed" and not (tmp_path / "d").exists()
    t = {n: float((tmp_path / n).read_text()) for n in "abce"}
    end = {n: float((tmp_path / (n + ".end")).read_text()) for n in "abce"}
    assert t["b"] >= end["a"] and t["c"] >= end["a"] and t["e"] >= end["c"]
    assert t["c"] < end["b"] and t["b"] < end["c"]     # b and c ran side by side (2 workers)


@pytest.mark.qe
@needs_qe
def test_sbatch_failing_partway_keeps_the_submitted_job_ids(slurm, tiny_run, tmp_path):
    """A submission that sbatch refuses partway exits 2 with one line that names the failed
    script and says how many submissions went in; their job ids are in tasks/jobs.json at once,
    ``status`` shows them pending, and rerunning the same command submits none of them twice.
    The refusal is the controller's own: the partition's time limit (scontrol update MaxTime,
    EnforcePartLimits=ALL in tests/slurm_local.py) lets the common tasks' 10 minutes in and
    refuses the pattern tasks' hour. The jobs are submitted held (sbatch --hold): no QE runs."""
    from dfptmag.engines.slurm import squeue_states
    runner, _ = tiny_run
    env = slurm.env
    wf = workflow_file(tmp_path, '\n[cluster]\nlauncher = "mpirun -np {nproc}"\n'
                                 'time = {pattern = "01:00:00", default = "00:10:00"}\nsbatch_options = ["--hold"]\n')
    run = copy_run(runner.run_dir, tmp_path / "run", ["pseudo", "scf"])
    jobs_file = run / "tasks" / "jobs.json"
    try:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=00:20:00"], env=env, check=True)
        r = cli("bands", wf, "--engine", "slurm", "--run-dir", run, env=env)
        assert r.returncode == 2, (r.stdout, r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and "sbatch " in err[0] and "failed (" in err[0], r.stderr
        assert "time limit" in err[0].lower(), err[0]                  # sbatch's own reason
        assert "the 1 submission(s) before it (2 tasks) are recorded in" in err[0], err[0]
        jobs = json.loads(jobs_file.read_text())
        assert set(jobs) == {"q/K/common", "q/-K/common"}, jobs
        queue = squeue_states(env)
        assert all(j["job"] in queue for j in jobs.values()), (jobs, queue)
        rows = status_rows(cli("status", run, env=env).stdout)
        assert rows["q/K/common"] == rows["q/-K/common"] == "pending", rows
        assert rows["q/K/pattern/1"] == "not submitted", rows
        n_queued = len(slurm.jobs())
        r2 = cli("bands", wf, "--engine", "slurm", "--run-dir", run, env=env)      # the limit still holds
        assert r2.returncode == 2 and "failed (" in r2.stderr, r2.stderr
        assert json.loads(jobs_file.read_text()) == jobs                     # not submitted twice
        assert len(slurm.jobs()) == n_queued
    finally:
        for j in (json.loads(jobs_file.read_text()).values() if jobs_file.is_file() else []):
            subprocess.run(["scancel", j["job"].split("_")[0]], env=env)
        subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=INFINITE"], env=env)
        slurm.wait_idle(timeout=120)
