"""The analysis settings of a workflow run, built in one place for every job that analyzes
q-run directories of a workflow (``run``, the direct and the interpolated ``bands``)."""
from __future__ import annotations


def analysis_options(wf, **overrides):
    """:class:`dfptmag.analysis.qrun.AnalysisOptions` from the workflow's ``[analysis]`` section
    (realspace, amplitude, amplitude_bohr); ``overrides`` replace those or set other fields
    (progress, degeneracy_tol_cm1, allow_charge_mismatch, ...)."""
    from ..analysis.qrun import AnalysisOptions
    fields = {"realspace": wf.analysis["realspace"], "amplitude": wf.analysis["amplitude"],
              "amplitude_bohr": wf.analysis["amplitude_bohr"]}
    fields.update(overrides)
    return AnalysisOptions(**fields)
