"""``dfptmag doctor``: which QE, MPI launcher and (optionally) Slurm dfptmag would use, the QE
version read from each program's own header, and the known capture limits of that version."""
from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
from pathlib import Path

from ..workflow import qe


@dataclasses.dataclass
class Report:
    lines: list[str]
    problems: list[str]           # what stops dfptmag from running (empty: all good)
    versions: dict[str, dict]     # {program: {"path", "version"}}


def _first_line(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0].strip() if text else None


def doctor(workflow=None, slurm: bool = False) -> Report:
    """Inspect the QE installation (of ``workflow``'s ``[qe] bin_dir``, else ``$DFPTMAG_QE_BIN``,
    else PATH), the MPI launcher of its ``[parallel] mpirun`` and, with ``slurm``, the Slurm
    client commands."""
    from .. import __version__
    from ..data import resolve_workflow
    from ..workflow import config
    wf = config.load(resolve_workflow(workflow)) if workflow is not None else None
    bin_dir = wf.qe_bin_dir if wf is not None else None
    lines = [f"dfptmag {__version__} ({Path(__file__).resolve().parent.parent})"]
    problems = []
    if bin_dir is None and qe.bin_dir() is not None and not qe.bin_dir().is_dir():
        problems.append(f"${qe.ENV} = {qe.bin_dir()}: not a folder")      # said once, not per program
    lines.append(f"Quantum ESPRESSO, from {qe.where(bin_dir)}:")
    versions = qe.versions(bin_dir)
    needed = {"pw.x": "every run", "ph.x": "every run", "ld1.x": "pseudopotentials from ld1.x inputs",
              "q2r.x": "[dispersion] (interpolated phonons)", "matdyn.x": "[dispersion] (interpolated phonons)"}
    for name in qe.PROGRAMS:
        if name in versions:
            v = versions[name]
            lines.append(f"  {name:<9} {v['version'] or 'version unknown':<10} {v['path']}")
        else:
            lines.append(f"  {name:<9} {'not found':<10} (needed for {needed[name]})")
            if name in ("pw.x", "ph.x", "ld1.x") and not problems:
                problems.append(f"{name} not found in {qe.where(bin_dir)}")
    found = {v["version"] for k, v in versions.items() if k in ("pw.x", "ph.x", "ld1.x") and v["version"]}
    if len(found) > 1:
        problems.append("pw.x, ph.x and ld1.x come from different QE versions ("
                        + ", ".join(sorted(found)) + "): ph.x must read pw.x's files of its own version")
    version = None
    if "ph.x" in versions and versions["ph.x"]["version"]:
        version = qe.parse_header(f"Program PHONON v.{versions['ph.x']['version']}")[1]
    tested = "tested" if version is not None and str(version) in qe.TESTED else "not among the tested versions"
    if version is not None:
        lines.append(f"  QE {version}: {tested} ({', '.join(qe.TESTED)}; the docs' QE support table)")
    mpirun = shlex.split(wf.mpirun)[0] if wf is not None else "mpirun"
    exe = shutil.which(mpirun)
    if exe is None:
        lines.append(f"MPI launcher: {mpirun} not found (needed when nproc > 1)")
    else:
        lines.append(f"MPI launcher: {mpirun} ({exe}): {_first_line([exe, '--version']) or 'version unknown'}")
    if slurm:
        sb = shutil.which("sbatch")
        if sb is None:
            lines.append("Slurm: sbatch not found (the slurm engine needs sbatch, squeue, scancel)")
            problems.append("sbatch not found")
        else:
            try:
                up = subprocess.run(["squeue", "--noheader"], capture_output=True, timeout=20).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                up = False
            lines.append(f"Slurm: {_first_line([sb, '--version']) or 'sbatch'} ({sb}); controller "
                         + ("answers" if up else "does not answer (squeue failed)"))
            if not up:
                problems.append("Slurm controller does not answer")
    lim = qe.limits(version)
    lines.append(f"Known capture limits of QE {version}:" if version is not None
                 else "Known capture limits (QE version unknown):")
    lines += [f"  - {t}" for t in lim] or ["  - none known"]
    return Report(lines, problems, versions)
