"""pw.x and ph.x input files for a workflow (text only; no process handling)."""
from __future__ import annotations

import numpy as np
from ase import Atoms

from ..constants import BOHR_RADIUS_ANGS
from . import config
from .config import Workflow
from .structure import read_structure
from .namelist import fortran_value, namelist


def build_atoms(wf: Workflow) -> Atoms:
    """The structure with its c axis set to layer thickness + vacuum (Å); a slab, so
    ``pbc = [1, 1, 0]`` (ASE then gives the 2D Bravais lattice and its band path)."""
    atoms = read_structure(wf.structure)
    z = atoms.positions[:, 2]
    cell = atoms.cell.array.copy()
    cell[2] = [0.0, 0.0, (z.max() - z.min()) + wf.vacuum_angstrom]
    atoms.set_cell(cell, scale_atoms=False)
    atoms.pbc = (True, True, False)
    return atoms


def alat_bohr(atoms: Atoms) -> float:
    """QE's alat for ibrav=0 with CELL_PARAMETERS in Å: |a1| in bohr."""
    return float(np.linalg.norm(atoms.cell[0])) / BOHR_RADIUS_ANGS


def q_crystal_to_tpiba(atoms: Atoms, q_crystal) -> np.ndarray:
    """Crystal coordinates of the reciprocal lattice → Cartesian in units of 2π/alat."""
    recip = atoms.cell.reciprocal() * np.linalg.norm(atoms.cell[0])   # rows b_i in 2π/alat
    return np.asarray(q_crystal, dtype=float) @ recip


def pw_input(wf: Workflow, atoms: Atoms, upf_names: dict[str, str], outdir: str,
             pseudo_dir: str, symmetry: bool = False, nbnd: int | None = None, k_tpiba=None) -> str:
    """pw.x scf input. ``symmetry=False`` (the δψ runs): nosym and noinv, so that ph.x keeps the
    full k list and its ψ buffer matches the collected wavefunctions point by point.
    ``symmetry=True``: crystal symmetry on, for the coarse q-grid of the interpolated dispersion.
    ``k_tpiba`` (a list of k in 2π/alat): a non-self-consistent 'bands' run at exactly those
    points with ``nbnd`` bands (the empty states of the time-odd response), every band converged
    to full accuracy."""
    pw = wf.pw
    species = sorted(set(atoms.get_chemical_symbols()), key=atoms.get_chemical_symbols().index)
    control = {"calculation": "scf" if k_tpiba is None else "bands", "prefix": wf.prefix, "outdir": outdir,
               "pseudo_dir": pseudo_dir, "verbosity": "high"}
    system = {"ibrav": 0, "nat": len(atoms), "ntyp": len(species),
              "ecutwfc": float(pw["ecutwfc_ry"]), "ecutrho": pw.get("ecutrho_ry"),
              "noncolin": True, "lspinorb": True,
              "nosym": None if symmetry else True, "noinv": None if symmetry else True,
              **config.occupation_keys(pw), "nbnd": pw.get("nbnd") if nbnd is None else int(nbnd),
              "assume_isolated": pw.get("assume_isolated")}
    electrons = {"conv_thr": float(pw.get("conv_thr", 1e-10)),
                 "mixing_beta": float(pw.get("mixing_beta", 0.5)),
                 "mixing_mode": pw.get("mixing_mode", "local-TF"),
                 "electron_maxstep": int(pw.get("electron_maxstep", 200))}
    if k_tpiba is not None:
        electrons["diago_full_acc"] = True
    from ase.data import atomic_masses, atomic_numbers
    lines = [namelist("control", control), namelist("system", system), namelist("electrons", electrons)]
    lines.append("ATOMIC_SPECIES")
    for sp in species:
        lines.append(f"  {sp} {float(atomic_masses[atomic_numbers[sp]])!r} {upf_names[sp]}")
    lines.append("CELL_PARAMETERS angstrom")
    for v in atoms.cell.array:
        lines.append("  " + " ".join(f"{x:.15f}" for x in v))
    lines.append("ATOMIC_POSITIONS crystal")
    for s, p in zip(atoms.get_chemical_symbols(), atoms.get_scaled_positions(wrap=False)):
        lines.append(f"  {s} " + " ".join(f"{x:.15f}" for x in p))
    if k_tpiba is not None:
        lines.append("K_POINTS tpiba")
        lines.append(f"  {len(k_tpiba)}")
        lines += ["  " + " ".join(f"{float(v):.15f}" for v in k) + " 1" for k in k_tpiba]
    else:
        k = wf.pw["kgrid"]
        lines.append("K_POINTS automatic")
        lines.append(f"  {k[0]} {k[1]} {k[2]} 0 0 0")
    return "\n".join(lines) + "\n"


def ph_input(prefix: str, outdir: str, q_tpiba, tr2_ph: float, **extra) -> str:
    """ph.x input; ``q_tpiba=None`` for ldisp runs (no q line)."""
    values = {"prefix": prefix, "outdir": outdir, "tr2_ph": float(tr2_ph)}
    values.update({k: v for k, v in extra.items() if v is not None})
    if q_tpiba is None:
        return "phonons (dfptmag)\n" + namelist("inputph", values)
    q = " ".join(f"{x:.15f}" for x in q_tpiba)
    return "phonons (dfptmag)\n" + namelist("inputph", values) + q + "\n"


def q2r_input(fildyn: str, flfrc: str, zasr: str, loto_2d: bool) -> str:
    """q2r.x input; ``loto_2d`` must match matdyn.x's, or the dipole term subtracted here and the
    one added back there differ and the interpolation misses the grid points."""
    return namelist("input", {"fildyn": fildyn, "zasr": zasr, "flfrc": flfrc, "loto_2d": bool(loto_2d)})


def matdyn_input(flfrc: str, fldyn: str, flfrq: str, asr: str, loto_2d: bool, q_crystal) -> str:
    """matdyn.x on an explicit list of q (crystal coordinates), writing the interpolated dynamical
    matrices (fldyn) so that dfptmag diagonalises them exactly as the DFPT ones."""
    head = namelist("input", {"flfrc": flfrc, "fldyn": fldyn, "flfrq": flfrq, "asr": asr,
                              "loto_2d": bool(loto_2d), "q_in_cryst_coord": True,
                              "q_in_band_form": False, "flvec": "matdyn.modes"})
    q = np.asarray(q_crystal, dtype=float)
    return head + f"{len(q)}\n" + "".join(" ".join(f"{x:.15f}" for x in v) + "\n" for v in q)


__all__ = ["read_structure", "build_atoms", "alat_bohr", "q_crystal_to_tpiba", "pw_input", "ph_input", "q2r_input", "matdyn_input", "fortran_value"]
