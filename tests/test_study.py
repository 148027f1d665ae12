"""analyze(): design-driven and given-data studies through the recorder and Parquet.

Truth: SALib's own analyze functions on the same numbers, and the analytic indices of
Y = x1 + 2 x2 + 0 x3 with x_i ~ U(0, 1): S1 = ST = (1/5, 4/5, 0).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from SALib.analyze import morris as salib_morris
from SALib.analyze import sobol as salib_sobol

import varirec as vr
from varirec.analysis import run_study
from varirec.analysis.designs import morris_design, sobol_design
from varirec.analysis.reports.report import write_report
from varirec.analysis.study import analyze
from varirec.recording.manager import RecorderManager
from varirec.studies.design import DesignSchedule

COEF = np.array([1.0, 2.0, 0.0])


class Linear:
    """A one-step env: reward = COEF @ x, from the values the variations applied."""

    def __init__(self, num_envs: int) -> None:
        self.x = np.zeros((num_envs, 3))


def _variations() -> vr.VariationSet:
    def setter(j: int):
        def apply(env: Linear, ids: np.ndarray, values: np.ndarray) -> None:
            env.x[ids, j] = values

        return apply

    return vr.VariationSet(
        vr.Variation(f"x{j + 1}", vr.VariationCfg(sampler=vr.UniformCfg(low=0, high=1)), setter(j))
        for j in range(3)
    )


def _run(path, design=None, num_envs=64, episodes=None, replicates=1, skip_rows=()):
    variations = _variations()
    env = Linear(num_envs)
    schedule = None if design is None else DesignSchedule(design, replicates=replicates, seed=0)
    if design is not None:
        design.bind(variations)
    m = RecorderManager(num_envs, variations=variations, output=path, schedule=schedule, seed=0)
    m.reset(env, None)
    done = 0
    while (schedule is not None and not schedule.exhausted) or (
        episodes is not None and done < episodes
    ):
        reward = env.x @ COEF
        m.record_step(reward=reward, terminated=np.ones(num_envs, bool))
        finish = np.ones(num_envs, bool)
        for r in skip_rows:  # those rows' episodes never finish
            finish &= m.tracker.sample_id != r
        done += int(finish.sum())
        m.reset(env, np.flatnonzero(finish))
    m.record_step(reward=env.x @ COEF, terminated=np.ones(num_envs, bool))
    last = np.isin(m.tracker.sample_id, skip_rows, invert=True) & (m.tracker.sample_id >= 0)
    m.record_pre_reset(np.flatnonzero(last) if schedule else None)
    m.close()
    return schedule


def test_sobol_study_equals_salib_on_the_same_outputs(tmp_path) -> None:
    design = sobol_design(_variations(), 512, seed=0, second_order=True)
    _run(tmp_path, design, replicates=2)
    study = analyze(tmp_path, outcome="return", num_resamples=200, seed=1)
    assert study.method == "sobol" and study.num_episodes == design.num_rows * 2
    y = design.unit[:, :3] @ COEF  # U(0,1) through UniformCfg(0, 1) is the identity
    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[0, 1]] * 3}
    ref = salib_sobol.analyze(problem, y, calc_second_order=True, num_resamples=200, seed=1)
    np.testing.assert_allclose(study.result.S1, ref["S1"], atol=1e-10)
    np.testing.assert_allclose(study.result.ST, ref["ST"], atol=1e-10)
    np.testing.assert_allclose(study.result.S1, [0.2, 0.8, 0.0], atol=0.03)
    ranking = study.ranking()
    assert ranking["factor"].tolist() == ["x2", "x1", "x3"]
    assert ranking["verdict"].tolist()[:2] == ["effect", "effect"]


def test_morris_study_equals_salib_on_the_same_design(tmp_path) -> None:
    design = morris_design(_variations(), 20, num_levels=4, seed=0)
    _run(tmp_path, design, num_envs=16)
    study = analyze(tmp_path, outcome="return", num_resamples=100, seed=0)
    assert study.method == "morris"
    # Uniform factors: the design is SALib's own grid (levels at 0, 1/3, 2/3, 1 of the
    # range), and varirec's effects, per unit of the range, are SALib's.
    assert set(np.unique(design.unit).round(12)) <= {0.0, 0.333333333333, 0.666666666667, 1.0}
    y = design.unit @ COEF
    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[0, 1]] * 3}
    ref = salib_morris.analyze(problem, design.unit, y, num_levels=4, num_resamples=100, seed=0)
    for name in ("mu", "mu_star", "sigma", "mu_star_conf"):
        np.testing.assert_allclose(getattr(study.result, name), ref[name], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(study.result.mu_star, COEF, atol=1e-9)


def test_morris_sees_ishigamis_x2_as_salib_does(tmp_path) -> None:
    """Ishigami's x2 term, 7 sin(x2)**2, has a period of half x2's range: a grid whose
    every step was half the range (levels at the quantiles (i + 0.5) / 4) read it as no
    effect. On SALib's grid, varirec's effects are SALib's on the same design."""
    from varirec.analysis import run_study
    from varirec.envs import ishigami, ishigami_variations, make_ishigami_env

    run_study(make_ishigami_env, ishigami_variations(), method="morris", n=50,
              output=tmp_path, num_envs=64, seed=5, run_id="r", progress=False)  # fmt: skip
    result = analyze(tmp_path, outcome="return", num_resamples=0).result
    unit = morris_design(ishigami_variations(), 50, num_levels=4, seed=5).unit  # the run's
    x = -np.pi + 2 * np.pi * unit
    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-np.pi, np.pi]] * 3}
    ref = salib_morris.analyze(problem, x, ishigami(x), num_levels=4, num_resamples=2, seed=5)
    np.testing.assert_allclose(result.mu_star, ref["mu_star"], rtol=1e-9)
    assert result.mu_star[1] > 5  # x2: SALib ~7.9 on its own sample; 0 on the old grid


@pytest.mark.parametrize("levels", [4, 6, 8])
def test_morris_effects_of_a_linear_function_are_its_coefficients_times_the_range(
    tmp_path, levels
) -> None:
    """y = 3 x1 - 2 x2 + 0.5 x3 + 0 x4 on ranges 1, 4, 10 and 5: mu_star = |a| (high - low)
    = 3, 8, 5, 0 and mu = 3, -8, 5, 0 at any number of levels."""
    from varirec.analysis import run_study
    from varirec.envs.one_step import OneStepEnv

    coef, ranges = np.array([3.0, -2.0, 0.5, 0.0]), [(0, 1), (-2, 2), (0, 10), (1, 6)]
    variations = vr.VariationSet(
        vr.Variation(f"x{j + 1}", vr.VariationCfg(sampler=vr.UniformCfg(low=lo, high=hi)),
                     OneStepEnv.setter(j))
        for j, (lo, hi) in enumerate(ranges)
    )  # fmt: skip
    run_study(lambda k: OneStepEnv(k, lambda x: x @ coef, 4), variations, method="morris",
              n=10, num_levels=levels, output=tmp_path, num_envs=64, seed=3, run_id="r",
              progress=False)  # fmt: skip
    result = analyze(tmp_path, outcome="return", num_resamples=0).result
    width = np.array([hi - lo for lo, hi in ranges])
    np.testing.assert_allclose(result.mu_star, np.abs(coef) * width, atol=1e-9)
    np.testing.assert_allclose(result.mu, coef * width, atol=1e-9)


def test_given_data_study_finds_the_effects_and_the_null_factor(tmp_path) -> None:
    _run(tmp_path, episodes=4000)
    study = analyze(tmp_path, outcome="return", num_resamples=200)
    assert study.method == "binning"
    est = dict(zip(study.result.factor_names, study.result.estimate, strict=True))
    assert est["x2"] == pytest.approx(0.8, abs=0.05) and est["x1"] == pytest.approx(0.2, abs=0.05)
    sig = dict(zip(study.result.factor_names, study.result.significant, strict=True))
    assert sig == {"x1": True, "x2": True, "x3": False}
    with pytest.raises(vr.DesignError, match="needs a run recorded with a sobol design"):
        analyze(tmp_path, method="sobol")
    verdicts = study.ranking().set_index("factor")["verdict"]
    assert verdicts.to_dict() == {"x2": "effect", "x1": "effect", "x3": "no first-order effect"}


@pytest.mark.parametrize("method", ["binning", "knn", "pawn"])
def test_a_given_data_factor_below_the_dummies_with_a_wide_interval_is_uncertain(
    tmp_path, method
) -> None:
    """40 episodes: a factor that does not beat the dummies but whose interval reaches far
    above anything negligible is "uncertain", never "no effect" (binning: x1, S1 0.2)."""
    _run(tmp_path, episodes=40, num_envs=8)
    ranking = analyze(tmp_path, outcome="return", method=method, seed=0).ranking()
    assert (ranking[ranking["verdict"].str.startswith("no ")]["conf_high"] <= 0.05).all()
    if method == "pawn":  # no interval: 40 episodes decide nothing against
        assert "no effect" not in set(ranking["verdict"])
    if method == "binning":
        x1 = ranking.set_index("factor").loc["x1"]
        assert x1["conf_high"] > 0.1 and x1["verdict"] == "uncertain"


def test_knn_gives_no_verdict_below_300_episodes(tmp_path) -> None:
    """Below 300 episodes kNN's intervals ran narrow (an inert factor read "effect" in
    10-15 % of seeds): every factor, x2 (S1 0.8) too, reads "uncertain"."""
    _run(tmp_path, episodes=128)
    study = analyze(tmp_path, outcome="return", method="knn", seed=0)
    n = study.num_episodes
    assert n < 300
    assert set(study.ranking()["verdict"]) == {
        f"uncertain: only {n} episodes (kNN's intervals need 300)"
    }


@pytest.mark.parametrize("method", ["rbd_fast", "binning", "knn"])
def test_a_rare_success_leaves_every_verdict_open(tmp_path, method) -> None:
    """success = x1 > 0.998: x1 decides every episode (S1 = ST = 1), but a handful of
    successes in 4000 episodes cannot show it; no factor may read "no effect" (RBD-FAST's
    resamples then had no success and gave no interval, which read "no effect")."""
    variations, env = _variations(), Linear(100)
    m = RecorderManager(100, variations=variations, output=tmp_path, seed=0)
    m.reset(env, None)
    for _ in range(40):
        success = env.x[:, 0] > 0.998
        m.record_step(reward=success * 1.0, terminated=np.ones(100, bool), success=success)
        m.reset(env, np.arange(100))
    m.close()
    study = analyze(tmp_path, outcome="success", method=method, num_resamples=100, seed=0)
    k, value = study.rarer
    assert value == 1.0 and 0 < k < 30
    verdicts = study.ranking().set_index("factor")["verdict"]
    assert not any(v.startswith("no ") for v in verdicts), verdicts
    assert verdicts["x3"] == f"uncertain: only {k} episode(s) with success = 1"


def test_a_resampled_index_without_an_interval_is_uncertain_and_pawn_s_none_is_no_effect(
    tmp_path,
) -> None:
    """A not-significant binning index whose resamples gave no interval reads "uncertain:
    no interval could be computed", not "no effect"; PAWN, which has no interval at all,
    still reads "no effect" with 1000 episodes or more."""
    _run(tmp_path, episodes=1024)
    study = analyze(tmp_path, outcome="return", num_resamples=20, seed=0)
    assert study.method == "binning" and study.num_episodes >= 1000
    nan = np.full(len(study.result.factor_names), np.nan)
    blind = dataclasses.replace(
        study.result, conf=nan, conf_low=nan, conf_high=nan,
        significant=np.zeros(len(nan), dtype=bool),
    )  # fmt: skip
    verdicts = dataclasses.replace(study, result=blind).ranking()["verdict"]
    assert set(verdicts) == {"uncertain: no interval could be computed"}
    pawn = dataclasses.replace(
        study, method="pawn", result=dataclasses.replace(blind, num_resamples=0)
    )
    assert set(pawn.ranking()["verdict"]) == {"no effect"}


def test_a_sobol_study_of_a_few_base_samples_gives_a_note_and_no_verdict(tmp_path) -> None:
    design = sobol_design(_variations(), 4, seed=0)
    _run(tmp_path, design, num_envs=8)
    study = analyze(tmp_path, outcome="return", num_resamples=50, seed=0)
    assert any("only N=4 base samples" in note for note in study.notes)
    assert set(study.ranking()["verdict"]) == {"no verdict: only N=4 base samples"}


def test_missing_design_rows_are_named(tmp_path) -> None:
    design = sobol_design(_variations(), 8, seed=0)
    _run(tmp_path, design, num_envs=8, skip_rows=(5,))
    with pytest.raises(vr.DesignError, match=r"1 of 40 design rows .*sample ids \[5\]"):
        analyze(tmp_path, outcome="return")


def test_unknown_names_and_report(tmp_path) -> None:
    _run(tmp_path / "d", episodes=600)
    with pytest.raises(vr.UnknownNameError, match=r"no outcome 'retrun'.*did you mean 'return'"):
        analyze(tmp_path / "d", outcome="retrun")
    with pytest.raises(vr.UnknownNameError, match="no method 'sobel'"):
        analyze(tmp_path / "d", method="sobel")  # type: ignore[arg-type]
    with pytest.raises(vr.UnknownNameError, match=r"unknown run id\(s\) \['nope'\]"):
        analyze(tmp_path / "d", runs=["nope"])
    study = analyze(tmp_path / "d", outcome="return", num_resamples=50)
    report = write_report([study], tmp_path / "r.html", dataset=vr.open_dataset(tmp_path / "d"))
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    assert "<td>x2</td>" in text and "effect" in text and 'src="http' not in text


def test_sobol_s1_of_a_noisy_success_is_the_factors_share_alone(tmp_path) -> None:
    """success ~ Bernoulli(p(x1)), p = 0.9 where x1 > 0.3 else 0.2, x ~ U(-1, 1)^3: S1 of
    x1 = V(p(x1)) / V(success) = 0.35 * 0.65 * 0.49 / (0.445 * 0.555) = 0.4514 (common
    random numbers must not add the noise's share to it); x2, x3: 0."""
    from varirec.analysis import run_study
    from varirec.envs.one_step import OneStepEnv

    def make_env(k: int) -> OneStepEnv:
        return OneStepEnv(
            k, lambda x: x[:, 0], 3, success_prob=lambda x: np.where(x[:, 0] > 0.3, 0.9, 0.2)
        )

    variations = vr.VariationSet(
        vr.Variation(f"x{j + 1}", vr.VariationCfg(sampler=vr.UniformCfg(low=-1, high=1)),
                     OneStepEnv.setter(j))
        for j in range(3)
    )  # fmt: skip
    run_study(make_env, variations, method="sobol", n=2048, output=tmp_path, num_envs=2048,
              seed=0, run_id="r", progress=False)  # fmt: skip
    frame = analyze(tmp_path, outcome="success", num_resamples=200, seed=0).to_frame()
    s1 = frame[frame["index"] == "S1"].set_index("factor")
    truth = 0.35 * 0.65 * 0.49 / (0.445 * 0.555)
    assert s1.loc["x1", "conf_low"] <= truth <= s1.loc["x1", "conf_high"]
    assert abs(s1.loc["x1", "estimate"] - truth) < 0.04  # with one noise per base sample: 0.64
    assert abs(s1.loc[["x2", "x3"], "estimate"]).max() < 0.03


def test_an_inert_factor_beside_discrete_ones_is_no_knn_effect(tmp_path) -> None:
    # kNN matches discrete factors on their levels; the total index of a factor without
    # effect then ran ~0.003 above 0 with intervals as narrow ("effect" in 3 of 6 seeds).
    from varirec.envs.one_step import OneStepEnv

    kinds = [vr.NormalCfg(mean=2.0, std=1.5),
             vr.TruncNormalCfg(mean=0.0, std=1.0, low=-1.0, high=2.0),
             vr.LogUniformCfg(low=1.0, high=10.0), vr.IntegerCfg(low=0, high=4),
             vr.ChoiceCfg(choices=(0.0, 1.0, 5.0), weights=(0.5, 0.3, 0.2)),
             vr.BernoulliCfg(p=0.2), vr.NormalCfg(mean=5.0, std=2.0)]  # fmt: skip
    slopes = np.array([1.0, 2.0, 0.6, 1.0, 0.8, 3.0, 0.0])  # the last: no effect
    vs = vr.VariationSet(
        vr.Variation(f"x{j}", vr.VariationCfg(sampler=c), OneStepEnv.setter(j))
        for j, c in enumerate(kinds)
    )
    run_study(lambda n: OneStepEnv(n, lambda x: x @ slopes, len(kinds)), vs, method="random",
              n=4000, num_envs=1000, output=tmp_path, seed=0, progress=False)  # fmt: skip
    study = analyze(tmp_path, outcome="return", method="knn", num_resamples=300)
    ranking = study.ranking().set_index("factor")
    assert study.result.significant[6] and 0 < ranking.loc["x6", "conf_low"] < 0.005
    assert ranking.loc["x6", "verdict"] == "no effect"
    assert (ranking.drop(index="x6")["verdict"] == "effect").all()


def test_delta_tells_a_factor_without_effect_by_its_dummies() -> None:
    # Delta is biased upward: a factor without effect scored 0.06-0.08 at N = 2000, its
    # interval far above 0; it is significant only above every dummy's interval.
    from varirec.analysis.estimators.delta import delta_indices

    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(2, 1.5, 2000), rng.uniform(0, 1, 2000), rng.normal(5, 2, 2000)]
    res = delta_indices(x, x[:, 0] + 3 * x[:, 1], num_resamples=20, seed=0)
    assert res.conf_low[2] > 0.03  # the bias: far from 0
    assert res.significant.tolist() == [True, True, False]
    assert res.dummy_threshold > res.conf_low[2]


def test_delta_takes_fewer_resamples_by_default_and_huge_counts_are_refused(
    tmp_path, monkeypatch
) -> None:
    """analyze(method="delta") took 1000 resamples, each refitting every density (~1 s a
    resample at 1,000 episodes x 3 factors; found by a numbers probe)."""
    from varirec.analysis import study as study_module

    asked = []
    real = study_module.given_data_indices

    def counted(*args, **kwargs):  # delta itself, with 2 resamples: this test's time
        asked.append(kwargs["num_resamples"])
        return real(*args, **{**kwargs, "num_resamples": 2})

    _run(tmp_path, episodes=512)
    with pytest.raises(ValueError, match=r"`num_resamples` must be at most 1,000,000"):
        analyze(tmp_path, outcome="return", num_resamples=10**14)
    monkeypatch.setattr(study_module, "given_data_indices", counted)
    analyze(tmp_path, outcome="return", method="delta")
    analyze(tmp_path, outcome="return", method="delta", num_resamples=7)
    analyze(tmp_path, outcome="return")
    assert asked == [study_module.DELTA_RESAMPLES, 7, study_module.DEFAULT_RESAMPLES]
    assert study_module.DELTA_RESAMPLES == 100


def test_advice_for_too_few_episodes_or_a_continuous_hsic_outcome_names_what_analyze_takes(
    tmp_path,
) -> None:
    """The estimators' own advice (pass fewer harmonics, pass threshold=...) named
    options analyze does not have (found by a bad-input probe)."""
    _run(tmp_path, episodes=64)
    with pytest.raises(ValueError, match=r"method='hsic' targets a 0/1 outcome, and 'return'"):
        analyze(tmp_path, outcome="return", method="hsic")
    few = tmp_path / "few"
    _run(few, episodes=20, num_envs=4)
    with pytest.raises(ValueError, match=r"method='rbd_fast' needs at least 42 episodes"):
        analyze(few, outcome="return", method="rbd_fast")


def test_a_text_outcome_is_named_as_text_not_as_missing(tmp_path) -> None:
    import pyarrow as pa

    class Tag(vr.RecorderTerm):
        def columns(self):
            return {"tag": pa.string()}

        def record_pre_reset(self, ids):
            return {"tag": np.array(["ok", "slip"])[ids % 2]}

    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    with RecorderManager(8, variations=[mass], output=tmp_path, run_id="r",
                         terms={"t": vr.RecorderTermCfg(term=Tag)}) as m:  # fmt: skip
        m.reset(None, None)
        for _ in range(40):
            m.record_step(reward=np.ones(8), terminated=np.ones(8, bool))
            m.reset(None, None)
    with pytest.raises(ValueError, match=r"outcome 'tag' holds .* values, not numbers \(e.g. 'ok'"):
        analyze(tmp_path, outcome="tag")


def test_knn_on_a_design_run_is_refused_naming_the_methods_that_fit(tmp_path) -> None:
    """A design's rows are quasi-random points, not random draws: kNN read x3's first-order
    index of Ishigami as -0.12 there, covered in 3 of 8 seeds (found by a numbers probe),
    while binning on the same rows covered 8 of 8."""
    from varirec.envs import ishigami_variations, make_ishigami_env
    from varirec.errors import DesignError

    run_study(make_ishigami_env, ishigami_variations(), method="sobol", n=64, num_envs=64,
              output=tmp_path, seed=0, progress=False)  # fmt: skip
    with pytest.raises(DesignError, match=r"holds a sobol design.*--method sobol \(its own\)"):
        analyze(tmp_path, outcome="return", method="knn")
    binned = analyze(tmp_path, outcome="return", method="binning", num_resamples=20)
    assert binned.num_episodes == 128  # the A and B rows
    run_study(make_ishigami_env, ishigami_variations(), method="random", n=300, num_envs=64,
              output=tmp_path, run_id="plain", seed=1, progress=False)  # fmt: skip
    with pytest.raises(DesignError, match=r"--runs plain \(runs=\['plain'\]\)"):
        analyze(tmp_path, outcome="return", method="knn")
    assert analyze(tmp_path, runs="plain", outcome="return", method="knn").num_episodes == 300
