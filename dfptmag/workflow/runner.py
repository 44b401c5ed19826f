"""Run a workflow: ld1.x pseudopotentials, pw.x scf, then per q a ph.x ``only_wfc`` run, an
irrep-0 run (the irrep-independent part of the dynamical matrix), one ``recover`` run per
displacement pattern with the δψ buffer captured and fildrho written, and a final run that
assembles fildyn. Every step leaves a ``.done`` marker holding the hash of its input and of
every step before it, so an interrupted run resumes where it stopped and a changed input
redoes what depends on it.

Tasks and locks (:mod:`.locks`): the preparation (pseudopotentials + scf) holds the run
directory's lock, each q-point's chain the lock of its ``q_<label>/`` directory, the dispersion
chain that of ``dispersion/``. A second command that needs a held lock stops at once (exit 2,
naming the holder) before it touches anything; a task also refuses to start while QE processes
still work in its directory. Every QE process runs under a supervisor
(:mod:`.supervise`) that stops it if dfptmag dies, SIGKILL included.

The q-directory state machine, the one place where it is written down. States, in order (a
state is reached when its step's ``.done`` marker holds the step's current hash)::

    EMPTY ─ph.wfc→ WFC ─ph.irr0→ IRR0 ─ph.irr<p>→ … (each requested pattern p) ─ph.final→ FINAL
                                                     (ph.final only when all 3·nat patterns are done)

A step whose marker is missing or stale is redone from a clean state, never resumed from
whatever a killed run left behind:

- ``ph.wfc``: ``out/`` is deleted, the scf's ``<prefix>.save`` copied anew, the manifest's
  captures dropped; ψ at k and k+q are recomputed (only_wfc).
- ``ph.irr0``: ph.x's record of irrep 0 (``_ph0/<prefix>.phsave/dynmat.1.0.xml``) and its
  mid-irrep restart files (``<prefix>.recover*``, ``.restart_k*``) are removed first.
- ``ph.irr<p>``: the same for irrep p (``dynmat.1.<p>.xml``: a ph.x that finished p after its
  dfptmag died has marked it done, and a recover run would skip it and write no δψ; after a
  final run ph.x's status is also set back from RECOVER_CODE 30 to 20, or ph.x would return at
  once, see :func:`.capture.redo_irrep`); the manifest entry of p is dropped, and δψ is captured
  anew.
- ``ph.final``: rerun as is (it only reads the irreps' records and writes fildyn).

Under the task engines (:mod:`.tasks`) the same states and markers hold, but each ``ph.irr<p>``
step runs in its own copy of ``out/`` (``pattern<p>/out``, taken after ``ph.irr0``; only ph.x's
record ``dynmat.1.<p>.xml`` is kept), and ``ph.final`` first copies those records into
``out/_ph0/<prefix>.phsave`` (the gather task).

Contract-and-discard (``[storage] discard_dwf``; :attr:`Runner.contract` set by the jobs layer):
inside each ``ph.irr<p>`` step, after the capture is recorded and before the step's marker,
Eq. 1 of the pattern is contracted and checked against fildrho, written (fsync), recorded in the
manifest, and only then are its δψ and fildrho copy deleted (:meth:`Runner.contract_and_discard`).
A kill anywhere in there leaves the step without its marker: the resume redoes that one pattern.
After ``ph.final``, with every pattern contracted, the q's scratch ``out/`` is removed except its
XML records (:meth:`Runner.finish_q`; ``keep_scratch`` keeps it); from then on no ph.x step of
that q can run again (redoing one asks to delete the q directory).

The markers chain: a changed input (or a redone earlier step with a new hash) invalidates every
later step of the chain. Markers, the manifest and outputs are written atomically.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shlex
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from ..errors import DfptmagError
from ..io.qrun_dir import MANIFEST, read_manifest, record_capture, write_manifest
from . import capture, inputs, locks, pseudo, qe
from .config import QPoint, Workflow

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StepLog:
    ran: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


class Cancelled(DfptmagError):
    """The run was interrupted; finished steps are kept."""


class NotDone(DfptmagError):
    """A step's marker is missing or stale (raised instead of running it in check-only mode)."""


@dataclasses.dataclass
class ParallelResult:
    qdirs: dict[str, Path]              # label -> finished q-run directory
    failures: dict[str, str]            # label (or 'dispersion') -> error message with output tail
    dispersion: Path | None = None      # matdyn.x fldyn file


class Runner:
    def __init__(self, wf: Workflow, run_dir, progress: bool = True, check_only: bool = False,
                 launcher: list[str] | None = None):
        """``check_only``: run nothing, write nothing; a step whose marker is missing or stale
        raises :class:`NotDone` (what the task engines use to tell what is done). ``launcher``:
        the MPI launcher as words with ``{nproc}`` (e.g. ``['srun', '-n', '{nproc}']``),
        replacing ``[parallel] mpirun -np N``."""
        self.check_only = check_only
        self.launcher = launcher
        if not check_only:          # before anything is written or started: one line if QE is missing
            for exe in ("pw.x", "ph.x"):
                qe.program(exe, wf.qe_bin_dir)
        self.wf = wf
        self.run_dir = Path(run_dir).resolve()
        self.progress = progress
        self.steps = StepLog()
        self.atoms = inputs.build_atoms(wf)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._running: list[str] = []
        self.bar = None
        # contract-and-discard ([storage] discard_dwf): a callable (q dir, irrep) → the contracted
        # record (dfptmag.analysis.contract.contract_irrep, given by the jobs layer) or None
        self.contract = None
        self.keep_scratch = False

    # -- helpers ---------------------------------------------------------------
    def _cmd(self, exe: str, infile: str | None) -> list[str]:
        """The command line; ``infile=None``: serial, input on stdin (q2r.x, matdyn.x)."""
        exe = qe.program(exe, self.wf.qe_bin_dir)
        if infile is None:
            return [exe]
        base = [exe, "-in", infile]
        if self.wf.npool > 1:
            base += ["-nk", str(self.wf.npool)]
        if self.launcher is not None:
            return [w.replace("{nproc}", str(self.wf.nproc)) for w in self.launcher] + base
        if self.wf.nproc > 1:
            return shlex.split(self.wf.mpirun) + ["-np", str(self.wf.nproc)] + base
        return base

    @staticmethod
    def _hash(*parts: str) -> str:
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def _step(self, workdir: Path, name: str, text: str, parent: str, action) -> str:
        """Write input ``name.in`` and run ``action`` unless a marker with the same hash exists."""
        h = self._hash(text, parent)
        marker = workdir / f"{name}.done"
        if marker.is_file():
            try:
                if json.loads(marker.read_text()).get("hash") == h:
                    with self._lock:
                        self.steps.skipped.append(f"{workdir.name}/{name}")
                    return h
            except json.JSONDecodeError:
                pass
            if self.check_only:
                raise NotDone(f"{marker}: stale (its input or an earlier step changed)")
            marker.unlink()
        if self.check_only:
            raise NotDone(f"{workdir / name}: not done")
        if self.stop.is_set():
            raise Cancelled(f"interrupted before {workdir.name}/{name}")
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{name}.in").write_text(text)
        t0 = time.time()
        tag = f"{workdir.name}/{name}"
        self._show(add=tag)
        try:
            action(f"{name}.in", workdir / f"{name}.out")
        finally:
            self._show(remove=tag)
        tmp = marker.with_suffix(".part")
        tmp.write_text(json.dumps({"hash": h, "seconds": round(time.time() - t0, 2),
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        os.replace(tmp, marker)
        with self._lock:
            self.steps.ran.append(f"{workdir.name}/{name}")
        return h

    def _show(self, add=None, remove=None):
        """Keep the progress bar's postfix listing the QE steps running now."""
        with self._lock:
            if add:
                self._running.append(add)
            if remove and remove in self._running:
                self._running.remove(remove)
            if self.bar is not None:
                self.bar.set_postfix_str("running " + ", ".join(self._running) if self._running else "")

    # -- stages ----------------------------------------------------------------
    def pseudopotentials(self) -> dict[str, str]:
        names = {}
        for el, ld1 in self.wf.pseudopotentials.items():
            names[el] = pseudo.generate(ld1, self.run_dir / "pseudo",
                                        qe.program("ld1.x", self.wf.qe_bin_dir)).name
        return names

    def upf_names(self) -> dict[str, str]:
        """Element → UPF file name: generated (or taken from the cache) into ``pseudo/``; in
        check-only mode the files must already be there (:class:`NotDone` otherwise)."""
        if not self.check_only:
            return self.pseudopotentials()
        names = {}
        for el, ld1 in self.wf.pseudopotentials.items():
            name = pseudo.upf_name(Path(ld1).read_text(), ld1)
            if not (self.run_dir / "pseudo" / name).is_file():
                raise NotDone(f"{self.run_dir / 'pseudo' / name}: not generated yet")
            names[el] = name
        return names

    def _upf_hash(self, upf_names) -> str:
        return self._hash(*[pseudo.content_key((self.run_dir / "pseudo" / n).read_text())
                            for n in sorted(upf_names.values())])

    def prepare(self) -> tuple[dict[str, str], str]:
        """Pseudopotentials and scf under the run directory's lock: (UPF names, scf hash)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with locks.locked(self.run_dir):
            locks.check_no_live_qe(self.run_dir / "scf")
            notice = qe.record(self.run_dir, self.wf.qe_bin_dir)
            if notice:
                log.warning(notice)
            names = self.pseudopotentials()
            return names, self.scf(names)

    def scf(self, upf_names) -> str:
        work = self.run_dir / "scf"
        text = inputs.pw_input(self.wf, self.atoms, upf_names, "out", "../pseudo")
        return self._step(work, "pw.scf", text, self._upf_hash(upf_names),
                          lambda i, o: capture.run_logged(self._cmd("pw.x", i), o, work))

    def dispersion(self, upf_names, q_crystal, bar=None) -> Path:
        """Coarse-grid DFPT for the interpolated dispersion, in ``dispersion/``: a symmetric pw.x
        scf, one ph.x ldisp run on [dispersion] qgrid (dielectric tensor and Born charges at Γ
        included, as ph.x does for insulators), q2r.x, and matdyn.x on ``q_crystal``.
        Returns matdyn.x's dynamical-matrix file."""
        work = self.run_dir / "dispersion"
        with locks.task(work):
            return self._dispersion(work, upf_names, q_crystal, bar)

    def _dispersion(self, work, upf_names, q_crystal, bar) -> Path:
        cfg = self.wf.dispersion
        run = lambda exe: (lambda i, o: capture.run_logged(self._cmd(exe, i), o, work))  # noqa: E731
        serial = lambda exe: (lambda i, o: capture.run_logged(self._cmd(exe, None), o, work,  # noqa: E731
                                                              stdin=work / i))
        h = self._step(work, "pw.scf", inputs.pw_input(self.wf, self.atoms, upf_names, "out", "../pseudo",
                                                       symmetry=True),
                       self._upf_hash(upf_names), run("pw.x"))
        nq = cfg["qgrid"]
        h = self._step(work, "ph.grid", inputs.ph_input(self.wf.prefix, "out", None,
                                                        float(self.wf.ph.get("tr2_ph", 1e-14)),
                                                        fildyn="dyn", ldisp=True, nq1=nq[0], nq2=nq[1], nq3=nq[2]),
                       h, run("ph.x"))
        if bar is not None:
            bar.update(1)
        h = self._step(work, "q2r", inputs.q2r_input("dyn", "fc", cfg["asr"], cfg["loto_2d"]), h, serial("q2r.x"))
        self._step(work, "matdyn", inputs.matdyn_input("fc", "matdyn.dyn", "matdyn.freq", cfg["asr"],
                                                       cfg["loto_2d"], q_crystal), h, serial("matdyn.x"))
        if bar is not None:
            bar.update(1)
        return work / "matdyn.dyn"

    def check_patterns(self, patterns: list[int] | None) -> list[int]:
        nmodes = 3 * len(self.atoms)
        pats = list(range(1, nmodes + 1)) if patterns is None else patterns
        bad = [p for p in pats if not 1 <= p <= nmodes]
        if bad:
            raise DfptmagError(f"patterns {bad} out of range: {self.wf.structure} has "
                               f"{len(self.atoms)} atoms, so patterns are 1..{nmodes}")
        return pats

    def qpoint(self, q: QPoint, scf_hash: str, patterns: list[int] | None, bar=None) -> Path:
        """One q-point's ph.x chain under its directory's lock (see the state machine above)."""
        work = self.run_dir / f"q_{q.label}"
        pats = self.check_patterns(patterns)
        with locks.task(work):
            return self._qpoint(work, q, scf_hash, pats, bar)

    def q_common_inputs(self, q: QPoint) -> dict:
        """The ph.x settings every step of q's chain shares (for :func:`.inputs.ph_input`)."""
        q_tpiba = inputs.q_crystal_to_tpiba(self.atoms, q.crystal)
        return dict(prefix=self.wf.prefix, outdir="out", q_tpiba=q_tpiba,
                    tr2_ph=float(self.wf.ph.get("tr2_ph", 1e-14)), fildyn="dyn")

    def pattern_input(self, common: dict, p: int) -> str:
        return inputs.ph_input(**common, recover=True, start_irr=p, last_irr=p, fildrho="drho")

    def final_step(self, work: Path, common: dict, h_irr0: str, pats: list[int]) -> str:
        """ph.x's final recover run, which reads every irrep's record and writes fildyn."""
        def run_final(i, o):
            self._scratch_gone(work)
            capture.run_logged(self._cmd("ph.x", i), o, work)
        return self._step(work, "ph.final", inputs.ph_input(**common, recover=True),
                          self._hash(h_irr0, *[str(p) for p in pats]), run_final)

    def _qpoint(self, work: Path, q: QPoint, scf_hash: str, pats: list[int], bar=None) -> Path:
        h, common = self.q_common(work, q, scf_hash, bar)
        if self.wf.timeodd is not None:
            self.empty_states(work, h)
        nmodes = 3 * len(self.atoms)
        ph0 = work / "out" / "_ph0"
        wf = self.wf
        for p in pats:
            def run_pattern(i, o, p=p):
                self._scratch_gone(work)
                self._forget_irrep(work, ph0, p)
                cmd = self._cmd("ph.x", i)
                dwf, drho = capture.captured_run(cmd, o, work, ph0, wf.prefix,
                                                 work / "capture", f"irr{p}", "drho")
                # sizes, sha256, irrep, q and pools, checked before every analysis
                record_capture(work, p, dwf, drho, npool=capture.check_layout(cmd))
                self.contract_and_discard(work, p, ph0)
            self._step(work, f"ph.irr{p}", self.pattern_input(common, p), h, run_pattern)
            if bar is not None:
                bar.update(1)
        if len(pats) == nmodes:
            self.final_step(work, common, h, pats)
            self.finish_q(work, pats)
        if bar is not None:
            bar.update(1)
        return work

    def empty_states(self, work: Path, parent: str) -> Path:
        """The empty states of the time-odd response for the q-run in ``work``: a pw.x 'bands'
        run from the scf density at the q-run's k + q points with [timeodd] empty_bands bands
        above the occupied ones, in ``work/empty`` (its own outdir: the q-run's save is not
        touched). Returns the save directory that :func:`dfptmag.analysis.timeodd.analyze_time_odd`
        reads."""
        from ..io.qe_xml import read_data_file_schema
        from ..io.qrun_dir import locate
        empty = work / "empty"
        save = empty / "out" / f"{self.wf.prefix}.save"
        files = locate(work)
        x = read_data_file_schema(files.xml)
        kq = x.xk if files.gamma else x.xk[1::2]
        nbnd = int(round(x.nelec)) + int(self.wf.timeodd["empty_bands"])
        text = inputs.pw_input(self.wf, self.atoms, self.upf_names(), "out", "../../pseudo",
                               nbnd=nbnd, k_tpiba=kq)

        def run_bands(i, o):
            if (empty / "out").exists():
                shutil.rmtree(empty / "out")
            save.mkdir(parents=True)
            src = self.run_dir / "scf" / "out" / f"{self.wf.prefix}.save"
            for name in ("charge-density.dat", "data-file-schema.xml"):
                shutil.copy2(src / name, save / name)
            capture.run_logged(self._cmd("pw.x", i), o, empty)

        empty.mkdir(parents=True, exist_ok=True)
        self._step(empty, "pw.empty", text, parent, run_bands)
        return save

    def contract_and_discard(self, work: Path, p: int, ph0: Path | None, lock=None) -> dict | None:
        """With :attr:`contract` set: contract irrep p's fresh capture (verified against fildrho,
        written and fsync'ed), record it in the manifest, then delete its δψ. Part of the
        pattern's step, before its marker: a crash anywhere in here redoes only this pattern.
        ``lock``: a context manager serializing manifest writes (pattern tasks side by side)."""
        if self.contract is None:
            return None
        from ..io.qrun_dir import record_contraction
        rec = self.contract(work, p)
        if rec is None:                      # not verifiable (no fildrho): the δψ stays
            return None
        with lock() if lock is not None else contextlib.nullcontext():
            record_contraction(work, p, rec)
            rec["freed_bytes"] = capture.discard_dwf(work, p, ph0, self.wf.prefix)
        log.info("%s: irrep %d contracted (%d B, charge error %.1e), δψ deleted (%d B)", work.name, p,
                 rec["size"], rec["charge_error"], rec["freed_bytes"])
        return rec

    def finish_q(self, work: Path, pats: list[int]) -> dict | None:
        """After fildyn: with contract-and-discard and every pattern contracted, remove the q's
        ph.x scratch (kept with :attr:`keep_scratch`)."""
        if self.contract is None or self.keep_scratch or self.check_only:
            return None
        if "scratch_removed" in read_manifest(work) or not capture.all_contracted(work, pats):
            return None
        if (work / "empty" / "out").is_dir():      # the empty states: their part is in the contracted files
            shutil.rmtree(work / "empty" / "out")
        return capture.remove_scratch(work)

    def _scratch_gone(self, work: Path) -> None:
        gone = read_manifest(work).get("scratch_removed")
        if gone:
            raise DfptmagError(f"{work}/out: the q's ph.x scratch was removed on {gone['time']} after "
                               "every pattern was contracted, so no ph.x step of this q can run again; "
                               f"delete {work} to recompute this q-point from the start")

    def q_common(self, work: Path, q: QPoint, scf_hash: str, bar=None) -> tuple[str, dict]:
        """The part of q's chain every pattern needs (ψ at k and k+q, irrep 0) in ``work``
        (no lock taken here); returns (the irrep-0 step's hash, the shared ph.x settings)."""
        wf = self.wf
        common = self.q_common_inputs(q)
        q_tpiba = common["q_tpiba"]
        save_src = self.run_dir / "scf" / "out" / f"{wf.prefix}.save"
        ph0 = work / "out" / "_ph0"

        def fresh_copy(i, o):
            if (work / "out").exists():
                shutil.rmtree(work / "out")
            shutil.copytree(save_src, work / "out" / f"{wf.prefix}.save")
            man = read_manifest(work)
            man.pop("captures", None)
            write_manifest(work, man)
            capture.run_logged(self._cmd("ph.x", i), o, work)

        if not self.check_only:
            man = read_manifest(work)
            man.update({"prefix": wf.prefix, "outdir": "out", "fildyn": "dyn", "label": q.label,
                        "q_tpiba": [float(v) for v in q_tpiba],
                        "q_crystal": [float(v) for v in q.crystal]})
            work.mkdir(parents=True, exist_ok=True)
            write_manifest(work, man)
        h = self._step(work, "ph.wfc", inputs.ph_input(**common, only_wfc=True), scf_hash, fresh_copy)
        if bar is not None:
            bar.update(1)
        def run_irr0(i, o):
            self._forget_irrep(work, ph0, 0)
            capture.run_logged(self._cmd("ph.x", i), o, work)

        h = self._step(work, "ph.irr0", inputs.ph_input(**common, recover=True, start_irr=0, last_irr=0), h,
                       run_irr0)
        if bar is not None:
            bar.update(1)
        return h, common

    def _forget_irrep(self, work: Path, ph0: Path, irr: int) -> None:
        """Clean state for redoing irrep ``irr``: remove ph.x's record that it is done and its
        mid-irrep restart data, and drop its capture from the manifest (the files themselves are
        replaced only once a new capture is complete)."""
        done = ph0 / f"{self.wf.prefix}.phsave" / f"dynmat.1.{irr}.xml"
        if done.exists():
            log.info("%s: irrep %d marked done by ph.x without our marker: redoing it", work, irr)
            if irr > 0:     # also resets status_run.xml if a final run had set RECOVER_CODE 30
                capture.redo_irrep(ph0, self.wf.prefix, irr)
            else:
                done.unlink()
        capture.drop_restart_data(ph0, self.wf.prefix)
        man = read_manifest(work)
        if str(irr) in man.get("captures", {}):
            del man["captures"][str(irr)]
            write_manifest(work, man)

    def run(self, qpoints=None, patterns=None) -> list[Path]:
        qpoints = qpoints or self.wf.qpoints
        patterns = patterns if patterns is not None else self.wf.patterns
        self.run_dir.mkdir(parents=True, exist_ok=True)
        nmodes = 3 * len(self.atoms)
        npat = nmodes if patterns is None else len(patterns)
        total = 2 + len(qpoints) * (npat + 3)
        self.check_patterns(patterns)
        with tqdm(total=total, desc="QE steps", unit="step", disable=not self.progress) as bar:
            bar.set_postfix_str("ld1.x, pw.x scf")
            names, h = self.prepare()
            bar.update(2)
            out = []
            for q in qpoints:
                bar.set_postfix_str(f"q={q.label} ph.x")
                out.append(self.qpoint(q, h, patterns, bar))
        return out


    def run_parallel(self, qpoints, patterns=None, workers: int = 1, dispersion_q=None) -> ParallelResult:
        """Pseudopotentials and scf, then every q-point (and, with ``dispersion_q``, the coarse-grid
        dispersion) as independent jobs, up to ``workers`` at a time, each in its own directory
        with the workflow's MPI/pool layout. A failed job is recorded with its output tail and
        does not stop the others. Ctrl-C stops the QE processes and keeps finished steps."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.check_patterns(patterns)
        capture.allow_running()
        nmodes = 3 * len(self.atoms)
        npat = nmodes if patterns is None else len(patterns)
        total = 2 + len(qpoints) * (npat + 3) + (2 if dispersion_q is not None else 0)
        failures, qdirs, disp = {}, {}, None
        with tqdm(total=total, desc="QE steps", unit="step", disable=not self.progress) as bar:
            self.bar = bar
            bar.set_postfix_str("ld1.x, pw.x scf")
            names, h = self.prepare()
            bar.update(2)
            jobs = {}
            with ThreadPoolExecutor(max_workers=workers) as pool:
                if dispersion_q is not None:
                    jobs[pool.submit(self.dispersion, names, dispersion_q, bar)] = "dispersion"
                for q in qpoints:
                    jobs[pool.submit(self.qpoint, q, h, patterns, bar)] = q.label
                pending = set(jobs)
                try:
                    while pending:
                        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                        for fut in done:
                            label = jobs[fut]
                            try:
                                out = fut.result()
                            except Cancelled:
                                continue
                            except DfptmagError as exc:
                                failures[label] = str(exc)
                                log.error("%s failed: %s", label, exc)
                                continue
                            if label == "dispersion":
                                disp = out
                            else:
                                qdirs[label] = out
                except KeyboardInterrupt:
                    self.stop.set()
                    for fut in jobs:
                        fut.cancel()
                    capture.terminate_running()
                    raise
        self.bar = None
        return ParallelResult(qdirs=qdirs, failures=failures, dispersion=disp)


__all__ = ["Runner", "ParallelResult", "Cancelled", "MANIFEST"]
