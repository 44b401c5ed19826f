"""Minimal reader of a UPF pseudopotential header: type, spin-orbit flag, element, functional,
valence (UPF v2 attributes; v1 fixed lines as far as they say)."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputFileError
from . import reader


@reader('UPF pseudopotential file')
def read_upf_header(path) -> dict:
    """Return {"pseudo_type": "NC"|"US"|"PAW"|..., "has_so": bool, "element": str}."""
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
        elif attrs.get("is_ultrasoft", "").lower() in ("true", "t") and ptype == "NC":
            ptype = "US"
        try:
            zval = float(attrs.get("z_valence", "nan"))
        except ValueError:
            zval = float("nan")
        return {"pseudo_type": ptype, "has_so": attrs.get("has_so", "").lower() in ("true", "t"),
                "element": attrs.get("element", "").strip(), "functional": attrs.get("functional", "").strip(),
                "relativistic": attrs.get("relativistic", "").strip(), "z_valence": zval}
    m = re.search(r"<PP_HEADER>(.*?)</PP_HEADER>", head, re.S)   # UPF v1: fixed lines
    if not m:
        raise InputFileError(path, "no <PP_HEADER>: not a UPF file")
    lines = [ln.split() for ln in m.group(1).strip().splitlines()]
    ptype = lines[1][0].upper() if len(lines) > 1 and lines[1] else "?"
    return {"pseudo_type": ptype, "has_so": "<PP_ADDINFO>" in head, "element": lines[0][0] if lines[0] else "",
            "functional": "", "relativistic": "full" if "<PP_ADDINFO>" in head else "", "z_valence": float("nan")}


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
