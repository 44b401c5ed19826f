"""The Python API takes the command line's names and value forms and rejects bad arguments with
a clear TypeError/ValueError. Uses the tiny run's result file (QE, cached)."""
import numpy as np
import pytest



@pytest.fixture(scope="module")
def result_file(analyzed, tmp_path_factory):
    from dfptmag.results import qfile
    return qfile.write(tmp_path_factory.mktemp("apiargs") / "res.h5", analyzed)


def test_api_module_reachable_from_package():
    import dfptmag
    assert dfptmag.api.Result is not None and "Result" in dfptmag.api.__doc__ + dir(dfptmag.api).__repr__()
    assert dfptmag.api.QPoint.snapshot.__doc__ and "time" in dfptmag.api.QPoint.snapshot.__doc__
    for f in ("to_pymatgen", "to_phonopy", "save_figures"):
        assert len(getattr(dfptmag.api.Bands, f).__doc__) > 60


def test_q_labels_in_every_spelling(result_file):
    import dfptmag
    res = dfptmag.load(result_file)
    assert set(res.labels) == {"K", "-K"}
    for s in ("-K", "K'", "Kp"):
        assert res[s] is res["-K"]
    with pytest.raises(KeyError, match="no q-point 'M'"):
        res["M"]
    with pytest.raises(TypeError, match="q label must be a string"):
        res[1]


def test_snapshot_argument_forms(result_file, tmp_path):
    import dfptmag
    k = dfptmag.load(result_file)["K"]
    a = k.snapshot(mode=1, cells="2x2", time=0.25, formats="xsf", outdir=tmp_path / "a")
    b = k.snapshot(mode=1, cells=(2, 2), time=0.25, formats=["xsf"], outdir=tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 4
    assert all(p.name.endswith(".xsf") and "t0.250" in p.name for p in a)
    assert a[0].read_text() == b[0].read_text()
    with pytest.raises(TypeError, match="mode must be an integer"):
        k.field(mode=1.5)
    with pytest.raises(ValueError, match="mode must be ≥ 1"):
        k.field(mode=0)
    with pytest.raises(ValueError, match=r"mode 99 out of range 1\.\.9"):
        k.field(mode=99)
    with pytest.raises(ValueError, match="exactly one of mode"):
        k.field()
    with pytest.raises(ValueError, match="cells must look like"):
        k.snapshot(mode=1, cells="4by4")
    with pytest.raises(TypeError, match="cells must be"):
        k.snapshot(mode=1, cells=4)
    with pytest.raises(ValueError, match="formats 'png,xyz'"):
        k.snapshot(mode=1, formats="png,xyz")
    with pytest.raises(TypeError, match="time must be a number"):
        k.snapshot(mode=1, time="0.25")
    with pytest.raises(TypeError, match="unexpected keyword argument 't'"):
        k.snapshot(mode=1, t=0.25)
    assert np.array_equal(k.field(mode=np.int64(2)), k.field(mode=2))
