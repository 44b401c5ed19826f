"""``bands.h5`` as a pymatgen ``PhononBandStructureSymmLine``: pymatgen's plotters
(``PhononBSPlotter``), its JSON (``as_dict``; sumo and the Materials Project tools read it) and
everything built on pymatgen's phonon objects.

What is passed:

- the structure (lattice in Å, species, fractional coordinates exactly as in the run);
- the q-points of every path segment, a corner point twice (end of one segment, start of the
  next), which is how pymatgen's ``SymmLine`` recognises its branches; frequencies in THz;
- ``labels_dict`` {label: reduced coordinates} of the special points;
- eigendisplacements (nband, nq, nat, 3) = e_κ^QE / √m_κ (amu^-1/2): pymatgen's eigendisplacement
  is exp(2πi q·x_κ) e_κ^phonopy / √m_κ (``pymatgen.io.phonopy.eigvec_to_eigdispl``), and since
  e^phonopy = exp(−2πi q·x_κ) e^QE (see ``dfptmag.export.phonopy``) it carries QE's lattice-vector
  phase: u(Rκ) = Re[A · eigendisplacement_κ · e^{i(q·R − ωt)}].

pymatgen's ``SymmLine`` starts a new branch, with zero length, whenever two labelled q-points
follow each other; a segment whose two labelled ends are neighbours on the path (no computed
point in between, e.g. M–K of a short path) would be drawn with zero length and its end label
lost (a Γ–M–K–Γ path was drawn as Γ–K–K–K–Γ, M missing). Such a segment gets one unlabelled point
at ``NUDGE`` (fractional units) before its end point, carrying the end point's frequencies and
eigendisplacements: the plotter then draws the straight line between the two computed ends, as
for any two-point segment, with the segment's true length to 1e-3 of a reciprocal-lattice unit.
Every special point is therefore labelled once per segment end, and ``PhononBSPlotter`` shows
each label of the path in order.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .phonopy import THZ_PER_MEV, segments, structure

if TYPE_CHECKING:
    from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine

log = logging.getLogger(__name__)

NUDGE = 1e-3    # fractional distance of the extra point before the end of a two-point segment


def to_pymatgen(bands) -> "PhononBandStructureSymmLine":
    """A pymatgen ``PhononBandStructureSymmLine`` (THz) from a bands.h5 path (or a dict read by
    ``dfptmag.results.bandsfile.read``); ``PhononBSPlotter(to_pymatgen(f)).get_plot()`` draws
    it with every label of the path."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine

    if not isinstance(bands, dict):
        from ..results.bandsfile import read
        bands = read(bands)
    b = bands
    cell, frac, symbols, masses = structure(b)
    st = Structure(Lattice(cell), symbols, frac, coords_are_cartesian=False, to_unit_cell=False)
    q = np.asarray(b["path/q_crystal"], dtype=float)
    segs = segments(list(zip(b["path/label_index"], b["path/labels"])), b["path/breaks"], len(q))
    idx, qs = [], []
    for i0, i1, l0, l1 in segs:
        for i in range(i0, i1 + 1):
            if i == i1 and i1 - i0 == 1 and l0 is not None and l1 is not None:
                d = q[i1] - q[i0]
                idx.append(i1)                      # the nudged copy of the end point
                qs.append(q[i1] - NUDGE * d / np.linalg.norm(d))
            idx.append(i)
            qs.append(q[i])
    idx = np.array(idx)
    labels = {}
    for i, lab in zip(b["path/label_index"], b["path/labels"]):
        labels.setdefault(str(lab), q[int(i)].tolist())
    thz = np.asarray(b["modes/frequency_meV"], dtype=float)[idx] * THZ_PER_MEV      # (nq', nmode)
    e = np.asarray(b["modes/eigenvector"])[idx] / np.sqrt(masses)[None, None, :, None]
    return PhononBandStructureSymmLine(
        qpoints=np.array(qs), frequencies=thz.T, lattice=st.lattice.reciprocal_lattice,
        eigendisplacements=e.transpose(1, 0, 2, 3), labels_dict=labels,
        coords_are_cartesian=False, structure=st)


def write_json(bands_file, path) -> Path:
    """pymatgen's JSON of the band structure (``as_dict``), written atomically."""
    import json

    from .phonopy import _atomic
    bs = to_pymatgen(bands_file)
    text = json.dumps(bs.as_dict())
    path = Path(path)
    return _atomic(path, lambda p: p.write_text(text))
