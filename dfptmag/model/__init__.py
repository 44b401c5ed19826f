"""A localized spin-degenerate level coupled to a thermal phonon bath by charge (u0) and spin
(u1) couplings (Shiranzaei, Kalhöfer and Fransson, J. Phys. Chem. Lett. 14, 5119 (2023), Eqs. 9-16;
docs/citing.md).

All energies in meV (the paper's parameters ε0 = 0.1, u0 = 0.01, c = 0.01 ... are read as meV;
the phonon velocity c is in meV per unit of the dimensionless wave number, see
:class:`dfptmag.model.core.Bath`). Moments are m = Tr(σ ρ) (electron spin, in units of μB per
electron spin, the same convention as the first-principles part).
"""
from .core import Bath, Level, Model, crossover_temperature  # noqa: F401  (public API)

__all__ = ["Bath", "Level", "Model", "crossover_temperature"]
