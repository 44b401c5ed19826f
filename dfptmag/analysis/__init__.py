"""Analysis: the kernels applied to QE's files for one user-level object.

- ``qrun``      one q-point directory (ψ, δψ per pattern, fildyn) → modes, cell integrals, fields,
                in named stages (see its module doc); the charge oracle against fildrho.
- ``bands``     a band path: per-q results stacked, the interpolated dispersion, branch tracking.
- ``snapshot``  real-space snapshots of one mode from a saved result (periodic amplitude ×
                Bloch phase on a supercell).

Reads with ``dfptmag.io``, computes with ``dfptmag.kernel``; writes nothing itself (see
``dfptmag.results``).
"""
