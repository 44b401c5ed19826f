"""The built-in workflows and structures, found both in a source checkout and in an installed
(non-editable) package.

A wheel carries ``workflows/`` and ``structures/`` as package data under ``dfptmag/_data/``
(copied there by setup.py's build step); in a source checkout or an editable install they are
the repository's own directories. Relative paths inside a workflow (``../structures/...``,
``pseudo/...``) hold in both layouts.
"""
from __future__ import annotations

from pathlib import Path

from .errors import InputFileError

_PKG = Path(__file__).resolve().parent
DEFAULT_WORKFLOW_NAME = "wse2-tiny"


def data_dir() -> Path:
    """The directory holding ``workflows/`` and ``structures/``."""
    installed = _PKG / "_data"
    if (installed / "workflows").is_dir():
        return installed
    return _PKG.parent


def workflows_dir() -> Path:
    return data_dir() / "workflows"


def builtin_workflows() -> dict[str, Path]:
    """{name: path} of the built-in workflows (``wse2-tiny``, ``wse2-converged``, ...)."""
    return {p.stem: p for p in sorted(workflows_dir().glob("*.toml"))}


def default_workflow() -> Path:
    return workflows_dir() / f"{DEFAULT_WORKFLOW_NAME}.toml"


def resolve_workflow(spec=None) -> Path:
    """A workflow file: ``None`` → the default; an existing path → itself; the name of a
    built-in workflow (``wse2-converged``) → its file."""
    if spec is None:
        return default_workflow()
    p = Path(spec)
    if p.is_file():
        return p
    builtin = builtin_workflows()
    if str(spec) in builtin:
        return builtin[str(spec)]
    raise InputFileError(p, "workflow file not found (built-in workflows: "
                            f"{', '.join(builtin) or 'none found'})")
