"""Workflow TOML schema, validated with errors that name the file and the key."""
from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import re
import shlex
import shutil
import tomllib
from pathlib import Path

import numpy as np

from ..kernel import qpoints
from ..errors import InputFileError
from . import qe

log = logging.getLogger(__name__)

# named q-points (2D hexagonal lattice): the one table lives in dfptmag.qpoints
HEX_POINTS = {n: qpoints.HEX2D[qpoints.canonical(n)] for n in qpoints.names()}


@dataclasses.dataclass
class QPoint:
    label: str
    crystal: np.ndarray


@dataclasses.dataclass
class Workflow:
    path: Path
    name: str
    prefix: str
    structure: Path
    vacuum_angstrom: float
    pseudopotentials: dict[str, Path]   # element -> ld1.x input or ready UPF file
    pw: dict
    ph: dict
    qpoints: list[QPoint]
    patterns: list[int] | None          # None = all
    nproc: int
    npool: int
    mpirun: str
    analysis: dict
    bands: dict = dataclasses.field(default_factory=lambda: dict(BANDS_DEFAULTS))
    dispersion: dict | None = None     # None: no interpolated dispersion
    interpolation: dict | None = None  # bands --interpolate: {"qgrid": [N, N, 1], "long_range": [q1, q2] | None}
    cluster: dict | None = None        # [cluster]: Slurm settings of the task engine (validated)
    qe_bin_dir: Path | None = None     # [qe] bin_dir: where pw.x, ph.x, ... are (None: $DFPTMAG_QE_BIN, PATH)
    storage: dict = dataclasses.field(default_factory=lambda: dict(STORAGE_DEFAULTS))   # [storage]
    timeodd: dict | None = None        # [timeodd]: empty states for the time-odd response (None: off)


# [storage] discard_dwf: contract each pattern's δψ and delete it ("auto": on for --engine slurm);
# keep_scratch: keep the q's ph.x scratch (out/) after every pattern is contracted
STORAGE_DEFAULTS = {"discard_dwf": "auto", "keep_scratch": False}
BANDS_DEFAULTS = {"path": "GMKG", "npoints": 7, "workers": 1, "extra_points": {}}
DISPERSION_METHODS = ("matdyn",)


def parse_q(spec, where) -> QPoint:
    """'K', "K'" (= '-K' = 'Kp'), 'M', 'G' (= 'Γ') or three numbers (crystal coordinates) like
    '0.5,0,0'. Labels: named points as in dfptmag.qpoints, others their coordinates."""
    name = qpoints.canonical(spec) if isinstance(spec, str) else None
    if name is not None:
        return QPoint(qpoints.RUN_LABEL[name], np.array(qpoints.HEX2D[name]))
    try:
        vals = [float(v) for v in (spec.split(",") if isinstance(spec, str) else spec)]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 3:
        raise InputFileError(where, f"q-point {spec!r}: give a name ({', '.join(qpoints.names())}) or "
                                    "three crystal coordinates such as 0.5,0,0")
    if not all(math.isfinite(v) for v in vals):
        raise InputFileError(where, f"q-point {spec!r}: coordinates must be finite numbers")
    return QPoint(qpoints.run_label(vals), np.array(vals))


# Every key a workflow may hold, per section (pseudopotentials: element = ld1.x input).
KNOWN_KEYS = {
    "workflow": ("name", "prefix"),
    "structure": ("file", "vacuum_angstrom"),
    "pseudopotentials": None,
    "pw": ("ecutwfc_ry", "ecutrho_ry", "kgrid", "conv_thr", "mixing_mode", "mixing_beta", "nbnd",
           "assume_isolated", "electron_maxstep", "occupations", "smearing", "degauss_ry"),
    "ph": ("tr2_ph", "q", "patterns"),
    "parallel": ("nproc", "npool", "mpirun", "workers"),
    "analysis": ("amplitude", "amplitude_bohr", "realspace"),
    "bands": ("path", "npoints", "extra_points"),
    "dispersion": ("qgrid", "method", "asr", "loto_2d", "npoints"),
    "interpolation": ("qgrid", "long_range"),
    "qe": ("bin_dir",),
    "storage": ("discard_dwf", "keep_scratch"),
    "timeodd": ("empty_bands", "closure"),
    "cluster": ("partition", "account", "time", "nproc", "launcher", "setup", "sbatch_options", "python"),
}
CLUSTER_STAGES = ("prepare", "dispersion", "common", "pattern", "gather", "bands")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(path, data: dict) -> None:
    """Unknown sections and keys are errors, with the closest known name."""
    for name, sec in data.items():
        if name not in KNOWN_KEYS:
            raise InputFileError(path, f"unknown section [{name}]{_did_you_mean(name, KNOWN_KEYS)}; "
                                       f"known: {', '.join(KNOWN_KEYS)}")
        if not isinstance(sec, dict):
            raise InputFileError(path, f"[{name}] must be a table, not {type(sec).__name__}")
        known = KNOWN_KEYS[name]
        if known is None:
            continue
        for key in sec:
            if key not in known:
                raise InputFileError(path, f"[{name}] unknown key '{key}'{_did_you_mean(key, known)}; "
                                           f"known: {', '.join(known)}")


def _number(path, sec: dict, name: str, key: str, default=None, *, minimum=None, above=None,
            maximum=None, integer=False):
    """A finite number (int for ``integer``) in range, or ``default`` when absent."""
    if key not in sec:
        return default
    val = sec[key]
    kind = "an integer" if integer else "a number"
    ok = isinstance(val, int) if integer else isinstance(val, (int, float))
    if isinstance(val, bool) or not ok:
        raise InputFileError(path, f"[{name}] {key} = {val!r}: expected {kind}")
    if not math.isfinite(val):
        raise InputFileError(path, f"[{name}] {key} = {val!r}: must be finite")
    if above is not None and not val > above:
        raise InputFileError(path, f"[{name}] {key} = {val!r}: must be > {above}")
    if minimum is not None and val < minimum:
        raise InputFileError(path, f"[{name}] {key} = {val!r}: must be ≥ {minimum}")
    if maximum is not None and val > maximum:
        raise InputFileError(path, f"[{name}] {key} = {val!r}: must be ≤ {maximum}")
    return val


def _choice(path, sec, name, key, default, choices):
    val = sec.get(key, default)
    if val not in choices:
        raise InputFileError(path, f"[{name}] {key} = {val!r}: one of {', '.join(map(repr, choices))}"
                                   + (_did_you_mean(val, [c for c in choices if isinstance(c, str)])
                                      if isinstance(val, str) else ""))
    return val


def _validate_values(path, data: dict) -> None:
    """Types, ranges and finiteness of the scalar settings, before anything runs."""
    _validate_pw(path, data.get("pw", {}))
    _number(path, data.get("ph", {}), "ph", "tr2_ph", above=0)
    _number(path, data.get("structure", {}), "structure", "vacuum_angstrom", minimum=0)
    _validate_analysis(path, data.get("analysis", {}))
    par = data.get("parallel", {})
    for key in ("nproc", "npool", "workers"):
        _number(path, par, "parallel", key, minimum=1, integer=True)
    _validate_names(path, data.get("workflow", {}))
    if "mpirun" in par:
        _validate_mpirun(path, par)


def _validate_pw(path, pw: dict) -> None:
    """[pw]: cutoffs (ecutrho ≥ ecutwfc), convergence, mixing, bands and electron steps."""
    ecut = _number(path, pw, "pw", "ecutwfc_ry", above=0)
    ecutrho = _number(path, pw, "pw", "ecutrho_ry", above=0)
    if ecut is not None and ecutrho is not None and ecutrho < ecut:
        raise InputFileError(path, f"[pw] ecutrho_ry = {ecutrho!r} < ecutwfc_ry = {ecut!r}: the density "
                                   "cutoff must be at least the wavefunction cutoff (4× for norm-conserving)")
    _number(path, pw, "pw", "conv_thr", above=0)
    _number(path, pw, "pw", "mixing_beta", above=0, maximum=1)
    _number(path, pw, "pw", "nbnd", minimum=1, integer=True)
    _number(path, pw, "pw", "electron_maxstep", minimum=1, integer=True)
    _choice(path, pw, "pw", "mixing_mode", "local-TF", ("plain", "TF", "local-TF"))
    _choice(path, pw, "pw", "assume_isolated", None, (None, "none", "2D", "makov-payne", "m-p", "mp",
                                                      "martyna-tuckerman", "m-t", "mt", "esm"))
    _validate_occupations(path, pw)


# QE's smearing names (pw.x's input_variables): the first of each group is the one written
SMEARINGS = {"gaussian": ("gaussian", "gauss"), "mp": ("mp", "m-p", "methfessel-paxton"),
             "mv": ("mv", "m-v", "marzari-vanderbilt", "cold"), "fd": ("fd", "f-d", "fermi-dirac")}
_SMEARING_NAME = {alias: key for key, names in SMEARINGS.items() for alias in names}


def _validate_occupations(path, pw: dict) -> None:
    """[pw] occupations = "fixed" (an insulator, the default) or "smearing" (a metal), with
    smearing (one of QE's: gaussian, mp, mv, fd; default mv) and degauss_ry (default 0.02 Ry)."""
    occ = _choice(path, pw, "pw", "occupations", "fixed", ("fixed", "smearing"))
    if occ == "fixed":
        for key in ("smearing", "degauss_ry"):
            if key in pw:
                raise InputFileError(path, f"[pw] {key} without occupations = \"smearing\": an insulator "
                                           "has no smearing (set occupations = \"smearing\" for a metal)")
        return
    name = pw.get("smearing", "mv")
    if not isinstance(name, str) or name.lower() not in _SMEARING_NAME:
        raise InputFileError(path, f"[pw] smearing = {name!r}: one of {', '.join(SMEARINGS)} "
                                   "(Gaussian, Methfessel-Paxton, Marzari-Vanderbilt, Fermi-Dirac)")
    _number(path, pw, "pw", "degauss_ry", above=0, maximum=1)


def occupation_keys(pw: dict) -> dict:
    """pw.x's &system keys for [pw] occupations: fixed, or smearing with its name and degauss (Ry)."""
    if pw.get("occupations", "fixed") == "fixed":
        return {"occupations": "fixed"}
    return {"occupations": "smearing", "smearing": _SMEARING_NAME[str(pw.get("smearing", "mv")).lower()],
            "degauss": float(pw.get("degauss_ry", 0.02))}


def _validate_analysis(path, an: dict) -> None:
    _number(path, an, "analysis", "amplitude_bohr", above=0)
    if "realspace" in an and not isinstance(an["realspace"], bool):
        raise InputFileError(path, f"[analysis] realspace = {an['realspace']!r}: true or false")


def _validate_names(path, wf: dict) -> None:
    """[workflow] name and prefix become file and folder names: non-empty, no '/', no spaces around."""
    for key in ("name", "prefix"):
        val = wf.get(key)
        if val is not None and not (isinstance(val, str) and val and "/" not in val and val.strip() == val):
            raise InputFileError(path, f"[workflow] {key} = {val!r}: a non-empty name without '/' or spaces around")


def _validate_mpirun(path, par: dict) -> None:
    """[parallel] mpirun: a command line whose program is on PATH when nproc > 1."""
    launcher = par["mpirun"]
    words = shlex.split(launcher) if isinstance(launcher, str) else []
    if not words:
        raise InputFileError(path, f"[parallel] mpirun = {launcher!r}: a launcher command line such as 'mpirun'")
    if int(par.get("nproc", 1)) > 1 and shutil.which(words[0]) is None:
        raise InputFileError(path, f"[parallel] mpirun = {launcher!r}: '{words[0]}' not found on PATH")


def _structure_elements(path, structure: Path) -> tuple[list[str], int]:
    from .structure import read_structure     # ASE, else pymatgen
    atoms = read_structure(structure)
    symbols = atoms.get_chemical_symbols()
    if not symbols:
        raise InputFileError(structure, "holds no atoms")
    return sorted(set(symbols)), len(symbols)


def _read_toml(path: Path) -> dict:
    """The parsed workflow file; a missing, non-text or malformed file is an InputFileError."""
    if not path.is_file():
        raise InputFileError(path, "workflow file not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(path, f"invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not a text file (TOML expected)") from None


def _section(path, data: dict, name: str) -> dict:
    """A section of the workflow, empty when absent."""
    sec = data.get(name, {})
    if not isinstance(sec, dict):
        raise InputFileError(path, f"[{name}] must be a table")
    return sec


def _need(path, sec: dict, key: str, name: str, kind):
    """A required key of section ``name`` of type ``kind`` (an int is accepted as a float)."""
    if key not in sec:
        raise InputFileError(path, f"missing key '{key}' in [{name}]")
    val = sec[key]
    if kind is float and isinstance(val, int):
        val = float(val)
    if not isinstance(val, kind):
        raise InputFileError(path, f"[{name}] {key} = {val!r}: expected {kind.__name__}")
    return val


def _structure_file(path, base: Path, st: dict) -> Path:
    """[structure] file, relative to the workflow file; it must exist."""
    structure = (base / _need(path, st, "file", "structure", str)).resolve()
    if not structure.is_file():
        raise InputFileError(path, f"[structure] file {structure} not found")
    return structure


def _pseudopotentials_section(path, base: Path, pp: dict, structure: Path) -> tuple[dict, dict, int]:
    """[pseudopotentials]: one ld1.x input or UPF file per element of the structure, and no
    other element. Returns the files (element → path), the headers of the ready UPF files
    (element → header, checked before any QE run) and the number of atoms."""
    if not pp:
        raise InputFileError(path, "[pseudopotentials] is empty: map each element to an ld1.x input or a UPF file")
    elements, nat = _structure_elements(path, structure)
    missing = [el for el in elements if el not in pp]
    if missing:
        raise InputFileError(path, f"[pseudopotentials] has no ld1.x input for {', '.join(missing)} "
                                   f"(elements of {structure.name}: {', '.join(elements)})")
    from ..io.upf import functional_name, is_upf
    from .pseudo import check_upf
    pseudos, upf_heads = {}, {}
    for el, rel in pp.items():
        p = _pseudo_file(path, base, el, rel, elements, structure)
        if is_upf(p):                   # a ready UPF: checked here, before any QE run
            upf_heads[el] = check_upf(p, el)
        pseudos[el] = p
    functionals = {el: functional_name(h["functional"]) for el, h in upf_heads.items() if h["functional"]}
    if len(set(functionals.values())) > 1:
        raise InputFileError(path, "[pseudopotentials] UPF files of different functionals: "
                                   + ", ".join(f"{el} {f}" for el, f in functionals.items()))
    return pseudos, upf_heads, nat


def _pseudo_file(path, base: Path, el: str, rel, elements: list[str], structure: Path) -> Path:
    """The existing file of one [pseudopotentials] entry, for an element of the structure."""
    if el not in elements:
        raise InputFileError(path, f"[pseudopotentials] {el}: not an element of {structure.name} "
                                   f"({', '.join(elements)}){_did_you_mean(el, elements)}")
    if not isinstance(rel, str):
        raise InputFileError(path, f"[pseudopotentials] {el} = {rel!r}: the path of an ld1.x input or a UPF file")
    p = (base / rel).resolve()
    if not p.is_file():
        raise InputFileError(path, f"[pseudopotentials] {el}: {p} not found")
    return p


def _warn_cutoffs(pseudos: dict, upf_heads: dict, ecutwfc: float) -> None:
    """A warning only, not an error: tests and convergence studies go below a UPF's suggestion."""
    for el, h in upf_heads.items():
        if h["wfc_cutoff"] > ecutwfc:
            log.warning("%s: the UPF suggests ecutwfc %g Ry, the workflow uses [pw] ecutwfc_ry = %g Ry",
                        pseudos[el], h["wfc_cutoff"], ecutwfc)


def _check_kgrid(path, pw: dict) -> None:
    """[pw] kgrid: three positive integers (pw.x's Monkhorst-Pack grid; kept in ``Workflow.pw``)."""
    kgrid = pw.get("kgrid")
    if not (isinstance(kgrid, list) and len(kgrid) == 3 and all(isinstance(k, int) and k > 0 for k in kgrid)):
        raise InputFileError(path, f"[pw] kgrid = {kgrid!r}: expected three positive integers")


def _ph_qpoints(path, ph: dict) -> list[QPoint]:
    """[ph] q: the q-points of ``dfptmag run`` (default K)."""
    qspec = ph.get("q", ["K"])
    if not isinstance(qspec, list) or not qspec:
        raise InputFileError(path, f"[ph] q = {qspec!r}: a list of q-points such as [\"K\", \"0.5,0,0\"]")
    return [parse_q(q, path) for q in qspec]


def _ph_patterns(path, ph: dict, nat: int) -> list[int] | None:
    """[ph] patterns: "all" (None) or sorted unique pattern numbers 1..3·nat."""
    pats = ph.get("patterns", "all")
    if pats == "all":
        return None
    if (isinstance(pats, list) and pats
            and all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 3 * nat for p in pats)):
        return sorted(set(pats))
    raise InputFileError(path, f"[ph] patterns = {pats!r}: 'all' or a list of pattern numbers "
                               f"1..{3 * nat} ({nat} atoms)")


def _pools(path, par: dict) -> tuple[int, int]:
    """[parallel] nproc and npool: serial or pools only (npool = nproc), because plane-wave
    parallel layouts split δψ across files."""
    nproc, npool = int(par.get("nproc", 1)), int(par.get("npool", par.get("nproc", 1)))
    if nproc < 1 or npool < 1 or nproc != npool:
        raise InputFileError(path, f"[parallel] nproc = {nproc}, npool = {npool}: dfptmag supports "
                                   "serial or pools-only runs (npool = nproc); plane-wave parallel "
                                   "layouts split δψ across files and are refused")
    return nproc, npool


def _analysis_section(path, an: dict) -> dict:
    """[analysis]: amplitude ("zero-point" or "fixed"), amplitude_bohr, realspace, with defaults."""
    amp = an.get("amplitude", "zero-point")
    if amp not in ("zero-point", "fixed"):
        raise InputFileError(path, f"[analysis] amplitude = {amp!r}: 'zero-point' or 'fixed'")
    return {"amplitude": amp, "amplitude_bohr": float(an.get("amplitude_bohr", 0.01)),
            "realspace": bool(an.get("realspace", True))}


def load(path) -> Workflow:
    """Read and validate a workflow file; every problem is an InputFileError naming the file and
    the key, raised before anything runs."""
    path = Path(path).resolve()
    data = _read_toml(path)
    _check_keys(path, data)
    _validate_values(path, data)
    base = path.parent
    wf, st, pp = (_section(path, data, name) for name in ("workflow", "structure", "pseudopotentials"))
    pw, ph, par, an = (_section(path, data, name) for name in ("pw", "ph", "parallel", "analysis"))
    structure = _structure_file(path, base, st)
    pseudos, upf_heads, nat = _pseudopotentials_section(path, base, pp, structure)
    _warn_cutoffs(pseudos, upf_heads, _need(path, pw, "ecutwfc_ry", "pw", float))
    _check_kgrid(path, pw)
    qpoints = _ph_qpoints(path, ph)
    patterns = _ph_patterns(path, ph, nat)
    nproc, npool = _pools(path, par)
    analysis = _analysis_section(path, an)
    bands = _bands_section(path, _section(path, data, "bands"), par)
    dispersion = _dispersion_section(path, data.get("dispersion"))
    interpolation = _interpolation_section(path, data.get("interpolation"))
    cluster = _cluster_section(path, data["cluster"]) if "cluster" in data else None
    qe_bin_dir = _qe_section(path, base, data.get("qe", {}))
    storage = _storage_section(path, _section(path, data, "storage"))
    timeodd = timeodd_section(path, data["timeodd"]) if "timeodd" in data else None
    if timeodd is not None and pw.get("occupations") == "smearing":
        raise InputFileError(path, "[timeodd] with [pw] occupations = \"smearing\": a metal's time-odd "
                                   "response has Fermi-surface (intraband) terms that dfptmag does not "
                                   "compute; remove [timeodd] for a metal")
    vacuum = float(_need(path, st, "vacuum_angstrom", "structure", float))
    return Workflow(
        path=path, name=wf.get("name", path.stem), prefix=wf.get("prefix", "pwscf"),
        structure=structure, vacuum_angstrom=vacuum,
        pseudopotentials=pseudos, pw=pw, ph=ph, qpoints=qpoints, patterns=patterns,
        nproc=nproc, npool=npool, mpirun=par.get("mpirun", "mpirun"), analysis=analysis,
        bands=bands, dispersion=dispersion, interpolation=interpolation, cluster=cluster,
        qe_bin_dir=qe_bin_dir, storage=storage, timeodd=timeodd,
    )


TIMEODD_DEFAULTS = {"empty_bands": 60, "closure": "kinetic"}


def timeodd_section(path, sec: dict) -> dict:
    """[timeodd] empty_bands (empty states above the occupied ones in the per-q pw.x run, ≥ 1),
    closure ("kinetic" or "none", see dfptmag.kernel.timeodd)."""
    from ..kernel.timeodd import CLOSURES
    out = dict(TIMEODD_DEFAULTS)
    sec = sec if isinstance(sec, dict) else {}
    n = sec.get("empty_bands", out["empty_bands"])
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputFileError(path, f"[timeodd] empty_bands = {n!r}: a positive whole number of empty states")
    c = sec.get("closure", out["closure"])
    if c not in CLOSURES:
        raise InputFileError(path, f"[timeodd] closure = {c!r}: one of {', '.join(CLOSURES)}")
    out.update(empty_bands=n, closure=c)
    return out


def _storage_section(path, sec: dict) -> dict:
    """[storage] discard_dwf = "auto" | true | false, keep_scratch = false | true."""
    out = dict(STORAGE_DEFAULTS)
    d = sec.get("discard_dwf", "auto")
    if d not in ("auto", True, False):
        raise InputFileError(path, f"[storage] discard_dwf = {d!r}: true, false or \"auto\" (on for "
                                   "--engine slurm)")
    k = sec.get("keep_scratch", False)
    if not isinstance(k, bool):
        raise InputFileError(path, f"[storage] keep_scratch = {k!r}: true or false")
    out.update(discard_dwf=d, keep_scratch=k)
    return out


def discard_dwf(wf: Workflow, engine: str | None = None, override: bool | None = None) -> bool:
    """Whether δψ is contracted and discarded: ``override`` (--discard-dwf / --keep-dwf), else
    the workflow's [storage] discard_dwf, whose "auto" means on for Slurm runs only."""
    if override is not None:
        return bool(override)
    d = wf.storage["discard_dwf"]
    return engine == "slurm" if d == "auto" else bool(d)


def _qe_section(path, base: Path, qs: dict) -> Path | None:
    """[qe] bin_dir: the folder of the QE programs (relative to the workflow file; ~ expanded)."""
    if "bin_dir" not in qs:
        return None
    value = qs["bin_dir"]
    if not isinstance(value, str) or not value.strip():
        raise InputFileError(path, f"[qe] bin_dir = {value!r}: the path of a folder holding pw.x and ph.x")
    folder = (base / Path(value).expanduser()).resolve()
    qe.check_bin_dir(path, folder)
    return folder


def _three_numbers(v) -> bool:
    """A list of three finite real numbers (crystal coordinates); booleans are not numbers."""
    return (isinstance(v, list) and len(v) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))


def _bands_section(path, bs: dict, par: dict) -> dict:
    """[bands] path, npoints and extra_points (with defaults), and [parallel] workers."""
    out = dict(BANDS_DEFAULTS)
    out.update(bs)
    if not isinstance(out["path"], str) or not out["path"]:
        raise InputFileError(path, f"[bands] path = {out['path']!r}: a path string such as 'GMKG'")
    if not isinstance(out["npoints"], int) or out["npoints"] < 2:
        raise InputFileError(path, f"[bands] npoints = {out['npoints']!r}: an integer ≥ 2")
    workers = par.get("workers", out.pop("workers"))
    if not isinstance(workers, int) or workers < 1:
        raise InputFileError(path, f"[parallel] workers = {workers!r}: a positive integer")
    out["workers"] = workers
    _check_extra_points(path, out.get("extra_points") or {})
    unknown = set(out) - set(BANDS_DEFAULTS)
    if unknown:
        raise InputFileError(path, f"[bands] unknown keys {sorted(unknown)}; known: path, npoints, extra_points")
    return out


def _check_extra_points(path, extra) -> None:
    """[bands] extra_points: a table name = [x, y, z] (crystal coordinates)."""
    if not isinstance(extra, dict):
        raise InputFileError(path, "[bands] extra_points must be a table name = [x, y, z]")
    for k, v in extra.items():
        if not _three_numbers(v):
            raise InputFileError(path, f"[bands] extra_points {k} = {v!r}: three crystal coordinates")


def _interpolation_section(path, sec) -> dict | None:
    """[interpolation] qgrid = [N, N, 1]: the Γ-centred grid of ``bands --interpolate``;
    long_range = [[x, y, 0], [x', y', 0]]: two small in-plane q (crystal coordinates, different
    length) where DFPT also runs, to separate the screened linear term (analysis.grid.long_range_from)."""
    if sec is None:
        return None
    if not isinstance(sec, dict):
        raise InputFileError(path, "[interpolation] must be a table")
    out = {"qgrid": _qgrid(path, "interpolation", sec.get("qgrid"), in_plane=True), "long_range": None}
    lr = sec.get("long_range")
    if lr is not None:
        out["long_range"] = _long_range(path, lr)
    return out


def _long_range(path, lr) -> list[list[float]]:
    """[interpolation] long_range: two small in-plane q-points, not Γ, as floats."""
    if not (isinstance(lr, list) and len(lr) == 2 and all(_three_numbers(q) for q in lr)):
        raise InputFileError(path, f"[interpolation] long_range = {lr!r}: two q-points [x, y, 0] in crystal "
                                   "coordinates, e.g. [[0.1, 0, 0], [0.1667, 0, 0]]")
    for q in lr:
        if q[2] != 0 or abs(q[0]) + abs(q[1]) == 0 or max(abs(q[0]), abs(q[1])) > 0.5:
            raise InputFileError(path, f"[interpolation] long_range q = {q!r}: in-plane (z = 0), not Γ, "
                                       "small (|x|, |y| ≤ 0.5)")
    return [[float(x) for x in q] for q in lr]


def _qgrid(path, section: str, qgrid, in_plane: bool = False) -> list[int]:
    """The one q-grid check of [dispersion] and [interpolation]: three positive integers; with
    ``in_plane``, [N, N, 1]."""
    ok = (isinstance(qgrid, list) and len(qgrid) == 3
          and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in qgrid))
    if ok and (not in_plane or (qgrid[0] == qgrid[1] and qgrid[2] == 1)):
        return qgrid
    if in_plane:
        raise InputFileError(path, f"[{section}] qgrid = {qgrid!r}: [N, N, 1] with N a positive "
                                   "integer (an in-plane Γ-centred grid, e.g. [6, 6, 1])")
    raise InputFileError(path, f"[{section}] qgrid = {qgrid!r}: three positive integers (a coarse "
                               "DFPT q-grid for q2r.x, e.g. [6, 6, 1])")


def _dispersion_section(path, ds) -> dict | None:
    if ds is None:
        return None
    if not isinstance(ds, dict):
        raise InputFileError(path, "[dispersion] must be a table")
    qgrid = _qgrid(path, "dispersion", ds.get("qgrid"))
    if not isinstance(ds.get("loto_2d", False), bool):
        raise InputFileError(path, f"[dispersion] loto_2d = {ds['loto_2d']!r}: true or false")
    out = {"qgrid": qgrid, "method": ds.get("method", "matdyn"), "asr": ds.get("asr", "simple"),
           "loto_2d": ds.get("loto_2d", False),
           "npoints": _number(path, ds, "dispersion", "npoints", 150, minimum=2, integer=True)}
    if out["method"] not in DISPERSION_METHODS:
        raise InputFileError(path, f"[dispersion] method = {out['method']!r}: one of {DISPERSION_METHODS}")
    if out["asr"] not in ("no", "simple", "crystal"):
        raise InputFileError(path, f"[dispersion] asr = {out['asr']!r}: 'no', 'simple' or 'crystal'")
    unknown = set(ds) - set(out)
    if unknown:
        raise InputFileError(path, f"[dispersion] unknown keys {sorted(unknown)}")
    return out


_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|\d+-\d+")
_SHELL = re.compile(r"[;&|<>`$()\\]")


def split_launcher(where, launcher) -> list[str]:
    """The MPI launcher template (e.g. 'srun -n {nproc}', 'mpirun -np {nproc} --bind-to core') as
    words; it is never given to a shell, so shell syntax is refused."""
    if not isinstance(launcher, str) or not launcher.strip():
        raise InputFileError(where, f"[cluster] launcher = {launcher!r}: a command line such as 'srun -n {{nproc}}'")
    try:
        words = shlex.split(launcher)
    except ValueError as exc:
        raise InputFileError(where, f"[cluster] launcher = {launcher!r}: {exc}") from None
    bad = [w for w in words if _SHELL.search(w)]
    if bad:
        raise InputFileError(where, f"[cluster] launcher = {launcher!r}: {bad[0]!r} is shell syntax; the "
                                    "launcher is run directly, not by a shell (put environment settings in setup)")
    if "{nproc}" not in " ".join(words):
        raise InputFileError(where, f"[cluster] launcher = {launcher!r}: must contain {{nproc}} (the number "
                                    "of MPI processes), e.g. 'srun -n {nproc}'")
    for w in words:
        rest = w.replace("{nproc}", "")
        if "{" in rest or "}" in rest:
            raise InputFileError(where, f"[cluster] launcher = {launcher!r}: only the placeholder {{nproc}} is known")
    return words


def _slurm_time(v) -> bool:
    return isinstance(v, str) and _TIME.fullmatch(v) is not None


def _task_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100000


# [cluster] keys that are tables stage → value: the rule a value obeys and what the error asks for
_STAGE_TABLES = {
    "time": (_slurm_time, "a Slurm time such as '04:00:00' or '1-12:00:00'"),
    "nproc": (_task_count, "a positive integer"),
}
# sbatch options dfptmag sets on every job itself, so [cluster] sbatch_options may not
_SBATCH_OWN = ("--array", "-a", "--dependency", "-d", "--output", "-o", "--ntasks", "-n")


def _cluster_section(path, cs) -> dict:
    """[cluster]: partition, account (names), time and nproc (tables stage → value), launcher
    (template with {nproc}), setup (lines for the batch script: module loads, exports),
    sbatch_options (extra '--option=value' words), python (the interpreter on the nodes)."""
    if not isinstance(cs, dict):
        raise InputFileError(path, "[cluster] must be a table")
    out = {"partition": None, "account": None, "time": {}, "nproc": {}, "launcher": None,
           "setup": [], "sbatch_options": [], "python": None}
    for key in ("partition", "account", "python"):
        if key in cs:
            out[key] = _cluster_name(path, key, cs[key])
    for key, (check, what) in _STAGE_TABLES.items():
        out[key] = _cluster_stage_table(path, key, cs.get(key, {}), check, what)
    if "launcher" in cs:
        split_launcher(path, cs["launcher"])
        out["launcher"] = cs["launcher"]
    for key in ("setup", "sbatch_options"):
        out[key] = _cluster_lines(path, key, cs.get(key, []))
    for o in out["sbatch_options"]:
        _check_sbatch_option(path, o)
    return out


def _cluster_name(path, key: str, v) -> str:
    """[cluster] partition, account or python: one word of safe characters."""
    if not (isinstance(v, str) and v and re.fullmatch(r"[\w.+/@:-]+", v)):
        raise InputFileError(path, f"[cluster] {key} = {v!r}: a name (letters, digits, . _ - + / @ :)")
    return v


def _cluster_stage_table(path, key: str, tab, check, what: str) -> dict:
    """[cluster.time] or [cluster.nproc]: stage (or default) = a value that passes ``check``."""
    if not isinstance(tab, dict):
        raise InputFileError(path, f"[cluster] {key} must be a table stage = value, stages: {', '.join(CLUSTER_STAGES)}, default")
    for st, v in tab.items():
        if st not in CLUSTER_STAGES + ("default",):
            raise InputFileError(path, f"[cluster.{key}] unknown stage '{st}'{_did_you_mean(st, CLUSTER_STAGES)}; "
                                       f"known: {', '.join(CLUSTER_STAGES)}, default")
        if not check(v):
            raise InputFileError(path, f"[cluster.{key}] {st} = {v!r}: {what}")
    return dict(tab)


def _cluster_lines(path, key: str, v) -> list[str]:
    """[cluster] setup or sbatch_options: a list of one-line strings."""
    if not (isinstance(v, list) and all(isinstance(x, str) and "\n" not in x for x in v)):
        raise InputFileError(path, f"[cluster] {key} = {v!r}: a list of one-line strings")
    return list(v)


def _check_sbatch_option(path, o: str) -> None:
    if not re.fullmatch(r"--?[A-Za-z][\w-]*(=\S+)?", o):
        raise InputFileError(path, f"[cluster] sbatch_options: {o!r} is not an sbatch option such as '--qos=normal'")
    if o.split("=")[0] in _SBATCH_OWN:
        raise InputFileError(path, f"[cluster] sbatch_options: {o!r} is set by dfptmag itself")
