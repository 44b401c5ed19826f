"""The HDF5 results schema in one place: write (atomically), read, validate.

Layout, one group per q-point under ``/q/<label>``::

    q_crystal (3,)                       reciprocal-lattice crystal coordinates
    q_tpiba (3,)                         Cartesian, 2π/alat
    structure/{lattice_angstrom, scaled_positions, symbols, masses_amu}   as phonopy's band.hdf5
    structure/{cell_bohr, positions_bohr}                                 the same in bohr (QE)
    patterns/index (npat,)               ph.x pattern numbers (1-based)
    patterns/displacement (npat, nat, 3) complex unit pattern vectors (1 bohr)
    patterns/cell_integral (npat, 4)     complex ∫_Ω [δn, δm_x, δm_y, δm_z] d³r per bohr
    patterns/density_matrix (npat, 2, 2) complex ∫_Ω δñ^{σσ'} d³r per bohr
    patterns/field (npat, 4, n1, n2, n3) complex real-space amplitudes per bohr (optional)
    modes/frequency_meV, modes/frequency_THz, modes/frequency_cm1 (nmode,)
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

Every dataset carries ``units``, a plain unit string (``meV``, ``THz``, ``cm-1``, ``bohr``,
``angstrom``, ``amu``, ``muB``, ``e``, ``1`` for dimensionless numbers, ``""`` for text); the four
components [δn, δm_x, δm_y, δm_z] of one dataset have different units, so there ``units`` is an
array of four such strings. Prose goes to ``description``. Eigenvectors and displacements carry
``phase_convention``. The root carries ``schema`` (``dfptmag.h5/2``; files without it are
version 1, whose ``units`` were prose) and ``object`` (which quantity: the one-sided amplitude of
paper Eq. 1); ``modes`` carries the amplitude convention and the degeneracy tolerance.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..kernel import modes as km
from ._h5 import (PHASE_CONVENTION, PHASE_NOTE, U_CELL, U_FIELD, U_PER_BOHR,  # noqa: F401  (schema names)
                  create, dataset, write_structure)

_ds = dataset

SCHEMA = "dfptmag.h5/2"
COMPONENTS = "n, m_x, m_y, m_z; m_a = Tr(sigma_a dn) (QE convention; the paper's components are half)"
def _write_q(g, r: dict):
    g.attrs["object"] = r["object"]
    g.attrs["qe_version"] = r["qe_version"]
    g.attrs["components"] = COMPONENTS
    if r.get("input_notes"):
        g.attrs["input_notes"] = "\n".join(r["input_notes"])   # e.g. ignored trailing buffer records
    _ds(g, "q_crystal", r["q_crystal"], "1", "q in crystal coordinates of the reciprocal lattice vectors b_i")
    _ds(g, "q_tpiba", r["q_tpiba"], "2pi/alat", "q in Cartesian coordinates, units of 2 pi/alat (QE)")
    s = g.create_group("structure")
    write_structure(s, r["cell_bohr"], r["positions_bohr"], r["symbols"], r["masses_amu"])
    s.attrs["alat_bohr"] = r["alat_bohr"]
    s.attrs["omega_bohr3"] = r["omega_bohr3"]
    p = g.create_group("patterns")
    nat = len(r["symbols"])
    _ds(p, "index", r["pattern_index"], "1", "ph.x pattern number (1-based)")
    _ds(p, "displacement", r["pattern_vectors"].reshape(-1, nat, 3), "bohr",
        "unit displacement patterns of ph.x (1 bohr)", phase_convention=PHASE_CONVENTION,
        phase_note=PHASE_NOTE)
    _ds(p, "cell_integral", r["pattern_cell_integral"], U_PER_BOHR,
        "cell integrals [dn, dm_x, dm_y, dm_z] per unit cell, per bohr of pattern displacement",
        components=COMPONENTS)
    _ds(p, "density_matrix", r["pattern_matrix"], "e/bohr",
        "cell integral of the 2x2 density-matrix response, index [sigma, sigma'], per bohr of pattern displacement")
    if "pattern_field" in r:
        d = p.create_dataset("field", data=r["pattern_field"], compression="gzip", compression_opts=4,
                             shuffle=True)
        d.attrs["units"] = U_FIELD
        d.attrs["description"] = ("real-space amplitudes [dn (e/bohr^3), dm (muB/bohr^3)] per bohr of "
                                  "pattern displacement")
        d.attrs["components"] = COMPONENTS
        d.attrs["grid"] = "QE dense FFT grid, r = i1/n1 a1 + i2/n2 a2 + i3/n3 a3; periodic part (e^{iq.r} not included)"
    c = g.create_group("checks")
    if "drho_relative_error" in r:
        _ds(c, "drho_relative_error", r["drho_relative_error"], "1",
            "||2 Tr dn - drho(ph.x)|| / ||drho||: on the FFT grid, or without the field at fildrho's "
            "largest Fourier components (NaN: no fildrho)")
        _ds(c, "drho_g0_relative_error", r["drho_g0_relative_error"], "1",
            "|2 dn(G=0) - drho(G=0)| relative to the RMS of drho (cell average)")
    if "cell_average_vs_g0" in r:
        c.attrs["cell_average_vs_g0"] = r["cell_average_vs_g0"]
    if "charge_check" in r:
        c.attrs["charge_check"] = r["charge_check"]
        c.attrs["charge_tolerance"] = r["charge_tolerance"]
    if "time_odd_pattern_cell_integral" in r:
        _write_time_odd(g.create_group("time_odd"), r)
    if "frequency_ry" not in r:
        g.attrs["modes_missing_reason"] = r.get("modes_missing_reason", "")
        return
    m = g.create_group("modes")
    m.attrs["amplitude"] = km.amplitude_text(r["amplitude"], r["amplitude_bohr"])
    m.attrs["degenerate_tolerance_cm1"] = r["degeneracy_tol_cm1"]
    cm1 = km.ry_to_cm1(r["frequency_ry"])
    neg = "phonon frequency; negative = imaginary"
    _ds(m, "frequency_meV", km.ry_to_mev(r["frequency_ry"]), "meV", neg)
    _ds(m, "frequency_THz", km.ry_to_thz(r["frequency_ry"]), "THz", neg)
    _ds(m, "frequency_cm1", cm1, "cm-1", neg)
    _ds(m, "eigenvector", r["eigenvector"], "1", "mass-scaled, orthonormal eigenvectors of the dynamical "
        "matrix, [mode, atom, xyz]", phase_convention=PHASE_CONVENTION, phase_note=PHASE_NOTE)
    _ds(m, "displacement_bohr", r["displacement_bohr"], "bohr", "complex mode displacement U at the stated "
        "amplitude", phase_convention=PHASE_CONVENTION, phase_note=PHASE_NOTE)
    _ds(m, "degenerate_group", r["degenerate_group"], "1",
        f"modes closer than {r['degeneracy_tol_cm1']} cm-1 share a group")
    _ds(c, "dynmat_cartesian", r["dynmat_cartesian"], "Ry/bohr^2", "ph.x's dynamical matrix (force "
        "constants, not mass-scaled), Cartesian, [3 nat, 3 nat]")
    if "dynmat_imag_removed" in r:
        c.attrs["dynmat_imag_removed"] = r["dynmat_imag_removed"]
        c.attrs["dynmat_imag_removed_note"] = ("q = -q modulo G: D(q) made real (time reversal, as ph.x's "
                                               "symdynph_gq); value = max|Im D|/max|D| before")
    if "fildyn_freq_cm1" in r:
        _ds(c, "frequency_minus_phx_cm1", cm1 - r["fildyn_freq_cm1"], "cm-1",
            "dfptmag's frequencies minus ph.x's (fildyn)")
    if "mode_cell_integral" in r:
        at = "per unit cell at the stated amplitude"
        _ds(m, "cell_integral", r["mode_cell_integral"], U_CELL,
            f"complex cell integrals [dn, dm_x, dm_y, dm_z] {at}", components=COMPONENTS)
        _ds(m, "rms", r["mode_rms"], U_CELL, f"RMS over a period, |cell_integral|/sqrt(2), {at}",
            components=COMPONENTS)
        _ds(m, "rms_inplane", r["mode_rms_inplane"], "muB", f"RMS in-plane magnetization sqrt(rms_x^2 + rms_y^2) {at}")
        _ds(m, "rms_outofplane", r["mode_rms_outofplane"], "muB", f"RMS out-of-plane magnetization |rms_z| {at}")
        _ds(m, "rms_subspace", r["mode_rms_subspace"], U_CELL,
            f"basis-independent RMS totals of each mode's degenerate subspace {at}", components=COMPONENTS)
        _ds(m, "pattern_coefficients", r["mode_coefficients"], "bohr",
            "U_nu = sum_mu c[nu, mu] u_mu, so any pattern quantity maps to modes linearly")
    else:
        g.attrs["modes_missing_reason"] = r.get("modes_missing_reason", "")


def _per_ry(units):
    return np.array([f"{u}/Ry" for u in units], dtype=h5py.string_dtype())


def _write_time_odd(t, r) -> None:
    """The ``time_odd`` group: the magnetization a moving lattice carries (first order in the
    lattice velocity; docs/theory.md), beside the one-sided amplitude of the other groups."""
    st = r["time_odd_settings"]
    t.attrs["object"] = ("time-odd spin response: delta m_odd = -2 i hbar m[X_q] * velocity, "
                         "X_q = sum_k w_k sum_n u_kn^* chi_{k+q,n}, chi_n = sum_m |m><m|dpsi_n>/(e_n - e_m); "
                         "in phase with the lattice velocity; spin only (no orbital magnetization)")
    t.attrs["empty_bands"] = st["empty_bands"]
    t.attrs["closure"] = st["closure"]
    t.attrs["gap_ry"] = st["gap_ry"]
    t.attrs["orthogonality"] = st["orthogonality"]
    t.attrs["orthogonality_note"] = "max |<psi_occ(k+q)|m>| between the q-run's occupied states and the empty states"
    _ds(t, "pattern_cell_integral", r["time_odd_pattern_cell_integral"], _per_ry(U_PER_BOHR),
        "cell integrals of X_q [n, m_x, m_y, m_z] per bohr of pattern displacement, per Ry", components=COMPONENTS)
    _ds(t, "pattern_per_velocity", r["time_odd_pattern_per_velocity"], "muB s/m",
        "complex amplitude of [dm_x, dm_y, dm_z]_odd per cell per unit pattern velocity (m/s), "
        "time reversal assumed (the -q partner doubles the spin)")
    _ds(t, "residual_norm", r["time_odd_residual_norm"], "1",
        "||dpsi - P_M dpsi|| / ||dpsi||: the part of dpsi outside the computed empty states")
    _ds(t, "completeness_error", r["time_odd_completeness_error"], "1",
        "unit weights in place of 1/(e_n - e_m): |Eq.1(P_M dpsi) - Eq.1(dpsi)| / |Eq.1(dpsi)|, G = 0")
    if "time_odd_pattern_field" in r:
        d = t.create_dataset("pattern_field", data=r["time_odd_pattern_field"], compression="gzip",
                             compression_opts=4, shuffle=True)
        d.attrs["units"] = _per_ry(U_FIELD)
        d.attrs["description"] = "X_q on the FFT grid per bohr of pattern displacement, per Ry"
        d.attrs["components"] = COMPONENTS
    if "time_odd_mode_cell_integral" in r:
        at = "per unit cell at each mode's frequency and stated amplitude (NaN: no positive frequency)"
        _ds(t, "mode_peak", r["time_odd_mode_cell_integral"], "muB",
            f"complex peak [dm_x, dm_y, dm_z]_odd = -2 i hbar omega m[X U] {at}")
        _ds(t, "mode_rms_inplane", r["time_odd_mode_rms_inplane"], "muB", f"RMS in-plane time-odd magnetization {at}")
        _ds(t, "mode_rms_outofplane", r["time_odd_mode_rms_outofplane"], "muB",
            f"RMS out-of-plane time-odd magnetization {at}")


def write(path, results: dict[str, dict], failures: dict[str, str] | None = None) -> Path:
    """Write {label: analysis result} to ``path`` atomically (temp file + rename); ``failures``
    ({label: error}) of q-points that could not be analyzed go to the ``failures`` group's
    attributes, and the root attribute ``complete`` says whether there were any."""
    path = Path(path)
    with create(path, SCHEMA) as f:
        qg = f.create_group("q")
        for label, r in results.items():
            _write_q(qg.create_group(label), r)
        f.attrs["complete"] = not failures
        if failures:
            fg = f.create_group("failures")
            fg.attrs["note"] = "q-points whose analysis failed: label -> error"
            for label, msg in failures.items():
                fg.attrs[label] = msg
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
