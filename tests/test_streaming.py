"""The streamed analysis (sticks/planes FFT, δψ in ph.x's order from the memory maps, in-place
Pauli decomposition) against a plain re-implementation of Eq. 1 on the real tiny run: ψ and δψ
in the collected plane-wave order, one full-box inverse FFT per band and pattern, the 2×2
product summed band by band. Results must agree to 1e-12 of each pattern component's own
maximum (measured ≤ 4e-14; 3e-16 of the largest component)."""
import numpy as np
import pytest
import scipy.fft

from dfptmag.io.planewaves import internal_order, match_miller
from dfptmag.io.qe_buffers import open_buffer
from dfptmag.io.qe_phsave import read_patterns
from dfptmag.io.qe_wfc import read_wfc
from dfptmag.io.qe_xml import read_data_file_schema
from dfptmag.kernel.pauli import pauli_from_matrix
from dfptmag.io.qrun_dir import locate

pytestmark = pytest.mark.qe


def _reference(qdir):
    """Eq. 1 the slow, obvious way (nothing shared with the streamed kernels but the readers)."""
    f = locate(qdir)
    x = read_data_file_schema(f.xml)
    nocc = int(round(x.nelec))
    pats = read_patterns(f.patterns_xml)
    nks = len(x.xk)
    nksq = nks // 2
    n1, n2, n3 = shape = tuple(x.fft_grid)
    irreps = sorted(f.captures)
    first = {irr: sum(pats.irreps.count(j) for j in sorted(set(pats.irreps)) if j < irr) for irr in irreps}
    bufs = {irr: open_buffer(f.captures[irr]["dwf"], x.nbnd, 2, x.npwx, pats.irreps.count(irr) * nksq)
            for irr in irreps}
    mus = [(first[irr] + ip, irr, ip) for irr in irreps for ip in range(pats.irreps.count(irr))]
    mus.sort()
    g0 = np.zeros((len(mus), 2, 2), complex)
    field = np.zeros((len(mus), 2, 2) + shape, complex)

    def to_r(c, miller):
        box = np.zeros(c.shape[:-1] + shape, complex)
        box[..., miller[:, 0] % n1, miller[:, 1] % n2, miller[:, 2] % n3] = c
        return scipy.fft.ifftn(box, axes=(-3, -2, -1)) * (n1 * n2 * n3 / np.sqrt(x.omega))

    for ik in range(nksq):
        wk = read_wfc(f.wfc_dir / f"wfc{2 * ik + 1}.dat", nbnd=nocc)
        wq = read_wfc(f.wfc_dir / f"wfc{2 * ik + 2}.dat", nbnd=nocc)
        perm_q = internal_order(wq.miller, wq.xk / x.tpiba, x.bg)
        i_k, i_q = match_miller(wk.miller, wq.miller)
        u = to_r(wk.coeffs, wk.miller)
        for n, (_mu, irr, ip) in enumerate(mus):
            rec = np.asarray(bufs[irr][ip * nksq + ik])[:nocc, :, :wq.npw]
            d = np.empty_like(rec)
            d[..., perm_q] = rec                                  # collected order of k+q
            for i in range(nocc):
                g0[n] += x.wk[2 * ik] * np.einsum("sg,tg->st", d[i][:, i_q], wk.coeffs[i][:, i_k].conj())
                du = to_r(d[i], wq.miller)
                field[n] += x.wk[2 * ik] * du[:, None] * u[i][None, :].conj()
    return pauli_from_matrix(g0), pauli_from_matrix(field)


def test_streamed_analysis_equals_plain_reference(tiny_run, analyzed_run):
    _, dirs = tiny_run
    ref_ci, ref_field = _reference(dirs["K"])
    r = analyzed_run["K"]
    assert r["pattern_field"].shape == ref_field.shape
    # relative to each pattern's own scale, per component
    for n in range(ref_field.shape[0]):
        for a in range(4):
            scale = np.abs(ref_field[n, a]).max()
            assert np.abs(r["pattern_field"][n, a] - ref_field[n, a]).max() <= 1e-12 * scale, (n, a)
        assert np.abs(r["pattern_cell_integral"][n] - ref_ci[n]).max() <= 1e-12 * np.abs(ref_ci[n]).max(), n
