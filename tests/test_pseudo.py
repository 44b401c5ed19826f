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


def test_regenerated_on_another_day_keeps_the_run_valid(qe_cache, tmp_path):
    """A UPF regenerated on another day differs only in ld1.x's "Generation date" line: the copy
    in a run directory is kept and the resume hash is unchanged, so nothing is recomputed."""
    from dfptmag.workflow import config
    from dfptmag.workflow.runner import Runner
    ld1 = ROOT / "workflows" / "pseudo" / "Se.rel-pbe-nc.ld1.in"
    run = Runner(config.load(ROOT / "workflows" / "wse2-tiny.toml"), tmp_path, progress=False)
    upf = pseudo.generate(ld1, tmp_path / "pseudo")
    h0 = run._upf_hash({"Se": upf.name})
    text = upf.read_text()
    assert "Generation date" in text
    other_day = "\n".join(ln.replace(ln.split(":")[-1], " 01Jan2020") if "Generation date" in ln else ln
                          for ln in text.splitlines()) + "\n"
    upf.write_text(other_day)
    assert pseudo.generate(ld1, tmp_path / "pseudo").read_text() == other_day      # kept
    assert run._upf_hash({"Se": upf.name}) == h0
    upf.write_text(text.replace("Fully-Relativistic", "fully-relativistic"))      # a real change
    assert pseudo.generate(ld1, tmp_path / "pseudo").read_text() == text          # replaced
