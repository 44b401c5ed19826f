"""Command-line interface: a thin layer over the library.

    dfptmag run WORKFLOW.toml       run ld1.x/pw.x/ph.x with δψ capture, then analyze
    dfptmag analyze RUN_DIR         post-process finished q-run directories
    dfptmag capture -- CMD...       run a ph.x command line keeping its δψ buffer
    dfptmag snapshot RESULT.h5      real-space figures, movies and exports of one mode
    dfptmag bands WORKFLOW.toml     magnetization bands along a q path (the paper's Fig. 3)
    dfptmag plot bands BANDS.h5     redraw the band figures without recomputing
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from . import ONE_SIDED_NOTE, __version__
from .errors import DfptmagError
from .export import FORMATS

DEFAULT_WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "wse2-tiny.toml"


def _analyze_dirs(qdirs, out, options, quiet=False):
    from . import results
    from .analysis import analyze_qrun
    from .qrun import read_manifest
    from .report import mode_table
    res = {}
    for qd in qdirs:
        label = read_manifest(qd).get("label") or Path(qd).name
        r = analyze_qrun(qd, options)
        res[label] = r
        if not quiet:
            print(mode_table(label, r))
            print()
    results.write(out, res)
    print(f"wrote {out}")
    return res


def cmd_run(a):
    from .analysis import AnalysisOptions
    from .workflow import config
    from .workflow.runner import Runner
    wf = config.load(a.workflow)
    qpoints = [config.parse_q(q, "--q") for q in a.q] if a.q else None
    patterns = None
    if a.patterns:
        patterns = sorted({int(p) for p in a.patterns.split(",")})
    run_dir = Path(a.run_dir or Path("runs") / wf.name)
    runner = Runner(wf, run_dir, progress=not a.quiet)
    qdirs = runner.run(qpoints, patterns)
    print(f"QE steps run: {len(runner.steps.ran)}, already done: {len(runner.steps.skipped)} "
          f"(run directory {run_dir})")
    opts = AnalysisOptions(realspace=wf.analysis["realspace"], amplitude=wf.analysis["amplitude"],
                           amplitude_bohr=wf.analysis["amplitude_bohr"], progress=not a.quiet)
    out = Path(a.output or run_dir / "dfptmag.h5")
    res = _analyze_dirs(qdirs, out, opts)
    if wf.analysis["realspace"] and not a.no_snapshots:
        from .snapshot_job import run_snapshot, strongest_modes
        for label, r in res.items():
            if "mode_cell_integral" not in r:
                continue
            for kind, mode in strongest_modes(out, label).items():
                for f in run_snapshot(out, label, mode=mode, formats=("png", "pdf"),
                                      outdir=run_dir / "snapshots"):
                    print(f"wrote {f}  (largest {kind.replace('inplane', 'in-plane').replace('outofplane', 'out-of-plane')} magnetization)")


def cmd_analyze(a):
    from .analysis import AnalysisOptions
    from .errors import InputFileError
    from .qrun import MANIFEST, find_qruns
    qdirs = find_qruns(a.run_dir)
    if not qdirs:
        raise InputFileError(a.run_dir, f"no q-run directory ({MANIFEST}) found at or below it")
    opts = AnalysisOptions(realspace=not a.no_field, amplitude=a.amplitude,
                           amplitude_bohr=a.amplitude_bohr, progress=not a.quiet)
    _analyze_dirs(qdirs, a.output, opts)


def cmd_capture(a):
    from .workflow.capture import capture_user_command
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    irr, dwf, drho, qdir = capture_user_command(cmd, a.dir, a.log, redo=a.redo)
    print(f"captured irrep {irr}: {len(dwf)} δψ file(s) in {qdir / 'capture'}"
          + (f", fildrho copy {drho.name}" if drho else ""))


def cmd_bands(a):
    from .bands_job import run_bands
    r = run_bands(a.workflow, path=a.path, npoints=a.npoints, workers=a.workers, run_dir=a.run_dir,
                  output=a.output, progress=not a.quiet, figures=_names(a.format), nproc=a.nproc)
    print(f"QE steps run: {r.steps_ran}, already done: {r.steps_skipped}")
    if not a.quiet:
        from .bands_file import read
        from .report import bands_table
        print(bands_table(read(r.output)))
    print(f"wrote {r.output}")
    for f in r.figures:
        print(f"wrote {f}")
    if r.failures:
        msg = "\n\n".join(f"[{k}] {v}" for k, v in r.failures.items())
        raise DfptmagError(f"{len(r.failures)} job(s) failed; bands.h5 has NaN there "
                           f"(path/computed = False). Rerun the same command to retry them.\n{msg}")


def cmd_plot(a):
    from .bands_file import read
    from .plot.bands import save_figures
    out = Path(a.outdir) if a.outdir else Path(a.file).parent
    for f in save_figures(read(a.file), out, formats=_names(a.format), stem=Path(a.file).stem):
        print(f"wrote {f}")


def _cells(text):
    try:
        n, m = (int(v) for v in text.lower().split("x"))
        return n, m
    except ValueError:
        raise argparse.ArgumentTypeError(f"cells must look like 4x4, not {text!r}") from None


def _grid(text):
    try:
        g = tuple(int(v) for v in text.split(","))
        assert len(g) == 3
        return g
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f"grid must look like 36,36,108, not {text!r}") from None


def cmd_snapshot(a):
    from .snapshot_job import run_snapshot
    if (a.mode is None) == (a.pattern is None):
        raise DfptmagError("give one of --mode N or --pattern N")
    files = run_snapshot(a.result, a.q, mode=a.mode, pattern=a.pattern, cells=a.cells, t=a.time,
                         plane=a.plane, formats=_names(a.format),
                         movie=a.movie, frames=a.frames, outdir=a.outdir, grid=a.grid,
                         progress=not a.quiet)
    for f in files:
        print(f"wrote {f}")


def _names(text):
    """'png, pdf' -> ['png', 'pdf'] (empty items dropped)."""
    return [f.strip() for f in text.split(",") if f.strip()]


def _floats(text):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}") from None


def _krange(text):
    """'1,5,10' or 'start:stop:n' (log-spaced)."""
    if ":" in text:
        a, b, n = text.split(":")
        return list(np.geomspace(float(a), float(b), int(n)))
    return _floats(text)


def cmd_model(a):
    from .model.jobs import run_model
    run_model(a.what, eps0=a.eps0, eps1=a.eps1, mu=a.mu, u0=a.u0, u1=a.u1, velocities=a.c, kTs=a.kT,
              qc=a.qc, dim=a.dim, delta=a.delta, window=a.window, xrange=a.xrange, outdir=a.outdir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dfptmag",
        description="Phonon-induced magnetization of non-magnetic spin-orbit materials from real "
                    "Quantum ESPRESSO DFPT runs. Reports the " + ONE_SIDED_NOTE + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dfptmag {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run ld1.x, pw.x and ph.x (δψ captured) and analyze",
                       description="Run a declarative workflow: pseudopotentials from ld1.x inputs, "
                                   "pw.x scf (noncolin, lspinorb, nosym, noinv), then per q one "
                                   "only_wfc ph.x run and one recover ph.x run per displacement "
                                   "pattern with the δψ buffer captured. Resumable: finished steps "
                                   "are skipped. Then analyze and write HDF5.")
    r.add_argument("workflow", nargs="?", default=str(DEFAULT_WORKFLOW),
                   help=f"workflow TOML (default: the built-in tiny WSe2 workflow, {DEFAULT_WORKFLOW.name})")
    r.add_argument("--q", action="append", help="q-point: K, K' (= -K; write --q=-K), M, G or crystal 'x,y,z'; repeat for "
                                                "several (default: the workflow's [ph] q)")
    r.add_argument("--patterns", help="comma-separated pattern numbers, 1-based (default: all 3·nat)")
    r.add_argument("--run-dir", help="where QE runs (default: runs/<workflow name>)")
    r.add_argument("-o", "--output", help="HDF5 output (default: <run-dir>/dfptmag.h5)")
    r.add_argument("--no-snapshots", action="store_true",
                   help="skip the snapshot figures of the modes with the largest in-plane and out-of-plane magnetization")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("analyze", help="post-process finished q-run directories",
                       description="Post-process every q-run directory (holding dfptmag-q.json) at or "
                                   "below RUN_DIR. A run made with your own scripts qualifies when "
                                   "it has: the pw.x scf outdir; a ph.x only_wfc=.true. run for the "
                                   "q; one ph.x run per irrep made through 'dfptmag capture' (which "
                                   "writes the manifest); optionally fildrho (oracle) and a final "
                                   "recover run for fildyn. See README.")
    a.add_argument("run_dir")
    a.add_argument("-o", "--output", default="dfptmag.h5", help="HDF5 output (default: dfptmag.h5)")
    a.add_argument("--amplitude", choices=["zero-point", "fixed"], default="zero-point",
                   help="mode amplitude: one phonon quantum sqrt(ħ/2ω) (default) or fixed")
    a.add_argument("--amplitude-bohr", type=float, default=0.01,
                   help="total displacement for --amplitude fixed, bohr (default 0.01)")
    a.add_argument("--no-field", action="store_true", help="skip the real-space field (G = 0 only)")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_analyze)

    c = sub.add_parser("capture", help="run a ph.x command keeping its δψ buffer",
                       description="Run one ph.x command line (one irrep: start_irr = last_irr) and "
                                   "keep its δψ buffer, which ph.x deletes at the end, by hard links "
                                   "made before it starts. Records the capture in DIR/dfptmag-q.json. "
                                   "Example: dfptmag capture --dir qK -- mpirun -np 4 ph.x -nk 4 -in ph.irr3.in")
    c.add_argument("--dir", default=".", help="q-run directory for the manifest and capture/ (default .)")
    c.add_argument("--log", help="ph.x output file (default DIR/ph.irrN.out)")
    c.add_argument("--redo", action="store_true",
                   help="recompute an irrep ph.x already marks done (drops its dynmat.1.N.xml); the "
                        "earlier capture is replaced only once the new one is complete")
    c.add_argument("command", nargs=argparse.REMAINDER, help="-- then the ph.x command line")
    c.set_defaults(func=cmd_capture)
    s = sub.add_parser("snapshot", help="real-space pictures, movies and VESTA/ParaView exports of one mode",
                       description="The induced magnetization and charge of one phonon mode (or one "
                                   "displacement pattern) in real space: Re[δñ(r) e^{i(q·r − ωt)}] over "
                                   "N×M cells at time t (in periods), with the atoms at R⁰ + Re[U e^{i(q·R − ωt)}]. "
                                   "PNG/PDF figures (in-plane δm arrows, δm_z and δn maps), XSF and cube "
                                   "(one file per component), VTK (vector δm + scalar δn, ParaView), HDF5 "
                                   "(raw complex amplitudes), and a GIF/MP4 movie over one period. "
                                   "Reports the " + ONE_SIDED_NOTE + ".")
    s.add_argument("result", help="HDF5 file from 'dfptmag run' or 'dfptmag analyze' (with fields)")
    s.add_argument("--q", default="K", help="q label in the file (default K)")
    s.add_argument("--mode", type=int, help="phonon mode, 1-based, ascending frequency")
    s.add_argument("--pattern", type=int, help="displacement pattern, 1-based (instead of --mode)")
    s.add_argument("--cells", type=_cells, default=(4, 4), help="supercell N x M (default 4x4)")
    s.add_argument("--time", type=float, default=0.0, help="time in periods, 0..1 (default 0)")
    s.add_argument("--plane", default="W", help="element symbol (plane of its first atom), z=<Å>, or avg (default W)")
    s.add_argument("--format", default="png,pdf", help=f"comma list of {', '.join(FORMATS)} (default png,pdf)")
    s.add_argument("--movie", choices=["gif", "mp4"], help="also write one period as a movie")
    s.add_argument("--frames", type=int, default=48, help="movie frames per period (default 48)")
    s.add_argument("--grid", type=_grid, help="Fourier-interpolate to this grid n1,n2,n3 (default: QE's FFT grid)")
    s.add_argument("--outdir", default="snapshots", help="output directory (default snapshots/)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_snapshot)
    bd = sub.add_parser("bands", help="magnetization bands along a q path (paper Fig. 3)",
                        description="For every q on a band path (default Γ–M–K–Γ of the workflow's "
                                    "[bands] section) run all displacement patterns with δψ captured, "
                                    "analyze, connect modes into branches by eigenvector overlap, and "
                                    "write bands.h5 and figures (three stacked panels: dispersion, "
                                    "in-plane and out-of-plane RMS magnetization; and fat bands). With a "
                                    "[dispersion] section the dispersion is also interpolated from a "
                                    "coarse DFPT q-grid (ph.x ldisp, q2r.x, matdyn.x). q-points run as "
                                    "independent jobs, up to --workers at a time; a failed job is reported "
                                    "with its output tail and the others go on. Re-running resumes: "
                                    "finished QE steps are skipped. Reports the " + ONE_SIDED_NOTE + ".")
    bd.add_argument("workflow", nargs="?", default=str(DEFAULT_WORKFLOW),
                    help=f"workflow TOML (default: the built-in tiny WSe2 workflow, {DEFAULT_WORKFLOW.name})")
    bd.add_argument("--path", help="path in ASE syntax, e.g. GMKG (default: the workflow's [bands] path); "
                                   "K' is written Kp, a comma starts a disconnected segment")
    bd.add_argument("--npoints", type=int, help="points along the path, special points included "
                                                "(default: the workflow's [bands] npoints)")
    bd.add_argument("--workers", type=int, help="q-points run at once, each with the workflow's "
                                                "[parallel] nproc (default: [parallel] workers)")
    bd.add_argument("--nproc", type=int, help="MPI processes per QE run, as pools (default: [parallel] nproc); "
                                              "e.g. --workers 2 --nproc 1 on a 2-core machine")
    bd.add_argument("--run-dir", help="where QE runs (default: runs/<workflow name>)")
    bd.add_argument("-o", "--output", help="HDF5 output (default: <run-dir>/bands.h5); figures go next to it")
    bd.add_argument("--format", default="png,pdf", help="figure formats (default png,pdf)")
    bd.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    bd.set_defaults(func=cmd_bands)
    pl = sub.add_parser("plot", help="redraw figures from a results file",
                        description="Redraw the figures of 'dfptmag bands' from its bands.h5 without "
                                    "recomputing: <stem>_magnetization.{png,pdf} and <stem>_fat.{png,pdf}.")
    pl.add_argument("what", choices=["bands"])
    pl.add_argument("file", help="bands.h5")
    pl.add_argument("--format", default="png,pdf", help="figure formats (default png,pdf)")
    pl.add_argument("--outdir", help="output directory (default: next to the file)")
    pl.set_defaults(func=cmd_plot)
    mo = sub.add_parser("model", help="localized level + phonon bath model (DOS, spin-DOS, M(T), T_xo)",
                        description="The model of shared/seeds/localized-level-spin-phonon-model.txt: a "
                                    "level ε = ε0σ0 + ε1·σ coupled to acoustic phonons ω = c q by U = u0σ0 + "
                                    "u1·σ, second-order self-energy with bare propagators, 2×2 Dyson equation. "
                                    "All energies in meV. 'dos' plots DOS and spin-DOS (spin axis along u1, or z); "
                                    "'moment' plots M(k_BT) along u1 (Matsubara sum, δ → 0); 'crossover' prints "
                                    "the temperature where M changes sign.")
    mo.add_argument("what", choices=["dos", "moment", "crossover"])
    mo.add_argument("--eps0", type=float, default=0.1, help="level energy ε0, meV (default 0.1)")
    mo.add_argument("--eps1", type=_floats, default=[0.0, 0.0, 0.0], help="spin splitting vector ε1, meV (default 0,0,0)")
    mo.add_argument("--mu", type=float, default=0.0, help="chemical potential, meV (default 0)")
    mo.add_argument("--u0", type=float, default=0.01, help="charge coupling u0, meV (default 0.01)")
    mo.add_argument("--u1", type=_floats, default=[0.0, 0.0, 0.0], help="spin coupling vector u1, meV (default 0,0,0)")
    mo.add_argument("--c", type=_floats, default=[0.01], help="phonon velocities, meV per unit q (comma list)")
    mo.add_argument("--kT", type=_krange, default=[1, 5, 10, 15, 20],
                    help="temperatures k_BT in meV: list '1,5,10' or log range 'start:stop:n'")
    mo.add_argument("--qc", type=float, default=1.0, help="q cutoff (dimensionless, default 1)")
    mo.add_argument("--dim", type=int, default=3, help="dimension of the q ball (default 3)")
    mo.add_argument("--delta", type=float, default=0.01, help="broadening δ of retarded functions, meV (default 0.01)")
    mo.add_argument("--window", type=float, default=40.0, help="half width of the frequency grid, meV (default 40)")
    mo.add_argument("--xrange", type=float, default=4.0, help="plotted energy half range around ε0, meV (default 4)")
    mo.add_argument("--outdir", default="model", help="output directory (default model/)")
    mo.set_defaults(func=cmd_model)
    return p


def _stop_on_sigterm():
    """SIGTERM (a batch scheduler's time limit, kill) stops like Ctrl-C: QE processes are
    stopped, finished steps kept, and the same command resumes."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:          # not in the main thread (embedded use): leave it alone
        pass


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _stop_on_sigterm()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except DfptmagError as exc:
        print(f"dfptmag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dfptmag: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
