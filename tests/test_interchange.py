"""phonopy and pymatgen interchange, checked with those packages' own code:

- a spring model of monolayer WSe2 solved twice: by dfptmag's conventions (lattice-vector phase,
  as ph.x) and by phonopy's own Phonopy/BandStructure (atom-position phase); our band.yaml for the
  model must equal phonopy's own band.yaml for the same path (layout, distances, frequencies,
  eigenvectors up to the basis of degenerate subspaces) — an independent check of the phase
  conversion e_ph = exp(−2πi q·x) e_QE, of the distance convention and of the segments;
- a bands.h5 built from the tiny real QE run (K and −K) exported and read back by
  ``phonopy-bandplot`` and phonopy's band.yaml/band.hdf5 readers, and turned into a pymatgen
  ``PhononBandStructureSymmLine`` that pymatgen plots, serialises and reads back;
- structures from POSCAR and CIF files (written by ASE and pymatgen) give the same pw.x input.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from dfptmag.kernel import bandpath
from dfptmag.constants import BOHR_RADIUS_ANGS
from dfptmag.export.phonopy import THZ_PER_MEV, export, segments, to_phonopy_phase, write_band_yaml
from dfptmag.workflow import config, inputs

from conftest import ROOT, TINY

SPRINGS = {("W", "Se"): 5.0, ("Se", "Se"): 1.5, ("W", "W"): 2.0}     # eV/Å², central pair springs
CUTOFF = 3.45                                                         # Å: W–Se, Se–Se, W–W neighbours


@pytest.fixture(scope="module")
def atoms():
    return inputs.build_atoms(config.load(TINY))


def _spring(a, b):
    return SPRINGS.get((a, b), SPRINGS.get((b, a)))


def _fc_block(d):
    n = d / np.linalg.norm(d)
    return np.outer(n, n)


def model_dynmat_qe(atoms, q):
    """Mass-scaled D(q) of the spring model in QE's lattice-vector convention (u(Rκ) = U_κ e^{iq·R}):
    D_κκ' = Σ_R Φ(0κ, Rκ') e^{+2πi q·n_R} / √(m m'), written here from the model directly."""
    sym, pos, cell, m = atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array, atoms.get_masses()
    nat = len(atoms)
    D = np.zeros((nat, 3, nat, 3), dtype=complex)
    for i in range(nat):
        for j in range(nat):
            for n1 in range(-2, 3):
                for n2 in range(-2, 3):
                    R = n1 * cell[0] + n2 * cell[1]
                    d = pos[j] + R - pos[i]
                    r = np.linalg.norm(d)
                    if r < 1e-6 or r > CUTOFF:
                        continue
                    k = _spring(sym[i], sym[j]) * _fc_block(d)
                    D[i, :, j, :] += -k * np.exp(2j * np.pi * np.dot(q, [n1, n2, 0]))
                    D[i, :, i, :] += k
    D /= np.sqrt(np.outer(np.repeat(m, 3), np.repeat(m, 3))).reshape(nat, 3, nat, 3)
    return D.reshape(3 * nat, 3 * nat)


def model_phonopy(atoms):
    """The same springs as force constants of a 5×5×1 supercell, handed to phonopy."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions(wrap=False), masses=atoms.get_masses())
    ph = Phonopy(unit, supercell_matrix=np.diag([5, 5, 1]))
    sc = ph.supercell
    pos, cell, sym = sc.positions, sc.cell, sc.symbols
    n = len(sym)
    fc = np.zeros((n, n, 3, 3))
    for i in range(n):
        for j in range(n):
            for s in np.ndindex(3, 3, 3):        # images: phonopy wraps the lower Se to z = 0.832 c
                d = pos[j] + (np.array(s) - 1) @ cell - pos[i]
                r = np.linalg.norm(d)
                if r < 1e-6 or r > CUTOFF:
                    continue
                k = _spring(sym[i], sym[j]) * _fc_block(d)
                fc[i, j] += -k
                fc[i, i] += k
    ph.force_constants = fc
    return ph


def model_bands(atoms, bp) -> dict:
    """A bands dict (the keys the exporter reads) for the spring model on path ``bp``, solved in
    QE's convention; frequencies with phonopy's unit factor so that both sides agree in THz."""
    from phonopy.physical_units import get_physical_units
    to_thz = get_physical_units().DefaultToTHz
    nat = len(atoms)
    freq, eig = [], []
    for q in bp.q_crystal:
        w2, v = np.linalg.eigh(model_dynmat_qe(atoms, q))
        freq.append(np.sign(w2) * np.sqrt(np.abs(w2)) * to_thz / THZ_PER_MEV)
        eig.append(v.T.reshape(3 * nat, nat, 3))
    nq = bp.nq
    zeros = np.zeros((nq, 3 * nat))
    return {"path/q_crystal": bp.q_crystal, "path/distance": bp.distance,
            "path/labels": [lab for _, lab in bp.labels], "path/label_index": np.array([i for i, _ in bp.labels]),
            "path/breaks": np.array(bp.breaks, dtype=int),
            "modes/frequency_meV": np.array(freq), "modes/eigenvector": np.array(eig),
            "modes/rms": np.zeros((nq, 3 * nat, 4)), "modes/rms_inplane": zeros, "modes/rms_outofplane": zeros,
            "structure/cell_bohr": atoms.cell.array / BOHR_RADIUS_ANGS,
            "structure/positions_bohr": atoms.positions / BOHR_RADIUS_ANGS,
            "structure/symbols": atoms.get_chemical_symbols(),
            "structure/masses_amu": atoms.get_masses(), "attrs": {}}


def _load_yaml(path):
    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _eigvecs(point, nat):
    return np.array([[[c[0] + 1j * c[1] for c in atom] for atom in band["eigenvector"]]
                     for band in point["band"]]).reshape(3 * nat, 3 * nat)     # (band, 3 nat)


def _projectors_equal(f, ea, eb, tol_thz=1e-6):
    """Eigenvectors ea, eb (band, 3nat) span the same space for every degenerate group of f."""
    worst = 0.0
    i = 0
    while i < len(f):
        j = i + 1
        while j < len(f) and abs(f[j] - f[i]) < tol_thz:
            j += 1
        pa = ea[i:j].T @ ea[i:j].conj()
        pb = eb[i:j].T @ eb[i:j].conj()
        worst = max(worst, np.abs(pa - pb).max())
        i = j
    return worst


def test_band_yaml_equals_phonopys_own_for_a_spring_model(atoms, tmp_path):
    """Same model, same path (Γ–M–K–Γ and a disconnected M–K): our band.yaml (QE phase converted)
    against the band.yaml phonopy writes itself. Layout, labels and segments identical; distances
    to 1e-7 1/Å and frequencies to 1e-8 THz (printed precision; acoustic modes at Γ, √ of round-off,
    to 5e-7); eigenvector subspaces to 1e-10.
    Without the phase conversion the Se eigenvectors differ by O(1) (the test can fail)."""
    bp = bandpath.band_path(atoms, "GMKG,MK", 16)
    b = model_bands(atoms, bp)
    ours = _load_yaml(write_band_yaml(b, tmp_path / "band.yaml"))

    ph = model_phonopy(atoms)
    segs = segments(bp.labels, bp.breaks, bp.nq)
    paths = [bp.q_crystal[i0:i1 + 1] for i0, i1, _, _ in segs]
    conn = [s[1] == t[0] for s, t in zip(segs[:-1], segs[1:])] + [False]
    labels = []
    for i, s in enumerate(segs):
        if i == 0 or not conn[i - 1]:
            labels.append(s[2])
        labels.append(s[3])
    ph.run_band_structure(paths, with_eigenvectors=True, path_connections=conn, labels=labels)
    ph.write_yaml_band_structure(filename=tmp_path / "phonopy_band.yaml")
    theirs = _load_yaml(tmp_path / "phonopy_band.yaml")

    assert [(s[2], s[3]) for s in segs] == [("Γ", "M"), ("M", "K"), ("K", "Γ"), ("M", "K")]
    for key in ("nqpoint", "npath", "segment_nqpoint", "labels", "natom"):
        assert ours[key] == theirs[key], key
    assert np.allclose(ours["reciprocal_lattice"], theirs["reciprocal_lattice"], atol=1e-8)
    assert np.allclose([p["coordinates"] for p in ours["points"]], [p["coordinates"] for p in theirs["points"]])
    nat = len(atoms)
    worst_unconverted = 0.0
    for po, pt in zip(ours["phonon"], theirs["phonon"]):
        assert np.allclose(po["q-position"], pt["q-position"], atol=1e-7)
        assert po["distance"] == pytest.approx(pt["distance"], abs=1e-7)
        fo = np.array([x["frequency"] for x in po["band"]])
        ft = np.array([x["frequency"] for x in pt["band"]])
        assert np.allclose(fo, ft, atol=1e-8 + 5e-7 * (np.abs(ft) < 1e-3))  # Γ acoustic: √(round-off)
        eo, et = _eigvecs(po, nat), _eigvecs(pt, nat)
        assert _projectors_equal(ft, eo, et) < 1e-10
        # the same eigenvectors back in QE's phase are a different (wrong) basis for phonopy
        q = np.array(po["q-position"])
        frac = np.array([p["coordinates"] for p in ours["points"]])
        back = np.array([to_phonopy_phase(e.reshape(nat, 3), -q, frac).reshape(-1) for e in eo])
        worst_unconverted = max(worst_unconverted, _projectors_equal(ft, back, et))
    assert worst_unconverted > 0.3

    # band.hdf5 (segments of unequal length, zero-padded as phonopy does) read by phonopy's reader
    from phonopy.cui.phonopy_bandplot_script import _read_band_hdf5

    from dfptmag.export.phonopy import write_band_hdf5
    ph.write_hdf5_band_structure(filename=tmp_path / "phonopy_band.hdf5")
    mine = _read_band_hdf5(write_band_hdf5(b, tmp_path / "band.hdf5"))
    ref = _read_band_hdf5(tmp_path / "phonopy_band.hdf5")
    assert list(mine[3]) == list(ref[3]) and mine[4] == ref[4]       # segment_nqpoint, labels
    assert np.allclose(mine[0], ref[0], atol=1e-12) and np.allclose(mine[2], ref[2], atol=1e-14)
    assert np.allclose(mine[1], ref[1], atol=1e-9 + 5e-7 * (np.abs(ref[1]) < 1e-3))


def test_phase_conversion_one_eigenvector_at_k(atoms):
    """One eigenvector by hand at K = (1/3, 1/3, 0): the Se atoms at x = (1/3, 2/3, ±0.168) take
    the factor exp(−2πi/3) (q·x = 1/3), W at the origin keeps its phase."""
    q = np.array([1 / 3, 1 / 3, 0])
    frac = atoms.get_scaled_positions(wrap=False)
    assert np.allclose(frac[:, 2], [0, 0.168, -0.168])
    e = np.arange(9).reshape(3, 3) * (1 + 0.5j)
    out = to_phonopy_phase(e, q, frac)
    w = np.exp(-2j * np.pi / 3)
    assert np.allclose(out, [e[0], w * e[1], w * e[2]], atol=1e-15)


@pytest.fixture(scope="module")
def real_bands(analyzed, atoms, tmp_path_factory):
    """bands.h5 from the tiny real run: the path K → K' (the two DFPT q-points of the session's
    tiny run), assembled and branch-tracked by the band workflow's own code."""
    from dfptmag.results.bandsfile import read, write
    from dfptmag.analysis.bands import assemble, track_branches
    bp = bandpath.band_path(atoms, "KKp", 2)
    b = assemble(bp, [analyzed["K"], analyzed["-K"]])
    track_branches(b, None)
    path = write(tmp_path_factory.mktemp("interchange") / "bands.h5", b)
    return path, read(path)


def _gnuplot(path, *extra):
    """phonopy-bandplot --gnuplot: (distance, frequency THz) per band, from phonopy's own reader."""
    code = "from phonopy.cui.phonopy_bandplot_script import main; main()"   # as the phonopy-bandplot script
    out = subprocess.run([sys.executable, "-c", code, "--gnuplot", *extra, str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and not out.stderr, out.stderr    # phonopy-bandplot --gnuplot exits with 1
    text = "\n".join(ln for ln in out.stdout.splitlines() if not ln.startswith("#"))
    return [np.array([[float(x) for x in ln.split()] for ln in b.strip().splitlines()])
            for b in text.split("\n\n") if b.strip()]


@pytest.mark.qe
def test_phonopy_export_of_real_bands_read_back_by_phonopy(real_bands, tmp_path):
    """`dfptmag export --format phonopy` on the real K → K' bands: phonopy-bandplot (band.yaml and
    band.hdf5) gives our frequencies in THz to 1e-6 (it prints 6 decimals) and phonopy's distance
    |K − K'|/2π; phonopy's readers give them to 1e-9 THz (yaml, 10 decimals) and 1e-12 (hdf5); the
    extra keys carry the RMS magnetization (1e-8 relative, printed precision); the eigenvector of
    the strongest in-plane mode at K' equals exp(−2πi q·x) × ours."""
    from phonopy.cui.phonopy_bandplot_script import _read_band_hdf5, _read_band_yaml
    path, b = real_bands
    r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "export", str(path), "--format", "phonopy",
                        "--outdir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    thz = b["modes/frequency_meV"] * THZ_PER_MEV
    assert 1.0 < thz.max() < 10.0           # WSe2 optical modes, ~2-8 THz
    dist = b["path/distance"] / (2 * np.pi)
    for fname, extra in (("band.yaml", ()), ("band.hdf5", ("--hdf5",))):
        bands = _gnuplot(tmp_path / fname, *extra)
        assert len(bands) == thz.shape[1]
        for k, blk in enumerate(bands):
            assert np.allclose(blk[:, 0], dist, atol=1e-6)
            assert np.allclose(blk[:, 1], thz[:, k], atol=1e-6)
    d, f, q, nseg, labels = _read_band_yaml(tmp_path / "band.yaml")
    assert np.allclose(f, thz, atol=1e-9) and np.allclose(q, b["path/q_crystal"], atol=1e-7)
    assert list(nseg) == [2] and labels == [["K", "K'"]]
    d5, f5, q5, nseg5, labels5 = _read_band_hdf5(tmp_path / "band.hdf5")
    assert np.allclose(f5, thz, atol=1e-12) and np.allclose(d5, dist, atol=1e-12) and labels5 == [["K", "K'"]]

    data = _load_yaml(tmp_path / "band.yaml")
    rms = b["modes/rms"]
    for iq, point in enumerate(data["phonon"]):
        for k, band in enumerate(point["band"]):
            assert band["magnetization_rms_muB"] == pytest.approx(rms[iq, k, 1:], rel=1e-8, abs=1e-20)
            assert band["induced_charge_rms_e"] == pytest.approx(rms[iq, k, 0], rel=1e-8, abs=1e-20)
            assert band["magnetization_rms_inplane_muB"] == pytest.approx(b["modes/rms_inplane"][iq, k], rel=1e-8)
            assert band["dfptmag_branch"] == b["modes/branch"][iq, k]
    iq = 1                                      # K' = (−1/3, −1/3, 0)
    k = int(np.nanargmax(b["modes/rms_inplane"][iq]))
    nat = len(b["structure/symbols"])
    e_ph = _eigvecs(data["phonon"][iq], nat)[k].reshape(nat, 3)
    frac = np.array(data["points"][1]["coordinates"]), np.array(data["points"][2]["coordinates"])
    w = np.exp(-2j * np.pi * np.dot(b["path/q_crystal"][iq], frac[0]))       # by hand: q·x = −1/3
    assert np.allclose(frac[0], [1 / 3, 2 / 3, 0.168], atol=1e-12) and frac[1][2] == pytest.approx(0.832)
    assert w == pytest.approx(np.exp(2j * np.pi / 3), abs=1e-7)
    e_qe = b["modes/eigenvector"][iq, k]
    assert np.allclose(e_ph[0], e_qe[0], atol=1e-13)
    assert np.allclose(e_ph[1:], w * e_qe[1:], atol=1e-13)


@pytest.mark.qe
def test_pymatgen_band_structure_plots_and_round_trips(real_bands, tmp_path):
    """to_pymatgen: structure, labels, THz frequencies and eigendisplacements; the
    eigendisplacements equal pymatgen's own conversion of the phonopy eigenvectors
    (pymatgen.io.phonopy.eigvec_to_eigdispl, applied to the eigenvectors of our band.yaml) to 1e-12; PhononBSPlotter draws it; as_dict → JSON →
    from_dict gives it back."""
    from pymatgen.io.phonopy import eigvec_to_eigdispl
    from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine
    from pymatgen.phonon.plotter import PhononBSPlotter

    from dfptmag.export.pymatgen import to_pymatgen, write_json
    path, b = real_bands
    bs = to_pymatgen(path)
    assert isinstance(bs, PhononBandStructureSymmLine)
    import dfptmag                                  # the same from the API object
    assert np.array_equal(dfptmag.load(path).to_pymatgen().bands, bs.bands)
    assert [s.symbol for s in bs.structure.species] == ["W", "Se", "Se"]
    assert bs.structure.lattice.a == pytest.approx(3.32, abs=1e-9)
    assert set(bs.labels_dict) == {"K", "K'"}
    assert np.allclose(bs.labels_dict["K'"].frac_coords, [-1 / 3, -1 / 3, 0])
    thz = b["modes/frequency_meV"] * THZ_PER_MEV
    # K → K' has no point between its labelled ends: one nudged copy of K' before K' (else
    # pymatgen draws the segment with zero length and loses its end label)
    keep = _computed(bs)
    assert len(bs.qpoints) == len(thz) + 1 and keep == [0, 2]
    assert np.allclose(bs.bands[:, keep], thz.T, atol=1e-12)
    assert [br["name"] for br in bs.branches] == ["K-K'"]
    assert bs.distance[-1] == pytest.approx(np.linalg.norm(bs.qpoints[-1].cart_coords - bs.qpoints[0].cart_coords), rel=1e-12)
    bs_all = bs
    bs = type(bs)([q.frac_coords for q in np.array(bs.qpoints)[keep]], bs.bands[:, keep], bs.lattice_rec,
                  eigendisplacements=bs.eigendisplacements[:, keep], labels_dict={k: v.frac_coords for k, v in bs.labels_dict.items()},
                  structure=bs.structure)

    export(path, tmp_path)
    data = _load_yaml(tmp_path / "band.yaml")
    frac = [p["coordinates"] for p in data["points"]]
    masses = b["structure/masses_amu"]          # exact (the yaml prints 6 decimals, q 7)
    nat = len(frac)
    worst = 0.0
    for iq, point in enumerate(data["phonon"]):
        ev = _eigvecs(point, nat)
        for k in range(3 * nat):
            v = ev[k].reshape(nat, 3)
            q = b["path/q_crystal"][iq]
            ref = np.array([eigvec_to_eigdispl(v[a], q, frac[a], masses[a]) for a in range(nat)])
            worst = max(worst, np.abs(bs.eigendisplacements[k, iq] - ref).max())
    assert worst < 1e-12         # eigenvectors printed with 14 decimals, /√m ≈ 0.1

    bs = bs_all
    fig_ax = PhononBSPlotter(bs).get_plot()
    fig = fig_ax.get_figure() if hasattr(fig_ax, "get_figure") else fig_ax
    fig.savefig(tmp_path / "pymatgen_bands.png", dpi=80)
    assert (tmp_path / "pymatgen_bands.png").stat().st_size > 5000

    js = write_json(path, tmp_path / "bands_pymatgen.json")
    back = PhononBandStructureSymmLine.from_dict(json.loads(js.read_text()))
    assert np.allclose(back.bands, bs.bands, atol=0)
    assert np.allclose(back.eigendisplacements, bs.eigendisplacements, atol=1e-15)
    assert set(back.labels_dict) == {"K", "K'"}
    assert back.structure == bs.structure


def _computed(bs):
    """Indices of bs.qpoints that are computed points (not the nudged copies to_pymatgen adds)."""
    from dfptmag.export.pymatgen import NUDGE
    fr = np.array([q.frac_coords for q in bs.qpoints])
    return [i for i in range(len(fr)) if not (i + 1 < len(fr) and bs.qpoints[i].label is None
                                              and bs.qpoints[i + 1].label is not None
                                              and abs(np.linalg.norm(fr[i + 1] - fr[i]) - NUDGE) < 1e-12)]


@pytest.mark.parametrize("npoints", [4, 7, 16])
def test_pymatgen_plotter_draws_every_label(atoms, npoints):
    """Γ–M–K–Γ with 4 (no interior points at all), 7 (M–K without one) and 16 points: pymatgen's
    own branches and PhononBSPlotter's ticks (get_ticks and the drawn axis) show Γ, M, K, Γ in
    order at our path distances (to 2e-3 relative: the nudged point, NUDGE = 1e-3 fractional);
    the computed frequencies are passed unchanged (1e-12 THz)."""
    from pymatgen.phonon.plotter import PhononBSPlotter

    from dfptmag.export.pymatgen import to_pymatgen
    bp = bandpath.band_path(atoms, "GMKG", npoints)
    b = model_bands(atoms, bp)
    bs = to_pymatgen(b)
    assert [br["name"] for br in bs.branches] == ["Γ-M", "M-K", "K-Γ"]
    ticks = PhononBSPlotter(bs).get_ticks()
    dedup = [(d, lab) for n, (d, lab) in enumerate(zip(ticks["distance"], ticks["label"]))
             if n == 0 or lab != ticks["label"][n - 1]]
    assert [lab for _, lab in dedup] == ["Γ", "M", "K", "Γ"]
    ours = bp.distance[[i for i, _ in bp.labels]]
    assert np.allclose([d for d, _ in dedup], ours, rtol=2e-3, atol=0)
    assert np.diff(ours).min() > 0.5                 # real segment lengths (2π/Å), none zero
    ax = PhononBSPlotter(bs).get_plot()
    drawn = [t.get_text() for t in ax.get_xticklabels()]
    assert [lab for n, lab in enumerate(drawn) if n == 0 or lab != drawn[n - 1]] == ["Γ", "M", "K", "Γ"]
    keep = _computed(bs)
    thz = b["modes/frequency_meV"] * THZ_PER_MEV
    # each computed point once per segment it ends or starts (corners twice, as pymatgen expects)
    segs = segments(bp.labels, bp.breaks, bp.nq)
    idx = np.concatenate([np.arange(i0, i1 + 1) for i0, i1, _, _ in segs])
    assert np.allclose(bs.bands[:, keep], thz[idx].T, atol=1e-12)
    import matplotlib.pyplot as plt
    plt.close("all")


def test_export_bad_input_is_one_line(tmp_path):
    """Unknown format and a file that is not a bands.h5: exit code 2, one line."""
    bad = tmp_path / "x.h5"
    bad.write_text("not hdf5")
    for args in (["--format", "phonopy"], ["--format", "xyz"]):
        r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "export", str(bad), *args],
                           capture_output=True, text=True)
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("dfptmag: error:"), r.stderr


def _numbers_and_words(text):
    import re
    toks = re.split(r"(\s+)", text)
    nums = [float(t) for t in toks if re.fullmatch(r"-?\d+\.\d+(e[-+]?\d+)?", t)]
    words = ["#" if re.fullmatch(r"-?\d+\.\d+(e[-+]?\d+)?", t) else t for t in toks]
    return np.array(nums), "".join(words)


def test_structure_files_give_the_same_pw_input(tmp_path):
    """POSCAR and CIF files of WSe2 written by ASE and by pymatgen — as they come (Se below the W
    plane at negative z) and wrapped into the cell (as databases write them: the lower Se at
    z = 0.916 c) — give the extxyz's pw.x input: the same text, numbers equal to 1e-7 (CIF stores
    8 digits; ASE's POSCAR gives the identical text). A pymatgen-only format (its JSON) is read
    through pymatgen."""
    import dataclasses

    from ase.io import read, write
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter
    from pymatgen.io.vasp import Poscar

    wf = config.load(TINY)
    ref_atoms = inputs.build_atoms(wf)
    upf = {"W": "W.UPF", "Se": "Se.UPF"}
    ref = inputs.pw_input(wf, ref_atoms, upf, "out", "pseudo")
    a = read(ROOT / "structures" / "WSe2_monolayer.extxyz")
    wrapped = a.copy()
    wrapped.wrap()
    assert wrapped.get_scaled_positions()[2, 2] == pytest.approx(1 - 0.084)
    files = {}
    for tag, at in (("asis", a), ("wrapped", wrapped)):
        write(tmp_path / f"POSCAR_{tag}", at, format="vasp")
        write(tmp_path / f"{tag}_ase.cif", at)
        st = AseAtomsAdaptor.get_structure(at)
        CifWriter(st).write_file(tmp_path / f"{tag}_pmg.cif")
        Poscar(st).write_file(tmp_path / f"POSCAR_{tag}_pmg")
        files.update({f"POSCAR_{tag}": 0.0, f"{tag}_ase.cif": 1e-7, f"{tag}_pmg.cif": 1e-7,
                      f"POSCAR_{tag}_pmg": 1e-12})
    st.to(filename=str(tmp_path / "structure_pmg.json"))
    files["structure_pmg.json"] = 1e-12
    ref_nums, ref_words = _numbers_and_words(ref)
    for name, tol in files.items():
        w2 = dataclasses.replace(wf, structure=tmp_path / name)
        text = inputs.pw_input(w2, inputs.build_atoms(w2), upf, "out", "pseudo")
        if tol == 0.0:
            assert text == ref, name
        nums, words = _numbers_and_words(text)
        assert words == ref_words, name
        assert np.abs(nums - ref_nums).max() <= tol, (name, np.abs(nums - ref_nums).max())
    # the unwrapping is needed: read as stored, the wrapped CIF spans 0.916 c
    raw = read(tmp_path / "wrapped_pmg.cif")
    assert np.ptp(raw.positions[:, 2]) > 15


def test_unreadable_structure_is_one_line(tmp_path):
    bad = tmp_path / "structure.cif"
    bad.write_text("data_x\n_cell_length_a 3.3\nthis is not a cif\n")
    toml = tmp_path / "wf.toml"
    toml.write_text(TINY.read_text().replace("../structures/WSe2_monolayer.extxyz", str(bad))
                    .replace('"pseudo/', f'"{TINY.parent}/pseudo/'))
    r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", str(toml), "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "structure.cif" in r.stderr and "neither ASE nor pymatgen" in r.stderr, r.stderr


RY_EV = 13.605693122994          # CODATA 2018 Rydberg energy in eV
AMU_RY = 911.44424310865645      # QE's AMU_RY (atomic mass unit in Ry mass units)


def write_q2r_fc(atoms, path, dim=(3, 3, 1)):
    """The spring model's force constants in q2r.x's flfrc text layout (Ry/bohr², ibrav = 0,
    images folded onto the dim supercell), ordered as phonopy's PH_Q2R reads it: the block
    'j1 j2 na1 na2' holds Φ(na2 at 0, j2; na1 at R, j1) for R = (m1 − 1, m2 − 1, m3 − 1), m1 fastest."""
    sym, pos, cell, m = atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array, atoms.get_masses()
    nat = len(atoms)
    conv = BOHR_RADIUS_ANGS ** 2 / RY_EV
    phi = np.zeros(tuple(dim) + (nat, nat, 3, 3))      # Φ(a at 0, b at R)
    for a in range(nat):
        for b in range(nat):
            for n1 in range(-2, 3):
                for n2 in range(-2, 3):
                    d = pos[b] + n1 * cell[0] + n2 * cell[1] - pos[a]
                    r = np.linalg.norm(d)
                    if r < 1e-6 or r > CUTOFF:
                        continue
                    blk = _spring(sym[a], sym[b]) * _fc_block(d) * conv
                    phi[n1 % dim[0], n2 % dim[1], 0, a, b] -= blk
                    phi[0, 0, 0, a, a] += blk
    alat = np.linalg.norm(cell[0]) / BOHR_RADIUS_ANGS
    types = list(dict.fromkeys(sym))
    lines = [f"{len(types)} {nat} 0 {alat:.10f} 0 0 0 0 0"]
    lines += [" ".join(f"{x:.12f}" for x in v / BOHR_RADIUS_ANGS / alat) for v in cell]
    lines += [f"{i + 1} '{t}' {m[sym.index(t)] * AMU_RY:.8f}" for i, t in enumerate(types)]
    lines += [f"{a + 1} {types.index(sym[a]) + 1} " + " ".join(f"{x:.12f}" for x in pos[a] / BOHR_RADIUS_ANGS / alat)
              for a in range(nat)]
    lines += ["F", " ".join(str(n) for n in dim)]
    for j1 in range(3):
        for j2 in range(3):
            for na1 in range(nat):
                for na2 in range(nat):
                    lines.append(f"{j1 + 1} {j2 + 1} {na1 + 1} {na2 + 1}")
                    for m3 in range(dim[2]):
                        for m2 in range(dim[1]):
                            for m1 in range(dim[0]):
                                lines.append(f"{m1 + 1} {m2 + 1} {m3 + 1} {phi[m1, m2, m3, na2, na1, j2, j1]:.15e}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_phonopy_params_with_force_constants_load_in_phonopy(atoms, tmp_path):
    """dfptmag export with q2r.x force constants (dispersion/fc, here the spring model in q2r.x's
    layout) → phonopy_params.yaml; phonopy.load(that file) alone: frequencies at Γ, K and (1/3, 0)
    (commensurate with the 3×3 q2r grid) equal the model's to 5e-6 THz (measured 1.5e-6:
    QE's vs phonopy's unit constants), a band structure, a DOS
    integrating to 3·nat = 9 modes (to 1 %; measured 9.026), and a heat capacity that tends to Dulong–Petit
    (9 R at 2000 K, to 0.5 %; measured 74.72 vs 74.83 J/K/mol). A second export refuses to overwrite (exit 2, one line naming the
    file); --force overwrites."""
    import phonopy
    from phonopy.physical_units import get_physical_units
    from dfptmag.results.bandsfile import write

    bp = bandpath.band_path(atoms, "GMKG", 7)
    run = tmp_path / "run"
    (run / "dispersion").mkdir(parents=True)
    bands = write(run / "bands.h5", model_bands(atoms, bp))
    write_q2r_fc(atoms, run / "dispersion" / "fc")
    r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "export", str(bands), "--format", "phonopy"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    params = run / "phonopy_params.yaml"
    assert f"wrote {params}" in r.stdout
    ph = phonopy.load(str(params))
    assert ph.force_constants is not None and tuple(np.diag(ph.supercell_matrix)) == (3, 3, 1)
    to_thz = get_physical_units().DefaultToTHz
    for q in ([0, 0, 0], [1 / 3, 1 / 3, 0], [1 / 3, 0, 0]):
        w2 = np.linalg.eigvalsh(model_dynmat_qe(atoms, q))
        ref = np.sign(w2) * np.sqrt(np.abs(w2)) * to_thz
        ph.run_qpoints([q])
        got = ph.get_qpoints_dict()["frequencies"][0]
        assert np.abs(np.sort(got) - np.sort(ref)).max() < 5e-6, (q, got, ref)   # measured 1.5e-6 (unit constants)
        print("phonopy.load vs model at", q, "max |Δf| THz", np.abs(np.sort(got) - np.sort(ref)).max())
    ph.run_band_structure([[[0, 0, 0], [0.5, 0, 0]], [[0.5, 0, 0], [1 / 3, 1 / 3, 0]]], labels=["Γ", "M", "K"])
    assert len(ph.get_band_structure_dict()["frequencies"]) == 2
    ph.run_mesh([24, 24, 1], is_gamma_center=True)
    ph.run_total_dos()
    dos = ph.get_total_dos_dict()
    f, g = dos["frequency_points"], dos["total_dos"]
    print("DOS integral", np.trapezoid(g, f))
    assert np.trapezoid(g, f) == pytest.approx(9.0, rel=1e-2)
    ph.run_thermal_properties(temperatures=[300.0, 2000.0], exclude_gamma_acoustic=True)
    cv = ph.get_thermal_properties_dict()["heat_capacity"]
    print("Cv J/K/mol at 300, 2000 K", cv, "9R =", 9 * 8.314462618)
    assert cv[1] == pytest.approx(9 * 8.314462618, rel=5e-3) and cv[0] < cv[1]

    again = subprocess.run([sys.executable, "-m", "dfptmag.cli", "export", str(bands)], capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "band.yaml: exists; pass --force" in again.stderr, again.stderr
    before = params.stat().st_mtime_ns
    forced = subprocess.run([sys.executable, "-m", "dfptmag.cli", "export", str(bands), "--force"],
                            capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    assert params.stat().st_mtime_ns >= before
    bad = tmp_path / "fc_bad"
    bad.write_text("1 2 0\n")
    r = subprocess.run([sys.executable, "-m", "dfptmag.cli", "export", str(bands), "--fc", str(bad), "--force",
                        "--outdir", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(bad) in r.stderr, r.stderr


def test_phonopy_params_read_by_euphonic(atoms, tmp_path):
    """Euphonic reads the exported phonopy_params.yaml as it is
    (``ForceConstants.from_phonopy(summary_name='phonopy_params.yaml')``: cell in bohr,
    ``calculator: qe``, force constants inside), and its frequencies at Γ, K, M, (1/3, 0) and six
    random in-plane q equal phonopy's own (``phonopy.load`` of the same file) to 1e-7 relative to
    the largest (measured 1.4e-8, the same factor on every mode: Euphonic's pint units take the
    bohr and the Rydberg from CODATA 2022, phonopy from CODATA 2018)."""
    import phonopy
    from phonopy.physical_units import get_physical_units
    import euphonic                                   # a declared dependency (dfptmag sqw)
    from dfptmag.results.bandsfile import write

    run = tmp_path / "run"
    (run / "dispersion").mkdir(parents=True)
    bands = write(run / "bands.h5", model_bands(atoms, bandpath.band_path(atoms, "GMKG", 7)))
    write_q2r_fc(atoms, run / "dispersion" / "fc")
    export(bands)
    fc = euphonic.ForceConstants.from_phonopy(path=run, summary_name="phonopy_params.yaml")
    assert fc.sc_matrix.tolist() == [[3, 0, 0], [0, 3, 0], [0, 0, 1]] and fc.crystal.n_atoms == 3
    np.testing.assert_allclose(fc.crystal.cell_vectors.to("angstrom").magnitude, atoms.cell.array, rtol=1e-8, atol=1e-8)
    q = np.vstack([[0, 0, 0], [1 / 3, 1 / 3, 0], [0.5, 0, 0], [1 / 3, 0, 0],
                   np.random.default_rng(0).random((6, 3)) * [1, 1, 0]])
    f_eu = fc.calculate_qpoint_phonon_modes(q).frequencies.to("meV").magnitude
    ph = phonopy.load(str(run / "phonopy_params.yaml"))
    ph.run_qpoints(q)
    f_ph = ph.qpoints.frequencies * get_physical_units().THzToEv * 1e3      # meV
    rel = np.abs(f_eu - f_ph).max() / np.abs(f_ph).max()
    print("Euphonic vs phonopy: max |Δf| %.2e meV, relative %.2e" % (np.abs(f_eu - f_ph).max(), rel))
    assert rel < 1e-7

