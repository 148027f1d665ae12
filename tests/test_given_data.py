"""Given-data estimators: binning S1 vs exact references, dummies, noise share, SALib wrappers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from varirec.analysis.estimators.given_data import (
    default_num_bins,
    delta_indices,
    first_order_binning,
    given_data_indices,
    pawn_indices,
    rbd_fast_indices,
)

# --------------------------------------------------------------------------------------
# A binary outcome with a known success probability p(X)
# --------------------------------------------------------------------------------------
# x1 ∈ {0, 1, 2} and x2 ∈ {0..4} uniform, x3 ~ U(0, 1); x4, x5 and "scene" do nothing.
#   p = 0.15 + 0.2·[x1 = 2] + 0.025·x2 + 0.3·x3·[x1 >= 1]


def _p(x1: np.ndarray, x2: np.ndarray, x3: np.ndarray) -> np.ndarray:
    return 0.15 + 0.2 * (x1 == 2) + 0.025 * x2 + 0.3 * x3 * (x1 >= 1)


def _exact_reference() -> tuple[dict[str, float], float]:
    """Var(E[Y|X_i]) / Var(Y) per factor and the noise share, by brute force over p."""
    g3 = (np.arange(200_000) + 0.5) / 200_000  # midpoint rule on x3
    P = _p(
        np.arange(3)[:, None, None], np.arange(5)[None, :, None], g3[None, None, :]
    )  # p on the full (x1, x2, x3) grid
    p_bar = P.mean()
    var_y = p_bar * (1.0 - p_bar)  # Var of a Bernoulli(p(X)) outcome
    s1 = {
        "x1": P.mean(axis=(1, 2)).var() / var_y,
        "x2": P.mean(axis=(0, 2)).var() / var_y,
        "x3": P.mean(axis=(0, 1)).var() / var_y,
        "x4": 0.0,
        "x5": 0.0,
        "scene": 0.0,
    }
    return s1, 1.0 - P.var() / var_y


@pytest.fixture(scope="module")
def binary_study() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(2024)
    N = 20_000
    X = pd.DataFrame(
        {
            "x1": rng.integers(0, 3, N),
            "x2": rng.integers(0, 5, N),
            "x3": rng.random(N),
            "x4": rng.random(N),
            "x5": rng.normal(size=N),
            "scene": rng.choice(["kitchen", "garage", "lab"], N),
        }
    )
    p = _p(X["x1"].to_numpy(), X["x2"].to_numpy(), X["x3"].to_numpy())
    Y = (rng.random(N) < p).astype(float)
    return X, Y


def test_binary_outcome_matches_exact_reference(
    binary_study: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, Y = binary_study
    # 99 % intervals: the test checks six intervals and a noise share at once; at 95 %
    # it would fail for about half of all data seeds although each interval is exact
    # (checked over 60 seeds: miss rates 5-8 %, z-scores with SD 1.0).
    res = first_order_binning(X, Y, seed=0, conf_level=0.99, outcome="success")
    s1, noise = _exact_reference()
    truth = np.array([s1[name] for name in res.factor_names])
    assert np.all(res.conf_low <= truth) and np.all(truth <= res.conf_high), (
        res.to_frame(),
        truth,
    )
    np.testing.assert_allclose(res.estimate, truth, atol=0.015)
    assert res.significant.tolist() == [True, True, True, False, False, False]
    assert res.dummy_threshold is not None
    assert (res.significant == (res.conf_low > res.dummy_threshold)).all()
    assert np.all(res.estimate[3:] < res.dummy_threshold)
    # Noise share: 1 - Var(p(X)) / Var(Y), about 0.88 here.
    assert res.noise_share_conf_low <= noise <= res.noise_share_conf_high
    assert res.noise_share == pytest.approx(noise, abs=0.03)
    assert res.num_bins.tolist()[:2] == [3, 5] and res.num_bins[5] == 3
    assert any("binary outcome" in note for note in res.notes)


def test_noise_share_of_a_continuous_outcome() -> None:
    rng = np.random.default_rng(5)
    X = rng.random((8000, 4))
    sigma2 = 0.05
    Y = X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=np.sqrt(sigma2), size=8000)
    truth = sigma2 / (1.0 / 12 + 0.25 / 12 + sigma2)
    res = first_order_binning(X, Y, seed=1, num_resamples=300)
    assert res.significant.tolist() == [True, True, False, False]
    assert res.noise_share_conf_low <= truth <= res.noise_share_conf_high
    assert res.noise_share == pytest.approx(truth, abs=0.02)


def test_bias_correction_centres_null_factors_on_zero() -> None:
    rng = np.random.default_rng(1)
    X, Y = rng.random((3000, 6)), rng.random(3000)
    res = first_order_binning(X, Y, seed=2, num_resamples=100, num_dummies=400)
    M = default_num_bins(3000)
    # Without the correction the mean would be about (M - 1) / N = 0.005.
    assert abs(res.dummy_estimates.mean()) < 0.2 * (M - 1) / 3000
    assert not res.significant.any()
    assert res.noise_share == 1.0  # nothing explains anything


def test_default_num_bins_rule() -> None:
    assert [default_num_bins(n) for n in (100, 1000, 20_000, 10**7)] == [4, 6, 28, 48]


def test_rbd_fast_and_pawn_agree_on_ranking() -> None:
    rng = np.random.default_rng(3)
    X = rng.random((4000, 4))
    Y = 3.0 * X[:, 0] + 2.0 * X[:, 1] ** 2 + X[:, 2] + 0.1 * rng.normal(size=4000)
    binning = first_order_binning(X, Y, seed=0, num_resamples=100)
    rbd = rbd_fast_indices(X, Y, seed=0, num_resamples=20)
    pawn = pawn_indices(X, Y, seed=0)
    order = np.argsort(-binning.estimate)
    np.testing.assert_array_equal(np.argsort(-rbd.estimate), order)
    np.testing.assert_array_equal(np.argsort(-pawn.estimate), order)
    np.testing.assert_allclose(rbd.estimate, binning.estimate, atol=0.05)
    assert rbd.significant.tolist() == [True, True, True, False]
    # PAWN has no interval: a null factor beats the dummies' 95 % quantile about 1 time
    # in 20, so only the influential factors are pinned.
    assert pawn.significant[:3].all()
    assert set(pawn.extra) == {"pawn_minimum", "pawn_mean", "pawn_maximum", "pawn_cv"}
    assert rbd.index == "S1_rbd_fast" and pawn.index == "pawn_median"


def test_binning_is_unbiased_for_smooth_effects_a_bin_mean_alone_flattens() -> None:
    """Ishigami's x2 (S1 0.4424) and x1 of y = 3 x1 + x2² on U(-1, 1) (S1 0.9712): a mean
    per bin alone read 0.434 and 0.967 (a bias of 1/M² of the effect, larger than the
    interval); the slope within each bin takes it back."""
    from varirec.envs.analytic import ishigami

    x2, lin, covered = [], [], 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = rng.uniform(-np.pi, np.pi, (20_000, 3))
        res = first_order_binning(x, ishigami(x), seed=seed, num_resamples=100, num_dummies=0)
        x2.append(res.estimate[1])
        u = rng.uniform(-1, 1, (4000, 2))
        res = first_order_binning(u, 3 * u[:, 0] + u[:, 1] ** 2, seed=seed, num_resamples=100,
                                  num_dummies=0, noise_share=False)  # fmt: skip
        lin.append(res.estimate[0])
        covered += res.conf_low[0] <= 0.9712 <= res.conf_high[0]
    assert abs(np.mean(x2) - 0.4424) < 0.004
    assert abs(np.mean(lin) - 0.9712) < 0.002 and covered >= 2


def test_rbd_fast_gives_no_estimate_for_a_few_valued_factor() -> None:
    """y = x1 + scene, scene in {0, 1, 3} (weights 0.5, 0.3, 0.2): S1(scene) = 0.7947,
    which RBD-FAST puts at 0.77 on every seed (a step curve leaks past its harmonics)."""
    rng = np.random.default_rng(5)
    x1 = rng.random(5000)
    scene = rng.choice([0.0, 1.0, 3.0], 5000, p=[0.5, 0.3, 0.2])
    rbd = rbd_fast_indices(np.column_stack([x1, scene]), x1 + scene, seed=0, num_resamples=20)
    assert np.isfinite(rbd.estimate[0]) and np.isnan(rbd.estimate[1])
    assert not rbd.significant[1] and "x2" in rbd.not_estimated
    assert any("at most 20 distinct values" in note for note in rbd.notes)


def test_salib_wrappers_leave_the_global_rng_untouched() -> None:
    rng = np.random.default_rng(4)
    X = rng.random((600, 3))
    Y = X[:, 0] + 0.2 * rng.random(600)
    np.random.seed(99)  # noqa: NPY002 - the legacy global RNG is what we check
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    rbd_fast_indices(X, Y, seed=0, num_resamples=5)
    pawn_indices(X, Y, seed=0)
    delta_indices(X, Y, seed=0, num_resamples=3)
    first_order_binning(X, Y, seed=0, num_resamples=20)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_delta_refuses_binary_and_few_valued_outcomes() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((400, 2))
    with pytest.raises(
        ValueError, match=r'meaningless on a binary.*method="binning" or "rbd_fast"'
    ):
        delta_indices(X, (X[:, 0] > 0.5).astype(float))
    with pytest.raises(ValueError, match="got only 5 distinct values"):
        given_data_indices(X, np.floor(5 * X[:, 0]), method="delta")


def test_seed_zero_is_a_seed() -> None:
    rng = np.random.default_rng(6)
    X = rng.random((1000, 2))
    Y = X[:, 0] + rng.random(1000)
    first = first_order_binning(X, Y, seed=0, num_resamples=50)
    again = first_order_binning(X, Y, seed=0, num_resamples=50)
    other = first_order_binning(X, Y, seed=1, num_resamples=50)
    np.testing.assert_array_equal(first.conf_low, again.conf_low)
    assert first.dummy_threshold == again.dummy_threshold
    assert not np.array_equal(first.conf_low, other.conf_low)
    assert first.seed == 0


def test_input_errors() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((50, 2))
    Y = rng.random(50)
    bad = Y.copy()
    bad[[1, 7]] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN/inf value\(s\) at rows \[1, 7\]"):
        first_order_binning(X, bad)
    Xbad = X.copy()
    Xbad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"`X` column 'x2' must be finite.*rows \[3\]"):
        first_order_binning(Xbad, Y)
    with pytest.raises(ValueError, match="`X` must have one row per value of `Y` \\(49\\)"):
        first_order_binning(X, Y[:-1])
    frame = pd.DataFrame({"a": X[:, 0], "scene": ["s1", "s2"] * 25})
    with pytest.raises(TypeError, match="`X` column 'scene' must be numeric for pawn"):
        pawn_indices(frame, Y)
    with pytest.raises(ValueError, match="`method` must be one of"):
        given_data_indices(X, Y, method="hdmr")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`seed` must be an int"):
        first_order_binning(X, Y, seed="0")  # type: ignore[arg-type]


def test_dispatcher_and_no_dummies() -> None:
    rng = np.random.default_rng(8)
    X = rng.random((500, 2))
    res = given_data_indices(X, X[:, 0], method="binning", num_dummies=0, seed=0)
    assert res.significant is None and res.dummy_threshold is None
    assert any("no dummies" in note for note in res.notes)
    assert res.to_frame()["significant"].isna().all()


def test_binning_significance_rule_is_lower_bound_over_threshold(
    binary_study: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, Y = binary_study
    res = first_order_binning(X, Y, seed=3, num_resamples=100)
    assert res.dummy_threshold is not None
    assert (res.significant == (res.conf_low > res.dummy_threshold)).all()


def test_binning_without_resamples_gives_no_verdict() -> None:
    # A null factor with many more levels than M: its estimate alone beats the M-bin
    # dummies' quantile far more often than 1 - conf_level, so R=0 must not flag it.
    for seed in range(4):
        rng = np.random.default_rng(seed)
        frame = pd.DataFrame({"c": rng.integers(0, 150, 2000).astype(str), "x": rng.random(2000)})
        res = first_order_binning(frame, rng.random(2000), seed=seed, num_resamples=0)
        assert res.significant is None or not res.significant.any()
        assert res.dummy_threshold is not None
    assert any("no significance verdict" in note for note in res.notes)
    assert res.noise_share_conf_low is None and res.noise_share_conf_high is None


def test_noise_share_has_bounds_only_with_resamples() -> None:
    from varirec.analysis.estimators._given_data_inputs import _factor_table
    from varirec.analysis.estimators.binning import _bin_labels
    from varirec.analysis.estimators.noise_share import _noise_share

    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    table = _factor_table(rng.random((2000, 2)), None, 2000)
    labels, _, exact = zip(*(_bin_labels(v, False, 5) for v in table.values), strict=True)
    none = np.zeros(2, dtype=bool)
    notes: list[str] = []
    share, low, high = _noise_share(table, labels, exact, none, y, 0, 0.95, rng, notes)
    assert low is None and high is None and share == pytest.approx(1.0, abs=0.1)
    share, low, high = _noise_share(table, labels, exact, none, y, 50, 0.95, rng, notes)
    assert low <= share <= high <= 1.0  # pure noise: the share is clipped at 1


def test_blocked_dummies_and_resamples_equal_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunking the dummy factors (and resamples) changes memory, not results."""
    import varirec.analysis.estimators._bootstrap
    import varirec.analysis.estimators.binning

    rng = np.random.default_rng(11)
    X = rng.random((400, 3))
    Y = X[:, 0] + rng.random(400)
    whole = first_order_binning(X, Y, seed=4, num_resamples=30, num_dummies=25)
    # 3 dummies per block
    monkeypatch.setattr(varirec.analysis.estimators.binning, "_CHUNK_ELEMENTS", 3 * 400)
    # 7 resamples
    monkeypatch.setattr(varirec.analysis.estimators._bootstrap, "_CHUNK_ELEMENTS", 7 * 400)
    blocked = first_order_binning(X, Y, seed=4, num_resamples=30, num_dummies=25)
    np.testing.assert_array_equal(blocked.dummy_estimates, whole.dummy_estimates)
    assert blocked.dummy_threshold == whole.dummy_threshold
    np.testing.assert_allclose(blocked.conf_low, whole.conf_low, rtol=1e-12)


def test_pawn_skips_few_valued_factors_and_is_mirror_invariant() -> None:
    rng = np.random.default_rng(12)
    N = 3000
    X = np.column_stack([rng.random(N), rng.integers(0, 3, N), rng.random(N)])
    Y = X[:, 0] + 0.5 * (X[:, 1] == 2) + 0.3 * rng.normal(size=N)
    res = pawn_indices(X, Y, seed=0)
    assert np.isnan(res.estimate[1]) and not res.significant[1]
    assert np.isnan(res.extra["pawn_maximum"][1])
    assert np.isfinite(res.estimate[[0, 2]]).all() and res.significant[0]
    assert any("x2" in note and 'method="binning"' in note for note in res.notes)
    # A continuous factor's index does not depend on its direction: only the single
    # top row (left out of every half-open slice) changes.
    mirrored = X.max(axis=0) + X.min(axis=0) - X
    res_m = pawn_indices(mirrored, Y, seed=0)
    np.testing.assert_allclose(res_m.estimate[[0, 2]], res.estimate[[0, 2]], atol=0.01)
    assert np.isnan(res_m.estimate[1])


def test_delta_seed_is_reproducible_whatever_the_global_seed() -> None:
    rng = np.random.default_rng(13)
    X = rng.random((300, 2))
    Y = X[:, 0] + 0.2 * rng.random(300)
    np.random.seed(1)  # noqa: NPY002 - SALib's delta reseeds the legacy global RNG
    first = delta_indices(X, Y, seed=0, num_resamples=5)
    np.random.seed(2)  # noqa: NPY002
    again = delta_indices(X, Y, seed=0, num_resamples=5)
    other = delta_indices(X, Y, seed=1, num_resamples=5)
    np.testing.assert_array_equal(first.conf, again.conf)
    assert not np.array_equal(first.conf, other.conf)
    assert first.seed == 0 and other.seed == 1


def test_rbd_fast_names_its_bias_on_a_step_of_a_0_1_outcome() -> None:
    """success = x1 < 0.5: S1 is 1, RBD-FAST's 10 harmonics hold (8/pi^2) * sum of 1/k^2
    over the odd k < 10 of it, 0.9596, with an interval far narrower than the gap."""
    rng = np.random.default_rng(0)
    x = rng.random((8000, 2))
    res = rbd_fast_indices(x, (x[:, 0] < 0.5) * 1.0, seed=0, num_resamples=50)
    truncated = 8 / np.pi**2 * sum(1 / k**2 for k in (1, 3, 5, 7, 9))
    assert res.estimate[0] == pytest.approx(truncated, abs=0.005) and res.conf_high[0] < 0.97
    assert any("its S1 reads low (0.96 where it is 1" in note for note in res.notes)
    smooth = rbd_fast_indices(x, x[:, 0], seed=0, num_resamples=50)
    assert not any("reads low" in note for note in smooth.notes)
