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


# what each QE program is needed for, said when it is missing
_NEEDED_FOR = {"pw.x": "every run", "ph.x": "every run", "ld1.x": "pseudopotentials from ld1.x inputs",
               "q2r.x": "[dispersion] (interpolated phonons)", "matdyn.x": "[dispersion] (interpolated phonons)"}
# the programs of every run: the first one missing stops dfptmag, and their versions must agree
_ESSENTIAL = ("pw.x", "ph.x", "ld1.x")


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
    lines += _program_lines(versions, bin_dir, problems)
    problems += _version_mix(versions)
    version = _ph_version(versions)
    if version is not None:
        tested = "tested" if str(version) in qe.TESTED else "not among the tested versions"
        lines.append(f"  QE {version}: {tested} ({', '.join(qe.TESTED)}; the docs' QE support table)")
    lines.append(_mpi_line(shlex.split(wf.mpirun)[0] if wf is not None else "mpirun"))
    if slurm:
        lines.append(_slurm_line(problems))
    lines.append(f"Known capture limits of QE {version}:" if version is not None
                 else "Known capture limits (QE version unknown):")
    lines += [f"  - {t}" for t in qe.limits(version)] or ["  - none known"]
    return Report(lines, problems, versions)


def _program_lines(versions: dict, bin_dir, problems: list[str]) -> list[str]:
    """One line per QE program: its version and path, or what it is needed for. The first
    missing essential program is added to ``problems`` unless a problem is already known."""
    lines = []
    for name in qe.PROGRAMS:
        if name in versions:
            v = versions[name]
            lines.append(f"  {name:<9} {v['version'] or 'version unknown':<10} {v['path']}")
        else:
            lines.append(f"  {name:<9} {'not found':<10} (needed for {_NEEDED_FOR[name]})")
            if name in _ESSENTIAL and not problems:
                problems.append(f"{name} not found in {qe.where(bin_dir)}")
    return lines


def _version_mix(versions: dict) -> list[str]:
    """A problem when pw.x, ph.x and ld1.x report different QE versions."""
    found = {v["version"] for k, v in versions.items() if k in _ESSENTIAL and v["version"]}
    if len(found) > 1:
        return ["pw.x, ph.x and ld1.x come from different QE versions ("
                + ", ".join(sorted(found)) + "): ph.x must read pw.x's files of its own version"]
    return []


def _ph_version(versions: dict):
    """The QE version of ph.x (the program whose files dfptmag reads), or None if unknown."""
    if "ph.x" in versions and versions["ph.x"]["version"]:
        return qe.parse_header(f"Program PHONON v.{versions['ph.x']['version']}")[1]
    return None


def _mpi_line(mpirun: str) -> str:
    exe = shutil.which(mpirun)
    if exe is None:
        return f"MPI launcher: {mpirun} not found (needed when nproc > 1)"
    return f"MPI launcher: {mpirun} ({exe}): {_first_line([exe, '--version']) or 'version unknown'}"


def _slurm_line(problems: list[str]) -> str:
    """The Slurm client and whether its controller answers; what fails is added to ``problems``."""
    sb = shutil.which("sbatch")
    if sb is None:
        problems.append("sbatch not found")
        return "Slurm: sbatch not found (the slurm engine needs sbatch, squeue, scancel)"
    try:
        up = subprocess.run(["squeue", "--noheader"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        up = False
    line = (f"Slurm: {_first_line([sb, '--version']) or 'sbatch'} ({sb}); controller "
            + ("answers" if up else "does not answer (squeue failed)"))
    if not up:
        problems.append("Slurm controller does not answer")
    return line
