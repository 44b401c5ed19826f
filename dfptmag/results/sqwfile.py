"""``sqw_<kind>.h5``: the structure factor S^{αβ}(Q, ω) of paper Eq. 5 with its axes and units.

Layout::

    q_crystal (nQ, 3)           Q in reciprocal-lattice units (in-plane h, k; l unused)
    q_cartesian (nQ, 3)         Cartesian Q, 1/angstrom (2π included); the z column is Q_z
    distance (nQ,)              path: cumulative |ΔQ|, 1/angstrom; ticks/index, ticks/label
    plane/qx, plane/qy          map: the Cartesian axes of the n×n plane (Q index = ix·n + iy)
    energy (nE,)                meV (negative: anti-Stokes, energy gain of the probe)
    S (nQ, nE, 4, 4)            complex, per meV per unit cell, index [α, β], α, β ∈ n, x, y, z;
                                units e^2/meV (nn), e*muB/meV (n-spin), muB^2/meV (spin-spin)
    channels/<name> (nQ, nE)    real channels written for the figures, with their units
    modes/frequency_meV (nQ, nmode), modes/amplitude (nQ, nmode, 4) [e, muB, muB, muB]
    lines/energy (nQ, 2 nmode) meV, lines/weight (nQ, 2 nmode, 4, 4): Stokes lines first, then
                                anti-Stokes; the δ-function weights before broadening
    modes/kept (nQ, nmode)      False: below omega_min (no weight)

Root attributes: schema, object (Eq. 5, the one-sided amplitude), temperature_K, resolution,
qz_inv_angstrom, source, conventions.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ._h5 import U_CELL, create, dataset

SCHEMA = "dfptmag-sqw.h5/1"
CONVENTIONS = ("S^{ab}(Q,w) = sum_nu [1+n_B] A^a A^b* delta(w-w_nu) + n_B A^a* A^b delta(w+w_nu) (paper Eq. 5); "
               "A^a_nu(Q) = int exp(-iQ.r) dn^a_nu(r) d^3r per unit cell at one phonon quantum "
               "U = sqrt(hbar/2w) e/sqrt(M); components n (e), m_a = Tr(sigma_a dn) (muB; the paper's are half); "
               "Debye-Waller factor not included; phase convention: QE's lattice-vector phase")


def write(res, path, channels=("inplane", "outofplane", "neutron")) -> Path:
    """Write a :class:`dfptmag.jobs.sqw.StructureFactor` atomically, with ``channels`` as real maps."""
    path = Path(path)
    with create(path, SCHEMA) as f:
        f.attrs["object"] = ("dynamic structure factor of paper Eq. 5 from " + str(f.attrs["object"])
                             if getattr(res, "sector", "one-sided") == "one-sided" else
                             "dynamic structure factor of the time-odd spin response (physical spin sector; "
                             "not the one-sided amplitude)")
        f.attrs["sector"] = getattr(res, "sector", "one-sided")
        f.attrs["kind"] = res.kind
        f.attrs["temperature_K"] = res.temperature_k
        f.attrs["resolution"] = f"{res.shape}, FWHM(E) = {res.fwhm!r} meV (polynomial in |E| if a list)"
        f.attrs["qz_inv_angstrom"] = res.qz
        f.attrs["omega_min_meV"] = res.omega_min_mev
        f.attrs["source"] = res.source
        f.attrs["conventions"] = CONVENTIONS
        f.attrs["description"] = res.describe()
        dataset(f, "q_crystal", res.q_crystal, "1", "Q in reciprocal-lattice units")
        dataset(f, "q_cartesian", res.q_cart, "1/angstrom", "Cartesian Q (2 pi included); z column = Q_z")
        if res.distance is not None:
            dataset(f, "distance", res.distance, "1/angstrom", "cumulative path length")
            t = f.create_group("ticks")
            t.create_dataset("index", data=np.array([i for i, _ in res.ticks], int))
            t.create_dataset("label", data=np.array([lab for _, lab in res.ticks], dtype=h5py.string_dtype()))
        if res.plane_axes is not None:
            p = f.create_group("plane")
            dataset(p, "qx", res.plane_axes[0], "1/angstrom", "Cartesian Q_x axis (first index)")
            dataset(p, "qy", res.plane_axes[1], "1/angstrom", "Cartesian Q_y axis (second index)")
        dataset(f, "energy", res.energies, "meV", "energy transfer (negative: anti-Stokes)")
        d = f.create_dataset("S", data=res.S, compression="gzip", compression_opts=4, shuffle=True)
        d.attrs["units"] = np.array([["e^2/meV"] + ["e*muB/meV"] * 3] + [["e*muB/meV"] + ["muB^2/meV"] * 3] * 3,
                                    dtype=h5py.string_dtype())
        d.attrs["axes"] = "Q, energy, alpha, beta (n, x, y, z)"
        d.attrs["description"] = "S^{alpha beta}(Q, omega) per unit cell, Hermitian in (alpha, beta)"
        c = f.create_group("channels")
        for name in channels:
            dataset(c, name, res.channel(name), res.units(name), f"channel {name}")
        m = f.create_group("modes")
        dataset(m, "frequency_meV", res.frequency_meV, "meV", "mode frequencies at each Q")
        dataset(m, "amplitude", res.amplitude, U_CELL, "A^alpha_nu(Q) at one phonon quantum")
        dataset(m, "kept", res.kept, "", "False: below omega_min, no weight")
        g = f.create_group("lines")
        dataset(g, "energy", res.line_energy, "meV", "Stokes lines (+w) first, then anti-Stokes (-w)")
        dataset(g, "weight", res.line_weight, "", "delta-function weights [alpha, beta], units of S times meV")
    return path


def read(path) -> dict:
    """Every dataset as a flat dict {'S': array, 'modes/amplitude': …, 'attrs': {...}}."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = dict(f.attrs)
    return out
