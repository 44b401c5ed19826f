"""The jobs layer: what each command does, as library functions. The command-line interface
(dfptmag.cli) only parses arguments, calls one of these and prints what they return; from
Python the same functions are ``dfptmag.run``, ``dfptmag.analyze`` and ``dfptmag.bands``::

    run(workflow, q=..., patterns=...)     ld1.x/pw.x/ph.x with δψ capture → analysis → HDF5 → snapshots
    analyze(run_dir, output=...)           finished q-run directories → HDF5
    bands(workflow, path=..., ...)         the band workflow (dfptmag.jobs.bands) → bands.h5 → figures

Nothing here prints; progress bars only with ``progress=True``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import DfptmagError, InputFileError


@dataclasses.dataclass
class AnalyzeResult:
    output: Path                      # the HDF5 file written (None: every q-point failed)
    analyses: dict[str, dict]         # q label -> analysis result (dfptmag.analysis.analyze_qrun)
    qdirs: dict[str, Path]            # q label -> q-run directory
    failures: dict[str, str] = dataclasses.field(default_factory=dict)   # q label -> error

    def load(self):
        """The written file as a dfptmag.api.Result."""
        from ..api import load
        return load(self.output)


@dataclasses.dataclass
class RunResult(AnalyzeResult):
    run_dir: Path = None
    steps_ran: int = 0                # QE steps run by this call
    steps_skipped: int = 0            # QE steps already done (resumed)
    snapshots: list[tuple[Path, str]] = dataclasses.field(default_factory=list)   # (file, why)


def output_file(path, what="output") -> Path:
    """An output file name that can be written: not a directory, its parent not a file."""
    path = Path(path)
    if path.is_dir():
        raise DfptmagError(f"{path}: is a directory; give a file name for the {what}, e.g. {path / 'dfptmag.h5'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DfptmagError(f"{path}: cannot write the {what}: {parent} is a file, not a directory")
            break
    return path


def run_directory(path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DfptmagError(f"{path}: --run-dir names a file, not a directory")
    return path


def _time_odd(result, qdir, options, settings: dict | None) -> None:
    """With empty states next to the q-run (``<qdir>/empty``, from a [timeodd] workflow), its
    time-odd response into ``result`` (closure from ``settings``, default "kinetic")."""
    from ..analysis.timeodd import attach_if_present
    attach_if_present(result, qdir, (settings or {}).get("closure", "kinetic"), options.realspace)


def analyze_dirs(qdirs, output, options, time_odd: dict | None = None) -> AnalyzeResult:
    """Analyze q-run directories and write one HDF5 file (one group per q label). A q-run with
    empty states (``<qdir>/empty``) also gets its time-odd response (``time_odd``: the
    workflow's [timeodd] settings).

    Two directories with the same label are an error before anything is computed. With several
    q-points, one that cannot be analyzed is recorded in ``.failures`` and in the file (the
    ``failures`` group; root attribute ``complete = False``), and the others are written; with a
    single q-point its error is raised."""
    from ..results import qfile as results
    from ..analysis.qrun import analyze_qrun
    from ..io.qrun_dir import MANIFEST, read_manifest
    dirs: dict[str, Path] = {}
    for qd in qdirs:
        label = read_manifest(qd).get("label") or Path(qd).resolve().name
        if not isinstance(label, str) or not label:
            raise InputFileError(Path(qd) / MANIFEST, f"'label' = {label!r} is not a name")
        if label in dirs:
            raise InputFileError(Path(qd) / MANIFEST, f"q label {label!r} is also the label of {dirs[label]}; "
                                                      f"both would be written to /q/{label}. Give one of "
                                                      "them another \"label\" in its manifest")
        dirs[label] = Path(qd)
    res, failures = {}, {}
    for label, qd in dirs.items():
        try:
            res[label] = analyze_qrun(qd, options)
            _time_odd(res[label], qd, options, time_odd)
        except DfptmagError as exc:
            if len(dirs) == 1:
                raise
            failures[label] = str(exc)
    if res:
        results.write(output, res, failures)
    return AnalyzeResult(output=Path(output) if res else None, analyses=res, qdirs=dirs, failures=failures)


def analyze(run_dir, output="dfptmag.h5", amplitude: str = "zero-point", amplitude_bohr: float = 0.01,
            field: bool = True, degeneracy_tol_cm1: float | None = None,
            allow_charge_mismatch: bool = False, progress: bool = False) -> AnalyzeResult:
    """``dfptmag analyze``: post-process every q-run directory (holding dfptmag-q.json) at or
    below ``run_dir`` into ``output``. ``field=False`` skips the real-space field (G = 0 only);
    modes closer than ``degeneracy_tol_cm1`` (default 0.5 cm⁻¹) form one degenerate subspace;
    ``allow_charge_mismatch`` writes the numbers even if the charge oracle fails (recorded).
    q-points that could not be analyzed are in ``.failures`` (see :func:`analyze_dirs`)."""
    from ..analysis.qrun import AnalysisOptions
    from ..kernel.modes import DEGENERACY_TOL_CM1
    from ..io.qrun_dir import MANIFEST, find_qruns
    if not Path(run_dir).is_dir():
        raise InputFileError(run_dir, "not a directory (give a run directory or a q-run directory)")
    output = output_file(output)
    qdirs = find_qruns(run_dir)
    if not qdirs:
        raise InputFileError(run_dir, f"no q-run directory ({MANIFEST}) found at or below it")
    tol = DEGENERACY_TOL_CM1 if degeneracy_tol_cm1 is None else float(degeneracy_tol_cm1)
    if not tol >= 0:
        raise DfptmagError(f"degeneracy tolerance {degeneracy_tol_cm1!r} cm-1: give a number ≥ 0")
    opts = AnalysisOptions(realspace=field, amplitude=amplitude, amplitude_bohr=amplitude_bohr,
                           degeneracy_tol_cm1=tol, progress=progress,
                           allow_charge_mismatch=allow_charge_mismatch)
    return analyze_dirs(qdirs, output, opts)


def run(workflow=None, q=None, patterns=None, run_dir=None, output=None, snapshots: bool = True,
        allow_charge_mismatch: bool = False, progress: bool = False, discard_dwf: bool | None = None,
        keep_scratch: bool | None = None, time_odd: bool | None = None,
        empty_bands: int | None = None) -> RunResult:
    """``dfptmag run``: run (or resume) a workflow's QE steps with δψ capture, analyze, write
    HDF5 and the snapshot figures of the modes with the largest in-plane and out-of-plane
    magnetization.

    workflow: TOML file or built-in name (default: the tiny WSe2 workflow); q: list of q-points
    ('K', "K'" = '-K', 'M', 'G', '0.5,0,0' or three numbers; default the workflow's [ph] q);
    patterns: 1-based pattern numbers (default all); run_dir: default runs/<workflow name>;
    output: default <run_dir>/dfptmag.h5; discard_dwf: contract each pattern's δψ and delete it
    (default the workflow's [storage] discard_dwf; see dfptmag.jobs.storage); keep_scratch: keep
    the q's ph.x scratch once everything is contracted; time_odd: also the time-odd response (pw.x
    empty states per q; default: on when the workflow has a [timeodd] section), empty_bands
    overriding [timeodd] empty_bands."""
    from ..data import resolve_workflow
    from ..workflow import config
    from ..workflow.runner import Runner
    from .options import analysis_options, time_odd_settings
    wf = config.load(resolve_workflow(workflow))
    qpoints = [config.parse_q(s, "--q") for s in q] if q else None
    if patterns is not None:
        patterns = sorted({int(p) for p in patterns})
    run_dir = run_directory(run_dir or Path("runs") / wf.name)
    out = output_file(output or run_dir / "dfptmag.h5")
    runner = Runner(wf, run_dir, progress=progress)
    from . import storage
    st = storage.settings(wf, None, discard_dwf, keep_scratch)
    time_odd_settings(wf, time_odd, empty_bands)
    storage.attach(runner, st)
    runner.check_patterns(patterns)          # against 3·nat, before any QE process starts
    qdirs = runner.run(qpoints, patterns)
    opts = analysis_options(wf, progress=progress, allow_charge_mismatch=allow_charge_mismatch)
    a = analyze_dirs(qdirs, out, opts, wf.timeodd)
    shots = []
    if wf.analysis["realspace"] and snapshots:
        from .snapshot import run_snapshot, strongest_modes
        for label, r in a.analyses.items():
            if "mode_cell_integral" not in r:
                continue
            for kind, mode in strongest_modes(out, label).items():
                why = "largest " + {"inplane": "in-plane", "outofplane": "out-of-plane"}[kind] + " magnetization"
                for f in run_snapshot(out, label, mode=mode, formats=("png", "pdf"),
                                      outdir=run_dir / "snapshots"):
                    shots.append((f, why))
    return RunResult(output=a.output, analyses=a.analyses, qdirs=a.qdirs, failures=a.failures, run_dir=run_dir,
                     steps_ran=len(runner.steps.ran), steps_skipped=len(runner.steps.skipped),
                     snapshots=shots)


def route(workflow=None) -> str:
    """The route ``dfptmag bands`` takes without --direct/--interpolate: "interpolated" when the
    workflow has an ``[interpolation]`` section, else "direct"."""
    from ..data import resolve_workflow
    from ..workflow.config import load
    return "interpolated" if load(resolve_workflow(workflow)).interpolation is not None else "direct"


def bands(workflow=None, path: str | None = None, npoints: int | None = None, workers: int | None = None,
          nproc: int | None = None, run_dir=None, output=None, figures=("png", "pdf"),
          progress: bool = False, interpolate: bool | None = None, engine: str | None = None,
          dry_run: bool = False, discard_dwf: bool | None = None, keep_scratch: bool | None = None):
    """``dfptmag bands``: the magnetization bands along a q path, bands.h5 and figures.

    Two routes (``interpolate``):

    - ``None`` (default, as ``dfptmag bands``): the interpolated route when the workflow has an
      ``[interpolation]`` section and no ``engine``/``dry_run`` is asked for, else the direct one;
    - ``True`` (``--interpolate``): DFPT with capture only at the irreducible q of the
      ``[interpolation]`` grid, the magnetization on the dense ``[dispersion]`` path and over the
      zone Fourier-interpolated (dfptmag.jobs.interpolate; returns an InterpolatedBandsRun);
    - ``False`` (``--direct``): all patterns at every q of the ``[bands]`` path, the interpolated
      dispersion, branch tracking (dfptmag.jobs.bands.run_bands; returns a BandsRun). q-points
      that failed are in ``.failures`` (bands.h5 has NaN there; the CLI then exits non-zero).

    ``engine="local"|"slurm"`` (or ``dry_run=True``) is ``dfptmag bands --engine ...``: the direct
    route as independent tasks (dfptmag.jobs.cluster.bands_tasks; returns a TasksRun, whose
    ``.dry_run_text`` is the plan; with Slurm it returns once the tasks are submitted).
    ``discard_dwf``/``keep_scratch``: contract-and-discard (dfptmag.jobs.storage; default the
    workflow's [storage], whose discard_dwf = "auto" is on for ``engine="slurm"`` only).
    ``dfptmag.load(result.output)`` reads the file."""
    from .bands import run_bands
    from ..data import resolve_workflow
    if interpolate not in (None, True, False):
        raise TypeError(f"interpolate={interpolate!r}: True, False or None (None: interpolated when "
                        "the workflow has [interpolation] and no engine is given)")
    if output is not None:
        output_file(output)
    if run_dir is not None:
        run_directory(run_dir)
    if engine is not None or dry_run:
        if interpolate:
            raise DfptmagError("--interpolate runs on one machine for now; drop --engine/--dry-run")
        from .cluster import bands_tasks
        return bands_tasks(resolve_workflow(workflow), engine=engine or "local", workers=workers,
                           run_dir=run_dir, path=path, npoints=npoints, nproc=nproc, output=output,
                           figures=tuple(figures or ()), dry_run=dry_run, discard_dwf=discard_dwf,
                           keep_scratch=keep_scratch)
    if interpolate is None:
        interpolate = route(workflow) == "interpolated"
    if interpolate:
        from .interpolate import run_interpolated_bands
        return run_interpolated_bands(resolve_workflow(workflow), path=path, npoints=npoints, workers=workers,
                                      run_dir=run_dir, output=output, progress=progress,
                                      figures=tuple(figures or ()), nproc=nproc, discard_dwf=discard_dwf,
                                      keep_scratch=keep_scratch)
    return run_bands(resolve_workflow(workflow), path=path, npoints=npoints, workers=workers,
                     run_dir=run_dir, output=output, progress=progress, figures=tuple(figures or ()),
                     nproc=nproc, discard_dwf=discard_dwf, keep_scratch=keep_scratch)
