"""The ``dfptmag model`` jobs: build models, write figures, tables and HDF5."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .core import Bath, Level, Model, crossover_temperature, frequency_grid
from .figures import dos_figure, moment_figure


def _pad3(v):
    v = list(v)
    return tuple(v + [0.0] * (3 - len(v)))


def run_model(what, eps0=0.1, eps1=(0, 0, 0), mu=0.0, u0=0.01, u1=(0, 0, 0), velocities=(0.01,),
              kTs=(1, 5, 10, 15, 20), qc=1.0, dim=3, delta=0.01, window=40.0, xrange=4.0, outdir="model"):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    u1 = _pad3(u1)
    models = {f"c = {c:g}": Model(Level(eps0, _pad3(eps1), mu), Bath(c=c, qc=qc, dim=dim), u0, u1, delta)
              for c in velocities}
    axis = u1 if any(u1) else (0.0, 0.0, 1.0)
    print("units: meV; moment m = Tr(σρ) in μB per electron spin; bath: ω = c q, q in a "
          f"{dim}-D ball of radius {qc}, per-mode normalised; δ = {delta} meV")
    if what == "dos":
        w = frequency_grid(next(iter(models.values())), window=window)
        fig, data = dos_figure(models, kTs, w, spin_axis=axis, xlim=(eps0 - xrange, eps0 + xrange))
        for ext in ("png", "pdf"):
            fig.savefig(outdir / f"model_dos.{ext}", dpi=150)
        with h5py.File(outdir / "model_dos.h5", "w") as f:
            f["omega_meV"] = w
            f.attrs["spin_axis"] = axis
            f.attrs["units"] = "DOS in states/meV; energies in meV"
            for (name, kT), (tot, up, dn) in data.items():
                g = f.create_group(f"{name}/kT={kT:g}")
                g["dos"], g["dos_up"], g["dos_down"] = tot, up, dn
                print(f"{name:>10}  kT = {kT:6.2f} meV  ∫DOS dω = {np.trapezoid(tot, w):.4f}")
        print(f"wrote {outdir / 'model_dos.png'}, .pdf and model_dos.h5")
        return data
    n = np.asarray(axis) / np.linalg.norm(axis)
    curves, txos = {}, {}
    for name, m in models.items():
        curves[name] = (np.asarray(kTs, float), np.array([m.moment_matsubara(kT) @ n for kT in kTs]))
        txos[name] = crossover_temperature(lambda t, m=m: float(m.moment_matsubara(t) @ n), np.asarray(kTs, float))
    if what == "moment":
        fig = moment_figure(curves, f"M along {np.round(n, 3).tolist()} (μB)")
        for ext in ("png", "pdf"):
            fig.savefig(outdir / f"model_moment.{ext}", dpi=150)
        with h5py.File(outdir / "model_moment.h5", "w") as f:
            f.attrs["axis"] = n
            f.attrs["units"] = "kT in meV, M in Bohr magnetons (m = Tr sigma rho)"
            for name, (kT, M) in curves.items():
                f[f"{name}/kT_meV"], f[f"{name}/M_muB"] = kT, M
        shown = list(kTs[:: max(1, len(kTs) // 8)])[:8]
        print(f"{'k_BT (meV)':>10} " + " ".join(f"{t:9.3g}" for t in shown))
        for name, (kT, M) in curves.items():
            print(f"{name:>10} " + " ".join(f"{np.interp(t, kT, M):9.2e}" for t in shown))
        print(f"wrote {outdir / 'model_moment.png'}, .pdf and model_moment.h5")
    for name, txo in txos.items():
        print(f"{name:>10}: T_xo = " + (f"{txo:.6g} meV (k_B T)" if txo is not None
                                          else f"none: M does not change sign for k_BT in [{min(kTs):g}, {max(kTs):g}] meV"))
    return curves, txos
