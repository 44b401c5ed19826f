"""The shipped workflows load, validate and give the pw.x/ph.x inputs they promise."""
from pathlib import Path

import numpy as np
import pytest

from dfptmag.errors import InputFileError
from dfptmag.workflow import config, inputs

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name,ecut,kgrid,c_ang", [("wse2-tiny", 20.0, [2, 2, 1], 10.0),
                                                    ("wse2-converged", 60.0, [12, 12, 1], 20.0)])
def test_shipped_workflows(name, ecut, kgrid, c_ang):
    wf = config.load(ROOT / "workflows" / f"{name}.toml")
    assert wf.pw["ecutwfc_ry"] == ecut and wf.pw["kgrid"] == kgrid
    atoms = inputs.build_atoms(wf)
    assert np.isclose(atoms.cell[2, 2], c_ang)
    text = inputs.pw_input(wf, atoms, {"W": "W.UPF", "Se": "Se.UPF"}, "out", "pseudo")
    for key in ("noncolin = .true.", "lspinorb = .true.", "nosym = .true.", "noinv = .true.",
                "occupations = 'fixed'", f"{kgrid[0]} {kgrid[1]} 1 0 0 0"):
        assert key in text
    q = inputs.q_crystal_to_tpiba(atoms, config.parse_q("K", "t").crystal)
    assert np.allclose(q, [1 / 3, 1 / np.sqrt(3), 0], atol=1e-12)      # K in 2π/a
    if name == "wse2-converged":
        assert "assume_isolated = '2D'" in text and wf.nproc == wf.npool


def test_plane_wave_parallel_workflow_refused(tmp_path):
    text = (ROOT / "workflows" / "wse2-tiny.toml").read_text().replace("npool = 2", "npool = 1")
    text = text.replace('file = "../structures', f'file = "{ROOT}/structures').replace(
        '"pseudo/', f'"{ROOT}/workflows/pseudo/')
    bad = tmp_path / "rg.toml"
    bad.write_text(text)
    with pytest.raises(InputFileError, match=r"rg\.toml.*npool = 1.*refused"):
        config.load(bad)
