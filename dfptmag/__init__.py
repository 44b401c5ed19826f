"""dfptmag: phonon-induced magnetization from Quantum ESPRESSO DFPT runs.

The object computed throughout is the *one-sided* first-order charge-spin density
matrix of paper Eq. 1, δñ^{σσ'}(r) = Σ_k w_k Σ_i u^{σ'}_{ki}(r)* δu^{σ}_{ki}(r)
(ψ* δψ only).  In the full static response the time-reversed partner term cancels
the magnetization exactly and doubles the charge; every output says so.
"""

__version__ = "0.1.0"

ONE_SIDED_NOTE = (
    "one-sided amplitude of paper Eq. 1 (sum of u* du over occupied states only); "
    "the full static response adds the time-reversed partner, which doubles the charge "
    "and cancels the magnetization exactly"
)
