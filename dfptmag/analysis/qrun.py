"""Post-process one q-run directory: readers → kernels → a plain dict of results.

Streams one k-point at a time: reads ψ_k and ψ_{k+q} (collected files), verifies ph.x's
internal plane-wave order against its ψ buffer, maps every captured δψ onto Miller indices, and
accumulates Eq. 1 as a 2×2 matrix both as the cell integral (G = 0, overlaps only) and on the
real-space FFT grid. Then the Pauli decomposition, the charge oracle against fildrho, the
dynamical matrix, modes and RMS values. :func:`analyze_qrun` runs the six named stages in order;
each takes and returns plain objects, so a caller can stop after any of them.
"""
from __future__ import annotations

import dataclasses
import logging
import mmap
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import ONE_SIDED_NOTE
from ..errors import InputFileError, UnsupportedError
from ..io.planewaves import internal_order, match_miller, verify_order
from ..io.qe_buffers import files_by_pool, open_pool_buffer, pool_ranges
from ..io.qe_dyn import read_dyn
from ..io.qe_grid import read_grid_record
from ..io.qe_phsave import read_partial_dynmat, read_patterns
from ..io.qe_wfc import read_wfc
from ..io.qe_xml import QEData, read_data_file_schema
from ..io.upf import read_upf_header
from ..kernel import density_matrix as dm
from ..kernel import modes as km
from ..kernel import observables as obs
from ..kernel.pauli import pauli_from_matrix
from ..io.qrun_dir import QRunFiles, check_manifest_types, locate, verify_captures
from ..results.qresult import QRunResult

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AnalysisOptions:
    realspace: bool = True          # also build the real-space field on the FFT grid
    amplitude: str = "zero-point"   # or "fixed"
    amplitude_bohr: float = 0.01    # for amplitude="fixed"
    degeneracy_tol_cm1: float = km.DEGENERACY_TOL_CM1
    progress: bool = False
    # The charge oracle (fildrho = 2 Tr δñ, exact algebra for a norm-conserving insulator; measured
    # ≤ 4e-16 on the grid and ≤ 1e-12 at G = 0) is enforced whenever a fildrho copy exists:
    # above this relative error the analysis stops, naming the pattern and the files.
    charge_tolerance: float = 1e-6
    allow_charge_mismatch: bool = False   # write the numbers anyway; recorded in the output


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
    if x.nprocs != x.npool:
        raise UnsupportedError(x.path, f"written by {x.nprocs} processes in {x.npool} pools: a "
                                       "plane-wave (R&G) parallel layout; rerun serial or with "
                                       "-nk equal to the number of processes")
    kind = x.occupations_kind.lower()
    if kind == "smearing":
        # A metal: ph.x's δψ already carries the occupations (de Gironcoli's metallic projector
        # in orthogonalize), its density sums ψ*δψ over the bands below ε_F + x·degauss with
        # the k weight alone, and the δψ columns above that window are exact zeros: so Eq. 1
        # over every band is ph.x's own sum, fildrho stays the oracle (at Γ the Fermi shift is
        # already in δψ as in fildrho).
        return int(x.nbnd)
    if kind != "fixed":
        raise UnsupportedError(x.path, f"occupations '{x.occupations_kind}': dfptmag handles "
                                       "occupations='fixed' (insulators) and 'smearing' (metals)")
    nocc = int(round(x.nelec))
    if abs(nocc - x.nelec) > 1e-6 or nocc > x.nbnd:
        raise UnsupportedError(x.path, f"nelec = {x.nelec} with nbnd = {x.nbnd}: not an insulator "
                                       "with fully occupied bands")
    occ = x.occupations[x.wk > 0]   # points of zero weight (k+q) carry no occupations
    if not (np.allclose(occ[:, :nocc], 1.0, atol=1e-6) and np.allclose(occ[:, nocc:], 0.0, atol=1e-6)):
        raise UnsupportedError(x.path, "partial occupations with occupations='fixed': run a metal "
                                       "with occupations='smearing'")
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


def analyze_qrun(root, options: AnalysisOptions | None = None) -> QRunResult:
    """One q-run directory → its analysis (:class:`dfptmag.results.qresult.QRunResult`: typed
    quantities, also a mapping of those present; the dfptmag.h5 group, see ``results.qfile``), in
    named stages: the manifest and capture records (:func:`open_qrun`), the ground state and
    ph.x's k/k+q list (:func:`read_ground_state`), the δψ captures per pattern
    (:func:`open_captures`), Eq. 1 accumulated over k (:func:`accumulate_eq1`), the Pauli
    decomposition and the charge oracle (:func:`cell_integrals_and_oracle`), the modes and their
    RMS (:func:`modes_and_rms`).

    Irreps whose δψ was contracted and discarded (``contracted`` in the manifest, see
    :mod:`dfptmag.analysis.contract`) come from their contracted files instead of stages 3–4;
    when every irrep is contracted, ψ is not read at all (the q's ph.x scratch may be gone)."""
    options = options or AnalysisOptions()
    t_start = time.perf_counter()
    tm = defaultdict(float)         # wall seconds per stage (result["timing_s"], benchmarks)
    files, notes = open_qrun(root)
    raw = {i: c for i, c in files.captures.items() if not c.get("contracted")}
    gs = read_ground_state(files, with_psi=bool(raw))     # scope checks first (spin-orbit, ...)
    if not files.captures:
        raise InputFileError(files.root, "no captured δψ buffers listed in the manifest")
    notes += gs.notes
    if raw:
        caps = open_captures(dataclasses.replace(files, captures=raw), gs)
        notes += caps.notes
        acc = accumulate_eq1(files, gs, caps, options, tm)
    else:
        caps, acc = Captures([], {}, {}, {}, []), Accumulated(np.zeros((0, 2, 2), complex), None, None)
    contracted = {i: c for i, c in files.captures.items() if c.get("contracted")}
    if contracted:
        caps, acc = add_contracted(files, gs, contracted, caps, acc, options, tm)
    result = cell_integrals_and_oracle(files, gs, caps, acc, options, notes, tm)
    modes_and_rms(result, files, gs, len(caps.pattern_ids), options)
    result["timing_s"] = dict(tm, total=time.perf_counter() - t_start)
    return result


def open_qrun(root) -> tuple[QRunFiles, list[str]]:
    """Stage 1: the manifest (types checked), the files it names, and the capture records (size
    and sha256 at capture time) verified before any number is computed."""
    check_manifest_types(root)
    try:
        files = locate(root)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputFileError(Path(root) / "dfptmag-q.json", f"malformed manifest ({type(exc).__name__}: "
                                                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    notes = []
    unchecked = verify_captures(files)
    if unchecked:
        notes.append(f"captures of irreps {unchecked} have no checksums (manifest written before "
                     "dfptmag recorded them): only fildrho guards them")
    return files, notes


@dataclasses.dataclass
class GroundState:
    """What stage 2 reads: QE's data file, the occupied bands, ph.x's patterns, the (k, k+q)
    pairing of ph.x's k list and the ψ buffer."""
    x: QEData
    nocc: int
    pats: object            # io.qe_phsave.Patterns
    nks: int                # k-points in the list (k and k+q counted separately)
    nksq: int               # k-points of the sum
    ikk: np.ndarray
    ikq: np.ndarray
    weights: np.ndarray
    kunit: int              # ph.x keeps k and k+q in one pool (setup_nscf)
    psi_buf: object
    notes: list


def read_ground_state(files: QRunFiles, with_psi: bool = True) -> GroundState:
    """Stage 2: data-file-schema.xml (scope checked: noncollinear SOC insulator, norm-conserving),
    patterns.1.xml, the (k, k+q) list of ph.x's only_wfc run checked against the manifest's q,
    the k weights, and (``with_psi``) ph.x's ψ buffer."""
    x = read_data_file_schema(files.xml)
    nocc = check_supported(x)
    pats = read_patterns(files.patterns_xml)
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
    kunit = 1 if files.gamma else 2
    if not with_psi:
        return GroundState(x, nocc, pats, nks, nksq, ikk, ikq, weights, kunit, None, [])
    if not files.psi_buffers:
        raise InputFileError(files.wfc_dir.parent, f"ph.x's ψ buffer {files.prefix}.wfc* not found")
    psi_buf = _open_psi_buffer(files, x, nocc, kunit)
    return GroundState(x, nocc, pats, nks, nksq, ikk, ikq, weights, kunit, psi_buf, list(psi_buf.notes))


@dataclasses.dataclass
class Captures:
    """Stage 3: the captured δψ per global pattern μ (0-based, sorted)."""
    pattern_ids: list[int]
    dwf_of: dict            # μ → (pool buffer, index of the perturbation in its irrep)
    drho_of: dict           # μ → fildrho copy of its irrep (or None)
    dwf_paths: dict         # μ → the δψ files (for messages)
    notes: list


def open_captures(files: QRunFiles, gs: GroundState) -> Captures:
    """Stage 3: every captured irrep's δψ buffers (pool-aware, memory-mapped), indexed by the
    global pattern number."""
    pats, x = gs.pats, gs.x
    if not files.captures:
        raise InputFileError(files.root, "no captured δψ buffers listed in the manifest")
    pattern_ids, dwf_of, drho_of, dwf_paths, notes = [], {}, {}, {}, []
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
        ranges = [(s // gs.kunit, n // gs.kunit) for s, n in pool_ranges(gs.nks, npool, gs.kunit)]
        buf = open_pool_buffer(by_pool, npool, ranges, npert, x.nbnd, 2, x.npwx,
                               f"δψ of irrep {irr}")
        notes += buf.notes
        for ip in range(npert):
            mu = offset[irr] + ip
            pattern_ids.append(mu)
            dwf_of[mu] = (buf, ip)
            drho_of[mu] = cap["drho"]
            dwf_paths[mu] = cap["dwf"]
    pattern_ids.sort()
    return Captures(pattern_ids, dwf_of, drho_of, dwf_paths, notes)


@dataclasses.dataclass
class Accumulated:
    g0: np.ndarray          # (npat, 2, 2) ∫_Ω δñ^{σσ'} d³r
    stream: object          # kernel.density_matrix.FieldStream (real-space field) or None
    probe: object           # _ChargeProbe (oracle without the field) or None
    field: np.ndarray | None = None     # (npat, 4, n1, n2, n3), when it is already built
    stored_errors: dict | None = None   # μ → (grid, G = 0) oracle errors recorded at contraction


def accumulate_eq1(files: QRunFiles, gs: GroundState, caps: Captures, options: AnalysisOptions,
                   tm) -> Accumulated:
    """Stage 4: paper Eq. 1 summed over k, one k-point at a time (bounded memory): the 2×2 cell
    integral from overlaps (G = 0) and, with ``options.realspace``, the field on the FFT grid."""
    x, nocc = gs.x, gs.nocc
    pattern_ids, dwf_of = caps.pattern_ids, caps.dwf_of
    shape = x.fft_grid
    g0 = np.zeros((len(pattern_ids), 2, 2), dtype=complex)
    # Bounded memory: the accumulators (npat × 4 grids; they become the output), one k-point's ψ
    # and δψ on the grid (two boxes of 2·nocc grids, reused) and its coefficients (FieldStream)
    stream = dm.FieldStream(len(pattern_ids), nocc, shape, x.omega) if options.realspace else None
    probe = None if stream is not None else _ChargeProbe.from_fildrho(pattern_ids, caps.drho_of, shape)
    # patterns of one irrep share a δψ buffer and are consecutive: the G = 0 product is batched
    # per irrep, so its rounding does not depend on which other irreps are analysed with it
    batches, start = [], 0
    for n in range(1, len(pattern_ids) + 1):
        if n == len(pattern_ids) or dwf_of[pattern_ids[n]][0] is not dwf_of[pattern_ids[start]][0]:
            batches.append((start, n))
            start = n
    it = range(gs.nksq)
    if options.progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"k-points ({files.root.name})", unit="k", leave=False)
    for ik in it:
        jk, jq = int(gs.ikk[ik]), int(gs.ikq[ik])
        # ψ_k: all occupied bands; k+q: only its plane-wave order is needed (δψ lives there).
        # Both orders are verified on the first band (every plane wave, both spin components).
        wk, perm_k = _read_psi(files, x, gs.psi_buf, jk, nocc, tm)
        wq, perm_q = (wk, perm_k) if jq == jk else _read_psi(files, x, gs.psi_buf, jq, 1, tm)
        t0 = time.perf_counter()
        npw_q = wq.npw
        # δψ stays in ph.x's internal order, read from the memory-mapped records (each pool's
        # file by its local record number); collected-order index c of k+q is internal position
        # inv_q[c]
        dwf = [dwf_of[mu][0].record(ik, dwf_of[mu][1]) for mu in pattern_ids]
        inv_q = np.empty_like(perm_q)
        inv_q[perm_q] = np.arange(len(perm_q))
        i_k, i_q = match_miller(wk.miller, wq.miller)
        for a, b in batches:     # one product per irrep, as its contraction makes it (bitwise equal)
            g0[a:b] += dm.g0_gathered(wk.coeffs, i_k, [rec[:nocc] for rec in dwf[a:b]], inv_q[i_q],
                                      gs.weights[ik])
        t1 = time.perf_counter()
        tm["dpsi_g0"] += t1 - t0
        if probe is not None:
            probe.add(wk.coeffs, wk.miller, [rec[:nocc] for rec in dwf], wq.miller, inv_q, gs.weights[ik])
        if stream is not None:
            # ψ_k once per k-point, shared by every pattern; then one δψ batch per pattern
            stream.add_kpoint(wk.coeffs, wk.miller, [rec[:nocc, :, :npw_q] for rec in dwf],
                              wq.miller[perm_q], gs.weights[ik])
        _drop_mapped_pages(gs.psi_buf, *{id(b): b for b, _ in dwf_of.values()}.values())
    return Accumulated(g0, stream, probe)


def add_contracted(files: QRunFiles, gs: GroundState, contracted: dict, caps: Captures,
                   acc: Accumulated, options: AnalysisOptions, tm) -> tuple[Captures, Accumulated]:
    """Stages 3–4 for irreps whose δψ was contracted and discarded: their patterns' 2×2 cell
    integrals (and, with ``options.realspace``, fields) from ``contracted/irr<p>.h5`` (checksum
    verified with the captures, :func:`open_qrun`), merged in pattern order with those
    accumulated from δψ. Without the field, the charge oracle takes the errors the contraction
    measured on the grid."""
    from ..results import contracted as rc
    t0 = time.perf_counter()
    x = gs.x
    offset, start = {}, 0
    for irr in sorted(set(gs.pats.irreps)):
        offset[irr], start = start, start + gs.pats.irreps.count(irr)
    raw_field = None
    if acc.stream is not None:
        tm["field_psi"], tm["field_dpsi"] = acc.stream.seconds["psi"], acc.stream.seconds["dpsi"]
        raw_field = acc.stream.result()
    ids = {mu: ("raw", n) for n, mu in enumerate(caps.pattern_ids)}
    recs, drho_of, dwf_paths, stored = {}, dict(caps.drho_of), dict(caps.dwf_paths), {}
    for irr, cap in sorted(contracted.items()):
        path = cap["contracted"]["file"]
        rec = rc.read(path, field=options.realspace)
        want = [offset.get(irr, -1) + i for i in range(gs.pats.irreps.count(irr))]
        if rec["irrep"] != irr or list(rec["pattern_id"]) != want:
            raise InputFileError(path, f"holds irrep {rec['irrep']}, patterns {list(rec['pattern_id'] + 1)}; "
                                       f"the manifest's irrep {irr} is patterns {[m + 1 for m in want]}")
        if tuple(rec["fft_grid"]) != tuple(x.fft_grid) or not np.allclose(rec["q_tpiba"], files.q_tpiba, atol=1e-8):
            raise InputFileError(path, f"made on FFT grid {rec['fft_grid']} at q = {rec['q_tpiba']}, this "
                                       f"q-run has {tuple(x.fft_grid)} at q = {files.q_tpiba}")
        recs[irr] = rec
        for i, mu in enumerate(want):
            ids[mu] = (irr, i)
            drho_of[mu] = rec["fildrho"][i] if options.realspace else None   # ph.x's record, kept
            dwf_paths[mu] = [path]
            stored[mu] = (float(rec["drho_relative_error"][i]), float(rec["drho_g0_relative_error"][i]))
    pattern_ids = sorted(ids)
    g0 = np.empty((len(pattern_ids), 2, 2), dtype=complex)
    field = None
    if options.realspace:
        field = np.empty((len(pattern_ids), 4) + tuple(x.fft_grid), dtype=complex)
    for n, mu in enumerate(pattern_ids):
        src, i = ids[mu]
        g0[n] = acc.g0[i] if src == "raw" else recs[src]["density_matrix"][i]
        if field is not None:
            field[n] = raw_field[i] if src == "raw" else recs[src]["field"][i]
    tm["contracted_read"] += time.perf_counter() - t0
    return (Captures(pattern_ids, caps.dwf_of, drho_of, dwf_paths, caps.notes),
            Accumulated(g0, None, acc.probe, field, stored if not options.realspace else None))


def cell_integrals_and_oracle(files: QRunFiles, gs: GroundState, caps: Captures, acc: Accumulated,
                              options: AnalysisOptions, notes: list, tm) -> QRunResult:
    """Stage 5: the Pauli decomposition (paper Eq. 2) of the cell integrals, the field, and the
    charge oracle against fildrho (2 Tr δñ); returns the result without modes."""
    x, pattern_ids = gs.x, caps.pattern_ids
    cell_integral = pauli_from_matrix(acc.g0)                     # (npat, 4)
    result = QRunResult(**{
        "qe_version": x.qe_version,
        "q_tpiba": files.q_tpiba,
        "q_crystal": files.q_tpiba @ np.linalg.inv(x.bg),
        "alat_bohr": x.alat, "cell_bohr": x.cell, "omega_bohr3": x.omega,
        "symbols": x.symbols, "positions_bohr": x.positions,
        "masses_amu": np.array([x.masses_amu[s] for s in x.symbols]),
        "nocc": gs.nocc, "nk": gs.nksq, "fft_grid": np.array(x.fft_grid),
        "pattern_index": np.array(pattern_ids) + 1,
        "pattern_vectors": gs.pats.vectors[pattern_ids],
        "pattern_matrix": acc.g0,
        "pattern_cell_integral": cell_integral,
        "object": ONE_SIDED_NOTE,
        "input_notes": notes,
    })
    for note in notes:
        log.info("%s", note)
    t0 = time.perf_counter()
    comp = acc.field
    if acc.stream is not None:
        tm["field_psi"], tm["field_dpsi"] = acc.stream.seconds["psi"], acc.stream.seconds["dpsi"]
        comp = acc.stream.result()                                 # (npat, 4, n1, n2, n3)
        acc.stream = None
    if comp is not None:
        result["pattern_field"] = comp
        result["cell_average_vs_g0"] = np.max(np.abs(comp.mean(axis=(2, 3, 4)) * x.omega - cell_integral))
    _charge_oracle(result, options, pattern_ids, caps.drho_of, caps.dwf_paths, x.fft_grid, x.omega,
                   comp, acc.probe, acc.stored_errors)
    tm["field_oracle"] += time.perf_counter() - t0
    return result


def modes_and_rms(result: QRunResult, files: QRunFiles, gs: GroundState, npat: int,
                  options: AnalysisOptions) -> None:
    """Stage 6 (in place): the dynamical matrix from ph.x's partial dynmats, the modes at the
    chosen amplitude, their cell integrals and RMS (Eq. 3, derived once in
    ``kernel.observables``), and ph.x's own frequencies (fildyn) as the oracle."""
    pats, x = gs.pats, gs.x
    npat_total = len(pats.irreps)
    dyn, why = _full_dynmat(files, pats.vectors, max(pats.irreps))
    if npat < npat_total:
        why = f"modes need all {npat_total} patterns; {npat} computed"
    if dyn is None:
        log.warning("no modes for %s: %s", files.root, why)
        result["modes_missing_reason"] = why
        return
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
    result["degeneracy_tol_cm1"] = options.degeneracy_tol_cm1
    if npat == npat_total:
        c = km.pattern_coefficients(pats.vectors, U)       # (nmode, npat)
        mode_ci = c @ result["pattern_cell_integral"]
        result["mode_cell_integral"] = mode_ci
        o = obs.mode_observables(mode_ci, groups)            # the one place RMS values are derived
        result.update(mode_rms=o["rms"], mode_rms_inplane=o["inplane"],
                      mode_rms_outofplane=o["outofplane"], mode_rms_subspace=o["subspace"])
        result["mode_coefficients"] = c
    else:
        result["modes_missing_reason"] = why
    if files.fildyn is not None:
        d = read_dyn(files.fildyn)
        result["fildyn_freq_cm1"] = d.freq_cm1


class ChargeCheckError(InputFileError):
    """The captured δψ does not reproduce ph.x's own charge response (fildrho)."""


class _ChargeProbe:
    """The charge oracle without the real-space field: 2 Tr δñ(G) at the few Fourier components
    G where ph.x's fildrho is largest (``per_pattern`` per pattern, G = 0 always included),
    accumulated with the G = 0 path's overlaps shifted by G:
    ∫_Ω e^{-iG·r} u*δu = Σ_G' c*(G') δc(G' + G). Costs a few G = 0 passes, no FFT of ψ."""

    def __init__(self, millers, theirs, available):
        self.millers = millers              # (nG, 3) Miller indices
        self.theirs = theirs                # (npat, nG) fildrho Fourier coefficients (cell average units)
        self.available = available          # (npat,) bool: pattern has a fildrho copy
        self.ours = np.zeros(theirs.shape, dtype=complex)   # cell integrals Σ c* δc at each G

    @classmethod
    def from_fildrho(cls, pattern_ids, drho_of, shape, per_pattern: int = 8):
        npat = len(pattern_ids)
        ffts, avail = [None] * npat, np.zeros(npat, bool)
        for n, mu in enumerate(pattern_ids):
            path = drho_of.get(mu)
            if path is None or not Path(path).is_file():
                continue
            ffts[n] = np.fft.fftn(read_grid_record(path, mu + 1, shape)[0]) / np.prod(shape)
            avail[n] = True
        if not avail.any():
            return None
        picks = {(0, 0, 0)}
        grid = np.array(shape)
        for f in ffts:
            if f is None:
                continue
            for flat in np.argsort(np.abs(f).ravel())[::-1][:per_pattern]:
                m = np.array(np.unravel_index(flat, shape))
                m = np.where(m > grid // 2, m - grid, m)            # signed Miller indices
                picks.add(tuple(int(v) for v in m))
        millers = np.array(sorted(picks))
        theirs = np.full((npat, len(millers)), np.nan, dtype=complex)
        for n, f in enumerate(ffts):
            if f is not None:
                theirs[n] = f[tuple((millers % grid).T)]
        return cls(millers, theirs, avail)

    def add(self, psi, miller_k, dpsi_records, miller_q, inv_q, weight):
        """One k-point: ψ_k (nocc, 2, npw_k) with its Miller indices; the δψ records of every
        pattern in ph.x's internal order, whose position of collected plane wave c of k+q is
        ``inv_q[c]``; ``miller_q`` in collected order."""
        for j, g in enumerate(self.millers):
            i_k, i_q = match_miller(miller_k + g, miller_q)
            if i_k.size:
                m = dm.g0_gathered(psi, i_k, dpsi_records, inv_q[i_q], weight)
                self.ours[:, j] += m[:, 0, 0] + m[:, 1, 1]

    def errors(self, omega) -> np.ndarray:
        """‖2 δn(G)/Ω − fildrho(G)‖/‖fildrho(G)‖ over the probed G, per pattern (NaN: no fildrho)."""
        out = np.full(len(self.available), np.nan)
        for n in np.flatnonzero(self.available):
            ref = self.theirs[n]
            out[n] = np.linalg.norm(2.0 * self.ours[n] / omega - ref) / max(np.linalg.norm(ref), 1e-300)
        return out


def _charge_oracle(result, options, pattern_ids, drho_of, dwf_paths, shape, omega, comp, probe=None,
                   stored=None):
    """ph.x's fildrho = 2 × (one-sided charge) for every pattern with a fildrho copy: on the FFT
    grid when the field was built, and always at G = 0 (cell average, relative to the RMS of
    fildrho, so that it stays meaningful where the cell integral vanishes, e.g. at Γ).
    ``probe``: the oracle at a few G for the patterns accumulated without the field;
    ``stored``: μ → errors measured on the grid when the pattern was contracted.
    Enforced: an error above ``options.charge_tolerance`` stops the analysis unless
    ``options.allow_charge_mismatch``, which is recorded."""
    ci = result["pattern_cell_integral"]
    where, probed = _probed_errors(result, pattern_ids, omega, comp, probe, stored)
    errs, errs0 = _charge_errors(ci, pattern_ids, drho_of, shape, omega, comp, probed, stored)
    result["drho_relative_error"] = errs
    result["drho_g0_relative_error"] = errs0
    result["charge_tolerance"] = options.charge_tolerance
    _charge_verdict(result, options, pattern_ids, drho_of, dwf_paths, errs, errs0, where)


def _probed_errors(result, pattern_ids, omega, comp, probe, stored):
    """Where the field-level error is measured ("on the grid", or at the probe's Fourier
    components when there is no field) and, for the probe, μ → its error for every pattern
    whose errors are not ``stored``; the probed Miller indices go into ``result``."""
    if comp is not None or probe is None:
        return "on the grid", {}
    raw = [mu for mu in pattern_ids if not (stored and mu in stored)]
    probed = dict(zip(raw, probe.errors(omega)))
    result["drho_probe_miller"] = probe.millers
    return f"at fildrho's {len(probe.millers)} largest Fourier components", probed


def _fildrho(path, mu, shape):
    """Pattern μ's fildrho on the FFT grid: a contracted irrep's in-memory copy of its record
    (an array), read from a fildrho file, or None when there is no copy."""
    if isinstance(path, np.ndarray):
        return path
    if path is None or not Path(path).is_file():
        return None
    return read_grid_record(path, mu + 1, shape)[0]


def _charge_errors(ci, pattern_ids, drho_of, shape, omega, comp, probed, stored):
    """Per pattern (NaN where unchecked): ‖2 Tr δñ − fildrho‖/‖fildrho‖ on the grid (from the
    field ``comp``) or at the probed G (``probed``), and the G = 0 error |2 ci/Ω − ⟨fildrho⟩|
    relative to fildrho's RMS; ``stored`` errors are taken as they are."""
    npat = len(pattern_ids)
    errs, errs0 = np.full(npat, np.nan), np.full(npat, np.nan)
    for n, mu in enumerate(pattern_ids):
        if stored and mu in stored:
            errs[n], errs0[n] = stored[mu]
            continue
        drho = _fildrho(drho_of.get(mu), mu, shape)
        if drho is None:
            continue
        scale = np.linalg.norm(drho)
        if comp is not None:
            errs[n] = np.linalg.norm(2.0 * comp[n, 0] - drho) / max(scale, 1e-300)
        elif mu in probed:
            errs[n] = probed[mu]
        rms = scale / np.sqrt(drho.size)
        errs0[n] = abs(2.0 * ci[n, 0] / omega - drho.mean()) / max(rms, 1e-300)
    return errs, errs0


def _charge_verdict(result, options, pattern_ids, drho_of, dwf_paths, errs, errs0, where):
    """``result["charge_check"]``: not checked, passed, or (via :func:`_charge_failure`) failed."""
    npat = len(pattern_ids)
    checked = ~np.isnan(errs0)
    if not checked.any():
        result["charge_check"] = "not checked: no fildrho copy in the q-run (only the capture checksums guard the δψ)"
        return
    worst = np.fmax(np.nan_to_num(errs, nan=0.0), np.nan_to_num(errs0, nan=0.0))
    bad = [n for n in range(npat) if checked[n] and worst[n] > options.charge_tolerance]
    unchecked = [int(pattern_ids[n]) + 1 for n in range(npat) if not checked[n]]
    note = f"; patterns {unchecked} have no fildrho" if unchecked else ""
    if not bad:
        result["charge_check"] = (f"passed: max relative error {np.nanmax(worst[checked]):.1e} "
                                  f"≤ {options.charge_tolerance:.0e} for {int(checked.sum())} patterns{note}")
        return
    _charge_failure(result, options, pattern_ids, drho_of, dwf_paths, errs, errs0, worst, bad, where)


def _charge_failure(result, options, pattern_ids, drho_of, dwf_paths, errs, errs0, worst, bad, where):
    """Patterns ``bad`` exceed the tolerance: a ChargeCheckError naming the worst one and its
    files, or with ``options.allow_charge_mismatch`` a warning and the override recorded."""
    npat = len(pattern_ids)
    n = max(bad, key=lambda i: worst[i])
    mu = pattern_ids[n]
    dwf = dwf_paths.get(mu) or []
    which = where if np.nan_to_num(errs[n]) >= errs0[n] else "at G = 0"
    msg = (f"charge check failed for pattern {mu + 1} ({len(bad)} of {npat} patterns fail): "
           f"‖2 Tr δñ − fildrho‖/‖fildrho‖ {which} = {worst[n]:.2e} > {options.charge_tolerance:.0e}; "
           f"the captured δψ ({', '.join(str(p) for p in dwf if p)}) does not reproduce ph.x's charge "
           "response: zeroed, swapped, truncated or from another run. Recapture the pattern, or "
           "pass --allow-charge-mismatch to write the numbers anyway (recorded in the output)")
    where_file = drho_of[mu] if not isinstance(drho_of[mu], np.ndarray) else dwf[0]
    if not options.allow_charge_mismatch:
        raise ChargeCheckError(where_file, msg)
    log.warning("%s: %s", where_file, msg)
    result["charge_check"] = ("FAILED, overridden by --allow-charge-mismatch: "
                              f"patterns {[int(pattern_ids[i]) + 1 for i in bad]} exceed "
                              f"{options.charge_tolerance:.0e} (worst {worst[n]:.2e})")


def _drop_mapped_pages(*buffers) -> None:
    """Take the pages of memory-mapped buffers out of this process's resident set (madvise
    DONTNEED on a read-only file mapping: the data stays in the page cache and a later access maps
    it again). Called after every k-point, so the resident set stays bounded by one k-point's
    records however large the δψ files are. A no-op for anything that is not a memory map."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return
    for b in buffers:
        for a in getattr(b, "arrays", [b]):
            mm = getattr(a, "_mmap", None)
            if mm is not None:
                mm.madvise(mmap.MADV_DONTNEED)


def _read_psi(files: QRunFiles, x: QEData, psi_buf, j: int, nbands: int, tm):
    """The first ``nbands`` bands of point j (collected file) and ph.x's internal plane-wave
    order for it, verified bitwise on the first band (every plane wave, both spinor components;
    one band fixes the permutation, and the check proves that buffer and files are from the
    same run) against record j of ph.x's ψ buffer."""
    t0 = time.perf_counter()
    w = read_wfc(files.wfc_dir / f"wfc{j + 1}.dat", nbnd=nbands)
    _check_wfc(w, x, j)
    t1 = time.perf_counter()
    perm = internal_order(w.miller, w.xk / x.tpiba, x.bg)
    t2 = time.perf_counter()
    verify_order(psi_buf.record(j), w.coeffs[:1], perm, psi_buf.where(j))
    t3 = time.perf_counter()
    tm["read_psi"] += t1 - t0
    tm["order"] += t2 - t1
    tm["verify"] += t3 - t2
    return w, perm


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
                    _check_wfc(w, x, s)
                    verify_order(buf.record(s), w.coeffs, internal_order(w.miller, w.xk / x.tpiba, x.bg),
                                 buf.where(s))
            return buf
        except InputFileError as exc:
            first = first or exc
    if len(cands) > 1:
        raise InputFileError(first.path, f"{first.problem} (ψ buffer read as written by "
                                         f"{' or '.join(map(str, cands))} pools)")
    raise first


def _check_wfc(w, x: QEData, ik: int):
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
