"""The time-odd spin response of one q-run: χ_n (:mod:`dfptmag.kernel.timeodd`) from the captured
static δψ and a pw.x run of empty states at the k + q points, contracted with ψ_k exactly as
paper Eq. 1 contracts δψ (cell integrals at G = 0 and, optionally, the field on the FFT grid).

X_q^{σσ'}(r) = Σ_k w_k Σ_{n occ} u^{σ'}_{kn}(r)* χ^σ_{k+q,n}(r)   (per bohr of pattern displacement,
per Ry). docs/theory.md, "The time-odd response": to first order in ħω the e^{−iωt} part of the
density matrix is δñ_q + (δñ_{−q})^† + ħω [−X_q + (X_{−q})^†]; time reversal makes the charge of
the ħω term cancel and its spin add, so the magnetization carried at lattice velocity v is
δm_odd = −2 iħ m[X_q] · v (the e^{−iωt} convention, u(t) = Re u e^{−iωt}).

Also returned, as the completeness oracle: the contraction of Σ_{m≤M} |m⟩⟨m|δψ_n⟩ (unit weights
in place of 1/(ε_n − ε_m)), which tends to the one-sided Eq. 1 result as empty states are added,
and the norm of δψ left outside the computed empty states.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..constants import AU_SEC, BOHR_RADIUS_SI
from ..errors import InputFileError, UnsupportedError
from ..io.planewaves import match_miller
from ..io.qe_wfc import read_wfc
from ..io.qe_xml import read_data_file_schema
from ..kernel import density_matrix as dm
from ..kernel import timeodd as kt
from ..kernel.pauli import pauli_from_matrix
from . import qrun as aq

log = logging.getLogger(__name__)

HARTREE_IN_RY = 2.0
# pw.x and ph.x converge their bands to ~1e-10 Ry in energy, i.e. ~1e-5 in the states (measured
# overlaps of 1e-5 on the tiny WSe2 runs); a wrong plane-wave map or another ground state gives O(0.1)
ORTHOGONALITY_TOLERANCE = 1e-3


PARTS = ("sum", "tail", "one", "proj")     # Σ_{m≤M} part of X, closure tail, Eq. 1, unit-weight Eq. 1


@dataclasses.dataclass
class TimeOddResult:
    """Per pattern (the q-run's captured ones, ``pattern_index`` 1-based): 2×2 cell integrals
    (``matrices``) and, with realspace, fields (``fields``) of the parts in :data:`PARTS`, per bohr
    of displacement (X per Ry); the closure's tail is kept apart, so the closure can be chosen
    after the δψ is gone. Pauli components [n, m_x, m_y, m_z] in e and μB."""
    pattern_index: np.ndarray
    matrices: dict                  # part → (npat, 2, 2)
    residual2: np.ndarray           # (npat,) Σ_k w_k Σ_n ‖δψ_n − P_M δψ_n‖²
    dpsi2: np.ndarray               # (npat,) Σ_k w_k Σ_n ‖δψ_n‖²
    n_empty: int
    closure: str
    gap_ry: float
    orthogonality: float            # max |⟨ψ_occ(k+q)|m⟩| between the q-run's ψ and the empty states
    fields: dict = dataclasses.field(default_factory=dict)   # part → (npat, 4, n1, n2, n3)
    fft_grid: tuple | None = None
    omega_bohr3: float | None = None

    @property
    def chi_matrix(self) -> np.ndarray:
        """(npat, 2, 2) ∫ X_q per Ry, with the closure's tail unless closure is "none"."""
        m = self.matrices
        return m["sum"] + m["tail"] if self.closure != "none" else m["sum"]

    @property
    def chi_cell_integral(self) -> np.ndarray:
        return pauli_from_matrix(self.chi_matrix)

    @property
    def onesided_cell_integral(self) -> np.ndarray:
        return pauli_from_matrix(self.matrices["one"])

    @property
    def projected_cell_integral(self) -> np.ndarray:
        return pauli_from_matrix(self.matrices["proj"])

    @property
    def residual_norm(self) -> np.ndarray:
        """(npat,) ‖δψ − P_M δψ‖ / ‖δψ‖ over all k and bands."""
        return np.sqrt(self.residual2 / self.dpsi2)

    @property
    def chi_field(self) -> np.ndarray | None:
        f = self.fields
        if "sum" not in f:
            return None
        return f["sum"] + f["tail"] if self.closure != "none" else f["sum"]

    @property
    def onesided_field(self) -> np.ndarray | None:
        return self.fields.get("one")

    @property
    def projected_field(self) -> np.ndarray | None:
        return self.fields.get("proj")

    def completeness_error(self) -> np.ndarray:
        """(npat,) max |P_M-projected − one-sided| over the four components / max |one-sided|."""
        ref = np.abs(self.onesided_cell_integral).max(axis=1)
        return np.abs(self.projected_cell_integral - self.onesided_cell_integral).max(axis=1) / ref

    def field_completeness_error(self) -> np.ndarray:
        """(npat,) the same on the FFT grid: max |field(P_M δψ) − field(δψ)| / max |field(δψ)|."""
        d = np.abs(self.projected_field - self.onesided_field).reshape(len(self.pattern_index), -1).max(axis=1)
        return d / np.abs(self.onesided_field).reshape(len(self.pattern_index), -1).max(axis=1)


def merge(parts: list, closure: str) -> TimeOddResult:
    """One result of several (irreps computed apart, or read from contracted files), in pattern
    order; fields only if every part has them."""
    order = np.argsort(np.concatenate([p.pattern_index for p in parts]), kind="stable")
    cat = lambda get: np.concatenate([get(p) for p in parts])[order]      # noqa: E731
    fields = {}
    for k in PARTS:
        if all(k in p.fields for p in parts):
            fields[k] = cat(lambda p, k=k: p.fields[k])
    p0 = parts[0]
    return TimeOddResult(cat(lambda p: p.pattern_index), {k: cat(lambda p, k=k: p.matrices[k]) for k in PARTS},
                         cat(lambda p: p.residual2), cat(lambda p: p.dpsi2), min(p.n_empty for p in parts), closure,
                         min(p.gap_ry for p in parts), max(p.orthogonality for p in parts), fields,
                         p0.fft_grid, p0.omega_bohr3)


def empty_save(path) -> Path:
    """The ``<prefix>.save`` directory of an empty-state run, given it or a directory holding it."""
    p = Path(path)
    if (p / "data-file-schema.xml").is_file():
        return p
    found = sorted(p.glob("*.save/data-file-schema.xml")) + sorted(p.glob("*/*.save/data-file-schema.xml"))
    if not found:
        raise InputFileError(p, "no pw.x data-file-schema.xml of an empty-state run here")
    return found[0].parent


def analyze_time_odd(root, empty, closure: str = "kinetic", realspace: bool = False,
                     n_empty: int | None = None, irreps=None, diagnostic_fields: bool = False) -> TimeOddResult:
    """The time-odd response of the q-run ``root`` (its raw δψ captures, or those of ``irreps``)
    with the empty states of the pw.x run in ``empty`` (its save directory); ``n_empty`` uses only
    the lowest that many. With ``realspace`` the X fields; ``diagnostic_fields`` adds those of
    Eq. 1 and of its unit-weight projection (the completeness oracle on the grid)."""
    if closure not in kt.CLOSURES:
        raise ValueError(f"closure {closure!r}: one of {kt.CLOSURES}")
    files, _ = aq.open_qrun(root)
    raw = {i: c for i, c in files.captures.items() if not c.get("contracted") and (irreps is None or i in irreps)}
    if not raw:
        raise UnsupportedError(files.root, "every capture was contracted and its δψ discarded without "
                                           "empty states: the time-odd response needs the δψ")
    files = dataclasses.replace(files, captures=raw)
    gs = aq.read_ground_state(files)
    caps = aq.open_captures(files, gs)
    save = empty_save(empty)
    ex = read_data_file_schema(save / "data-file-schema.xml")
    if ex.nbnd <= gs.nocc:
        raise InputFileError(ex.path, f"nbnd = {ex.nbnd}: no empty states above the {gs.nocc} occupied bands")
    nemp = ex.nbnd - gs.nocc if n_empty is None else min(int(n_empty), ex.nbnd - gs.nocc)
    acc = _Sums(len(caps.pattern_ids), gs, realspace, diagnostic_fields)
    where = _match_points(gs.x.xk[gs.ikq], ex, gs.x)
    for ik in range(gs.nksq):
        _add_kpoint(acc, files, gs, caps, ik, (save, ex, where[ik], nemp))
    if acc.ortho > ORTHOGONALITY_TOLERANCE:
        raise InputFileError(save, f"empty states overlap the q-run's occupied states at k + q by up to "
                                   f"{acc.ortho:.1e} (tolerance {ORTHOGONALITY_TOLERANCE:g}): not from the "
                                   "same ground state (another scf, cutoff or QE build)")
    out = TimeOddResult(np.array(caps.pattern_ids) + 1, acc.g0, acc.r2, acc.d2, nemp, closure, acc.gap, acc.ortho,
                        {k: st.result() for k, st in acc.streams.items()}, tuple(gs.x.fft_grid), gs.x.omega)
    log.info("%s: time-odd response with %d empty states (closure %s): δψ outside them %s",
             files.root.name, nemp, closure, np.array2string(out.residual_norm, precision=3))
    return out


class _Sums:
    """The k sums of :func:`analyze_time_odd`: 2×2 cell integrals and fields per part, norms."""

    def __init__(self, npat, gs, realspace, diagnostic):
        self.g0 = {k: np.zeros((npat, 2, 2), complex) for k in PARTS}
        keys = (PARTS if diagnostic else PARTS[:2]) if realspace else ()
        self.streams = {k: dm.FieldStream(npat, gs.nocc, gs.x.fft_grid, gs.x.omega) for k in keys}
        self.r2, self.d2 = np.zeros(npat), np.zeros(npat)
        self.gap, self.ortho = np.inf, 0.0
        self.tm = defaultdict(float)


def _irrep_batches(caps) -> list[tuple[int, int]]:
    """Runs of consecutive patterns sharing a δψ buffer (one irrep): each is computed on its own,
    so a pattern's numbers do not depend on which other irreps are analysed with it (the
    contraction of one irrep gives the same bits as the whole-q analysis)."""
    ids, out, start = caps.pattern_ids, [], 0
    for n in range(1, len(ids) + 1):
        if n == len(ids) or caps.dwf_of[ids[n]][0] is not caps.dwf_of[ids[start]][0]:
            out.append((start, n))
            start = n
    return out


def _add_kpoint(acc: _Sums, files, gs, caps, ik: int, empty) -> None:
    save, ex, ie, nemp = empty
    x, nocc = gs.x, gs.nocc
    jk, jq = int(gs.ikk[ik]), int(gs.ikq[ik])
    wk, perm_k = aq._read_psi(files, x, gs.psi_buf, jk, nocc, acc.tm)
    wq, perm_q = (wk, perm_k) if jq == jk else aq._read_psi(files, x, gs.psi_buf, jq, nocc, acc.tm)
    miller_q = wq.miller[perm_q]                      # ph.x's internal order of k + q
    E, eps_e, kin = _empty_on(save, ex, ie, miller_q, nocc, nemp, x)
    # the empty states belong to the q-run's Hamiltonian only if they are orthogonal to its
    # occupied states at k + q (a wrong plane-wave map or another run gives O(1) overlaps)
    occ_q = wq.coeffs[:nocc][:, :, perm_q].reshape(nocc, -1)
    acc.ortho = max(acc.ortho, float(np.abs(occ_q.conj() @ E.reshape(nemp, -1).T).max()))
    eps_o = x.eigenvalues_ha[jk, :nocc] * HARTREE_IN_RY
    acc.gap = min(acc.gap, float(eps_e.min() - eps_o.max()))
    w = gs.weights[ik]
    i_k, i_q = match_miller(wk.miller, miller_q)
    records = {k: [] for k in PARTS}
    for a, b in _irrep_batches(caps):
        dpsi = np.stack([caps.dwf_of[mu][0].record(ik, caps.dwf_of[mu][1])[:nocc, :, :wq.npw]
                         for mu in caps.pattern_ids[a:b]])
        res = kt.chi_from_empty_states(dpsi, E, eps_o, eps_e, "kinetic", kin)
        for key, arr in zip(PARTS, (res.chi_sum, res.tail, dpsi, res.projected)):
            acc.g0[key][a:b] += dm.g0_gathered(wk.coeffs, i_k, list(arr), i_q, w)
            records[key] += list(arr)
        acc.r2[a:b] += w * res.residual_norm2.sum(axis=1)
        acc.d2[a:b] += w * res.dpsi_norm2.sum(axis=1)
    for key, st in acc.streams.items():
        st.add_kpoint(wk.coeffs, wk.miller, records[key], miller_q, w)


# ħ in Ry·s over the bohr in m: a velocity of 1 bohr per (ħ/Ry) is this many m/s, inverted
HBAR_RY_S_PER_BOHR_M = 2 * AU_SEC / BOHR_RADIUS_SI


def attach(result, todd: TimeOddResult) -> None:
    """Put the time-odd response into a q-run's analysis (:class:`QRunResult`, in place): per
    pattern the X cell integral and δm_odd per unit velocity (−2iħ m[X], time reversal assumed:
    the partner term from −q doubles the spin and cancels the charge), and with modes the peak
    δm_odd = −2i ħω_ν m[X·U_ν] at each mode's frequency and amplitude and its RMS (|peak|/√2)."""
    if list(todd.pattern_index) != list(result["pattern_index"]):
        raise ValueError("time-odd and one-sided analyses of different patterns")
    result["time_odd_pattern_cell_integral"] = todd.chi_cell_integral
    result["time_odd_pattern_per_velocity"] = -2j * todd.chi_cell_integral[:, 1:] * HBAR_RY_S_PER_BOHR_M
    if todd.chi_field is not None:
        result["time_odd_pattern_field"] = todd.chi_field
    result["time_odd_residual_norm"] = todd.residual_norm
    result["time_odd_completeness_error"] = todd.completeness_error()
    result["time_odd_settings"] = {"empty_bands": todd.n_empty, "closure": todd.closure, "gap_ry": todd.gap_ry,
                                   "orthogonality": todd.orthogonality}
    if result.mode_coefficients is None:
        return
    x_modes = result["mode_coefficients"] @ todd.chi_cell_integral          # (nmode, 4) per Ry
    w = np.where(result["frequency_ry"] > 0, result["frequency_ry"], np.nan)   # no velocity without ω > 0
    peak = -2j * w[:, None] * x_modes[:, 1:]
    result["time_odd_mode_cell_integral"] = peak
    rms = np.abs(peak) / np.sqrt(2)
    result["time_odd_mode_rms_inplane"] = np.hypot(rms[:, 0], rms[:, 1])
    result["time_odd_mode_rms_outofplane"] = rms[:, 2]


def attach_if_present(result, qdir, closure: str = "kinetic", realspace: bool = False) -> bool:
    """The q-run's time-odd response into ``result`` (:func:`attach`) when it has one: from the
    empty states next to it (:func:`find_empty_states`) for irreps whose δψ is kept, from the
    contracted files for the others. Returns whether there was one."""
    t = time_odd_of_qrun(qdir, closure, realspace)
    if t is None:
        return False
    attach(result, t)
    return True


def time_odd_of_qrun(qdir, closure: str = "kinetic", realspace: bool = False) -> TimeOddResult | None:
    """The time-odd response of a q-run, or None without empty states: raw irreps from their δψ
    and the empty states, contracted ones from what their contraction stored."""
    from ..results import contracted as rc
    files, _ = aq.open_qrun(qdir)
    done = {i: c for i, c in files.captures.items() if c.get("contracted")}
    raw = sorted(set(files.captures) - set(done))
    save = find_empty_states(qdir)
    recs = {i: rc.read(c["contracted"]["file"], field=realspace) for i, c in done.items()}
    with_odd = {i: r for i, r in recs.items() if r.get("time_odd") is not None}
    if save is None and not with_odd:
        return None
    missing = sorted(set(recs) - set(with_odd))
    if raw and save is None:
        raise InputFileError(files.root, f"irreps {raw} keep their δψ but the empty states are gone "
                                         f"({files.root / 'empty'}): rerun the q's empty-state step")
    if missing:
        raise InputFileError(files.root, f"irreps {missing} were contracted before the empty states existed: "
                                         "their time-odd response is lost; recompute them (delete "
                                         f"{files.root}) or remove {files.root / 'empty'}")
    parts = [analyze_time_odd(qdir, save, closure, realspace, irreps=set(raw))] if raw else []
    parts += [_from_contracted(r, closure, realspace) for r in with_odd.values()]
    return merge(parts, closure)


def _from_contracted(rec: dict, closure: str, realspace: bool) -> TimeOddResult:
    t = rec["time_odd"]
    fields = {k: t[f"{k}_field"] for k in ("sum", "tail")} if realspace else {}
    return TimeOddResult(np.asarray(rec["pattern_id"]) + 1, {k: t[f"{k}_matrix"] for k in PARTS},
                         t["residual2"], t["dpsi2"], int(t["n_empty"]), closure, float(t["gap_ry"]),
                         float(t["orthogonality"]), fields, tuple(rec["fft_grid"]))


def find_empty_states(qdir) -> Path | None:
    """The empty-state run of a q-run (``<qdir>/empty``, as ``dfptmag run`` makes it with a
    [timeodd] section), or None."""
    p = Path(qdir) / "empty"
    try:
        return empty_save(p) if p.is_dir() else None
    except InputFileError:
        return None


def _match_points(xk_q: np.ndarray, ex, x) -> list[int]:
    """For every k + q of the q-run, the index of the same point in the empty-state run."""
    if not np.allclose(ex.cell, x.cell, atol=1e-8) or abs(ex.ecutwfc_ha - x.ecutwfc_ha) > 1e-10:
        raise InputFileError(ex.path, "cell or ecutwfc differ from the q-run's: empty states of another system")
    out = []
    for q in xk_q:
        d = np.linalg.norm(ex.xk - q[None, :], axis=1)
        i = int(np.argmin(d))
        if d[i] > 1e-6:
            raise InputFileError(ex.path, f"k + q = {np.round(q, 6).tolist()} (2π/alat) is not among "
                                          "the empty-state run's k-points")
        out.append(i)
    return out


def _empty_on(save: Path, ex, i: int, miller_q: np.ndarray, nocc: int, nemp: int, x):
    """Empty states of point i of the empty-state run on ph.x's internal plane-wave order of k + q:
    (coefficients (nemp, 2, npw), energies in Ry, |k+q+G|² in Ry)."""
    w = read_wfc(save / f"wfc{i + 1}.dat", nbnd=nocc + nemp)
    i1, i2 = match_miller(miller_q, w.miller)
    if len(i1) != len(miller_q) or w.npw != len(miller_q):
        raise InputFileError(w.path, f"{w.npw} plane waves, {len(i1)} in common with the q-run's "
                                     f"{len(miller_q)} at this k + q: another cutoff or cell")
    E = np.zeros((nemp, 2, len(miller_q)), complex)
    E[:, :, i1] = w.coeffs[nocc:nocc + nemp][:, :, i2]
    kg = (ex.xk[i][None, :] + miller_q @ x.bg) * x.tpiba
    return E, ex.eigenvalues_ha[i, nocc:nocc + nemp] * HARTREE_IN_RY, np.einsum("ij,ij->i", kg, kg)


__all__ = ["analyze_time_odd", "TimeOddResult", "empty_save", "attach", "attach_if_present", "find_empty_states"]
