"""Write the pictures, movie and exports of one snapshot (used by ``dfptmag snapshot`` and by
``dfptmag run``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DfptmagError
from ..analysis.snapshot import load, resample, supercell_field

from ..export import FORMATS


def run_snapshot(result, label: str, mode: int | None = None, pattern: int | None = None,
                 cells=(4, 4), t: float = 0.0, plane: str | None = None, formats=("png",),
                 movie: str | None = None, frames: int = 48, outdir=".", grid=None,
                 progress: bool = False, kind: str = "one-sided") -> list[Path]:
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise DfptmagError(f"unknown format(s) {bad}; choose from {', '.join(FORMATS)}")
    amp = load(result, label, mode=mode, pattern=pattern, kind=kind)
    if grid is not None:
        amp.field = resample(amp.field, grid)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    odd = "_time_odd" if kind == "time-odd" else ""
    stem = f"snapshot_{label}_{amp.what.replace(' ', '')}{odd}_t{t:.3f}"
    written = []
    if "png" in formats or "pdf" in formats:
        from ..plot.snapshot import save_snapshot
        written += save_snapshot(amp, outdir / stem, formats, cells, t, plane)
    need_grid = {"xsf", "vtk", "cube"} & set(formats)
    if need_grid:
        from ..constants import BOHR_RADIUS_ANGS
        from ..export import grids
        atoms = grids.supercell_ase(amp, (cells[0], cells[1], 1), t)
        comp = supercell_field(amp.field, amp.q_crystal, (cells[0], cells[1], 1), t)   # per bohr³
        # the layer in the middle of the box (same shift for every mode and time: files overlay)
        shift = grids.centring_shift(amp.cell_bohr, amp.positions_bohr, comp.shape[-1])
        atoms, comp = grids.centre(atoms, comp, shift)
        if "xsf" in formats:
            for c, name in enumerate(("n", "mx", "my", "mz")):
                written.append(grids.write_xsf(outdir / f"{stem}_{name}.xsf", atoms,
                                               comp[c] / BOHR_RADIUS_ANGS ** 3, f"d{name}_per_A3"))
        if "cube" in formats:
            for c, name in enumerate(("n", "mx", "my", "mz")):
                written.append(grids.write_cube(outdir / f"{stem}_{name}.cube", atoms, comp[c]))
        if "vtk" in formats:
            written.append(grids.write_vtk(outdir / f"{stem}.vtk", atoms, comp / BOHR_RADIUS_ANGS ** 3))
            written.append(grids.write_vtk_atoms(outdir / f"{stem}_atoms.vtk", atoms))
    if "h5" in formats:
        from ..export import grids
        written.append(grids.write_h5(outdir / f"{stem}.h5", amp, cells, t))
    if movie:
        from ..plot.snapshot import movie as make_movie
        written.append(make_movie(amp, outdir / f"movie_{label}_{amp.what.replace(' ', '')}{odd}.{movie}",
                                  frames=frames, cells=cells, plane=plane, progress=progress))
    return written


def strongest_modes(result, label: str) -> dict[str, int]:
    """1-based indices of the modes with the largest in-plane and out-of-plane RMS magnetization
    (modes without a zero-point amplitude, NaN: ω ≤ 0, are skipped; none left: empty dict)."""
    import h5py
    with h5py.File(result, "r") as f:       # only the two RMS arrays, not the real-space fields
        m = f["q"][label]["modes"]
        out = {}
        for kind in ("inplane", "outofplane"):
            v = m[f"rms_{kind}"][()]
            if np.isfinite(v).any():
                out[kind] = int(np.nanargmax(v)) + 1
        return out
