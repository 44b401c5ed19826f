"""Every workflow key and command-line option, fed bad values: exit 2, one line naming the file
or option and what is wrong, and nothing started (no run directory, no QE process)."""
import re
from pathlib import Path

import pytest

from dfptmag.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "workflows" / "wse2-tiny.toml"


def _workflow(tmp_path, edit) -> Path:
    """The tiny workflow with absolute paths, changed by ``edit(text) -> text``."""
    text = TINY.read_text()
    text = text.replace('"../structures/', f'"{ROOT}/structures/').replace('"pseudo/', f'"{ROOT}/workflows/pseudo/')
    path = tmp_path / "wf.toml"
    path.write_text(edit(text))
    return path


def _set(section, key, value):
    """Replace (or add) ``key = value`` in ``[section]``."""
    def edit(text):
        head = f"[{section}]"
        pre, post = text.split(head, 1) if head in text else (text + "\n", "")
        lines = post.split("\n")
        for i, ln in enumerate(lines[1:], 1):
            if ln.startswith("["):
                lines.insert(i, f"{key} = {value}")
                break
            if re.match(rf"{re.escape(key)}\s*=", ln):
                lines[i] = f"{key} = {value}"
                break
        else:
            lines.append(f"{key} = {value}")
        return pre + head + "\n".join(lines)
    return edit


def _drop(section, key):
    def edit(text):
        return re.sub(rf"(?m)^{re.escape(key)}\s*=.*$", "", text) if f"[{section}]" in text else text
    return edit


TOML_CASES = [
    # unknown keys, with the suggestion
    (_set("pw", "conv_thrr", "1e-10"), r"\[pw\] unknown key 'conv_thrr' \(did you mean 'conv_thr'\?\)"),
    (_set("ph", "tr2_phh", "1e-14"), r"\[ph\] unknown key 'tr2_phh' \(did you mean 'tr2_ph'\?\)"),
    (_set("analysis", "realspaec", "true"), r"did you mean 'realspace'"),
    (_set("dispersion", "qgird", "[3, 3, 1]"), r"did you mean 'qgrid'"),
    (_set("bands", "npoint", "7"), r"did you mean 'npoints'"),
    (_set("workflow", "prefx", '"x"'), r"did you mean 'prefix'"),
    (lambda t: t + "\n[paralel]\nnproc = 1\n", r"unknown section \[paralel\] \(did you mean 'parallel'\?\)"),
    # types, ranges, finiteness
    (_set("pw", "ecutwfc_ry", "-20.0"), r"ecutwfc_ry = -20.0: must be > 0"),
    (_set("pw", "ecutwfc_ry", "nan"), r"ecutwfc_ry = nan: must be finite"),
    (_set("pw", "ecutwfc_ry", '"20"'), r"ecutwfc_ry = '20': expected a number"),
    (_set("pw", "ecutrho_ry", "10.0"), r"ecutrho_ry = 10.0 < ecutwfc_ry"),
    (_set("pw", "kgrid", "[2, 0, 1]"), r"kgrid = \[2, 0, 1\]: expected three positive integers"),
    (_set("pw", "conv_thr", "0.0"), r"conv_thr = 0.0: must be > 0"),
    (_set("pw", "mixing_beta", "1.5"), r"mixing_beta = 1.5: must be ≤ 1"),
    (_set("pw", "mixing_mode", '"local_TF"'), r"mixing_mode = 'local_TF'.*did you mean 'local-TF'"),
    (_set("pw", "nbnd", "0"), r"nbnd = 0: must be ≥ 1"),
    (_set("pw", "assume_isolated", '"3D"'), r"assume_isolated = '3D'"),
    (_set("ph", "tr2_ph", "-1e-14"), r"tr2_ph = -1e-14: must be > 0"),
    (_set("ph", "tr2_ph", "inf"), r"tr2_ph = inf: must be finite"),
    (_set("ph", "q", '["nan,0,0"]'), r"q-point 'nan,0,0': coordinates must be finite"),
    (_set("ph", "q", '["X"]'), r"q-point 'X'"),
    (_set("ph", "q", '"K"'), r"\[ph\] q = 'K': a list"),
    (_set("ph", "patterns", "[0, 1]"), r"patterns = \[0, 1\]: 'all' or a list of pattern numbers 1..9 \(3 atoms\)"),
    (_set("ph", "patterns", "[10]"), r"1\.\.9"),
    (_set("structure", "vacuum_angstrom", "-1.0"), r"vacuum_angstrom = -1.0: must be ≥ 0"),
    (_set("structure", "vacuum_angstrom", "nan"), r"vacuum_angstrom = nan: must be finite"),
    (_set("structure", "file", '"nothere.xyz"'), r"\[structure\] file .*nothere.xyz not found"),
    (_drop("pseudopotentials", "Se"), r"no ld1.x input for Se"),
    (_set("pseudopotentials", "Te", '"x.in"'), r"Te: not an element of WSe2_monolayer.extxyz"),
    (_set("parallel", "nproc", "0"), r"nproc = 0: must be ≥ 1"),
    (_set("parallel", "nproc", "1.5"), r"nproc = 1.5: expected an integer"),
    (_set("parallel", "workers", "0"), r"workers = 0: must be ≥ 1"),
    (_set("parallel", "mpirun", '"no-such-launcher -x"'), r"'no-such-launcher' not found on PATH"),
    (_set("parallel", "mpirun", '""'), r"mpirun = '': a launcher"),
    (_set("analysis", "amplitude", '"zero_point"'), r"amplitude = 'zero_point'"),
    (_set("analysis", "amplitude_bohr", "0.0"), r"amplitude_bohr = 0.0: must be > 0"),
    (_set("analysis", "realspace", '"yes"'), r"realspace = 'yes': true or false"),
    (_set("bands", "npoints", "1"), r"npoints = 1: an integer ≥ 2"),
    (_set("dispersion", "asr", '"simpel"'), r"asr = 'simpel'"),
    (_set("dispersion", "npoints", '"many"'), r"npoints = 'many': expected an integer"),
    (_set("dispersion", "loto_2d", '"yes"'), r"loto_2d = 'yes': true or false"),
    (_set("interpolation", "qgrid", "[6, 4, 1]"), r"\[interpolation\] qgrid = \[6, 4, 1\]: \[N, N, 1\]"),
    (_set("interpolation", "qgrid", '"6x6"'), r"\[interpolation\] qgrid = '6x6'"),
    (_set("interpolation", "qgird", "[6, 6, 1]"), r"did you mean 'qgrid'"),
    (_set("interpolation", "long_range", "[[0.1, 0, 0]]"), r"\[interpolation\] long_range = \[\[0.1, 0, 0\]\]: two q-points"),
    (_set("interpolation", "long_range", '[[0.1, 0, 0], "M"]'), r"long_range = .*: two q-points \[x, y, 0\]"),
    (_set("interpolation", "long_range", "[[0.1, 0, 0], [0.1, 0, 0.2]]"), r"long_range q = \[0.1, 0, 0.2\]: in-plane"),
    (_set("interpolation", "long_range", "[[0, 0, 0], [0.1, 0, 0]]"), r"long_range q = \[0, 0, 0\]: .*not Γ"),
    (_set("workflow", "name", '"a/b"'), r"name = 'a/b'"),
    (_set("storage", "discard_dwf", '"yes"'), r"\[storage\] discard_dwf = 'yes': true, false or \"auto\""),
    (_set("storage", "keep_scratch", "1"), r"\[storage\] keep_scratch = 1: true or false"),
    (_set("storage", "discard_dfw", "true"), r"did you mean 'discard_dwf'"),
    (_set("dispersion", "qgrid", "[3, 0, 1]"), r"\[dispersion\] qgrid = \[3, 0, 1\]: three positive integers"),
    (lambda t: t + "\nthis is not toml\n", r"invalid TOML"),
]


@pytest.mark.parametrize("edit,message", TOML_CASES, ids=[c[1][:40] for c in TOML_CASES])
def test_bad_workflow_value(tmp_path, capsys, edit, message):
    wf = _workflow(tmp_path, edit)
    run_dir = tmp_path / "run"
    for cmd in (["run", str(wf)], ["bands", str(wf)]):
        assert main(cmd + ["--run-dir", str(run_dir), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"dfptmag: error: {wf}: "), err
        assert re.search(message, err), err
        assert not run_dir.exists()


def test_unchanged_workflow_passes_validation(tmp_path):
    from dfptmag.workflow import config
    wf = config.load(_workflow(tmp_path, lambda t: t))
    assert wf.nproc == 2 and wf.patterns is None
    config.load(ROOT / "workflows" / "wse2-converged.toml")


CLI_CASES = [
    (["run", "--patterns", "0,99"], r"--patterns: '0,99': pattern numbers start at 1"),
    (["run", "--patterns", "a,b"], r"--patterns: expected comma-separated pattern numbers"),
    (["run", "--patterns", "1,10"], r"patterns \[10\] out of range: .* has 3 atoms, so patterns are 1\.\.9"),
    (["run", "--q=nan,0,0"], r"--q: q-point 'nan,0,0': coordinates must be finite"),
    (["run", "--q=inf,0,0"], r"coordinates must be finite"),
    (["run", "--q", "Q"], r"--q: q-point 'Q'"),
    (["run", "-o", "{tmp}"], r"is a directory; give a file name"),
    (["run", "--run-dir", "{tmp}/afile"], r"--run-dir names a file"),
    (["run", "{tmp}/nothere.toml"], r"workflow file not found"),
    (["bands", "--npoints", "1"], r"--npoints: 1: must be ≥ 2"),
    (["bands", "--workers", "0"], r"--workers: 0: must be ≥ 1"),
    (["bands", "--nproc", "-1"], r"--nproc: -1: must be ≥ 1"),
    (["bands", "--format", "png,xsf"], r"--format: 'png,xsf': formats are a comma list of png, pdf"),
    (["bands", "-o", "{tmp}"], r"is a directory"),
    (["bands", "--discard-dwf", "--keep-dwf"], r"--keep-dwf: not allowed with argument --discard-dwf"),
    (["analyze", "{tmp}/nothere"], r"not a directory"),
    (["analyze", "{tmp}", "-o", "{tmp}"], r"is a directory"),
    (["analyze", "{tmp}", "--amplitude-bohr", "-1"], r"--amplitude-bohr: -1.0: must be > 0"),
    (["analyze", "{tmp}", "--amplitude-bohr", "nan"], r"must be a finite number"),
    (["analyze", "{tmp}"], r"no q-run directory"),
    (["snapshot", "{tmp}/x.h5", "--mode", "0"], r"--mode: 0: must be ≥ 1"),
    (["snapshot", "{tmp}/x.h5", "--cells", "0x0"], r"--cells: cells '0x0': N and M must be ≥ 1"),
    (["snapshot", "{tmp}/x.h5", "--grid", "0,0,0"], r"--grid: grid '0,0,0': three positive integers"),
    (["snapshot", "{tmp}/x.h5", "--frames", "0"], r"--frames: 0: must be ≥ 2"),
    (["snapshot", "{tmp}/x.h5", "--time", "nan"], r"--time: nan: must be a finite number"),
    (["snapshot", "{tmp}/x.h5", "--format", "png,jpg"], r"--format: 'png,jpg'"),
    (["snapshot", "{tmp}/afile", "--mode", "1"], r"afile: not a dfptmag results file"),
    (["plot", "bands", "{tmp}/nothere.h5"], r"nothere.h5: file not found"),
    (["plot", "bands", "{tmp}/afile"], r"afile: not a readable HDF5 file"),
    (["plot", "bands", "{tmp}/afile", "--format", "png,xsf"], r"--format: 'png,xsf'"),
    (["export", "{tmp}/nothere.h5", "--format", "phonopy"], r"nothere.h5"),
    (["export", "{tmp}/afile", "--format", "phonopy"], r"afile"),
    (["export", "{tmp}/afile", "--format", "xyz"], r"--format"),
    (["capture"], r"give the ph.x command line after --"),
    (["capture", "--", "ph.x"], r"capture needs the ph.x input given with -in FILE"),
    (["nonsense"], r"invalid choice: 'nonsense'"),
]


@pytest.mark.parametrize("argv,message", CLI_CASES, ids=[" ".join(c[0])[:40] for c in CLI_CASES])
def test_bad_option(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory, not HDF5\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("run", "bands") and "--run-dir" not in argv:
        argv += ["--run-dir", str(tmp_path / "run")]
    try:
        code = main(argv)
    except SystemExit as exc:          # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("dfptmag: error: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def _damage(q, kind):
    import json
    import os
    if kind == "zeroed wfc":
        p = q / "out" / "_ph0" / "wse2.save" / "wfc1.dat"
        p.write_bytes(bytes(p.stat().st_size))
    elif kind == "random dyn":
        p = q / "dyn"
        p.write_bytes(os.urandom(3000))
    elif kind == "random patterns xml":
        p = q / "out" / "_ph0" / "wse2.phsave" / "patterns.1.xml"
        p.write_bytes(os.urandom(2000))
    elif kind == "random data-file-schema":
        p = q / "out" / "_ph0" / "wse2.save" / "data-file-schema.xml"
        p.write_text("<qes:espresso>not closed")
    else:
        p = q / "dfptmag-q.json"
        man = json.loads(p.read_text())
        if kind == "manifest q text":
            man["q_tpiba"] = "abc"
        elif kind == "manifest captures list":
            man["captures"] = [1, 2]
        elif kind == "manifest prefix number":
            man["prefix"] = 7
        p.write_text(json.dumps(man))
    return p


DAMAGE = ["zeroed wfc", "random dyn", "random patterns xml", "random data-file-schema", "manifest q text",
          "manifest captures list", "manifest prefix number"]


@pytest.mark.qe
@pytest.mark.parametrize("kind", DAMAGE)
def test_malformed_files_give_one_line_naming_them(tiny_run, tmp_path, capsys, kind):
    import shutil
    _, dirs = tiny_run
    q = tmp_path / "qK"
    shutil.copytree(dirs["K"], q)
    victim = _damage(q, kind)
    code = main(["analyze", str(q), "-o", str(tmp_path / "o.h5"), "--quiet", "--no-field"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"dfptmag: error: {victim}: "), err
    assert not (tmp_path / "o.h5").exists()
