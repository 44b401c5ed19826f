"""dfptmag: phonon-induced magnetization from Quantum ESPRESSO DFPT runs.

The object computed throughout is the *one-sided* first-order charge-spin density
matrix of paper Eq. 1, δñ^{σσ'}(r) = Σ_k w_k Σ_i u^{σ'}_{ki}(r)* δu^{σ}_{ki}(r)
(ψ* δψ only).  In the full static response the time-reversed partner term cancels
the magnetization exactly and doubles the charge; every output says so.

Python API (the same as the command line; see docs/python.md and docs/api.md)::

    dfptmag.load(path)          dfptmag.h5 → Result (per-q objects), bands.h5 → Bands
    dfptmag.run(...)            dfptmag run: QE with δψ capture → analysis → HDF5 → snapshots
    dfptmag.analyze(run_dir)    dfptmag analyze
    dfptmag.bands(...)          dfptmag bands
    dfptmag.sqw(path, ...)      dfptmag sqw: S(Q, ω) of paper Eq. 5 → StructureFactor
    dfptmag.api                 the module: Result, QPoint, Bands (help(dfptmag.api))
"""

__version__ = "0.1.0"

ONE_SIDED_NOTE = (
    "one-sided amplitude of paper Eq. 1 (sum of u* du over occupied states only); "
    "the full static response adds the time-reversed partner, which doubles the charge "
    "and cancels the magnetization exactly"
)

__all__ = ["load", "run", "analyze", "bands", "sqw", "api", "ONE_SIDED_NOTE", "__version__"]


def __getattr__(name):
    """Lazy public API, so that ``import dfptmag`` stays light and the modules below can import
    ``dfptmag.ONE_SIDED_NOTE`` without a cycle."""
    if name == "api":
        import importlib
        return importlib.import_module(".api", __name__)
    if name in ("load", "sqw"):
        from . import api
        return getattr(api, name)
    if name in ("run", "analyze", "bands"):
        from .jobs import run as job      # jobs.run holds the three (jobs.bands is a module)
        return getattr(job, name)
    raise AttributeError(f"module 'dfptmag' has no attribute {name!r}")
