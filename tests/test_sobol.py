"""sobol_indices: equal to SALib's point estimates, sound intervals, strict inputs."""

from __future__ import annotations

import numpy as np
import pytest
from SALib.analyze import sobol as salib_sobol
from SALib.sample import sobol as salib_sample

import varirec.analysis.estimators._bootstrap
import varirec.analysis.estimators.sobol
from varirec.analysis.estimators.sobol import sobol_indices
from varirec.envs.analytic import ishigami, ishigami_indices, sobol_g, sobol_g_indices


def _problem(D: int, low: float = 0.0, high: float = 1.0) -> dict:
    return {"num_vars": D, "names": [f"x{j + 1}" for j in range(D)], "bounds": [[low, high]] * D}


def _model(X: np.ndarray) -> np.ndarray:
    """A non-additive model with unequal effects and an interaction."""
    D = X.shape[1]
    w = 1.0 / (1.0 + np.arange(D))
    return np.sin(2 * np.pi * X) @ w + 2.0 * X[:, 0] * X[:, 1 % D] + 5.0  # offset on purpose


@pytest.mark.parametrize("second_order", [True, False])
@pytest.mark.parametrize(("D", "N"), [(2, 64), (5, 256), (9, 512)])
def test_point_estimates_equal_salib(D: int, N: int, second_order: bool) -> None:
    problem = _problem(D)
    X = salib_sample.sample(problem, N, calc_second_order=second_order, seed=D)
    Y = _model(X)
    ours = sobol_indices(Y, D, second_order=second_order, num_resamples=20, seed=1)
    ref = salib_sobol.analyze(problem, Y, calc_second_order=second_order, num_resamples=2, seed=1)
    np.testing.assert_allclose(ours.S1, ref["S1"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.ST, ref["ST"], rtol=0, atol=1e-10)
    if second_order:
        upper = np.triu_indices(D, k=1)
        np.testing.assert_allclose(ours.S2[upper], ref["S2"][upper], rtol=0, atol=1e-10)
        assert np.isnan(ours.S2[np.tril_indices(D)]).all()
    else:
        assert ours.S2 is None and not ours.second_order
    assert ours.num_samples == N and ours.num_evaluations == Y.size


def test_intervals_agree_with_salib_within_bootstrap_error() -> None:
    problem = _problem(3, -np.pi, np.pi)
    X = salib_sample.sample(problem, 2048, calc_second_order=True, seed=2)
    Y = ishigami(X)
    ours = sobol_indices(Y, 3, second_order=True, num_resamples=1000, seed=3)
    ref = salib_sobol.analyze(problem, Y, calc_second_order=True, num_resamples=1000, seed=4)
    # Z×SD from 1000 resamples has a relative error of about 1/sqrt(2000) ≈ 2 %.
    np.testing.assert_allclose(ours.S1_conf, ref["S1_conf"], rtol=0.12)
    np.testing.assert_allclose(ours.ST_conf, ref["ST_conf"], rtol=0.12)
    upper = np.triu_indices(3, k=1)
    np.testing.assert_allclose(ours.S2_conf[upper], ref["S2_conf"][upper], rtol=0.12)
    # Percentile bounds bracket the estimate and span about 2×conf.
    assert np.all(ours.S1_conf_low < ours.S1) and np.all(ours.S1_conf_high > ours.S1)
    np.testing.assert_allclose(ours.S1_conf_high - ours.S1_conf_low, 2 * ours.S1_conf, rtol=0.15)


def test_ishigami_matches_analytic_and_intervals_cover() -> None:
    problem = _problem(3, -np.pi, np.pi)
    X = salib_sample.sample(problem, 2**13, calc_second_order=True, seed=5)
    res = sobol_indices(ishigami(X), 3, second_order=True, num_resamples=500, seed=0)
    truth = ishigami_indices(7.0, 0.1)
    for index in ("S1", "ST"):
        est = getattr(res, index)
        np.testing.assert_allclose(est, truth[index], atol=0.03)
        assert np.all(getattr(res, f"{index}_conf_low") <= truth[index])
        assert np.all(truth[index] <= getattr(res, f"{index}_conf_high"))
    upper = np.triu_indices(3, k=1)
    assert np.all(res.S2_conf_low[upper] <= truth["S2"][upper])
    assert np.all(truth["S2"][upper] <= res.S2_conf_high[upper])


def test_sobol_g_matches_analytic_and_intervals_cover() -> None:
    a = np.array([0.0, 1.0, 4.5, 9.0, 99.0, 99.0])
    problem = _problem(a.size)
    X = salib_sample.sample(problem, 2**13, calc_second_order=False, seed=6)
    res = sobol_indices(sobol_g(X, a), a.size, second_order=False, num_resamples=500, seed=0)
    truth = sobol_g_indices(a)
    for index in ("S1", "ST"):
        np.testing.assert_allclose(getattr(res, index), truth[index], atol=0.03)
        assert np.all(getattr(res, f"{index}_conf_low") <= truth[index])
        assert np.all(truth[index] <= getattr(res, f"{index}_conf_high"))


def test_nan_in_y_is_refused_with_rows() -> None:
    Y = np.arange(4 * 5, dtype=float)
    Y[[3, 10]] = np.nan
    Y[12] = np.inf
    with pytest.raises(ValueError, match=r"3 NaN/inf value\(s\) at rows \[3, 10, 12\]"):
        sobol_indices(Y, 3, second_order=False)


@pytest.mark.parametrize(
    ("size", "second_order", "match"),
    [
        (41, False, r"N·\(D\+2\) = N·5 rows for D=3 .*got 41; check num_factors"),
        (45, True, r"N·\(2D\+2\) = N·8 rows for D=3 .*got 45; 45 rows fit second_order=False"),
        (16, False, r"got 16; 16 rows fit second_order=True \(N=2\)"),
    ],
)
def test_layout_length_errors_name_expected_lengths(
    size: int, second_order: bool, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        sobol_indices(np.arange(size, dtype=float), 3, second_order=second_order)


def test_second_order_is_explicit() -> None:
    with pytest.raises(TypeError):
        sobol_indices(np.arange(40.0), 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="`second_order` must be a bool, got 1"):
        sobol_indices(np.arange(40.0), 3, second_order=1)  # type: ignore[arg-type]


def test_constant_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="`Y` must vary"):
        sobol_indices(np.ones(50), 3, second_order=False)


def _ishigami_y(N: int = 256) -> np.ndarray:
    X = salib_sample.sample(_problem(3, -np.pi, np.pi), N, calc_second_order=False, seed=7)
    return ishigami(X)


def test_seed_zero_is_a_seed() -> None:
    Y = _ishigami_y()
    first = sobol_indices(Y, 3, second_order=False, num_resamples=50, seed=0)
    again = sobol_indices(Y, 3, second_order=False, num_resamples=50, seed=0)
    other = sobol_indices(Y, 3, second_order=False, num_resamples=50, seed=1)
    np.testing.assert_array_equal(first.S1_conf, again.S1_conf)
    np.testing.assert_array_equal(first.ST_conf_low, again.ST_conf_low)
    assert not np.array_equal(first.S1_conf, other.S1_conf)
    assert first.seed == 0 and other.seed == 1


def test_generator_seed_and_global_rng_untouched() -> None:
    Y = _ishigami_y()
    np.random.seed(12345)  # noqa: NPY002 - the legacy global RNG is what we check
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    a = sobol_indices(Y, 3, second_order=False, num_resamples=30, seed=np.random.default_rng(9))
    b = sobol_indices(Y, 3, second_order=False, num_resamples=30, seed=np.random.default_rng(9))
    sobol_indices(Y, 3, second_order=False, num_resamples=30)  # seed=None: fresh entropy
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.testing.assert_array_equal(a.S1_conf, b.S1_conf)
    assert a.seed is None


def test_blocked_bootstrap_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunking over resamples (and pairs) changes memory, not results."""
    problem = _problem(4)
    Y = _model(salib_sample.sample(problem, 128, calc_second_order=True, seed=8))
    whole = sobol_indices(Y, 4, second_order=True, num_resamples=40, seed=2)
    # 2 resamples per block
    monkeypatch.setattr(varirec.analysis.estimators._bootstrap, "_CHUNK_ELEMENTS", 300)
    # 2 pairs per block
    monkeypatch.setattr(varirec.analysis.estimators.sobol, "_CHUNK_ELEMENTS", 300)
    blocked = sobol_indices(Y, 4, second_order=True, num_resamples=40, seed=2)
    np.testing.assert_allclose(blocked.S1_conf, whole.S1_conf, rtol=1e-12)
    np.testing.assert_allclose(blocked.S2_conf_low, whole.S2_conf_low, rtol=1e-12)


def test_no_resamples_gives_nan_intervals_and_a_note() -> None:
    res = sobol_indices(_ishigami_y(), 3, second_order=False, num_resamples=0)
    assert np.isnan(res.S1_conf).all() and np.isnan(res.ST_conf_high).all()
    assert any("num_resamples=0" in note for note in res.notes)
    with pytest.raises(ValueError, match=r"`num_resamples` must be 0 .* or at least 2"):
        sobol_indices(_ishigami_y(), 3, second_order=False, num_resamples=1)


def test_argument_errors() -> None:
    Y = _ishigami_y(8)
    for level in (95, 0.2):
        with pytest.raises(ValueError, match=r"`conf_level` must be a number from 0\.5 up to"):
            sobol_indices(Y, 3, second_order=False, conf_level=level)
    with pytest.raises(ValueError, match="`factor_names` must have 3 names"):
        sobol_indices(Y, 3, second_order=False, factor_names=["a", "b"])
    with pytest.raises(ValueError, match="`num_factors` must be an int >= 1"):
        sobol_indices(Y, 0, second_order=False)
    with pytest.raises(ValueError, match="`Y` must be a 1-D array"):
        sobol_indices(np.ones((10, 2)), 3, second_order=False)


def test_single_column_y_is_accepted() -> None:
    Y = _ishigami_y()
    flat = sobol_indices(Y, 3, second_order=False, num_resamples=0)
    column = sobol_indices(Y[:, np.newaxis], 3, second_order=False, num_resamples=0)
    np.testing.assert_array_equal(column.S1, flat.S1)
    with pytest.raises(ValueError, match=r"N·\(D\+2\) = N·5 rows for D=3 .*got 41"):
        sobol_indices(np.arange(41.0)[:, np.newaxis], 3, second_order=False)
