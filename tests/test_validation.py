"""End-to-end validation: studies run through the recorder and Parquet recover known indices.

Each test runs the whole chain a user runs: variations → design (SALib) bound to
the variations → :class:`~varirec.studies.design.DesignSchedule` → batched env driven by
:func:`~varirec.envs.drive_episodes` → :class:`~varirec.RecorderManager` → Parquet →
:func:`~varirec.analysis.tables.episode_table.episode_table` → estimator. Nothing is handed from
the env to the estimator except through the dataset.

- Ishigami (a=7, b=0.1) and Sobol G as one-step episodes, N = 2^13 Saltelli base
  samples: S1 and ST within 0.03 of the analytic values, and inside their 95 %
  bootstrap percentile intervals.
- A binary success with a known probability p(x): given-data first-order indices
  (equal-frequency binning) whose intervals cover the brute-force reference, null
  factors below the dummy threshold, and the noise share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import varirec as vr
from varirec.analysis.designs import sobol_design
from varirec.analysis.estimators.given_data import first_order_binning
from varirec.analysis.estimators.sobol import sobol_indices
from varirec.analysis.tables.episode_table import episode_table
from varirec.envs import (
    OneStepEnv,
    drive_episodes,
    ishigami_indices,
    ishigami_variations,
    make_ishigami_env,
    make_sobol_g_env,
    sobol_g_indices,
    sobol_g_variations,
)
from varirec.studies.design import DesignSchedule

N = 2**13
TOLERANCE = 0.03
G_COEFFICIENTS = (0.0, 0.5, 3.0, 9.0, 99.0, 99.0)


def _recorded_saltelli_outputs(
    env: OneStepEnv, variations: vr.VariationSet, root, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Run a Sobol study through the recorder; Y in Saltelli order, read back from Parquet."""
    design = sobol_design(variations, N, seed=seed)
    design.bind(variations)
    schedule = DesignSchedule(design, seed=seed, shuffle=True)  # rows run out of order
    with vr.RecorderManager(
        env.num_envs, variations=variations, output=root, seed=seed, schedule=schedule
    ) as manager:
        stats = drive_episodes(env, manager)
    assert stats.complete
    table = episode_table(root)
    schedule.check_complete(table.frame["sample_id"].astype(int))
    y = table.frame.groupby("sample_id")["return"].mean().sort_index()
    np.testing.assert_array_equal(y.index.to_numpy(), np.arange(design.num_rows))
    # The factor values in force (as-of join of the draws) are the design's values.
    rows = table.frame.set_index("sample_id").sort_index()
    for key in design.variations:
        want = design.values(key).reshape(design.num_rows, -1)
        cols = [c for c in table.factors if c == key or c.startswith(f"{key}[")]
        np.testing.assert_array_equal(rows[cols].to_numpy(), want)
    return y.to_numpy(), table.factors


def _check_against_analytic(result, exact: dict) -> None:
    for index in ("S1", "ST"):
        est, truth = getattr(result, index), exact[index]
        low, high = getattr(result, f"{index}_conf_low"), getattr(result, f"{index}_conf_high")
        np.testing.assert_allclose(est, truth, rtol=0, atol=TOLERANCE, err_msg=index)
        assert np.all((low <= truth) & (truth <= high)), (index, low, truth, high)


def test_ishigami_indices_recovered_through_parquet(tmp_path) -> None:
    env = make_ishigami_env(8192)
    y, factors = _recorded_saltelli_outputs(env, ishigami_variations(), tmp_path, seed=0)
    assert factors == ["x1", "x2", "x3"]
    result = sobol_indices(y, 3, second_order=False, num_resamples=1000, seed=0)
    _check_against_analytic(result, ishigami_indices(7.0, 0.1))


def test_sobol_g_indices_recovered_through_parquet(tmp_path) -> None:
    env = make_sobol_g_env(8192, G_COEFFICIENTS)
    variations = sobol_g_variations(G_COEFFICIENTS)
    y, factors = _recorded_saltelli_outputs(env, variations, tmp_path, seed=1)
    assert factors == [f"x[{j}]" for j in range(len(G_COEFFICIENTS))]
    result = sobol_indices(y, len(G_COEFFICIENTS), second_order=False, num_resamples=1000, seed=1)
    _check_against_analytic(result, sobol_g_indices(G_COEFFICIENTS))


# --------------------------------------------------------------------------------------
# A binary outcome with a known success probability
# --------------------------------------------------------------------------------------
# Inputs: x ~ U(0, 1); scene ∈ {kitchen, garage, yard}; level ∈ {0..4}; and two
# factors that do nothing: color ~ U(0, 1), shape ∈ {round, square}.
#   p = 0.1 + 0.25·x + 0.25·x·[scene = yard] + 0.15·[scene ≠ kitchen] + 0.03·level

SCENES = {"kitchen": 0.0, "garage": 1.0, "yard": 2.0}


def _p(x: np.ndarray) -> np.ndarray:
    """Success probability from columns (x, scene code, level, color, shape code)."""
    return (
        0.1
        + 0.25 * x[:, 0]
        + 0.25 * x[:, 0] * (x[:, 1] == 2)
        + 0.15 * (x[:, 1] != 0)
        + 0.03 * x[:, 2]
    )


def _reference() -> tuple[dict[str, float], float]:
    """S1 = Var(E[Y | X_i]) / Var(Y) by brute force over the full grid of p; noise share."""
    gx = (np.arange(20_000) + 0.5) / 20_000
    x, scene, level = np.meshgrid(gx, np.arange(3.0), np.arange(5.0), indexing="ij")
    grid = np.column_stack([x.ravel(), scene.ravel(), level.ravel()])
    P = _p(grid).reshape(x.shape)
    p_bar = P.mean()
    var_y = p_bar * (1 - p_bar)
    s1 = {
        "x": P.mean(axis=(1, 2)).var() / var_y,
        "scene": P.mean(axis=(0, 2)).var() / var_y,
        "level": P.mean(axis=(0, 1)).var() / var_y,
        "color": 0.0,
        "shape": 0.0,
    }
    return s1, 1.0 - P.var() / var_y


def _binary_variations() -> vr.VariationSet:
    def var(key: str, sampler: vr.SamplerCfg, column: int, lookup=None) -> vr.Variation:
        return vr.Variation(
            key, vr.VariationCfg(sampler=sampler), OneStepEnv.setter(column, lookup)
        )

    return vr.VariationSet(
        [
            var("x", vr.UniformCfg(low=0.0, high=1.0), 0),
            var("scene", vr.ChoiceCfg(choices=tuple(SCENES)), 1, SCENES),
            var("level", vr.IntegerCfg(low=0, high=4), 2),
            var("color", vr.UniformCfg(low=0.0, high=1.0), 3),
            var("shape", vr.ChoiceCfg(choices=("round", "square")), 4, {"round": 0, "square": 1}),
        ]
    )


def test_binary_success_given_data_indices_through_parquet(tmp_path) -> None:
    num_episodes = 60_000
    env = OneStepEnv(8192, lambda x: np.zeros(len(x)), 5, success_prob=_p)
    with vr.RecorderManager(
        8192, variations=_binary_variations(), output=tmp_path, seed=3
    ) as manager:
        assert drive_episodes(env, manager, num_episodes=num_episodes).episodes == num_episodes
    table = episode_table(tmp_path)
    assert table.factors == ["x", "scene", "level", "color", "shape"]
    assert table.categorical == ["scene", "shape"]
    y, valid = table.outcome("success")
    assert valid.all() and len(y) == num_episodes
    # The recorded success frequency matches p at the recorded factor values.
    codes = np.column_stack(
        [
            table.frame["x"],
            table.frame["scene"].map(SCENES).astype(float),
            table.frame["level"],
            table.frame["color"],
            np.zeros(num_episodes),
        ]
    )
    assert abs(y.mean() - _p(codes).mean()) < 3 * np.sqrt(0.25 / num_episodes)

    result = first_order_binning(
        table.frame[table.factors], y, seed=0, num_resamples=500, outcome="success"
    )
    reference, noise = _reference()
    frame = result.to_frame().set_index("factor")
    for name, truth in reference.items():
        low, high = frame.loc[name, "conf_low"], frame.loc[name, "conf_high"]
        assert low <= truth <= high, (name, low, truth, high)
    # Null factors: not significant (the lower interval bound does not clear the dummy
    # threshold); their intervals hold 0. (A null estimate itself exceeds the threshold,
    # the dummies' 95 % quantile, 5 % of the time by construction.)
    assert result.significant.tolist() == [True, True, True, False, False]
    for name in ("color", "shape"):
        assert frame.loc[name, "conf_low"] <= result.dummy_threshold
        assert frame.loc[name, "conf_low"] <= 0.0 <= frame.loc[name, "conf_high"]
        assert abs(frame.loc[name, "estimate"]) < 0.002
    assert result.noise_share_conf_low <= noise <= result.noise_share_conf_high
    # The binary outcome: most of Var(Y) is episode noise, as FACTS.md warns.
    assert noise > 0.7 and pd.notna(result.noise_share)
