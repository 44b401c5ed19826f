"""The HDF5 results schema in one place: write (atomically), read, validate.

Layout, one group per q-point under ``/q/<label>``::

    q_crystal (3,)                       reciprocal-lattice crystal coordinates
    q_tpiba (3,)                         Cartesian, 2π/alat
    structure/{cell_bohr, positions_bohr, symbols, masses_amu}
    patterns/index (npat,)               ph.x pattern numbers (1-based)
    patterns/displacement (npat, nat, 3) complex unit pattern vectors (1 bohr)
    patterns/cell_integral (npat, 4)     complex ∫_Ω [δn, δm_x, δm_y, δm_z] d³r per bohr
    patterns/density_matrix (npat, 2, 2) complex ∫_Ω δñ^{σσ'} d³r per bohr
    patterns/field (npat, 4, n1, n2, n3) complex real-space amplitudes per bohr (optional)
    modes/frequency_meV, modes/frequency_cm1 (nmode,)
    modes/eigenvector (nmode, nat, 3)    complex, mass-scaled, orthonormal
    modes/displacement_bohr (nmode, nat, 3) complex, at the stated amplitude
    modes/cell_integral (nmode, 4)       complex, at the stated amplitude
    modes/rms (nmode, 4)                 |cell_integral|/√2
    modes/rms_inplane, modes/rms_outofplane (nmode,)
    modes/rms_subspace (nmode, 4)        basis-independent totals of the degenerate subspace
    modes/degenerate_group (nmode,)
    modes/pattern_coefficients (nmode, npat) complex c[ν, μ] with U_ν = Σ_μ c[ν, μ] u_μ
    checks/drho_relative_error (npat,)   ‖2 Tr δñ − drho‖/‖drho‖ on the FFT grid (NaN: no fildrho)
    checks/drho_g0_relative_error (npat,)
    checks/frequency_minus_phx_cm1 (nmode,)

Every dataset carries a ``units`` attribute; the root and each q group carry ``object`` (which
quantity: the one-sided amplitude of paper Eq. 1) and the amplitude convention.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from . import ONE_SIDED_NOTE, __version__
from .kernel import modes as km
from .kernel import observables as obs

U_PAT = "electrons (n) and Bohr magnetons (m_x, m_y, m_z) per unit cell, per bohr of pattern displacement"
U_FIELD = "electrons/bohr^3 (n) and Bohr magnetons/bohr^3 (m) per bohr of pattern displacement"


def _ds(g, name, data, units, **attrs):
    d = g.create_dataset(name, data=data)
    d.attrs["units"] = units
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


def amplitude_text(kind: str, amplitude_bohr: float) -> str:
    if kind == "zero-point":
        return "zero-point amplitude: U = sqrt(hbar/(2 omega)) e/sqrt(M) (one phonon quantum)"
    return f"fixed amplitude: |U| = {amplitude_bohr} bohr over all atoms"


def _write_q(g, r: dict):
    g.attrs["object"] = r["object"]
    g.attrs["qe_version"] = r["qe_version"]
    g.attrs["components"] = "n, m_x, m_y, m_z; m_a = Tr(sigma_a dn) (QE convention; paper's components are half)"
    if r.get("input_notes"):
        g.attrs["input_notes"] = "\n".join(r["input_notes"])   # e.g. ignored trailing buffer records
    _ds(g, "q_crystal", r["q_crystal"], "reciprocal lattice vectors")
    _ds(g, "q_tpiba", r["q_tpiba"], "2pi/alat (Cartesian)")
    s = g.create_group("structure")
    _ds(s, "cell_bohr", r["cell_bohr"], "bohr")
    _ds(s, "positions_bohr", r["positions_bohr"], "bohr")
    _ds(s, "symbols", np.array(r["symbols"], dtype="S"), "")
    _ds(s, "masses_amu", r["masses_amu"], "amu")
    s.attrs["alat_bohr"] = r["alat_bohr"]
    s.attrs["omega_bohr3"] = r["omega_bohr3"]
    p = g.create_group("patterns")
    nat = len(r["symbols"])
    _ds(p, "index", r["pattern_index"], "ph.x pattern number (1-based)")
    _ds(p, "displacement", r["pattern_vectors"].reshape(-1, nat, 3), "bohr (unit pattern)")
    _ds(p, "cell_integral", r["pattern_cell_integral"], U_PAT)
    _ds(p, "density_matrix", r["pattern_matrix"], "electrons per unit cell per bohr; index [sigma, sigma']")
    if "pattern_field" in r:
        d = p.create_dataset("field", data=r["pattern_field"], compression="gzip", compression_opts=4,
                             shuffle=True)
        d.attrs["units"] = U_FIELD
        d.attrs["grid"] = "QE dense FFT grid, r = i1/n1 a1 + i2/n2 a2 + i3/n3 a3; periodic part (e^{iq.r} not included)"
    c = g.create_group("checks")
    if "drho_relative_error" in r:
        _ds(c, "drho_relative_error", r["drho_relative_error"], "dimensionless")
        _ds(c, "drho_g0_relative_error", r["drho_g0_relative_error"], "dimensionless")
        c.attrs["cell_average_vs_g0"] = r["cell_average_vs_g0"]
    if "frequency_ry" not in r:
        g.attrs["modes_missing_reason"] = r.get("modes_missing_reason", "")
        return
    m = g.create_group("modes")
    m.attrs["amplitude"] = amplitude_text(r["amplitude"], r["amplitude_bohr"])
    m.attrs["degenerate_tolerance_cm1"] = 0.5
    cm1 = km.ry_to_cm1(r["frequency_ry"])
    _ds(m, "frequency_meV", km.ry_to_mev(r["frequency_ry"]), "meV (negative = imaginary)")
    _ds(m, "frequency_cm1", cm1, "cm^-1 (negative = imaginary)")
    _ds(m, "eigenvector", r["eigenvector"], "dimensionless (mass-scaled, orthonormal)")
    _ds(m, "displacement_bohr", r["displacement_bohr"], "bohr")
    _ds(m, "degenerate_group", r["degenerate_group"], "index")
    _ds(c, "dynmat_cartesian", r["dynmat_cartesian"], "Ry/bohr^2")
    if "dynmat_imag_removed" in r:
        c.attrs["dynmat_imag_removed"] = r["dynmat_imag_removed"]
        c.attrs["dynmat_imag_removed_note"] = ("q = -q modulo G: D(q) made real (time reversal, as ph.x's "
                                               "symdynph_gq); value = max|Im D|/max|D| before")
    if "fildyn_freq_cm1" in r:
        _ds(c, "frequency_minus_phx_cm1", cm1 - r["fildyn_freq_cm1"], "cm^-1")
    if "mode_cell_integral" in r:
        ci = r["mode_cell_integral"]
        units = U_PAT.replace("per bohr of pattern displacement", "at the stated amplitude")
        _ds(m, "cell_integral", ci, units)
        _ds(m, "rms", r["mode_rms"], units + "; RMS over a period = |X|/sqrt(2)")
        inp, outp = obs.inplane_outofplane(ci)
        _ds(m, "rms_inplane", inp, "Bohr magnetons per unit cell")
        _ds(m, "rms_outofplane", outp, "Bohr magnetons per unit cell")
        _ds(m, "rms_subspace", r["mode_rms_subspace"], units)
        _ds(m, "pattern_coefficients", r["mode_coefficients"],
            "bohr; U_nu = sum_mu c[nu, mu] u_mu, so any pattern quantity maps to modes linearly")
    else:
        g.attrs["modes_missing_reason"] = r.get("modes_missing_reason", "")


def write(path, results: dict[str, dict]) -> Path:
    """Write {label: analysis result} to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["dfptmag_version"] = __version__
            f.attrs["object"] = ONE_SIDED_NOTE
            qg = f.create_group("q")
            for label, r in results.items():
                _write_q(qg.create_group(label), r)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_q(path, label: str) -> dict:
    """Every dataset of one q group as a flat dict {'patterns/cell_integral': array, ...}."""
    out = {}
    with h5py.File(path, "r") as f:
        g = f["q"][label]
        g.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = dict(g.attrs)
    return out


def labels(path) -> list[str]:
    with h5py.File(path, "r") as f:
        return list(f["q"].keys())
