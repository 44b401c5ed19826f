"""Real-space exports read back by their consumers' own loaders (ASE for XSF and cube, meshio for
VTK), with the layer centred in the box. No QE: a WSe2-shaped synthetic amplitude whose
lower Se sits at z = −1.68 Å, i.e. below the cell's origin, as in the real runs."""
import numpy as np
import pytest

from dfptmag.analysis.snapshot import Amplitude, supercell_field
from dfptmag.constants import BOHR_RADIUS_ANGS as B

A, C, DZ = 3.32, 20.0, 1.68          # Å
N = (6, 6, 40)


def _amp(seed=0, mode=1):
    rng = np.random.default_rng(seed)
    cell = np.array([[A, 0, 0], [-A / 2, A * np.sqrt(3) / 2, 0], [0, 0, C]]) / B
    pos = np.array([[0, 0, 0], [A / 2, A / (2 * np.sqrt(3)), DZ], [A / 2, A / (2 * np.sqrt(3)), -DZ]]) / B
    field = rng.normal(size=(4,) + N) + 1j * rng.normal(size=(4,) + N)
    disp = (rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3))) * 0.01
    return Amplitude("K", f"mode {mode}", np.array([1 / 3, 1 / 3, 0]), cell, pos, ["W", "Se", "Se"],
                     field, disp, field.mean(axis=(1, 2, 3)), 20.0, "test")


@pytest.fixture
def exported(tmp_path, monkeypatch):
    import dfptmag.jobs.snapshot as job
    amps = {1: _amp(0, 1), 2: _amp(1, 2)}
    monkeypatch.setattr(job, "load", lambda result, label, mode=None, pattern=None, kind="one-sided": amps[mode])
    out = {}
    for mode, t in ((1, 0.2), (2, 0.45)):
        files = job.run_snapshot("unused.h5", "K", mode=mode, cells=(2, 2), t=t,
                                 formats=("xsf", "cube", "vtk"), outdir=tmp_path)
        out[mode] = (amps[mode], t, {f.name: f for f in files})
    return out


def _contiguous_centred(z, c):
    """Atoms inside one slab in the middle: no gap wider than a quarter of the box between
    sorted z's, and the slab's mid point within one grid step of c/2."""
    zs = np.sort(z)
    assert zs.min() > 0.25 * c and zs.max() < 0.75 * c, zs
    assert np.diff(zs).max() < 0.25 * c
    assert abs((zs.min() + zs.max()) / 2 - c / 2) <= c / N[2] + 0.05


def test_xsf_centred_and_values(exported):
    from ase.io import read
    amp, t, files = exported[1]
    ref = supercell_field(amp.field, amp.q_crystal, (2, 2, 1), t) / B ** 3      # per Å³, origin at W
    s = N[2] // 2                                   # the layer's mid point is W's plane z = 0
    for c, name in enumerate(("n", "mx", "my", "mz")):
        path = files[f"snapshot_K_mode1_t0.200_{name}.xsf"]
        atoms = read(path)
        data = read(path, read_data=True)
        assert len(atoms) == 12
        _contiguous_centred(atoms.positions[:, 2], C)
        # W sits exactly on grid plane s, the Se at ±1.68 Å (+ displacement) around it
        w = atoms.positions[np.array(atoms.get_chemical_symbols()) == "W"]
        assert np.abs(w[:, 2] - s * C / N[2]).max() < 0.05        # displacements ≤ 0.03 Å
        # the field is the same physical field rolled with the atoms: value at W's plane = ours at z = 0
        assert data.shape == tuple(n + 1 for n in ref[c].shape)
        assert np.allclose(data[:-1, :-1, :-1], np.roll(ref[c], s, axis=-1), rtol=1e-7, atol=1e-12)
        assert np.allclose(data[:-1, :-1, s], ref[c][..., 0], rtol=1e-7, atol=1e-12)


def test_cube_centred_and_values(exported):
    from ase.io import read
    from ase.io.cube import read_cube_data
    amp, t, files = exported[1]
    ref = supercell_field(amp.field, amp.q_crystal, (2, 2, 1), t)               # per bohr³
    data, atoms = read_cube_data(files["snapshot_K_mode1_t0.200_mz.cube"])
    assert len(read(files["snapshot_K_mode1_t0.200_mz.cube"])) == 12
    _contiguous_centred(atoms.positions[:, 2], C)
    # cube stores %e (7 significant digits)
    assert np.allclose(data, np.roll(ref[3], N[2] // 2, axis=-1), rtol=2e-6, atol=1e-9)


def test_vtk_grid_and_atoms(exported):
    import meshio
    from ase.io import read
    amp, t, files = exported[1]
    ref = supercell_field(amp.field, amp.q_crystal, (2, 2, 1), t) / B ** 3
    grid = meshio.read(files["snapshot_K_mode1_t0.200.vtk"])
    shape = ref[1].shape
    m = grid.point_data["dm_muB_per_A3"].reshape(shape + (3,))
    assert np.allclose(m, np.roll(np.moveaxis(ref[1:], 0, -1), N[2] // 2, axis=2), rtol=1e-6, atol=1e-12)
    assert grid.points[:, 2].min() == 0 and grid.points[:, 2].max() == pytest.approx(C * (N[2] - 1) / N[2])
    at = meshio.read(files["snapshot_K_mode1_t0.200_atoms.vtk"])
    assert at.cells[0].type == "vertex" and len(at.points) == 12
    assert sorted(at.point_data["atomic_number"].tolist()) == [34] * 8 + [74] * 4
    xsf_atoms = read(files["snapshot_K_mode1_t0.200_n.xsf"])
    assert np.allclose(at.points, xsf_atoms.positions, atol=1e-6)   # same frame as the XSF and the grid
    _contiguous_centred(at.points[:, 2], C)
    assert np.abs(at.point_data["displacement_A"]).max() < 0.1


def test_modes_and_times_overlay(exported):
    """Another mode at another time: same cell, same grid, same shift; the equilibrium atoms
    (positions − displacements) coincide, so the files overlay."""
    import meshio
    a = meshio.read(exported[1][2]["snapshot_K_mode1_t0.200_atoms.vtk"])
    b = meshio.read(exported[2][2]["snapshot_K_mode2_t0.450_atoms.vtk"])
    ea = a.points - a.point_data["displacement_A"]
    eb = b.points - b.point_data["displacement_A"]
    assert np.abs(ea - eb).max() < 1e-6
    assert not np.allclose(a.points, b.points)
