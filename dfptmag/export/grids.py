"""Export a snapshot's fields over the supercell:

- XSF (VESTA, XCrySDen): one file per component, general periodic grid (end points repeated),
  Å, written here because ASE's XSF writer rounds data to 6 fixed decimals (too coarse for
  magnetization densities of 1e-4 μB/Å³);
- Gaussian cube, one per component (ASE's writer, bohr);
- VTK unstructured hexahedral grid with the vector δm and the scalar δn as point data (meshio),
  opens in ParaView;
- HDF5 with the raw complex periodic amplitudes.

Field units in files: per Å³ (XSF, VTK) or per bohr³ (cube, HDF5), as stated in each writer.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from ase import Atoms

from ..atomic import atomic_path
from ..constants import BOHR_RADIUS_ANGS
from ..analysis.snapshot import COMPONENTS, Amplitude, supercell_atoms

A3 = BOHR_RADIUS_ANGS ** 3


def _atomic(path, write):
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def supercell_ase(amp: Amplitude, cells, t: float) -> Atoms:
    syms, pos, disp = supercell_atoms(amp, cells, t)
    cell = amp.cell_bohr * np.array(cells)[:, None] * BOHR_RADIUS_ANGS
    return Atoms(syms, positions=(pos + disp) * BOHR_RADIUS_ANGS, cell=cell, pbc=True)


def write_xsf(path, atoms: Atoms, data: np.ndarray, name: str = "field"):
    """General periodic XSF grid: values at i/n for i = 0..n (the end points repeat i = 0)."""
    g = np.pad(data, [(0, 1)] * 3, mode="wrap")

    def w(tmp):
        with open(tmp, "w") as f:
            f.write("CRYSTAL\nPRIMVEC\n")
            for v in atoms.cell:
                f.write(" %.10f %.10f %.10f\n" % tuple(v))
            f.write("PRIMCOORD\n %d 1\n" % len(atoms))
            for z, p in zip(atoms.numbers, atoms.positions):
                f.write(" %d %.10f %.10f %.10f\n" % (z, *p))
            f.write(f"BEGIN_BLOCK_DATAGRID_3D\n {name}\n BEGIN_DATAGRID_3D_{name}\n")
            f.write(" %d %d %d\n 0.0 0.0 0.0\n" % g.shape)
            for v in atoms.cell:
                f.write(" %.10f %.10f %.10f\n" % tuple(v))
            flat = g.transpose(2, 1, 0).ravel()        # first index fastest
            for i in range(0, flat.size, 6):
                f.write(" " + " ".join("%.8e" % x for x in flat[i:i + 6]) + "\n")
            f.write(" END_DATAGRID_3D\nEND_BLOCK_DATAGRID_3D\n")
    return _atomic(path, w)


def write_cube(path, atoms: Atoms, data: np.ndarray):
    from ase.io import write
    return _atomic(path, lambda tmp: write(tmp, atoms, format="cube", data=data))


def write_vtk(path, atoms: Atoms, comp: np.ndarray):
    """comp: (4, N1, N2, N3) real [δn, δm_x, δm_y, δm_z] per Å³ on the supercell grid."""
    import meshio
    n1, n2, n3 = comp.shape[1:]
    i, j, k = np.meshgrid(np.arange(n1), np.arange(n2), np.arange(n3), indexing="ij")
    frac = np.stack([i / n1, j / n2, k / n3], axis=-1).reshape(-1, 3)
    points = frac @ atoms.cell.array
    idx = np.arange(n1 * n2 * n3).reshape(n1, n2, n3)
    c = idx[:-1, :-1, :-1]
    hexa = np.stack([c, idx[1:, :-1, :-1], idx[1:, 1:, :-1], idx[:-1, 1:, :-1],
                     idx[:-1, :-1, 1:], idx[1:, :-1, 1:], idx[1:, 1:, 1:], idx[:-1, 1:, 1:]], axis=-1).reshape(-1, 8)
    mesh = meshio.Mesh(points, [("hexahedron", hexa)],
                       point_data={"dn_e_per_A3": comp[0].ravel(),
                                   "dm_muB_per_A3": comp[1:].reshape(3, -1).T.copy()})
    return _atomic(path, lambda tmp: meshio.write(tmp, mesh, file_format="vtk", binary=True))


def write_h5(path, amp: Amplitude, cells, t):
    def w(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["object"] = "complex periodic amplitude of one-sided Eq. 1 (" + amp.what + ")"
            f.attrs["q_label"] = amp.label
            f.attrs["amplitude"] = amp.amplitude_note
            d = f.create_dataset("field", data=amp.field, compression="gzip")
            d.attrs["units"] = np.array(["e/bohr^3", "muB/bohr^3", "muB/bohr^3", "muB/bohr^3"],
                                        dtype=h5py.string_dtype())
            d.attrs["description"] = ("complex periodic amplitude [dn, dm_x, dm_y, dm_z] on the FFT grid of "
                                      "one cell; the field is Re[F(r) exp(i(q.r - omega t))]")
            d.attrs["components"] = ", ".join(COMPONENTS)
            for name, val, unit, what in (
                    ("q_crystal", amp.q_crystal, "1", "q in crystal coordinates of the reciprocal lattice"),
                    ("cell_bohr", amp.cell_bohr, "bohr", "lattice vectors (rows)"),
                    ("positions_bohr", amp.positions_bohr, "bohr", "Cartesian atomic positions"),
                    ("displacement_bohr", amp.displacement, "bohr", "complex displacement of each atom")):
                f[name] = val
                f[name].attrs["units"] = unit
                f[name].attrs["description"] = what
            f.attrs["snapshot_cells"] = np.array(cells)
            f.attrs["snapshot_time_periods"] = t
    return _atomic(path, w)
