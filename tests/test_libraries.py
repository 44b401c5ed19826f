"""Hand-written parts against the libraries that could replace them, each library used
as an independent oracle (no QE, no run fixture). What was replaced and what was kept, with the
measured figures: docs/performance.md, "Libraries and hand-written parts".

- band path sampling (kept): ASE's ``cell.bandpath``;
- BZ boundary (replaced by scipy.spatial.Voronoi): the bisector construction it replaced;
- namelist writer (kept): f90nml reads our text back exactly;
- /proc scans (kept): psutil finds the same processes;
- movies (replaced by matplotlib.animation's writers): the frames of the loop they replaced.
"""
import io
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from dfptmag.kernel import bandpath
from dfptmag.workflow import config, inputs

from conftest import TINY


@pytest.fixture(scope="module")
def atoms():
    return inputs.build_atoms(config.load(TINY))


def test_sampling_against_ases_bandpath(atoms):
    """ASE's ``cell.bandpath(path, npoints)`` as an independent oracle of our sampling,
    and the measured reasons it does not replace it (docs/performance.md, "Libraries and
    hand-written parts"). Both put every special point exactly on the path. Where both choose
    the same intervals (GMKG with 7 points, the tiny workflow) the points are identical and the
    distances equal ASE's own ``paths2kpts`` axis to 1e-12 Å⁻¹; but ASE rounds greedily piece by
    piece, so for the converged workflow (31 points) it gives Γ–M–K–Γ 10/6/14 intervals where ours
    (proportional) gives 11/6/13: other DFPT q-points. And ``get_linear_kpoint_axis`` (kinks
    found after the fact) gives the M–K piece zero length when it has one interval."""
    from ase.dft.kpoints import paths2kpts
    pts = bandpath.special_points(atoms)
    for n in (7, 30, 31, 60):
        ours = bandpath.band_path(atoms, "GMKG", n)
        ase_bp = atoms.cell.bandpath("GMKG", npoints=n, pbc=atoms.pbc)
        for name in "GMK":              # exactly on both paths (bitwise)
            assert any(np.array_equal(k, pts[name]) for k in ase_bp.kpts)
            assert any(np.array_equal(k, pts[name]) for k in ours.q_crystal)
        assert len(ase_bp.kpts) == ours.nq == n
    ours = bandpath.band_path(atoms, "GMKG", 7)
    kpts, x, _ = paths2kpts([[pts[c] for c in "GMKG"]], atoms.cell, 7)
    np.testing.assert_allclose(kpts, ours.q_crystal, atol=1e-15)        # same points (to rounding)
    np.testing.assert_allclose(x, ours.distance, atol=1e-12)            # both Å⁻¹ with the 2π
    x_ase, X_ase, _ = atoms.cell.bandpath("GMKG", npoints=7, pbc=atoms.pbc).get_linear_kpoint_axis()
    assert X_ase[2] - X_ase[1] == 0.0                                   # ASE: |MK| lost
    lab = {name: i for i, name in ours.labels}
    assert ours.distance[lab["K"]] - ours.distance[lab["M"]] == pytest.approx(2 * np.pi / (3 * atoms.cell.lengths()[0]))
    ours31 = bandpath.band_path(atoms, "GMKG", 31)
    _, x31, X31 = paths2kpts([[pts[c] for c in "GMKG"]], atoms.cell, 31)
    ase_intervals = [int(np.sum((x31 > a + 1e-9) & (x31 <= b + 1e-9))) for a, b in zip(X31[:-1], X31[1:])]
    assert np.diff([i for i, _ in ours31.labels]).tolist() == [11, 6, 13] and ase_intervals == [10, 6, 14]


# ------------------------------------------------------------------ BZ boundary
def _bisector_corners(B):
    """The hand-written construction that scipy's Voronoi replaced (dfptmag ≤ 9741a66): the
    intersections of pairs of Bragg lines inside every other, rounded to 1e-10, sorted by angle."""
    G = np.array([i * B[0] + j * B[1] for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)])
    pts = []
    for a in range(len(G)):
        for c in range(a + 1, len(G)):
            M = np.array([G[a], G[c]])
            if abs(np.linalg.det(M)) < 1e-12:
                continue
            x = np.linalg.solve(M, 0.5 * np.array([G[a] @ G[a], G[c] @ G[c]]))
            if np.all(G @ x <= 0.5 * np.sum(G * G, axis=1) + 1e-9):
                pts.append(x)
    pts = np.unique(np.round(np.array(pts), 10), axis=0)
    return pts[np.argsort(np.arctan2(pts[:, 1], pts[:, 0]))]


def test_bz_corners_from_voronoi_equal_the_bisector_construction(atoms):
    """The Voronoi corners equal the old ones to 1e-10 (the old rounding; measured ≤ 5e-11 Å⁻¹)
    in the same order, for the WSe2 cell as bz_figure builds B (bohr → Å⁻¹), rotated, square,
    rectangular and oblique lattices; the hexagon's corners are K points, |K| = 4π/(3a), to 1e-14
    relative."""
    from dfptmag.constants import BOHR_RADIUS_ANGS
    from dfptmag.plot.bzmap import _bz_corners
    cell_bohr = atoms.cell.array / BOHR_RADIUS_ANGS
    B = 2 * np.pi * np.linalg.inv(cell_bohr).T[:2, :2] / BOHR_RADIUS_ANGS      # as bz_figure
    th = 0.3
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    lattices = {"WSe2": B, "rotated": B @ R.T, "square": np.eye(2), "rectangular": np.diag([1.0, 1.7]),
                "oblique": np.array([[1.0, 0.0], [0.31, 0.93]]), "hex 60°": np.array([[1, 0], [0.5, np.sqrt(3) / 2]])}
    for name, b in lattices.items():
        new, old = _bz_corners(b), _bisector_corners(b)
        assert new.shape == old.shape, name
        assert np.abs(new - old).max() <= 1e-10, (name, np.abs(new - old).max())
    c = _bz_corners(B)
    k = 4 * np.pi / (3 * atoms.cell.lengths()[0])
    np.testing.assert_allclose(np.hypot(*c.T), k, rtol=1e-14)
    assert np.arctan2(c[-1, 1], c[-1, 0]) == pytest.approx(np.pi)      # the −x corner last, as before


# ------------------------------------------------------------------ namelist writer
def test_namelists_read_back_exactly_by_f90nml(atoms):
    """f90nml, an independent Fortran namelist parser, reads our pw.x/ph.x/q2r.x/matdyn.x inputs and
    a namelist of awkward values back exactly: every float bit for bit (500 random ones over
    600 decades, 1d-300 … 5d-324), quotes doubled inside strings, logicals, integers, the key order.
    (f90nml's own writer gives the same values but another text — sorted keys unless given an
    OrderedDict, 4-space indent, 1e-10 for our 1d-10 — and the text enters every resume hash.)"""
    import f90nml                                # the test extra (pyproject)
    from dfptmag.workflow.namelist import namelist
    wf = config.load(TINY)
    upf = {s: f"{s}.upf" for s in set(atoms.get_chemical_symbols())}
    pw = inputs.pw_input(wf, atoms, upf, "./out", "/some dir/pseudo")
    got = f90nml.reads(pw)
    assert list(got) == ["control", "system", "electrons"]
    assert got["system"]["ecutwfc"] == float(wf.pw["ecutwfc_ry"]) and got["system"]["lspinorb"] is True
    assert got["electrons"]["conv_thr"] == float(wf.pw.get("conv_thr", 1e-10))
    assert got["control"]["pseudo_dir"] == "/some dir/pseudo"
    ph = f90nml.reads(inputs.ph_input("wse2", "./out", [1 / 3, 0, 0], 1e-16, fildyn="dyn", trans=True))
    assert ph["inputph"]["tr2_ph"] == 1e-16 and ph["inputph"]["trans"] is True
    assert f90nml.reads(inputs.q2r_input("dyn", "fc", "simple", True))["input"]["loto_2d"] is True
    md = f90nml.reads(inputs.matdyn_input("fc", "dyn.mat", "freq", "simple", False, [[0, 0, 0]]))
    assert md["input"]["q_in_cryst_coord"] is True and md["input"]["loto_2d"] is False
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.standard_normal(400) * 10.0 ** rng.integers(-300, 300, 400), rng.random(100),
                         [0.1 + 0.2, 1e-300, 5e-324, 6.02214076e23, -0.0, 1.0, 2.0 ** 52 + 1]])
    values = {f"v{i}": float(x) for i, x in enumerate(xs)}
    values.update(s="it's 'quoted'", t=True, f=False, n=-7, big=2 ** 40)
    back = f90nml.reads(namelist("test", values))["test"]
    assert list(back) == list(values)
    for key, v in values.items():
        assert type(back[key]) is type(v) and back[key] == v, (key, v, back[key])
        if isinstance(v, float):
            assert np.copysign(1.0, back[key]) == np.copysign(1.0, v)


# ------------------------------------------------------------------ process scans
def test_process_scans_agree_with_psutil(tmp_path):
    """Two fake ph.x (copies of sleep) in a new session, working in a q directory: the supervisor's
    session scan (supervise.session_members) and the live-QE check (locks.live_qe_processes),
    both reading /proc directly, find exactly the processes psutil finds (session from
    os.getsid: psutil has none). Timing of one scan is printed (docs/performance.md)."""
    import psutil                                # the test extra (pyproject); dfptmag itself does not use it
    import timeit
    from dfptmag.workflow import locks, supervise
    qdir = tmp_path / "q_K"
    qdir.mkdir()
    fake = tmp_path / "ph.x"
    shutil.copy(shutil.which("sleep"), fake)
    proc = subprocess.Popen(["/bin/sh", "-c", f"'{fake}' 60 & exec '{fake}' 61"], cwd=qdir, start_new_session=True)
    sid = os.getsid(proc.pid)

    def by_psutil():
        me = os.getpid()
        members = set()
        for p in psutil.process_iter(["status"]):
            try:
                if p.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(p.pid) == sid:
                    members.add(p.pid)
            except OSError:
                pass
        members |= {c.pid for c in psutil.Process(me).children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE}
        members.discard(me)
        root = os.path.realpath(qdir)
        live = []
        for p in psutil.process_iter(["name", "cwd"]):
            name, cwd = p.info["name"], p.info["cwd"]
            if p.pid != me and name in locks.QE_NAMES and cwd and (cwd == root or cwd.startswith(root + os.sep)):
                live.append((p.pid, name, cwd))
        return sorted(members), sorted(live)
    try:
        t0 = time.time()
        while len(locks.live_qe_processes(qdir)) < 2 and time.time() - t0 < 10:     # both exec'd
            time.sleep(0.02)
        members, live = by_psutil()
        assert len(live) == 2 and proc.pid in members
        assert supervise.session_members(sid) == members
        assert locks.live_qe_processes(qdir) == live
        t_ours = np.median(timeit.repeat(supervise._processes, number=1, repeat=21))
        t_ps = np.median(timeit.repeat(by_psutil, number=1, repeat=21))
        print(f"one scan: /proc {t_ours * 1e3:.2f} ms, psutil (both scans) {t_ps * 1e3:.2f} ms")
    finally:
        os.killpg(sid, 9)
        proc.wait()


# ------------------------------------------------------------------ movies
def _amplitude(shift=(0.0, 0.0)):
    """A WSe2-shaped synthetic amplitude (random field, complex displacements) at K; ``shift``
    moves the atoms by a fraction of a1, a2 (W at the origin sits on the corner of the field)."""
    from dfptmag.analysis.snapshot import Amplitude
    from dfptmag.constants import BOHR_RADIUS_ANGS as B
    a, c, dz = 3.32, 20.0, 1.68
    rng = np.random.default_rng(3)
    cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]) / B
    pos = np.array([[0, 0, 0], [a / 2, a / (2 * np.sqrt(3)), dz], [a / 2, a / (2 * np.sqrt(3)), -dz]]) / B
    pos = pos + np.array([shift[0], shift[1], 0.0]) @ cell
    field = (rng.normal(size=(4, 9, 9, 20)) + 1j * rng.normal(size=(4, 9, 9, 20))) * 1e-3
    disp = (rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3))) * 0.01
    return Amplitude("K", "mode 2", np.array([1 / 3, 1 / 3, 0]), cell, pos, ["W", "Se", "Se"],
                     field, disp, field.mean(axis=(1, 2, 3)), 20.0, "test amplitude")


def _limits(axes):
    return np.array([ax.get_xlim() + ax.get_ylim() for ax in axes])


def _movie_by_fresh_figures(amp, path, frames, cells, fps=12, dpi=70):
    """The loop matplotlib.animation replaced (dfptmag ≤ 9741a66): a new figure per frame, PNG,
    Pillow, one GIF."""
    from PIL import Image
    import matplotlib.pyplot as plt
    from dfptmag.plot.snapshot import plane_data, snapshot_figure
    umax = np.abs(plane_data(amp, cells, 0.0, None)["disp"]).max()
    images = []
    for i in range(frames):
        fig, _ = snapshot_figure(amp, cells, i / frames, None, disp_scale=0.35 / umax, fixed_limits=True)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        buf.seek(0)
        images.append(Image.open(buf).convert("RGB"))
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def test_movie_frames_equal_fresh_figures(tmp_path, monkeypatch):
    """The GIF written through matplotlib.animation.PillowWriter (one figure, layout solved once,
    artists moved per frame) has the same frames, pixel for pixel, as the old loop drawing a new
    figure per frame, when the atoms stay inside the field's area; the same timing
    (int(1000/12) = 83 ms, stored by GIF in centiseconds: 80) and looping. When an atom crosses
    the edge (W on the corner, as in the real runs) the old figures followed it and the panels
    jumped in size (y limits over 6 frames: 0.115 Å apart here); the movie's limits are one set for the
    period, holding every atom of every frame. MP4 (when ffmpeg is installed) is H.264 as before;
    MP4 without ffmpeg and other suffixes are one clear error."""
    from PIL import Image, ImageSequence
    import matplotlib.pyplot as plt
    from matplotlib import animation
    from dfptmag.errors import DfptmagError
    from dfptmag.plot.snapshot import _set_time, movie, movie_figure, snapshot_figure
    amp = _amplitude(shift=(0.15, 0.1))
    new = movie(amp, tmp_path / "new.gif", frames=3, cells=(2, 2))
    _movie_by_fresh_figures(amp, tmp_path / "old.gif", 3, (2, 2))
    a, b = Image.open(new), Image.open(tmp_path / "old.gif")
    assert a.n_frames == b.n_frames == 3 and a.size == b.size
    assert a.info["duration"] == b.info["duration"] == 80 and a.info["loop"] == b.info["loop"] == 0
    for fa, fb in zip(ImageSequence.Iterator(a), ImageSequence.Iterator(b)):
        assert np.array_equal(np.asarray(fa.convert("RGB")), np.asarray(fb.convert("RGB")))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []      # no partial file left

    corner = _amplitude()
    fig, h, scale = movie_figure(corner, 6, (2, 2))
    lim = _limits(h["axes"])
    old = []
    for i in range(6):
        _set_time(h, corner, (2, 2), i / 6, None, 3, scale)
        assert np.array_equal(_limits(h["axes"]), lim)
        for records in h["atoms"]:
            for m, _, _ in records:
                x, y = m.get_offsets()[0]
                assert lim[0, 0] <= x <= lim[0, 1] and lim[0, 2] <= y <= lim[0, 3]
        f, _ = snapshot_figure(corner, (2, 2), i / 6, None, disp_scale=scale, fixed_limits=True)
        f.canvas.draw()
        old.append(_limits(f.axes[:1]))
        plt.close(f)
    plt.close(fig)
    assert np.ptp(np.array(old), axis=0).max() > 0.1            # the old frames' limits jumped (0.115 Å)

    if animation.FFMpegWriter.isAvailable():          # MP4 as before: H.264, yuv420p, 12 fps
        mp4 = movie(amp, tmp_path / "m.mp4", frames=3, cells=(2, 2))
        assert mp4.read_bytes()[4:8] == b"ftyp"
        if shutil.which("ffprobe"):
            import json
            r = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                                "stream=codec_name,pix_fmt,nb_frames,r_frame_rate,width,height", "-of", "json", str(mp4)],
                               capture_output=True, text=True, check=True)
            st = json.loads(r.stdout)["streams"][0]
            assert (st["codec_name"], st["pix_fmt"], st["nb_frames"], st["r_frame_rate"]) == ("h264", "yuv420p", "3", "12/1")
            assert (st["width"], st["height"]) == a.size
    monkeypatch.setattr(animation.FFMpegWriter, "isAvailable", classmethod(lambda cls: False))
    with pytest.raises(DfptmagError, match="MP4 needs ffmpeg"):
        movie(amp, tmp_path / "m.mp4", frames=2, cells=(2, 2))
    with pytest.raises(DfptmagError, match="must be .gif or .mp4"):
        movie(amp, tmp_path / "m.avi", frames=2, cells=(2, 2))
