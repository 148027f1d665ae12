"""Result dataclasses: tidy frames, JSON dicts and plots."""

from __future__ import annotations

import json
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from SALib.sample import morris as morris_sample
from SALib.sample import sobol as sobol_sample

from varirec.analysis.estimators.given_data import first_order_binning
from varirec.analysis.estimators.morris import morris_indices
from varirec.analysis.estimators.results import (
    FRAME_COLUMNS,
    PAIR_SEPARATOR,
    GivenDataResult,
    MorrisResult,
    SobolResult,
)
from varirec.analysis.estimators.sobol import sobol_indices
from varirec.envs.analytic import ishigami


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sobol_result() -> SobolResult:
    problem = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[-np.pi, np.pi]] * 3}
    X = sobol_sample.sample(problem, 256, calc_second_order=True, seed=0)
    return sobol_indices(
        ishigami(X), 3, second_order=True, factor_names=["a", "b", "c"], num_resamples=50, seed=0
    )


@pytest.fixture(scope="module")
def morris_result() -> MorrisResult:
    problem = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[0.0, 1.0]] * 3}
    X = morris_sample.sample(problem, 10, seed=0)
    return morris_indices(X, X[:, 0] + X[:, 1] ** 2, problem, seed=0, num_resamples=50)


@pytest.fixture(scope="module")
def given_result() -> GivenDataResult:
    rng = np.random.default_rng(0)
    X = rng.random((800, 3))
    Y = (rng.random(800) < 0.2 + 0.6 * X[:, 0]).astype(float)
    return first_order_binning(X, Y, seed=0, num_resamples=50, outcome="success")


def test_sobol_frame_is_tidy(sobol_result: SobolResult) -> None:
    frame = sobol_result.to_frame()
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert frame["index"].tolist() == ["S1"] * 3 + ["ST"] * 3 + ["S2"] * 3
    pairs = frame[frame["index"] == "S2"]
    assert pairs["factor"].tolist() == [f"a{PAIR_SEPARATOR}b", "a×c", "b×c"]
    assert pairs["factor_a"].tolist() == ["a", "a", "b"]
    assert pairs["factor_b"].tolist() == ["b", "c", "c"]
    assert frame.loc[frame["index"] == "S1", "factor_b"].isna().all()
    s1 = frame[frame["index"] == "S1"]
    np.testing.assert_array_equal(s1["estimate"], sobol_result.S1)
    np.testing.assert_array_equal(s1["conf"], sobol_result.S1_conf)
    assert (frame["conf_low"] <= frame["estimate"]).all()


def test_morris_frame(morris_result: MorrisResult) -> None:
    frame = morris_result.to_frame()
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert set(frame["index"]) == {"mu", "mu_star", "sigma"}
    assert frame.loc[frame["index"] == "sigma", "conf_low"].isna().all()


def test_given_data_frame_has_significant(given_result: GivenDataResult) -> None:
    frame = given_result.to_frame()
    assert tuple(frame.columns) == (*FRAME_COLUMNS, "significant")
    assert str(frame["significant"].dtype) == "boolean"
    assert frame["significant"].tolist() == given_result.significant.tolist()
    assert (frame["index"] == "S1_binning").all()


@pytest.mark.parametrize("name", ["sobol_result", "morris_result", "given_result"])
def test_to_dict_is_strict_json(name: str, request: pytest.FixtureRequest) -> None:
    result = request.getfixturevalue(name)
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)  # NaN must have become None
    back = json.loads(text)
    assert back["method"] == result.method
    assert back["seed"] == 0 and back["num_resamples"] == 50
    assert len(back["indices"]) == len(result.to_frame())
    assert set(back["indices"][0]) >= set(FRAME_COLUMNS)


def test_to_dict_summaries(sobol_result: SobolResult, given_result: GivenDataResult) -> None:
    assert sobol_result.to_dict()["second_order"] is True
    data = given_result.to_dict()
    assert data["outcome"] == "success"
    assert data["noise_share"] == pytest.approx(given_result.noise_share)
    assert len(data["dummy_estimates"]) == 200


@pytest.mark.parametrize("name", ["sobol_result", "morris_result", "given_result"])
def test_plot_returns_axes(name: str, request: pytest.FixtureRequest) -> None:
    result = request.getfixturevalue(name)
    ax = result.plot()
    assert isinstance(ax, Axes)
    _, given_ax = plt.subplots()
    assert result.plot(ax=given_ax) is given_ax


def _assert_distinct(result: object, fields: list[str]) -> None:
    arrays = [getattr(result, name) for name in fields]
    for i, a in enumerate(arrays):
        for name, b in zip(fields[i + 1 :], arrays[i + 1 :], strict=True):
            assert a is not b, (fields[i], name)
            assert not np.shares_memory(a, b), (fields[i], name)


def test_missing_intervals_are_distinct_arrays() -> None:
    from varirec.analysis.estimators.given_data import pawn_indices

    X = sobol_sample.sample(
        {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[-np.pi, np.pi]] * 3},
        64,
        calc_second_order=True,
        seed=0,
    )
    sobol = sobol_indices(ishigami(X), 3, second_order=True, num_resamples=0)
    _assert_distinct(
        sobol,
        [
            f"{index}_{part}"
            for index in ("S1", "ST", "S2")
            for part in ("conf", "conf_low", "conf_high")
        ],
    )
    assert sobol.S1_conf is not sobol.ST_conf_high
    rng = np.random.default_rng(1)
    Xg = rng.random((300, 2))
    Yg = Xg[:, 0] + rng.random(300)
    conf_fields = ["conf", "conf_low", "conf_high"]
    binning = first_order_binning(Xg, Yg, seed=0, num_resamples=0)
    _assert_distinct(binning, conf_fields)
    _assert_distinct(pawn_indices(Xg, Yg, seed=0), conf_fields)
