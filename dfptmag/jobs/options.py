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


def time_odd_settings(wf, time_odd: bool | None, empty_bands: int | None) -> None:
    """Switch the time-odd response on or off on ``wf`` in place (``--time-odd``,
    ``--no-time-odd``, ``--empty-bands``; default: the workflow's [timeodd] section), checked
    before any QE process starts. With contract-and-discard each pattern's contraction also
    stores its time-odd part (dfptmag.analysis.contract)."""
    from ..workflow import config
    if time_odd is False:
        wf.timeodd = None
        return
    if time_odd or empty_bands is not None:
        sec = dict(wf.timeodd or {})
        if empty_bands is not None:
            sec["empty_bands"] = empty_bands
        wf.timeodd = config.timeodd_section("--empty-bands", sec)
