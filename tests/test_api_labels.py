"""q labels in every spelling resolve through the one table dfptmag.kernel.qpoints (no QE)."""
import pytest

from dfptmag.api import _run_label


@pytest.mark.parametrize("spelling", ["G", "Γ", "Gamma", "gamma", " G "])
def test_gamma_spellings(spelling):
    assert _run_label(spelling, {"G": 0, "K": 1}) == "G"
    assert _run_label(spelling, {"Γ": 0, "K": 1}) == "Γ"          # a bands.h5 path label


@pytest.mark.parametrize("spelling", ["-K", "K'", "Kp"])
def test_kprime_spellings(spelling):
    assert _run_label(spelling, {"-K": 0}) == "-K"
    assert _run_label(spelling, {"K'": 0}) == "K'"


def test_unknown_and_coordinate_labels_pass_through():
    assert _run_label("M", {"G": 0}) == "M"
    assert _run_label("0.3333_0.0000_0.0000", {"0.3333_0.0000_0.0000": 0}) == "0.3333_0.0000_0.0000"
    with pytest.raises(TypeError):
        _run_label(None, {})
