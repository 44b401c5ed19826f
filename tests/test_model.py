"""The localized-level model: general 2×2 formulas against closed forms and exact laws."""
import subprocess
import sys

import numpy as np
import pytest

from dfptmag.kernel.pauli import SIGMA
from dfptmag.model import closed_forms as cf
from dfptmag.errors import DfptmagError
from dfptmag.model.core import (Bath, Level, Model, crossover_temperature, frequency_grid,
                                kT_crossover_strong_coupling, paper_moment)


def model(u1=(0.0, 0, 0), c=0.01, u0=0.01, mu=0.0, eps0=0.1, delta=0.01):
    return Model(Level(eps0, mu=mu), Bath(c=c), u0, u1, delta)


@pytest.fixture(scope="module")
def grid():
    return frequency_grid(model())


@pytest.mark.parametrize("kT", [0.3, 5.0, 20.0])
@pytest.mark.parametrize("c", [0.001, 0.01])
def test_general_equals_closed_form_u1_x(grid, kT, c):
    m = model((0.01, 0, 0), c)
    G = m.green(grid, kT)
    Gc, g_int, g_free = cf.green_u1_x(m, grid, kT)
    assert np.abs(G - Gc).max() <= 1e-10 * np.abs(G).max()
    M, Mc = m.moment(grid, kT), cf.moment_u1_x(m, grid, kT)
    assert np.allclose(M[1:], 0, atol=1e-14)
    # relative to the occupied spectral weight whose branches cancel in M
    weight = np.trapezoid(np.abs(np.imag(g_int)) + np.abs(np.imag(g_free)), grid) / np.pi
    assert abs(M[0] - Mc) <= 1e-10 * weight
    if kT < 1:
        assert abs(M[0] - Mc) <= 1e-10 * abs(Mc)


@pytest.mark.parametrize("kT", [1.0, 10.0])
def test_general_equals_closed_form_u1_xz(grid, kT):
    m = model((0.01, 0, 0.01))
    G = m.green(grid, kT)
    Gc, _ = cf.green_u1_xz(m, grid, kT)
    assert np.abs(G - Gc).max() <= 1e-10 * np.abs(G).max()
    M, Mc = m.moment(grid, kT), cf.moment_u1_xz(m, grid, kT)
    assert abs(M[0] - Mc) <= 1e-10 * abs(Mc) and abs(M[2] - Mc) <= 1e-10 * abs(Mc)
    assert abs(M[1]) < 1e-14


def test_charge_coupling_only_keeps_spin_degeneracy(grid):
    m = model((0, 0, 0))
    for kT in (1.0, 10.0):
        sig = m.self_energy(grid, kT)
        s1 = 0.5 * np.einsum("aji,wij->wa", SIGMA[1:], sig)
        assert np.abs(s1).max() == 0.0                      # Σ1 = 0 exactly
        for axis in ((0, 0, 1), (1, 0, 0), (1, 1, 1)):
            up, dn = m.spin_dos(grid, kT, axis)
            assert np.array_equal(up, dn)
        assert np.abs(m.moment(grid, kT)).max() < 1e-15
        assert np.abs(m.moment_matsubara(kT)).max() < 1e-15


def test_spin_coupling_only_gives_no_spin_self_energy(grid):
    """u0 = 0 with u1_q × u1_{−q} = 0 (q-independent u1): Σ1 = 0."""
    m = model((0.004, -0.007, 0.01), u0=0.0)
    sig = m.self_energy(grid, 5.0)
    s1 = 0.5 * np.einsum("aji,wij->wa", SIGMA[1:], sig)
    s0 = 0.5 * np.einsum("ii->", np.eye(2)) * sig[:, 0, 0]
    assert np.abs(s1).max() <= 1e-14 * np.abs(s0).max()


@pytest.mark.parametrize("u1", [(0, 0, 0), (0.01, 0, 0), (0.01, 0, 0.01)])
def test_spectral_sum_rule(grid, u1):
    """∫ Tr ρ dω = 2 up to the Lorentzian tails (width δ) outside the ±W window: 2·2δ/(πW)."""
    m = model(u1)
    W = 40.0
    for kT in (1.0, 20.0):
        total = np.trapezoid(m.dos(grid, kT), grid)
        assert abs(total - 2.0) <= 2 * 2 * m.delta / (np.pi * W) + 1e-4


def test_real_axis_moment_converges_to_matsubara():
    """Finite δ on the real axis against the exact δ → 0 Matsubara sum."""
    errs = []
    for delta in (0.02, 0.01, 0.005):
        m = model((0.01, 0, 0), delta=delta)
        w = frequency_grid(m)
        errs.append(abs(m.moment(w, 2.0)[0] - m.moment_matsubara(2.0)[0]))
    assert errs[2] < errs[1] < errs[0]
    assert errs[2] < 0.02 * abs(m.moment_matsubara(2.0)[0])


def test_particle_hole_symmetry_at_mu_equal_eps0():
    m = model((0.01, 0, 0), mu=0.1)
    for kT in (0.1, 3.0):
        assert np.abs(m.moment_matsubara(kT)).max() < 1e-13


def test_paper_statements_on_dos(grid):
    """Fig. 2: with u1 = 0 the peak splits into two placed symmetrically about ε0, the
    splitting grows with temperature and with decreasing velocity."""
    def peaks(m, kT):
        d = m.dos(grid, kT)
        i = np.flatnonzero((d[1:-1] > d[:-2]) & (d[1:-1] > d[2:])) + 1
        top = i[np.argsort(d[i])[-2:]]
        return np.sort(grid[top])
    split = {}
    for c in (0.01, 0.001):
        for kT in (1.0, 10.0):
            lo, hi = peaks(model((0, 0, 0), c), kT)
            assert abs((lo + hi) / 2 - 0.1) < 5e-3
            split[c, kT] = hi - lo
    assert split[0.01, 10.0] > split[0.01, 1.0] and split[0.001, 1.0] > split[0.01, 1.0]


def test_moment_grows_with_slower_phonons():
    """Figs. 5/7: |M| larger for lower velocity; in this model M keeps the sign of ε0 − μ."""
    Ms = [model((0.01, 0, 0.01), c).moment_matsubara(5.0)[0] for c in (0.001, 0.005, 0.01, 0.05)]
    assert Ms[0] > Ms[1] > Ms[2] > Ms[3] > 0


def test_crossover_root_bracketing():
    grid = np.geomspace(0.1, 30, 40)
    assert abs(crossover_temperature(lambda t: np.log(t / 7.3), grid) - 7.3) < 1e-8
    assert crossover_temperature(lambda t: 1.0 / t, grid) is None


def test_printed_eq14_is_not_the_model_moment(grid):
    """The paper's Eq. 14 as printed (dω/4π) against the moment of its own Eq. 13 (dω/2π) with
    the normalised bath: the printed form changes sign (from − to + at a c-dependent T_xo) and
    tends to 1/8 at high T, where the consistent moment vanishes and never changes sign. The
    real-axis printed form (δ = 0.01 meV) agrees with the δ-free ¼[f(ε0) − M] to the δ bias."""
    kTs = np.geomspace(0.01, 1.0, 10)
    txo = {}
    for c in (0.001, 0.05):
        m = model((0.01, 0, 0), c)
        w = frequency_grid(m, window=8.0)                    # kT ≤ 1 meV: tails beyond ±8 meV negligible
        printed = lambda t, m=m, w=w: cf.moment_u1_x_as_printed(m, w, t)   # noqa: E731
        txo[c] = crossover_temperature(printed, kTs)
        assert txo[c] is not None and printed(0.5 * txo[c]) < 0 < printed(2 * txo[c])
        consistent = [cf.moment_u1_x(m, w, t) for t in kTs]
        assert np.all(np.array(consistent) > 0)              # no sign change in the model itself
        exact = cf.printed_eq14_delta_free(m, 0.3)
        assert printed(0.3) == pytest.approx(exact, abs=2e-3)
    wide = frequency_grid(m)
    assert cf.moment_u1_x_as_printed(m, wide, 30.0) == pytest.approx(0.125, abs=1e-3)
    assert abs(cf.moment_u1_x(m, wide, 30.0)) < 1e-4 * max(consistent)
    assert txo[0.001] > 2 * txo[0.05]                        # c-dependent


def test_printed_eq14_delta_free_crossover():
    """δ-free T_xo of the printed Eq. 14 with the normalised bath (docs/tutorial-model.md numbers): 0.0844 and
    0.0141 meV for c = 0.001 and 0.05 (the δ = 0.01 meV real-axis values, 0.084 and 0.034, are
    biased for fast phonons)."""
    got = {}
    for c, grid in ((0.001, (0.06, 0.1)), (0.05, (0.01, 0.02))):
        m = model((0.01, 0, 0), c)
        got[c] = crossover_temperature(lambda t, m=m: cf.printed_eq14_delta_free(m, t, emax=300), grid)
    assert got[0.001] == pytest.approx(0.08442, rel=1e-3)
    assert got[0.05] == pytest.approx(0.01410, rel=1e-3)


# -- the paper convention (printed Eq. 14 reconstructed) ------------------------------------------
VELOCITIES = (0.001, 0.005, 0.01, 0.05)


def paper_model(c, nq=1000, u1=(0.01, 0, 0)):
    return Model(Level(0.1), Bath(c=c, kind="plain", nq=nq), 0.01, u1, 0.1)


def test_paper_convention_is_printed_eq14_with_sign_of_eq12():
    """M_paper = (3M − N)/8 = −(printed Eq. 14) for u1 = u0 x̂, δ-free, any bath."""
    for m in (model((0.01, 0, 0), 0.01), paper_model(0.01)):
        for kT in (0.05, 0.5):
            mats = m.matsubara(kT, emax=500)
            assert paper_moment(mats, (1, 0, 0)) == pytest.approx(
                -cf.printed_eq14_delta_free(m, kT, emax=500), abs=1e-7)   # occupation sum: 5e-9


def test_paper_convention_crossover_is_eps0_over_ln3():
    """Strong coupling (plain sum over 1000 q-points): the dressed channel is half occupied and
    −(printed Eq. 14) crosses zero at f(ε0) = ¼, k_BT_xo = ε0/ln 3 = 0.09102 meV, for all four
    velocities of Fig. 5 (spread < 2 %, measured 0.1 %); positive below, negative above."""
    limit = kT_crossover_strong_coupling(0.1)
    assert limit == pytest.approx(0.1 / np.log(3), rel=1e-12)
    txo = []
    for c in VELOCITIES:
        m = paper_model(c)
        f = lambda t, m=m: paper_moment(m.matsubara(t, emax=300), (1, 0, 0))   # noqa: E731
        t = crossover_temperature(f, [0.07, 0.12])
        assert f(0.5 * t) > 0 > f(2 * t)
        txo.append(t)
    txo = np.array(txo)
    assert np.abs(txo / limit - 1).max() < 0.005
    assert (txo.max() - txo.min()) / txo.mean() < 0.02


def test_consistent_model_has_no_crossover():
    """Same velocities, default (consistent) model: M > 0 (sign of ε0 − μ) from 0.02 to 30 meV,
    no crossover; with μ = 0.2 meV > ε0 it is negative throughout."""
    kTs = np.geomspace(0.02, 30, 8)
    for c in VELOCITIES:
        m = model((0.01, 0, 0), c)
        vals = [m.moment_matsubara(t, emax=300)[0] for t in kTs]
        assert min(vals) > 0
        assert crossover_temperature(lambda t: m.moment_matsubara(t)[0], kTs, values=vals) is None  # noqa: B023 (called here)
    m = model((0.01, 0, 0.01), 0.01, mu=0.2)
    assert max(m.moment_matsubara(t, emax=300)[0] for t in kTs) < 0


def test_high_temperature_law():
    """M ≈ ½ f″(ε0)·4u0u1·Σ_q(1 + 2n_q): 1/T² decay (M(10)/M(30) = 9.00 for c = 0.05), amplitude
    ∝ 1/c, sign of ε0 − μ. Measured: 0.66 % (c = 0.001) and 0.01 % (c = 0.05) at k_BT = 30 meV."""
    M = {}
    for c, tol in ((0.001, 0.01), (0.05, 5e-4)):
        m = model((0.01, 0, 0.01), c)
        for kT in (10.0, 30.0):
            M[c, kT] = m.moment_matsubara(kT)
            hi = cf.high_T_moment(m, kT)
            assert np.allclose(M[c, kT], hi, rtol=tol * (30 / kT) ** 2, atol=0)
    assert M[0.05, 10.0][0] / M[0.05, 30.0][0] == pytest.approx(9.0, abs=0.01)
    assert M[0.001, 30.0][0] / M[0.05, 30.0][0] == pytest.approx(50.0, rel=0.01)
    neg = model((0.01, 0, 0), 0.01, mu=0.2)
    assert neg.moment_matsubara(20.0)[0] < 0 and cf.fermi_second_derivative(0.1, 0.2, 20.0) < 0


# -- self-consistent Born (Migdal) ----------------------------------------------------------------
def test_scba_first_iteration_is_eq11a():
    m = model((0.1, 0, 0.1), 0.001, u0=0.1)
    for kT in (0.02, 0.5):
        first = m.scba(kT, emax=300, first_only=True)
        N = len(first) // 2
        z = 1j * (2 * np.arange(-N, N) + 1) * np.pi * kT
        eq11 = m.sigma_tilde(z, kT)
        nz = np.abs(eq11) > 0
        assert np.array_equal(nz, np.abs(first) > 1e-300)            # same (diagonal) structure
        assert np.abs(first[nz] / eq11[nz] - 1).max() < 1e-8          # measured ≈ 3e-9 (FFT)


def test_scba_loop_is_the_matsubara_convolution():
    """The FFT exchange loop against the plain double sum −kT Σ_m K(iν_m) G(iω_n − iν_m) for a
    dressed, spin-dependent G (the converged self-consistent one), small window."""
    m = model((0.1, 0, 0.1), 0.01, u0=0.1)
    kT, emax = 0.5, 40.0
    g_in, _ = m.scba(kT, emax=emax)
    N = len(g_in) // 2
    n_ext = np.arange(-2 * N, 2 * N)
    z = 1j * (2 * n_ext + 1) * np.pi * kT
    g_ext = np.linalg.inv(z[:, None, None] * np.eye(2) - m.level.matrix())
    g_ext[N:3 * N] = g_in
    loop = m.loop_from_green(g_ext, kT)
    for n in (-N, -1, 0, 3, N - 1):
        direct = np.zeros((2, 2), complex)
        for mm in range(-3 * N, 3 * N + 1):
            k = n - mm
            if -2 * N <= k < 2 * N:
                direct += m.phonon_kernel([2 * np.pi * kT * mm])[0] * g_ext[k + 2 * N]
        direct *= -kT
        assert np.abs(loop[n + N] - direct).max() <= 1e-12 * np.abs(direct).max()


def test_scba_removes_low_T_lobe():
    """u1 = u0(x̂ + ẑ), u0 = 0.1, c = 0.001: the bare moment has a negative lobe below
    k_BT_xo = 0.01857 meV; the self-consistent Born moment is positive throughout."""
    m = model((0.1, 0, 0.1), 0.001, u0=0.1)
    n = np.array([1, 0, 1]) / np.sqrt(2)
    kTs = [0.012, 0.015, 0.025, 0.04]
    bare = np.array([m.moment_matsubara(t, emax=300) @ n for t in kTs])
    assert bare[0] < 0 and bare[1] < 0 and bare[2] > 0
    txo = crossover_temperature(lambda t: m.moment_matsubara(t, emax=300) @ n, kTs, values=bare)
    assert txo == pytest.approx(0.01857, rel=2e-3)
    sc = [m.matsubara(t, emax=300, self_consistent=True) for t in kTs]
    assert min(s.moment @ n for s in sc) > 0.05
    assert all(1 < s.iterations < 100 for s in sc)


def test_scba_is_second_order_close_to_bare_at_weak_coupling():
    """Relative SCBA − bare difference ∝ u0² (measured 2.8 %, 0.73 %, 0.19 %)."""
    d = []
    for u0 in (0.01, 0.005, 0.0025):
        m = model((u0, 0, u0), 0.01, u0=u0)
        b, s = m.moment_matsubara(1.0, emax=300)[0], m.moment_matsubara(1.0, emax=300, self_consistent=True)[0]
        d.append(abs(s - b) / b)
    assert d[0] < 0.04 and d[0] / d[1] == pytest.approx(4, rel=0.1) and d[1] / d[2] == pytest.approx(4, rel=0.1)


# -- CLI --------------------------------------------------------------------------------------------
def _cli(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "dfptmag.cli", "model", *args, "--outdir", str(tmp_path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (("crossover", "--c", "0"), "--c: must be finite and > 0"),
    (("crossover", "--c", "-0.01"), "--c: must be finite and > 0"),
    (("crossover", "--c", "nan"), "--c: must be finite and > 0"),
    (("moment", "--kT", "0"), "--kT: k_BT must be finite and > 0"),
    (("moment", "--kT", "nan,1"), "--kT: k_BT must be finite and > 0"),
    (("moment", "--kT=-1:2:5"), "--kT: k_BT must be finite and > 0"),
    (("moment", "--kT", "1:2:0"), "--kT: empty range"),
    (("moment", "--kT", ""), "--kT: empty list"),
    (("moment", "--c", ","), "--c: empty list"),
    (("dos", "--delta", "0"), "--delta: must be > 0"),
    (("dos", "--delta", "-0.01"), "--delta: must be > 0"),
    (("crossover", "--u0", "nan"), "--u0: must be finite"),
    (("dos", "--self-consistent"), "--self-consistent: only for moment and crossover"),
    (("dos", "--nq", "5"), "--nq: only with --convention paper"),
    (("moment", "--convention", "paper", "--u1", "0.01", "--nq", "0"), "--nq: must be ≥ 1"),
    (("moment", "--u1", "0.01", "--dim", "1"), "--dim: must be ≥ 2"),
])
def test_model_bad_input_one_line(tmp_path, capsys, monkeypatch, args, message):
    """In-process through dfptmag.cli.main (the subprocess path is test_model_cli)."""
    from dfptmag import cli
    monkeypatch.setattr(cli, "_stop_on_sigterm", lambda: None)
    rc = cli.main(["model", *args, "--outdir", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfptmag: error: " + message), out.err
    assert "no sign change" not in out.out and "none" not in out.out


def test_crossover_refuses_nan():
    with pytest.raises(DfptmagError, match="not finite"):
        crossover_temperature(lambda t: np.nan, [1.0, 2.0, 3.0])


def test_matsubara_once_per_kT(tmp_path, monkeypatch):
    """run_model evaluates the Matsubara sum once per (velocity, k_BT) when M keeps its sign."""
    from dfptmag.jobs import model as jobs
    calls = []
    orig = Model.matsubara

    def counted(self, kT, *a, **k):
        calls.append(kT)
        return orig(self, kT, *a, **k)
    monkeypatch.setattr(Model, "matsubara", counted)
    _, txo = jobs.run_model("crossover", u1=(0.01, 0, 0), velocities=(0.01, 0.05), kTs=(0.5, 2.0, 8.0),
                            outdir=tmp_path)
    assert txo == {"c = 0.01": None, "c = 0.05": None}
    assert sorted(calls) == sorted([0.5, 2.0, 8.0] * 2)


def test_paper_dos_like_the_papers_figures(tmp_path):
    """Paper convention, nq = 1 (the normalised bath's strength), δ = 0.1 meV, u1 = u0(x̂ + ẑ),
    c = 0.01, k_BT = 30 meV (Fig. 6): resonances inside ±2.5 meV, DOS of order 1/meV (peaks
    0.5–3/meV); the consistent DOS has ≈ 32/meV delta-like peaks (its caption says so)."""
    from dfptmag.jobs import model as jobs
    data = jobs.run_model("dos", u1=(0.01, 0, 0.01), velocities=(0.01,), kTs=(30.0,), convention="paper",
                          nq=1, window=8.0, outdir=tmp_path)
    tot, up, dn = data[("c = 0.01", 30.0)]
    w = frequency_grid(Model(Level(0.1), Bath(c=0.01), 0.01, (0.01, 0, 0.01), 0.1), window=8.0)
    assert 0.5 < tot.max() < 3.0
    peaks = w[1:-1][(tot[1:-1] > tot[:-2]) & (tot[1:-1] > tot[2:]) & (tot[1:-1] > 0.5)]
    assert 2.0 < np.abs(peaks).max() < 2.5                               # outermost resonances
    assert (tmp_path / "model_dos.png").stat().st_size > 10_000
    cons = jobs.run_model("dos", u1=(0.01, 0, 0), velocities=(0.01,), kTs=(5.0,), window=8.0,
                          outdir=tmp_path / "c")
    assert cons[("c = 0.01", 5.0)][0].max() == pytest.approx(1 / (np.pi * 0.01), rel=0.02)
    assert "delta-like" in jobs.CONSISTENT_DOS_CAPTION


def test_model_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dfptmag.cli", "model", "crossover", "--u1", "0.01,0,1",
                          "--c", "0.01", "--kT", "0.5:20:8", "--outdir", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "T_xo" in out.stdout and "meV" in out.stdout


def test_model_cli_paper_convention(tmp_path):
    out = _cli("crossover", "--convention", "paper", "--u1", "0.01,0,0", "--c", "0.01,0.05",
               "--kT", "0.07,0.12", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    txo = [float(line.split("T_xo =")[1].split()[0]) for line in out.stdout.splitlines()
           if ": T_xo =" in line]
    assert len(txo) == 2 and all(abs(t / (0.1 / np.log(3)) - 1) < 0.005 for t in txo)
    out = _cli("crossover", "--u1", "0.01,0,0", "--c", "0.01", "--kT", "0.05:5:4", tmp_path=tmp_path)
    assert out.returncode == 0 and "none: M does not change sign" in out.stdout
