"""Real-space snapshots and exports (the paper's Figs. 1–2)."""
import subprocess
import sys

import numpy as np
import pytest

from dfptmag.results import qfile as results
from dfptmag.constants import BOHR_RADIUS_ANGS
from dfptmag.analysis.snapshot import load, resample, supercell_field

S = np.array([1, -1, -1, -1])[:, None, None, None]     # time reversal: n → n, m → −m


@pytest.fixture(scope="module")
def result_file(analyzed, tmp_path_factory):
    return results.write(tmp_path_factory.mktemp("snap") / "res.h5", analyzed)


@pytest.mark.parametrize("mode", range(1, 10))
def test_mode_field_average_equals_g0(result_file, mode):
    amp = load(result_file, "K", mode=mode)
    avg = amp.field.mean(axis=(1, 2, 3)) * amp.omega_bohr3
    assert np.abs(avg - amp.cell_integral).max() <= 1e-10 * np.abs(amp.cell_integral).max()


@pytest.mark.parametrize("t", [0.0, 0.13, 0.25])
def test_time_reversal_of_snapshots(result_file, t):
    """Same real pattern at K and −K: δm_{−q}(r, t) = −δm_q(r, −t), δn_{−q}(r, t) = δn_q(r, −t)."""
    for pattern in (3, 4):           # W z, Se1 x
        a, b = load(result_file, "K", pattern=pattern), load(result_file, "-K", pattern=pattern)
        fa = supercell_field(a.field, a.q_crystal, (4, 4, 1), -t)
        fb = supercell_field(b.field, b.q_crystal, (4, 4, 1), t)
        scale = np.abs(a.field).max()
        assert np.abs(fb - S * fa).max() <= 1e-4 * scale
        # the opposite sign (m → +m) is violated by the full size of the magnetization
        assert np.abs(fb[1:] - fa[1:]).max() > 1.0 * np.abs(fa[1:]).max()


def test_bloch_phase_and_period(result_file):
    amp = load(result_file, "K", mode=2)
    n1 = amp.field.shape[1]
    f = supercell_field(amp.field, amp.q_crystal, (3, 3, 1), 0.1)
    # q = K has period 3 cells along a1: the field repeats after 3 cells, not after 1
    g = supercell_field(amp.field, amp.q_crystal, (6, 3, 1), 0.1)
    assert np.allclose(g[:, 3 * n1:], f)
    assert not np.allclose(f[:, n1:2 * n1], f[:, :n1], atol=1e-3 * np.abs(f).max())
    # half a period later the real field changes sign
    assert np.allclose(supercell_field(amp.field, amp.q_crystal, (3, 3, 1), 0.6), -f)


def test_resample_round_trip(result_file):
    amp = load(result_file, "K", mode=1)
    fine = resample(amp.field, (36, 36, 108))
    assert np.allclose(fine[:, ::2, ::2, ::2], amp.field, atol=1e-12 * np.abs(amp.field).max())
    assert np.allclose(resample(fine, amp.field.shape[1:]), amp.field, atol=1e-12 * np.abs(amp.field).max())


def test_figure_shows_the_computed_field(result_file):
    from dfptmag.plot.snapshot import A3, snapshot_figure
    amp = load(result_file, "K", mode=2)
    fig, d = snapshot_figure(amp, (4, 4), 0.25, "W")
    ref = supercell_field(amp.field, amp.q_crystal, (4, 4, 1), 0.25)[..., 0] / A3   # W at z = 0
    assert d["plane_index"] == 0
    assert np.allclose(d["comp"], ref)
    meshes = [c for ax in fig.axes for c in ax.collections if c.__class__.__name__ == "QuadMesh"]
    assert np.allclose(np.asarray(meshes[0].get_array()).reshape(ref[3].shape), ref[3])    # δm_z panel
    assert len(d["symbols"]) == 48
    # the displaced W atoms of mode 2 move in plane (paper Fig. 2): displacement arrows drawn
    disp_w = d["disp"][np.array(d["symbols"]) == "W"]
    assert np.abs(disp_w[:, :2]).max() > 10 * np.abs(disp_w[:, 2]).max()


def test_exports_read_back(result_file, tmp_path):
    from ase.io import read
    from ase.io.cube import read_cube_data
    import meshio
    from dfptmag.jobs.snapshot import run_snapshot
    files = run_snapshot(result_file, "K", mode=1, cells=(2, 2), t=0.2,
                         formats=("xsf", "cube", "vtk", "h5"), outdir=tmp_path, movie="gif", frames=4)
    amp = load(result_file, "K", mode=1)
    ref = supercell_field(amp.field, amp.q_crystal, (2, 2, 1), 0.2)      # per bohr³
    from dfptmag.export.grids import centring_shift
    s = centring_shift(amp.cell_bohr, amp.positions_bohr, ref.shape[-1])
    ref = np.roll(ref, s, axis=-1)          # the exports centre the layer in the box
    byname = {f.name: f for f in files}
    xsf = read(byname["snapshot_K_mode1_t0.200_mx.xsf"], read_data=True)
    # XSF general grid: n + 1 points per axis, the last repeating the first (periodic)
    assert xsf.shape == tuple(n + 1 for n in ref[1].shape)
    assert np.array_equal(xsf[-1], xsf[0]) and np.array_equal(xsf[:, -1], xsf[:, 0])
    assert np.allclose(xsf[:-1, :-1, :-1] * BOHR_RADIUS_ANGS ** 3, ref[1], rtol=1e-7, atol=1e-9 * np.abs(ref[1]).max())
    data, atoms = read_cube_data(byname["snapshot_K_mode1_t0.200_mz.cube"])
    assert len(atoms) == 12
    z = np.sort(atoms.positions[:, 2])
    c = atoms.cell[2, 2]
    assert z.min() > 0.25 * c and z.max() < 0.75 * c and np.diff(z).max() < 0.25 * c   # one layer
    assert np.allclose(data, ref[3], rtol=1e-4, atol=1e-6 * np.abs(ref[3]).max())
    mesh = meshio.read(byname["snapshot_K_mode1_t0.200.vtk"])
    m = mesh.point_data["dm_muB_per_A3"].reshape(ref[1].shape + (3,))
    assert np.allclose(m, np.moveaxis(ref[1:], 0, -1) / BOHR_RADIUS_ANGS ** 3, rtol=1e-6)
    assert mesh.cells[0].type == "hexahedron"
    at = meshio.read(byname["snapshot_K_mode1_t0.200_atoms.vtk"])
    assert np.allclose(at.points, atoms.positions, atol=1e-5)
    import h5py
    with h5py.File(byname["snapshot_K_mode1_t0.200.h5"]) as f:
        assert np.array_equal(f["field"][()], amp.field)
    from PIL import Image
    gif = Image.open(byname["movie_K_mode1.gif"])
    assert gif.n_frames == 4


def test_snapshot_cli(result_file, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", "snapshot", str(result_file), "--q=-K",
                           "--pattern", "3", "--format", "png", "--outdir", str(tmp_path), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "snapshot_-K_pattern3_t0.000.png").stat().st_size > 10000
    bad = subprocess.run([sys.executable, "-m", "dfptmag.cli", "snapshot", str(result_file), "--q", "M",
                          "--mode", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no q-point 'M'" in bad.stderr
