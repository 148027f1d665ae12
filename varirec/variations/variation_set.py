"""VariationSet: the variations of an env keyed by their dotted names (``cube.mass``),
with Hydra-style overrides (``cube.mass.sampler.high=2.0``) and a batch ``apply``.

>>> from varirec.sampling.sampler_cfgs import UniformCfg
>>> from varirec.variations.variation import Variation, VariationCfg
>>> mass = Variation("cube.mass", VariationCfg(sampler=UniformCfg(low=0.5, high=2.0)))
>>> variations = VariationSet([mass])
>>> variations.override("cube.mass.sampler.high=3.0")
>>> variations["cube.mass"].cfg.sampler.high
3.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from varirec.errors import UnknownNameError
from varirec.variations.clock import _changed
from varirec.variations.overrides import apply_override, nearest_names, split_override
from varirec.variations.variation import Mode, Variation, VariationCfg

__all__ = ["VariationSet"]


class VariationSet(Mapping[str, Variation]):
    """The variations of an env, keyed by their dotted names.

    Duplicate keys are refused; an unknown key raises :class:`UnknownNameError` naming
    the nearest known keys.

    Args:
        variations: the variations.
        apply_batch: ``apply_batch(env, env_ids, batch)``, called once per reset with
            the :class:`~varirec.variations.batch.ResetBatch` of every reset-mode
            variation that drew (``batch.matrix``: their values side by side;
            ``batch.value(key)``: one). Only the draws of variations whose own
            ``apply`` is None are its to apply; the others' ``apply`` runs as usual.
            Build and interval draws use each variation's ``apply``.

    >>> import numpy as np
    >>> from varirec.sampling.sampler_cfgs import UniformCfg
    >>> params = np.zeros((2, 4))
    >>> def apply_all(env, ids, batch):
    ...     params[:, ids] = batch.matrix.T   # one scatter for every variation
    >>> vs = VariationSet(
    ...     [Variation(k, VariationCfg(sampler=UniformCfg(low=1, high=2))) for k in "ab"],
    ...     apply_batch=apply_all,
    ... )
    >>> callable(vs.apply_batch)
    True
    """

    def __init__(
        self,
        variations: Iterable[Variation] = (),
        *,
        apply_batch: Callable[[Any, Any, Any], None] | None = None,
    ) -> None:
        self._items: dict[str, Variation] = {}
        self.apply_batch = apply_batch
        if isinstance(variations, Variation | str) or not isinstance(variations, Iterable):
            raise TypeError(
                f"variations must be an iterable of Variation, got {type(variations).__name__} "
                f"{variations!r:.60}; e.g. VariationSet([mass, friction])"
            )
        for v in variations:
            self.add(v)

    @property
    def apply_batch(self) -> Callable[[Any, Any, Any], None] | None:
        """Applies a whole reset batch at once (see the class docstring), or None."""
        return self._apply_batch

    @apply_batch.setter
    def apply_batch(self, fn: Callable[[Any, Any, Any], None] | None) -> None:
        if fn is not None and not callable(fn):
            raise TypeError(
                f"`apply_batch` must be callable(env, env_ids, batch) or None, got {fn!r}"
            )
        self._apply_batch = fn
        _changed()

    def add(self, variation: Variation) -> Variation:
        if not isinstance(variation, Variation):
            raise TypeError(f"expected a Variation, got {type(variation).__name__}")
        if variation.key in self._items:
            raise ValueError(
                f"a variation with key {variation.key!r} already exists; keys must be unique"
            )
        self._items[variation.key] = variation
        _changed()
        return variation

    def __getitem__(self, key: str) -> Variation:
        try:
            return self._items[key]
        except KeyError:
            raise UnknownNameError(
                f"no variation {key!r}; {nearest_names(key, self._items)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def enabled(self, mode: Mode | None = None) -> list[Variation]:
        """The enabled variations (of one mode), in insertion order."""
        return [v for v in self._items.values() if v.enabled and (mode is None or v.mode == mode)]

    def seed(self, seed: int) -> None:
        """Key every variation's draws by the run seed (see :meth:`Variation.seed`)."""
        for v in self._items.values():
            v.seed(seed)

    def override(self, *overrides: str) -> None:
        """Apply Hydra-style ``dotted.path=value`` overrides through ``apply_cfg``.

        Every override is checked before any is applied, so a bad one changes nothing.
        Values parse as JSON where they can (``2.0``, ``[1, 2]``, ``{"kind": ...}``),
        ``true``/``false`` as booleans, anything else as a string.
        """
        planned: dict[str, VariationCfg] = {}
        for text in overrides:
            key, path, value = split_override(text, self._items)
            cfg = planned.get(key, self._items[key].cfg)
            planned[key] = apply_override(cfg, path, value, text)
        for key, cfg in planned.items():
            self._items[key].apply_cfg(cfg)

    def specs(self) -> list[dict[str, Any]]:
        """Every variation's :meth:`Variation.spec`, for ``run.json``."""
        return [v.spec() for v in self._items.values()]
