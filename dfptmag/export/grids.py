"""Export a snapshot's fields over the supercell:

- XSF (VESTA, XCrySDen): one file per component, general periodic grid (end points repeated),
  Å, written here because ASE's XSF writer rounds data to 6 fixed decimals (too coarse for
  magnetization densities of 1e-4 μB/Å³);
- Gaussian cube, one per component (ASE's writer, bohr);
- VTK unstructured hexahedral grid with the vector δm and the scalar δn as point data (meshio),
  opens in ParaView, plus a companion legacy VTK file ``<stem>_atoms.vtk`` holding the atoms as
  ``vertex`` cells (point data: atomic number, displacement in Å), which ParaView opens next to
  the grid (apply a Glyph filter to see spheres);
- HDF5 with the raw complex periodic amplitudes.

Centring (:func:`centring_shift`): the slab is translated along a3 by a whole number of grid
steps so that the layer's centre sits in the middle of the box, and the field is rolled by the
same number of steps. Every grid point and every atom moves by the same vector, so the picture
is the same physical field, with one contiguous layer instead of two half layers at the top and
bottom of the box (WSe2's lower Se at z = −1.68 Å). The shift depends only on the structure and
the grid, so files of different modes and times overlay exactly.

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


def centring_shift(cell_bohr: np.ndarray, positions_bohr: np.ndarray, n3: int) -> int:
    """Grid steps s along a3 that put the centre of the layer in the middle of the box.

    The layer is the occupied arc of the fractional z coordinates (mod 1) left after removing
    the widest empty gap (the vacuum); its mid point z_c (fractional) goes to grid index n3 // 2:
    s = n3 // 2 − round(z_c n3). Roll the field by s along the third axis and translate the
    atoms by s/n3 · a3 (:func:`centre`)."""
    frac = np.linalg.solve(np.asarray(cell_bohr, float).T, np.asarray(positions_bohr, float).T).T
    z = np.sort(np.mod(frac[:, 2], 1.0))
    gaps = np.diff(np.concatenate([z, [z[0] + 1.0]]))
    g = int(np.argmax(gaps))                   # the vacuum: from z[g] up to z[g + 1] (+1)
    start = z[(g + 1) % len(z)]                # the layer runs from start up through z[g]
    width = 1.0 - gaps[g]
    zc = start + width / 2.0
    return int(n3 // 2 - int(np.round(zc * n3)))


def centre(atoms: Atoms, fields: np.ndarray, shift: int) -> tuple[Atoms, np.ndarray]:
    """Translate the atoms by shift/n3 · a3 and roll ``fields`` (..., n1, n2, n3) by ``shift``
    along the last axis, then wrap the atoms' a3 coordinate into [0, 1) (in-plane coordinates
    are left as they are: the supercell need not be a period of the field)."""
    n3 = fields.shape[-1]
    out = atoms.copy()
    frac = out.get_scaled_positions(wrap=False)
    frac[:, 2] = np.mod(frac[:, 2] + shift / n3, 1.0)
    out.set_scaled_positions(frac)
    return out, np.roll(fields, shift, axis=-1)


def supercell_ase(amp: Amplitude, cells, t: float) -> Atoms:
    """The displaced supercell (Å) at time t, not centred (see :func:`centre`)."""
    syms, pos, disp = supercell_atoms(amp, cells, t)
    cell = amp.cell_bohr * np.array(cells)[:, None] * BOHR_RADIUS_ANGS
    atoms = Atoms(syms, positions=(pos + disp) * BOHR_RADIUS_ANGS, cell=cell, pbc=True)
    atoms.arrays["displacement_A"] = disp * BOHR_RADIUS_ANGS
    return atoms


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


def write_vtk_atoms(path, atoms: Atoms):
    """Legacy VTK unstructured grid of the atoms: one ``vertex`` cell per atom, point data
    ``atomic_number`` and (if present) ``displacement_A`` (Å)."""
    import meshio
    pd = {"atomic_number": atoms.numbers.astype(np.int32)}
    if "displacement_A" in atoms.arrays:
        pd["displacement_A"] = np.asarray(atoms.arrays["displacement_A"], float)
    mesh = meshio.Mesh(np.asarray(atoms.positions, float),
                       [("vertex", np.arange(len(atoms)).reshape(-1, 1))], point_data=pd)
    return _atomic(path, lambda tmp: meshio.write(tmp, mesh, file_format="vtk", binary=False))


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
