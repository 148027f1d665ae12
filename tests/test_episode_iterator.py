"""EpisodeIterator: each of habitat's scheduling options, and seed 0 being a seed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from varirec.errors import UnknownNameError
from varirec.studies.episode_iterator import EpisodeIterator

EPISODES = [f"{scene}{i}" for scene in "abc" for i in range(4)]  # a0..a3 b0..b3 c0..c3


def scene(e: str) -> str:
    return e[0]


def test_no_cycle_stops_and_cycle_restarts() -> None:
    assert list(EpisodeIterator(EPISODES, cycle=False)) == EPISODES
    it = EpisodeIterator(EPISODES, cycle=True)
    assert it.take(len(EPISODES) + 2) == EPISODES + EPISODES[:2]


def test_group_by_orders_groups_by_first_appearance() -> None:
    mixed = ["b0", "a0", "b1", "c0", "a1"]
    assert list(EpisodeIterator(mixed, group_by=scene, cycle=False)) == [
        "b0",
        "b1",
        "a0",
        "a1",
        "c0",
    ]


def test_shuffle_keeps_groups_together_and_is_seeded() -> None:
    a = EpisodeIterator(EPISODES, shuffle=True, group_by=scene, seed=0, cycle=False)
    b = EpisodeIterator(EPISODES, shuffle=True, group_by=scene, seed=0, cycle=False)
    c = EpisodeIterator(EPISODES, shuffle=True, group_by=scene, seed=1, cycle=False)
    order_a, order_b, order_c = list(a), list(b), list(c)
    assert order_a == order_b and order_a != order_c  # seed 0 is a real seed
    assert sorted(order_a) == sorted(EPISODES)
    runs = [k for i, k in enumerate(map(scene, order_a)) if i == 0 or k != scene(order_a[i - 1])]
    assert len(runs) == 3  # each scene's episodes are consecutive


def test_global_random_state_is_untouched() -> None:
    # The legacy global RNG on purpose: habitat's iterator reseeds it; ours must not.
    state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    list(EpisodeIterator(EPISODES, shuffle=True, seed=5, cycle=False, num_episode_sample=6))
    after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(a, b) for a, b in zip(state, after, strict=True))
    assert random.getstate() == py_state


def test_max_repeat_episodes_forces_a_scene_switch() -> None:
    it = EpisodeIterator(EPISODES, group_by=scene, max_repeat_episodes=2, cycle=False)
    order = list(it)
    assert sorted(order) == sorted(EPISODES)
    scenes = "".join(map(scene, order))
    assert "aaa" not in scenes and "bbb" not in scenes
    assert scenes[:4] == "aabb"


def test_max_repeat_steps_with_jitter() -> None:
    it = EpisodeIterator(
        EPISODES, group_by=scene, max_repeat_steps=10, step_repetition_range=0.0, cycle=False
    )
    first = [next(it)]
    it.step_taken(10)  # the scene took its 10 steps: switch
    first.append(next(it))
    assert scene(first[0]) == "a" and scene(first[1]) == "b"
    jittered = EpisodeIterator(
        EPISODES, group_by=scene, max_repeat_steps=100, step_repetition_range=0.5, seed=3
    )
    caps = set()
    for _ in range(30):
        caps.add(jittered._step_cap)
        jittered.step_taken(200)
        next(jittered)
    assert len(caps) > 3 and all(50 <= c <= 150 for c in caps)


def test_sampling_keeps_a_subset() -> None:
    it = EpisodeIterator(EPISODES, num_episode_sample=5, seed=0, cycle=False)
    got = list(it)
    assert len(got) == 5 and len(set(got)) == 5 and set(got) <= set(EPISODES)
    with pytest.raises(ValueError, match="num_episode_sample"):
        EpisodeIterator(EPISODES, num_episode_sample=20)


def test_set_next_by_index_and_id() -> None:
    it = EpisodeIterator(EPISODES, cycle=False, id_of=lambda e: e.upper())
    it.set_next_by_index(5)
    assert next(it) == EPISODES[5]
    it.set_next_by_id("C3")
    assert next(it) == "c3"
    rest = list(it)
    assert "c3" not in rest and EPISODES[5] not in rest and len(rest) == len(EPISODES) - 2
    with pytest.raises(UnknownNameError, match="no episode with id 'Z9'"):
        it.set_next_by_id("Z9")
    with pytest.raises(IndexError, match="index"):
        it.set_next_by_index(99)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_repeat_episodes": 0}, "max_repeat_episodes"),
        ({"max_repeat_steps": -3}, "max_repeat_steps"),
        ({"step_repetition_range": 1.5}, "step_repetition_range"),
    ],
)
def test_bad_options(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        EpisodeIterator(EPISODES, **kwargs)
    with pytest.raises(ValueError, match="must not be empty"):
        EpisodeIterator([])
