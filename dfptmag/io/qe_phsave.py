"""Readers for ph.x's ``_ph0/<prefix>.phsave/`` XML files: displacement patterns
(``patterns.<iq>.xml``) and partial dynamical matrices (``dynmat.<iq>.<irr>.xml``)."""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from . import reader


def _parse(path: Path):
    if not path.is_file():
        raise InputFileError(path, "file not found")
    text = path.read_text(errors="replace")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        # QE 6.7 writes some phsave files (dynmat.*.xml) without the closing </Root>
        if "<Root>" in text and "</Root>" not in text:
            try:
                return ET.fromstring(text + "\n</Root>\n")
            except ET.ParseError:
                pass
        raise InputFileError(path, f"not valid XML ({exc}); truncated?") from None


def _complex_lines(text: str, path: Path) -> np.ndarray:
    vals = np.array(text.replace(",", " ").split(), dtype=float)
    if vals.size % 2:
        raise InputFileError(path, "odd number of values in a complex array")
    return vals[0::2] + 1j * vals[1::2]


@dataclasses.dataclass
class Patterns:
    path: Path
    irreps: list[int]        # irrep index (1-based) of each global pattern
    vectors: np.ndarray      # (npat, 3*nat) complex; pattern μ = row μ-1


@reader('ph.x patterns XML file')
def read_patterns(path) -> Patterns:
    path = Path(path)
    root = _parse(path)
    info = root.find("IRREPS_INFO")
    if info is None:
        raise InputFileError(path, "no IRREPS_INFO: not a ph.x patterns file")
    nirr = int(info.findtext("NUMBER_IRR_REP"))
    irreps, vecs = [], []
    for irr in range(1, nirr + 1):
        rep = info.find(f"REPRESENTION.{irr}")
        if rep is None:
            raise InputFileError(path, f"REPRESENTION.{irr} missing")
        npert = int(rep.findtext("NUMBER_OF_PERTURBATIONS"))
        for ip in range(1, npert + 1):
            node = rep.find(f"PERTURBATION.{ip}/DISPLACEMENT_PATTERN")
            vecs.append(_complex_lines(node.text, path))
            irreps.append(irr)
    vecs = np.array(vecs)
    if vecs.shape[0] != vecs.shape[1]:
        raise InputFileError(path, f"{vecs.shape[0]} patterns of length {vecs.shape[1]}: not a "
                                   "complete basis")
    return Patterns(path=path, irreps=irreps, vectors=vecs)


@reader('ph.x partial dynamical-matrix XML file')
def read_partial_dynmat(path) -> tuple[bool, np.ndarray]:
    """Return (done, matrix) of one ``dynmat.<iq>.<irr>.xml``; matrix in the pattern basis,
    Ry/bohr², shape (3nat, 3nat)."""
    path = Path(path)
    root = _parse(path)
    done = (root.findtext("PM_HEADER/DONE_IRR") or "").strip().lower() == "true"
    node = root.find("PARTIAL_MATRIX/PARTIAL_DYN")
    if node is None:
        raise InputFileError(path, "no PARTIAL_MATRIX/PARTIAL_DYN")
    vals = _complex_lines(node.text, path)
    n = int(round(np.sqrt(vals.size)))
    if n * n != vals.size:
        raise InputFileError(path, f"{vals.size} values do not form a square matrix")
    # Fortran order: first index fastest
    return done, vals.reshape(n, n).T.copy()

