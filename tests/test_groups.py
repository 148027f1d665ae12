"""Groups of factors: vector variations as one factor, user groups, group indices.

The test function: a 3-vector ``cam ~ U(-1, 1)^3`` acting only through its norm,
plus a scalar ``w ~ U(-1, 1)``: ``Y = |cam| + 0.3 w``. Its truth by brute force:
the group's first-order index is ``Var|cam| / Var Y``; each component alone
explains ``Var E[|cam| | cam_j] / Var Y``, far less.
"""

from __future__ import annotations

import numpy as np
import pytest

import varirec as vr
from varirec.analysis import analyze
from varirec.analysis.estimators.groups import (
    declared_groups,
    resolve_groups,
    salib_groups,
    vector_groups,
)
from varirec.analysis.estimators.knn_total import knn_indices
from varirec.envs import OneStepEnv, drive_episodes
from varirec.errors import UnknownNameError


def _norm_model(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, :3], axis=1) + 0.3 * x[:, 3]


def _truth() -> tuple[float, float]:
    """(group S1 of cam, S1 of one component), by brute-force Monte Carlo."""
    rng = np.random.default_rng(0)
    v = rng.uniform(-1.0, 1.0, size=(1_000_000, 3))
    var_norm = np.linalg.norm(v, axis=1).var()
    total = var_norm + 0.09 / 3.0
    grid = np.linspace(-1.0, 1.0, 201)
    rest = (rng.uniform(-1.0, 1.0, size=(20_000, 2)) ** 2).sum(axis=1)
    cond = np.sqrt(grid[:, None] ** 2 + rest[None, :]).mean(axis=1)
    return var_norm / total, cond.var() / total


def test_vector_groups_and_resolution() -> None:
    names = ["cam[x]", "mass", "cam[y]", "cam[z]", "g[0]"]
    groups = vector_groups(names)
    assert groups == {"cam": ["cam[x]", "cam[y]", "cam[z]"]}
    assert resolve_groups(names, groups) == (["cam", "mass", "g[0]"], [[0, 2, 3], [1], [4]])
    assert salib_groups(names, groups) == ["cam", "mass", "cam", "cam", "g[0]"]
    assert resolve_groups(names, None) == (names, [[0], [1], [2], [3], [4]])


def test_group_errors_name_the_problem() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'mass'"):
        resolve_groups(["mass", "x"], {"g": ["mas"]})
    with pytest.raises(ValueError, match="non-empty list"):
        resolve_groups(["mass"], {"g": []})
    with pytest.raises(ValueError, match="non-empty list"):
        resolve_groups(["mass"], {"g": "mass"})
    # named like one of its factors, it took that factor's row (found by a CLI probe)
    with pytest.raises(
        ValueError, match=r"group name 'mass' is also a factor's name.*'mass_group'"
    ):
        resolve_groups(["mass", "gain"], {"mass": ["mass", "gain"]})
    assert resolve_groups(["mass", "gain"], {"mass": ["mass"]}) == (["mass", "gain"], [[0], [1]])
    with pytest.raises(ValueError, match=r"group name 'mass' is also a factor's name"):
        resolve_groups(["mass", "a", "b"], {"mass": ["a", "b"]})  # 'mass' keeps its row
    # 'a' names a group while the factor a is in another: no row reads as two things
    assert resolve_groups(["a", "b", "c"], {"a": ["b", "c"], "a_g": ["a"]})[0] == ["a_g", "a"]


def test_declared_groups_expand_variations_and_keep_other_vectors() -> None:
    cols = {"cam": ["cam[x]", "cam[y]", "cam[z]"], "g": ["g[0]", "g[1]"], "m": ["m"]}
    assert declared_groups({"pose": ["cam", "m"]}, cols) == {
        "pose": ["cam[x]", "cam[y]", "cam[z]", "m"],
        "g": ["g[0]", "g[1]"],
    }
    # A component in a group leaves the rest of its vector to stand alone.
    assert declared_groups({"p": ["cam[x]", "m"]}, cols) == {"p": ["cam[x]", "m"], "g": cols["g"]}
    assert declared_groups({"p": ["m", "m"]}, cols, vectors=False) == {"p": ["m"]}
    with pytest.raises(UnknownNameError, match="did you mean 'cam'"):
        declared_groups({"p": ["cma"]}, cols)
    with pytest.raises(ValueError, match="'cam\\[y\\]' is in groups 'a' and 'b'"):
        declared_groups({"a": ["cam"], "b": ["cam[y]"]}, cols)
    with pytest.raises(ValueError, match="must name at least one variation"):
        declared_groups({"a": []}, cols)
    with pytest.raises(ValueError, match="name the group otherwise"):
        declared_groups({"m": ["cam"]}, cols)


def test_norm_effect_group_index_vs_components() -> None:
    group_truth, component_truth = _truth()
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.0, 1.0, size=(20_000, 4))
    Y = _norm_model(X)
    names = ["cam[0]", "cam[1]", "cam[2]", "w"]
    grouped = knn_indices(X, Y, factor_names=names, groups=vector_groups(names), seed=0)
    split = knn_indices(X, Y, factor_names=names, seed=0)
    assert grouped.factor_names == ("cam", "w")
    assert grouped.groups["cam"] == ["cam[0]", "cam[1]", "cam[2]"]
    assert grouped.S1[0] == pytest.approx(group_truth, abs=0.03)
    # No interaction with w: the group's total and Shapley effect equal its S1.
    assert grouped.ST[0] == pytest.approx(group_truth, abs=0.03)
    assert grouped.shapley[0] == pytest.approx(group_truth, abs=0.03)
    np.testing.assert_allclose(split.S1[:3], component_truth, atol=0.03)
    # What the components explain one at a time understates the group; jointly
    # (their Shapley effects) they account for it.
    assert split.S1[:3].sum() < grouped.S1[0] - 0.01
    assert np.all(split.S1[:3] < grouped.S1[0] / 2)
    assert split.shapley[:3].sum() == pytest.approx(grouped.shapley[0], abs=0.03)


def test_vector_variation_is_one_factor_through_parquet(tmp_path) -> None:
    env = OneStepEnv(500, _norm_model, 4)
    cam = vr.VariationCfg(sampler=vr.UniformCfg(low=(-1.0,) * 3, high=(1.0,) * 3))
    w = vr.VariationCfg(sampler=vr.UniformCfg(low=-1.0, high=1.0))
    variations = vr.VariationSet(
        [
            vr.Variation("cam", cam, OneStepEnv.setter([0, 1, 2])),
            vr.Variation("w", w, OneStepEnv.setter(3)),
        ]
    )
    with vr.RecorderManager(env.num_envs, variations=variations, output=tmp_path, seed=3) as m:
        drive_episodes(env, m, num_episodes=5_000)
    group_truth, component_truth = _truth()
    study = analyze(tmp_path, outcome="return", method="knn", seed=0)
    assert study.result.factor_names == ("cam", "w")
    assert study.result.groups["cam"] == ["cam[0]", "cam[1]", "cam[2]"]
    assert study.result.S1[0] == pytest.approx(group_truth, abs=0.05)
    per_component = analyze(tmp_path, outcome="return", method="knn", seed=0, groups="none")
    assert per_component.result.factor_names == ("cam[0]", "cam[1]", "cam[2]", "w")
    np.testing.assert_allclose(per_component.result.S1[:3], component_truth, atol=0.05)
    custom = analyze(
        tmp_path, outcome="return", method="knn", seed=0, groups={"pair": ["cam[0]", "w"]}
    )
    assert custom.result.factor_names == ("pair", "cam[1]", "cam[2]")
    # A vector variation's name stands for its components; with method auto and plain
    # draws, groups mean knn; the numbers are those of the spelled-out groups.
    by_name = analyze(tmp_path, outcome="return", seed=0, groups={"all": ["cam", "w"]})
    spelled = analyze(tmp_path, outcome="return", method="knn", seed=0,
                      groups={"all": ["cam[0]", "cam[1]", "cam[2]", "w"]})  # fmt: skip
    assert by_name.method == "knn" and by_name.groups == {
        "all": ["cam[0]", "cam[1]", "cam[2]", "w"]
    }
    np.testing.assert_array_equal(by_name.result.ST, spelled.result.ST)
    with pytest.raises(UnknownNameError, match="did you mean 'cam'"):
        analyze(tmp_path, outcome="return", method="knn", groups={"g": ["camm"]})
    with pytest.raises(ValueError, match="`groups` must be"):
        analyze(tmp_path, outcome="return", method="knn", groups="vector")


def test_group_sobol_design_through_parquet_equals_salib(tmp_path, capsys) -> None:
    from SALib.analyze import sobol as salib_sobol

    from varirec.analysis.designs import sobol_design
    from varirec.studies.design import DesignSchedule

    env = OneStepEnv(1024, _norm_model, 4)
    cam = vr.VariationCfg(sampler=vr.UniformCfg(low=(-1.0,) * 3, high=(1.0,) * 3))
    w = vr.VariationCfg(sampler=vr.UniformCfg(low=-1.0, high=1.0))
    variations = vr.VariationSet(
        [
            vr.Variation("cam", cam, OneStepEnv.setter([0, 1, 2])),
            vr.Variation("w", w, OneStepEnv.setter(3)),
        ]
    )
    design = sobol_design(variations, 2**12, seed=0, groups="vectors")
    assert design.group_names == ["cam", "w"]
    assert design.num_rows == 2**12 * (2 + 2)  # G + 2 rows per base sample, not D + 2
    design.bind(variations)
    schedule = DesignSchedule(design, seed=0)
    with vr.RecorderManager(
        env.num_envs, variations=variations, output=tmp_path, seed=0, schedule=schedule
    ) as manager:
        drive_episodes(env, manager)
    study = analyze(tmp_path, outcome="return", seed=0)
    res = study.result
    assert study.groups == {"cam": ["cam[0]", "cam[1]", "cam[2]"]}  # w is a factor alone
    # A design's groups are fixed when it is built: --group on it names the way out.
    from varirec.cli.commands import main

    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(tmp_path), "--outcome", "return", "--group", "g=cam,w"])
    assert exc.value.code == 2
    assert "holds a design, whose groups are fixed when it is built" in capsys.readouterr().err
    group_truth, _ = _truth()
    assert study.method == "sobol" and res.factor_names == ("cam", "w")
    assert res.S1[0] == pytest.approx(group_truth, abs=0.03)
    assert res.ST[0] == pytest.approx(group_truth, abs=0.03)
    # SALib's grouped analysis of the same outputs gives the same point estimates.
    y = _norm_model(np.column_stack([design.values("cam"), design.values("w")]))
    problem = {
        "num_vars": 4,
        "names": design.factor_names,
        "bounds": [[0.0, 1.0]] * 4,
        "groups": list(design.groups),
    }
    ref = salib_sobol.analyze(problem, y, calc_second_order=False, seed=1)
    np.testing.assert_allclose(res.S1, ref["S1"], atol=1e-9)
    np.testing.assert_allclose(res.ST, ref["ST"], atol=1e-9)


def test_groups_refused_for_methods_that_ignore_them(tmp_path) -> None:
    env = OneStepEnv(100, _norm_model, 4)
    cfg = vr.VariationCfg(sampler=vr.UniformCfg(low=-1.0, high=1.0))
    variations = vr.VariationSet(vr.Variation(f"v{j}", cfg, OneStepEnv.setter(j)) for j in range(4))
    with vr.RecorderManager(env.num_envs, variations=variations, output=tmp_path, seed=0) as m:
        drive_episodes(env, m, num_episodes=200)
    with pytest.raises(ValueError, match="`groups` applies to method='knn'"):
        analyze(tmp_path, outcome="return", method="binning", groups={"g": ["v0", "v1"]})
