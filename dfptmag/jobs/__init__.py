"""Jobs: one function per user command, gluing workflow → analysis → results → plot/export.
``dfptmag.run/analyze/bands`` and the command line both call these; the CLI only parses and
prints.

- ``run``       dfptmag run / analyze (and ``bands``, the facade over ``jobs.bands``)
- ``bands``     the band-path job
- ``snapshot``  snapshots of a saved result
- ``model``     the localized-level model (second paper)
"""
from .run import analyze, bands, run

__all__ = ["run", "analyze", "bands"]
