"""Keep ph.x's δψ buffer alive: ph.x deletes ``_ph0/<prefix>.dwf*`` at the end of every q.

Before ph.x starts, an empty ``<prefix>.dwf[N]`` is created for every MPI rank and hard-linked
into a capture directory; ph.x opens the existing file in place (status='unknown'), so when it
deletes its name the data survive under the link. One ph.x run must compute one irrep
(start_irr = last_irr), because irreps overwrite each other's δψ records.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..atomic import copy_file, write_text
from ..errors import DfptmagError, QERunError, UnsupportedError
from . import qe

ENV_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def qe_env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.update(ENV_ROOT)
    return env


def parse_parallel(cmd: list[str]) -> tuple[int, int]:
    """(number of MPI ranks, number of pools) from a command line such as
    ``mpirun -np 4 ph.x -nk 4 -in ph.in``."""
    nranks, npool = 1, 1
    for i, tok in enumerate(cmd[:-1]):
        if tok in ("-np", "-n", "--np", "-c"):
            nranks = int(cmd[i + 1])
        if tok in ("-nk", "-npool", "-npools", "-nkpools", "-pools"):
            npool = int(cmd[i + 1])
    return nranks, npool


def check_layout(cmd: list[str]) -> int:
    nranks, npool = parse_parallel(cmd)
    if nranks > 1 and npool != nranks:
        raise UnsupportedError(" ".join(cmd), f"{nranks} MPI ranks in {npool} pools is a "
                                              "plane-wave (R&G) parallel layout: each rank's δψ "
                                              "file would hold a slice of every vector; use "
                                              f"-nk {nranks}")
    return nranks


def prepare(ph0: Path, prefix: str, dest: Path, tag: str, nranks: int) -> list[tuple[Path, Path]]:
    """Create ph.x's δψ buffer names empty and hard-link each into ``dest/dwf.<tag>.<rank>``.
    The capture names must be new (see :func:`fresh_tag`): an earlier capture is never touched."""
    ph0.mkdir(parents=True, exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    links = []
    for rank in [0] + list(range(1, nranks + 1)):
        src = ph0 / (f"{prefix}.dwf" + (str(rank) if rank else ""))
        dst = dest / f"dwf.{tag}.{rank}"
        if dst.exists() or dst.is_symlink():
            raise DfptmagError(f"{dst} exists: refusing to overwrite a capture")
        if src.exists() or src.is_symlink():
            src.unlink()        # only ph.x's name; a capture linked to it keeps its data
        src.touch()
        os.link(src, dst)
        links.append((src, dst))
    return links


def fresh_tag(dest: Path, tag: str) -> str:
    """``tag`` or ``tag.v2``, ``tag.v3`` ...: the first whose files no manifest entry lists.
    Unlisted files of that tag (an interrupted capture, or one the runner dropped) are removed."""
    from ..io.qrun_dir import read_manifest
    man = read_manifest(dest.parent)
    listed = set()
    for cap in man.get("captures", {}).values():
        listed.update(Path(p).name for p in cap.get("dwf", []))
        if cap.get("drho"):
            listed.add(Path(cap["drho"]).name)
    n = 1
    while True:
        t = tag if n == 1 else f"{tag}.v{n}"
        mine = [p for p in dest.glob(f"*.{t}*") if re.fullmatch(rf"(dwf\.{re.escape(t)}\.\d+|drho\.{re.escape(t)}(\.part)?)", p.name)]
        if not any(p.name in listed for p in mine):
            for p in mine:
                p.unlink()
            return t
        n += 1


def finish(links, ph0: Path, prefix: str, fildrho: str | None, dest: Path, tag: str):
    """Drop empty captures; copy the fildrho file; return (dwf files in rank order, drho path)."""
    kept = []
    for src, dst in links:
        if src.exists() and src.stat().st_size == 0:
            src.unlink()
        if dst.stat().st_size == 0:
            dst.unlink()
        else:
            kept.append(dst)
    drho = None
    if fildrho and kept:
        cands = [p for p in ph0.glob(f"{prefix}.{fildrho}*")
                 if re.fullmatch(re.escape(f"{prefix}.{fildrho}") + r"\d*", p.name)]
        if cands:
            src = max(cands, key=lambda p: p.stat().st_size)
            drho = dest / f"drho.{tag}"
            copy_file(src, drho)
    return kept, drho


_RUNNING: set[subprocess.Popen] = set()
_LOCK = threading.Lock()
_STOPPING = threading.Event()


def supervised(cmd: list[str]) -> list[str]:
    """``cmd`` run under :mod:`dfptmag.workflow.supervise`: the supervisor stops the command and
    everything it started when it is told to, when the command ends, or when this process dies
    (SIGKILL included), so that no QE process outlives dfptmag."""
    return [sys.executable, str(Path(__file__).with_name("supervise.py")), "--parent", str(os.getpid()),
            "--", *cmd]


def _kill_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM to the supervisor (it stops the command's whole session: mpirun, ranks, within its
    own grace period of 5 s); SIGKILL to its process group after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def terminate_running() -> int:
    """Stop every QE process started by run_logged and refuse to start new ones until
    :func:`allow_running`. Used when a parallel run is interrupted. Returns how many."""
    _STOPPING.set()
    with _LOCK:
        procs = list(_RUNNING)
    threads = [threading.Thread(target=_kill_group, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(procs)


def allow_running() -> None:
    _STOPPING.clear()


def run_logged(cmd: list[str], out_path: Path, cwd: Path, stdin: Path | None = None) -> None:
    """Run a QE executable with output to out_path (stdin from a file for q2r.x/matdyn.x);
    raise QERunError with the output's tail."""
    with open(out_path, "w") as out, open(stdin if stdin else os.devnull) as inp:
        with _LOCK:
            if _STOPPING.is_set():
                raise QERunError(f"{shlex.join(cmd)} not started in {cwd}: the run was interrupted")
            proc = subprocess.Popen(supervised(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                    env=qe_env(), stdin=inp, start_new_session=True)
            _RUNNING.add(proc)
        try:
            proc.wait()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            with _LOCK:
                _RUNNING.discard(proc)
    text = out_path.read_text(errors="replace")
    if proc.returncode != 0 or "JOB DONE" not in text:
        tail = "\n".join(text.splitlines()[-25:])
        raise QERunError(f"{shlex.join(cmd)} failed (exit {proc.returncode}) in {cwd}; "
                         f"output {out_path} ends with:\n{tail}")


def redo_irrep(ph0: Path, prefix: str, irrep: int) -> None:
    """Make ph.x's next recover run compute ``irrep`` again: drop ``dynmat.1.<irrep>.xml`` (the
    mark that it is done) and, if a final run already assembled the dynamical matrix
    (status_run.xml RECOVER_CODE 30, which makes solve_linter return at once), set the status
    back to the one between irreps (20, 'done_drhod'). Captures are not touched."""
    phsave = ph0 / f"{prefix}.phsave"
    done = phsave / f"dynmat.1.{irrep}.xml"
    if done.exists():
        done.unlink()
    status = phsave / "status_run.xml"
    if status.is_file():
        text = status.read_text()
        m = re.search(r"<RECOVER_CODE>\s*(-?\d+)\s*</RECOVER_CODE>", text)
        if m and int(m.group(1)) > 20:
            text = re.sub(r"<STOPPED_IN>.*?</STOPPED_IN>", "<STOPPED_IN>done_drhod</STOPPED_IN>", text)
            write_text(status, text.replace(m.group(0), "<RECOVER_CODE>20</RECOVER_CODE>"))


def drop_restart_data(ph0: Path, prefix: str) -> None:
    """Remove ph.x's mid-irrep restart data (``<prefix>.recover*``, ``.restart_k*``): a recover
    run would resume from it and read δψ from a buffer that capture replaces by an empty file,
    so an interrupted irrep is recomputed from its start instead."""
    for ext in ("recover", "restart_k"):
        for stale in ph0.glob(f"{prefix}.{ext}*"):
            stale.unlink()


def captured_run(cmd: list[str], out_path: Path, cwd: Path, ph0: Path, prefix: str,
                 dest: Path, tag: str, fildrho: str | None):
    """Run one ph.x irrep with its δψ buffer hard-linked into ``dest`` (= ``<q dir>/capture``)
    under fresh names; return (dwf files, drho copy). The caller records them
    (:func:`dfptmag.io.qrun_dir.record_capture`), which is when an earlier capture of the irrep is
    replaced: a failed or empty run leaves it untouched."""
    nranks = check_layout(cmd)
    m = re.fullmatch(r"irr(\d+)", tag)
    irrep = int(m.group(1)) if m else None
    drop_restart_data(ph0, prefix)
    tag = fresh_tag(dest, tag)
    links = prepare(ph0, prefix, dest, tag, nranks)

    def discard():
        for src, dst in links:
            if dst.exists():
                dst.unlink()
            if src.exists() and src.stat().st_size == 0:
                src.unlink()
    try:
        run_logged(cmd, out_path, cwd)
    except BaseException:
        discard()
        raise
    dwf, drho = finish(links, ph0, prefix, fildrho, dest, tag)
    if not dwf:
        discard()
        done = ph0 / f"{prefix}.phsave" / f"dynmat.1.{irrep}.xml" if irrep is not None else None
        if done is not None and done.is_file():
            from ..io.qrun_dir import read_manifest
            had = str(irrep) in read_manifest(dest.parent).get("captures", {})
            kept = (f"the earlier capture of irrep {irrep} in {dest} is kept unchanged"
                    if had else f"there is no earlier capture of irrep {irrep}")
            raise QERunError(f"{shlex.join(cmd)} wrote no δψ ({out_path}): irrep {irrep} is already "
                             f"done ({done} marks it, so the recover run skipped it); {kept}. "
                             f"To redo irrep {irrep}, run the same command with 'dfptmag capture "
                             "--redo'")
        raise QERunError(f"{shlex.join(cmd)} wrote no δψ ({out_path}): was this irrep already done "
                         "(a recover run skips irreps marked done in _ph0/<prefix>.phsave), or "
                         "does ph.x write its buffers elsewhere (wf_collect / outdir)? Earlier "
                         "captures are kept unchanged")
    return dwf, drho


def _ph_executable(cmd: list[str]) -> str | None:
    """The ph.x binary a command line runs (the first word named ph.x, as on PATH), or None."""
    import shutil
    for word in cmd:
        if Path(word).name == "ph.x":
            return shutil.which(word)
    return None


def capture_user_command(cmd: list[str], qdir=".", log=None, redo: bool = False):
    """``dfptmag capture``: run a user's ph.x command line (one irrep) with the δψ buffer kept,
    and record it in the q-run manifest. Returns (irrep, dwf files, drho copy, q directory)."""
    from ase.io.espresso import read_fortran_namelist

    from ..errors import InputFileError
    from ..io.qrun_dir import record_capture
    if not cmd:
        raise DfptmagError("give the ph.x command line after --, e.g. "
                           "dfptmag capture -- mpirun -np 4 ph.x -nk 4 -in ph.in")
    infile = None
    for flag in ("-in", "-inp", "-input", "-i"):
        if flag in cmd[:-1]:
            infile = Path(cmd[cmd.index(flag) + 1])
    if infile is None or not infile.is_file():
        raise InputFileError(infile or "<stdin>", "capture needs the ph.x input given with -in FILE")
    with open(infile) as f:
        nml, rest = read_fortran_namelist(f)
    ph = nml.get("inputph", {})
    qe.refuse_uncapturable(infile, ph, _ph_executable(cmd))
    prefix = ph.get("prefix", "pwscf")
    outdir = Path(ph.get("outdir", os.environ.get("ESPRESSO_TMPDIR", "./")))
    s, last = ph.get("start_irr"), ph.get("last_irr")
    if s is None or s != last or s < 1:
        raise InputFileError(infile, f"start_irr = {s}, last_irr = {last}: capture needs one irrep per "
                                     "ph.x run (start_irr = last_irr ≥ 1), since irreps overwrite "
                                     "each other's δψ")
    if ph.get("ldisp"):
        raise InputFileError(infile, "ldisp = .true.: capture handles single-q runs only")
    qline = [ln for ln in rest if ln.strip() and len(ln.split()) >= 3]
    try:
        q = [float(v.replace("d", "e").replace("D", "e")) for v in qline[-1].split()[:3]]
    except (IndexError, ValueError):
        raise InputFileError(infile, "no q-point line after the &inputph namelist") from None
    nranks = check_layout(cmd)
    qdir = Path(qdir).resolve()
    outdir_abs = (Path.cwd() / outdir).resolve()
    out_log = Path(log) if log else qdir / f"ph.irr{s}.out"
    if redo:
        redo_irrep(outdir_abs / "_ph0", prefix, s)
    dwf, drho = captured_run(cmd, out_log, Path.cwd(), outdir_abs / "_ph0", prefix, qdir / "capture",
                             f"irr{s}", ph.get("fildrho"))
    base = {"prefix": prefix, "outdir": os.path.relpath(outdir_abs, qdir), "q_tpiba": q}
    if ph.get("fildyn"):
        base["fildyn"] = os.path.relpath((Path.cwd() / ph["fildyn"]).resolve(), qdir)
    record_capture(qdir, s, dwf, drho, npool=nranks, q_tpiba=q, base=base)
    return s, dwf, drho, qdir


# -- contract and discard ([storage] discard_dwf) ------------------------------------------------
def discard_dwf(qdir: Path, irrep: int, ph0: Path | None = None, prefix: str | None = None) -> int:
    """Delete irrep's captured δψ files, which the manifest must already record as contracted
    (:func:`dfptmag.io.qrun_dir.record_contraction`) into a file that is on disk with its
    recorded size; also ph.x's own name for the same data (``ph0/<prefix>.dwf*``, a hard link of
    the capture) so that the space is really freed, and the capture's fildrho copy (ph.x's file
    holds every earlier perturbation too; the contracted file keeps this irrep's records, the
    oracle). Returns the bytes freed."""
    from ..io.qrun_dir import read_manifest, write_manifest
    qdir = Path(qdir)
    man = read_manifest(qdir)
    cap = man.get("captures", {}).get(str(irrep), {})
    c = cap.get("contracted")
    if not c:
        raise DfptmagError(f"{qdir}: irrep {irrep} is not recorded as contracted; its δψ is kept")
    cfile = qdir / c["file"]
    if not cfile.is_file() or cfile.stat().st_size != c["size"]:
        raise DfptmagError(f"{cfile}: missing or not the size recorded; irrep {irrep}'s δψ is kept")
    freed = 0
    sources = list(ph0.glob(f"{prefix}.dwf*")) if ph0 is not None and prefix else []
    for rel in cap.get("dwf", []) + ([cap["drho"]] if cap.get("drho") else []):
        p = qdir / rel
        if not p.is_file():
            continue
        for src in sources:
            if src.is_file() and os.path.samefile(src, p):
                src.unlink()
        freed += p.stat().st_size
        p.unlink()
    cap["dwf_discarded"] = True
    write_manifest(qdir, man)
    return freed


SCRATCH_KEPT = (".xml", ".upf", ".UPF")


def remove_scratch(qdir: Path, outdir: str = "out") -> dict:
    """Remove the q's ph.x scratch (``<qdir>/<outdir>``: ψ at k and k+q, ph.x's buffers, charge
    density, induced potentials) except its XML records (data-file-schema.xml, patterns and
    dynamical-matrix pieces, status) and pseudopotentials, which the analysis of contracted
    results reads. Recorded in the manifest as ``scratch_removed`` with the bytes freed."""
    from ..io.qrun_dir import read_manifest, write_manifest
    qdir = Path(qdir)
    out = qdir / outdir
    freed, kept = 0, 0
    if out.is_dir():
        for p in sorted(out.rglob("*"), reverse=True):
            if p.is_symlink() or p.is_file():
                if p.suffix in SCRATCH_KEPT:
                    kept += 1
                    continue
                freed += p.lstat().st_size
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    man = read_manifest(qdir)
    man["scratch_removed"] = {"bytes": int(freed), "kept_files": kept,
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_manifest(qdir, man)
    return man["scratch_removed"]


def all_contracted(qdir: Path, irreps) -> bool:
    from ..io.qrun_dir import read_manifest
    caps = read_manifest(qdir).get("captures", {})
    return all(caps.get(str(p), {}).get("contracted") for p in irreps)
