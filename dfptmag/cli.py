"""Command-line interface: a thin layer over the library.

    dfptmag run WORKFLOW.toml       run ld1.x/pw.x/ph.x with δψ capture, then analyze
    dfptmag analyze RUN_DIR         post-process finished q-run directories
    dfptmag capture -- CMD...       run a ph.x command line keeping its δψ buffer
    dfptmag snapshot RESULT.h5      real-space figures, movies and exports of one mode
    dfptmag bands WORKFLOW.toml     magnetization bands along a q path (the paper's Fig. 3)
    dfptmag doctor [WORKFLOW.toml]  which QE programs (and versions), MPI and Slurm would be used
    dfptmag task WF RUN_DIR TASK    run one task of a planned band workflow (what a batch job runs)
    dfptmag status RUN_DIR          state of every task of a band workflow run by an engine
    dfptmag plot bands BANDS.h5     redraw the band figures without recomputing
    dfptmag export BANDS.h5         phonopy band.yaml/band.hdf5/phonopy_params.yaml or pymatgen JSON
    dfptmag sqw INPUT               charge–spin dynamic structure factor S(Q, ω) (paper Eq. 5)
    dfptmag model dos|moment|crossover  the localized-level model (DOS, spin-DOS, M(T), T_xo)
"""
from __future__ import annotations

import argparse
import logging
import math
import sys

from . import ONE_SIDED_NOTE, __version__
from .data import default_workflow
from .errors import DfptmagError
from .export import FORMATS

DEFAULT_WORKFLOW = default_workflow()


FIGURE_FORMATS = ("png", "pdf", "svg", "eps")


def _print_tables(analyses: dict):
    from .results.report import mode_table
    for label, r in analyses.items():
        print(mode_table(label, r))
        print()


def _report_failures(r):
    """Per-q errors, then one summary error (exit 2) if any q-point failed."""
    for label, msg in r.failures.items():
        print(f"dfptmag: error: q {label}: {msg}", file=sys.stderr)
    if r.failures:
        n = len(r.failures) + len(r.analyses)
        raise DfptmagError(f"{len(r.failures)} of {n} q-points failed ({', '.join(r.failures)}): "
                           + (f"the others are in {r.output} (attribute complete = False, failures recorded)"
                              if r.output else "nothing written"))


def _storage_flags(parser) -> None:
    """--discard-dwf / --keep-dwf and --keep-scratch (contract-and-discard, [storage])."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--discard-dwf", dest="discard_dwf", action="store_true", default=None,
                   help="contract each pattern's δψ as soon as it is captured (Eq. 1 at G = 0 and on the "
                        "FFT grid, checked against ph.x's fildrho), store that in q_<label>/contracted/ and "
                        "delete the δψ; once a q is complete its ph.x scratch goes too. Default: [storage] "
                        "discard_dwf (\"auto\": on with --engine slurm, off otherwise)")
    g.add_argument("--keep-dwf", dest="discard_dwf", action="store_false",
                   help="keep every captured δψ (the default without --engine slurm)")
    parser.add_argument("--keep-scratch", action="store_true", default=None,
                        help="with --discard-dwf: keep the q's ph.x scratch (out/) after every pattern "
                             "is contracted (default: [storage] keep_scratch, false)")


def cmd_run(a):
    from .jobs.run import run
    r = run(a.workflow, q=a.q, patterns=a.patterns, run_dir=a.run_dir, output=a.output,
            snapshots=not a.no_snapshots, allow_charge_mismatch=a.allow_charge_mismatch,
            progress=not a.quiet, discard_dwf=a.discard_dwf, keep_scratch=a.keep_scratch,
            time_odd=a.time_odd, empty_bands=a.empty_bands)
    print(f"QE steps run: {r.steps_ran}, already done: {r.steps_skipped} (run directory {r.run_dir})")
    _print_tables(r.analyses)
    if r.output:
        print(f"wrote {r.output}")
    for f, why in r.snapshots:
        print(f"wrote {f}  ({why})")
    _report_failures(r)


def cmd_analyze(a):
    from .jobs.run import analyze
    r = analyze(a.run_dir, a.output, amplitude=a.amplitude, amplitude_bohr=a.amplitude_bohr,
                field=not a.no_field, degeneracy_tol_cm1=a.degeneracy_tol,
                allow_charge_mismatch=a.allow_charge_mismatch, progress=not a.quiet)
    _print_tables(r.analyses)
    if r.output:
        print(f"wrote {r.output}" + (f" ({len(r.analyses)} of {len(r.analyses) + len(r.failures)} q-points)"
                                     if r.failures else ""))
    _report_failures(r)


def cmd_capture(a):
    from .jobs.files import capture
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    irr, dwf, drho, qdir = capture(cmd, a.dir, a.log, redo=a.redo)
    print(f"captured irrep {irr}: {len(dwf)} δψ file(s) in {qdir / 'capture'}"
          + (f", fildrho copy {drho.name}" if drho else ""))


def cmd_bands(a):
    if a.engine or a.dry_run:
        return _bands_engine(a)
    from .jobs.run import bands, route
    if a.interpolate or (not a.direct and route(a.workflow) == "interpolated"):
        return _cmd_bands_interpolated(a)
    if not a.quiet and not a.direct:
        print("route: direct (all patterns at every q of the [bands] path; the workflow has no "
              "[interpolation] section)")
    r = bands(a.workflow, path=a.path, npoints=a.npoints, workers=a.workers, run_dir=a.run_dir,
              output=a.output, progress=not a.quiet, figures=_names(a.format), nproc=a.nproc,
              discard_dwf=a.discard_dwf, keep_scratch=a.keep_scratch)
    print(f"QE steps run: {r.steps_ran}, already done: {r.steps_skipped}")
    if not a.quiet:
        from .results.bandsfile import read
        from .results.report import bands_table
        print(bands_table(read(r.output)))
    print(f"wrote {r.output}")
    for f in r.figures:
        print(f"wrote {f}")
    if r.failures:
        msg = "\n\n".join(f"[{k}] {v}" for k, v in r.failures.items())
        raise DfptmagError(f"{len(r.failures)} job(s) failed; bands.h5 has NaN there "
                           f"(path/computed = False). Rerun the same command to retry them.\n{msg}")


def _cmd_bands_interpolated(a):
    from .jobs.run import bands
    if not a.quiet:
        print("route: interpolated (DFPT at the irreducible q of the workflow's [interpolation] grid; "
              "--direct runs every q of the [bands] path instead)")
    r = bands(a.workflow, path=a.path, npoints=a.npoints, workers=a.workers, run_dir=a.run_dir,
              output=a.output, progress=not a.quiet, figures=_names(a.format), nproc=a.nproc, interpolate=True,
              discard_dwf=a.discard_dwf, keep_scratch=a.keep_scratch)
    n = "×".join(map(str, r.grid[:2]))
    print(f"DFPT q-points computed: {len(r.irreducible)} (irreducible q of the {n} grid: "
          f"{', '.join(r.irreducible)}); ph.x wall time {r.qe_wall_s:.0f} s")
    print(f"QE steps run: {r.steps_ran}, already done: {r.steps_skipped}")
    bz = r.output.with_name("bz_maps.h5")
    for f in [r.output, r.grid_file, *([bz] if bz.is_file() else []), *r.figures]:
        print(f"wrote {f}")


def _bands_engine(a):
    from .jobs.run import bands
    r = bands(a.workflow, engine=a.engine or "local", workers=a.workers, run_dir=a.run_dir, path=a.path,
              npoints=a.npoints, nproc=a.nproc, output=a.output, figures=_names(a.format),
              dry_run=a.dry_run, interpolate=a.interpolate, discard_dwf=a.discard_dwf,
              keep_scratch=a.keep_scratch)
    if a.dry_run:
        print(r.dry_run_text)
        return
    if r.engine == "slurm" and r.outcome.jobs:
        arrays = sorted({j["job"].split("_")[0] for j in r.outcome.jobs.values()})
        print(f"submitted {len(r.outcome.jobs)} task(s) of {len(r.todo)} not done, in {len(arrays)} "
              f"job array(s) ({', '.join(arrays)}); follow with: dfptmag status {r.run_dir}; run the "
              "same command again when they have finished to assemble bands.h5")
    elif r.engine == "slurm" and r.todo and r.output is None:
        print(f"every task not done is already queued; dfptmag status {r.run_dir}")
    if r.output is not None and r.output.is_file():
        print(f"wrote {r.output}" if r.todo else f"{r.output} is up to date (every task done)")
    for tid, msg in r.outcome.failures.items():
        print(f"dfptmag: error: task {tid}: {msg.splitlines()[0] if msg else ''}", file=sys.stderr)
    if r.outcome.failures:
        raise DfptmagError(f"{len(r.outcome.failures)} task(s) failed (dfptmag status {r.run_dir} shows "
                           "them with their logs); rerun the same command to retry them")


def cmd_doctor(a):
    from .jobs.doctor import doctor
    r = doctor(a.workflow, slurm=a.slurm)
    print("\n".join(r.lines))
    if r.problems:
        raise DfptmagError("; ".join(r.problems))


def cmd_task(a):
    from .jobs.cluster import execute
    execute(a.workflow, a.run_dir, a.task_id)


def cmd_status(a):
    from .jobs.cluster import status
    rows = status(a.run_dir)
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    width = max(len(r["task"]) for r in rows)
    print(f"{'task':<{width}}  {'state':<13} {'job':<12} detail")
    for r in rows:
        detail = r["detail"].splitlines()[0] if r["detail"] else ""
        print(f"{r['task']:<{width}}  {r['state']:<13} {r['job']:<12} {detail[:150]}")
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    for r in rows:
        if r["state"] == "failed" and (r.get("tail") or r["detail"]):
            print(f"\n--- {r['task']} failed; log {r['log'] or '(none)'}:")
            print(r.get("tail") or r["detail"])
    if counts.get("failed"):
        return 3


def cmd_plot(a):
    from .jobs.files import plot
    for f in plot(a.file, a.outdir, formats=_names(a.format)):
        print(f"wrote {f}")


EXPORT_FORMATS = ("phonopy", "pymatgen")


def cmd_export(a):
    from .jobs.files import export
    for f in export(a.file, _names(a.format), a.outdir, force=a.force, fc=a.fc):
        print(f"wrote {f}")


def _floats(n_allowed, what):
    def parse(text):
        try:
            v = [float(x) for x in text.split(",")]
        except ValueError:
            v = []
        if len(v) not in n_allowed or not all(map(math.isfinite, v)):
            raise argparse.ArgumentTypeError(f"{what}: {text!r}")
        return v
    return parse


def cmd_sqw(a):
    from .jobs.sqw import check_channels, run_sqw
    channels = check_channels(_names(a.channel), "--channel")
    kind = "map" if a.energy is not None else ("cut" if a.at is not None else "path")
    kw = dict(temperature=a.temperature, fwhm=a.fwhm, shape=a.shape, qz=a.qz, omega_min=a.omega_min,
              form_factor=a.form_factor, cross_section=a.cross_section, energies=a.energies)
    if kind == "path":
        kw.update(path=a.path, npoints=a.npoints)
    elif kind == "map":
        kw.update(energy=a.energy, extent=a.extent, nplane=a.nplane)
    else:
        kw.update(at=a.at, G=tuple(int(round(g)) for g in a.G))
    try:
        res, paths = run_sqw(a.input, kind=kind, outdir=a.outdir, channels=channels, formats=_names(a.format),
                             log_scale=a.log, overlay=not a.no_overlay,
                             sector="time-odd" if a.time_odd else "one-sided", **kw)
    except ValueError as exc:
        raise DfptmagError(f"{a.input}: {exc}") from None
    nskip = int((~res.kept).sum())
    print(f"S(Q, ω) {kind}: {len(res.q_crystal)} Q × {len(res.energies)} energies, T = {res.temperature_k:g} K, "
          f"channels {', '.join(channels)}" + (f"; {nskip} mode(s) below {res.omega_min_mev:g} meV without weight"
                                               if nskip else ""))
    for f in paths:
        print(f"wrote {f}")


def _cells(text):
    try:
        n, m = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cells must look like 4x4, not {text!r}") from None
    if n < 1 or m < 1 or n * m > 10000:
        raise argparse.ArgumentTypeError(f"cells {text!r}: N and M must be ≥ 1 (and N·M ≤ 10000)")
    return n, m


def _grid(text):
    try:
        g = tuple(int(v) for v in text.split(","))
    except ValueError:
        g = ()
    if len(g) != 3:
        raise argparse.ArgumentTypeError(f"grid must look like 36,36,108, not {text!r}")
    if min(g) < 1 or g[0] * g[1] * g[2] > 2 ** 28:
        raise argparse.ArgumentTypeError(f"grid {text!r}: three positive integers (at most 2^28 points)")
    return g


def _int_at_least(lo):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{v}: must be ≥ {lo}")
        return v
    return parse


def _finite(lo=None, hi=None, above=None):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
        if above is not None and not v > above:
            raise argparse.ArgumentTypeError(f"{v}: must be > {above}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v}: must be in [{lo}, {hi}]")
        return v
    return parse


def _patterns(text):
    """'1,3' -> [1, 3] (sorted, unique, ≥ 1; the upper bound 3·nat is checked against the structure)."""
    try:
        pats = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated pattern numbers such as 1,3, not {text!r}") from None
    if not pats or pats[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: pattern numbers start at 1")
    return pats


def _qspec(text):
    from .errors import InputFileError
    from .workflow import config
    try:
        config.parse_q(text, "--q")
    except InputFileError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None
    return text


def _formats(allowed):
    def parse(text):
        names = _names(text)
        bad = [f for f in names if f not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: formats are a comma list of {', '.join(allowed)}")
        return text
    return parse


def cmd_snapshot(a):
    from .jobs.snapshot import run_snapshot
    if (a.mode is None) == (a.pattern is None):
        raise DfptmagError("give one of --mode N or --pattern N")
    files = run_snapshot(a.result, a.q, mode=a.mode, pattern=a.pattern, cells=a.cells, t=a.time,
                         plane=a.plane, formats=_names(a.format),
                         movie=a.movie, frames=a.frames, outdir=a.outdir, grid=a.grid,
                         progress=not a.quiet, kind="time-odd" if a.time_odd else "one-sided")
    for f in files:
        print(f"wrote {f}")


def _names(text):
    """'png, pdf' -> ['png', 'pdf'] (empty items dropped)."""
    return [f.strip() for f in text.split(",") if f.strip()]


def cmd_model(a):
    from .jobs.model import parse_floats, parse_kT, run_model
    run_model(a.what, eps0=a.eps0, eps1=parse_floats(a.eps1, "--eps1"), mu=a.mu, u0=a.u0,
              u1=parse_floats(a.u1, "--u1"), velocities=parse_floats(a.c, "--c"),
              kTs=parse_kT(a.kT), qc=a.qc, dim=a.dim, delta=a.delta, window=a.window,
              xrange=a.xrange, outdir=a.outdir, convention=a.convention, nq=a.nq,
              self_consistent=a.self_consistent)


CHARGE_HELP = ("write the results even if the charge oracle fails (2 Tr δñ ≠ ph.x's fildrho beyond "
               "1e-6 relative); the failure is recorded in the output's checks")


class OneLineParser(argparse.ArgumentParser):
    """Errors in the arguments: exit 2 with one line, no usage block."""

    def error(self, message):
        self.exit(2, f"dfptmag: error: {self.prog.removeprefix('dfptmag').strip() or 'dfptmag'}: {message}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples (text with line breaks: the epilogs) verbatim; one-paragraph descriptions wrapped."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


# worked examples, shown by `dfptmag <command> --help` (tests parse every `dfptmag ...` line)
EXAMPLES = {
    None: """\
examples:
  dfptmag run                           # tiny WSe2 workflow at K: QE + analysis + snapshots (~1.5 min)
  dfptmag bands                         # magnetization bands along Γ–M–K–Γ (~10 min on 2 cores)
  dfptmag snapshot runs/wse2-tiny/dfptmag.h5 --q K --mode 2
  dfptmag doctor                        # which QE (versions), MPI and limits dfptmag would use
  dfptmag sqw runs/wse2-tiny/bands.h5   # S(Q, ω) of Eq. 5 through two zones (after dfptmag bands)
  dfptmag run --help                    # every command has worked examples

Python: dfptmag.load("runs/wse2-tiny/dfptmag.h5"), dfptmag.run(...), dfptmag.bands(...)
""",
    "run": """\
examples:
  dfptmag run                                   # built-in tiny WSe2 workflow, q = K (its [ph] q)
  dfptmag run --q K --q=-K                      # K and K' = -K (write -K with '=')
  dfptmag run --q 0.5,0,0 --patterns 1,3        # q in crystal coordinates, two patterns only
  dfptmag run wse2-converged --q K              # a built-in workflow by name
  dfptmag run my.toml --run-dir runs/mine -o mine.h5 --no-snapshots --quiet
  dfptmag run --q K --q=-K --time-odd --empty-bands 100   # also the time-odd response
Run the same command again to resume: finished QE steps are skipped.
Python: dfptmag.run(q=["K", "-K"]) returns the HDF5 path, the analyses and the snapshots.
""",
    "analyze": """\
examples:
  dfptmag analyze runs/wse2-tiny -o result.h5               # every q-run directory below
  dfptmag analyze qK --no-field --quiet                     # G = 0 cell integrals only (fast)
  dfptmag analyze runs/wse2-tiny --amplitude fixed --amplitude-bohr 0.02
  dfptmag analyze runs/wse2-tiny --degeneracy-tol 2        # wider degenerate subspaces
Python: dfptmag.analyze("runs/wse2-tiny", output="result.h5")
""",
    "capture": """\
examples (in the q directory, after pw.x and a ph.x only_wfc=.true. run for the q):
  dfptmag capture --dir . -- mpirun -np 4 ph.x -nk 4 -in ph.irr3.in
  dfptmag capture --dir qK --log qK/irr1.out -- ph.x -in qK/ph.irr1.in
  # one irrep per run: ph.irrN.in has recover=.true., start_irr = last_irr = N
then: dfptmag analyze . -o result.h5
""",
    "snapshot": """\
examples:
  dfptmag snapshot runs/wse2-tiny/dfptmag.h5 --q K --mode 2                 # PNG + PDF
  dfptmag snapshot result.h5 --q=-K --pattern 3 --cells 6x6 --time 0.25 --plane z=1.5
  dfptmag snapshot result.h5 --q K --mode 5 --format xsf,vtk,cube --grid 36,36,108
  dfptmag snapshot result.h5 --q K --mode 5 --movie gif --frames 24 --outdir movies
  dfptmag snapshot result.h5 --q K --mode 6 --time-odd    # the time-odd response (run --time-odd)
Python: dfptmag.load("result.h5")["K"].snapshot(mode=2, formats=("png",))
""",
    "bands": """\
examples:
  dfptmag bands                                       # built-in tiny workflow: interpolated from its 3x3 grid
  dfptmag bands --direct                              # all patterns at every q of its [bands] path instead
  dfptmag bands --path GMKpG --npoints 13             # through K' (= -K)
  dfptmag bands --path GMK,GKp --format png           # a comma starts a disconnected segment
  dfptmag bands my.toml --workers 2 --nproc 1 --run-dir runs/mine -o runs/mine/bands.h5
  dfptmag bands wse2-converged --engine slurm --dry-run   # task graph, batch scripts, cost; submits nothing
  dfptmag bands wse2-converged --engine slurm         # submits job arrays and returns; rerun to assemble
  dfptmag bands my.toml --engine local --workers 2    # the same tasks in a local process pool
Run the same command again to resume or to retry failed q-points.
Python: b = dfptmag.bands(path="GMKG"); dfptmag.load(b.output).by_branch()
""",
    "status": """\
examples:
  dfptmag status runs/wse2-converged          # every task: done/running/pending/failed, job ids, log tails
  dfptmag status runs/mine                    # exit 3 if a task failed
""",
    "doctor": """\
examples:
  dfptmag doctor                              # QE on PATH (or $DFPTMAG_QE_BIN): versions, launcher, limits
  dfptmag doctor my.toml --slurm              # the workflow's [qe] bin_dir and [parallel] mpirun; Slurm too
  DFPTMAG_QE_BIN=/opt/qe-7.4.1/bin dfptmag doctor
Exit 2 (one line) when pw.x, ph.x or ld1.x is missing or their versions differ.
""",
    "task": """\
examples (what each Slurm job runs; the plan is RUN_DIR/tasks/plan.json):
  dfptmag task workflows/wse2-converged.toml runs/wse2-converged prepare
  dfptmag task workflows/wse2-converged.toml runs/wse2-converged q/K/pattern/3
""",
    "plot": """\
examples:
  dfptmag plot bands runs/wse2-tiny/bands.h5                  # next to the file, PNG + PDF
  dfptmag plot bands bands.h5 --format pdf --outdir figures
Python: dfptmag.load("bands.h5").plot()      # the matplotlib Figure
""",
    "export": """\
examples:
  dfptmag export runs/wse2-tiny/bands.h5 --format phonopy            # band.yaml + band.hdf5 (THz)
  dfptmag export bands.h5 --format phonopy,pymatgen --outdir exported
Then: phonopy-bandplot exported/band.yaml; pymatgen: PhononBandStructureSymmLine.from_dict(json).
""",
    "sqw": """\
examples:
  dfptmag sqw runs/wse2-tiny/bands.h5                     # Q–ω maps Γ–M–K–Γ–(1,0), 300 K, 1 meV FWHM
  dfptmag sqw runs/wse2-tiny/bands.h5 --path "0,0 3,0" --log --channel neutron,zz
  dfptmag sqw runs/wse2-tiny/bands.h5 --energy 20 --extent 3    # constant-energy map over several zones
  dfptmag sqw runs/wse2-tiny/bands.h5 --at K --G 1,0 -T 10 --fwhm 0.3,0.02 --cross-section
  dfptmag sqw runs/wse2-tiny/dfptmag.h5 --at K --G 1,0    # from the direct DFPT fields at K
Python: dfptmag.sqw("runs/wse2-tiny/bands.h5", energy=20).plot("neutron")
""",
    "model": """\
examples (all energies in meV):
  dfptmag model dos --eps0 0.1 --u0 0.01 --u1 0.01,0,0 --c 0.01,0.001 --kT 1,5,10,15,20
  dfptmag model moment --u1 0.01,0,0.01 --c 0.001,0.005,0.01,0.05 --kT 0.1:30:200
  dfptmag model crossover --u1 0.01,0,0.01 --c 0.01 --kT 0.1:30:100
""",
}


def _add_examples(parser, sub):
    """Attach the worked examples to the main parser and to every subcommand."""
    parser.epilog = EXAMPLES[None]
    parser.formatter_class = _HelpFormatter
    for name, sp in sub.choices.items():
        sp.epilog = EXAMPLES.get(name)
        sp.formatter_class = _HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
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
                   help=f"workflow TOML, or a built-in workflow's name (default: the tiny WSe2 workflow, {DEFAULT_WORKFLOW.stem})")
    r.add_argument("--q", action="append", type=_qspec, help="q-point: K, K' (= -K; write --q=-K), M, G or crystal 'x,y,z'; repeat for "
                                                "several (default: the workflow's [ph] q)")
    r.add_argument("--patterns", type=_patterns, help="comma-separated pattern numbers, 1-based (default: all 3·nat)")
    r.add_argument("--run-dir", help="where QE runs (default: runs/<workflow name>)")
    r.add_argument("-o", "--output", help="HDF5 output (default: <run-dir>/dfptmag.h5)")
    r.add_argument("--no-snapshots", action="store_true",
                   help="skip the snapshot figures of the modes with the largest in-plane and out-of-plane magnetization")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--allow-charge-mismatch", action="store_true", help=CHARGE_HELP)
    _storage_flags(r)
    t = r.add_mutually_exclusive_group()
    t.add_argument("--time-odd", dest="time_odd", action="store_true", default=None,
                   help="also the time-odd spin response, the magnetization carried at the lattice velocity: "
                        "a pw.x run of empty states per q (default: on when the workflow has a [timeodd] "
                        "section; with --discard-dwf each contraction keeps its time-odd part)")
    t.add_argument("--no-time-odd", dest="time_odd", action="store_false", help="skip it even with [timeodd]")
    r.add_argument("--empty-bands", type=int, metavar="N",
                   help="empty states above the occupied ones for the time-odd response (default: [timeodd] "
                        "empty_bands, 60); implies --time-odd")
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("analyze", help="post-process finished q-run directories",
                       description="Post-process every q-run directory (holding dfptmag-q.json) at or "
                                   "below RUN_DIR. A run made with your own scripts qualifies when "
                                   "it has: the pw.x scf outdir; a ph.x only_wfc=.true. run for the "
                                   "q; one ph.x run per irrep made through 'dfptmag capture' (which "
                                   "writes the manifest); optionally fildrho (oracle) and a final "
                                   "recover run for fildyn. See docs/tutorial-own-run.md.")
    a.add_argument("run_dir")
    a.add_argument("-o", "--output", default="dfptmag.h5", help="HDF5 output (default: dfptmag.h5)")
    a.add_argument("--amplitude", choices=["zero-point", "fixed"], default="zero-point",
                   help="mode amplitude: one phonon quantum sqrt(ħ/2ω) (default) or fixed")
    a.add_argument("--amplitude-bohr", type=_finite(above=0), default=0.01,
                   help="total displacement for --amplitude fixed, bohr (default 0.01)")
    a.add_argument("--no-field", action="store_true", help="skip the real-space field (G = 0 only)")
    a.add_argument("--degeneracy-tol", type=float, metavar="CM1",
                   help="modes closer than this form one degenerate subspace (rms_subspace), cm-1 (default 0.5)")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.add_argument("--allow-charge-mismatch", action="store_true", help=CHARGE_HELP)
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
    s.add_argument("--mode", type=_int_at_least(1), help="phonon mode, 1-based, ascending frequency")
    s.add_argument("--pattern", type=_int_at_least(1), help="displacement pattern, 1-based (instead of --mode)")
    s.add_argument("--cells", type=_cells, default=(4, 4), help="supercell N x M (default 4x4)")
    s.add_argument("--time", type=_finite(), default=0.0, help="time in periods, 0..1 (default 0)")
    s.add_argument("--plane", default=None, help="element symbol (plane of its first atom), z=<Å>, or avg "
                                                 "(default: the heaviest atom's plane, W in WSe2, Mo in MoS2)")
    s.add_argument("--format", type=_formats(FORMATS), default="png,pdf", help=f"comma list of {', '.join(FORMATS)} (default png,pdf)")
    s.add_argument("--movie", choices=["gif", "mp4"], help="also write one period as a movie")
    s.add_argument("--frames", type=_int_at_least(2), default=48, help="movie frames per period (default 48)")
    s.add_argument("--grid", type=_grid, help="Fourier-interpolate to this grid n1,n2,n3 (default: QE's FFT grid)")
    s.add_argument("--outdir", default="snapshots", help="output directory (default snapshots/)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--time-odd", action="store_true",
                   help="the time-odd spin response of the mode instead (in phase with the lattice velocity, "
                        "at the mode's frequency and amplitude; needs a run with --time-odd)")
    s.set_defaults(func=cmd_snapshot)
    bd = sub.add_parser("bands", help="magnetization bands along a q path (paper Fig. 3)",
                        description="The magnetization bands along a q path (default Γ–M–K–Γ of the "
                                    "workflow's [bands] section), bands.h5 and figures (three stacked "
                                    "panels: dispersion, in-plane and out-of-plane RMS magnetization; and "
                                    "fat bands). Interpolated route (default when the workflow has an "
                                    "[interpolation] section): DFPT with δψ captured only at the irreducible "
                                    "q of its grid, the response Fourier-interpolated onto the dense path "
                                    "and over the zone (bz_maps). Direct route (--direct, or with --engine): "
                                    "all displacement patterns at every q of the path, modes connected into "
                                    "branches by eigenvector overlap; with a [dispersion] section the "
                                    "dispersion is also interpolated from a coarse DFPT q-grid (ph.x ldisp, "
                                    "q2r.x, matdyn.x). q-points run as independent jobs, up to --workers at "
                                    "a time; a failed job is reported with its output tail and the others go "
                                    "on. Re-running resumes: finished QE steps are skipped. Reports the "
                                    + ONE_SIDED_NOTE + ".")
    bd.add_argument("workflow", nargs="?", default=str(DEFAULT_WORKFLOW),
                    help=f"workflow TOML, or a built-in workflow's name (default: the tiny WSe2 workflow, {DEFAULT_WORKFLOW.stem})")
    bd.add_argument("--path", help="path in ASE syntax, e.g. GMKG (default: the workflow's [bands] path); "
                                   "K' is written Kp, a comma starts a disconnected segment")
    bd.add_argument("--npoints", type=_int_at_least(2), help="points along the path, special points included "
                                                "(default: the workflow's [bands] npoints)")
    bd.add_argument("--workers", type=_int_at_least(1), help="q-points run at once, each with the workflow's "
                                                "[parallel] nproc (default: [parallel] workers)")
    bd.add_argument("--nproc", type=_int_at_least(1), help="MPI processes per QE run, as pools (default: [parallel] nproc); "
                                              "e.g. --workers 2 --nproc 1 on a 2-core machine")
    bd.add_argument("--run-dir", help="where QE runs (default: runs/<workflow name>)")
    bd.add_argument("-o", "--output", help="HDF5 output (default: <run-dir>/bands.h5); figures go next to it")
    bd.add_argument("--format", type=_formats(FIGURE_FORMATS), default="png,pdf",
                    help=f"figure formats, comma list of {', '.join(FIGURE_FORMATS)} (default png,pdf)")
    bd.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    rt = bd.add_mutually_exclusive_group()
    rt.add_argument("--interpolate", action="store_true",
                    help="the interpolated route (the default when the workflow has an [interpolation] "
                         "section and no --engine is given): DFPT with capture only at the irreducible q "
                         "of its qgrid; the magnetization on the dense [dispersion] path and over the "
                         "Brillouin zone (bz_maps) from the fields unfolded by symmetry and "
                         "Fourier-interpolated; grid.h5 holds the grid response")
    rt.add_argument("--direct", action="store_true",
                    help="the direct route (the default without [interpolation], and with --engine): all "
                         "patterns at every q of the [bands] path, branch tracking between them")
    bd.add_argument("--engine", choices=["local", "slurm"],
                    help="run the workflow as independent tasks (prepare, per q: common, one task per "
                         "pattern, gather; bands): 'local' in a process pool of --workers, 'slurm' as sbatch "
                         "job arrays with afterok dependencies, settings from [cluster]; returns at once, "
                         "rerun to submit what is not done or, when all is done, to write bands.h5")
    bd.add_argument("--dry-run", action="store_true",
                    help="print the task graph, the batch scripts and a cost estimate per stage; run nothing")
    _storage_flags(bd)
    bd.set_defaults(func=cmd_bands)
    dr = sub.add_parser("doctor", help="which QE (version from each program's header), MPI and Slurm dfptmag uses",
                        description="Print the QE programs dfptmag would run (from the workflow's [qe] bin_dir, "
                                    "else $DFPTMAG_QE_BIN, else PATH) with the version each prints in its "
                                    "header, the MPI launcher, Slurm (with --slurm), and the known capture "
                                    "limits of that QE version. Starts no calculation.")
    dr.add_argument("workflow", nargs="?", default=None,
                    help="workflow TOML or built-in name whose [qe] and [parallel] settings to check "
                         "(default: none, i.e. $DFPTMAG_QE_BIN or PATH and 'mpirun')")
    dr.add_argument("--slurm", action="store_true", help="also check sbatch/squeue and the controller")
    dr.set_defaults(func=cmd_doctor)
    tk = sub.add_parser("task", help="run one task of a planned band workflow (what a batch job runs)",
                        description="Run one task (prepare, dispersion, q/<label>/common, "
                                    "q/<label>/pattern/<p>, q/<label>/gather, bands) of the plan written by "
                                    "'dfptmag bands --engine ...' in RUN_DIR. Idempotent: a task whose markers "
                                    "are current does nothing.")
    tk.add_argument("workflow")
    tk.add_argument("run_dir")
    tk.add_argument("task_id")
    tk.set_defaults(func=cmd_task)
    stt = sub.add_parser("status", help="state of every task of a band workflow run by an engine",
                         description="Every task of the plan in RUN_DIR: done (markers current), running or "
                                     "pending (squeue), failed (with the tail of its log), not submitted. Exit "
                                     "code 3 when a task failed.")
    stt.add_argument("run_dir")
    stt.set_defaults(func=cmd_status)
    pl = sub.add_parser("plot", help="redraw figures from a results file",
                        description="Redraw the figures of 'dfptmag bands' from its bands.h5 without "
                                    "recomputing: <stem>_magnetization.{png,pdf} and <stem>_fat.{png,pdf}.")
    pl.add_argument("what", choices=["bands"])
    pl.add_argument("file", help="bands.h5")
    pl.add_argument("--format", type=_formats(FIGURE_FORMATS), default="png,pdf",
                    help=f"figure formats, comma list of {', '.join(FIGURE_FORMATS)} (default png,pdf)")
    pl.add_argument("--outdir", help="output directory (default: next to the file)")
    pl.set_defaults(func=cmd_plot)
    ex = sub.add_parser("export", help="bands.h5 → phonopy band.yaml/band.hdf5 or pymatgen JSON",
                        description="Convert a bands.h5 for other tools. 'phonopy': band.yaml and band.hdf5 "
                                    "in phonopy's layout (THz, phonopy's distance, labels and segments, "
                                    "eigenvectors in phonopy's atom-position phase convention) with the RMS "
                                    "magnetization as extra per-band keys; read by phonopy-bandplot; plus "
                                    "phonopy_params.yaml with q2r.x's force constants (dispersion/fc or --fc) "
                                    "so that phonopy.load() alone gives bands, DOS and thermal properties. "
                                    "'pymatgen': <stem>_pymatgen.json, a PhononBandStructureSymmLine "
                                    "(as_dict) with structure, labels and eigendisplacements.",
                        epilog="examples:\n  dfptmag export runs/wse2-tiny/bands.h5 --format phonopy\n"
                               "  phonopy-bandplot --gnuplot runs/wse2-tiny/band.yaml\n"
                               "  dfptmag export runs/wse2-tiny/bands.h5 --format phonopy,pymatgen --outdir out",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("file", help="bands.h5 written by 'dfptmag bands'")
    ex.add_argument("--format", type=_formats(EXPORT_FORMATS), default="phonopy", help="phonopy, pymatgen or both (comma list; default phonopy)")
    ex.add_argument("--outdir", help="output directory (default: next to the file)")
    ex.add_argument("--fc", help="q2r.x force constants for phonopy_params.yaml (default: dispersion/fc "
                                 "next to the file, if present)")
    ex.add_argument("--force", action="store_true", help="overwrite existing output files (default: refuse)")
    ex.set_defaults(func=cmd_export)
    sq = sub.add_parser("sqw", help="charge–spin dynamic structure factor S(Q, ω) of paper Eq. 5 (neutron, IXS, EELS)",
                        description="S^{αβ}(Q, ω) = Σ_ν [1+n_B] A^α A^β* δ(ω−ω_ν) + n_B A^α* A^β δ(ω+ω_ν) "
                                    "(paper Eq. 5; α, β ∈ n, x, y, z; per unit cell; no Debye–Waller) from a "
                                    "finished result: INPUT is the bands.h5 of 'bands --interpolate' (any in-plane "
                                    "Q, several zones; its run directory also works) or a dfptmag.h5 of 'run' "
                                    "(cuts at Q = q + G of its DFPT q). Default: a Q–ω map along --path; "
                                    "--energy E gives a constant-energy map, --at Q a cut S(ω). Writes "
                                    "sqw_<kind>.h5 (full 4×4 S with axes and units), one Euphonic JSON "
                                    "(Spectrum2D/Spectrum1D) per channel and the figures, beside INPUT "
                                    "unless --outdir. Conventions: docs/structure-factor.md.")
    sq.add_argument("input", help="bands.h5 (bands --interpolate) or its run directory, or dfptmag.h5 (run)")
    sq.add_argument("--path", default="G M K G 1,0",
                    help="Q path: points separated by spaces, named (G, M, K, K') or h,k in r.l.u. "
                         "(default 'G M K G 1,0': the first zone's Γ–M–K–Γ, then on to Γ' = (1,0))")
    sq.add_argument("--npoints", type=_int_at_least(2), default=300, help="Q points on the path (default 300)")
    sq.add_argument("--energy", type=float, help="constant-energy map at this energy transfer (meV)")
    sq.add_argument("--extent", type=float, help="map: half-width of the in-plane Q window, 1/Å (default 1.5 |b1|)")
    sq.add_argument("--nplane", type=_int_at_least(2), default=81, help="map: Q points per side (default 81)")
    sq.add_argument("--at", help="cut S(ω) at one Q: a name (K, M, …) or h,k in r.l.u.; with a dfptmag.h5, a q label of the file")
    sq.add_argument("--G", type=_floats((2,), "--G must be two integers h,k such as 1,0"), default=[0, 0],
                    help="cut: add this reciprocal-lattice vector h,k to --at (default 0,0)")
    sq.add_argument("--qz", type=float, default=0.0, help="out-of-plane momentum Q_z, 1/Å (default 0: the z-integral)")
    sq.add_argument("--temperature", "-T", type=float, default=300.0, help="kelvin (default 300; 0: no anti-Stokes side)")
    sq.add_argument("--energies", help="energy grid EMIN:EMAX:N in meV (default 401 points on ±1.15 ω_max)")
    sq.add_argument("--fwhm", type=_floats((1, 2, 3), "--fwhm is c0 or c0,c1 or c0,c1,c2 (meV)"), default=[1.0],
                    help="resolution FWHM in meV: c0, or c0,c1[,c2] for c0 + c1|E| + c2 E² (default 1.0)")
    sq.add_argument("--shape", choices=["gauss", "lorentz"], default="gauss", help="line shape (default gauss)")
    sq.add_argument("--channel", default="inplane,outofplane,neutron",
                    help="comma list: inplane, outofplane, spin, neutron, or components nn, nx, …, zz "
                         "(Re of a cross term) (default inplane,outofplane,neutron)")
    sq.add_argument("--omega-min", type=float, default=0.5,
                    help="modes below this energy (meV) carry no weight (acoustic at Γ, imaginary; default 0.5)")
    sq.add_argument("--cross-section", action="store_true",
                    help="neutron channel in barn/sr/meV per cell: × (γ r0/2)² = 0.0726 barn (k'/k not included)")
    sq.add_argument("--form-factor", type=_floats((7,), "--form-factor takes the 7 j0 coefficients A,a,B,b,C,c,D"),
                    help="multiply the neutron channel by a j0 dipole form factor² (7 coefficients; default none: "
                         "the DFT amplitudes already hold the spatial shape of the spin density)")
    sq.add_argument("--log", action="store_true", help="log colour scale (default linear)")
    sq.add_argument("--no-overlay", action="store_true", help="no dispersion lines on the Q–ω map")
    sq.add_argument("--time-odd", action="store_true",
                    help="the physical spin sector from the time-odd amplitudes (a dfptmag.h5 of 'run --time-odd'; "
                         "cuts at Q = q + G) instead of the paper's one-sided one")
    sq.add_argument("--format", type=_formats(FIGURE_FORMATS), default="png", help="figure formats (default png)")
    sq.add_argument("--outdir", help="output directory (default: next to INPUT)")
    sq.set_defaults(func=cmd_sqw)
    mo = sub.add_parser("model", help="localized level + phonon bath model (DOS, spin-DOS, M(T), T_xo)",
                        description="The localized-level model of Shiranzaei, Kalhöfer and Fransson, J. Phys. "
                                    "Chem. Lett. 14, 5119 (2023), doi:10.1021/acs.jpclett.3c00526 (see "
                                    "docs/citing.md): a "
                                    "level ε = ε0σ0 + ε1·σ coupled to acoustic phonons ω = c q by U = u0σ0 + "
                                    "u1·σ, second-order self-energy with bare propagators, 2×2 Dyson equation. "
                                    "All energies in meV. 'dos' plots DOS and spin-DOS (spin axis along u1, or z); "
                                    "'moment' plots M(k_BT) along u1 (Matsubara sum, δ → 0); 'crossover' prints "
                                    "the temperature where M changes sign. --convention paper reconstructs the "
                                    "paper's printed Eq. 14 (Fig. 5) and draws it next to the consistent model.")
    mo.add_argument("what", choices=["dos", "moment", "crossover"])
    mo.add_argument("--convention", choices=["consistent", "paper"], default="consistent",
                    help="consistent (default): Eq. 12, m = Tr σρ, normalised bath; paper: printed Eq. 14 "
                         "(sign of Eq. 12, dressed branch with dω/4π), plain sum over --nq q-points")
    mo.add_argument("--nq", type=int, default=None,
                    help="paper convention only: number of q-points of the plain, unnormalised sum (default 1000)")
    mo.add_argument("--self-consistent", action="store_true",
                    help="self-consistent Born (Migdal) self-energy: dressed level propagator in the "
                         "exchange loop (moment, crossover)")
    mo.add_argument("--eps0", type=float, default=0.1, help="level energy ε0, meV (default 0.1)")
    mo.add_argument("--eps1", default="0,0,0", help="spin splitting vector ε1, meV (default 0,0,0)")
    mo.add_argument("--mu", type=float, default=0.0, help="chemical potential, meV (default 0)")
    mo.add_argument("--u0", type=float, default=0.01, help="charge coupling u0, meV (default 0.01)")
    mo.add_argument("--u1", default="0,0,0", help="spin coupling vector u1, meV (default 0,0,0)")
    mo.add_argument("--c", default="0.01", help="phonon velocities, meV per unit q (comma list, each > 0)")
    mo.add_argument("--kT", default="1,5,10,15,20",
                    help="temperatures k_BT in meV (> 0): list '1,5,10' or log range 'start:stop:n'")
    mo.add_argument("--qc", type=float, default=1.0, help="q cutoff (dimensionless, default 1)")
    mo.add_argument("--dim", type=int, default=3, help="dimension of the q ball (default 3)")
    mo.add_argument("--delta", type=float, default=None,
                    help="broadening δ of retarded functions, meV (> 0; default 0.01, paper convention 0.1)")
    mo.add_argument("--window", type=float, default=40.0, help="half width of the frequency grid, meV (default 40)")
    mo.add_argument("--xrange", type=float, default=None, help="plotted energy half range around ε0, meV (default: 4, or wider to show every resonance)")
    mo.add_argument("--outdir", default="model", help="output directory (default model/)")
    mo.set_defaults(func=cmd_model)
    _add_examples(p, sub)
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
        rc = args.func(args)
    except DfptmagError as exc:
        lines = str(exc).splitlines() or [""]
        print(f"dfptmag: error: {lines[0]}", file=sys.stderr)
        if len(lines) > 1:          # a QE output tail or per-job reports: after the one-line summary
            print("\n".join(lines[1:]), file=sys.stderr)
        return 2
    except OSError as exc:
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"dfptmag: error: {name}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dfptmag: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:     # a bug, not bad input: one line, the traceback with -v
        if args.verbose:
            raise
        print(f"dfptmag: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(a bug in dfptmag: rerun with -v for the traceback and please report it)", file=sys.stderr)
        return 1
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
