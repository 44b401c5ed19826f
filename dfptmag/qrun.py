"""Where the files of one q-point run live (the "q-run directory" contract), as plain paths.

A q-run directory holds a manifest ``dfptmag-q.json`` written by ``dfptmag run`` or
``dfptmag capture``::

    {"prefix": "wse2", "outdir": "out", "fildyn": "dyn", "q_tpiba": [qx, qy, qz],
     "captures": {"<irrep>": {"dwf": ["capture/dwf.irr3.1", ...], "drho": "capture/drho.irr3"}}}

and, relative to it:
- ``<outdir>/_ph0/<prefix>.save/`` — data-file-schema.xml and wfcN.dat of ph.x's k, k+q list
  (written by a ph.x run with ``only_wfc=.true.``); at q = 0 pw.x's ``<outdir>/<prefix>.save/``;
- ``<outdir>/_ph0/<prefix>.wfc*`` (q ≠ 0) or ``<outdir>/<prefix>.wfc*`` (q = 0): ph.x's ψ buffer,
  used to verify the plane-wave order;
- ``<outdir>/_ph0/<prefix>.phsave/``: patterns.1.xml, dynmat.1.<irr>.xml;
- the captured δψ buffers and fildrho records listed in the manifest; the fildyn file if any.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from . import atomic
from .errors import InputFileError

MANIFEST = "dfptmag-q.json"


@dataclasses.dataclass
class QRunFiles:
    root: Path
    prefix: str
    q_tpiba: np.ndarray
    gamma: bool
    xml: Path
    wfc_dir: Path
    psi_buffers: list[Path]
    phsave: Path
    captures: dict[int, dict]      # irrep -> {"dwf": [Path...], "drho": Path | None}
    fildyn: Path | None

    @property
    def patterns_xml(self) -> Path:
        return self.phsave / "patterns.1.xml"


def _rank_sorted(paths):
    def key(p):
        tail = p.name.rsplit(".", 1)[-1]
        digits = "".join(ch for ch in tail if ch.isdigit())
        return int(digits) if digits else 0
    return sorted(paths, key=key)


def read_manifest(root) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None


def write_manifest(root, data: dict) -> None:
    """Atomic write of the manifest."""
    path = Path(root) / MANIFEST
    atomic.write_text(path, json.dumps(data, indent=2, sort_keys=True))


def locate(root) -> QRunFiles:
    root = Path(root)
    man = read_manifest(root)
    if not man:
        raise InputFileError(root / MANIFEST, "manifest not found: not a q-run directory made by "
                                              "'dfptmag run' or 'dfptmag capture'")
    for key in ("prefix", "outdir", "q_tpiba"):
        if key not in man:
            raise InputFileError(root / MANIFEST, f"manifest lacks '{key}'")
    prefix = man["prefix"]
    outdir = root / man["outdir"]
    q = np.array(man["q_tpiba"], dtype=float)
    gamma = bool(np.allclose(q, 0.0, atol=1e-10))
    ph0 = outdir / "_ph0"
    if gamma:
        save = outdir / f"{prefix}.save"
        buffers = _rank_sorted(outdir.glob(f"{prefix}.wfc*"))
    else:
        save = ph0 / f"{prefix}.save"
        buffers = _rank_sorted(ph0.glob(f"{prefix}.wfc*"))
    captures = {}
    for irr, cap in man.get("captures", {}).items():
        captures[int(irr)] = {"dwf": [root / p for p in cap.get("dwf", [])],
                              "drho": (root / cap["drho"]) if cap.get("drho") else None}
    fildyn = root / man["fildyn"] if man.get("fildyn") else None
    if fildyn is not None and not fildyn.is_file():
        fildyn = None
    return QRunFiles(root=root, prefix=prefix, q_tpiba=q, gamma=gamma,
                     xml=save / "data-file-schema.xml", wfc_dir=save, psi_buffers=buffers,
                     phsave=ph0 / f"{prefix}.phsave", captures=captures, fildyn=fildyn)


def find_qruns(run_dir) -> list[Path]:
    """All q-run directories (holding a manifest) at or below ``run_dir``, sorted."""
    run_dir = Path(run_dir)
    if (run_dir / MANIFEST).is_file():
        return [run_dir]
    return sorted(p.parent for p in run_dir.rglob(MANIFEST))


def check_manifest_types(root) -> None:
    """Refuse a manifest whose fields have the wrong types, naming the field (before any path
    is built from them)."""
    path = Path(root) / MANIFEST
    man = read_manifest(root)
    if not isinstance(man, dict):
        raise InputFileError(path, "not a JSON object")

    def bad(key, want):
        raise InputFileError(path, f"'{key}' = {man.get(key)!r}: expected {want}")
    for key in ("prefix", "outdir"):
        if key in man and not (isinstance(man[key], str) and man[key]):
            bad(key, "a non-empty string")
    for key in ("fildyn", "label"):
        if man.get(key) is not None and not (isinstance(man[key], str) and man[key]):
            bad(key, "a non-empty string")
    for key in ("q_tpiba", "q_crystal"):
        v = man.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 3
                                  and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                                  and all(np.isfinite(v))):
            bad(key, "three finite numbers")
    caps = man.get("captures", {})
    if not isinstance(caps, dict):
        bad("captures", "an object {irrep: {dwf: [files], drho: file}}")
    for irr, cap in caps.items():
        if not irr.isdigit() or not isinstance(cap, dict):
            raise InputFileError(path, f"captures['{irr}']: expected irrep number -> {{dwf: [...], drho: ...}}")
        dwf = cap.get("dwf", [])
        if not (isinstance(dwf, list) and all(isinstance(d, str) for d in dwf)):
            raise InputFileError(path, f"captures['{irr}'].dwf = {dwf!r}: expected a list of file names")
        if cap.get("drho") is not None and not isinstance(cap["drho"], str):
            raise InputFileError(path, f"captures['{irr}'].drho = {cap['drho']!r}: expected a file name or null")
