"""HSIC target sensitivity: against a direct O(N²) computation, calibrated p-values,
and the binary logistic case recorded through Parquet, analysed by every method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

import varirec as vr
from varirec.analysis import analyze
from varirec.analysis.estimators.hsic import hsic_target_indices
from varirec.envs import OneStepEnv, drive_episodes


def _direct_hsic(X: pd.DataFrame, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSIC and R2-HSIC from the full N×N Gram matrices (V-statistics)."""
    N = z.size
    H = np.eye(N) - 1.0 / N
    Lc = H @ (z[:, None] == z[None, :]).astype(float) @ H
    hsic, r2 = [], []
    for name in X.columns:
        col = X[name]
        if not pd.api.types.is_numeric_dtype(col):
            K = (col.to_numpy()[:, None] == col.to_numpy()[None, :]).astype(float)
        else:
            u = rankdata(col) / N
            K = np.exp(-((u[:, None] - u[None, :]) ** 2) / (2.0 * u.std() ** 2))
        Kc = H @ K @ H
        hxz = np.sum(Kc * Lc) / N**2
        hsic.append(hxz)
        r2.append(hxz / np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc) / N**4))
    return np.array(hsic), np.array(r2)


def test_matches_direct_gram_matrix_computation() -> None:
    rng = np.random.default_rng(0)
    N = 600
    X = pd.DataFrame(
        {
            "a": rng.random(N),
            "b": rng.normal(size=N),
            "scene": rng.choice(["lab", "kitchen", "garage"], N),
        }
    )
    fail = rng.random(N) < 0.1 + 0.4 * (X["a"] > 0.7) + 0.2 * (X["scene"] == "lab")
    res = hsic_target_indices(X, fail, seed=0, num_permutations=0)
    hsic, r2 = _direct_hsic(X, fail.astype(float).to_numpy())
    # Binning the ranks on 512 points perturbs the Gaussian kernel by < 1e-5 of its
    # range; HSIC of a weak factor is a small difference, so compare relative to the
    # strongest factor.
    np.testing.assert_allclose(res.extra["HSIC"], hsic, rtol=0, atol=1e-3 * hsic.max())
    np.testing.assert_allclose(res.estimate, r2, rtol=0, atol=1e-3 * r2.max())
    np.testing.assert_allclose(res.estimate[2], r2[2], rtol=1e-9)  # exact kernel


def test_null_p_values_are_calibrated() -> None:
    rejections = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        X = rng.random((400, 2))
        fail = rng.random(400) < 0.3
        p = hsic_target_indices(X, fail, seed=seed, num_permutations=200).extra["p_value"]
        rejections.append(p < 0.05)
    rate = np.mean(rejections)
    assert 0.01 <= rate <= 0.10, rate  # 120 null tests at level 0.05


def test_threshold_target_and_errors() -> None:
    rng = np.random.default_rng(1)
    X = rng.random((2000, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=2000)
    res = hsic_target_indices(X, y, threshold=0.9, seed=0, num_permutations=100)
    assert res.significant.tolist()[0] is True
    assert any("target: Y > 0.9" in n for n in res.notes)
    with pytest.raises(ValueError, match="must be binary"):
        hsic_target_indices(X, y)
    with pytest.raises(ValueError, match="puts all 2000 rows on one side"):
        hsic_target_indices(X, y, threshold=10.0)


def _success_prob(x: np.ndarray) -> np.ndarray:
    """x0 threshold, x1 U-shape, x2·x3 interaction, x4 and x5 null."""
    logit = 2.0 * (x[:, 0] > 0.2) + 3.0 * x[:, 1] ** 2 + 4.0 * x[:, 2] * x[:, 3] - 1.5
    return 1.0 / (1.0 + np.exp(-logit))


def test_binary_logistic_case_every_method(tmp_path) -> None:
    env = OneStepEnv(1000, lambda x: x[:, 0], 6, success_prob=_success_prob)
    cfg = vr.VariationCfg(sampler=vr.UniformCfg(low=-1.0, high=1.0))
    variations = vr.VariationSet(vr.Variation(f"x{j}", cfg, OneStepEnv.setter(j)) for j in range(6))
    with vr.RecorderManager(env.num_envs, variations=variations, output=tmp_path, seed=2) as m:
        drive_episodes(env, m, num_episodes=20_000)
    verdicts = {}
    for method in ("knn", "hsic", "binning", "rbd_fast"):
        study = analyze(tmp_path, outcome="success", method=method, seed=0, num_resamples=200)
        frame = study.ranking().set_index("factor")
        verdicts[method] = frame["verdict"].to_dict()
        none = "no first-order effect" if method in ("binning", "rbd_fast") else "no effect"
        assert verdicts[method]["x4"] == verdicts[method]["x5"] == none, method
    # Only the total indices see the pure interaction of x2 and x3.
    assert all(verdicts["knn"][f"x{j}"] == "effect" for j in range(4))
    assert verdicts["binning"]["x2"] == verdicts["binning"]["x3"] == "no first-order effect"
    assert verdicts["hsic"]["x0"] == verdicts["hsic"]["x1"] == "effect"
