"""Where the files of one q-point run live (the "q-run directory" contract), as plain paths.

A q-run directory holds a manifest ``dfptmag-q.json`` written by ``dfptmag run`` or
``dfptmag capture``::

    {"prefix": "wse2", "outdir": "out", "fildyn": "dyn", "q_tpiba": [qx, qy, qz],
     "captures": {"<irrep>": {"dwf": ["capture/dwf.irr3.1", ...], "drho": "capture/drho.irr3",
                              "irrep": 3, "q_tpiba": [qx, qy, qz], "npool": 2,
                              "checksums": {"capture/dwf.irr3.1": {"size": 1127808,
                                                                   "sha256": "..."}, ...}}}}

``irrep``, ``q_tpiba``, ``npool`` and ``checksums`` are written at capture time (older manifests
lack them: they still load, unchecked). With contract-and-discard (``--discard-dwf``) an entry
also holds ``"contracted": {"file": "contracted/irr3.h5", "size": ..., "sha256": ..., ...}``
(:func:`record_contraction`) and, once its δψ and fildrho copy are deleted, ``"dwf_discarded":
true``; the analysis then reads the contracted file (checked against that size and sha256)
instead of the δψ. ``"scratch_removed"`` at the top level records that the q's ph.x scratch was
removed (only its XML records and pseudopotentials are left in ``<outdir>``). ``npool`` is the pool count of the ph.x run that wrote
the δψ files (file ``dwf.<tag>.<r>`` is MPI process r, pool r − 1).

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
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import InputFileError

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
    captures: dict[int, dict]      # irrep -> {"dwf": [Path...], "drho": Path | None,
                                   #           "npool": int | None, "checksums": {Path: {...}}, ...}
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
        try:
            irr_i = int(irr)
        except ValueError:
            raise InputFileError(root / MANIFEST, f"capture key '{irr}' is not an irrep number") from None
        captures[irr_i] = {"dwf": [root / p for p in cap.get("dwf", [])],
                           "drho": (root / cap["drho"]) if cap.get("drho") else None,
                           "npool": cap.get("npool"), "irrep": cap.get("irrep"),
                           "q_tpiba": cap.get("q_tpiba"),
                           "checksums": {root / k: v for k, v in cap.get("checksums", {}).items()}
                           if "checksums" in cap else None,
                           "contracted": _contracted_entry(root, cap.get("contracted"))}
    fildyn = root / man["fildyn"] if man.get("fildyn") else None
    if fildyn is not None and not fildyn.is_file():
        fildyn = None
    return QRunFiles(root=root, prefix=prefix, q_tpiba=q, gamma=gamma,
                     xml=save / "data-file-schema.xml", wfc_dir=save, psi_buffers=buffers,
                     phsave=ph0 / f"{prefix}.phsave", captures=captures, fildyn=fildyn)


def _contracted_entry(root: Path, c) -> dict | None:
    """A contracted irrep's record (``{"file", "size", "sha256", ...}``) with its file as a path."""
    if not c:
        return None
    return dict(c, file=root / c["file"])


def find_qruns(run_dir) -> list[Path]:
    """All q-run directories (holding a manifest) at or below ``run_dir``, sorted."""
    run_dir = Path(run_dir)
    if (run_dir / MANIFEST).is_file():
        return [run_dir]
    return sorted(p.parent for p in run_dir.rglob(MANIFEST))


# -- capture integrity -------------------------------------------------------------------------
def sha256_file(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def capture_files(cap: dict) -> list[Path]:
    return list(cap["dwf"]) + ([cap["drho"]] if cap.get("drho") else [])


def record_capture(root, irrep: int, dwf, drho, npool: int, q_tpiba=None, base: dict | None = None) -> dict:
    """Record a finished capture of ``irrep`` in the manifest (atomic write): its files with
    their size and sha256, the irrep, the q (default: the manifest's) and the pool count. Then
    delete the files of the capture it replaces (never before: the manifest always lists
    complete files). ``base`` updates top-level keys (prefix, outdir, ...) in the same write."""
    root = Path(root)
    man = read_manifest(root)
    if base:
        man.update(base)
    if q_tpiba is None:
        q_tpiba = man.get("q_tpiba")
    entry = _capture_entry(root, irrep, dwf, drho, npool, q_tpiba)
    caps = man.setdefault("captures", {})
    old_files = _listed_files(caps.get(str(irrep), {}))
    caps[str(irrep)] = entry
    write_manifest(root, man)
    keep = set()                        # every file a capture lists, the new one's included
    for other in caps.values():
        keep.update(_listed_files(other))
    for f in old_files:
        if f not in keep and (root / f).is_file():
            (root / f).unlink()
    return entry


def _capture_entry(root: Path, irrep: int, dwf, drho, npool: int, q_tpiba) -> dict:
    """The manifest entry of a capture: its files relative to ``root``, with size and sha256."""
    def rel(p):
        return os.path.relpath(Path(p), root)
    new = [Path(p) for p in dwf] + ([Path(drho)] if drho else [])
    return {"dwf": [rel(d) for d in dwf], "drho": rel(drho) if drho else None, "irrep": int(irrep),
            "q_tpiba": [float(v) for v in q_tpiba] if q_tpiba is not None else None,
            "npool": int(npool),
            "checksums": {rel(p): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in new}}


def _listed_files(cap: dict) -> list[str]:
    """The files (relative names) a manifest capture entry lists: δψ files, then fildrho."""
    return list(cap.get("dwf", [])) + ([cap["drho"]] if cap.get("drho") else [])


def record_contraction(root, irrep: int, record: dict) -> dict:
    """Record in the manifest (atomic write) that irrep's δψ has been contracted into
    ``record["file"]`` (relative to ``root``; with its size and sha256). Only after this write
    may the δψ files be deleted (:func:`dfptmag.workflow.capture.discard_dwf`)."""
    root = Path(root)
    man = read_manifest(root)
    cap = man.get("captures", {}).get(str(irrep))
    if cap is None:
        raise InputFileError(root / MANIFEST, f"no capture of irrep {irrep} to mark contracted")
    cap["contracted"] = dict(record)
    write_manifest(root, man)
    return cap


def verify_captures(files: QRunFiles) -> list[str]:
    """Check every capture against what the manifest recorded at capture time (size, sha256,
    irrep, q) before any number is computed. Raises InputFileError naming the file. Returns
    the irreps that have no recorded checksums (older manifests): only fildrho guards those."""
    recorded = _recorded_digests(files)
    unchecked = []
    for irr, cap in sorted(files.captures.items()):
        _check_capture_origin(files, irr, cap)
        sums = _capture_sums(cap)
        if sums is None:
            unchecked.append(irr)
            continue
        if not cap.get("contracted"):
            _check_all_summed(irr, cap, sums)
        for p, c in sums.items():
            _check_capture_file(irr, p, c, recorded)
    return unchecked


def _recorded_digests(files: QRunFiles) -> dict:
    """sha256 → (irrep, path) over all captures: names the file whose data turned up elsewhere."""
    recorded = {}
    for irr, cap in files.captures.items():
        for p, c in (cap.get("checksums") or {}).items():
            recorded.setdefault(c.get("sha256"), (irr, p))
    return recorded


def _check_capture_origin(files: QRunFiles, irr: int, cap: dict) -> None:
    """The irrep and q recorded in a capture entry are those of its key and of this q-run."""
    man_path = files.root / MANIFEST
    if cap.get("irrep") is not None and int(cap["irrep"]) != irr:
        raise InputFileError(man_path, f"entry of irrep {irr} records irrep {cap['irrep']}: "
                                       "manifest edited or entries exchanged")
    if cap.get("q_tpiba") is not None and not np.allclose(cap["q_tpiba"], files.q_tpiba, atol=1e-8):
        raise InputFileError(man_path, f"capture of irrep {irr} was made at q = {cap['q_tpiba']} "
                                       f"(2π/alat), this q-run is at q = {files.q_tpiba.tolist()}")


def _capture_sums(cap: dict) -> dict | None:
    """The files to check and their recorded {size, sha256}: the contracted file once δψ is
    contracted (it holds the fildrho records, and δψ may be deleted), else the capture's
    checksums (None in older manifests)."""
    if cap.get("contracted"):
        c = cap["contracted"]
        return {c["file"]: {"size": c["size"], "sha256": c["sha256"]}}
    return cap.get("checksums")


def _check_all_summed(irr: int, cap: dict, sums: dict) -> None:
    """Every file a capture lists has a checksum (else the manifest was edited after capture)."""
    for p in capture_files(cap):
        if p not in sums:
            raise InputFileError(p, f"capture of irrep {irr} lists this file but no checksum "
                                    "for it: manifest edited after capture")


def _check_capture_file(irr: int, p: Path, c: dict, recorded: dict) -> None:
    """One captured file against its recorded size and sha256; a digest recorded for another
    file names where its data came from."""
    if not p.is_file():
        raise InputFileError(p, f"capture of irrep {irr}: file not found (it was there at "
                                "capture time)")
    size = p.stat().st_size
    if size < c["size"]:
        raise InputFileError(p, f"capture of irrep {irr} truncated since capture: {size} B, "
                                f"{c['size']} B at capture time")
    if size != c["size"]:
        raise InputFileError(p, f"capture of irrep {irr} changed since capture: {size} B, "
                                f"{c['size']} B at capture time")
    digest = sha256_file(p)
    if digest != c["sha256"]:
        other = recorded.get(digest)
        if other is not None and other[1] != p:
            what = (f"the data of irrep {other[0]}" if other[0] != irr
                    else "the data of another file of this irrep")
            raise InputFileError(p, f"capture of irrep {irr} holds {what} "
                                    f"({other[1].name} at capture time)")
        raise InputFileError(p, f"capture of irrep {irr} changed since capture: sha256 "
                                "differs (same size)")


def _nonempty_str(v) -> bool:
    return isinstance(v, str) and bool(v)


def _three_finite(v) -> bool:
    return (isinstance(v, list) and len(v) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            and bool(all(np.isfinite(v))))


def _contracted_record(c) -> bool:
    return (isinstance(c, dict) and isinstance(c.get("file"), str) and bool(c["file"])
            and isinstance(c.get("size"), int) and isinstance(c.get("sha256"), str))


# Manifest fields: field → (rule, what the error says is expected, whether null is allowed).
# A field that is absent is not checked here (locate says which ones it needs).
_MANIFEST_FIELDS = {
    "prefix": (_nonempty_str, "a non-empty string", False),
    "outdir": (_nonempty_str, "a non-empty string", False),
    "fildyn": (_nonempty_str, "a non-empty string", True),
    "label": (_nonempty_str, "a non-empty string", True),
    "q_tpiba": (_three_finite, "three finite numbers", True),
    "q_crystal": (_three_finite, "three finite numbers", True),
    "captures": (lambda v: isinstance(v, dict), "an object {irrep: {dwf: [files], drho: file}}", False),
}
# The fields of one captures entry, with the same meaning
_CAPTURE_FIELDS = {
    "dwf": (lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v), "a list of file names", False),
    "contracted": (_contracted_record, "{file: name, size: bytes, sha256: hex}", True),
    "drho": (lambda v: isinstance(v, str), "a file name or null", True),
}


def _check_fields(path: Path, obj: dict, rules: dict, name) -> None:
    """Raise naming the first field of ``obj`` that breaks its rule; ``name(field)`` is how the
    error message spells the field."""
    for key, (ok, want, nullable) in rules.items():
        if key in obj and not (nullable and obj[key] is None) and not ok(obj[key]):
            raise InputFileError(path, f"{name(key)} = {obj[key]!r}: expected {want}")


def check_manifest_types(root) -> None:
    """Refuse a manifest whose fields have the wrong types, naming the field (before any path
    is built from them)."""
    path = Path(root) / MANIFEST
    man = read_manifest(root)
    if not isinstance(man, dict):
        raise InputFileError(path, "not a JSON object")
    _check_fields(path, man, _MANIFEST_FIELDS, lambda key: f"'{key}'")
    for irr, cap in man.get("captures", {}).items():
        if not irr.isdigit() or not isinstance(cap, dict):
            raise InputFileError(path, f"captures['{irr}']: expected irrep number -> {{dwf: [...], drho: ...}}")
        _check_fields(path, cap, _CAPTURE_FIELDS, lambda key, irr=irr: f"captures['{irr}'].{key}")
