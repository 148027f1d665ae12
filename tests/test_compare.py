"""How two policies differ (issue 11): a gap explained by controller.gain, checked
against a brute-force pairing; same policy twice gives no gap; mismatched runs refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from varirec.analysis import run_study
from varirec.analysis.compare import ConditionsMismatchError, compare
from varirec.analysis.tables.episode_table import episode_table
from varirec.cli import main
from varirec.envs import make_reach_env, make_reach_variations
from varirec.envs.reach import ReachEnv
from varirec.sampling.sampler_cfgs import UniformCfg
from varirec.storage import DatasetWarning

N = 4000
FLOOR = 150.0


class GainFloor(ReachEnv):
    """The same controller, except that it never uses a gain below FLOOR."""

    def step(self):  # type: ignore[no-untyped-def]
        raw = self.gain.copy()
        np.maximum(self.gain, FLOOR, out=self.gain)
        try:
            return super().step()
        finally:
            self.gain[:] = raw


def _run(out, make_env, run_id, seed=0, policy=None, variations=None):  # type: ignore[no-untyped-def]
    return run_study(make_env, variations or make_reach_variations(), method="random", n=N,
                     num_envs=N, output=out, progress=False, seed=seed, run_id=run_id,
                     policy=policy)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("policies")
    _run(out, make_reach_env, "A", policy="baseline")
    _run(out, GainFloor, "B", policy="gain-floor")
    _run(out, make_reach_env, "A2", policy="baseline")
    return out


def test_gap_is_explained_by_controller_gain(runs) -> None:
    c = compare(runs, ["A", "B"], num_resamples=500, seed=0)
    assert c.policies == ("baseline", "gain-floor") and c.num_pairs == N
    # brute force: pair the episode tables by (env, episode) with pandas
    a = episode_table(runs, "A").frame.set_index(["env_id", "episode"])
    b = episode_table(runs, "B").frame.set_index(["env_id", "episode"])
    both = a.join(b[["success"]].rename(columns={"success": "success_b"}), how="inner")
    d = both["success_b"].astype(float) - both["success"].astype(float)
    assert c.gap == pytest.approx(d.mean())
    assert c.discordant == (int((d < 0).sum()), int((d > 0).sum()))
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert c.gap_conf[0] < c.gap < c.gap_conf[1]
    assert (c.gap_conf[1] - c.gap_conf[0]) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert c.gap_conf[0] > 0 and c.mcnemar_p < 1e-6
    # the policies differ only below the floor: every discordant pair has a gain below it
    assert (both.loc[d != 0, "controller.gain"] < FLOOR).all()
    assert c.disagreement["factor"].iloc[0] == "controller.gain"
    ranked = c.explaining().set_index("factor")
    assert bool(ranked.loc["controller.gain", "effect"])
    assert not bool(ranked.loc["object.color", "effect"])
    curve = c.curves[c.curves["factor"] == "controller.gain"]
    above = curve[curve["low"] >= FLOOR]
    assert len(above) and (above["gap"] == 0).all()
    assert curve["gap"].iloc[0] > 0.1  # lowest gains: the floor helps most
    assert "controller.gain" in c.summary()


def test_same_policy_twice_has_no_gap(runs) -> None:
    c = compare(runs, ["A", "A2"], num_resamples=100)
    assert c.gap == 0.0 and c.discordant == (0, 0) and c.explained is None
    assert c.gap_conf == (0.0, 0.0)
    assert any("never varies" in n for n in c.notes)


def test_mismatched_conditions_are_refused(tmp_path) -> None:
    _run(tmp_path, make_reach_env, "A")
    _run(tmp_path, make_reach_env, "S1", seed=1)
    with pytest.raises(ConditionsMismatchError, match=r"seed: 0 in A vs 1 in B"):
        compare(tmp_path, ["A", "S1"])
    wider = make_reach_variations()
    cfg = wider["payload.mass"].cfg
    wider["payload.mass"].apply_cfg(
        type(cfg)(**{**cfg.__dict__, "sampler": UniformCfg(low=0.8, high=3.0)})
    )
    _run(tmp_path, make_reach_env, "W", variations=wider)
    with pytest.raises(ConditionsMismatchError, match=r"variations\[payload.mass\]\.sampler"):
        compare(tmp_path, ["A", "W"])
    with pytest.raises(ValueError, match="two distinct run ids"):
        compare(tmp_path, ["A", "A"])


def test_cli_compare(runs, capsys) -> None:
    assert main(["compare", str(runs), "--runs", "A", "B", "--format", "json",
                 "--resamples", "100"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["policies"] == ["baseline", "gain-floor"] and out["gap"] > 0
    assert pd.DataFrame(out["disagreement"])["factor"].iloc[0] == "controller.gain"


def test_a_compare_report_claims_no_resolved_indices(runs, tmp_path) -> None:
    """A report of a comparison alone said "the indices are resolved" of indices it never
    measured (found by a CLI probe)."""
    report = tmp_path / "cmp.html"
    assert main(["compare", str(runs), "--runs", "A", "B", "--resamples", "20",
                 "--report", str(report)]) == 0  # fmt: skip
    text = report.read_text()
    assert "new vs" in text or "gap" in text
    assert "indices are resolved" not in text


def test_cli_compare_json_without_intervals_is_strict_json(runs, capsys) -> None:
    """With no resamples the interval is NaN: it was printed as a bare NaN, which strict
    JSON parsers refuse (found by a CLI probe)."""
    assert main(["compare", str(runs), "--runs", "A", "B", "--format", "json",
                 "--resamples", "0"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    out = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert out["gap"] > 0 and out["gap_conf"] == [None, None]
    with pytest.raises(SystemExit):
        main(["compare", str(runs), "--runs", "A", "B", "--resamples", "1"])
    assert "must be 0 (no intervals) or at least 2, got 1" in capsys.readouterr().err


def test_design_runs_pair_on_sample_and_seed(tmp_path) -> None:
    """A schedule hands design rows to whichever env is free, which depends on the
    policy: design runs pair on (sample_id, seed), never on (env, episode)."""
    kw = dict(method="sobol", n=16, replicates=2, num_envs=64, output=tmp_path,
              progress=False, seed=0)  # fmt: skip
    run_study(make_reach_env, make_reach_variations(), run_id="A", policy="baseline", **kw)
    run_study(GainFloor, make_reach_variations(), run_id="B", policy="gain-floor", **kw)
    c = compare(tmp_path, ["A", "B"], num_resamples=100)
    assert c.num_pairs == 16 * (9 + 2) * 2 and c.unmatched == {"A": 0, "B": 0}
    a = episode_table(tmp_path, "A").frame.set_index(["sample_id", "seed"])
    b = episode_table(tmp_path, "B").frame.set_index(["sample_id", "seed"])
    d = b["success"].astype(float) - a.loc[b.index, "success"].astype(float)
    assert c.gap == pytest.approx(d.mean())
    # The rows of a base sample share values: the gap is tested over base samples, and
    # the curves read each base sample's A and B rows, one replicate each.
    assert c.base_samples == 16 and c.mcnemar_p is None and 0 < c.sign_flip_p <= 1
    assert "16 base samples" in c.summary() and "sign-flip" in c.summary()
    per_factor = c.curves.groupby("factor")["episodes"].sum()
    assert (per_factor == 16 * 2).all()
    assert any("32 independent pairs" in n for n in c.notes)


def test_pairs_that_move_together_widen_the_interval_as_their_base_samples_say() -> None:
    # Base samples of 12 pairs whose gaps are one value each: the interval is that of
    # the 50 base samples' means (the t interval of 50 values), not of 600 pairs.
    from varirec.analysis.compare import _paired_bootstrap, _sign_flip_p

    rng = np.random.default_rng(0)
    means = rng.normal(0.1, 1.0, 50)
    d, clusters = np.repeat(means, 12), np.repeat(np.arange(50), 12)
    lo, hi = _paired_bootstrap(d, 4000, 0.95, rng, clusters)
    half = 1.96 * means.std(ddof=1) / np.sqrt(50)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    plo, phi = _paired_bootstrap(d, 4000, 0.95, rng)
    assert (phi - plo) / 2 < half / 3  # the pairs alone: sqrt(12) times too narrow
    truth = stats.ttest_1samp(means, 0.0).pvalue  # the same null, on the 50 means
    assert _sign_flip_p(d, clusters, rng) == pytest.approx(truth, abs=0.05)
    assert _sign_flip_p(np.zeros(600), clusters, rng) == 1.0


def test_without_resamples_the_summary_gives_no_interval_and_no_verdict(runs) -> None:
    c = compare(runs, ["A", "B"], num_resamples=0, seed=0)
    text = c.summary()
    assert "nan" not in text and "no interval" in text
    assert "no verdict without resamples" in text and "beyond the dummy threshold" not in text


def test_an_outcome_with_no_value_in_any_pair_is_named_with_one_that_has(tmp_path) -> None:
    from varirec.envs.analytic import ishigami
    from varirec.envs.one_step import OneStepEnv, ishigami_variations

    for run_id in ("A", "B"):  # an env that reports no success
        run_study(lambda k: OneStepEnv(k, ishigami, 3), ishigami_variations(), method="random",
                  n=64, num_envs=16, output=tmp_path, progress=False, seed=0,
                  run_id=run_id)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"'success' has no value in any of the 64 .*--outcome return"
    ):
        compare(tmp_path, ["A", "B"])


def test_runs_listing_their_variations_in_another_order_are_paired(tmp_path) -> None:
    """Draws are keyed by the variation's key, so the order of the list changes none."""
    import varirec as vr
    from varirec.envs.analytic import ishigami
    from varirec.envs.one_step import OneStepEnv, ishigami_variations

    forward = ishigami_variations()
    backward = vr.VariationSet(list(ishigami_variations().values())[::-1])  # new objects
    for run_id, variations in (("A", forward), ("B", backward)):
        run_study(lambda k: OneStepEnv(k, ishigami, 3), variations, method="random", n=64,
                  num_envs=16, output=tmp_path, progress=False, seed=0,
                  run_id=run_id)  # fmt: skip
    c = compare(tmp_path, ["A", "B"], outcome="return", num_resamples=0)
    assert c.num_pairs == 64 and c.gap == 0.0  # the same draws: the same returns


def test_design_runs_without_independent_pairs_keep_their_gap(tmp_path) -> None:
    # B lost its trajectories' first rows: pairs remain, none independent.
    from varirec.analysis.design_rows import base_samples, independent_rows

    kw = dict(method="morris", n=4, num_envs=64, output=tmp_path, progress=False, seed=0)
    run_study(make_reach_env, make_reach_variations(), run_id="A", policy="a", **kw)
    run_study(GainFloor, make_reach_variations(), run_id="B", policy="b", **kw)
    table = episode_table(tmp_path, "B").frame
    design = json.loads((tmp_path / "run_id=B" / "run.json").read_text())["metadata"]["design"]
    starts = table["sample_id"] % design["group_size"] == 0
    keys = table[["sample_id", "seed"]].assign(run_id="B")
    assert (independent_rows(keys, {"B": design}) == starts.to_numpy()).all()
    assert base_samples(keys.drop(columns="run_id"), {"B": design}).max() == 3  # one run
    import pyarrow.parquet as pq

    for part in (tmp_path / "run_id=B" / "episodes").glob("*.parquet"):
        t = pq.read_table(part)
        pq.write_table(t.filter((t["sample_id"].to_numpy() % design["group_size"]) != 0), part)
    with pytest.warns(DatasetWarning, match=r"4 are in no file"):  # rows gone, and told
        c = compare(tmp_path, ["A", "B"], num_resamples=50)
    assert c.num_pairs == 4 * (len(design["factors"])) and c.base_samples == 4
    assert c.explained is None and any("0 independent pair(s)" in n for n in c.notes)


def test_a_design_of_one_base_sample_gives_no_interval(tmp_path) -> None:
    # One base sample: its pairs move together, so resampling them shows no spread.
    kw = dict(method="sobol", n=1, replicates=2, num_envs=64, output=tmp_path,
              progress=False, seed=0)  # fmt: skip
    run_study(make_reach_env, make_reach_variations(), run_id="A", **kw)
    run_study(GainFloor, make_reach_variations(), run_id="B", **kw)
    c = compare(tmp_path, ["A", "B"], num_resamples=50)
    assert c.num_pairs == 22 and c.base_samples == 1
    assert np.isnan(c.gap_conf).all() and "no interval" in c.summary()
    assert any("one base sample" in n for n in c.notes)


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"conf_level": -1}, r"`conf_level` must be a number from 0.5"),
        ({"conf_level": float("nan")}, r"`conf_level` must be a number from 0.5"),
        ({"num_resamples": -3}, r"`num_resamples` must be an int >= 0"),
        ({"num_resamples": 2.5}, r"`num_resamples` must be an int >= 0"),
    ],
)
def test_bad_levels_and_resamples_are_refused_naming_the_fix(runs, option, match) -> None:
    """``conf_level=-1`` printed a "-100 %" interval; the others raised numpy's errors."""
    with pytest.raises(ValueError, match=match):
        compare(runs, ["A", "B"], **option)


def test_a_run_without_a_readable_run_json_is_named_as_such(runs, tmp_path) -> None:
    """It read as "seed: None in A vs 0 in B" (found by a damage probe)."""
    import shutil
    import warnings

    from varirec.errors import DatasetError

    copy = tmp_path / "copy"
    shutil.copytree(runs, copy)
    (copy / "run_id=A" / "run.json").write_text("{garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match=r"run 'A' has no readable run.json"):
            compare(copy, ["A", "B"])
