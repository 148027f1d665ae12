"""morris_indices: SALib's statistics, checked designs, seeds, untouched global RNG."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from SALib.analyze import morris as salib_morris
from SALib.sample import morris as morris_sample

from varirec.analysis.estimators.morris import morris_indices
from varirec.errors import DesignError


@pytest.fixture
def design() -> tuple[dict, np.ndarray, np.ndarray]:
    problem = {"num_vars": 4, "names": ["a", "b", "c", "d"], "bounds": [[0.0, 2.0]] * 4}
    X = morris_sample.sample(problem, 40, num_levels=4, seed=3)
    Y = 3.0 * X[:, 0] + X[:, 1] ** 2 + X[:, 1] * X[:, 2]  # d does nothing
    return problem, X, Y


def test_statistics_equal_salib(design: tuple[dict, np.ndarray, np.ndarray]) -> None:
    problem, X, Y = design
    ours = morris_indices(X, Y, problem, num_resamples=1000, seed=0)
    ref = salib_morris.analyze(copy.deepcopy(problem), X, Y, num_resamples=1000, seed=5)
    for key in ("mu", "mu_star", "sigma"):
        np.testing.assert_allclose(getattr(ours, key), ref[key], rtol=0, atol=1e-12)
    # Different resamples: the bootstrap SDs agree within bootstrap error.
    np.testing.assert_allclose(ours.mu_star_conf, ref["mu_star_conf"], rtol=0.15, atol=1e-12)
    assert ours.mu_star[3] == 0.0 and ours.sigma[3] == 0.0
    assert ours.mu_star[0] == pytest.approx(3.0 * 2.0)  # effect per unit of normalized range
    assert ours.num_samples == 40 and ours.num_levels == 4
    np.testing.assert_array_equal(
        ours.mu_star_conf_low, np.clip(ours.mu_star - ours.mu_star_conf, 0, None)
    )


def test_problem_is_not_mutated_and_bounds_work(
    design: tuple[dict, np.ndarray, np.ndarray],
) -> None:
    problem, X, Y = design
    snapshot = copy.deepcopy(problem)
    by_problem = morris_indices(X, Y, problem, seed=1, num_resamples=10)
    assert problem == snapshot
    by_bounds = morris_indices(
        X, Y, [[0.0, 2.0]] * 4, factor_names=["a", "b", "c", "d"], seed=1, num_resamples=10
    )
    np.testing.assert_array_equal(by_problem.mu_star, by_bounds.mu_star)
    np.testing.assert_array_equal(by_problem.mu_star_conf, by_bounds.mu_star_conf)
    assert by_bounds.factor_names == ("a", "b", "c", "d")


def test_seed_zero_is_a_seed_and_global_rng_untouched(
    design: tuple[dict, np.ndarray, np.ndarray],
) -> None:
    problem, X, Y = design
    np.random.seed(7)  # noqa: NPY002 - the legacy global RNG is what we check
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    first = morris_indices(X, Y, problem, seed=0, num_resamples=200)
    again = morris_indices(X, Y, problem, seed=0, num_resamples=200)
    other = morris_indices(X, Y, problem, seed=1, num_resamples=200)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.testing.assert_array_equal(first.mu_star_conf, again.mu_star_conf)
    assert not np.array_equal(first.mu_star_conf, other.mu_star_conf)


def test_design_errors(design: tuple[dict, np.ndarray, np.ndarray]) -> None:
    problem, X, Y = design
    with pytest.raises(DesignError, match="r >= 2 whole trajectories of D\\+1 = 5 rows, got 199"):
        morris_indices(X[:-1], Y[:-1], problem)
    shuffled = np.random.default_rng(0).permutation(X.shape[0])
    with pytest.raises(DesignError, match="each step moves exactly one factor"):
        morris_indices(X[shuffled], Y[shuffled], problem)
    assert issubclass(DesignError, ValueError)


def test_input_errors(design: tuple[dict, np.ndarray, np.ndarray]) -> None:
    problem, X, Y = design
    bad = Y.copy()
    bad[[4, 9]] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN/inf value\(s\) at rows \[4, 9\]"):
        morris_indices(X, bad, problem)
    with pytest.raises(ValueError, match="`Y` must have one value per row of `X` \\(200\\)"):
        morris_indices(X, Y[:-5], problem)
    with pytest.raises(ValueError, match="`X` must have shape"):
        morris_indices(X[:, :3], Y, problem)
    with pytest.raises(ValueError, match="`factor_names` must match the problem's names"):
        morris_indices(X, Y, problem, factor_names=["p", "q", "r", "s"])
    grouped = {**problem, "groups": ["g1", "g1", "g2", "g2"]}
    with pytest.raises(ValueError, match="must not define 'groups'"):
        morris_indices(X, Y, grouped)


def test_no_resamples(design: tuple[dict, np.ndarray, np.ndarray]) -> None:
    problem, X, Y = design
    res = morris_indices(X, Y, problem, num_resamples=0, seed=0)
    assert np.isnan(res.mu_star_conf).all()
    assert res.to_frame().query("index == 'mu_star'")["conf_low"].isna().all()


def test_nan_in_x_is_refused_with_rows(design: tuple[dict, np.ndarray, np.ndarray]) -> None:
    problem, X, Y = design
    bad = X.copy()
    bad[[2, 11], 1] = np.nan
    with pytest.raises(ValueError, match=r"`X` must be finite, got 2 NaN/inf value\(s\) at rows"):
        morris_indices(bad, Y, problem)
    with pytest.raises(TypeError, match="`X` must be numeric"):
        morris_indices(X.astype(str), Y, problem)


def test_salib_warnings_become_notes(
    design: tuple[dict, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    problem, X, Y = design
    original = salib_morris.analyze

    def warning_analyze(*args: object, **kwargs: object) -> object:
        import warnings

        warnings.warn("something odd", UserWarning, stacklevel=2)
        return original(*args, **kwargs)

    monkeypatch.setattr(salib_morris, "analyze", warning_analyze)
    res = morris_indices(X, Y, problem, seed=0, num_resamples=10)  # warnings are errors here
    assert "SALib: something odd" in res.notes


def test_a_rare_category_is_on_the_grid_and_its_effect_seen(tmp_path) -> None:
    # At the quantiles (i + 0.5) / L a Bernoulli(0.1) never drew 1: mu* 0, "no effect",
    # though it carried half the variance.
    import varirec as vr
    from varirec.analysis import run_study
    from varirec.analysis.study import analyze
    from varirec.envs.one_step import OneStepEnv

    cfgs = [vr.BernoulliCfg(p=0.1), vr.UniformCfg(low=0.0, high=1.0)]
    vs = vr.VariationSet(
        vr.Variation(k, vr.VariationCfg(sampler=c), OneStepEnv.setter(j))
        for j, (k, c) in enumerate(zip(("drop", "x"), cfgs, strict=True))
    )
    run_study(lambda n: OneStepEnv(n, lambda x: 10 * x[:, 0] + x[:, 1], 2), vs,
              method="morris", n=40, num_envs=128, output=tmp_path, seed=0,
              progress=False)  # fmt: skip
    ranking = analyze(tmp_path, outcome="return").ranking().set_index("factor")
    assert ranking.loc["drop", "estimate"] > ranking.loc["x", "estimate"] > 0
    assert ranking.loc["drop", "verdict"] == "effect"


def test_a_few_trajectories_get_no_verdict(tmp_path) -> None:
    """Two trajectories gave a linear factor a zero-width interval and "effect" (found by
    a CLI probe): a bootstrap over a handful of elementary effects shows no spread."""
    from varirec.analysis import analyze, run_study
    from varirec.analysis.study import FEW_TRAJECTORIES
    from varirec.envs import ishigami_variations, make_ishigami_env

    for n, root in ((2, tmp_path / "few"), (FEW_TRAJECTORIES, tmp_path / "enough")):
        run_study(make_ishigami_env, ishigami_variations(), method="morris", n=n, num_envs=64,
                  output=root, seed=0, progress=False)  # fmt: skip
    few = analyze(tmp_path / "few", outcome="return").ranking()
    assert (few["verdict"] == "no verdict: only 2 trajectories").all()
    enough = analyze(tmp_path / "enough", outcome="return").ranking()
    assert not enough["verdict"].str.startswith("no verdict").any()
