"""The public Python API: ``dfptmag.load(path)`` returns objects, not dicts::

    res = dfptmag.load("runs/wse2-tiny/dfptmag.h5")      # a Result (from run / analyze)
    k = res["K"]                                          # one q-point: a QPoint
    k.atoms, k.q, k.modes.frequencies("THz"), k.modes.rms_inplane, k.patterns.cell_integral,
    k.checks.drho_relative_error, k.field(mode=2), k.snapshot(mode=2, outdir="figs")
    res["G"] is res["Γ"] is res["Gamma"]; res["-K"] is res["K'"] is res["Kp"]

Arguments take the command line's names and value forms: ``k.snapshot(mode=2, cells="4x4" or
(4, 4), time=0.25, formats="png,xsf" or ["png", "xsf"])``. Bad arguments raise ``TypeError``
(wrong kind: ``mode=1.5``) or ``ValueError`` (wrong value: ``mode=0``, ``cells="4by4"``) with a
message naming the argument. A band file::

    b = dfptmag.load("runs/wse2-tiny/bands.h5")           # a Bands (from dfptmag bands)
    b.path.labels, b.frequencies("cm-1"), b.rms_inplane, b.by_branch(), b.plot()

Everything is read once into numpy arrays except the real-space fields (read on demand by
``field``/``snapshot``). Units are those of the file (docs/hdf5.md); frequencies can be had
in meV, THz and cm⁻¹. Files written before the units/structure schema (no ``schema`` attribute)
are read too; anything else fails with an InputFileError naming the file.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np

from .constants import BOHR_RADIUS_ANGS, RY_TO_CMM1, RY_TO_MEV, RY_TO_THZ
from .errors import ArgumentTypeError, ArgumentValueError, DfptmagError, InputFileError
from .kernel.modes import DEGENERACY_TOL_CM1

def _index(name: str, value) -> int | None:
    """A 1-based index argument (mode, pattern): None, or an integer ≥ 1."""
    import numbers
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an integer (1-based), not {value!r}")
    if value < 1:
        raise ArgumentValueError(f"{name} must be ≥ 1 (1-based), not {value}")
    return int(value)


def _cells_arg(value) -> tuple[int, int]:
    """cells as the CLI takes them: '4x4', or a pair (4, 4)."""
    import numbers
    if isinstance(value, str):
        try:
            n, m = (int(v) for v in value.lower().split("x"))
        except ValueError:
            raise ArgumentValueError(f"cells must look like '4x4' or (4, 4), not {value!r}") from None
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        n, m = (int(v) for v in value)
    else:
        raise ArgumentTypeError(f"cells must be 'NxM' or a pair of integers, not {value!r}")
    if n < 1 or m < 1 or n * m > 10000:
        raise ArgumentValueError(f"cells {value!r}: N and M must be ≥ 1 (and N·M ≤ 10000)")
    return n, m


def _formats_arg(value, allowed) -> list[str]:
    """formats as the CLI takes them: 'png', 'png,xsf', or a list of names."""
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise ArgumentTypeError(f"formats must be a string like 'png,xsf' or a list of names, not {value!r}")
    bad = [f for f in names if f not in allowed]
    if bad or not names:
        raise ArgumentValueError(f"formats {value!r}: choose from {', '.join(allowed)}")
    return names


def _run_label(label, available) -> str:
    """A q label in any spelling (G, Γ, Gamma; K', -K, Kp; a coordinate label as stored) → the
    label the file stores, through the one table dfptmag.kernel.qpoints."""
    from .kernel import qpoints
    if not isinstance(label, str):
        raise ArgumentTypeError(f"q label must be a string such as 'K' or 'Γ', not {label!r}")
    return qpoints.stored_label(label, available)


FREQUENCY_UNITS = {"meV": 1.0, "THz": RY_TO_THZ / RY_TO_MEV, "cm-1": RY_TO_CMM1 / RY_TO_MEV}
_UNIT_ALIASES = {"mev": "meV", "thz": "THz", "cm-1": "cm-1", "cm1": "cm-1", "cm^-1": "cm-1", "1/cm": "cm-1"}


def _unit(unit: str) -> str:
    u = _UNIT_ALIASES.get(str(unit).strip().lower())
    if u is None:
        raise DfptmagError(f"frequency unit {unit!r}: one of meV, THz, cm-1")
    return u


def _str_list(a) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(a)]


def _atoms(cell_bohr, positions_bohr, symbols, masses_amu):
    from ase import Atoms
    atoms = Atoms(symbols, positions=np.asarray(positions_bohr) * BOHR_RADIUS_ANGS,
                  cell=np.asarray(cell_bohr) * BOHR_RADIUS_ANGS, pbc=(True, True, False))
    atoms.set_masses(np.asarray(masses_amu, dtype=float))
    return atoms


def _groups(group_index) -> list[np.ndarray]:
    """Degenerate groups as lists of 0-based mode indices, in order of first appearance."""
    g = np.asarray(group_index)
    return [np.flatnonzero(g == v) for v in dict.fromkeys(g.tolist())]


def load(path):
    """Read a dfptmag file: ``dfptmag.h5`` (from ``run``/``analyze``) → :class:`Result`,
    ``bands.h5`` (from ``bands``) → :class:`Bands`."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        with h5py.File(path, "r") as f:
            kind = "result" if "q" in f else ("bands" if "path" in f and "modes" in f else None)
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    if kind == "result":
        return Result(path)
    if kind == "bands":
        return Bands(path)
    raise InputFileError(path, "not a dfptmag file (neither /q of dfptmag.h5 nor /path and /modes of bands.h5)")


# ----------------------------------------------------------------------------------- dfptmag.h5
@dataclasses.dataclass
class Modes:
    """Phonon modes at one q, ascending frequency (index 0 = mode 1 of the CLI)."""
    frequency_meV: np.ndarray               # (nmode,), negative = imaginary
    eigenvectors: np.ndarray                # (nmode, nat, 3) complex, mass-scaled, orthonormal
    displacements_bohr: np.ndarray          # (nmode, nat, 3) complex, at the stated amplitude
    degenerate_group: np.ndarray            # (nmode,) group index
    degeneracy_tol_cm1: float
    amplitude: str                          # the amplitude convention, in words
    cell_integral: np.ndarray | None        # (nmode, 4) complex [δn (e), δm_x, δm_y, δm_z (μB)] per cell
    rms: np.ndarray | None                  # (nmode, 4) |cell_integral|/√2
    rms_inplane: np.ndarray | None          # (nmode,) μB per cell
    rms_outofplane: np.ndarray | None       # (nmode,) μB per cell
    rms_subspace: np.ndarray | None         # (nmode, 4) basis-independent totals of degenerate subspaces
    pattern_coefficients: np.ndarray | None  # (nmode, npat): U_ν = Σ_μ c[ν, μ] u_μ
    phase_convention: str = "lattice_vector"

    def __len__(self):
        return len(self.frequency_meV)

    def frequencies(self, unit: str = "meV") -> np.ndarray:
        """Frequencies in 'meV', 'THz' or 'cm-1' (negative = imaginary)."""
        return self.frequency_meV * FREQUENCY_UNITS[_unit(unit)]

    @property
    def frequency_THz(self):
        return self.frequencies("THz")

    @property
    def frequency_cm1(self):
        return self.frequencies("cm-1")

    @property
    def degenerate_groups(self) -> list[np.ndarray]:
        """Degenerate subspaces as arrays of 0-based mode indices (``|Δω| < degeneracy_tol_cm1``)."""
        return _groups(self.degenerate_group)


@dataclasses.dataclass
class Patterns:
    """ph.x's displacement patterns at one q and their response per bohr of displacement."""
    index: np.ndarray                       # (npat,) ph.x pattern numbers, 1-based
    displacement: np.ndarray                # (npat, nat, 3) complex unit patterns
    cell_integral: np.ndarray               # (npat, 4) complex [e, μB, μB, μB] per bohr
    density_matrix: np.ndarray              # (npat, 2, 2) complex, e per bohr
    has_field: bool                         # real-space fields stored (not analyzed with --no-field)


@dataclasses.dataclass
class Checks:
    """The oracles of one q: charge against ph.x's fildrho, frequencies against ph.x's."""
    drho_relative_error: np.ndarray | None
    drho_g0_relative_error: np.ndarray | None
    frequency_minus_phx_cm1: np.ndarray | None
    dynmat_cartesian: np.ndarray | None
    attrs: dict


class QPoint:
    """One q-point of a dfptmag.h5 file."""

    def __init__(self, path: Path, label: str, d: dict, attrs: dict, mattrs: dict):
        self.file, self.label, self.attrs = path, label, attrs
        self.q = np.asarray(d["q_crystal"])                 # crystal coordinates of b_i
        self.q_tpiba = np.asarray(d["q_tpiba"])             # Cartesian, 2π/alat
        self.atoms = _atoms(d["structure/cell_bohr"], d["structure/positions_bohr"],
                            _str_list(d["structure/symbols"]), d["structure/masses_amu"])
        self.patterns = Patterns(index=d["patterns/index"], displacement=d["patterns/displacement"],
                                 cell_integral=d["patterns/cell_integral"],
                                 density_matrix=d["patterns/density_matrix"],
                                 has_field=bool(d.get("_has_field")))
        self.checks = Checks(**{k: d.get(f"checks/{k}") for k in
                                ("drho_relative_error", "drho_g0_relative_error",
                                 "frequency_minus_phx_cm1", "dynmat_cartesian")},
                             attrs=dict(d.get("_checks_attrs", {})))
        self.modes_missing_reason = str(attrs.get("modes_missing_reason", "")) or None
        self.modes = None
        if "modes/frequency_meV" in d:
            self.modes = Modes(
                frequency_meV=d["modes/frequency_meV"], eigenvectors=d["modes/eigenvector"],
                displacements_bohr=d["modes/displacement_bohr"], degenerate_group=d["modes/degenerate_group"],
                degeneracy_tol_cm1=float(mattrs.get("degenerate_tolerance_cm1", DEGENERACY_TOL_CM1)),
                amplitude=str(mattrs.get("amplitude", "")),
                cell_integral=d.get("modes/cell_integral"), rms=d.get("modes/rms"),
                rms_inplane=d.get("modes/rms_inplane"), rms_outofplane=d.get("modes/rms_outofplane"),
                rms_subspace=d.get("modes/rms_subspace"),
                pattern_coefficients=d.get("modes/pattern_coefficients"))

    def __repr__(self):
        n = f"{len(self.modes)} modes" if self.modes is not None else f"no modes ({self.modes_missing_reason})"
        return f"<dfptmag QPoint {self.label} q={np.round(self.q, 4).tolist()} {n}>"

    def field(self, mode: int | None = None, pattern: int | None = None) -> np.ndarray:
        """Complex periodic real-space amplitude (4, n1, n2, n3) = [δn, δm_x, δm_y, δm_z] on QE's
        FFT grid, per bohr³ (e, μB), of ``mode`` (1-based, at the stated amplitude) or of
        ``pattern`` (1-based, per bohr of displacement). The physical field is
        Re[F(r) e^{i(q·r − ωt)}] (dfptmag.snapshot.supercell_field)."""
        return self.amplitude(mode=mode, pattern=pattern).field

    def amplitude(self, mode: int | None = None, pattern: int | None = None):
        """The dfptmag.snapshot.Amplitude of a mode or pattern (field, displacement, cell, ...).
        TypeError for a non-integer index, ValueError for one out of range."""
        from .analysis.snapshot import load as load_amplitude
        mode, pattern = _index("mode", mode), _index("pattern", pattern)
        if (mode is None) == (pattern is None):
            raise ArgumentValueError("give exactly one of mode=N or pattern=N")
        if mode is not None and self.modes is not None and mode > len(self.modes):
            raise ArgumentValueError(f"mode {mode} out of range 1..{len(self.modes)} at q {self.label}")
        return load_amplitude(self.file, self.label, mode=mode, pattern=pattern)

    def snapshot(self, mode: int | None = None, pattern: int | None = None, outdir=".", *,
                 cells: str | tuple[int, int] = (4, 4), time: float = 0.0, plane: str | None = None,
                 formats: str | list[str] = "png", movie: str | None = None, frames: int = 48,
                 grid: tuple[int, int, int] | None = None) -> list[Path]:
        """Pictures, movies and exports of one mode or pattern: exactly ``dfptmag snapshot``,
        with its option names and value forms.

        cells: '4x4' or (4, 4); time: in periods (``--time``); plane: 'W', 'z=1.5' or 'avg'
        (default the heaviest atom's plane); formats: 'png', 'png,xsf' or a list from png, pdf,
        xsf, vtk, cube, h5; movie: 'gif' or 'mp4'; frames: per period; grid: (n1, n2, n3)
        Fourier resampling. Returns the paths written."""
        from .export import FORMATS
        from .jobs.snapshot import run_snapshot
        mode, pattern = _index("mode", mode), _index("pattern", pattern)
        if (mode is None) == (pattern is None):
            raise ArgumentValueError("give exactly one of mode=N or pattern=N")
        if isinstance(time, bool) or not isinstance(time, (int, float, np.floating, np.integer)):
            raise ArgumentTypeError(f"time must be a number (periods), not {time!r}")
        if movie not in (None, "gif", "mp4"):
            raise ArgumentValueError(f"movie must be 'gif' or 'mp4', not {movie!r}")
        return run_snapshot(self.file, self.label, mode=mode, pattern=pattern, outdir=outdir,
                            cells=_cells_arg(cells), t=float(time), plane=plane,
                            formats=tuple(_formats_arg(formats, FORMATS)), movie=movie,
                            frames=int(frames), grid=grid)


class Result:
    """A dfptmag.h5 file: one :class:`QPoint` per q label (``result["K"]``, ``result.qpoints``)."""

    def __init__(self, path):
        self.path = Path(path)
        self.qpoints: dict[str, QPoint] = {}
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = dict(f.attrs)
                for label, g in f["q"].items():
                    d = {}

                    def grab(name, obj, d=d):
                        if isinstance(obj, h5py.Dataset) and name != "patterns/field":
                            d[name] = obj[()]
                    g.visititems(grab)
                    d["_has_field"] = "patterns/field" in g
                    d["_checks_attrs"] = dict(g["checks"].attrs) if "checks" in g else {}
                    mattrs = dict(g["modes"].attrs) if "modes" in g else {}
                    self.qpoints[label] = QPoint(self.path, label, d, dict(g.attrs), mattrs)
        except KeyError as exc:
            raise InputFileError(self.path, f"incomplete dfptmag.h5 ({exc})") from None

    @property
    def labels(self) -> list[str]:
        return list(self.qpoints)

    @property
    def schema(self) -> str:
        return str(self.attrs.get("schema", "dfptmag.h5/1"))

    def __getitem__(self, label: str) -> QPoint:
        """One q-point by label, in any spelling: 'G', 'Γ', 'Gamma'; 'K', "K'", '-K', 'Kp'."""
        label = _run_label(label, self.qpoints)
        if label not in self.qpoints:
            raise KeyError(f"{self.path}: no q-point {label!r} (has: {', '.join(self.qpoints)})")
        return self.qpoints[label]

    def __iter__(self):
        return iter(self.qpoints.values())

    def __len__(self):
        return len(self.qpoints)

    def __repr__(self):
        return f"<dfptmag Result {self.path} q: {', '.join(self.qpoints)}>"


# ----------------------------------------------------------------------------------- bands.h5
class Bands:
    """A bands.h5 file: the path, per-q modes in ascending frequency, branches, RMS values."""

    def __init__(self, path):
        from .kernel import bandpath
        from .results.bandsfile import read
        self.file = Path(path)
        self.raw = read(self.file)                 # the flat dict {'modes/rms': array, ...}
        b = self.raw
        self.attrs = b["attrs"]
        self.path = bandpath.BandPath(
            q_crystal=b["path/q_crystal"], distance=b["path/distance"],
            labels=[(int(i), lab) for i, lab in zip(b["path/label_index"], b["path/labels"])],
            breaks=[int(i) for i in b["path/breaks"]], path=str(self.attrs.get("path", "")))
        self.computed = np.asarray(b["path/computed"], dtype=bool)
        self.rms = b["modes/rms"]                          # (nq, nmode, 4) [e, μB, μB, μB]
        self.rms_inplane = b["modes/rms_inplane"]          # (nq, nmode) μB per cell
        self.rms_outofplane = b["modes/rms_outofplane"]    # (nq, nmode) μB per cell
        self.rms_subspace = b["modes/rms_subspace"]
        self.cell_integral = b["modes/cell_integral"]
        self.eigenvectors = b["modes/eigenvector"]
        self.branch = b["modes/branch"]
        self.branch_overlap = b["modes/branch_overlap"]
        self.degenerate_group = b["modes/degenerate_group"]
        self.frequency_phx_cm1 = b.get("modes/frequency_phx_cm1")
        self.atoms = (_atoms(b["structure/cell_bohr"], b["structure/positions_bohr"], b["structure/symbols"],
                             b["structure/masses_amu"]) if "structure/cell_bohr" in b else None)

    @property
    def q(self) -> np.ndarray:
        return self.path.q_crystal

    @property
    def distance(self) -> np.ndarray:
        """Cumulative path length, 1/Å (2π included)."""
        return self.path.distance

    @property
    def schema(self) -> str:
        return str(self.attrs.get("schema", "bands.h5/1"))

    def frequencies(self, unit: str = "meV") -> np.ndarray:
        """(nq, nmode) DFPT frequencies, ascending at each q, in 'meV', 'THz' or 'cm-1'."""
        return self.raw["modes/frequency_meV"] * FREQUENCY_UNITS[_unit(unit)]

    @property
    def dispersion(self) -> dict | None:
        """The interpolated dispersion {'q_crystal', 'distance', 'frequency_meV', 'branch',
        'dfpt_index', 'attrs'}, or None."""
        if "dispersion/frequency_meV" not in self.raw:
            return None
        out = {k.split("/", 1)[1]: v for k, v in self.raw.items() if k.startswith("dispersion/")}
        out["attrs"] = self.raw.get("dispersion_attrs", {})
        return out

    def by_branch(self, unit: str = "meV") -> dict[str, np.ndarray]:
        """(nq, nbranch) arrays reordered by tracked branch (NaN where not computed):
        'frequency' (in ``unit``), 'rms_inplane', 'rms_outofplane' (μB per cell), 'rms' (…, 4)."""
        from .kernel.branches import per_branch

        def per(values):
            return per_branch(values, self.raw["modes/branch"], self.raw["path/computed"])
        return {"frequency": per(self.raw["modes/frequency_meV"]) * FREQUENCY_UNITS[_unit(unit)],
                "rms_inplane": per(self.raw["modes/rms_inplane"]),
                "rms_outofplane": per(self.raw["modes/rms_outofplane"]),
                "rms": per(self.rms)}

    def plot(self, kind: str = "magnetization"):
        """The figure (matplotlib Figure): 'magnetization' (dispersion + in-plane + out-of-plane
        RMS panels, the paper's Fig. 3) or 'fat' (fat bands)."""
        from .plot.bands import fat_band_figure, magnetization_figure
        makers = {"magnetization": magnetization_figure, "fat": fat_band_figure}
        if kind not in makers:
            raise DfptmagError(f"plot kind {kind!r}: 'magnetization' or 'fat'")
        return makers[kind](self.raw)

    def to_pymatgen(self):
        """pymatgen's ``PhononBandStructureSymmLine`` (structure, labels, THz frequencies,
        eigendisplacements); see dfptmag.export.pymatgen."""
        from .export.pymatgen import to_pymatgen
        return to_pymatgen(self.raw)

    def to_phonopy(self, outdir=None, force: bool = False, fc=None) -> list[Path]:
        """Write phonopy's band.yaml and band.hdf5 (default: next to the file), and
        phonopy_params.yaml with q2r.x's force constants (``fc``, default ``dispersion/fc`` next
        to the file, when present) that ``phonopy.load`` reads alone; existing files are refused
        (DfptmagError) unless ``force``. See dfptmag.export.phonopy. Returns the paths written."""
        from .export.phonopy import export
        return export(self.file, outdir, force=force, fc_file=fc)

    def save_figures(self, outdir=None, formats: str | list[str] = "png,pdf") -> list[Path]:
        """Write both band figures (frequencies coloured by RMS magnetization, and in-plane /
        out-of-plane RMS per branch) as ``dfptmag plot bands`` does, into ``outdir`` (default:
        next to the file); formats 'png', 'pdf', 'png,pdf' or a list. Returns the paths."""
        from .plot.bands import save_figures
        formats = _formats_arg(formats, ("png", "pdf"))
        return save_figures(self.raw, Path(outdir) if outdir else self.file.parent, formats=formats,
                            stem=self.file.stem)

    def __repr__(self):
        nq, nmode = self.rms_inplane.shape
        labs = "".join(lab for _, lab in self.path.labels)
        return f"<dfptmag Bands {self.file} {labs}: {nq} q-points, {nmode} modes>"


# ------------------------------------------------------------------------------- S(Q, ω), Eq. 5
def sqw(input, *, path: str | None = None, energy: float | None = None, at: str | None = None,
        G=(0, 0), npoints: int = 300, extent: float | None = None, nplane: int = 81, energies=None,
        temperature: float = 300.0, fwhm=1.0, shape: str = "gauss", qz: float = 0.0,
        omega_min: float = 0.5, form_factor=None, cross_section: bool = False, outdir=None,
        channels: str | list[str] | None = None, formats: str | list[str] | None = None):
    """The charge–spin dynamic structure factor of paper Eq. 5, as ``dfptmag sqw``.

    ``input``: the bands.h5 of ``bands --interpolate`` (or its run directory) — any in-plane Q —
    or a dfptmag.h5 of ``run`` (cuts at Q = q + G only). The kind follows the arguments as on the
    command line: ``energy=`` a constant-energy map (meV), ``at=`` a cut S(ω) at one Q ('K' or
    'h,k' r.l.u., plus ``G=(h, k)``), otherwise a Q–ω map along ``path`` (default
    'G M K G 1,0'). ``temperature`` in K, ``fwhm`` in meV (a number, or (c0, c1, c2) for
    c0 + c1|E| + c2 E²), ``shape`` 'gauss' or 'lorentz', ``qz`` in 1/Å, ``energies`` 'EMIN:EMAX:N'
    or an array (meV). Returns a :class:`dfptmag.jobs.sqw.StructureFactor` (``.S`` the 4×4 matrix,
    ``.channel(name)``, ``.amplitude`` per mode, ``.plot(channel)``, ``.to_euphonic(channel)``);
    files are written only when ``outdir`` is given (``channels``, ``formats`` as on the CLI)."""
    import numbers

    from .jobs import sqw as jq
    for name, v in (("temperature", temperature), ("qz", qz), ("omega_min", omega_min)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ArgumentTypeError(f"{name} must be a number, not {v!r}")
    if energy is not None and at is not None:
        raise ArgumentValueError("give energy= (a constant-energy map) or at= (a cut), not both")
    kind = "map" if energy is not None else ("cut" if at is not None else "path")
    chans = jq.check_channels(list(jq.DEFAULT_CHANNELS) if channels is None else (
        [c.strip() for c in channels.split(",")] if isinstance(channels, str) else list(channels)))
    source, _ = jq._source(input)
    kw = dict(energies=energies, temperature=float(temperature), fwhm=fwhm, shape=shape, qz=float(qz),
              omega_min=float(omega_min), form_factor=form_factor, cross_section=cross_section)
    if kind == "path":
        kw.update(path=path or jq.DEFAULT_PATH, npoints=int(npoints))
    elif kind == "map":
        kw.update(energy=float(energy), extent=extent, nplane=int(nplane))
    else:
        kw.update(at=str(at), G=tuple(int(g) for g in G))
    try:
        res = jq.compute(source, kind=kind, **kw)
    except ValueError as exc:
        if isinstance(exc, ArgumentValueError):
            raise
        raise ArgumentValueError(str(exc)) from None
    if outdir is not None:
        fm = ["png"] if formats is None else _formats_arg(formats, ("png", "pdf", "svg", "eps"))
        res.save(outdir, chans, fm)
    return res
