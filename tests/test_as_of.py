"""The as-of pick against a loop over every draw, written the plain way."""

from __future__ import annotations

import numpy as np
import pytest

from varirec.analysis.tables.as_of import as_of, search_pick


def _by_loop(d_env, d_seq, e_env, e_seq) -> np.ndarray:
    """Each episode's latest draw of its env or of all envs (-1) with seq <= start."""
    out = np.full(len(e_env), -1)
    for i, (env, start) in enumerate(zip(e_env, e_seq, strict=True)):
        best = None
        for row, (d, s) in enumerate(zip(d_env, d_seq, strict=True)):
            if (d == env or d == -1) and s <= start and (best is None or s > d_seq[best]):
                best = row
        out[i] = -1 if best is None else best
    return out


@pytest.mark.parametrize("build_draws", [1, 3, 8, 9, 40])
@pytest.mark.parametrize("env_draws", [0, 60])
def test_as_of_equals_a_loop_over_draws(build_draws: int, env_draws: int) -> None:
    rng = np.random.default_rng(build_draws * 100 + env_draws)
    d_env = np.r_[rng.integers(0, 5, env_draws), np.full(build_draws, -1)]
    d_seq = 1 + rng.permutation(120)[: len(d_env)]  # one event, one seq per column
    order = np.argsort(d_seq)
    d_env, d_seq = d_env[order], d_seq[order]  # stored in seq order, as the writer does
    e_env = rng.integers(0, 5, 300)
    e_seq = np.r_[0, rng.integers(0, 130, 299)]  # 0: before any draw
    got = as_of(d_env, d_seq, e_env, e_seq)
    np.testing.assert_array_equal(got, _by_loop(d_env, d_seq, e_env, e_seq))
    assert (got == -1).any() and (got >= 0).any()  # both cases seen


def test_search_pick_gives_nan_and_minus_one_where_no_draw_came_before() -> None:
    d_env, d_seq = np.array([-1, -1]), np.array([10, 20])
    value, label = search_pick(
        d_env,
        d_seq,
        np.array([1.5, 2.5]),
        np.array([0, 1]),
        np.zeros(3, int),
        np.array([5, 10, 25]),
    )
    np.testing.assert_array_equal(value, [np.nan, 1.5, 2.5])
    np.testing.assert_array_equal(label, [-1, 0, 1])


def test_has_nan_answers_as_a_mask_would_also_where_infinities_cancel() -> None:
    from varirec.analysis.tables.as_of import has_nan

    cases = [
        np.array([1.0, 2.0]),
        np.array([1.0, np.nan]),
        np.array([np.inf, -np.inf, 3.0]),  # the sum is NaN, no value is
        np.array([np.inf, -np.inf, np.nan]),
        np.array([1e308, 1e308]),  # the sum overflows to inf, not NaN
        np.zeros(0),
    ]
    for values in cases:
        assert has_nan(values) == bool(np.isnan(values).any())
