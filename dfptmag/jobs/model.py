"""The ``dfptmag model`` jobs: build models, write figures, tables and HDF5.

Two conventions:

* ``consistent`` (default): Eqs. 12/15 with m = Tr σρ, the per-mode normalised 3-D bath, the
  δ-free Matsubara moment. M keeps the sign of ε0 − μ at all T (no crossover).
* ``paper``: the paper's printed Eq. 14 reconstructed (:func:`dfptmag.model.core.paper_moment`):
  overall sign flipped (Eq. 13 swaps the projectors of Eq. 12), the dressed branch with dω/4π,
  and a plain unnormalised sum over ``nq`` q-points (strong coupling); DOS with δ = 0.1 meV and
  the spin axis −û1 (the paper's labels).
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..model.core import (Bath, Level, Model, ModelParameterError, crossover_temperature, fermi,
                   frequency_grid, kT_crossover_strong_coupling, paper_moment)
from ..model.figures import dos_figure, moment_comparison_figure, moment_figure

PAPER_DELTA = 0.1        # meV, broadening of the paper-mode DOS (resonances of order 1/meV)
DEFAULT_DELTA = 0.01
PAPER_NQ = 1000          # q-points of the paper convention's plain sum: strong coupling

CONSISTENT_DOS_CAPTION = (
    "Consistent model (per-mode normalised bath): the coupling is weak and the phonon band only "
    "c·q_c wide, so the side resonances near ε0 ± √m₂ lie outside the band, where Im Σ = 0. They "
    "and the elastic peak are therefore delta-like: their width is the numerical broadening δ, "
    "not a lifetime, and their height ≈ weight/(πδ) (≈ 32/meV for the elastic peak at "
    "δ = 0.01 meV).")


def _pad3(v, name):
    v = [float(x) for x in v]
    if len(v) > 3:
        raise ModelParameterError(name, f"expected at most 3 components, got {len(v)}")
    return tuple(v + [0.0] * (3 - len(v)))


def parse_floats(text, name):
    """'1,2,3' → [1.0, 2.0, 3.0]; one-line error otherwise."""
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ModelParameterError(name, f"expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise ModelParameterError(name, f"empty list {text!r}")
    return vals


def parse_kT(text, name="--kT"):
    """'1,5,10' or 'start:stop:n' (log-spaced); every k_BT finite and > 0, at least one."""
    text = str(text)
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ModelParameterError(name, f"expected start:stop:n, got {text!r}")
        try:
            a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ModelParameterError(name, f"expected start:stop:n with numbers, got {text!r}") from None
        if n < 1:
            raise ModelParameterError(name, f"empty range {text!r} (n = {n})")
        _check_kT([a, b], name)
        vals = list(np.geomspace(a, b, n))
    else:
        vals = parse_floats(text, name)
    _check_kT(vals, name)
    return vals


def _check_kT(vals, name):
    for v in vals:
        if not math.isfinite(v) or v <= 0:
            raise ModelParameterError(name, f"k_BT must be finite and > 0 meV, got {v:g}")


def _check_positive(vals, name):
    if len(vals) == 0:
        raise ModelParameterError(name, "empty list")
    for v in vals:
        if not math.isfinite(v) or v <= 0:
            raise ModelParameterError(name, f"must be finite and > 0, got {v:g}")


def _save(fig, path):
    """Atomic figure write (temporary file in the same directory + os.replace)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=150)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_h5(path, fill):
    import h5py
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".h5")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_models(eps0=0.1, eps1=(0, 0, 0), mu=0.0, u0=0.01, u1=(0, 0, 0), velocities=(0.01,),
                 qc=1.0, dim=3, delta=None, convention="consistent", nq=None):
    if convention not in ("consistent", "paper"):
        raise ModelParameterError("--convention", f"must be consistent or paper, got {convention!r}")
    if nq is not None and convention != "paper":
        raise ModelParameterError("--nq", "only with --convention paper (the consistent bath is "
                                          "normalised per mode)")
    nq = PAPER_NQ if nq is None else int(nq)
    velocities = [float(c) for c in velocities]
    _check_positive(velocities, "--c")
    if delta is None:
        delta = PAPER_DELTA if convention == "paper" else DEFAULT_DELTA
    kind = "plain" if convention == "paper" else "ball"
    u1 = _pad3(u1, "--u1")
    return {f"c = {c:g}": Model(Level(eps0, _pad3(eps1, "--eps1"), mu),
                                Bath(c=c, qc=qc, dim=dim, kind=kind, nq=nq), u0, u1, delta)
            for c in velocities}


def run_model(what, eps0=0.1, eps1=(0, 0, 0), mu=0.0, u0=0.01, u1=(0, 0, 0), velocities=(0.01,),
              kTs=(1, 5, 10, 15, 20), qc=1.0, dim=3, delta=None, window=40.0, xrange=None,
              outdir="model", convention="consistent", nq=None, self_consistent=False):
    kTs = _check_ranges(kTs, window, xrange)
    models = build_models(eps0, eps1, mu, u0, u1, velocities, qc, dim, delta, convention, nq)
    first = next(iter(models.values()))
    u1 = first.u1
    paper = convention == "paper"
    _check_what(what, paper, u1, self_consistent)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    axis = np.asarray(u1 if any(u1) else (0.0, 0.0, 1.0), float)
    axis = axis / np.linalg.norm(axis)
    _print_conventions(first, convention, paper, self_consistent)
    if what == "dos":
        return _dos(models, kTs, window, xrange, outdir, axis, paper, first)
    curves, txos, occ = _moment_curves(models, kTs, axis, paper, self_consistent)
    if what == "moment":
        _write_moment(models, curves, occ, kTs, axis, outdir, convention, self_consistent)
    _print_crossovers(txos, kTs, paper, first)
    return curves, txos


def _check_ranges(kTs, window, xrange):
    """The temperatures as floats (at least one, each finite and > 0); window and xrange > 0."""
    kTs = [float(t) for t in kTs]
    if not kTs:
        raise ModelParameterError("--kT", "empty list")
    _check_kT(kTs, "--kT")
    _check_positive([window], "--window")
    if xrange is not None:
        _check_positive([xrange], "--xrange")
    return kTs


def _check_what(what, paper, u1, self_consistent):
    """Refuse the combinations of command and options that have no meaning."""
    if paper and not any(u1) and what != "dos":
        raise ModelParameterError("--u1", "the paper convention needs u1 ≠ 0 (its branches are "
                                          "the spin channels along u1)")
    if self_consistent and what == "dos":
        raise ModelParameterError("--self-consistent", "only for moment and crossover (Matsubara "
                                                       "axis); the DOS uses the bare self-energy")


def _print_conventions(first, convention, paper, self_consistent):
    """The units, the bath and the convention the numbers below are in."""
    print(f"units: meV; moment m = Tr(σρ) in μB per electron spin; bath: {first.bath.describe()}; "
          f"δ = {first.delta:g} meV; convention: {convention}"
          + ("; self-consistent Born (Migdal) self-energy" if self_consistent else ""))
    if paper:
        print("paper convention: M_paper = ¼ n_+ − ½ n_− = ¼[M − f(ε0)] for u1 = u0 x̂ (printed "
              "Eq. 14: dressed branch with dω/4π; sign flipped because Eq. 13 swaps the "
              f"projectors of Eq. 12); bath: plain sum over nq = {int(first.bath.nq)} q-points")


def _moment_curves(models, kTs, n, paper, self_consistent):
    """Per model: the moment along ``n`` at every k_BT (one Matsubara sum per k_BT), the level's
    occupation and the crossover temperature. Returns (curves, txos, occ) keyed by model name."""
    curves, txos, occ = {}, {}, {}
    for name, m in models.items():
        mats = [m.matsubara(kT, self_consistent=self_consistent) for kT in kTs]     # once per kT
        if paper:
            vals = np.array([paper_moment(s, n) for s in mats])

            def fun(t, m=m):
                return paper_moment(m.matsubara(t, self_consistent=self_consistent), n)
        else:
            vals = np.array([s.moment @ n for s in mats])

            def fun(t, m=m):
                return float(m.moment_matsubara(t, self_consistent=self_consistent) @ n)
        curves[name] = (np.asarray(kTs), vals)
        occ[name] = np.array([s.occupation for s in mats])
        txos[name] = crossover_temperature(fun, kTs, values=vals)
    return curves, txos, occ


def _write_moment(models, curves, occ, kTs, n, outdir, convention, self_consistent):
    """model_moment.png/.pdf/.h5 and a table of M at up to eight of the temperatures; in the
    paper convention also the comparison with the consistent model."""
    paper = convention == "paper"
    label = "M_paper" if paper else "M"
    fig = moment_figure(curves, f"{label} along {np.round(n + 0.0, 3).tolist()} (μB)")
    fig.axes[0].set_title("paper convention: printed Eq. 14 with the sign of Eq. 12, plain q-sum"
                          if paper else "consistent model: Eq. 12, m = Tr σρ, normalised bath",
                          fontsize=10)
    for ext in ("png", "pdf"):
        _save(fig, outdir / f"model_moment.{ext}")

    def fill(f):
        f.attrs["axis"] = n
        f.attrs["convention"] = convention
        f.attrs["self_consistent"] = bool(self_consistent)
        f.attrs["units"] = "kT in meV, M in Bohr magnetons (m = Tr sigma rho)"
        for name, (kT, M) in curves.items():
            f[f"{name}/kT_meV"], f[f"{name}/M_muB"] = kT, M
            f[f"{name}/occupation"] = occ[name]
    _write_h5(outdir / "model_moment.h5", fill)
    shown = list(kTs[:: max(1, len(kTs) // 8)])[:8]
    print(f"{'k_BT (meV)':>10} " + " ".join(f"{t:9.3g}" for t in shown))
    for name, (kT, M) in curves.items():
        print(f"{name:>10} " + " ".join(f"{np.interp(t, kT, M):9.2e}" for t in shown))
    print(f"wrote {outdir / 'model_moment.png'}, .pdf and model_moment.h5")
    if paper:
        _comparison(models, curves, kTs, n, outdir, self_consistent)


def _print_crossovers(txos, kTs, paper, first):
    """Each model's crossover temperature (or why there is none); in the paper convention also
    its strong-coupling limit."""
    for name, txo in txos.items():
        print(f"{name:>10}: T_xo = " + (f"{txo:.6g} meV (k_B T)" if txo is not None
                                          else f"none: M does not change sign for k_BT in [{min(kTs):g}, {max(kTs):g}] meV"))
    if paper:
        print(f"strong-coupling limit (n_+ → ½): k_B T_xo = (ε0 − μ)/ln 3 = "
              f"{kT_crossover_strong_coupling(first.level.eps0, first.level.mu):.6g} meV")


def _comparison(models, paper_curves, kTs, n, outdir, self_consistent):
    """Paper-mode curves next to the consistent model's (default bath, same parameters)."""
    consistent = {}
    for name, m in models.items():
        cm = Model(m.level, Bath(c=m.bath.c, qc=m.bath.qc, dim=m.bath.dim), m.u0, m.u1, DEFAULT_DELTA)
        consistent[name] = (np.asarray(kTs),
                            np.array([cm.moment_matsubara(t, self_consistent=self_consistent) @ n
                                      for t in kTs]))
    first = next(iter(models.values()))
    fig = moment_comparison_figure(
        paper_curves, consistent, txo_limit=kT_crossover_strong_coupling(first.level.eps0, first.level.mu),
        titles=(f"paper convention: printed Eq. 14, sign of Eq. 12, plain sum over {int(first.bath.nq)} q",
                "consistent model: Eq. 12, m = Tr σρ, normalised 3-D bath"))
    for ext in ("png", "pdf"):
        _save(fig, outdir / f"model_moment_paper_vs_consistent.{ext}")
    print(f"wrote {outdir / 'model_moment_paper_vs_consistent.png'} and .pdf")
    return consistent


def _resonance_offset(m, kT):
    """√m₂ of the most strongly coupled spin channel, λ_max = (|u0| + |u1|)², ε1 = 0 estimate."""
    from ..model.closed_forms import second_moment
    lam = (abs(m.u0) + float(np.linalg.norm(m.u1))) ** 2
    return math.sqrt(lam * second_moment(m, kT)) + float(np.linalg.norm(m.level.eps1))


def _dos(models, kTs, window, xrange, outdir, axis, paper, first):
    eps0 = first.level.eps0
    spin_axis = (-axis if paper else axis) + 0.0      # + 0.0: no −0 in labels
    if xrange is None:          # show every resonance: ε0 ± √m₂ of the most strongly coupled channel
        xrange = max(4.0, 1.3 * max(_resonance_offset(m, kT) for m in models.values() for kT in kTs))
        window = max(window, xrange + 20 * first.delta)
    w = frequency_grid(first, window=window)
    if paper:
        strength = "strong coupling" if first.bath.nq > 1 else "= the normalised bath"
        caption = (f"Paper convention: plain sum over nq = {int(first.bath.nq)} q-points ({strength}), "
                   f"δ = {first.delta:g} meV; spin axis −û1, so 'up' is the paper's +σ "
                   "(Eq. 13 swaps the projectors of Eq. 12). The resonances sit near "
                   "ε0 ± √(u² nq ⟨1 + 2n_q⟩): they move out with T and with 1/c.")
        labels = ("spin-up DOS (paper's +σ)", "spin-down DOS (paper's −σ)")
    else:
        caption, labels = CONSISTENT_DOS_CAPTION, ("spin-up DOS", "spin-down DOS")
    title = (f"localized level ({'paper' if paper else 'consistent'} convention): ε0 = {eps0:g} meV, "
             f"u0 = {first.u0:g} meV, u1 = {tuple(round(float(v), 6) for v in first.u1)} meV, "
             f"δ = {first.delta:g} meV; spin axis {np.round(spin_axis, 3).tolist()}")
    fig, data = dos_figure(models, kTs, w, spin_axis=spin_axis, xlim=(eps0 - xrange, eps0 + xrange),
                           title=title, caption=caption, spin_labels=labels)
    for ext in ("png", "pdf"):
        _save(fig, outdir / f"model_dos.{ext}")

    def fill(f):
        f["omega_meV"] = w
        f.attrs["spin_axis"] = spin_axis
        f.attrs["convention"] = "paper" if paper else "consistent"
        f.attrs["units"] = "DOS in states/meV; energies in meV"
        for (name, kT), (tot, up, dn) in data.items():
            g = f.create_group(f"{name}/kT={kT:g}")
            g["dos"], g["dos_up"], g["dos_down"] = tot, up, dn
    _write_h5(outdir / "model_dos.h5", fill)
    inside = np.abs(w - eps0) <= xrange
    for (name, kT), (tot, _up, _dn) in data.items():
        print(f"{name:>10}  kT = {kT:6.2f} meV  ∫DOS dω = {np.trapezoid(tot, w):.4f}  "
              f"max DOS = {tot[inside].max():.3g}/meV")
    print(f"wrote {outdir / 'model_dos.png'}, .pdf and model_dos.h5")
    return data


__all__ = ["run_model", "build_models", "parse_kT", "parse_floats", "fermi"]
