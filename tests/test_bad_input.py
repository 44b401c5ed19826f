"""Bad input: each case is real QE output made wrong in one way, and must give a one-line
error naming the file and the problem — never a numpy traceback, never a silent number."""
import re
import shutil
import subprocess
import sys

import h5py
import pytest

from dfptmag.analysis.qrun import AnalysisOptions, analyze_qrun
from dfptmag.errors import InputFileError, UnsupportedError
from dfptmag.io.qrun_dir import read_manifest, write_manifest
from dfptmag.workflow import capture

FAST = AnalysisOptions(realspace=False)


@pytest.fixture
def qcopy(tiny_run, tmp_path):
    _, dirs = tiny_run
    dst = tmp_path / "qK"
    shutil.copytree(dirs["K"], dst)
    return dst


@pytest.fixture
def gcopy(stored_runs, tmp_path):
    """A copy of the stored Γ q-run (raw δψ of patterns 3 and 9; no QE)."""
    dst = tmp_path / "qG"
    shutil.copytree(stored_runs["G"], dst)
    return dst


def _without_checksums(qdir):
    """As an older manifest: the reader's own size checks speak (not the capture checksums)."""
    man = read_manifest(qdir)
    for cap in man["captures"].values():
        cap.pop("checksums", None)
    write_manifest(qdir, man)


def test_missing_dpsi_file(gcopy):
    victim = gcopy / "capture" / "dwf.irr3.1"
    victim.unlink()
    with pytest.raises(InputFileError, match=re.escape(str(victim)) + ".*not found"):
        analyze_qrun(gcopy, FAST)


def test_truncated_dpsi_file(gcopy):
    _without_checksums(gcopy)
    victim = gcopy / "capture" / "dwf.irr3.2"
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size - 4096)
    with pytest.raises(InputFileError, match=re.escape(str(victim)) + ".*not a multiple of the record length"):
        analyze_qrun(gcopy, FAST)


@pytest.mark.qe
def test_truncated_by_whole_records(qcopy):
    _without_checksums(qcopy)
    victim = qcopy / "capture" / "dwf.irr4.1"
    recl = 18 * 2 * 16 * (victim.stat().st_size // (18 * 2 * 16 * 2))
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size - recl)
    with pytest.raises(InputFileError, match=re.escape(f"{victim}: pool 1 of 2 holds 1 records, its 2 "
                                                       "k-points (1–2) use 2")):
        analyze_qrun(qcopy, FAST)


@pytest.mark.qe
def test_psi_from_a_different_run(qcopy, tiny_run):
    _, dirs = tiny_run
    save = qcopy / "out" / "_ph0" / "wse2.save"
    shutil.rmtree(save)
    shutil.copytree(dirs["-K"] / "out" / "_ph0" / "wse2.save", save)
    with pytest.raises(InputFileError, match=r"data-file-schema\.xml.*different run"):
        analyze_qrun(qcopy, FAST)


@pytest.mark.qe
def test_psi_buffer_from_a_different_run(qcopy, tiny_run):
    """Collected ψ and buffer ψ disagree: the plane-wave order verification refuses."""
    _, dirs = tiny_run
    for b in (qcopy / "out" / "_ph0").glob("wse2.wfc*"):
        b.unlink()
    for b in (dirs["-K"] / "out" / "_ph0").glob("wse2.wfc*"):
        shutil.copy(b, qcopy / "out" / "_ph0" / b.name)
    with pytest.raises(InputFileError, match=r"wse2\.wfc1 record \d+: .*plane-wave order"):
        analyze_qrun(qcopy, FAST)


@pytest.mark.qe
def test_ultrasoft_pseudopotential_refused(qcopy):
    upf = qcopy / "out" / "_ph0" / "wse2.save" / "W.rel-pbe-nc.UPF"
    upf.write_text(upf.read_text().replace('pseudo_type="NC"', 'pseudo_type="US"'))
    with pytest.raises(UnsupportedError, match=re.escape(str(upf)) + ".*ultrasoft and PAW are out of scope"):
        analyze_qrun(qcopy, FAST)


@pytest.mark.parametrize("old, new, message", [
    ("<occupations_kind>fixed</occupations_kind>", "<occupations_kind>tetrahedra</occupations_kind>",
     r"occupations 'tetrahedra': dfptmag handles occupations='fixed' \(insulators\) and 'smearing'"),
    ("<nelec>1.800000000000000e1</nelec>", "<nelec>1.750000000000000e1</nelec>",
     r"nelec = 17\.5 with nbnd = 18: not an insulator"),
    ("<nbnd>18</nbnd>", "<nbnd>16</nbnd>", r"nelec = 18\.0 with nbnd = 16: not an insulator"),
], ids=["tetrahedra", "fractional-nelec", "fewer-bands-than-electrons"])
def test_neither_insulator_nor_declared_metal_refused(gcopy, old, new, message):
    """Fixed occupations that are not a clean insulator (a fractional electron count, fewer bands
    than electrons) and occupations other than fixed or smearing: refused, naming the file."""
    xml = gcopy / "out" / "wse2.save" / "data-file-schema.xml"        # at Γ ph.x reads pw.x's own
    assert old in xml.read_text()
    xml.write_text(xml.read_text().replace(old, new))
    with pytest.raises(UnsupportedError, match=r"data-file-schema\.xml.*" + message):
        analyze_qrun(gcopy, FAST)


def test_malformed_smearing_is_one_line(gcopy):
    """A <smearing> without its degauss: the reader names the file, no traceback."""
    from dfptmag.errors import InputFileError
    xml = gcopy / "out" / "wse2.save" / "data-file-schema.xml"
    old = "<occupations_kind>fixed</occupations_kind>"
    xml.write_text(xml.read_text().replace(old, old + "<smearing>mv</smearing>"))
    with pytest.raises(InputFileError, match=r"data-file-schema\.xml.*not a valid QE data-file-schema\.xml"):
        analyze_qrun(gcopy, FAST)


def test_plane_wave_parallel_command_refused():
    with pytest.raises(UnsupportedError, match="R&G"):
        capture.check_layout(["mpirun", "-np", "2", "ph.x", "-in", "ph.in"])
    assert capture.check_layout(["mpirun", "-np", "2", "ph.x", "-nk", "2", "-in", "ph.in"]) == 2


@pytest.mark.qe
def test_plane_wave_parallel_buffers_refused(qcopy):
    """A real ph.x run with 2 processes in 1 pool (R&G): its δψ files hold slices of vectors."""
    ph0 = qcopy / "out" / "_ph0"
    # a fresh (not recover) run, so that ph.x really recomputes irrep 3 with this layout
    (qcopy / "rg.in").write_text((qcopy / "ph.irr3.in").read_text().replace("recover = .true.", "recover = .false."))
    cmd = ["mpirun", "-np", "2", "ph.x", "-in", "rg.in"]
    shutil.copy(ph0 / "wse2.save" / "data-file-schema.xml", qcopy.parent / "xml.bak")
    links = capture.prepare(ph0, "wse2", qcopy / "capture", "rg3", 2)
    capture.run_logged(cmd, qcopy / "rg.out", qcopy)
    dwf, _ = capture.finish(links, ph0, "wse2", None, qcopy / "capture", "rg3")
    assert len(dwf) == 2
    man = read_manifest(qcopy)
    man["captures"]["3"] = {"dwf": [str(p.relative_to(qcopy)) for p in dwf], "drho": None}   # by hand
    write_manifest(qcopy, man)
    # refused either from the run's XML (processes vs pools) or from the buffer sizes
    with pytest.raises(InputFileError, match=r"(data-file-schema\.xml.*R&G|dwf\.rg3\.\d.*record)"):
        analyze_qrun(qcopy, FAST)
    # and from the buffer sizes alone (ψ buffer first, else δψ), with the pools-only run's XML
    shutil.copy(qcopy.parent / "xml.bak", qcopy / "out" / "_ph0" / "wse2.save" / "data-file-schema.xml")
    with pytest.raises(InputFileError, match=r"(wse2\.wfc\d|dwf\.rg3\.\d).*(record length|records)"):
        analyze_qrun(qcopy, FAST)


@pytest.mark.qe
def test_run_without_spin_orbit(tiny_run, tmp_path):
    """A real pw.x + ph.x (only_wfc) run without spin-orbit: npol = 1 is refused."""
    runner, _ = tiny_run
    work = tmp_path / "nosoc"
    work.mkdir()
    shutil.copytree(runner.run_dir / "pseudo", tmp_path / "pseudo")
    text = (runner.run_dir / "scf" / "pw.scf.in").read_text()
    text = text.replace("noncolin = .true.", "noncolin = .false.").replace("lspinorb = .true.", "lspinorb = .false.")
    (work / "pw.in").write_text(text)
    capture.run_logged(["mpirun", "-np", "2", "pw.x", "-nk", "2", "-in", "pw.in"], work / "pw.out", work)
    (work / "ph.in").write_text((runner.run_dir / "q_K" / "ph.wfc.in").read_text())
    capture.run_logged(["mpirun", "-np", "2", "ph.x", "-nk", "2", "-in", "ph.in"], work / "ph.out", work)
    write_manifest(work, {"prefix": "wse2", "outdir": "out", "q_tpiba": read_manifest(runner.run_dir / "q_K")["q_tpiba"],
                          "captures": {}})
    with pytest.raises(UnsupportedError, match=r"data-file-schema\.xml.*without spin-orbit"):
        analyze_qrun(work, FAST)


def test_cli_error_is_one_line_and_leaves_no_hdf5(gcopy, tmp_path):
    victim = gcopy / "capture" / "dwf.irr9.1"
    with open(victim, "r+b") as f:
        f.truncate(1000)
    out = tmp_path / "res" / "out.h5"
    proc = subprocess.run([sys.executable, "-m", "dfptmag.cli", "analyze", str(gcopy), "-o", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(victim) in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not any(out.parent.glob("*.tmp*")) if out.parent.exists() else True


def test_bad_workflow_file_names_key(tmp_path):
    from dfptmag.workflow import config
    bad = tmp_path / "wf.toml"
    bad.write_text('[structure]\nvacuum_angstrom = 5.0\n')
    with pytest.raises(InputFileError, match=re.escape(str(bad)) + ".*missing key 'file' in \\[structure\\]"):
        config.load(bad)
    bad.write_text('[structure\n')
    with pytest.raises(InputFileError, match="invalid TOML"):
        config.load(bad)


def test_partial_hdf5_never_left(tmp_path, analyzed):
    from dfptmag.results import qfile as results
    out = tmp_path / "x.h5"
    broken = dict(analyzed["K"])
    broken["pattern_cell_integral"] = object()      # h5py cannot store this
    with pytest.raises(TypeError):
        results.write(out, {"K": broken})
    assert not out.exists() and not list(tmp_path.glob(".x.h5.tmp*"))
    results.write(out, {"K": analyzed["K"]})
    with h5py.File(out) as f:
        assert f["q/K/patterns/cell_integral"].shape == (9, 4)
