"""``bz_maps.h5``: the RMS magnetization of ``bands --interpolate`` over the 2D Brillouin zone
(the data behind ``bz_maps_inplane``/``bz_maps_outofplane``), written atomically."""
from __future__ import annotations

from pathlib import Path

import h5py

from ..atomic import atomic_path
from ..kernel.bzsampling import BZ_START_POINTS


def write(path, q, rms_in, rms_out, freq_mev, amplitude: str, branch=None, overlap=None, seam=None) -> Path:
    """The BZ-map data (modes by ascending frequency at each q; ``branch`` maps them to tracked
    branches, ``overlap`` and ``seam`` as kernel.bzsampling.bz_branches returns them);
    ``amplitude``: the mode amplitude convention, as in bands.h5."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
        h.attrs["object"] = ("interpolated RMS magnetization over the 2D Brillouin zone, modes by ascending "
                             "frequency; branch: the tracked branch of each mode")
        h.attrs["amplitude"] = amplitude
        h.create_dataset("q_crystal", data=q).attrs["units"] = "1"
        h.create_dataset("rms_inplane", data=rms_in).attrs["units"] = "muB"
        h.create_dataset("rms_outofplane", data=rms_out).attrs["units"] = "muB"
        h.create_dataset("frequency_meV", data=freq_mev).attrs["units"] = "meV"
        if branch is not None:
            d = h.create_dataset("branch", data=branch)
            d.attrs["units"] = "1"
            d.attrs["description"] = (f"branch index: ascending ω at the {BZ_START_POINTS} sampled q nearest "
                                      "Γ, then by eigenvector overlap along a breadth-first forest of grid "
                                      "neighbours")
            h.create_dataset("branch_overlap", data=overlap).attrs["units"] = "1"
            h.create_dataset("branch_seam", data=seam).attrs["description"] = (
                "True where, towards a grid neighbour, some branch's eigenvector overlap is below 0.5: "
                "branches exchange there (no labelling of the 2D zone is continuous everywhere)")
    return path
