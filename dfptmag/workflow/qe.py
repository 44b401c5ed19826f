"""Which Quantum ESPRESSO dfptmag runs, which version it is, and what that version can capture.

Where the QE programs come from, first match wins:

1. ``[qe] bin_dir`` in the workflow (a folder holding pw.x, ph.x, ld1.x, q2r.x, matdyn.x);
2. the environment variable ``DFPTMAG_QE_BIN`` (the same kind of folder: what a cluster's
   ``module load`` prefix gives, e.g. ``$EBROOTQUANTUMESPRESSO/bin``);
3. ``PATH``.

A program's version is read from the header it prints when started with empty input
("Program PWSCF v.7.4.1 starts on ..."), once per binary (cached by path and modification
time). Versions tested with dfptmag, and the agreement measured between them, are in the
documentation's QE support table; :data:`LIMITS` lists what a version cannot do for the capture.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ..errors import InputFileError, QERunError

ENV = "DFPTMAG_QE_BIN"
PROGRAMS = ("pw.x", "ph.x", "ld1.x", "q2r.x", "matdyn.x")
TESTED = ("6.7MaX", "7.4.1", "7.5")          # the versions the test suite runs (docs' support table)
_HEADER = re.compile(r"Program\s+(\S+)\s+v\.(\d+)\.(\d+)(?:\.(\d+))?(\S*)")


@dataclasses.dataclass(frozen=True)
class Version:
    """A QE version as printed in a program's header: ``7.4.1``, ``7.5``, ``6.7MaX``."""
    text: str
    number: tuple[int, ...]

    def __str__(self) -> str:
        return self.text

    def at_least(self, *number: int) -> bool:
        return self.number >= tuple(number)


def parse_header(output: str) -> tuple[str, Version] | None:
    """(program name, version) from a QE program's output, or None."""
    m = _HEADER.search(output)
    if not m:
        return None
    number = tuple(int(g) for g in m.groups()[1:4] if g is not None)
    text = ".".join(str(n) for n in number) + m.group(5)
    return m.group(1), Version(text, number)


@lru_cache(maxsize=64)
def _probe(path: str, mtime: float) -> Version | None:
    with tempfile.TemporaryDirectory() as tmp:      # an empty input may leave a CRASH file
        try:
            proc = subprocess.run([path], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  cwd=tmp, timeout=60, env=_probe_env())
        except (OSError, subprocess.TimeoutExpired):
            return None
    found = parse_header(proc.stdout + proc.stderr)
    return found[1] if found else None


def _probe_env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    return env


def version_of(path) -> Version | None:
    """The version a QE binary prints in its header (None: it printed none)."""
    path = str(Path(path).resolve())
    return _probe(path, os.stat(path).st_mtime)


def bin_dir(workflow_bin_dir=None) -> Path | None:
    """The folder QE programs are taken from (None: PATH), by the rule in the module docstring."""
    if workflow_bin_dir:
        return Path(workflow_bin_dir)
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else None


def where(workflow_bin_dir=None) -> str:
    """Where QE is looked for, in words, for messages."""
    if workflow_bin_dir:
        return f"[qe] bin_dir = {workflow_bin_dir}"
    if os.environ.get(ENV):
        return f"${ENV} = {os.environ[ENV]}"
    return "PATH"


def find(program: str, workflow_bin_dir=None) -> str | None:
    """The absolute path of a QE program, or None."""
    folder = bin_dir(workflow_bin_dir)
    if folder is None:
        return shutil.which(program)
    exe = folder / program
    return str(exe.resolve()) if exe.is_file() and os.access(exe, os.X_OK) else None


def program(name: str, workflow_bin_dir=None) -> str:
    """The absolute path of a QE program; :class:`QERunError` (one line) when it is missing."""
    exe = find(name, workflow_bin_dir)
    if exe is None:
        hint = ("install Quantum ESPRESSO (Debian: apt-get install quantum-espresso), load your "
                f"site's module, or set ${ENV} to the folder that holds {name}")
        raise QERunError(f"{name} not found in {where(workflow_bin_dir)}: {hint}")
    return exe


def check_bin_dir(path, value) -> None:
    """Validate ``[qe] bin_dir`` (or ``$DFPTMAG_QE_BIN``): a folder with pw.x and ph.x."""
    folder = Path(value)
    if not folder.is_dir():
        raise InputFileError(path, f"[qe] bin_dir = {value}: not a folder")
    missing = [p for p in ("pw.x", "ph.x") if not (folder / p).is_file()]
    if missing:
        raise InputFileError(path, f"[qe] bin_dir = {value}: has no {', '.join(missing)}")


# What a version cannot do for the capture: (first version affected, setting, text). Checked
# before any QE process starts (:func:`refuse_uncapturable`) and printed by ``dfptmag doctor``.
LIMITS = (
    ((7, 0), "reduce_io",
     "reduce_io = .true. cannot be captured on QE >= 7.0: ph.x then sets io_level = 0 "
     "(PHonon/PH/phq_readin.f90) and keeps the δψ buffer in memory, so no δψ file exists; "
     "remove reduce_io (QE 6.x sets io_level = 1 and writes the buffer)"),
)


def limits(version: Version | None) -> list[str]:
    """The known capture limits of a QE version (all of them when the version is unknown)."""
    return [text for first, _, text in LIMITS if version is None or version.at_least(*first)]


def refuse_uncapturable(infile, inputph: dict, ph_exe: str | None) -> None:
    """Raise :class:`InputFileError` naming ``infile`` if its &inputph asks for something the
    ph.x at ``ph_exe`` cannot have captured (see :data:`LIMITS`)."""
    version = version_of(ph_exe) if ph_exe else None
    for first, key, text in LIMITS:
        if inputph.get(key) is True and (version is None or version.at_least(*first)):
            found = f"ph.x {version} ({ph_exe})" if version else "ph.x of unknown version"
            raise InputFileError(infile, f"{key} = .true. with {found}: {text}")


RECORD = "qe_versions.json"


def versions(workflow_bin_dir=None) -> dict[str, dict]:
    """{program: {"path", "version"}} for each QE program found (missing ones left out)."""
    out = {}
    for name in PROGRAMS:
        exe = find(name, workflow_bin_dir)
        if exe is not None:
            v = version_of(exe)
            out[name] = {"path": exe, "version": str(v) if v else None}
    return out


def record(run_dir, workflow_bin_dir=None) -> str | None:
    """Write the QE versions a run directory is computed with (``qe_versions.json``); if an
    earlier command there used another version, return the notice that says what follows: every
    step reruns, because ld1.x writes its version into each pseudopotential's header and the
    pseudopotentials' content enters every resume hash. Results of two QE versions are never
    mixed in one run directory."""
    import json

    from ..atomic import write_text
    path = Path(run_dir) / RECORD
    now = versions(workflow_bin_dir)
    before = None
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except json.JSONDecodeError:
            before = None
    changed = None
    if isinstance(before, dict):
        old = {k: (v or {}).get("version") for k, v in before.items() if k in ("ld1.x", "pw.x", "ph.x")}
        new = {k: v["version"] for k, v in now.items() if k in old}
        if old != new:
            show = lambda d: ", ".join(f"{k} {d[k]}" for k in sorted(d))  # noqa: E731
            changed = (f"{run_dir}: QE changed since the last command here ({show(old)} → {show(new)}, "
                       f"from {where(workflow_bin_dir)}): every step reruns, since each "
                       "pseudopotential's header names the ld1.x version and the pseudopotentials "
                       "enter every resume hash; results of two QE versions are never mixed")
    if before != now:
        write_text(path, json.dumps(now, indent=1))
    return changed
