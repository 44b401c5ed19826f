"""The one atomic-write helper: write to a temporary file next to the target, then
``os.replace`` it onto the target, so an interrupted command never leaves a half-written file
(and a reader never sees one). The temporary file keeps the target's suffix, so writers that
infer the format from the name (matplotlib, ASE, meshio) still work.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def _remove_stale(path: Path) -> None:
    """Temporary files of earlier writers of ``path`` on this machine that died (SIGKILL) before
    their rename."""
    for tmp in path.parent.glob(f".{path.stem}.part-*{path.suffix}"):
        pid = tmp.name[len(f".{path.stem}.part-"):len(tmp.name) - len(path.suffix)]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass


@contextlib.contextmanager
def atomic_path(path):
    """``with atomic_path(p) as tmp: write(tmp)`` — on success ``tmp`` replaces ``p``; on any
    error ``tmp`` is removed and ``p`` is left as it was. Parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = path.with_name(f".{path.stem}.part-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def copy_file(src, dst, metadata: bool = False) -> Path:
    """Copy ``src`` to ``dst`` atomically (``metadata``: also times and mode, as shutil.copy2)."""
    with atomic_path(dst) as tmp:
        (shutil.copy2 if metadata else shutil.copyfile)(src, tmp)
    return Path(dst)


def savefig(fig, path, **kwargs) -> Path:
    """matplotlib ``fig.savefig`` made atomic; the format is the target's suffix."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip("."))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path
