"""Pseudopotentials from the repository's ld1.x inputs, checked with ld1.x's own tests."""
from pathlib import Path

import pytest

from dfptmag.errors import InputFileError
from dfptmag.io.upf import read_upf_header
from dfptmag.workflow import pseudo

pytestmark = pytest.mark.qe
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("element", ["W", "Se"])
def test_repository_pseudopotentials(element, qe_cache, tmp_path):
    upf = pseudo.generate(ROOT / "workflows" / "pseudo" / f"{element}.rel-pbe-nc.ld1.in", tmp_path)
    head = read_upf_header(upf)
    assert head["has_so"] and head["pseudo_type"] == "NC" and head["element"] == element
    out = next(qe_cache.glob("pseudo/*/ld1.out"))   # the cached ld1.x log exists
    assert out.is_file()


def test_ghost_state_is_detected(qe_cache, tmp_path):
    """W with lloc=-1 has a ghost s state (shared/docs/feasibility.md): refuse it."""
    with pytest.raises(InputFileError, match="ghost.*l=0"):
        pseudo.generate(ROOT / "tests" / "data" / "W-ghost.ld1.in", tmp_path)
