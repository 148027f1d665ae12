"""Designs: built by SALib from variation specs, bound through apply_cfg, scheduled with CRN."""

from __future__ import annotations

import numpy as np
import pytest
from SALib.sample import sobol as sobol_sample

import varirec as vr
from varirec.analysis.designs import design_factors, morris_design, sobol_design
from varirec.recording.manager import RecorderManager
from varirec.studies.design import DesignSchedule


def _variations() -> vr.VariationSet:
    return vr.VariationSet(
        [
            vr.Variation("mass", vr.VariationCfg(sampler=vr.NormalCfg(mean=1.0, std=0.1))),
            vr.Variation(
                "pos",
                vr.VariationCfg(sampler=vr.UniformCfg(low=(0, 0), high=(1, 2), names=("x", "y"))),
            ),
            vr.Variation("scene", vr.VariationCfg(sampler=vr.ChoiceCfg(choices=("a", "b", "c")))),
            vr.Variation("delay", vr.VariationCfg(sampler=vr.IntegerCfg(low=0, high=3))),
            vr.Variation("gust", vr.VariationCfg(sampler=vr.UniformCfg(), mode="interval")),
            vr.Variation("g", vr.VariationCfg(sampler=vr.ConstantCfg(value=9.8))),
            vr.Variation("dt", vr.VariationCfg(sampler=vr.UniformCfg(), mode="build")),
        ]
    )


def test_factors_skip_build_interval_and_constants() -> None:
    factors, mapping = design_factors(_variations())
    assert [f.name for f in factors] == ["mass", "pos[x]", "pos[y]", "scene", "delay"]
    assert mapping["pos"][1] == (1, 2)


def test_sobol_design_equals_salib_sample_mapped_through_ppf() -> None:
    d = sobol_design(_variations(), 16, seed=0)
    assert d.num_rows == 16 * (5 + 2) and d.group_size == 7
    problem = {"num_vars": 5, "names": d.factor_names, "bounds": [[0, 1]] * 5}
    ref = sobol_sample.sample(problem, 16, calc_second_order=False, seed=np.random.default_rng(0))
    np.testing.assert_allclose(d.unit, np.clip(ref, 1e-12, 1 - 1e-12))
    mass = d.values("mass")
    from scipy import stats

    np.testing.assert_allclose(mass, stats.norm(1.0, 0.1).ppf(d.unit[:, 0]))
    assert set(d.values("scene")) <= {"a", "b", "c"} and set(d.values("delay")) <= {0, 1, 2, 3}
    assert d.values("pos").shape == (d.num_rows, 2)
    assert sobol_design(_variations(), 16, second_order=True, seed=0).num_rows == 16 * 12


def test_sobol_base_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match=r"power of two .* got 100; use 64 or 128"):
        sobol_design(_variations(), 100)


def test_design_options_of_the_wrong_type_are_refused() -> None:
    """``second_order="yes"`` and ``num_levels=2.0`` were taken (found by a bad-input probe)."""
    with pytest.raises(TypeError, match=r"`second_order` must be True or False, got 'yes'"):
        sobol_design(_variations(), 16, second_order="yes")
    with pytest.raises(ValueError, match=r"`num_levels` must be an even int >= 2, got 2.0"):
        morris_design(_variations(), 10, num_levels=2.0)


def test_morris_design_grid_is_salibs_for_uniform_factors_and_open_quantiles_else() -> None:
    d = morris_design(_variations(), 10, num_levels=4, seed=0)
    assert d.num_rows == 10 * 6 and d.method == "morris"
    names = d.factor_names  # mass (normal), pos x and y (uniform), scene, delay (discrete)
    discrete = ("scene", "delay")
    for j, name in enumerate(names):
        levels = set(np.unique(d.unit[:, j]).round(6))
        if name.startswith("pos"):  # SALib's grid: the range's ends and thirds
            assert levels <= {0.0, 0.333333, 0.666667, 1.0}, name
        elif name in discrete:  # from the first category to the last
            assert levels <= {0.0, 0.333333, 0.666667, 1.0} and d.unit[:, j].max() < 1, name
            assert set(d.values(name)) >= ({"a", "c"} if name == "scene" else {0, 3})
        else:  # finite quantiles of a normal
            assert levels <= {0.125, 0.375, 0.625, 0.875}, name
    ends = {n: 0.0 if n.startswith("pos") else 1e-9 if n in discrete else 0.125 for n in names}
    assert d.grid_ends == tuple(ends[n] for n in names)
    assert d.to_dict()["grid_ends"] == list(d.grid_ends)
    np.testing.assert_array_equal(d.values("pos")[d.unit[:, 1] == 1.0, 0], 1.0)  # high itself
    assert np.all(np.isfinite(d.values("mass")))
    opt = morris_design(_variations(), 20, optimal_trajectories=4, seed=0)
    assert opt.num_rows == 4 * 6
    with pytest.raises(ValueError, match="num_levels"):
        morris_design(_variations(), 10, num_levels=3)


def test_bound_design_is_recorded_with_sample_ids_and_listeners_survive(tmp_path) -> None:
    variations = _variations()
    design = sobol_design(variations, 4, seed=1)
    schedule = DesignSchedule(design, replicates=2, seed=7)
    with RecorderManager(
        8, variations=variations, output=tmp_path, run_id="r", schedule=schedule
    ) as m:
        design.bind(variations)  # after the recorder attached: listeners move along
        m.reset(None, None)
        while not schedule.exhausted or m.tracker.started.any():
            m.record_step(reward=np.ones(8))
            running = m.tracker.started & (m.tracker.sample_id >= 0)
            m.record_pre_reset(np.flatnonzero(running | ~m.tracker.started))
            if not schedule.exhausted:
                schedule.assign(m.tracker, np.flatnonzero(~m.tracker.started))
                m.draw_reset(None, np.flatnonzero(~m.tracker.started))
                m.record_post_reset(np.flatnonzero(~m.tracker.started))
    ds = vr.open_dataset(tmp_path)
    draws = ds.draws().to_pandas()
    ep = ds.episodes().to_pandas()
    study = ep[ep["sample_id"].notna()]
    assert sorted(study["sample_id"].astype(int).value_counts().unique()) == [
        2
    ]  # 2 replicates each
    assert len(study) == design.num_rows * 2
    schedule.check_complete(study["sample_id"].astype(int))
    mass = draws[(draws["variation"] == "mass") & draws["sample_id"].notna()]
    np.testing.assert_allclose(mass["value"], design.values("mass")[mass["sample_id"].astype(int)])
    run = ds.run("r")
    assert run.metadata["design"]["method"] == "sobol" and run.metadata["design"]["replicates"] == 2
    assert ds.read("design").num_rows == design.num_rows
    design.unbind(variations)
    assert isinstance(variations["mass"].cfg.sampler, vr.NormalCfg)


@pytest.mark.parametrize("second_order", [False, True])
def test_common_random_numbers_share_seeds_within_a_base_row(second_order) -> None:
    """A and every AB_i share a seed, B and every BA_i another (the noise is a column of
    each base matrix that no row swaps)."""
    design = sobol_design(_variations(), 4, seed=0, second_order=second_order)
    d = len(design.group_names)
    crn = DesignSchedule(design, replicates=3, seed=1)
    fresh = DesignSchedule(design, replicates=3, seed=1, common_random_numbers=False)
    rows = np.arange(design.num_rows)
    on_a = np.r_[0, 1 : d + 1]  # A, AB_1..AB_d
    on_b = np.arange(d + 1, design.group_size)  # (BA_1..BA_d,) B
    for rep in range(3):
        seeds = crn.episode_seeds(rows, np.full(len(rows), rep))
        by_base = seeds.reshape(4, design.group_size)
        assert np.all(by_base[:, on_a] == by_base[:, :1])
        assert np.all(by_base[:, on_b] == by_base[:, -1:])
        assert len(np.unique(by_base[:, [0, -1]])) == 8  # two seeds per base sample
        assert len(np.unique(fresh.episode_seeds(rows, np.full(len(rows), rep)))) == len(rows)
    assert not np.array_equal(
        crn.episode_seeds(rows, np.zeros(len(rows), int)),
        crn.episode_seeds(rows, np.ones(len(rows), int)),
    )


def test_schedule_reports_missing_rows_and_groups_by_factor() -> None:
    design = sobol_design(_variations(), 4, seed=0)
    schedule = DesignSchedule(design, replicates=1, group_by="scene")
    tracker = vr.EpisodeTracker(design.num_rows)
    rows = schedule.assign(tracker, np.arange(design.num_rows))
    scenes = design.values("scene")[rows]
    switches = int(np.sum(scenes[1:] != scenes[:-1]))
    assert switches == len(set(scenes)) - 1  # grouped: one switch per scene change
    assert schedule.exhausted
    with pytest.raises(vr.DesignError, match="2 of 28 design rows have fewer than 1"):
        schedule.check_complete([r for r in range(design.num_rows) if r not in (3, 9)])
    with pytest.raises(vr.UnknownNameError, match="cannot group by 'scen'"):
        DesignSchedule(design, group_by="scen")


def test_envs_without_a_design_row_replay_row_zero() -> None:
    variations = _variations()
    design = sobol_design(variations, 4, seed=0)
    design.bind(variations)
    tracker = vr.EpisodeTracker(3)
    mass = variations["mass"]
    mass.bind(tracker)
    tracker.sample_id[:] = -1  # the schedule ran out for every env
    values = mass.draw(env_ids=np.arange(3))
    np.testing.assert_array_equal(values, np.full(3, design.values("mass")[0]))
    schedule = DesignSchedule(design)
    assert schedule.remaining == design.num_rows
    schedule.assign(tracker, np.arange(3))
    assert schedule.remaining == design.num_rows - 3


def test_a_morris_grid_end_never_rounds_past_a_factors_range() -> None:
    """low + 1 * (high - low) rounds above high for some bounds (-3.0, 0.1 does), and the
    log-uniform's exp(log(low) + ...) past both ends (0.3, 1.2 does)."""
    variations = vr.VariationSet(
        [
            vr.Variation("u", vr.VariationCfg(sampler=vr.UniformCfg(low=-3.0, high=0.1))),
            vr.Variation("g", vr.VariationCfg(sampler=vr.LogUniformCfg(low=0.3, high=1.2))),
            vr.Variation(
                "v", vr.VariationCfg(sampler=vr.UniformCfg(low=(-3.0, 0.2), high=(0.1, 1.9)))
            ),
        ]
    )
    assert vr.UniformCfg(low=-3.0, high=0.1).ppf(np.array([1.0]))[0] > 0.1  # the rounding
    d = morris_design(variations, 20, num_levels=4, seed=0)
    for key, low, high in (("u", -3.0, 0.1), ("g", 0.3, 1.2), ("v", (-3.0, 0.2), (0.1, 1.9))):
        values = d.values(key).reshape(d.num_rows, -1)
        np.testing.assert_array_equal(values.min(axis=0), np.atleast_1d(low))  # the ends
        np.testing.assert_array_equal(values.max(axis=0), np.atleast_1d(high))
