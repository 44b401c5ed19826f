"""Regenerate the docs' figures from finished runs, with the same code the commands use.

    python3 docs/figures/regenerate.py                       # runs/wse2-tiny and runs/mos2-tiny
    python3 docs/figures/regenerate.py --wse2 path/to/wse2-run --mos2 ''   # WSe2 only

Inputs (make them first; both are cheap on the tiny workflows):

- ``--wse2``: the run directory of ``dfptmag bands`` on the built-in tiny workflow (command 1:
  bands.h5, bz_maps.h5, grid.h5, dispersion/). Gives interpolated_bands_3x3.png (command 1's
  figure), bz_maps_3x3_{inplane,outofplane}.png and the two S(Q, ω) figures.
- ``--mos2``: the run directory of ``dfptmag run workflows/mos2-tiny.toml``. Gives
  mos2_K_mode9_snapshot.png (a copy of its snapshot of mode 9 at K). '' skips it.

Not made here: interpolation_locality.png (benchmarks/bench_interpolation.py),
interpolation_locality_k4.png and interpolation_cusp_k4.png (benchmarks/bench_interpolation_k.py:
runs/bench-interp-k/locality_k4.png, cusp_k4.png),
xsf_export_centred_slice.png (render_xsf_export_slice.py beside this file) and
docs_screenshot.png (tests/test_docs.py). PNGs are stored with an adaptive 256-colour palette
(Pillow), which keeps the repository small; the commands themselves write full-colour files.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _palette(path: Path) -> Path:
    from PIL import Image
    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def wse2(run: Path) -> list[Path]:
    import h5py
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import dfptmag
    from dfptmag.atomic import savefig
    from dfptmag.plot.bands import magnetization_figure
    from dfptmag.plot.bzmap import bz_figure
    from dfptmag.results.bandsfile import read

    b = read(run / "bands.h5")
    out = []
    fig = magnetization_figure(b)
    out.append(savefig(fig, HERE / "interpolated_bands_3x3.png"))
    plt.close(fig)
    with h5py.File(run / "bz_maps.h5") as f:
        q, freq = f["q_crystal"][()], f["frequency_meV"][()]
        branch = f["branch"][()] if "branch" in f else None
        seam = f["branch_seam"][()] if "branch_seam" in f else None
        for key, what, name in (("rms_inplane", "in-plane", "inplane"), ("rms_outofplane", "out-of-plane", "outofplane")):
            fig = bz_figure(q, f[key][()], freq, b["structure/cell_bohr"], what, branch=branch, seam=seam)
            out.append(savefig(fig, HERE / f"bz_maps_3x3_{name}.png", dpi=130))
            plt.close(fig)
    s = dfptmag.sqw(run / "bands.h5")                     # the default Q–ω path, 300 K
    fig = s.plot("inplane")
    out.append(savefig(fig, HERE / "sqw_path_inplane_3x3.png", dpi=150))
    plt.close(fig)
    s = dfptmag.sqw(run / "bands.h5", energy=10.0, extent=3.3)
    fig = s.plot("neutron")
    out.append(savefig(fig, HERE / "sqw_map_neutron_10meV_3x3.png", dpi=150))
    plt.close(fig)
    return out


def mos2(run: Path) -> list[Path]:
    src = run / "snapshots" / "snapshot_K_mode9_t0.000.png"
    if not src.is_file():
        raise SystemExit(f"{src}: not found (run: dfptmag run workflows/mos2-tiny.toml)")
    dst = HERE / "mos2_K_mode9_snapshot.png"
    shutil.copyfile(src, dst)
    return [dst]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wse2", default="runs/wse2-tiny", help="command 1's run directory ('' skips)")
    p.add_argument("--mos2", default="runs/mos2-tiny", help="the tiny MoS2 run directory ('' skips)")
    a = p.parse_args(argv)
    made = []
    if a.wse2:
        made += wse2(Path(a.wse2))
    if a.mos2:
        made += mos2(Path(a.mos2))
    for f in made:
        print(f"wrote {_palette(f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
