"""Reader for pw.x/ph.x ``data-file-schema.xml`` (QE 6.x QEXSD schema).

Only the fields dfptmag needs are read, by name, tolerantly; units are those of the
file (Hartree atomic units; cell and positions in bohr; k-points Cartesian in 2π/alat).
"""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from . import reader


@dataclasses.dataclass
class QEData:
    path: Path
    qe_version: str
    alat: float                 # bohr
    cell: np.ndarray            # (3, 3) rows a1..a3, bohr
    bg: np.ndarray              # (3, 3) rows b1..b3, 2π/alat
    symbols: list[str]          # per atom
    positions: np.ndarray       # (nat, 3) bohr
    species: list[str]
    masses_amu: dict[str, float]
    pseudo_files: dict[str, str]
    noncolin: bool
    spinorbit: bool
    lsda: bool
    nbnd: int
    nelec: float
    occupations_kind: str       # 'fixed' or 'smearing' ('smearing' wherever a <smearing> is
                                # written: ph.x's own nscf XML says 'fixed' for a metal)
    xk: np.ndarray              # (nks, 3) Cartesian, 2π/alat
    wk: np.ndarray              # (nks,)
    npw: np.ndarray             # (nks,) plane waves per point
    eigenvalues_ha: np.ndarray  # (nks, nbnd)
    occupations: np.ndarray     # (nks, nbnd)
    fft_grid: tuple[int, int, int]
    fft_smooth: tuple[int, int, int]
    npwx: int
    ecutwfc_ha: float
    ecutrho_ha: float
    npool: int
    nprocs: int
    smearing: tuple[str, float] | None = None   # (QE's name, degauss in Ha) of a metal
    fermi_energy_ha: float | None = None

    @property
    def nat(self) -> int:
        return len(self.symbols)

    @property
    def omega(self) -> float:
        """Cell volume, bohr³."""
        return float(abs(np.linalg.det(self.cell)))

    @property
    def tpiba(self) -> float:
        return 2 * np.pi / self.alat

    def describe(self) -> str:
        return f"{self.path} (written by QE {self.qe_version})"


def _floats(text: str | None) -> np.ndarray:
    return np.array((text or "").split(), dtype=float)


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "t", ".true.", "1")


def _occupations(bs) -> dict:
    """occupations_kind, smearing (name, degauss in Ha) and fermi_energy_ha of <band_structure>:
    a <smearing> element makes the run a metal whatever <occupations_kind> says (ph.x's own nscf
    XML writes 'fixed' for a smeared run)."""
    occ_kind = bs.find("occupations_kind")
    smear = bs.find("smearing")
    smearing = (smear.text.strip(), float(smear.get("degauss"))) if smear is not None else None
    kind = "smearing" if smearing is not None else (occ_kind.text.strip() if occ_kind is not None else "unknown")
    ef = bs.find("fermi_energy")
    return {"occupations_kind": kind, "smearing": smearing,
            "fermi_energy_ha": float(ef.text) if ef is not None else None}


@reader('QE data-file-schema.xml')
def read_data_file_schema(path) -> QEData:
    """Parse ``<prefix>.save/data-file-schema.xml``."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found (expected QE's data-file-schema.xml)")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputFileError(path, f"not valid XML ({exc}); truncated or not a QE file?") from None
    creator = root.find("general_info/creator")
    version = creator.get("VERSION", "unknown") if creator is not None else "unknown"
    out = root.find("output")
    if out is None:
        raise InputFileError(path, f"no <output> section (QE {version}); not a finished pw.x/ph.x run")

    def req(node, tag):
        el = node.find(tag)
        if el is None:
            raise InputFileError(path, f"missing <{tag}> (QE {version} schema not understood)")
        return el

    struct = req(out, "atomic_structure")
    alat = float(struct.get("alat"))
    cell = np.array([_floats(req(struct, f"cell/a{i}").text) for i in (1, 2, 3)])
    atoms = struct.findall("atomic_positions/atom")
    symbols = [a.get("name") for a in atoms]
    positions = np.array([_floats(a.text) for a in atoms])
    species, masses, pseudos = [], {}, {}
    for sp in req(out, "atomic_species").findall("species"):
        name = sp.get("name")
        species.append(name)
        m = sp.find("mass")
        masses[name] = float(m.text) if m is not None else float("nan")
        pf = sp.find("pseudo_file")
        pseudos[name] = pf.text.strip() if pf is not None else ""
    basis = req(out, "basis_set")

    def grid(tag):
        g = req(basis, tag)
        return (int(g.get("nr1")), int(g.get("nr2")), int(g.get("nr3")))

    bg = np.array([_floats(req(basis, f"reciprocal_lattice/b{i}").text) for i in (1, 2, 3)])
    bs = req(out, "band_structure")
    ks = bs.findall("ks_energies")
    xk = np.array([_floats(k.find("k_point").text) for k in ks])
    wk = np.array([float(k.find("k_point").get("weight")) for k in ks])
    npw = np.array([int(k.find("npw").text) for k in ks])
    eig = np.array([_floats(k.find("eigenvalues").text) for k in ks])
    occ = np.array([_floats(k.find("occupations").text) for k in ks])
    par = root.find("parallel_info")
    return QEData(
        path=path, qe_version=version, alat=alat, cell=cell, bg=bg, symbols=symbols,
        positions=positions, species=species, masses_amu=masses, pseudo_files=pseudos,
        noncolin=_bool(req(bs, "noncolin").text), spinorbit=_bool(req(bs, "spinorbit").text),
        lsda=_bool(req(bs, "lsda").text), nbnd=int(req(bs, "nbnd").text),
        nelec=float(req(bs, "nelec").text),
        **_occupations(bs),
        xk=xk, wk=wk, npw=npw, eigenvalues_ha=eig, occupations=occ,
        fft_grid=grid("fft_grid"), fft_smooth=grid("fft_smooth"),
        npwx=int(req(basis, "npwx").text),
        ecutwfc_ha=float(req(basis, "ecutwfc").text), ecutrho_ha=float(req(basis, "ecutrho").text),
        npool=int(par.findtext("npool", "1")) if par is not None else 1,
        nprocs=int(par.findtext("nprocs", "1")) if par is not None else 1,
    )
