"""The QE builds the test suite runs on: the one on PATH (Debian's 6.7 in CI, the reference),
plus every build unpacked into ``.qe/<version>/`` (``./install.sh --test`` unpacks the archives
of ``../shared/qe``) and every folder named in ``$DFPTMAG_TEST_QE`` (os.pathsep-separated, each
holding pw.x, ph.x, ld1.x, q2r.x and matdyn.x, e.g. a cluster module's bin/)."""
from __future__ import annotations

import dataclasses
import os
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Build:
    version: str            # as the programs print it: 6.7MaX, 7.4.1, 7.5
    bin_dir: Path           # the folder of pw.x, ph.x, ...
    reference: bool         # the PATH build, against which the others are compared

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@lru_cache(maxsize=1)
def builds() -> tuple[Build, ...]:
    from dfptmag.workflow import qe
    out, seen = [], set()
    pw = qe.find("pw.x")                     # $DFPTMAG_QE_BIN, else PATH: what the rest of the suite runs
    dirs = [(Path(pw).resolve().parent, True)] if pw else []
    dirs += [(d, False) for d in sorted((ROOT / ".qe").glob("*/")) if (d / "ph.x").is_file()]
    dirs += [(Path(d), False) for d in os.environ.get("DFPTMAG_TEST_QE", "").split(os.pathsep) if d]
    for d, ref in dirs:
        if d.resolve() in seen or not (d / "pw.x").is_file():
            continue
        seen.add(d.resolve())
        v = qe.version_of(d / "pw.x")
        if v is not None:
            out.append(Build(str(v), d.resolve(), ref))
    return tuple(out)


def reference() -> Build | None:
    return next((b for b in builds() if b.reference), None)
