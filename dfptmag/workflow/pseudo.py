"""Pseudopotentials generated with ld1.x from inputs kept in the repository.

Each UPF is cached by the SHA-256 of its ld1.x input (in ``$DFPTMAG_CACHE`` or
``~/.cache/dfptmag/pseudo``) and checked: fully relativistic (has_so), norm-conserving, and no
ghost state in ld1.x's Bessel-basis test.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..atomic import copy_file
from ..errors import InputFileError, QERunError
from ..io.upf import read_upf_header
from .capture import supervised         # no ld1.x outlives dfptmag
from .qe import version_of


def cache_dir() -> Path:
    root = os.environ.get("DFPTMAG_CACHE") or os.path.join(Path.home(), ".cache", "dfptmag")
    return Path(root) / "pseudo"


def upf_name(ld1_input: str, where) -> str:
    """The UPF file name an ld1.x input writes (file_pseudopw); a ready UPF keeps its own name."""
    from ..io.upf import is_upf
    if where is not None and Path(where).is_file() and is_upf(where):
        return Path(where).name
    m = re.search(r"file_pseudopw\s*=\s*'([^']+)'", ld1_input)
    if not m:
        raise InputFileError(where, "no file_pseudopw='...' in the ld1.x input")
    return m.group(1)


def content_key(upf_text: str) -> str:
    """The UPF text without ld1.x's "Generation date" line: two generations of the same input on
    different days are the same pseudopotential (for resume hashes and the copy into a run)."""
    return "\n".join(ln for ln in upf_text.splitlines() if "Generation date" not in ln)


def ghost_report(ld1_output: str, tol_ry: float = 0.01) -> list[str]:
    """Channels whose lowest Bessel-basis eigenvalue (largest cutoff) lies more than tol_ry below
    the lowest pseudo-atom eigenvalue of that (l, j): a ghost."""
    ps = {}
    test = ld1_output.split("Testing the pseudopotential")[-1].split("basis set of Bessel")[0]
    for m in re.finditer(r"^\s*\d+\s+(\d)\s+([\d.]+)\s+\w+\s+\d+\(\s*[\d.]+\)\s+([-\d.]+)\s+([-\d.]+)",
                         test, re.M):
        key = (int(m.group(1)), float(m.group(2)))
        ps[key] = min(ps.get(key, 1e9), float(m.group(4)))
    blocks = ld1_output.split("Cutoff (Ry) :")
    if len(blocks) < 2 or not ps:
        return ["ld1.x output has no Bessel-basis test"]
    last = blocks[-1]
    bad = []
    for m in re.finditer(r"E\(L=(\d),J=([\d.]+)\)\s*=\s*([-\d.]+)", last):
        key = (int(m.group(1)), float(m.group(2)))
        e1 = float(m.group(3))
        if key in ps and e1 < ps[key] - tol_ry:
            bad.append(f"l={key[0]} j={key[1]}: Bessel-basis {e1:.4f} Ry below pseudo-atom {ps[key]:.4f} Ry")
    return bad


def check_upf(path, element: str | None = None) -> dict:
    """A ready UPF file (PseudoDojo, SSSP, or one ld1.x wrote) checked before any QE run: fully
    relativistic (has_so), norm-conserving, of ``element``, with a positive valence (z_valence).
    Returns its header; InputFileError naming the file otherwise. The functional and the suggested
    cutoffs are checked against the workflow by :func:`dfptmag.workflow.config.load`."""
    from ..io.upf import read_upf_header
    head = read_upf_header(path)
    if not head["has_so"]:
        raise InputFileError(path, "UPF has no spin-orbit data (has_so false, relativistic="
                                   f"{head['relativistic'] or '?'}): dfptmag needs a fully relativistic pseudopotential")
    if head["pseudo_type"] != "NC":
        raise InputFileError(path, f"UPF is {head['pseudo_type']}: dfptmag needs norm-conserving")
    if element is not None and head["element"] and head["element"].capitalize() != element.capitalize():
        raise InputFileError(path, f"UPF is for {head['element']}, not {element}")
    zval = head["z_valence"]
    if not (zval > 0):                  # NaN (missing) fails too
        raise InputFileError(path, "UPF has no positive valence (z_valence = "
                                   f"{'missing' if zval != zval else format(zval, 'g')}): pw.x needs the ionic charge")
    return head


def generate(ld1_input_path, dest_dir, ld1x: str = "ld1.x") -> Path:
    """Return the path of the UPF for this ld1.x input inside dest_dir, generating if needed.
    The cache is keyed by the input and by ld1.x's version: each QE version makes its own UPF
    (its header names the version), so runs of two versions never share a pseudopotential.
    A ready UPF file is checked (:func:`check_upf`) and copied as it is, without ld1.x."""
    from ..io.upf import is_upf
    ld1_input_path = Path(ld1_input_path)
    if is_upf(ld1_input_path):
        check_upf(ld1_input_path)
        dest = Path(dest_dir) / ld1_input_path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.is_file() or dest.read_bytes() != ld1_input_path.read_bytes():
            copy_file(ld1_input_path, dest, metadata=True)
        return dest
    text = ld1_input_path.read_text()
    name = upf_name(text, ld1_input_path)
    exe = shutil.which(ld1x)
    if exe is None:
        raise QERunError(f"{ld1x} not found on PATH: install QE (Debian package quantum-espresso)")
    version = version_of(exe)
    digest = hashlib.sha256((text + f"\0ld1.x {version}").encode()).hexdigest()[:16]
    cached = cache_dir() / digest / name
    if not cached.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(supervised([exe]), input=text, capture_output=True, text=True,
                                  cwd=tmp, start_new_session=True)
            out = proc.stdout
            upf = Path(tmp) / name
            if proc.returncode != 0 or not upf.is_file():
                raise QERunError(f"ld1.x failed on {ld1_input_path}:\n" + "\n".join(out.splitlines()[-15:]))
            ghosts = ghost_report(out)
            if ghosts:
                raise InputFileError(ld1_input_path, "ghost state in ld1.x's test: " + "; ".join(ghosts))
            head = read_upf_header(upf)
            if not head["has_so"]:
                raise InputFileError(ld1_input_path, "generated UPF has no spin-orbit data (has_so): "
                                                     "use rel=2 in &input")
            if head["pseudo_type"] != "NC":
                raise InputFileError(ld1_input_path, f"generated a {head['pseudo_type']} pseudopotential; "
                                                     "dfptmag needs norm-conserving (pseudotype=2, tm=.true.)")
            cached.parent.mkdir(parents=True, exist_ok=True)
            (cached.parent / "ld1.out").write_text(out)
            copy_file(upf, cached, metadata=True)
    dest = Path(dest_dir) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or content_key(dest.read_text(errors="replace")) != content_key(
            cached.read_text(errors="replace")):
        copy_file(cached, dest, metadata=True)
    return dest
