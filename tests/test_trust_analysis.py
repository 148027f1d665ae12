"""Issue 8, analysis: results that are right and errors that name the real cause."""

from __future__ import annotations

import re

import numpy as np
import pytest

from varirec.analysis.estimators.binning import first_order_binning
from varirec.cli.demo import run_demo


def test_interval_variation_is_noise_and_the_demo_passes_agree(tmp_path) -> None:
    # wind.gust is drawn mid-episode; the mean of an episode's draws depended on its
    # length (successes end early), so it ranked first in the given-data pass.
    result = run_demo(tmp_path / "demo", size="tiny", seed=0, resamples=200, echo=lambda *a: None)
    sobol, given = result.studies
    ranked = given.ranking()
    assert "wind.gust" not in set(ranked["factor"])
    assert any("'wind.gust' is an interval-mode variation" in n for n in given.notes)
    sobol_ranked = sobol.ranking()
    sobol_effects = set(sobol_ranked.loc[sobol_ranked["verdict"] == "effect", "factor"])
    given_effects = set(ranked.loc[ranked["verdict"] == "effect", "factor"])
    # What the given data calls an effect, the Sobol study does too, and both put
    # the same three factors on top.
    assert given_effects <= sobol_effects
    assert set(ranked["factor"][:3]) == set(sobol_ranked["factor"][:3])


def _logistic_p(X: np.ndarray) -> np.ndarray:
    z = 1.5 * X[:, 0] + 3.0 * X[:, 1] * X[:, 2]  # x2, x3 act only together
    return 1.0 / (1.0 + np.exp(-z))


def test_noise_share_counts_interactions_as_explained() -> None:
    # Truth from the known p(x): E[p(1 - p)] / Var(Y), Var(Y) = E[p](1 - E[p]).
    p = _logistic_p(np.random.default_rng(99).uniform(-1, 1, (1_000_000, 3)))
    truth = np.mean(p * (1 - p)) / (p.mean() * (1 - p.mean()))
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (8000, 5))  # x4, x5 do nothing
    Y = (rng.random(8000) < _logistic_p(X)).astype(float)
    res = first_order_binning(X, Y, seed=0, num_resamples=300)
    # x2 and x3 have S1 = 0: the old share, given only x1, counted them as noise (0.88).
    assert res.significant.tolist() == [True, False, False, False, False]
    assert res.noise_share_conf_low <= truth <= res.noise_share_conf_high
    assert res.noise_share == pytest.approx(truth, abs=0.025)


def _ishigami_design_run(path) -> str:
    from varirec import RecorderManager
    from varirec.analysis.designs import sobol_design
    from varirec.envs import drive_episodes, ishigami_variations, make_ishigami_env
    from varirec.studies.design import DesignSchedule

    variations = ishigami_variations()
    design = sobol_design(variations, 32, seed=0)
    design.bind(variations)
    schedule = DesignSchedule(design, replicates=1, seed=0)
    with RecorderManager(
        64, variations=variations, output=path, run_id="s", seed=0, schedule=schedule
    ) as manager:
        drive_episodes(make_ishigami_env(64), manager)
    return "s"


def test_analyze_refuses_draws_that_are_not_the_stored_design(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from varirec.analysis.study import analyze
    from varirec.errors import DesignError

    run = _ishigami_design_run(tmp_path)
    assert analyze(tmp_path, outcome="return", num_resamples=50).method == "sobol"
    # The draws no longer match the design table (as when Design.bind was forgotten:
    # the episodes ran random values under design sample ids).
    for part in (tmp_path / f"run_id={run}" / "design").glob("*.parquet"):
        table = pq.read_table(part)
        for j, name in enumerate(table.column_names):
            if name != "sample_id":
                flipped = 1.0 - table.column(name).to_numpy()
                table = table.set_column(j, name, pa.array(flipped))
        pq.write_table(table, part)
    with pytest.raises(DesignError, match=r"run 's': \d+ of \d+ design-row draws differ") as err:
        analyze(tmp_path, outcome="return", num_resamples=50)
    assert "Design.bind(variations)" in str(err.value) and "--method binning" in str(err.value)


def _random_run(path, num_episodes: int = 4000, seed: int = 1, run_id: str = "r") -> str:
    from varirec import RecorderManager
    from varirec.envs import drive_episodes, make_reach_env, make_reach_variations

    with RecorderManager(
        1024, variations=make_reach_variations(), output=path, run_id=run_id, seed=seed
    ) as manager:
        drive_episodes(make_reach_env(1024), manager, num_episodes=num_episodes)
    return run_id


def test_pawn_factors_it_did_not_estimate_have_no_verdict(tmp_path) -> None:
    from varirec.analysis.reports.report import write_report
    from varirec.analysis.study import analyze
    from varirec.cli.formatting import format_ranking

    _random_run(tmp_path)
    study = analyze(tmp_path, outcome="success", method="pawn")
    verdicts = study.ranking().set_index("factor")["verdict"]
    # actuator.delay (4 values) and scene (3) are not estimated by PAWN: no "no effect".
    for name in ("actuator.delay", "scene"):
        assert verdicts[name] == "not estimated: at most 10 distinct values; use --method binning"
    frame = study.to_frame()
    main = frame[(frame["index"] == "pawn_median") & (frame["factor"] == "actuator.delay")]
    assert main["significant"].isna().all() and len(main) == 1
    # The per-category success rates keep their own (Wilson) intervals; the ranking claims none.
    text = format_ranking(study).split("'success' per category of")[0]
    assert "no confidence intervals" in text and "95%" not in text and "conf_low" not in text
    html = write_report([study], tmp_path / "r.html").read_text()
    assert '<div class="categories" data-factor="scene">' in html
    html = re.sub(r'<div class="categories".*?</div>', "", html, flags=re.S)
    assert "95% intervals" not in html and "no confidence intervals" in html
    assert "<th>conf low</th>" not in html
    # Binning has intervals, and says so.
    binning = analyze(tmp_path, outcome="success", num_resamples=100)
    assert binning.has_intervals and "95% intervals" in format_ranking(binning)


def test_runs_that_repeat_each_other_are_not_pooled_silently(tmp_path) -> None:
    from varirec.analysis.study import analyze
    from varirec.errors import DuplicateRunsError

    # The same script run twice with seed 0: identical draws for every episode.
    for run_id in ("first", "again"):
        _random_run(tmp_path, num_episodes=2000, seed=0, run_id=run_id)
    with pytest.raises(
        DuplicateRunsError,
        match=r"runs 'again' and 'first' repeat each other: same seed 0, same variations, "
        r"and 2000 shared \(env, episode\) keys",
    ) as err:
        analyze(tmp_path, outcome="success", num_resamples=50)
    assert "--runs again" in str(err.value) and "allow_duplicate_runs=True" in str(err.value)
    one = analyze(tmp_path, outcome="success", runs=["first"], num_resamples=50)
    assert one.num_episodes == 2000
    both = analyze(tmp_path, outcome="success", num_resamples=50, allow_duplicate_runs=True)
    assert both.num_episodes == 4000
    # Another seed draws other values: pooled without a word.
    _random_run(tmp_path, num_episodes=2000, seed=7, run_id="other")
    pooled = analyze(tmp_path, outcome="success", runs=["first", "other"], num_resamples=50)
    assert pooled.num_episodes == 4000


def _two_factor_run(path, num_envs: int, rounds: int, **outcomes) -> None:
    import varirec as vr

    factors = [vr.Variation(k, vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2))) for k in "ab"]
    with vr.RecorderManager(num_envs, variations=factors, output=path, run_id="r") as m:
        for _ in range(rounds):
            m.reset(None, None)
            m.record_step(reward=np.ones(num_envs), **outcomes)
        m.record_pre_reset(None)


def test_degenerate_outcomes_get_their_real_cause(tmp_path) -> None:
    from varirec.analysis.study import analyze

    _two_factor_run(tmp_path / "nan", 64, 4)  # success never reported
    with pytest.raises(
        ValueError,
        match=r"outcome 'success' has no finite value in any of the 256 episode\(s\) of "
        r"run\(s\) \['r'\] \(missing or NaN\): record it with manager.record_step\(success=",
    ):
        analyze(tmp_path / "nan", outcome="success")
    from varirec.analysis.failures import failures

    with pytest.raises(
        ValueError,
        match=r"outcome 'success' has no finite value in any of the 256 episode.*"
        r"outcomes with values: .*return",
    ):
        failures(tmp_path / "nan")  # it had said "only 0 episode(s) ... needs at least 50"
    for runs, said in ((3, r"`runs` must be a run id or a list of run ids, got int 3"),
                       ([3], r"`runs` must hold run ids \(str\), got 3")):  # fmt: skip
        with pytest.raises(TypeError, match=said):
            analyze(tmp_path / "nan", outcome="return", runs=runs)
    _two_factor_run(tmp_path / "one", 1, 1, success=np.ones(1))
    with pytest.raises(ValueError, match=r"only 1 episode\(s\) in run\(s\) \['r'\]; a failure"):
        failures(tmp_path / "one")  # it had said "`factors` is empty"
    with pytest.raises(
        ValueError, match=r"only 1 episode\(s\) of run\(s\) \['r'\] have a finite 'success'"
    ):
        analyze(tmp_path / "one")
    _two_factor_run(tmp_path / "const", 64, 4, success=np.ones(64))
    with pytest.raises(ValueError, match="outcome 'success' is 1 in all 256 episode") as err:
        analyze(tmp_path / "const", outcome="success")
    assert "np.float64" not in str(err.value)


def test_without_success_the_default_outcome_is_one_that_varies(tmp_path) -> None:
    """One-step episodes without success: length is 1 throughout, return varies. The
    default had been the first outcome by name (length), refused as constant."""
    from varirec.analysis import run_study
    from varirec.analysis.study import analyze
    from varirec.envs.analytic import ishigami
    from varirec.envs.one_step import OneStepEnv, ishigami_variations

    run_study(lambda k: OneStepEnv(k, ishigami, 3), ishigami_variations(), method="random",
              n=256, num_envs=64, output=tmp_path, progress=False, seed=0, run_id="r")  # fmt: skip
    assert analyze(tmp_path, num_resamples=0).outcome == "return"
