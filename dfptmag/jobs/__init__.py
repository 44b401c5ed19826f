"""Jobs: one function per user command, gluing workflow → analysis → results → plot/export.
``dfptmag.run/analyze/bands`` (which are ``jobs.run.run/analyze/bands``) and the command line both
call these; the CLI only parses and prints.

- ``run``       dfptmag run / analyze (and ``bands``, the facade over ``jobs.bands``)
- ``bands``     the band-path job
- ``interpolate`` bands --interpolate: DFPT at the irreducible q of a grid, F(q) on a dense path
- ``cluster``   the band workflow through a task engine (local pool, Slurm), task, status, dry run
- ``snapshot``  snapshots of a saved result
- ``files``     capture (users' own ph.x runs), plot and export of saved files
- ``model``     the localized-level model (second paper)
"""
