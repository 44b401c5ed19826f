"""pw.x and ph.x input files for a workflow (text only; no process handling)."""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.io import read

from ..constants import BOHR_RADIUS_ANGS
from .config import Workflow
from .namelist import fortran_value, namelist


def build_atoms(wf: Workflow) -> Atoms:
    """The structure with its c axis set to layer thickness + vacuum (Å)."""
    atoms = read(wf.structure)
    z = atoms.positions[:, 2]
    cell = atoms.cell.array.copy()
    cell[2] = [0.0, 0.0, (z.max() - z.min()) + wf.vacuum_angstrom]
    atoms.set_cell(cell, scale_atoms=False)
    return atoms


def alat_bohr(atoms: Atoms) -> float:
    """QE's alat for ibrav=0 with CELL_PARAMETERS in Å: |a1| in bohr."""
    return float(np.linalg.norm(atoms.cell[0])) / BOHR_RADIUS_ANGS


def q_crystal_to_tpiba(atoms: Atoms, q_crystal) -> np.ndarray:
    """Crystal coordinates of the reciprocal lattice → Cartesian in units of 2π/alat."""
    recip = atoms.cell.reciprocal() * np.linalg.norm(atoms.cell[0])   # rows b_i in 2π/alat
    return np.asarray(q_crystal, dtype=float) @ recip


def pw_input(wf: Workflow, atoms: Atoms, upf_names: dict[str, str], outdir: str,
             pseudo_dir: str) -> str:
    pw = wf.pw
    species = sorted(set(atoms.get_chemical_symbols()), key=atoms.get_chemical_symbols().index)
    control = {"calculation": "scf", "prefix": wf.prefix, "outdir": outdir,
               "pseudo_dir": pseudo_dir, "verbosity": "high"}
    system = {"ibrav": 0, "nat": len(atoms), "ntyp": len(species),
              "ecutwfc": float(pw["ecutwfc_ry"]), "ecutrho": pw.get("ecutrho_ry"),
              "noncolin": True, "lspinorb": True, "nosym": True, "noinv": True,
              "occupations": "fixed", "nbnd": pw.get("nbnd"),
              "assume_isolated": pw.get("assume_isolated")}
    electrons = {"conv_thr": float(pw.get("conv_thr", 1e-10)),
                 "mixing_beta": float(pw.get("mixing_beta", 0.5)),
                 "mixing_mode": pw.get("mixing_mode", "local-TF"),
                 "electron_maxstep": int(pw.get("electron_maxstep", 200))}
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
    k = wf.pw["kgrid"]
    lines.append("K_POINTS automatic")
    lines.append(f"  {k[0]} {k[1]} {k[2]} 0 0 0")
    return "\n".join(lines) + "\n"


def ph_input(prefix: str, outdir: str, q_tpiba, tr2_ph: float, **extra) -> str:
    values = {"prefix": prefix, "outdir": outdir, "tr2_ph": float(tr2_ph)}
    values.update({k: v for k, v in extra.items() if v is not None})
    q = " ".join(f"{x:.15f}" for x in q_tpiba)
    return "phonons (dfptmag)\n" + namelist("inputph", values) + q + "\n"


__all__ = ["build_atoms", "alat_bohr", "q_crystal_to_tpiba", "pw_input", "ph_input", "fortran_value"]
