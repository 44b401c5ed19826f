"""Jobs on saved files and on users' own ph.x runs: ``dfptmag capture``, ``dfptmag plot`` and
``dfptmag export``. Each returns what it wrote; the command line only prints."""
from __future__ import annotations

from pathlib import Path

from ..errors import DfptmagError


def capture(command: list[str], qdir=".", log=None, redo: bool = False):
    """Run one user ph.x command (a list of words, never a shell line) under dfptmag's capture in
    the q-run directory ``qdir`` (locked for the duration); returns (irrep, δψ files, fildrho copy
    or None, q directory)."""
    from ..workflow import locks
    from ..workflow.capture import capture_user_command
    if Path(qdir).exists() and not Path(qdir).is_dir():
        raise DfptmagError(f"{qdir}: --dir names a file, not a directory")
    with locks.locked(qdir):      # one capture at a time per q-run directory (manifest, capture/)
        return capture_user_command(command, qdir, log, redo=redo)


def plot(bands_file, outdir=None, formats=("png", "pdf")) -> list[Path]:
    """The band figures of a saved bands.h5 (next to it by default)."""
    from ..plot.bands import save_figures
    from ..results.bandsfile import read
    if not Path(bands_file).is_file():
        raise DfptmagError(f"{bands_file}: file not found")
    out = Path(outdir) if outdir else Path(bands_file).parent
    if out.exists() and not out.is_dir():
        raise DfptmagError(f"{out}: --outdir names a file, not a directory")
    return save_figures(read(bands_file), out, formats=formats, stem=Path(bands_file).stem)


def export(bands_file, formats=("phonopy",), outdir=None, force: bool = False, fc=None) -> list[Path]:
    """bands.h5 → phonopy's band.yaml + band.hdf5 (+ phonopy_params.yaml with q2r.x's force
    constants ``fc``, default ``dispersion/fc`` next to the file, when present) and/or pymatgen's
    JSON (next to it by default). Existing files are refused unless ``force``."""
    out = Path(outdir) if outdir else Path(bands_file).parent
    written = []
    if "pymatgen" in formats:
        from ..export.phonopy import refuse_overwrite
        refuse_overwrite([out / (Path(bands_file).stem + "_pymatgen.json")], force)
    if "phonopy" in formats:
        from ..export.phonopy import export as to_phonopy
        written += to_phonopy(bands_file, out, force=force, fc_file=fc)
    if "pymatgen" in formats:
        from ..export.pymatgen import write_json
        out.mkdir(parents=True, exist_ok=True)
        written.append(write_json(bands_file, out / (Path(bands_file).stem + "_pymatgen.json")))
    return written
