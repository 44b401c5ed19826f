"""The public API (dfptmag.load, run, analyze, bands), the HDF5 units/metadata schema, the docs'
Python examples, named q-points, atomic writes, the --help examples and the non-editable install.

Most tests use the stored tiny WSe2 run (conftest ``stored_runs``, tests/data); the QE-tier ones
use the session's own run (conftest ``tiny_run``) and run no QE step
themselves: ``dfptmag.run`` is exercised on a copy of that run, where every step is resumed."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from dfptmag.kernel import bandpath
from dfptmag.kernel import qpoints
from dfptmag.constants import BOHR_RADIUS_ANGS
from dfptmag.errors import DfptmagError, InputFileError
from dfptmag.kernel import modes as km
from dfptmag.workflow import config, inputs

from conftest import ROOT, TINY

H_MEV_PER_THZ = 4.135667696            # Planck constant h in meV/THz (CODATA 2018, exact in SI)
UNITS = {"meV", "THz", "cm-1", "bohr", "angstrom", "1/angstrom", "amu", "e", "muB", "e/bohr",
         "muB/bohr", "e/bohr^4", "muB/bohr^4", "Ry/bohr^2", "2pi/alat", "1", "",
         # the time-odd response: X per Ry, and per unit velocity
         "e/bohr/Ry", "muB/bohr/Ry", "e/bohr^4/Ry", "muB/bohr^4/Ry", "muB s/m"}


@pytest.fixture(scope="module")
def atoms():
    return inputs.build_atoms(config.load(TINY))


# ------------------------------------------------------------------ named q-points, band paths
def test_named_qpoints_one_table(atoms):
    for spelling in ("K'", "-K", "Kp"):
        q = config.parse_q(spelling, "t")
        assert q.label == "-K"
        np.testing.assert_allclose(q.crystal, [-1 / 3, -1 / 3, 0], atol=1e-15)
    assert config.parse_q("Γ", "t").label == "G"
    # the table agrees with ASE's own special points of the slab's lattice (HEX2D)
    ase_pts = atoms.cell.bandpath(npoints=0, pbc=atoms.pbc).special_points
    for name in ("G", "M", "K"):
        np.testing.assert_allclose(qpoints.HEX2D[name], ase_pts[name], atol=1e-12)
    known = bandpath.special_points(atoms)
    assert bandpath.point_label(known["K'"], known) == config.parse_q("Kp", "t").label == "-K"
    # K' through any spelling on a band path lands on the same point
    for path in ("GKpM", "GK'M"):
        bp = bandpath.band_path(atoms, path, 5)
        np.testing.assert_allclose(bp.q_crystal[[i for i, lab in bp.labels if lab == "K'"][0]],
                                   [-1 / 3, -1 / 3, 0], atol=1e-12)


def test_coordinate_labels_have_no_doubled_prefix():
    q = config.parse_q("0.2222,0.2222,0", "t")
    assert q.label == "0.2222_0.2222_0.0000"           # run directory q_0.2222_0.2222_0.0000
    assert qpoints.coordinate_label([-1e-9, -0.0, 0.5]) == "0.0000_0.0000_0.5000"


def test_slab_band_path_uses_2d_lattice(atoms):
    assert list(atoms.pbc) == [True, True, False]
    assert set(bandpath.special_points(atoms)) == {"G", "M", "K", "K'"}
    with pytest.raises(DfptmagError, match="unknown point 'A'"):
        bandpath.band_path(atoms, "GMKGA", 7)
    bulk = atoms.copy()
    bulk.pbc = True                     # the same cell as a 3D crystal has A, H, L
    assert {"A", "H", "L"} <= set(bandpath.special_points(bulk))


# ------------------------------------------------------------------ atomic writes
def test_atomic_write_keeps_old_file_on_error(tmp_path):
    from dfptmag.atomic import atomic_path, savefig, write_text
    p = write_text(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure()
    out = savefig(fig, tmp_path / "f.png")
    plt.close(fig)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json", "f.png"]


def test_thz_conversion_constant():
    import scipy.constants as sc
    assert km.ry_to_mev(1.0) / km.ry_to_thz(1.0) == pytest.approx(H_MEV_PER_THZ, rel=1e-9)
    assert sc.h / sc.e * 1e15 == pytest.approx(H_MEV_PER_THZ, rel=1e-9)


# ------------------------------------------------------------------ --help examples
def test_every_command_has_worked_examples_that_parse():
    from dfptmag.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    helps = {None: parser.format_help()}
    helps.update({name: sp.format_help() for name, sp in sub.choices.items()})
    assert set(helps) == {None, "run", "analyze", "capture", "snapshot", "bands", "plot", "export", "model",
                          "status", "task", "doctor", "sqw"}
    n = 0
    for name, text in helps.items():
        assert "examples" in text, name
        lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("dfptmag ")]
        assert len(lines) >= 2, name
        for ln in lines:
            argv = shlex.split(ln, comments=True)[1:]
            if "--help" in argv:
                continue
            args = parser.parse_args(argv)          # SystemExit (a test error) if an example is wrong
            if name is not None:
                assert args.cmd == name, ln
            n += 1
    assert n >= 20
    args = parser.parse_args(["run", "--q", "K", "--q=-K"])
    assert args.q == ["K", "-K"]


# ------------------------------------------------------------------ non-editable install
def test_non_editable_install_finds_default_workflow(tmp_path):
    """pip install (not -e) of a copy of the source into a target directory: the default workflow,
    its structure and ld1.x inputs come with the package, and `dfptmag run --help` names it."""
    src = tmp_path / "src"
    for name in ("dfptmag", "workflows", "structures"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_data"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    target = tmp_path / "site"
    _need_wheel()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(target), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.rmtree(src)                   # nothing may point back into the source tree
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    code = ("import dfptmag, dfptmag.data as d; from dfptmag.workflow import config; "
            "wf = config.load(d.default_workflow()); "
            "print(dfptmag.__file__); print(wf.path); print(wf.structure); "
            "print(sorted(p.name for p in wf.pseudopotentials.values())); print(sorted(d.builtin_workflows()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(ln.startswith(str(target)) for ln in lines[:3]), lines
    assert lines[1].endswith("dfptmag/_data/workflows/wse2-tiny.toml")
    assert lines[2].endswith("dfptmag/_data/structures/WSe2_monolayer.extxyz")
    assert lines[3] == "['Se.rel-pbe-nc.ld1.in', 'W.rel-pbe-nc.ld1.in']"
    assert "wse2-converged" in lines[4] and "wse2-tiny" in lines[4]
    h = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", "--help"], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert h.returncode == 0 and "wse2-tiny" in h.stdout and "examples" in h.stdout
    assert (target / "bin" / "dfptmag").is_file()


def _need_wheel():
    import importlib.util
    if importlib.util.find_spec("wheel") is None:
        pytest.skip("the 'wheel' package (test extra) is needed to build offline")


def test_requires_python_matches_tomllib():
    import tomllib
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    spec = meta["project"]["requires-python"].replace(" ", "")
    m = re.fullmatch(r">=3\.(\d+)", spec)
    assert m and int(m.group(1)) >= 11          # tomllib is in the standard library from 3.11


# ------------------------------------------------------------------ files from the tiny run
@pytest.fixture(scope="module")
def result_file(stored_runs, tmp_path_factory):
    """dfptmag.analyze of the stored tiny run (K, −K with modes; Γ with two patterns, no modes)."""
    import dfptmag
    out = tmp_path_factory.mktemp("api") / "dfptmag.h5"
    a = dfptmag.analyze(stored_runs["K"].parent, output=out)
    assert sorted(a.analyses) == ["-K", "G", "K"]
    return out


@pytest.fixture(scope="module")
def bands_file(analyzed, tmp_path_factory):
    """A real bands.h5 along K → K' built from the tiny run's analyses with the band writer."""
    from dfptmag.results.bandsfile import write
    from dfptmag.analysis.bands import assemble, track_branches
    bp = bandpath.band_path(inputs.build_atoms(config.load(TINY)), "KKp", 2)
    b = assemble(bp, [analyzed["K"], analyzed["-K"]])
    b["attrs"]["path"] = "KKp"
    track_branches(b, None)
    return write(tmp_path_factory.mktemp("api_bands") / "bands.h5", b)


def test_load_result_modes_equal_analysis(result_file, analyzed, stored_runs):
    import dfptmag
    from dfptmag.io.qe_dyn import read_dyn
    res = dfptmag.load(result_file)
    assert sorted(res.labels) == ["-K", "G", "K"] and res.schema == "dfptmag.h5/2"
    k, r = res["K"], analyzed["K"]
    np.testing.assert_allclose(k.q, [1 / 3, 1 / 3, 0], atol=1e-9)
    mev = km.ry_to_mev(r["frequency_ry"])
    np.testing.assert_allclose(k.modes.frequencies("meV"), mev, rtol=1e-14)
    np.testing.assert_allclose(k.modes.frequencies("THz"), mev / H_MEV_PER_THZ, rtol=1e-9)
    np.testing.assert_allclose(k.modes.frequencies("cm-1"), km.ry_to_cm1(r["frequency_ry"]), rtol=1e-14)
    # the oracle: ph.x's own frequencies (fildyn)
    phx = read_dyn(stored_runs["K"] / "dyn").freq_cm1
    assert np.max(np.abs(k.modes.frequencies("cm-1") - phx)) < 1e-3
    np.testing.assert_allclose(k.modes.eigenvectors, r["eigenvector"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(k.modes.cell_integral, r["mode_cell_integral"], rtol=0, atol=1e-18)
    # RMS values, recomputed here from the cell integrals (Eq. 3)
    ci = k.modes.cell_integral
    np.testing.assert_allclose(k.modes.rms, np.abs(ci) / np.sqrt(2), rtol=1e-14)
    np.testing.assert_allclose(k.modes.rms_inplane, np.hypot(np.abs(ci[:, 1]), np.abs(ci[:, 2])) / np.sqrt(2),
                               rtol=1e-14)
    np.testing.assert_allclose(k.modes.rms_outofplane, np.abs(ci[:, 3]) / np.sqrt(2), rtol=1e-14)
    groups = k.modes.degenerate_groups
    assert sorted(np.concatenate(groups).tolist()) == list(range(9))
    w = k.modes.frequencies("cm-1")
    for g in groups:
        assert np.ptp(w[g]) <= len(g) * k.modes.degeneracy_tol_cm1
    assert k.modes.degeneracy_tol_cm1 == 0.5
    assert k.patterns.cell_integral.shape == (9, 4) and k.patterns.has_field
    assert np.nanmax(k.checks.drho_relative_error) < 1e-6
    g = res["G"]
    assert g.modes is None or g.modes.cell_integral is None
    with pytest.raises(KeyError, match="no q-point 'M'"):
        res["M"]


def test_load_result_atoms(result_file):
    import dfptmag
    from ase.data import atomic_masses, atomic_numbers
    from ase.io import read
    k = dfptmag.load(result_file)["K"]
    ref = read(ROOT / "structures" / "WSe2_monolayer.extxyz")
    assert k.atoms.get_chemical_symbols() == ref.get_chemical_symbols() == ["W", "Se", "Se"]
    np.testing.assert_allclose(k.atoms.cell[:2], ref.cell[:2], atol=1e-6)
    assert k.atoms.cell[2, 2] == pytest.approx(3.36 + 6.64, abs=1e-6)          # layer + vacuum
    np.testing.assert_allclose(k.atoms.get_masses(), [atomic_masses[atomic_numbers[s]] for s in "W Se Se".split()],
                               rtol=1e-6)
    assert list(k.atoms.pbc) == [True, True, False]
    with h5py.File(result_file) as f:
        s = f["q/K/structure"]
        np.testing.assert_allclose(s["lattice_angstrom"][()], k.atoms.cell.array, atol=1e-12)
        np.testing.assert_allclose(s["scaled_positions"][()] @ s["lattice_angstrom"][()], k.atoms.positions, atol=1e-10)
        np.testing.assert_allclose(s["scaled_positions"][()], k.atoms.get_scaled_positions(wrap=False), atol=1e-10)


def test_field_and_snapshot_of_a_mode(result_file, tmp_path):
    import dfptmag
    k = dfptmag.load(result_file)["K"]
    mode = int(np.argmax(k.modes.rms_inplane)) + 1
    f = k.field(mode=mode)
    assert f.shape[0] == 4 and f.dtype == np.complex128
    # ∫ over the cell of the mode's field = its cell integral (G = 0 route, independent)
    omega_bohr3 = k.atoms.get_volume() / BOHR_RADIUS_ANGS ** 3
    integral = f.mean(axis=(1, 2, 3)) * omega_bohr3
    np.testing.assert_allclose(integral, k.modes.cell_integral[mode - 1], rtol=0,
                               atol=1e-6 * np.abs(k.modes.cell_integral[mode - 1]).max())
    files = k.snapshot(mode=mode, formats=("png",), outdir=tmp_path)
    assert len(files) == 1 and files[0].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DfptmagError):
        k.field()


def test_units_and_metadata_schema(result_file, bands_file):
    def walk(path):
        out = {}
        with h5py.File(path) as f:
            f.visititems(lambda n, o: out.__setitem__(n, dict(o.attrs)) if isinstance(o, h5py.Dataset) else None)
        return out

    for path in (result_file, bands_file):
        for name, attrs in walk(path).items():
            assert "units" in attrs, (path.name, name)
            u = attrs["units"]
            us = [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(u)]
            assert set(us) <= UNITS, (path.name, name, us)
            assert attrs.get("description"), (path.name, name)
    with h5py.File(result_file) as f:
        m = f["q/K/modes"]
        assert (m["frequency_meV"].attrs["units"], m["frequency_THz"].attrs["units"],
                m["frequency_cm1"].attrs["units"]) == ("meV", "THz", "cm-1")
        np.testing.assert_allclose(m["frequency_THz"][()], m["frequency_meV"][()] / H_MEV_PER_THZ, rtol=1e-9)
        assert [x.decode() if isinstance(x, bytes) else x for x in m["cell_integral"].attrs["units"]] == \
            ["e", "muB", "muB", "muB"]
        assert m["rms_inplane"].attrs["units"] == "muB"
        assert m["eigenvector"].attrs["phase_convention"] == "lattice_vector"
        assert "exp(-i q.tau_kappa)" in m["eigenvector"].attrs["phase_note"]
        assert f["q/K/structure/lattice_angstrom"].attrs["units"] == "angstrom"
        assert f.attrs["schema"] == "dfptmag.h5/2"
    with h5py.File(bands_file) as f:
        assert f.attrs["schema"] == "bands.h5/2"
        assert f["path/distance"].attrs["units"] == "1/angstrom"
        assert f["modes/eigenvector"].attrs["phase_convention"] == "lattice_vector"
        np.testing.assert_allclose(f["modes/frequency_THz"][()], f["modes/frequency_meV"][()] / H_MEV_PER_THZ,
                                   rtol=1e-9)
        assert f["structure/symbols"].asstr()[()].tolist() == ["W", "Se", "Se"]


def test_degeneracy_tolerance_comes_from_options(stored_runs, tmp_path):
    import dfptmag
    from dfptmag.results import qfile as results
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    qk = stored_runs["K"]
    wide = analyze_qrun(qk, AnalysisOptions(realspace=False, degeneracy_tol_cm1=1000.0))
    narrow = analyze_qrun(qk, AnalysisOptions(realspace=False, degeneracy_tol_cm1=1e-9))
    assert set(wide["degenerate_group"]) == {0} and len(set(narrow["degenerate_group"])) == 9
    k = dfptmag.load(results.write(tmp_path / "w.h5", {"K": wide}))["K"]
    assert k.modes.degeneracy_tol_cm1 == 1000.0 and len(k.modes.degenerate_groups) == 1
    total = np.sqrt(np.sum(np.abs(k.modes.cell_integral) ** 2, axis=0)) / np.sqrt(2)
    np.testing.assert_allclose(k.modes.rms_subspace, np.broadcast_to(total, (9, 4)), rtol=1e-12)
    with h5py.File(tmp_path / "w.h5") as f:
        assert f["q/K/modes"].attrs["degenerate_tolerance_cm1"] == 1000.0
    # the same through the command line option
    out = tmp_path / "cli.h5"
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", "analyze", str(qk), "-o", str(out), "--no-field",
                           "--quiet", "--degeneracy-tol", "1000"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    k2 = dfptmag.load(out)["K"]
    assert k2.modes.degeneracy_tol_cm1 == 1000.0
    np.testing.assert_allclose(k2.modes.rms_subspace, k.modes.rms_subspace, rtol=1e-12)
    with pytest.raises(DfptmagError, match="degeneracy tolerance"):
        dfptmag.analyze(qk, output=tmp_path / "x.h5", field=False, degeneracy_tol_cm1=-1)


def test_load_bands(bands_file, analyzed, tmp_path):
    import dfptmag
    b = dfptmag.load(bands_file)
    assert [lab for _, lab in b.path.labels] == ["K", "K'"] and b.computed.all()
    assert b.schema == "bands.h5/2"
    # the distance K → K' through Γ is 2|K| = 2 · 4π/(3a) in 1/Å
    assert b.distance[-1] == pytest.approx(2 * 4 * np.pi / (3 * 3.32), rel=1e-6)
    for iq, lab in enumerate(("K", "-K")):
        r = analyzed[lab]
        np.testing.assert_allclose(b.frequencies("meV")[iq], km.ry_to_mev(r["frequency_ry"]), rtol=1e-14)
        np.testing.assert_allclose(b.frequencies("THz")[iq], km.ry_to_mev(r["frequency_ry"]) / H_MEV_PER_THZ,
                                   rtol=1e-9)
        np.testing.assert_allclose(b.rms_inplane[iq], r["mode_rms_inplane"], rtol=1e-14)
        np.testing.assert_allclose(b.rms_outofplane[iq], r["mode_rms_outofplane"], rtol=1e-14)
    per = b.by_branch("cm-1")
    # a branch is a permutation of the modes at each q
    for iq in range(2):
        np.testing.assert_allclose(np.sort(per["frequency"][iq]), np.sort(b.frequencies("cm-1")[iq]), rtol=1e-14)
        np.testing.assert_allclose(np.sort(per["rms_inplane"][iq]), np.sort(b.rms_inplane[iq]), rtol=1e-14)
    # time reversal: ω(K) = ω(K') (independent ph.x runs; measured ≤ 0.01 cm-1). K → K' is one
    # big step (not a path to track branches on), so compare the spectra, not the branches
    w = b.frequencies("cm-1")
    np.testing.assert_allclose(w[0], w[1], rtol=0, atol=0.05)
    fig = b.plot()
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "bands.png")
    import matplotlib.pyplot as plt
    plt.close(fig)
    np.testing.assert_allclose(b.atoms.cell[0, 0], 3.32, atol=1e-6)


def test_old_files_still_load(result_file, bands_file, tmp_path):
    """Files of schema version 1 (no THz, no structure datasets, prose units) load; others fail
    clearly."""
    import dfptmag
    old_r = shutil.copy(result_file, tmp_path / "old.h5")
    with h5py.File(old_r, "a") as f:
        del f.attrs["schema"]
        for lab in f["q"]:
            s = f["q"][lab]["structure"]
            del s["lattice_angstrom"], s["scaled_positions"]
            if "modes" in f["q"][lab]:
                del f["q"][lab]["modes/frequency_THz"]
                f["q"][lab]["modes/frequency_meV"].attrs["units"] = "meV (negative = imaginary)"
    new, old = dfptmag.load(result_file)["K"], dfptmag.load(old_r)["K"]
    assert dfptmag.load(old_r).schema == "dfptmag.h5/1"
    np.testing.assert_allclose(old.modes.frequencies("THz"), new.modes.frequencies("THz"), rtol=1e-14)
    np.testing.assert_allclose(old.atoms.positions, new.atoms.positions, atol=1e-14)

    old_b = shutil.copy(bands_file, tmp_path / "old_bands.h5")
    with h5py.File(old_b, "a") as f:
        s = f["structure"]
        f.attrs["cell_bohr"], f.attrs["positions_bohr"] = s["cell_bohr"][()], s["positions_bohr"][()]
        f.attrs["masses_amu"] = s["masses_amu"][()]
        f.attrs["symbols"] = np.array(["W", "Se", "Se"], dtype="S")
        del f["structure"], f["modes/frequency_THz"], f.attrs["schema"]
    bn, bo = dfptmag.load(bands_file), dfptmag.load(old_b)
    np.testing.assert_allclose(bo.frequencies("THz"), bn.frequencies("THz"), rtol=1e-14)
    np.testing.assert_allclose(bo.atoms.positions, bn.atoms.positions, atol=1e-14)
    assert bo.atoms.get_chemical_symbols() == ["W", "Se", "Se"]
    np.testing.assert_allclose(bo.by_branch()["rms_inplane"], bn.by_branch()["rms_inplane"], rtol=1e-14)

    junk = tmp_path / "other.h5"
    with h5py.File(junk, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(InputFileError, match="not a dfptmag file"):
        dfptmag.load(junk)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputFileError, match="not a readable HDF5 file"):
        dfptmag.load(text)
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", "plot", "bands", str(junk)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"dfptmag: error: {junk}: not a dfptmag bands file")


def test_analyze_api_equals_cli(stored_runs, tmp_path):
    import dfptmag
    run_dir = stored_runs["K"].parent
    cli = tmp_path / "cli.h5"
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", "analyze", str(run_dir), "-o", str(cli),
                           "--no-field", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    api = dfptmag.analyze(run_dir, output=tmp_path / "api.h5", field=False).output
    _assert_same_datasets(cli, api)


def _assert_same_datasets(a, b):
    da, db = {}, {}
    for path, d in ((a, da), (b, db)):
        with h5py.File(path) as f:
            f.visititems(lambda n, o, d=d: d.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    assert sorted(da) == sorted(db)
    for k in da:
        if da[k].dtype.kind in "fc":
            np.testing.assert_array_equal(da[k], db[k], err_msg=k)
        else:
            assert np.array_equal(da[k], db[k]), k


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A copy of the tiny run with scf and K only (every QE step of `run --q K` finished)."""
    runner, _ = tiny_run
    dest = tmp_path / "runs" / "wse2-tiny"
    shutil.copytree(runner.run_dir, dest, ignore=shutil.ignore_patterns("q_-K", "q_G", "*.h5", "snapshots"))
    return dest


@pytest.mark.qe
def test_run_api_equals_cli(run_copy, tmp_path):
    import dfptmag
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", "--q", "K", "--run-dir", str(run_copy),
                           "-o", str(tmp_path / "cli.h5"), "--no-snapshots", "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "QE steps run: 0," in proc.stdout
    r = dfptmag.run(q=["K"], run_dir=run_copy, output=tmp_path / "api.h5", snapshots=False)
    assert r.steps_ran == 0 and r.steps_skipped > 0 and list(r.analyses) == ["K"]
    _assert_same_datasets(tmp_path / "cli.h5", r.output)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


# the docs pages whose ```python blocks run, in this order, in one namespace (tests/test_docs.py
# checks that no other page has one)
DOC_PYTHON_PAGES = ("docs/python.md", "docs/howto-exports.md")


@pytest.mark.qe
def test_docs_python_examples_run(run_copy, bands_file, tmp_path, monkeypatch):
    """Every ```python block of the docs pages DOC_PYTHON_PAGES (formerly the README's), in order,
    in one namespace, from a directory holding runs/wse2-tiny (a copy of the tiny run at K) and
    its bands.h5."""
    blocks = [(page, i, code) for page in DOC_PYTHON_PAGES
              for i, code in enumerate(_python_blocks((ROOT / page).read_text()))]
    assert len(blocks) >= 4 and any("dfptmag.load" in code for _, _, code in blocks)
    shutil.copy(bands_file, run_copy / "bands.h5")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for page, i, code in blocks:
        exec(compile(code, f"{page} python block {i + 1}", "exec"), ns)
    assert ns["r"].steps_ran == 0                                   # resumed, nothing recomputed
    assert (tmp_path / "runs" / "wse2-tiny" / "dfptmag.h5").is_file()
    assert [p.suffix for p in ns["files"]] == [".png"] and ns["files"][0].is_file()
    assert (tmp_path / "bands.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "reanalyzed.h5").is_file()
    # the run made its two snapshot figures per q, as the CLI does
    assert len(list((tmp_path / "runs" / "wse2-tiny" / "snapshots").glob("snapshot_K_mode*.png"))) >= 1
