"""Post-process one q-run directory: readers → kernels → a plain dict of results.

Streams one k-point at a time: reads ψ_k and ψ_{k+q} (collected files), verifies ph.x's
internal plane-wave order against its ψ buffer, maps every captured δψ onto Miller indices, and
accumulates Eq. 1 as a 2×2 matrix both as the cell integral (G = 0, overlaps only) and on the
real-space FFT grid. Then the Pauli decomposition, the charge oracle against fildrho, the
dynamical matrix, modes and RMS values.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from . import ONE_SIDED_NOTE
from .errors import InputFileError, UnsupportedError
from .io.planewaves import internal_order, match_miller, verify_order
from .io.qe_buffers import files_by_pool, open_pool_buffer, pool_ranges
from .io.qe_dyn import read_dyn
from .io.qe_grid import read_grid_record
from .io.qe_phsave import read_partial_dynmat, read_patterns
from .io.qe_wfc import read_wfc
from .io.qe_xml import QEData, read_data_file_schema
from .io.upf import read_upf_header
from .kernel import density_matrix as dm
from .kernel import modes as km
from .kernel import observables as obs
from .kernel.pauli import pauli_from_matrix
from .qrun import QRunFiles, locate, verify_captures

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AnalysisOptions:
    realspace: bool = True          # also build the real-space field on the FFT grid
    amplitude: str = "zero-point"   # or "fixed"
    amplitude_bohr: float = 0.01    # for amplitude="fixed"
    degeneracy_tol_cm1: float = 0.5
    progress: bool = False


def check_supported(x: QEData) -> int:
    """Refuse cases outside dfptmag's scope; return the number of occupied bands."""
    if not x.noncolin or not x.spinorbit:
        raise UnsupportedError(x.path, f"run without spin-orbit (noncolin={x.noncolin}, "
                                       f"lspinorb={x.spinorbit}, npol=1; QE {x.qe_version}): "
                                       "dfptmag needs a noncollinear spin-orbit run")
    if x.lsda:
        raise UnsupportedError(x.path, "spin-polarised (lsda) run: dfptmag handles non-magnetic "
                                       "noncollinear spin-orbit runs only")
    for sp, fname in x.pseudo_files.items():
        upf = x.path.parent / fname
        if upf.is_file():
            h = read_upf_header(upf)
            if h["pseudo_type"] in ("US", "USPP", "PAW"):
                raise UnsupportedError(upf, f"{h['pseudo_type']} pseudopotential for {sp}: "
                                            "ultrasoft and PAW are out of scope (the augmentation "
                                            "charge is not in ψ*δψ); use norm-conserving "
                                            "fully relativistic pseudopotentials")
    if x.occupations_kind.lower() != "fixed":
        raise UnsupportedError(x.path, f"occupations '{x.occupations_kind}': metals and smeared "
                                       "occupations are unsupported (dfptmag needs an insulator "
                                       "with occupations='fixed')")
    nocc = int(round(x.nelec))
    if abs(nocc - x.nelec) > 1e-6 or nocc > x.nbnd:
        raise UnsupportedError(x.path, f"nelec = {x.nelec} with nbnd = {x.nbnd}: not an insulator "
                                       "with fully occupied bands")
    occ = x.occupations[x.wk > 0]   # points of zero weight (k+q) carry no occupations
    if not (np.allclose(occ[:, :nocc], 1.0, atol=1e-6) and np.allclose(occ[:, nocc:], 0.0, atol=1e-6)):
        raise UnsupportedError(x.path, "partial occupations: metals are unsupported")
    if x.nprocs != x.npool:
        raise UnsupportedError(x.path, f"written by {x.nprocs} processes in {x.npool} pools: a "
                                       "plane-wave (R&G) parallel layout; rerun serial or with "
                                       "-nk equal to the number of processes")
    return nocc


def _full_dynmat(files: QRunFiles, patterns: np.ndarray, nirr: int):
    """Sum of ph.x's partial dynamical matrices (pattern basis) rotated to Cartesian, or None if
    some irrep is missing."""
    total = np.zeros_like(patterns)
    for irr in range(0, nirr + 1):
        path = files.phsave / f"dynmat.1.{irr}.xml"
        if not path.is_file():
            if irr == 0:
                return None, (f"modes need ph.x's irrep-0 run (recover, start_irr = last_irr = 0): "
                              f"{path} missing")
            return None, f"{path} missing"
        done, mat = read_partial_dynmat(path)
        if not done:
            return None, f"{path} not done"
        total += mat
    # rotate_pattern_add: D_cart(i, j) = Σ u(i, μ) D(μ, ν) conj(u(j, ν)); u(i, μ) = patterns[μ, i]
    return patterns.T @ total @ patterns.conj(), None


def analyze_qrun(root, options: AnalysisOptions | None = None) -> dict:
    options = options or AnalysisOptions()
    files = locate(root)
    notes = []
    unchecked = verify_captures(files)     # sizes and sha256 recorded at capture time
    if unchecked:
        notes.append(f"captures of irreps {unchecked} have no checksums (manifest written before "
                     "dfptmag recorded them): only fildrho guards them")
    x = read_data_file_schema(files.xml)
    nocc = check_supported(x)
    pats = read_patterns(files.patterns_xml)
    npat_total = len(pats.irreps)
    if pats.vectors.shape[1] != 3 * x.nat:
        raise InputFileError(pats.path, f"patterns of length {pats.vectors.shape[1]} for "
                                        f"{x.nat} atoms in {x.path}")
    nks = len(x.xk)
    if files.gamma:
        nksq, ikk, ikq = nks, np.arange(nks), np.arange(nks)
    else:
        if nks % 2 or np.any(x.wk[1::2] != 0):
            raise InputFileError(x.path, "k-point list is not ph.x's (k, k+q) list; expected the "
                                         "data-file-schema.xml of ph.x's only_wfc run")
        nksq, ikk, ikq = nks // 2, np.arange(0, nks, 2), np.arange(1, nks, 2)
        dq = x.xk[ikq] - x.xk[ikk]
        if not np.allclose(dq, files.q_tpiba[None, :], atol=1e-6):
            raise InputFileError(x.path, f"k+q − k = {dq[0]} differs from the manifest's q = "
                                         f"{files.q_tpiba}: ψ from a different run")
    weights = x.wk[ikk]
    if not np.isclose(weights.sum(), 1.0, atol=1e-8):
        raise InputFileError(x.path, f"k weights sum to {weights.sum()}, expected 1 "
                                     "(noncollinear convention)")
    if not files.psi_buffers:
        raise InputFileError(files.wfc_dir.parent, f"ph.x's ψ buffer {files.prefix}.wfc* not found")
    kunit = 1 if files.gamma else 2        # ph.x keeps k and k+q in one pool (setup_nscf)
    psi_buf = _open_psi_buffer(files, x, nocc, kunit)
    notes += psi_buf.notes

    # captured δψ per global pattern
    if not files.captures:
        raise InputFileError(files.root, "no captured δψ buffers listed in the manifest")
    pattern_ids, dwf_of, drho_of = [], {}, {}
    offset = {}
    start = 0
    for irr in sorted(set(pats.irreps)):
        offset[irr] = start
        start += pats.irreps.count(irr)
    for irr, cap in sorted(files.captures.items()):
        if irr not in offset:
            raise InputFileError(files.root, f"capture for irrep {irr}, but {pats.path} has "
                                             f"{max(pats.irreps)} irreps")
        npert = pats.irreps.count(irr)
        if not cap["dwf"]:
            raise InputFileError(files.root, f"no δψ files listed for irrep {irr}")
        by_pool = files_by_pool(cap["dwf"])
        npool = int(cap.get("npool") or max(by_pool) + 1)    # older manifests: from the names
        ranges = [(s // kunit, n // kunit) for s, n in pool_ranges(nks, npool, kunit)]
        buf = open_pool_buffer(by_pool, npool, ranges, npert, x.nbnd, 2, x.npwx,
                               f"δψ of irrep {irr}")
        notes += buf.notes
        for ip in range(npert):
            mu = offset[irr] + ip
            pattern_ids.append(mu)
            dwf_of[mu] = (buf, ip)
            drho_of[mu] = cap["drho"]
    pattern_ids.sort()
    npat = len(pattern_ids)
    shape = x.fft_grid
    g0 = np.zeros((npat, 2, 2), dtype=complex)
    field = np.zeros((npat, 2, 2) + shape, dtype=complex) if options.realspace else None

    it = range(nksq)
    if options.progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"k-points ({files.root.name})", unit="k", leave=False)
    for ik in it:
        jk, jq = int(ikk[ik]), int(ikq[ik])
        wk = read_wfc(files.wfc_dir / f"wfc{jk + 1}.dat", nbnd=nocc)
        _check_wfc(wk, x, jk, nocc)
        perm_k = internal_order(wk.miller, wk.xk / x.tpiba, x.bg)
        verify_order(psi_buf.record(jk), wk.coeffs, perm_k, psi_buf.where(jk))
        if jq == jk:
            wq, perm_q = wk, perm_k
        else:
            wq = read_wfc(files.wfc_dir / f"wfc{jq + 1}.dat", nbnd=nocc)
            _check_wfc(wq, x, jq, nocc)
            perm_q = internal_order(wq.miller, wq.xk / x.tpiba, x.bg)
            verify_order(psi_buf.record(jq), wq.coeffs, perm_q, psi_buf.where(jq))
        npw_q = wq.npw
        dpsi = np.empty((npat, nocc, 2, npw_q), dtype=complex)
        for n, mu in enumerate(pattern_ids):
            buf, ip = dwf_of[mu]
            rec = np.asarray(buf.record(ik, ip))
            dpsi[n][..., perm_q] = rec[:nocc, :, :npw_q]
        i_k, i_q = match_miller(wk.miller, wq.miller)
        g0 += dm.g0_contribution(wk.coeffs[..., i_k], dpsi[..., i_q], weights[ik])
        if field is not None:
            u = dm.periodic_part(wk.coeffs, wk.miller, shape, x.omega)
            for n in range(npat):      # one pattern at a time bounds memory to nocc·2 grids
                du = dm.periodic_part(dpsi[n:n + 1], wq.miller, shape, x.omega)
                field[n:n + 1] += dm.realspace_contribution(u, du, weights[ik])

    cell_integral = pauli_from_matrix(g0)                     # (npat, 4)
    result = {
        "qe_version": x.qe_version,
        "q_tpiba": files.q_tpiba,
        "q_crystal": files.q_tpiba @ np.linalg.inv(x.bg),
        "alat_bohr": x.alat, "cell_bohr": x.cell, "omega_bohr3": x.omega,
        "symbols": x.symbols, "positions_bohr": x.positions,
        "masses_amu": np.array([x.masses_amu[s] for s in x.symbols]),
        "nocc": nocc, "nk": nksq, "fft_grid": np.array(shape),
        "pattern_index": np.array(pattern_ids) + 1,
        "pattern_vectors": pats.vectors[pattern_ids],
        "pattern_matrix": g0,
        "pattern_cell_integral": cell_integral,
        "object": ONE_SIDED_NOTE,
        "input_notes": notes,
    }
    for note in notes:
        log.info("%s", note)
    if field is not None:
        comp = pauli_from_matrix(field)                        # (npat, 4, n1, n2, n3)
        result["pattern_field"] = comp
        # charge oracle: ph.x's drho = 2 × (one-sided charge)
        errs, errs0 = np.full(npat, np.nan), np.full(npat, np.nan)
        for n, mu in enumerate(pattern_ids):
            path = drho_of.get(mu)
            if path is None or not Path(path).is_file():
                continue
            drho = read_grid_record(path, mu + 1, shape)[0]
            ours = 2.0 * comp[n, 0]
            errs[n] = np.linalg.norm(ours - drho) / np.linalg.norm(drho)
            errs0[n] = abs(ours.mean() - drho.mean()) / max(abs(drho.mean()), 1e-300)
        result["drho_relative_error"] = errs
        result["drho_g0_relative_error"] = errs0
        result["cell_average_vs_g0"] = np.max(np.abs(comp.mean(axis=(2, 3, 4)) * x.omega - cell_integral))

    dyn, why = _full_dynmat(files, pats.vectors, max(pats.irreps))
    if npat < npat_total:
        why = f"modes need all {npat_total} patterns; {npat} computed"
    if dyn is None:
        log.warning("no modes for %s: %s", files.root, why)
        result["modes_missing_reason"] = why
        return result
    if km.is_time_reversal_invariant(result["q_crystal"]):
        # q ≡ −q (Γ, M): time reversal makes D(q) real in QE's phase convention (e^{-iq·R}, R
        # lattice vectors; D(−q) = D(q)*, D(q + G) = D(q)). ph.x imposes this too (symdynph_gq,
        # minus_q); we impose it and record the size of what it removes.
        result["dynmat_imag_removed"] = float(np.abs(dyn.imag).max() / np.abs(dyn).max())
        dyn = dyn.real.astype(complex)
    masses = result["masses_amu"]
    omega, e = km.diagonalize(dyn, masses)
    U = km.displacements(e, masses, omega, options.amplitude, options.amplitude_bohr)
    result["dynmat_cartesian"] = dyn
    result["frequency_ry"] = omega
    result["eigenvector"] = e.reshape(-1, x.nat, 3)
    result["displacement_bohr"] = U.reshape(-1, x.nat, 3)
    result["amplitude"] = options.amplitude
    result["amplitude_bohr"] = options.amplitude_bohr
    groups = km.degenerate_groups(km.ry_to_cm1(omega), options.degeneracy_tol_cm1)
    result["degenerate_group"] = groups
    if npat == npat_total:
        c = km.pattern_coefficients(pats.vectors, U)       # (nmode, npat)
        mode_ci = c @ cell_integral
        result["mode_cell_integral"] = mode_ci
        result["mode_rms"] = obs.rms(mode_ci)
        result["mode_rms_subspace"] = obs.subspace_totals(mode_ci, groups)
        result["mode_coefficients"] = c
    else:
        result["modes_missing_reason"] = why
    if files.fildyn is not None:
        d = read_dyn(files.fildyn)
        result["fildyn_freq_cm1"] = d.freq_cm1
    return result


def _open_psi_buffer(files: QRunFiles, x: QEData, nocc: int, kunit: int):
    """ph.x's ψ buffer, read with the pool layout of the ph.x run that wrote it last. That run's
    pool count is not recorded anywhere, so the candidates (the captures' pool counts, the
    number of buffer files, the XML's) are tried in turn: the first whose records fit and whose
    first point of every pool equals the collected ψ bitwise is it (the loop over k then
    verifies every point)."""
    nks = len(x.xk)
    by_pool = files_by_pool(files.psi_buffers)
    cands = []
    for n in ([c["npool"] for c in files.captures.values() if c.get("npool")]
              + [max(by_pool) + 1, x.npool, 1]):
        if n not in cands and n >= 1:
            cands.append(int(n))
    first = None
    for npool in cands:
        try:
            ranges = pool_ranges(nks, npool, kunit)
            buf = open_pool_buffer(by_pool, npool, ranges, 1, x.nbnd, 2, x.npwx, "ψ buffer",
                                   extra_ok=True)
            for s, n in ranges:
                if n:
                    w = read_wfc(files.wfc_dir / f"wfc{s + 1}.dat", nbnd=nocc)
                    _check_wfc(w, x, s, nocc)
                    verify_order(buf.record(s), w.coeffs, internal_order(w.miller, w.xk / x.tpiba, x.bg),
                                 buf.where(s))
            return buf
        except InputFileError as exc:
            first = first or exc
    if len(cands) > 1:
        raise InputFileError(first.path, f"{first.problem} (ψ buffer read as written by "
                                         f"{' or '.join(map(str, cands))} pools)")
    raise first


def _check_wfc(w, x: QEData, ik: int, nocc: int):
    if w.npol != 2:
        raise UnsupportedError(w.path, f"npol = {w.npol}: not a noncollinear spin-orbit run")
    if w.npw != x.npw[ik]:
        raise InputFileError(w.path, f"{w.npw} plane waves, but {x.path} says {x.npw[ik]} for "
                                     f"point {ik + 1}: ψ from a different run")
    if w.nbnd != x.nbnd:
        raise InputFileError(w.path, f"nbnd = {w.nbnd}, but {x.path} says {x.nbnd}: ψ from a "
                                     "different run")
    if not np.allclose(w.xk / x.tpiba, x.xk[ik], atol=1e-8):
        raise InputFileError(w.path, f"k = {w.xk / x.tpiba} (2π/alat) but {x.path} lists "
                                     f"{x.xk[ik]}: ψ from a different run")
