"""The stored real QE outputs of tests/data/ (written by tests/data/regenerate.py, provenance in
tests/data/PROVENANCE.json): one place that knows where they are."""
from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
TINY_RUNS = ("K", "-K", "G")        # q-runs of the tiny WSe2 workflow kept under data/wse2-tiny/


def data_path(*parts) -> Path:
    """A file or folder under tests/data/."""
    return DATA.joinpath(*parts)


def provenance() -> dict:
    """What wrote the stored data: QE version, workflow and its hash, command, sha256 per file."""
    return json.loads(data_path("PROVENANCE.json").read_text())


def tiny_qrun(label: str) -> Path:
    """The stored q-run directory of the tiny workflow at ``label`` (K, -K or G), read-only use."""
    return data_path("wse2-tiny", f"q_{label}")
