"""EpisodeIterator: hand out episodes (design rows) in an order that keeps switches rare.

After habitat-lab's ``EpisodeIterator``: cycling, shuffling, grouping by a key that
is expensive to switch (the scene), a cap on how many consecutive episodes or steps
one group may take (the step cap jittered per switch, so parallel workers do not all
switch at once), sampling a subset, and jumping to an episode by id or index.

Differences on purpose: the seed is a real seed when it is 0 (``seed is not None``),
and the iterator keeps its own Generator instead of seeding the global ``random`` /
``numpy.random`` state.

>>> it = EpisodeIterator(["a1", "b1", "a2"], group_by=lambda e: e[0], cycle=False)
>>> list(it)
['a1', 'a2', 'b1']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np

from varirec.errors import UnknownNameError
from varirec.sampling.streams import as_generator
from varirec.variations.overrides import nearest_names

__all__ = ["EpisodeIterator"]

T = TypeVar("T")


class EpisodeIterator(Generic[T]):
    """Iterate over ``episodes`` with habitat's scheduling options.

    Args:
        episodes: the episodes (design rows, configs, ...).
        cycle: start again when all were handed out, instead of stopping.
        shuffle: shuffle (groups, then episodes within them) when cycling and at start.
        group_by: ``key(episode)``; episodes with one key are handed out consecutively,
            groups in the order of their first episode. None: no grouping.
        max_repeat_episodes: consecutive episodes of one group before a forced switch
            (-1: no cap).
        max_repeat_steps: consecutive steps (counted by :meth:`step_taken`) of one group
            before a forced switch (-1: no cap); jittered by ``step_repetition_range``.
        num_episode_sample: keep a random subset of this many episodes (-1: all).
        step_repetition_range: the step cap is drawn uniformly in
            ``[1 - r, 1 + r] * max_repeat_steps`` at every switch.
        seed: the iterator's own random stream (0 is a seed like any other).
        id_of: ``id(episode)`` for :meth:`set_next_by_id` (default: the index).
    """

    def __init__(
        self,
        episodes: Sequence[T],
        *,
        cycle: bool = True,
        shuffle: bool = False,
        group_by: Callable[[T], Hashable] | None = None,
        max_repeat_episodes: int = -1,
        max_repeat_steps: int = -1,
        num_episode_sample: int = -1,
        step_repetition_range: float = 0.2,
        seed: int | np.random.Generator | None = None,
        id_of: Callable[[T], Hashable] | None = None,
    ) -> None:
        episodes = list(episodes)
        if not episodes:
            raise ValueError("`episodes` must not be empty; give at least one episode")
        for name, value in (
            ("max_repeat_episodes", max_repeat_episodes),
            ("max_repeat_steps", max_repeat_steps),
        ):
            if value == 0 or value < -1:
                raise ValueError(f"`{name}` must be -1 (no cap) or >= 1, got {value}")
        if not 0.0 <= step_repetition_range < 1.0:
            raise ValueError(
                f"`step_repetition_range` must be in [0, 1), got {step_repetition_range}"
            )
        self.rng = as_generator(seed)
        if num_episode_sample != -1:
            if not 1 <= num_episode_sample <= len(episodes):
                raise ValueError(
                    f"`num_episode_sample` must be -1 or in [1, {len(episodes)}], "
                    f"got {num_episode_sample}"
                )
            keep = np.sort(self.rng.choice(len(episodes), num_episode_sample, replace=False))
            episodes = [episodes[i] for i in keep]
        self.episodes = episodes
        self.cycle, self.shuffle = cycle, shuffle
        self.group_by = group_by
        self.max_repeat_episodes = max_repeat_episodes
        self.max_repeat_steps = max_repeat_steps
        self.step_repetition_range = step_repetition_range
        self._keys = [group_by(e) if group_by else None for e in episodes]
        self._ids = [id_of(e) if id_of else i for i, e in enumerate(episodes)]
        self._queue: deque[int] = deque(self._ordered(range(len(episodes))))
        self._current_key: Hashable = object()
        self._repeat_episodes = 0
        self._repeat_steps = 0
        self._step_cap = self._draw_step_cap()

    def _ordered(self, indices: Sequence[int] | range) -> list[int]:
        order = list(indices)
        if self.shuffle:
            order = [order[i] for i in self.rng.permutation(len(order))]
        if self.group_by is None:
            return order
        groups: dict[Hashable, list[int]] = {}
        for i in order:
            groups.setdefault(self._keys[i], []).append(i)
        return [i for members in groups.values() for i in members]

    def _draw_step_cap(self) -> int:
        if self.max_repeat_steps < 0:
            return -1
        r = self.step_repetition_range
        return max(1, round(self.rng.uniform(1 - r, 1 + r) * self.max_repeat_steps))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if not self._queue:
            if not self.cycle:
                raise StopIteration
            self._queue.extend(self._ordered(range(len(self.episodes))))
        self._switch_if_due()
        index = self._queue.popleft()
        key = self._keys[index]
        if key != self._current_key:
            self._current_key = key
            self._repeat_episodes = 0
            self._repeat_steps = 0
            self._step_cap = self._draw_step_cap()
        self._repeat_episodes += 1
        return self.episodes[index]

    def take(self, count: int) -> list[T]:
        """The next ``count`` episodes (fewer when a non-cycling iterator runs out)."""
        out: list[T] = []
        for _ in range(count):
            try:
                out.append(next(self))
            except StopIteration:
                break
        return out

    def step_taken(self, count: int = 1) -> None:
        """Count steps taken in the current group (for ``max_repeat_steps``)."""
        self._repeat_steps += count

    def _switch_if_due(self) -> None:
        if self.group_by is None or not self._queue:
            return
        over_eps = 0 < self.max_repeat_episodes <= self._repeat_episodes
        over_steps = 0 < self._step_cap <= self._repeat_steps
        if not (over_eps or over_steps) or self._keys[self._queue[0]] != self._current_key:
            return
        # Move the rest of the current group behind the other groups.
        rest = [i for i in self._queue if self._keys[i] == self._current_key]
        if len(rest) == len(self._queue):
            self._repeat_episodes = self._repeat_steps = 0  # nothing else to switch to
            return
        others = [i for i in self._queue if self._keys[i] != self._current_key]
        self._queue = deque(others + rest)

    def set_next_by_index(self, index: int) -> None:
        """Hand out ``episodes[index]`` next."""
        if not 0 <= index < len(self.episodes):
            raise IndexError(f"`index` must be in [0, {len(self.episodes)}), got {index}")
        if index in self._queue:
            self._queue.remove(index)
        self._queue.appendleft(index)

    def set_next_by_id(self, episode_id: Hashable) -> None:
        """Hand out the episode whose id (``id_of``) is ``episode_id`` next."""
        try:
            index = self._ids.index(episode_id)
        except ValueError:
            known = map(str, self._ids[:50])
            raise UnknownNameError(
                f"no episode with id {episode_id!r}; {nearest_names(str(episode_id), known)}"
            ) from None
        self.set_next_by_index(index)

    def discard(self, episode_ids: Iterable[Hashable]) -> int:
        """Drop the episodes whose ids (``id_of``) are in ``episode_ids`` from this pass
        (e.g. those that finished before a resume); returns how many were dropped.

        >>> it = EpisodeIterator(["a", "b", "c"], cycle=False, id_of=str)
        >>> it.discard(["b"]), it.take(5)
        (1, ['a', 'c'])
        """
        drop = set(episode_ids)
        before = len(self._queue)
        self._queue = deque(i for i in self._queue if self._ids[i] not in drop)
        return before - len(self._queue)

    def __len__(self) -> int:
        """Episodes left in this pass (before cycling)."""
        return len(self._queue)
