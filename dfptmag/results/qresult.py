"""The analysis of one q-run (:func:`dfptmag.analysis.qrun.analyze_qrun`) as a typed object.

Every quantity is an attribute with its unit and shape documented here; the q-run file's group
(:mod:`dfptmag.results.qfile`) stores the same names. The object is also a mapping of the
quantities that are present (``r["pattern_field"]``, ``"frequency_ry" in r``, ``dict(r)``), the
form every writer and plot takes, so scripts written against the mapping keep working. A
quantity that was not computed (the field without ``realspace``, the modes of a q-run with only
some patterns) is ``None`` as an attribute and absent from the mapping.

Shapes: npat patterns, nmode = 3 nat modes, (n1, n2, n3) the FFT grid; the four components
[δn, δm_x, δm_y, δm_z] are paper Eq. 2's Pauli decomposition (charge in electrons, magnetization
in μB, both per cell for cell integrals and per bohr³ for fields).
"""
from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping

import numpy as np


@dataclasses.dataclass(eq=False)
class QRunResult(MutableMapping):
    """One q-run's analysis: the run's geometry, paper Eq. 1 per pattern, the charge oracle,
    and (with all patterns) the modes and their RMS magnetization (paper Eq. 3); ``None`` where
    not computed. Also a mapping of the quantities present (see the module docstring)."""

    # -- the run ------------------------------------------------------------------------------
    qe_version: str | None = None               # as ph.x's output names it: 6.7MaX, 7.4.1, ...
    q_tpiba: np.ndarray | None = None           # (3,) q in 2π/alat
    q_crystal: np.ndarray | None = None         # (3,) q in reciprocal-lattice units
    alat_bohr: float | None = None
    cell_bohr: np.ndarray | None = None         # (3, 3) rows a_i
    omega_bohr3: float | None = None            # cell volume
    symbols: list | None = None                 # (nat,)
    positions_bohr: np.ndarray | None = None    # (nat, 3) Cartesian
    masses_amu: np.ndarray | None = None        # (nat,)
    nocc: int | None = None                     # occupied bands (spinors)
    nk: int | None = None                       # k-points of the Brillouin-zone sum
    fft_grid: np.ndarray | None = None          # (3,) n1, n2, n3
    # -- paper Eq. 1 per displacement pattern ---------------------------------------------------
    pattern_index: np.ndarray | None = None     # (npat,) ph.x's pattern numbers, 1-based
    pattern_vectors: np.ndarray | None = None   # (npat, nmode) ph.x's pattern displacements
    pattern_matrix: np.ndarray | None = None    # (npat, 2, 2) cell integral of δñ^{σσ'}
    pattern_cell_integral: np.ndarray | None = None   # (npat, 4) Pauli components of it
    object: str | None = None                   # what the amplitude is (one-sided, paper Eq. 1)
    input_notes: list | None = None             # notes on the input (checksums, layouts)
    pattern_field: np.ndarray | None = None     # (npat, 4, n1, n2, n3) per bohr³, with realspace
    cell_average_vs_g0: float | None = None     # |cell average of the field × Ω − cell integral|
    # -- the charge oracle against ph.x's fildrho (2 Tr δñ = δρ) -------------------------------
    drho_relative_error: np.ndarray | None = None      # (npat,) on the FFT grid
    drho_g0_relative_error: np.ndarray | None = None   # (npat,) at G = 0
    drho_probe_miller: np.ndarray | None = None  # (nprobe, 3) fildrho's largest Fourier components,
                                                 # where the oracle is measured without the field
    charge_tolerance: float | None = None
    charge_check: str | None = None             # passed / failed / not checked, in words
    modes_missing_reason: str | None = None     # why there are no modes (e.g. patterns missing)
    # -- modes (all patterns present) ---------------------------------------------------------
    dynmat_imag_removed: float | None = None    # relative imaginary part removed at q = Γ
    dynmat_cartesian: np.ndarray | None = None  # (nmode, nmode) Ry/bohr², from fildyn's patterns
    frequency_ry: np.ndarray | None = None      # (nmode,) ascending; negative = imaginary
    eigenvector: np.ndarray | None = None       # (nmode, nat, 3) mass-weighted, normalized
    displacement_bohr: np.ndarray | None = None  # (nmode, nat, 3) at the chosen amplitude
    amplitude: str | None = None                # zero-point, thermal, fixed
    amplitude_bohr: float | None = None         # the fixed amplitude's largest displacement
    degenerate_group: np.ndarray | None = None  # (nmode,) modes within the tolerance share one
    degeneracy_tol_cm1: float | None = None
    mode_cell_integral: np.ndarray | None = None     # (nmode, 4) at the mode's amplitude
    mode_rms: np.ndarray | None = None               # (nmode, 4) paper Eq. 3
    mode_rms_inplane: np.ndarray | None = None       # (nmode,) |δm_x, δm_y| RMS, μB
    mode_rms_outofplane: np.ndarray | None = None    # (nmode,) |δm_z| RMS, μB
    mode_rms_subspace: np.ndarray | None = None      # (nmode, 4) over degenerate subspaces
    mode_coefficients: np.ndarray | None = None      # (nmode, npat) modes in the patterns' basis
    fildyn_freq_cm1: np.ndarray | None = None        # (nmode,) ph.x's own frequencies (oracle)
    # -- the time-odd response (with empty states; dfptmag.analysis.timeodd) -------------------
    time_odd_pattern_cell_integral: np.ndarray | None = None  # (npat, 4) ∫ X_q per bohr per Ry
    time_odd_pattern_per_velocity: np.ndarray | None = None   # (npat, 3) δm_odd per unit velocity, μB per (m/s)
    time_odd_pattern_field: np.ndarray | None = None          # (npat, 4, n1, n2, n3) X_q per bohr³ per Ry
    time_odd_mode_cell_integral: np.ndarray | None = None     # (nmode, 3) peak δm_odd at ω_ν, U_ν; μB
    time_odd_mode_rms_inplane: np.ndarray | None = None       # (nmode,) μB per cell
    time_odd_mode_rms_outofplane: np.ndarray | None = None    # (nmode,) μB per cell
    time_odd_residual_norm: np.ndarray | None = None          # (npat,) δψ outside the empty states
    time_odd_completeness_error: np.ndarray | None = None     # (npat,) unit-weight sum vs Eq. 1, G = 0
    time_odd_settings: dict | None = None       # empty states, closure, gap (Ry)
    # -- bookkeeping --------------------------------------------------------------------------
    timing_s: dict | None = None                # wall seconds per analysis stage

    # the mapping of the present quantities
    def __getitem__(self, key: str):
        value = getattr(self, key, None) if key in _NAMES else None
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value) -> None:
        if key not in _NAMES:
            raise KeyError(f"{key!r} is not a quantity of a q-run's analysis (QRunResult)")
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        self[key]                                  # KeyError when absent
        setattr(self, key, None)

    def __iter__(self):
        return (name for name in _NAMES if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"QRunResult(q_crystal={self.q_crystal}, patterns={self.pattern_index}, {len(self)} quantities)"


_NAMES = tuple(f.name for f in dataclasses.fields(QRunResult))
