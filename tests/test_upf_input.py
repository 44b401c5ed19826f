"""Ready UPF files in [pseudopotentials], not ld1.x inputs: a UPF that ld1.x itself wrote
(the tiny run's, so no download) is accepted, checked before any QE run and used as it is; bad
UPFs stop the run with exit 2 and one line naming the file, before anything is created."""
import re
import shutil

import pytest

from dfptmag.cli import main

from conftest import ROOT, TINY

pytestmark = pytest.mark.qe


@pytest.fixture(scope="module")
def upfs(tiny_run, tmp_path_factory):
    """The ld1.x-written W and Se UPFs of the tiny run, copied to a directory of their own."""
    runner, _ = tiny_run
    d = tmp_path_factory.mktemp("upf")
    out = {}
    for el in ("W", "Se"):
        src = runner.run_dir / "pseudo" / f"{el}.rel-pbe-nc.UPF"
        out[el] = shutil.copy(src, d / src.name)
    return {k: type(d)(v) for k, v in out.items()}


def _workflow(tmp_path, w, se):
    text = TINY.read_text().replace('"../structures/', f'"{ROOT}/structures/')
    text = re.sub(r'^W = ".*"$', f'W = "{w}"', text, flags=re.M)
    text = re.sub(r'^Se = ".*"$', f'Se = "{se}"', text, flags=re.M)
    path = tmp_path / "wf.toml"
    path.write_text(text)
    return path


def test_ld1_written_upf_is_used_as_is(upfs, tiny_run, tmp_path):
    """config.load takes the UPFs; generate() copies them byte for byte without ld1.x (a missing
    ld1.x would fail); the runner's UPF hash equals the ld1.x route's, so the pw.x input and every
    resume marker downstream are the same."""
    from dfptmag.io.upf import read_upf_header
    from dfptmag.workflow import config, pseudo
    from dfptmag.workflow.runner import Runner
    wf = config.load(_workflow(tmp_path, upfs["W"], upfs["Se"]))
    assert wf.pseudopotentials == {"W": upfs["W"].resolve(), "Se": upfs["Se"].resolve()}
    head = read_upf_header(upfs["W"])
    assert head["has_so"] and head["relativistic"] == "full" and head["functional"] == "PBE"
    assert head["z_valence"] == pytest.approx(6.0) and head["element"] == "W"
    dest = pseudo.generate(upfs["Se"], tmp_path / "p", ld1x="no-such-ld1.x")
    assert dest.read_bytes() == upfs["Se"].read_bytes()
    r = Runner(wf, tmp_path / "run", progress=False)
    names = r.pseudopotentials()
    assert names == {"W": "W.rel-pbe-nc.UPF", "Se": "Se.rel-pbe-nc.UPF"}
    ld1_runner, _ = tiny_run
    assert r._upf_hash(names) == ld1_runner._upf_hash(names)


def _bad(upf, tmp_path, old, new):
    text = upf.read_text()
    assert old in text
    p = tmp_path / upf.name
    p.write_text(text.replace(old, new, 1))
    return p


@pytest.mark.parametrize("case,message", [
    ("noso", r"UPF has no spin-orbit data \(has_so false, relativistic=scalar\)"),
    ("us", r"UPF is US: dfptmag needs norm-conserving"),
    ("element", r"UPF is for W, not Se"),
    ("notupf", r"no <PP_HEADER>: not a UPF file"),
    ("functional", r"UPF files of different functionals: W PBE, Se PZ"),
    ("zval", r"UPF has no positive valence \(z_valence = 0\): pw.x needs the ionic charge"),
    ("nozval", r"UPF has no positive valence \(z_valence = missing\)"),
])
def test_bad_upf_exits_2_naming_the_file(upfs, tmp_path, capsys, case, message):
    w, se = upfs["W"], upfs["Se"]
    named = se
    if case == "noso":
        se = named = _bad(upfs["Se"], tmp_path, 'relativistic="full"', 'relativistic="scalar"')
        se.write_text(se.read_text().replace('has_so="true"', 'has_so="false"', 1))
    elif case == "us":
        se = named = _bad(upfs["Se"], tmp_path, 'is_ultrasoft="false"', 'is_ultrasoft="true"')
    elif case == "element":
        se = named = shutil.copy(upfs["W"], tmp_path / "Se.UPF")
    elif case == "notupf":
        se = named = tmp_path / "Se.upf"
        se.write_text("not a pseudopotential\n")
    elif case == "functional":
        se = _bad(upfs["Se"], tmp_path, 'functional="PBE"', 'functional="PZ"')
    elif case == "zval":
        se = named = _bad(upfs["Se"], tmp_path, 'z_valence="6.', 'z_valence="0" was="6.')
    elif case == "nozval":
        se = named = _bad(upfs["Se"], tmp_path, 'z_valence="6.', 'was="6.')
    wf = _workflow(tmp_path, w, se)
    if case == "functional":
        named = wf
    run_dir = tmp_path / "run"
    assert main(["run", str(wf), "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"dfptmag: error: {named}"), err
    assert re.search(message, err), err
    assert not run_dir.exists()


def test_upf_cutoff_above_the_workflow_is_a_warning(upfs, tmp_path, caplog):
    """A UPF whose suggested wfc_cutoff (60 Ry here) exceeds the workflow's [pw] ecutwfc_ry (20 Ry,
    the tiny run's) is accepted with one warning line naming the file and both cutoffs; ld1.x's
    own UPFs suggest none (wfc_cutoff="0.0...") and give no warning."""
    import logging
    from dfptmag.workflow import config
    with caplog.at_level(logging.WARNING, logger="dfptmag.workflow.config"):
        config.load(_workflow(tmp_path, upfs["W"], upfs["Se"]))
    assert not [r for r in caplog.records if r.name == "dfptmag.workflow.config"]
    se = _bad(upfs["Se"], tmp_path, 'wfc_cutoff="0.', 'wfc_cutoff="60.0" was="0.')
    with caplog.at_level(logging.WARNING, logger="dfptmag.workflow.config"):
        wf = config.load(_workflow(tmp_path, upfs["W"], se))
    assert wf.pseudopotentials["Se"] == se.resolve()
    msgs = [r.getMessage() for r in caplog.records if r.name == "dfptmag.workflow.config"]
    assert len(msgs) == 1 and "\n" not in msgs[0], msgs
    assert msgs[0] == f"{se.resolve()}: the UPF suggests ecutwfc 60 Ry, the workflow uses [pw] ecutwfc_ry = 20 Ry"
