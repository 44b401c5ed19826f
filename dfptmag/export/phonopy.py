"""Export ``bands.h5`` as phonopy's ``band.yaml`` and ``band.hdf5`` (what ``phonopy-bandplot``,
phonopy's own tools and the many scripts written for them read), with the magnetization added
as extra per-band keys.

Conventions, matched to phonopy's own writer (phonopy/phonon/band_structure.py):

- frequencies in THz (negative = imaginary), from dfptmag's meV with CODATA h and e;
- the path is cut into segments between consecutive labelled points; each segment holds both
  of its end points (a corner point appears twice, once per segment), as phonopy writes it;
  ``labels`` lists one [start, end] pair per segment; a break in the path (``GMK,AL``) is a
  segment whose start label differs from the previous end;
- distance: phonopy's cumulative ``|Δq|`` with the reciprocal lattice *without* 2π (1/Å), i.e.
  dfptmag's distance / 2π, continuing without a jump across breaks (phonopy restarts each
  segment at the previous segment's final distance);
- eigenvectors of the mass-scaled dynamical matrix, per q a (3·nat, nband) matrix whose columns
  are the bands (index atom·3 + Cartesian direction), in phonopy's *atom-position* phase
  convention. QE (and dfptmag) use the *lattice-vector* phase: the displacement of atom κ in
  the cell at lattice vector R is u(Rκ) = e_κ^QE e^{i q·R} / √m_κ, while phonopy writes
  u(lκ) = e_κ^ph e^{i q·r(lκ)} / √m_κ with r(lκ) = R + τ_κ (phonopy's dynamical matrix
  D_κκ'(q) = Σ_l' Φ(0κ, l'κ') e^{i q·[r(l'κ') − r(0κ)]} / √(m_κ m_κ')). The same physical
  displacement therefore needs::

      e_κ^phonopy(q) = exp(−2πi q·x_κ) · e_κ^QE(q)

  with q in reduced coordinates of the reciprocal lattice and x_κ the fractional coordinates
  written in the file's ``points``: wrapped into [0, 1) as phonopy's own cells are (wrapping
  an atom by a lattice vector changes its phase, so the phase uses exactly these numbers);
- extra per-band keys in band.yaml (phonopy's readers ignore them):
  ``dfptmag_branch``, ``induced_charge_rms_e``, ``magnetization_rms_muB`` [x, y, z],
  ``magnetization_rms_inplane_muB``, ``magnetization_rms_outofplane_muB``: the RMS over one
  period at the amplitude stated in the header (one-sided amplitude of paper Eq. 1, per unit
  cell); in band.hdf5 the same as datasets of shape (nsegment, nq, nband[, 3]) with ``units``
  attributes.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import yaml

from ..constants import BOHR_RADIUS_ANGS, ELECTRONVOLT_SI, H_PLANCK_SI
from ..errors import DfptmagError

THZ_PER_MEV = 1e-3 * ELECTRONVOLT_SI / H_PLANCK_SI / 1e12     # 0.241798924... THz per meV

PHASE_NOTE = ("phonopy convention: e_ph(kappa) = exp(-2 pi i q.x_kappa) e_QE(kappa), "
              "x_kappa = fractional coordinates in 'points'; QE/dfptmag use the lattice-vector phase")


def structure(b: dict):
    """(cell Å (3, 3) rows, fractional coordinates (nat, 3), symbols, masses amu) of a bands dict."""
    cell = np.asarray(b["structure/cell_bohr"], dtype=float) * BOHR_RADIUS_ANGS
    pos = np.asarray(b["structure/positions_bohr"], dtype=float) * BOHR_RADIUS_ANGS
    frac = np.linalg.solve(cell.T, pos.T).T
    symbols = [s.decode() if isinstance(s, bytes) else str(s) for s in b["structure/symbols"]]
    return cell, frac, symbols, np.asarray(b["structure/masses_amu"], dtype=float)


def wrapped(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates in [0, 1), as phonopy keeps them (−1e-12 → 0, not 1)."""
    w = np.mod(frac, 1.0)
    w[np.abs(w - 1.0) < 1e-12] = 0.0
    return w


def to_phonopy_phase(eigvec: np.ndarray, q_crystal, frac: np.ndarray) -> np.ndarray:
    """QE lattice-vector phase → phonopy atom-position phase for eigenvectors (..., nat, 3)."""
    phase = np.exp(-2j * np.pi * (np.asarray(frac) @ np.asarray(q_crystal, dtype=float)))
    return eigvec * phase[:, None]


def segments(labels, breaks, nq: int) -> list[tuple[int, int, str | None, str | None]]:
    """The path cut at its labelled points: [(first index, last index (inclusive), start label,
    end label)]. Two labelled points that are neighbours across a break are a jump, not a
    segment. Without labels the whole path is one unlabelled segment."""
    labs = sorted((int(i), str(lab)) for i, lab in labels)
    if len(labs) < 2:
        return [(0, nq - 1, None, None)]
    breaks = {int(x) for x in breaks}
    out = []
    for (i0, l0), (i1, l1) in zip(labs[:-1], labs[1:]):
        if i1 == i0 or (i1 == i0 + 1 and i1 in breaks):
            continue
        out.append((i0, i1, l0, l1))
    return out


def phonopy_distance(q_crystal: np.ndarray, segs, cell: np.ndarray) -> list[np.ndarray]:
    """phonopy's distance per segment: cumulative ``|Δq · inv(cell)ᵀ|`` (1/Å, no 2π), each segment
    starting where the previous one ended."""
    rec = np.linalg.inv(cell).T          # rows: reciprocal vectors without 2π
    d0, out = 0.0, []
    for i0, i1, _, _ in segs:
        step = np.linalg.norm(np.diff(q_crystal[i0:i1 + 1], axis=0) @ rec, axis=1)
        d = d0 + np.concatenate([[0.0], np.cumsum(step)])
        out.append(d)
        d0 = d[-1]
    return out


def _atomic(path: Path, write) -> Path:
    """``write(tmp)`` then rename onto ``path`` (dfptmag.atomic, the one atomic-write helper)."""
    from ..atomic import atomic_path
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def _f(x: float, fmt: str) -> str:
    """A number as YAML: NaN (a failed q-point) as .nan, which YAML loaders read as a float."""
    return ".nan" if not np.isfinite(x) else fmt % x


def _q(label: str) -> str:
    """A label as a YAML double-quoted scalar (K' needs quoting; JSON strings are valid YAML)."""
    return json.dumps(label, ensure_ascii=False)


def _per_band(b: dict):
    """(frequency THz, phonopy eigenvectors, rms (nq, nmode, 4), inplane, outofplane, branch)."""
    cell, frac, _, _ = structure(b)
    frac = wrapped(frac)
    q = np.asarray(b["path/q_crystal"], dtype=float)
    thz = np.asarray(b["modes/frequency_meV"], dtype=float) * THZ_PER_MEV
    e = np.asarray(b["modes/eigenvector"])                       # (nq, nmode, nat, 3)
    eph = np.array([to_phonopy_phase(e[iq], q[iq], frac) for iq in range(len(q))])
    nq, nmode = thz.shape
    evec = eph.reshape(nq, nmode, -1).transpose(0, 2, 1)       # (nq, 3 nat, nband): columns = bands
    return (thz, evec, np.asarray(b["modes/rms"], dtype=float), np.asarray(b["modes/rms_inplane"]),
            np.asarray(b["modes/rms_outofplane"]), np.asarray(b.get("modes/branch", np.full((nq, nmode), -1))))


def _phonopy_atoms(b: dict):
    from phonopy.structure.atoms import PhonopyAtoms
    cell, frac, symbols, masses = structure(b)
    frac = wrapped(frac)
    return PhonopyAtoms(symbols=symbols, cell=cell, scaled_positions=frac, masses=masses)


def _header(b: dict, source) -> dict:
    a = b["attrs"]
    return {"dfptmag": {
        "source": str(source), "version": str(a.get("dfptmag_version", "")),
        "object": str(a.get("object", "")), "amplitude": str(a.get("amplitude", "")),
        "frequency_unit": "THz (negative = imaginary)",
        "eigenvector_phase": PHASE_NOTE,
        "extra_band_keys": "dfptmag_branch (branch index after eigenvector-overlap tracking); "
                           "induced_charge_rms_e (electrons per cell); magnetization_rms_muB [x, y, z], "
                           "magnetization_rms_inplane_muB, magnetization_rms_outofplane_muB (Bohr "
                           "magnetons per cell): RMS over one period at the stated amplitude, "
                           "m_a = Tr(sigma_a dn) (QE convention)"}}


def write_band_yaml(b: dict, path, source="bands.h5") -> Path:
    """phonopy's band.yaml layout (see the module doc) plus the dfptmag keys."""
    cell, frac, _, _ = structure(b)
    q = np.asarray(b["path/q_crystal"], dtype=float)
    segs = segments(list(zip(b["path/label_index"], b["path/labels"])), b["path/breaks"], len(q))
    dist = phonopy_distance(q, segs, cell)
    thz, evec, rms, inp, outp, branch = _per_band(b)
    atoms = _phonopy_atoms(b)
    natom = len(frac)
    nseg_q = [i1 - i0 + 1 for i0, i1, _, _ in segs]
    text = [yaml.dump(_header(b, source), default_flow_style=False, allow_unicode=True).rstrip(),
            f"nqpoint: {sum(nseg_q)}", f"npath: {len(segs)}", "segment_nqpoint:"]
    text += [f"- {n}" for n in nseg_q]
    if segs[0][2] is not None:
        text.append("labels:")
        text += [f"- [ {_q(l0)}, {_q(l1)} ]" for _, _, l0, l1 in segs]
    text.append("reciprocal_lattice:")
    for vec, axis in zip(np.linalg.inv(cell).T, ("a*", "b*", "c*")):
        text.append("- [ %12.8f, %12.8f, %12.8f ] # %2s" % (tuple(vec) + (axis,)))
    text.append(f"natom: {natom}")
    text.append(str(atoms))
    text += ["", "phonon:", ""]
    for (i0, i1, _, _), d in zip(segs, dist):
        for j, iq in enumerate(range(i0, i1 + 1)):
            text.append("- q-position: [ %12.7f, %12.7f, %12.7f ]" % tuple(q[iq]))
            text.append("  distance: %12.7f" % d[j])
            text.append("  band:")
            for k in range(thz.shape[1]):
                r = rms[iq, k]
                text.append(f"  - # {k + 1}")
                text.append("    frequency: " + _f(thz[iq, k], "%15.10f"))
                text.append(f"    dfptmag_branch: {int(branch[iq, k])}")
                text.append("    induced_charge_rms_e: " + _f(r[0], "%.8e"))
                text.append("    magnetization_rms_muB: [ " + ", ".join(_f(x, "%.8e") for x in r[1:]) + " ]")
                text.append("    magnetization_rms_inplane_muB: " + _f(inp[iq, k], "%.8e"))
                text.append("    magnetization_rms_outofplane_muB: " + _f(outp[iq, k], "%.8e"))
                text.append("    eigenvector:")
                for at in range(natom):
                    text.append(f"    - # atom {at + 1}")
                    for m in range(3):
                        c = evec[iq, at * 3 + m, k]
                        text.append("      - [ " + _f(c.real, "%17.14f") + ", " + _f(c.imag, "%17.14f") + " ]")
            text.append("")
    path = Path(path)
    return _atomic(path, lambda p: p.write_text("\n".join(text) + "\n", encoding="utf-8"))


def write_band_hdf5(b: dict, path, source="bands.h5") -> Path:
    """phonopy's band.hdf5 layout (segments padded with zeros to the longest, as phonopy does;
    ``segment_nqpoint`` says how many are valid) plus the dfptmag datasets."""
    cell, frac, symbols, masses = structure(b)
    frac = wrapped(frac)
    q = np.asarray(b["path/q_crystal"], dtype=float)
    segs = segments(list(zip(b["path/label_index"], b["path/labels"])), b["path/breaks"], len(q))
    dist = phonopy_distance(q, segs, cell)
    thz, evec, rms, inp, outp, branch = _per_band(b)
    nseg_q = [i1 - i0 + 1 for i0, i1, _, _ in segs]
    nmax = max(nseg_q)

    def pad(arr):
        out = np.zeros((len(segs), nmax) + arr.shape[1:], dtype=arr.dtype)
        for s, (i0, i1, _, _) in enumerate(segs):
            out[s, :i1 - i0 + 1] = arr[i0:i1 + 1]
        return out

    dpad = np.zeros((len(segs), nmax))
    for s, d in enumerate(dist):
        dpad[s, :len(d)] = d
    from phonopy.structure.atoms import PhonopyAtoms
    numbers = PhonopyAtoms(symbols=symbols, cell=cell, scaled_positions=frac).numbers
    header = _header(b, source)["dfptmag"]

    def write(p):
        with h5py.File(p, "w") as w:
            w.create_dataset("nqpoint", data=[sum(nseg_q)])
            w.create_dataset("segment_nqpoint", data=nseg_q)
            w.create_dataset("reciprocal_lattice", data=np.linalg.inv(cell).T)
            w.create_dataset("lattice", data=cell)
            w.create_dataset("natom", data=len(frac))
            w.create_dataset("coordinates", data=frac)
            w.create_dataset("symbols", data=np.array(symbols, dtype="S"))
            w.create_dataset("numbers", data=numbers)
            w.create_dataset("masses", data=masses)
            w.create_dataset("path", data=pad(q))
            w.create_dataset("distance", data=dpad)
            w.create_dataset("frequency", data=pad(thz)).attrs["units"] = "THz"
            w.create_dataset("eigenvector", data=pad(evec)).attrs["description"] = PHASE_NOTE
            w.create_dataset("label", data=np.array([[s.encode() for s in (l0 or "", l1 or "")]
                                                     for _, _, l0, l1 in segs]))
            for key, arr, unit in (("induced_charge_rms", rms[..., 0], "e"),
                                   ("magnetization_rms", rms[..., 1:], "muB"),
                                   ("magnetization_rms_inplane", inp, "muB"),
                                   ("magnetization_rms_outofplane", outp, "muB"),
                                   ("dfptmag_branch", branch, "")):
                ds = w.create_dataset(key, data=pad(np.asarray(arr)))
                ds.attrs["units"] = unit
            for k, v in header.items():
                w.attrs[f"dfptmag_{k}"] = v
    return _atomic(Path(path), write)


def write_phonopy_params(b: dict, fc_file, path) -> Path:
    """phonopy's ``phonopy_params.yaml`` (``Phonopy.save(settings={'force_constants': True})``)
    from q2r.x's real-space force constants ``fc_file`` (QE units, Ry/bohr², read by phonopy's
    own ``phonopy.interface.qe.PH_Q2R``) and the run's structure: ``phonopy.load(path)`` alone
    then gives band structures, DOS and thermal properties. The supercell is q2r.x's q-grid.
    Born charges in the file (``lrigid``) mean q2r.x subtracted a dipole term that phonopy does
    not add back; such a file is refused (rerun the dispersion without epsil)."""
    from phonopy import Phonopy
    from phonopy.interface.qe import PH_Q2R
    from phonopy.structure.atoms import PhonopyAtoms

    from ..errors import InputFileError
    cell, frac, symbols, masses = structure(b)
    unit = PhonopyAtoms(symbols=symbols, cell=cell / BOHR_RADIUS_ANGS, scaled_positions=wrapped(frac),
                        masses=masses)
    q2r = PH_Q2R(str(fc_file))
    try:
        q2r.run(unit)
    except (ValueError, IndexError, AssertionError, OSError) as e:
        raise InputFileError(fc_file, f"not q2r.x force constants for this structure ({type(e).__name__}: {e})") from None
    if q2r.borns is not None:
        raise InputFileError(fc_file, "has Born charges (q2r.x removed a dipole term phonopy does not restore)")
    ph = Phonopy(q2r.primitive, supercell_matrix=np.diag(q2r.dimension), calculator="qe")
    ph.force_constants = q2r.fc

    def write(tmp):
        ph.save(filename=str(tmp), settings={"force_constants": True})
    return _atomic(Path(path), write)


def refuse_overwrite(paths, force: bool) -> None:
    """DfptmagError naming the first existing file unless ``force``."""
    if force:
        return
    for p in paths:
        if Path(p).exists():
            raise DfptmagError(f"{p}: exists; pass --force to overwrite")


def export(bands_file, outdir=None, force: bool = False, fc_file=None) -> list[Path]:
    """Write ``band.yaml`` and ``band.hdf5`` for a bands.h5 file into ``outdir`` (default: its
    directory), and ``phonopy_params.yaml`` with force constants when q2r.x's output exists
    (``fc_file``, default ``dispersion/fc`` next to bands.h5). Existing files are not replaced
    unless ``force``. Returns the paths."""
    from ..results.bandsfile import read
    bands_file = Path(bands_file)
    b = read(bands_file)
    for key in ("cell_bohr", "positions_bohr", "symbols", "masses_amu"):
        if f"structure/{key}" not in b:
            raise DfptmagError(f"{bands_file}: no structure/{key} (written by an older dfptmag?)")
    outdir = Path(outdir) if outdir is not None else bands_file.parent
    if fc_file is None:
        auto = bands_file.parent / "dispersion" / "fc"
        fc_file = auto if auto.is_file() else None
    elif not Path(fc_file).is_file():
        raise DfptmagError(f"{fc_file}: file not found (q2r.x force constants)")
    targets = [outdir / "band.yaml", outdir / "band.hdf5"] + ([outdir / "phonopy_params.yaml"] if fc_file else [])
    refuse_overwrite(targets, force)
    outdir.mkdir(parents=True, exist_ok=True)
    out = [write_band_yaml(b, targets[0], bands_file.name), write_band_hdf5(b, targets[1], bands_file.name)]
    if fc_file:
        out.append(write_phonopy_params(b, fc_file, targets[2]))
    return out
