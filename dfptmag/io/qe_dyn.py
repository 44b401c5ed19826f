"""Reader for ph.x's text dynamical-matrix file (``fildyn``).

Returns the dynamical matrices of every q block (Cartesian, Ry/bohr², not mass-scaled,
index 3*atom + α), the masses of the header (Ry mass units, amu × AMU_RY) and the
frequencies ph.x printed after diagonalising (THz and cm⁻¹).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from . import reader

_FREQ = re.compile(r"freq\s*\(\s*(\d+)\s*\)\s*=\s*([-\d.]+)\s*\[THz\]\s*=\s*([-\d.]+)\s*\[cm-1\]")
_Q = re.compile(r"q = \(\s*([-\d.Ee+]+)\s+([-\d.Ee+]+)\s+([-\d.Ee+]+)\s*\)")


@dataclasses.dataclass
class DynFile:
    path: Path
    nat: int
    species: list[str]
    masses_ry: np.ndarray          # per species, Ry mass units
    ityp: np.ndarray               # (nat,) 0-based species index
    q_points: list[np.ndarray]     # Cartesian, 2π/alat, one per matrix block
    matrices: list[np.ndarray]     # (3nat, 3nat) complex, Ry/bohr²
    diag_q: np.ndarray | None      # q of the "Diagonalizing" section
    freq_thz: np.ndarray           # (3nat,) as printed by ph.x
    freq_cm1: np.ndarray


@reader('ph.x/matdyn.x dynamical-matrix file')
def read_dyn(path) -> DynFile:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "dynamical-matrix file (fildyn) not found")
    lines = path.read_text().splitlines()
    if len(lines) < 4 or not lines[0].startswith("Dynamical matrix file"):
        raise InputFileError(path, "empty or not a ph.x fildyn file (a run that did not cover "
                                   "all irreps leaves it empty)")
    try:
        head = lines[2].split()
        ntyp, nat, ibrav = int(head[0]), int(head[1]), int(head[2])
        i = 3
        if ibrav == 0:
            i += 4  # "Basis vectors" + 3 lines
        species, masses = [], []
        for _ in range(ntyp):
            m = re.match(r"\s*\d+\s+'([^']*)'\s+([-\d.Ee+]+)", lines[i])
            species.append(m.group(1).strip())
            masses.append(float(m.group(2)))
            i += 1
        ityp = np.array([int(lines[i + a].split()[1]) - 1 for a in range(nat)])
        i += nat
        q_points, matrices, diag_q, freqs = _blocks(lines, i, nat)
    except (IndexError, ValueError, AttributeError) as exc:
        raise InputFileError(path, f"cannot parse fildyn near line {i + 1} ({exc!r}); truncated?") from None
    if not matrices:
        raise InputFileError(path, "contains no dynamical matrix")
    freqs = np.array(freqs).reshape(-1, 2)
    return DynFile(path=path, nat=nat, species=species, masses_ry=np.array(masses), ityp=ityp,
                   q_points=q_points, matrices=matrices, diag_q=diag_q,
                   freq_thz=freqs[:, 0], freq_cm1=freqs[:, 1])


def _blocks(lines, i, nat):
    """The "Dynamical  Matrix in cartesian axes" blocks and printed frequencies from line i on."""
    q_points, matrices = [], []
    diag_q, freqs = None, []
    while i < len(lines):
        line = lines[i]
        if "Dynamical  Matrix in cartesian axes" in line:
            q = _Q.search(lines[i + 2])
            q_points.append(np.array([float(x) for x in q.groups()]))
            i += 4
            d = np.zeros((3 * nat, 3 * nat), dtype=complex)
            for _ in range(nat * nat):
                a, b = (int(x) - 1 for x in lines[i].split()[:2])
                for al in range(3):
                    v = np.array(lines[i + 1 + al].split(), dtype=float)
                    d[3 * a + al, 3 * b:3 * b + 3] = v[0::2] + 1j * v[1::2]
                i += 4
            matrices.append(d)
            continue
        if "Diagonalizing the dynamical matrix" in line:
            q = _Q.search(lines[i + 2])
            diag_q = np.array([float(x) for x in q.groups()])
        m = _FREQ.search(line)
        if m:
            freqs.append((float(m.group(2)), float(m.group(3))))
        i += 1
    return q_points, matrices, diag_q, freqs


@reader('dynamical-matrix file')
def read_dyn_blocks(path, nat: int) -> tuple[np.ndarray, np.ndarray]:
    """matdyn.x's ``fldyn`` file (header-less blocks, one per q): q (nq, 3) in 2π/alat and the
    Cartesian dynamical matrices (nq, 3nat, 3nat), Ry/bohr², not mass-scaled."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "matdyn.x dynamical-matrix file (fldyn) not found")
    try:
        q_points, matrices, _, _ = _blocks(path.read_text().splitlines(), 0, nat)
    except (IndexError, ValueError, AttributeError) as exc:
        raise InputFileError(path, f"cannot parse matdyn.x fldyn ({exc!r}); truncated?") from None
    if not matrices:
        raise InputFileError(path, "contains no dynamical matrix")
    return np.array(q_points), np.array(matrices)
