"""Minimal reader of a UPF pseudopotential header: type, spin-orbit flag, element, functional,
valence and suggested cutoffs (UPF v2 attributes; v1 fixed lines as far as they say)."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputFileError
from . import reader


@reader('UPF pseudopotential file')
def read_upf_header(path) -> dict:
    """Return {"pseudo_type": "NC"|"US"|"PAW"|..., "has_so": bool, "element": str, "functional": str,
    "relativistic": str, "z_valence": float, "wfc_cutoff": float, "rho_cutoff": float}.

    z_valence is NaN when the header does not say; the cutoffs (Ry) are the generator's suggestion,
    0.0 when it gives none (ld1.x writes 0.0)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "pseudopotential file not found")
    with open(path, errors="replace") as f:
        head = f.read(20000)
    m = re.search(r"<PP_HEADER(.*?)/?>", head, re.S)
    if m and "pseudo_type" in m.group(1):   # UPF v2: attributes
        attrs = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(1)))
        ptype = attrs.get("pseudo_type", "").strip().upper()
        if attrs.get("is_paw", "").lower() in ("true", "t"):
            ptype = "PAW"
        elif attrs.get("is_ultrasoft", "").lower() in ("true", "t") and ptype == "NC" or ptype == "USPP":
            ptype = "US"
        zval = _float(attrs.get("z_valence"), float("nan"))
        return {"pseudo_type": ptype, "has_so": attrs.get("has_so", "").lower() in ("true", "t"),
                "element": attrs.get("element", "").strip(), "functional": attrs.get("functional", "").strip(),
                "relativistic": attrs.get("relativistic", "").strip(), "z_valence": zval,
                "wfc_cutoff": _float(attrs.get("wfc_cutoff"), 0.0), "rho_cutoff": _float(attrs.get("rho_cutoff"), 0.0)}
    m = re.search(r"<PP_HEADER>(.*?)</PP_HEADER>", head, re.S)   # UPF v1: fixed lines
    if not m:
        raise InputFileError(path, "no <PP_HEADER>: not a UPF file")
    # line 0 "0 Version Number", then element, type, core correction, functional, Z valence,
    # total energy, "wfc rho Suggested cutoff"; spin-orbit data sit in <PP_ADDINFO> near the end
    lines = [ln.split() for ln in m.group(1).strip().splitlines()]
    def word(row):
        return lines[row][0] if len(lines) > row and lines[row] else ""
    xc = " ".join(m.group(1).strip().splitlines()[4].split("Exchange")[0].split()) if len(lines) > 4 else ""
    with open(path, errors="replace") as f:
        addinfo = "<PP_ADDINFO>" in f.read()
    return {"pseudo_type": word(2).upper() or "?", "has_so": addinfo, "element": word(1),
            "functional": xc, "relativistic": "full" if addinfo else "",
            "z_valence": _v1_float(lines, 5), "wfc_cutoff": _v1_float(lines, 7, 0, 0.0),
            "rho_cutoff": _v1_float(lines, 7, 1, 0.0)}


_XC_ALIASES = {"SLA PW PBX PBC": "PBE", "SLA PW PBE PBE": "PBE", "SLA PW PSX PSC": "PBESOL",
               "SLA PZ NOGX NOGC": "PZ", "SLA PW NOGX NOGC": "PW", "SLA PZ": "PZ", "SLA PW": "PW"}


def functional_name(text: str) -> str:
    """One name for a UPF functional string: upper case; QE's four short names ("SLA PW PBX PBC")
    as the usual label ("PBE"); v1 files that add the label after them ("SLA PW PBX PBC PBE") too."""
    words = text.upper().split()
    if not words:
        return ""
    joined = " ".join(words)
    if joined in _XC_ALIASES:
        return _XC_ALIASES[joined]
    if len(words) == 5 and " ".join(words[:4]) in _XC_ALIASES:
        return _XC_ALIASES[" ".join(words[:4])]
    return joined


def _float(text, default: float) -> float:
    """A header attribute as a float (Fortran 1.0D0 exponents too); ``default`` if absent or bad."""
    if text is None:
        return default
    try:
        return float(text.strip().replace("D", "E").replace("d", "e"))
    except ValueError:
        return default


def _v1_float(lines, row: int, col: int = 0, default: float = float("nan")) -> float:
    """Word ``col`` of UPF v1 header line ``row`` (0-based after the version line) as a float."""
    try:
        return _float(lines[row][col], default)
    except IndexError:
        return default


def is_upf(path) -> bool:
    """A UPF file (by its .upf suffix, any case, or a <UPF / <PP_HEADER tag near the top) rather
    than an ld1.x input."""
    path = Path(path)
    if path.suffix.lower() == ".upf":
        return True
    try:
        with open(path, errors="replace") as f:
            head = f.read(4000)
    except OSError:
        return False
    return "<UPF" in head or "<PP_HEADER" in head
