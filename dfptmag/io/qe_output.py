"""Reader for ph.x's text output (``ph.*.out`` in a q-run directory): the clock of the run.

At its end ph.x prints its total clock, e.g. ::

         PHONON       :   1m23.45s CPU   1m30.12s WALL

with QE's clock format (clocks_handler.f90): ``12.34s``, ``1m23.45s``, ``1h 2m`` or ``1d 2h 3m``,
for the CPU time of rank 0 and for the wall time independently. The last such line of an output
is taken as the run's total.
"""
from __future__ import annotations

import re
from pathlib import Path

_CLOCK = r"(?:(\d+)d\s*)?(?:(\d+)h\s*)?(?:(\d+)m\s*)?(?:([\d.]+)s)?"
_PHONON = re.compile(rf"PHONON\s*:\s*{_CLOCK}\s*CPU\s+{_CLOCK}\s*WALL")


def _seconds(d, h, m, s) -> float:
    """A clock's days, hours, minutes and seconds (strings, None where absent) in seconds."""
    return 86400 * float(d or 0) + 3600 * float(h or 0) + 60 * float(m or 0) + float(s or 0)


def phonon_clock(text: str) -> tuple[float, float] | None:
    """(wall, CPU) seconds of the last "PHONON : <cpu> CPU <wall> WALL" line of a ph.x output
    text, or None if it has none (a run that did not finish)."""
    found = _PHONON.findall(text)
    if not found:
        return None
    v = found[-1]
    return _seconds(*v[4:]), _seconds(*v[:4])


def ph_step_clocks(qdir) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of every ph.x step of a q-run that printed its clock, keyed by the
    output's stem ('ph.irr3', ...) in file-name order. The CPU time is rank 0's."""
    steps = {}
    for out in sorted(Path(qdir).glob("ph.*.out")):
        clock = phonon_clock(out.read_text(errors="replace"))
        if clock is not None:
            steps[out.stem] = clock
    return steps


def ph_wall_seconds(qdir) -> float:
    """Summed ph.x wall time of a q-run (every step's total)."""
    return sum(wall for wall, _ in ph_step_clocks(qdir).values())
