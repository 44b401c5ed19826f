"""Writing Fortran namelists for QE inputs with full floating-point precision."""
from __future__ import annotations


def fortran_value(v) -> str:
    if isinstance(v, bool):
        return ".true." if v else ".false."
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v).replace("e", "d") if "e" in repr(v) else repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def namelist(name: str, values: dict) -> str:
    lines = [f"&{name}"]
    lines += [f"  {k} = {fortran_value(v)}" for k, v in values.items() if v is not None]
    lines.append("/")
    return "\n".join(lines) + "\n"
