"""Workflow TOML schema, validated with errors that name the file and the key."""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np

from .. import qpoints
from ..errors import InputFileError

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
    pseudopotentials: dict[str, Path]   # element -> ld1.x input
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
    return QPoint(qpoints.run_label(vals), np.array(vals))


def load(path) -> Workflow:
    path = Path(path).resolve()
    if not path.is_file():
        raise InputFileError(path, "workflow file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(path, f"invalid TOML: {exc}") from None
    base = path.parent

    def section(name):
        sec = data.get(name, {})
        if not isinstance(sec, dict):
            raise InputFileError(path, f"[{name}] must be a table")
        return sec

    def need(sec, key, name, kind):
        if key not in sec:
            raise InputFileError(path, f"missing key '{key}' in [{name}]")
        val = sec[key]
        if kind is float and isinstance(val, int):
            val = float(val)
        if not isinstance(val, kind):
            raise InputFileError(path, f"[{name}] {key} = {val!r}: expected {kind.__name__}")
        return val

    wf, st, pp = section("workflow"), section("structure"), section("pseudopotentials")
    pw, ph, par, an = section("pw"), section("ph"), section("parallel"), section("analysis")
    structure = (base / need(st, "file", "structure", str)).resolve()
    if not structure.is_file():
        raise InputFileError(path, f"[structure] file {structure} not found")
    if not pp:
        raise InputFileError(path, "[pseudopotentials] is empty: map each element to an ld1.x input")
    pseudos = {}
    for el, rel in pp.items():
        p = (base / rel).resolve()
        if not p.is_file():
            raise InputFileError(path, f"[pseudopotentials] {el}: {p} not found")
        pseudos[el] = p
    need(pw, "ecutwfc_ry", "pw", float)
    kgrid = pw.get("kgrid")
    if not (isinstance(kgrid, list) and len(kgrid) == 3 and all(isinstance(k, int) and k > 0 for k in kgrid)):
        raise InputFileError(path, f"[pw] kgrid = {kgrid!r}: expected three positive integers")
    qspec = ph.get("q", ["K"])
    qpoints = [parse_q(q, path) for q in qspec]
    pats = ph.get("patterns", "all")
    if pats == "all":
        patterns = None
    elif isinstance(pats, list) and all(isinstance(p, int) and p >= 1 for p in pats):
        patterns = sorted(set(pats))
    else:
        raise InputFileError(path, f"[ph] patterns = {pats!r}: 'all' or a list of pattern numbers (1-based)")
    nproc, npool = int(par.get("nproc", 1)), int(par.get("npool", par.get("nproc", 1)))
    if nproc < 1 or npool < 1 or nproc != npool:
        raise InputFileError(path, f"[parallel] nproc = {nproc}, npool = {npool}: dfptmag supports "
                                   "serial or pools-only runs (npool = nproc); plane-wave parallel "
                                   "layouts split δψ across files and are refused")
    amp = an.get("amplitude", "zero-point")
    if amp not in ("zero-point", "fixed"):
        raise InputFileError(path, f"[analysis] amplitude = {amp!r}: 'zero-point' or 'fixed'")
    bands = _bands_section(path, section("bands"), par)
    dispersion = _dispersion_section(path, data.get("dispersion"))
    return Workflow(
        path=path, name=wf.get("name", path.stem), prefix=wf.get("prefix", "pwscf"),
        structure=structure, vacuum_angstrom=float(need(st, "vacuum_angstrom", "structure", float)),
        pseudopotentials=pseudos, pw=pw, ph=ph, qpoints=qpoints, patterns=patterns,
        nproc=nproc, npool=npool, mpirun=par.get("mpirun", "mpirun"),
        analysis={"amplitude": amp, "amplitude_bohr": float(an.get("amplitude_bohr", 0.01)),
                  "realspace": bool(an.get("realspace", True))},
        bands=bands, dispersion=dispersion,
    )


def _bands_section(path, bs: dict, par: dict) -> dict:
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
    extra = out.get("extra_points") or {}
    if not isinstance(extra, dict):
        raise InputFileError(path, "[bands] extra_points must be a table name = [x, y, z]")
    for k, v in extra.items():
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
            raise InputFileError(path, f"[bands] extra_points {k} = {v!r}: three crystal coordinates")
    unknown = set(out) - set(BANDS_DEFAULTS)
    if unknown:
        raise InputFileError(path, f"[bands] unknown keys {sorted(unknown)}; known: path, npoints, extra_points")
    return out


def _dispersion_section(path, ds) -> dict | None:
    if ds is None:
        return None
    if not isinstance(ds, dict):
        raise InputFileError(path, "[dispersion] must be a table")
    qgrid = ds.get("qgrid")
    if not (isinstance(qgrid, list) and len(qgrid) == 3 and all(isinstance(k, int) and k > 0 for k in qgrid)):
        raise InputFileError(path, f"[dispersion] qgrid = {qgrid!r}: three positive integers (a coarse "
                                   "DFPT q-grid for q2r.x, e.g. [6, 6, 1])")
    out = {"qgrid": qgrid, "method": ds.get("method", "matdyn"), "asr": ds.get("asr", "simple"),
           "loto_2d": bool(ds.get("loto_2d", False)), "npoints": int(ds.get("npoints", 150))}
    if out["method"] not in DISPERSION_METHODS:
        raise InputFileError(path, f"[dispersion] method = {out['method']!r}: one of {DISPERSION_METHODS}")
    if out["asr"] not in ("no", "simple", "crystal"):
        raise InputFileError(path, f"[dispersion] asr = {out['asr']!r}: 'no', 'simple' or 'crystal'")
    unknown = set(ds) - set(out)
    if unknown:
        raise InputFileError(path, f"[dispersion] unknown keys {sorted(unknown)}")
    return out
