"""The time-odd response (docs/theory.md, "The time-odd response").

Fast tier:
- the kernel's sum over empty states against a direct linear solve (ε_n − H) χ_n = P_c δψ_n on a
  random Hermitian model (an independent route to the same χ), and its completeness (unit
  weights give back δψ) when every empty state is present;
- on the stored Γ run of tiny WSe2 with a stored pw.x run of its empty states: the exact
  time-reversal law at q = Γ (charge of X real, spin imaginary, pointwise: the law that makes the
  charge of the ħω term cancel and its spin add), the completeness residual falling as empty
  states are added, and one-line errors for a wrong empty-state run.
"""
from __future__ import annotations

import numpy as np
import pytest

from dfptmag.kernel import timeodd as kt
from datafiles import data_path


def _model(npw=24, nocc=5, npat=2, seed=1):
    """A random Hermitian H on 2·npw spinor components, its occupied states (lowest nocc, with a
    gap), ΔV for npat patterns, and ph.x's δψ_n = P_c (ε_n − H)⁻¹ P_c ΔV ψ_n."""
    rng = np.random.default_rng(seed)
    n = 2 * npw
    A = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    H = (A + A.conj().T) / 2
    eps, V = np.linalg.eigh(H)
    eps[nocc:] += 3.0                                       # a gap above the occupied states
    H = (V * eps) @ V.conj().T
    occ, emp = V[:, :nocc], V[:, nocc:]
    Pc = np.eye(n) - occ @ occ.conj().T
    dpsi = np.zeros((npat, nocc, n), complex)
    for p in range(npat):
        B = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
        dV = (B + B.conj().T) / 2
        for i in range(nocc):
            shift = eps[i] * np.eye(n) - H - 10 * (np.eye(n) - Pc)   # invertible, = ε_n − H on P_c
            dpsi[p, i] = np.linalg.solve(shift, Pc @ dV @ occ[:, i])
    return H, eps, occ, emp, Pc, dpsi, npw


def test_chi_equals_a_direct_linear_solve():
    H, eps, occ, emp, Pc, dpsi, npw = _model()
    npat, nocc, n = dpsi.shape
    empty = emp.T.reshape(-1, 2, npw)                       # (nemp, 2, npw), rows are |m⟩
    r = kt.chi_from_empty_states(dpsi.reshape(npat, nocc, 2, npw), empty, eps[:nocc], eps[nocc:], closure="none")
    for p in range(npat):
        for i in range(nocc):
            shift = eps[i] * np.eye(n) - H - 10 * (np.eye(n) - Pc)
            direct = np.linalg.solve(shift, Pc @ dpsi[p, i])
            got = r.chi[p, i].reshape(n)
            assert np.abs(got - direct).max() <= 1e-12 * np.abs(direct).max()
    # every empty state present: unit weights give δψ back, nothing is left for a closure
    assert np.abs(r.projected - dpsi.reshape(r.projected.shape)).max() <= 1e-12 * np.abs(dpsi).max()
    assert r.residual_norm2.max() <= 1e-26 * r.dpsi_norm2.max()
    kin = np.abs(np.random.default_rng(2).normal(size=npw))
    rk = kt.chi_from_empty_states(dpsi.reshape(r.chi.shape), empty, eps[:nocc], eps[nocc:], "kinetic", kin)
    assert np.abs(rk.chi - r.chi).max() <= 1e-10 * np.abs(r.chi).max()


def test_truncated_sum_and_closure():
    """With the top empty states left out, the remainder is exactly what they would have carried
    at unit weight; the closure puts it at or above the highest computed band, so it can only
    shrink |χ|'s tail term, and both errors fall as states are added."""
    H, eps, occ, emp, Pc, dpsi, npw = _model(npw=40, nocc=6)
    npat, nocc, n = dpsi.shape
    d = dpsi.reshape(npat, nocc, 2, npw)
    full = kt.chi_from_empty_states(d, emp.T.reshape(-1, 2, npw), eps[:nocc], eps[nocc:], "none")
    errs = []
    for M in (20, 40, 60):
        r = kt.chi_from_empty_states(d, emp[:, :M].T.reshape(-1, 2, npw), eps[:nocc], eps[nocc:nocc + M], "none")
        left = emp[:, M:]
        tail = np.einsum("am,pia->pim", left.conj(), dpsi)
        assert np.allclose(r.residual_norm2, (np.abs(tail) ** 2).sum(-1), rtol=1e-10, atol=1e-20)
        errs.append(np.abs(r.chi - full.chi).max())
    assert errs[0] > errs[1] > errs[2]
    with pytest.raises(ValueError, match="overlap"):
        kt.chi_from_empty_states(d, emp.T.reshape(-1, 2, npw), eps[:nocc], eps[:n - nocc] - 100, "none")


@pytest.fixture(scope="module")
def gamma_time_odd():
    from dfptmag.analysis.timeodd import analyze_time_odd
    q = data_path("wse2-tiny", "q_G")
    empty = data_path("wse2-tiny", "q_G", "empty")
    return {n: analyze_time_odd(q, empty, closure="none", n_empty=n, realspace=True, diagnostic_fields=True)
            for n in (10, 30)}


def test_time_reversal_at_gamma_pointwise(gamma_time_odd):
    """At q = Γ (≡ −q) with real patterns, time reversal pairs every Kramers partner: the charge of
    X = Σ w u* χ is real and its spin imaginary at every point, as for Eq. 1 itself. The partner
    term (X_{−q})^† then cancels the charge of the ħω term and doubles its spin. Tolerance: the
    one-sided field's own deviation from the same law (ph.x's and pw.x's convergence), times 10."""
    r = gamma_time_odd[30]
    for f in (r.chi_field, r.onesided_field):
        assert np.abs(f).max() > 0
    f, o = r.chi_field, r.onesided_field
    law_o = max(np.abs(o[:, 0].imag).max(), np.abs(o[:, 1:].real).max()) / np.abs(o).max()
    law_f = max(np.abs(f[:, 0].imag).max(), np.abs(f[:, 1:].real).max()) / np.abs(f).max()
    print(f"time-reversal residual at Γ: χ field {law_f:.1e}, one-sided field {law_o:.1e}")
    assert law_f <= max(10 * law_o, 1e-4)
    # not satisfied trivially: both channels carry weight
    assert np.abs(f[:, 1:].imag).max() > 1e3 * law_f * np.abs(f).max()
    assert np.abs(f[:, 0].real).max() > 1e3 * law_f * np.abs(f).max()


def test_completeness_residual_falls_with_empty_states(gamma_time_odd):
    """The part of δψ outside the computed empty states shrinks as states are added (δψ lies in
    the conduction space, so with every state it would vanish), and the empty states of the
    pw.x run are orthogonal to ph.x's occupied states (the plane-wave map and the Hamiltonian are
    the q-run's: a wrong map gives O(1) overlaps)."""
    a, b = gamma_time_odd[10], gamma_time_odd[30]
    assert np.all(b.residual_norm < a.residual_norm) and np.all(a.residual_norm < 1)
    assert max(a.orthogonality, b.orthogonality) < 1e-4
    print(f"10 → 30 empty states: δψ outside {a.residual_norm.round(3).tolist()} → "
          f"{b.residual_norm.round(3).tolist()}; field completeness error "
          f"{a.field_completeness_error().round(3).tolist()} → {b.field_completeness_error().round(3).tolist()}; "
          f"orthogonality {b.orthogonality:.1e}")


def test_empty_states_on_a_wrong_plane_wave_map_are_refused(monkeypatch):
    """Shuffle the empty states' plane waves: the orthogonality check stops the analysis."""
    from dfptmag.analysis import timeodd as at
    from dfptmag.errors import InputFileError
    real = at._empty_on

    def shuffled(*args):
        E, eps, kin = real(*args)
        return E[:, :, np.random.default_rng(0).permutation(E.shape[2])], eps, kin
    monkeypatch.setattr(at, "_empty_on", shuffled)
    with pytest.raises(InputFileError, match="overlap the q-run's occupied states"):
        at.analyze_time_odd(data_path("wse2-tiny", "q_G"), data_path("wse2-tiny", "q_G", "empty"), n_empty=5)


def test_wrong_empty_state_run_is_one_line(tmp_path):
    import shutil
    from dfptmag.analysis.timeodd import analyze_time_odd
    from dfptmag.errors import InputFileError
    q = data_path("wse2-tiny", "q_G")
    with pytest.raises(InputFileError, match="no pw.x data-file-schema.xml"):
        analyze_time_odd(q, tmp_path)
    # the q-run's own save has no empty states
    with pytest.raises(InputFileError, match="no empty states"):
        analyze_time_odd(q, q / "out" / "wse2.save")
    bad = tmp_path / "wse2.save"
    shutil.copytree(data_path("wse2-tiny", "q_G", "empty", "out", "wse2.save"), bad)
    xml = bad / "data-file-schema.xml"
    xml.write_text(xml.read_text().replace("<ecutwfc>1.0", "<ecutwfc>1.1"))
    with pytest.raises(InputFileError, match="ecutwfc differ"):
        analyze_time_odd(q, bad)


def test_contraction_keeps_the_time_odd_response_bitwise(tmp_path):
    """Contract-and-discard with empty states: each irrep's contraction also stores its time-odd
    parts (the closure's tail apart), so the time-odd analysis after the δψ and the empty states
    are deleted equals, bitwise, the one from the δψ, with either closure; and a q-run whose
    irreps were contracted before its empty states existed is refused in one line."""
    import shutil
    from dfptmag.analysis.contract import contract_irrep
    from dfptmag.analysis.timeodd import time_odd_of_qrun
    from dfptmag.errors import InputFileError
    from dfptmag.io.qrun_dir import record_contraction
    from dfptmag.workflow.capture import discard_dwf
    q = tmp_path / "q_G"
    shutil.copytree(data_path("wse2-tiny", "q_G"), q)
    before = {c: time_odd_of_qrun(q, c, realspace=True) for c in ("kinetic", "none")}
    for irr in (3, 9):
        rec = contract_irrep(q, irr)
        record_contraction(q, irr, rec)
        discard_dwf(q, irr, q / "out" / "_ph0", "wse2")
    shutil.rmtree(q / "empty" / "out")
    assert not list((q / "capture").glob("dwf.*"))
    for c, a in before.items():
        b = time_odd_of_qrun(q, c, realspace=True)
        assert a.chi_matrix.tobytes() == b.chi_matrix.tobytes(), c
        assert a.chi_field.tobytes() == b.chi_field.tobytes(), c
        assert a.residual_norm.tobytes() == b.residual_norm.tobytes()
        assert b.n_empty == a.n_empty and b.orthogonality == a.orthogonality
    # contracted without empty states, then empty states added: the time-odd part is lost
    late = tmp_path / "late" / "q_G"
    shutil.copytree(data_path("wse2-tiny", "q_G"), late, ignore=shutil.ignore_patterns("empty"))
    record_contraction(late, 3, contract_irrep(late, 3))
    shutil.copytree(data_path("wse2-tiny", "q_G", "empty"), late / "empty")
    with pytest.raises(InputFileError, match=r"irreps \[3\] were contracted before the empty states"):
        time_odd_of_qrun(late)


def test_empty_bands_must_be_positive(tmp_path):
    import subprocess
    import sys
    from conftest import TINY
    p = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", str(TINY), "--empty-bands", "0",
                        "--run-dir", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True)
    assert p.returncode == 2 and "empty_bands = 0" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "scf").exists()


def test_config_section(tmp_path):
    from conftest import TINY
    from dfptmag.errors import InputFileError
    from dfptmag.workflow import config
    text = TINY.read_text().replace('"../structures/', f'"{TINY.parent.parent}/structures/').replace(
        '= "pseudo/', f'= "{TINY.parent}/pseudo/')
    good = tmp_path / "good.toml"
    good.write_text(text + '\n[timeodd]\nempty_bands = 80\nclosure = "none"\n')
    assert config.load(good).timeodd == {"empty_bands": 80, "closure": "none"}
    assert config.load(TINY).timeodd is None
    for bad, what in (('empty_bands = -3', "empty_bands = -3"), ('closure = "sum"', "closure = 'sum'"),
                      ('empty = 3', "empty")):
        f = tmp_path / "bad.toml"
        f.write_text(text + f"\n[timeodd]\n{bad}\n")
        with pytest.raises(InputFileError, match=what):
            config.load(f)


@pytest.fixture(scope="module")
def time_odd_run(tiny_run, tmp_path_factory):
    """``dfptmag run --q K --q=-K --time-odd --empty-bands 40`` on a copy of the session's tiny run:
    the q-runs are found done, only the two empty-state pw.x runs start. Returns (stdout, file)."""
    import shutil
    import subprocess
    import sys
    from conftest import TINY
    runner, _ = tiny_run
    run = tmp_path_factory.mktemp("time_odd") / "run"
    for part in ("pseudo", "scf", "q_K", "q_-K"):
        shutil.copytree(runner.run_dir / part, run / part, ignore=shutil.ignore_patterns(".dfptmag.lock"))
    p = subprocess.run([sys.executable, "-m", "dfptmag.cli", "run", str(TINY), "--q", "K", "--q=-K", "--time-odd",
                        "--empty-bands", "40", "--run-dir", str(run), "--no-snapshots", "--quiet"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    assert "QE steps run: 2," in p.stdout, p.stdout              # the two empty-state runs only
    return p.stdout, run / "dfptmag.h5"


@pytest.mark.qe
def test_time_reversal_between_k_and_minus_k(time_odd_run):
    """Two independent ph.x runs and two independent empty-state runs at K and −K: the charge of
    the ħω term, n[−X_K + X_{−K}^†], cancels and its spin, m[−X_K + X_{−K}^†], is −2 m[X_K]:
    n[X_{−K}] = conj n[X_K], m[X_{−K}] = −conj m[X_K]. Yardstick: the one-sided amplitude's own
    residual of the same law between the two ph.x runs (ph.x's convergence), times 10."""
    from dfptmag.results.qfile import read_q
    out, h5 = time_odd_run
    a, b = read_q(h5, "K"), read_q(h5, "-K")
    X, Y = a["time_odd/pattern_cell_integral"], b["time_odd/pattern_cell_integral"]
    S, P = a["patterns/cell_integral"], b["patterns/cell_integral"]
    eps_one = np.abs(P[:, 0] - S[:, 0].conj()).max() / np.abs(S[:, 0]).max()
    charge = np.abs(-X[:, 0] + Y[:, 0].conj()).max() / np.abs(X[:, 0]).max()
    spin_law = np.abs(Y[:, 1:] + X[:, 1:].conj()).max() / np.abs(X[:, 1:]).max()
    spin_sum = -X[:, 1:] + Y[:, 1:].conj()
    print(f"K/−K: ħω-term charge cancels to {charge:.1e}, spin law {spin_law:.1e}; one-sided charge "
          f"law between the runs {eps_one:.1e}")
    assert charge <= max(10 * eps_one, 1e-6) and spin_law <= max(10 * eps_one, 1e-6)
    assert np.abs(spin_sum + 2 * X[:, 1:]).max() <= max(10 * eps_one, 1e-6) * np.abs(X[:, 1:]).max()
    assert np.abs(X[:, 1:]).max() > 1e3 * spin_law * np.abs(X[:, 1:]).max()      # not trivially
    # per unit velocity, the stored coefficient is −2iħ m[X] in μB per (m/s)
    from dfptmag.analysis.timeodd import HBAR_RY_S_PER_BOHR_M
    assert np.allclose(a["time_odd/pattern_per_velocity"], -2j * X[:, 1:] * HBAR_RY_S_PER_BOHR_M, rtol=1e-14)
    # modes: equal RMS at K and −K, finite for every mode (ω > 0 at K)
    for key in ("time_odd/mode_rms_inplane", "time_odd/mode_rms_outofplane"):
        assert np.all(np.isfinite(a[key]))
    tot_a = np.hypot(a["time_odd/mode_rms_inplane"], a["time_odd/mode_rms_outofplane"])
    tot_b = np.hypot(b["time_odd/mode_rms_inplane"], b["time_odd/mode_rms_outofplane"])
    assert np.allclose(tot_a, tot_b, rtol=1e-3, atol=1e-6 * tot_a.max())
    assert "time-odd spin response" in out and "one-sided RMS" in out


@pytest.mark.qe
def test_mode_time_odd_is_the_velocity_times_the_pattern_response(time_odd_run):
    """The mode peak is −2i ħω_ν Σ_μ c[ν, μ] m[X_μ] (the pattern response at the mode's own
    frequency and amplitude) and vanishes for no mode; it is smaller than the one-sided amplitude
    by about ħω over the gap."""
    from dfptmag.results.qfile import read_q
    _, h5 = time_odd_run
    a = read_q(h5, "K")
    from dfptmag.kernel import modes as km
    w = a["modes/frequency_meV"] / km.ry_to_mev(1.0)
    peak = -2j * w[:, None] * (a["modes/pattern_coefficients"] @ a["time_odd/pattern_cell_integral"])[:, 1:]
    assert np.allclose(a["time_odd/mode_peak"], peak, rtol=1e-12, atol=0)
    ratio = np.abs(a["time_odd/mode_peak"]).max() / np.abs(a["modes/cell_integral"][:, 1:]).max()
    gap = read_attr(h5, "K", "time_odd", "gap_ry")
    print(f"largest time-odd / largest one-sided per mode: {ratio:.2e}; ħω_max/gap = {w.max() / gap:.2e}")
    assert 0.01 * w.max() / gap < ratio < 100 * w.max() / gap


def read_attr(h5, label, group, name):
    import h5py
    with h5py.File(h5) as f:
        return f["q"][label][group].attrs[name]


@pytest.mark.qe
def test_selection_rule_at_k(time_odd_run):
    """Velocity and displacement transform alike under the crystal's operations, and the time-odd
    magnetization is an axial vector like the one-sided one: the paper's rule at K holds for it
    too (σ_h: modes whose W moves out of plane carry in-plane δm_odd, modes whose W moves in plane
    carry δm_z,odd)."""
    from dfptmag.results.qfile import read_q
    _, h5 = time_odd_run
    a = read_q(h5, "K")
    w = a["modes/displacement_bohr"][:, 0, :]                    # W is atom 0
    w_out = np.abs(w[:, 2]) > 10 * np.linalg.norm(w[:, :2], axis=1)
    w_in = np.linalg.norm(w[:, :2], axis=1) > 10 * np.abs(w[:, 2])
    inp, outp = a["time_odd/mode_rms_inplane"], a["time_odd/mode_rms_outofplane"]
    assert w_out.any() and w_in.any()
    assert np.all(inp[w_out] > 100 * outp[w_out]) and np.all(outp[w_in] > 100 * inp[w_in])


def _kkp_workflow(tmp, empty_bands: int):
    """The tiny workflow with absolute paths, the path K → K′, no dispersion, and [timeodd]."""
    import re
    from conftest import TINY
    text = TINY.read_text().replace('"../structures/', f'"{TINY.parent.parent}/structures/').replace(
        '= "pseudo/', f'= "{TINY.parent}/pseudo/')
    text = re.sub(r"\[dispersion\].*?(?=\[parallel\])", "", text, flags=re.S)
    text = re.sub(r"\[interpolation\].*", "", text, flags=re.S)
    text = text.replace('path = "GMKG"', 'path = "KKp"').replace("npoints = 7 ", "npoints = 2 ")
    p = tmp / "kkp.toml"
    p.write_text(text + f'\n[timeodd]\nempty_bands = {empty_bands}\nclosure = "kinetic"\n')
    return p


@pytest.mark.qe
def test_bands_carry_the_time_odd_rms(time_odd_run, tmp_path):
    """``dfptmag bands`` on K → K′ with [timeodd], from the run above (every QE step found done,
    the empty states included): bands.h5 holds the time-odd RMS beside the one-sided one, equal
    to dfptmag.h5's per mode, equal at K and K′ (time reversal), and the Fig. 3-style figure of
    the time-odd response is written."""
    import shutil
    import subprocess
    import sys
    from dfptmag.results.bandsfile import read
    from dfptmag.results.qfile import read_q
    _, h5 = time_odd_run
    run = tmp_path / "run"
    shutil.copytree(h5.parent, run, ignore=shutil.ignore_patterns(".dfptmag.lock", "*.h5"))
    wf = _kkp_workflow(tmp_path, 40)
    p = subprocess.run([sys.executable, "-m", "dfptmag.cli", "bands", str(wf), "--direct", "--run-dir", str(run),
                        "--quiet", "--format", "png"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "QE steps run: 0," in p.stdout, p.stdout
    b = read(run / "bands.h5")
    assert (run / "bands_magnetization_time_odd.png").is_file()
    k = read_q(h5, "K")
    order = np.argsort(k["modes/frequency_meV"])
    assert np.allclose(b["modes/time_odd_rms_inplane"][0], k["time_odd/mode_rms_inplane"][order], rtol=1e-12)
    tot = np.hypot(b["modes/time_odd_rms_inplane"], b["modes/time_odd_rms_outofplane"])
    assert np.allclose(tot[0], tot[1], rtol=1e-3, atol=1e-6 * tot.max())
    assert b["attrs"]["time_odd_empty_bands"] == 40


@pytest.mark.qe
def test_selection_rule_at_gamma(band_run, tmp_path):
    """At Γ (D3h) a uniform δm_odd needs a mode in an axial-vector representation: only the E″
    pair (Se layers sliding against each other in plane, W at rest) carries one, in plane; the
    A1′, E′ and A2″ optical modes carry none (their cell integrals vanish to the noise of the
    run). From the band run's Γ (all nine patterns) and 40 empty states."""
    import shutil
    from conftest import TINY
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    from dfptmag.analysis.timeodd import attach_if_present
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    run = tmp_path / "run"
    for part in ("pseudo", "scf", "q_G"):
        shutil.copytree(band_run["run_dir"] / part, run / part, ignore=shutil.ignore_patterns(".dfptmag.lock"))
    wf = config.load(TINY)
    wf.timeodd = {"empty_bands": 40, "closure": "kinetic"}
    Runner(wf, run, progress=False).empty_states(run / "q_G", "gamma")
    r = analyze_qrun(run / "q_G", AnalysisOptions(realspace=False))
    assert attach_if_present(r, run / "q_G")
    U = r["displacement_bohr"]
    peak = np.abs(r["time_odd_mode_cell_integral"])                 # (nmode, 3), NaN: ω ≤ 0
    optical = r["frequency_ry"] > r["frequency_ry"].max() * 0.2
    w_still = np.linalg.norm(U[:, 0], axis=1) < 1e-3 * np.linalg.norm(U, axis=(1, 2))
    se_inplane = np.abs(U[:, 1:, 2]).max(axis=1) < 1e-3 * np.abs(U[:, 1:, :2]).max(axis=(1, 2))
    antiphase = np.linalg.norm(U[:, 1] + U[:, 2], axis=1) < 1e-3 * np.linalg.norm(U[:, 1], axis=1)
    e2 = optical & w_still & se_inplane & antiphase
    assert e2.sum() == 2, (km_cm1(r), e2)
    big = np.nanmax(peak[e2][:, :2])
    assert big > 0 and np.all(peak[e2][:, 2] < 1e-3 * big)
    others = optical & ~e2
    assert others.sum() == 4
    print(f"Γ: E″ in-plane δm_odd {big:.2e} μB; largest of the other optical modes {np.nanmax(peak[others]):.1e}")
    assert np.nanmax(peak[others]) < 2e-3 * big
    # acoustic limit: a rigid translation carries no time-odd spin (Galilean invariance; the
    # non-local pseudopotential's remainder is below DFPT's acoustic-sum-rule noise)
    from dfptmag.kernel import modes as km
    X = r["time_odd_pattern_cell_integral"]
    nat = len(r["symbols"])
    for a in range(3):
        u = np.zeros(3 * nat)
        u[a::3] = 1.0
        xt = km.pattern_coefficients(r["pattern_vectors"], u[None, :])[0] @ X
        assert np.abs(xt[1:]).max() < 3e-3 * np.abs(X[:, 1:]).max(), (a, xt)


def km_cm1(r):
    from dfptmag.kernel import modes as km
    return km.ry_to_cm1(r["frequency_ry"]).round(1).tolist()


@pytest.mark.qe
def test_local_engine_carries_the_time_odd_response(time_odd_run, tmp_path):
    """``dfptmag bands --engine local`` with [timeodd] on the run above: every task (the q's
    common part with its empty states, the patterns, the gathers) is found done, and the bands
    task writes the same time-odd RMS as the direct route."""
    import shutil
    import subprocess
    import sys
    from dfptmag.results.bandsfile import read
    from dfptmag.results.qfile import read_q
    _, h5 = time_odd_run
    run = tmp_path / "run"
    shutil.copytree(h5.parent, run, ignore=shutil.ignore_patterns(".dfptmag.lock", "*.h5"))
    wf = _kkp_workflow(tmp_path, 40)
    wf.write_text(wf.read_text() + '\n[cluster]\nlauncher = "mpirun -np {nproc}"\n')
    p = subprocess.run([sys.executable, "-m", "dfptmag.cli", "bands", str(wf), "--engine", "local", "--run-dir",
                        str(run), "--format", "png"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr + p.stdout
    b = read(run / "bands.h5")
    k = read_q(h5, "K")
    order = np.argsort(k["modes/frequency_meV"])
    assert np.allclose(b["modes/time_odd_rms_outofplane"][0], k["time_odd/mode_rms_outofplane"][order], rtol=1e-12)


@pytest.mark.qe
def test_time_odd_snapshot(time_odd_run, tmp_path):
    """The time-odd field of a mode: its cell average × Ω equals the G = 0 peak (two independent
    routes: FFT-grid field and overlaps), its charge is zero, and the snapshot is drawn; a
    pattern has no frequency, hence no time-odd snapshot."""
    from dfptmag.analysis.snapshot import load
    from dfptmag.errors import InputFileError
    from dfptmag.jobs.snapshot import run_snapshot
    _, h5 = time_odd_run
    amp = load(h5, "K", mode=6, kind="time-odd")
    avg = amp.field.mean(axis=(1, 2, 3)) * amp.omega_bohr3
    assert np.abs(amp.field[0]).max() == 0
    assert np.abs(avg[1:] - amp.cell_integral[1:]).max() <= 1e-8 * np.abs(amp.cell_integral).max()
    files = run_snapshot(h5, "K", mode=6, formats=("png",), outdir=tmp_path, kind="time-odd")
    assert [f.name for f in files] == ["snapshot_K_mode6_time_odd_t0.000.png"]
    with pytest.raises(InputFileError, match="a pattern has no frequency"):
        load(h5, "K", pattern=3, kind="time-odd")
    with pytest.raises(InputFileError, match="no time-odd field"):
        _no_time_odd(h5, tmp_path)


def _no_time_odd(h5, tmp_path):
    """A results file without the time_odd group: the time-odd snapshot is refused in one line."""
    import shutil
    import h5py
    from dfptmag.analysis.snapshot import load
    plain = tmp_path / "plain.h5"
    shutil.copy(h5, plain)
    with h5py.File(plain, "a") as f:
        del f["q"]["K"]["time_odd"]
    load(plain, "K", mode=6, kind="time-odd")


@pytest.mark.qe
def test_structure_factor_of_the_time_odd_response(time_odd_run, tmp_path):
    """The physical spin sector of S(Q, ω) from the time-odd amplitudes (``sqw --time-odd``): at
    Q = K its amplitudes are the mode peaks −2iħω m[X·U] (FFT of the field at G = 0 against the
    overlaps' cell integral), it has no charge, each Stokes line of S^{xx} weighs
    (1 + n_B)|A^x|², and its files say which sector they hold."""
    import h5py
    from dfptmag.jobs.sqw import run_sqw
    from dfptmag.kernel import structure_factor as sf
    from dfptmag.results.qfile import read_q
    _, h5 = time_odd_run
    res, paths = run_sqw(h5, kind="cut", at="K", outdir=tmp_path, channels=["inplane"], formats=("png",),
                         sector="time-odd", temperature=300.0)
    k = read_q(h5, "K")
    A = res.amplitude[0]
    assert np.all(A[:, 0] == 0)
    peak = k["time_odd/mode_peak"]
    assert np.abs(A[:, 1:] - peak).max() <= 1e-8 * np.abs(peak).max()
    n_b = sf.bose(k["modes/frequency_meV"], 300.0)
    stokes = res.line_energy[0] > 0
    want = ((1 + n_b) * np.abs(A[:, 1]) ** 2)
    got = res.line_weight[0][stokes][:, 1, 1].real
    assert np.allclose(np.sort(got), np.sort(want), rtol=1e-12)
    with h5py.File(paths[0]) as f:
        assert f.attrs["sector"] == "time-odd" and "time-odd" in f.attrs["object"]
    assert any(p.name == "sqw_cut_time_odd_K_inplane.png" for p in paths)
    one, _ = run_sqw(h5, kind="cut", at="K", outdir=tmp_path, channels=["inplane"], formats=())
    assert one.sector == "one-sided" and np.abs(one.amplitude[0][:, 0]).max() > 0


@pytest.mark.qe
def test_interpolated_route_carries_the_time_odd_response(grid_run, band_run, tmp_path):
    """``bands --interpolate`` with [timeodd] from a copy of the grid run (Γ, (1/3, 0), K; the band
    run's dispersion): only the empty states run; X is unfolded and Fourier-interpolated like the
    one-sided response (grid_time_odd.h5) and bands.h5 carries the time-odd RMS. Against the
    independent direct runs: at −K (a grid point plus G, unfolded from K by time reversal: exact)
    and at M (off the grid: the interpolation error, printed and held to 1.5 × measured)."""
    import shutil
    from conftest import TINY
    from dfptmag.analysis import grid as gi
    from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
    from dfptmag.analysis.timeodd import attach_if_present
    from dfptmag.jobs.interpolate import run_interpolated_bands
    from dfptmag.results.bandsfile import read
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    run = tmp_path / "run"
    skip = shutil.ignore_patterns(".dfptmag.lock", "*.h5")
    shutil.copytree(grid_run.run_dir, run, ignore=skip)
    shutil.copytree(band_run["run_dir"] / "dispersion", run / "dispersion", ignore=skip)
    text = TINY.read_text().replace('"../structures/', f'"{TINY.parent.parent}/structures/').replace(
        '= "pseudo/', f'= "{TINY.parent}/pseudo/')
    wf_path = tmp_path / "odd.toml"
    wf_path.write_text(text + '\n[timeodd]\nempty_bands = 40\nclosure = "kinetic"\n')
    r = run_interpolated_bands(wf_path, run_dir=run, progress=False, figures=("png",), bz_points=0)
    assert (run / "bands_magnetization_time_odd.png").is_file() and (run / "grid_time_odd.h5").is_file()
    b = read(r.output)
    assert np.isfinite(b["modes/time_odd_rms_inplane"]).all()
    g = gi.load(run / "grid_time_odd.h5")
    wf = config.load(wf_path)
    runner = Runner(wf, run, progress=False)
    direct = {}
    for lab in ("-K", "M"):
        runner.empty_states(run / f"q_{lab}", "direct")
        d = analyze_qrun(run / f"q_{lab}", AnalysisOptions(realspace=False))
        assert attach_if_present(d, run / f"q_{lab}")
        direct[lab] = d
    errs = {}
    for lab, d in direct.items():
        Fd = gi.cartesian_fields(d, "time_odd_pattern_cell_integral")
        F = g.evaluate(d["q_crystal"])
        errs[lab] = (np.linalg.norm(F[..., 1:] - Fd[..., 1:], axis=-1).max()
                     / np.linalg.norm(Fd[..., 1:], axis=-1).max())
    print(f"time-odd X interpolated on 3×3: −K {errs['-K']:.1e}, M {errs['M']:.3f} (largest per displacement)")
    assert errs["-K"] <= 1e-3
    assert errs["M"] <= 1.5 * TIME_ODD_M_ERROR


# measured on the tiny run (40 empty states, kinetic closure): 0.670 of the largest |m[X]| per
# displacement at M from the 3×3 grid, against 0.16 for the one-sided δm (tests/test_grid.py)
TIME_ODD_M_ERROR = 0.670
