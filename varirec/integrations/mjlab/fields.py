"""Model fields of an mjlab env as the ``apply`` of varirec variations.

:class:`ModelField` writes a variation's values into one element of a MuJoCo-Warp model
field, per env (``env.sim.model.body_mass[env_ids, pole]``), and reads back what was
written (:meth:`ModelField.read`): the *applied* value, which differs from the drawn one
where the field clamps it to its physical range or where float32 rounds it.
It declares the model fields it writes (``model_fields``, ``recompute``), which the
event terms of :mod:`varirec.integrations.mjlab.events` hand to mjlab so that the field
is per env and the derived constants (``body_subtreemass`` ...) are recomputed.

:func:`model_variation` builds a :class:`~varirec.variations.Variation` that applies
to a model field.

>>> import varirec as vr
>>> mass = model_variation("pole.mass", vr.UniformCfg(low=0.05, high=0.3),
...                        field="body_mass", entity="cartpole", name="pole_1")
>>> mass.apply
ModelField('body_mass', entity='cartpole', name='pole_1', operation='abs', clamp=(1e-06, None))
>>> mass.apply.model_fields[:2], int(mass.apply.recompute)
(('body_mass', 'body_subtreemass'), 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from mjlab.managers.event_manager import RecomputeLevel, requires_model_fields

from varirec.sampling.sampler_cfgs import SamplerCfg
from varirec.variations.variation import Mode, Variation, VariationCfg

__all__ = ["PHYSICAL_LIMITS", "ModelField", "model_variation"]

Operation = Literal["abs", "scale", "add"]

# field prefix -> (the entity's find method, its names, its global indices in entity.indexing)
_ELEMENTS: dict[str, tuple[str, str, str]] = {
    "body": ("find_bodies", "body_names", "body_ids"),
    "geom": ("find_geoms", "geom_names", "geom_ids"),
    "site": ("find_sites", "site_names", "site_ids"),
    "dof": ("find_joints", "joint_names", "joint_v_adr"),
    "jnt": ("find_joints", "joint_names", "joint_ids"),
    "tendon": ("find_tendons", "tendon_names", "tendon_ids"),
    "cam": ("find_cameras", "camera_names", "cam_ids"),
    "light": ("find_lights", "light_names", "light_ids"),
    "mat": ("find_materials", "material_names", "mat_ids"),
}

# What MuJoCo must recompute after a write (mjlab's levels; the rest need none).
_RECOMPUTE: dict[str, RecomputeLevel] = {
    "body_mass": RecomputeLevel.set_const,
    "body_ipos": RecomputeLevel.set_const,
    "body_inertia": RecomputeLevel.set_const_0,
    "body_iquat": RecomputeLevel.set_const_0,
    "body_pos": RecomputeLevel.set_const_0,
    "body_quat": RecomputeLevel.set_const_0,
    "dof_armature": RecomputeLevel.set_const_0,
    "body_gravcomp": RecomputeLevel.set_const_fixed,
}

PHYSICAL_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "body_mass": (1e-6, None),  # a moving body needs a positive mass
    "body_inertia": (0.0, None),
    "dof_damping": (0.0, None),
    "dof_armature": (0.0, None),
    "dof_frictionloss": (0.0, None),
    "geom_friction": (0.0, None),
    "jnt_stiffness": (0.0, None),
}
"""The clamp that ``clamp="physical"`` applies per field (lower, upper; None: open)."""


class ModelField:
    """``apply(env, env_ids, values)`` that writes one element of a model field per env.

    Args:
        field: a MuJoCo model field with a leading element axis, e.g. ``"body_mass"``,
            ``"geom_friction"``, ``"dof_damping"`` (prefixes: body, geom, site, dof, jnt,
            tendon, cam, light, mat).
        entity: the scene entity that owns the element (``env.scene[entity]``).
        name: the element's name (or a regex) in that entity; it must match exactly one.
        axes: for a vector field, the axes written (``(0,)``: the first); the value has
            one component per axis. None: the field is scalar per element.
        operation: ``"abs"`` writes the value; ``"scale"`` / ``"add"`` combine it with the
            compiled default of the element (so nothing accumulates across resets).
        clamp: ``(low, high)`` applied to the written value (None: open), ``"physical"``
            (:data:`PHYSICAL_LIMITS` of the field, else none), or None (no clamp).
        recompute: mjlab's ``RecomputeLevel`` after the write (default: by field).
    """

    def __init__(
        self,
        field: str,
        *,
        entity: str,
        name: str,
        axes: Sequence[int] | None = None,
        operation: Operation = "abs",
        clamp: tuple[float | None, float | None] | Literal["physical"] | None = "physical",
        recompute: RecomputeLevel | None = None,
    ) -> None:
        prefix = field.split("_", 1)[0] if isinstance(field, str) else None
        if prefix not in _ELEMENTS:
            raise ValueError(
                f"`field` must be a model field of a body, geom, site, dof, jnt, tendon, cam, "
                f"light or mat, got {field!r}; e.g. field='body_mass'"
            )
        if operation not in ("abs", "scale", "add"):
            raise ValueError(
                f"`operation` must be 'abs', 'scale' or 'add', got {operation!r}; "
                "'scale' multiplies the compiled default"
            )
        if clamp == "physical":
            clamp = PHYSICAL_LIMITS.get(field)
        if clamp is not None and (
            not isinstance(clamp, tuple)
            or len(clamp) != 2
            or any(e is not None and not _finite(e) for e in clamp)
        ):
            raise ValueError(
                f"`clamp` must be (low, high) with None for an open end, 'physical' or None, "
                f"got {clamp!r}; e.g. clamp=(0.0, None)"
            )
        if clamp is not None and None not in clamp and clamp[0] > clamp[1]:
            raise ValueError(
                f"`clamp` {clamp!r} has its low end above its high end: every value would "
                f"be {clamp[1]!r}; pass ({clamp[1]!r}, {clamp[0]!r})"
            )
        self.field = field
        self.entity = entity
        self.name = name
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        self.operation: Operation = operation
        self.clamp = clamp
        level = _RECOMPUTE.get(field, RecomputeLevel.none) if recompute is None else recompute
        # mjlab's own decorator says which derived fields the level rewrites.
        marker = requires_model_fields(field, recompute=level)(lambda: None)
        self.model_fields: tuple[str, ...] = tuple(marker.model_fields)
        self.recompute = RecomputeLevel(level)
        self._resolved: dict[int, int] = {}  # id(env) -> the element's global index

    @property
    def components(self) -> int:
        """Components of a value: one per written axis (1 for a scalar field)."""
        return 1 if self.axes is None else len(self.axes)

    def resolve(self, env: Any) -> int:
        """The element's global index in the model, checked against ``env``'s scene."""
        cached = self._resolved.get(id(env))
        if cached is not None:
            return cached
        entities = env.scene.entities
        if self.entity not in entities:
            raise ValueError(
                f"ModelField({self.field!r}): the scene has no entity {self.entity!r}; "
                f"pick one of {sorted(entities)}"
            )
        ent = entities[self.entity]
        finder, listing, index = _ELEMENTS[self.field.split("_", 1)[0]]
        try:
            local, names = getattr(ent, finder)(self.name)
        except ValueError:  # mjlab raises when nothing matches
            local, names = [], []
        if len(local) != 1:
            raise ValueError(
                f"ModelField({self.field!r}): name {self.name!r} must match exactly one element "
                f"of entity {self.entity!r}, matched {list(names)}; its {listing}: "
                f"{list(getattr(ent, listing))} (one variation per element)"
            )
        gid = int(getattr(ent.indexing, index)[local[0]])
        shape = tuple(getattr(env.sim.get_default_field(self.field), "shape", ()))
        model = getattr(env.sim.model, self.field, None)
        if model is not None and len(model.shape) != len(shape) + 1:
            # MuJoCo-Warp gives a field a world axis only where it can differ per world.
            raise ValueError(
                f"ModelField({self.field!r}): MuJoCo-Warp keeps {self.field!r} one for every "
                "env (it has no per-world copy, so it cannot vary per env); vary a field "
                "that it batches (e.g. body_mass, geom_friction, dof_damping)"
            )
        if self.axes is not None and (len(shape) < 2 or max(self.axes) >= shape[-1]):
            raise ValueError(
                f"ModelField({self.field!r}): axes {self.axes} do not exist in a field of shape "
                f"{shape} per model; pick axes below {shape[-1] if len(shape) > 1 else 0}"
            )
        if self.axes is None and len(shape) > 1:
            raise ValueError(
                f"ModelField({self.field!r}) is a vector field ({shape[-1]} values per element); "
                "say which axes the value sets, e.g. axes=(0,)"
            )
        self._resolved[id(env)] = gid
        return gid

    def targets(self, env: Any) -> set[tuple[str, int, int | None]]:
        """The model entries this field writes: ``(field, element, axis)`` each."""
        gid = self.resolve(env)
        return {(self.field, gid, a) for a in (self.axes or (None,))}

    @staticmethod
    def after_writes(env: Any, fields: list[ModelField]) -> None:
        """Bring the model's derived constants up to date after ``fields`` wrote outside
        mjlab's event manager (a replay): the manager recomputes them after its events,
        once, at the strongest level any wrote."""
        level = max((f.recompute for f in fields), default=RecomputeLevel.none)
        if level != RecomputeLevel.none:
            env.sim.recompute_constants(level)

    def check_per_env(self, env: Any) -> None:
        """Refuse a field that mjlab did not expand per env (every world would share it)."""
        if self.field not in env.sim.expanded_fields:
            raise ValueError(
                f"model field {self.field!r} is shared by every env in this mjlab env: declare "
                "it through an event term's model_fields (varirec's event terms do this for "
                "variations added by varirec.integrations.mjlab.instrument)"
            )

    def _index(self, env: Any, env_ids: Any) -> tuple[Any, ...]:
        gid = self.resolve(env)
        field = getattr(env.sim.model, self.field)
        rows = (
            torch.arange(field.shape[0], device=field.device)
            if env_ids is None
            else torch.as_tensor(env_ids, device=field.device).reshape(-1).long()
        )
        if self.axes is None:
            return (rows, gid)
        axes = torch.as_tensor(self.axes, device=field.device)
        return (rows[:, None], gid, axes[None, :])

    def __call__(self, env: Any, env_ids: Any, values: Any) -> None:
        field = getattr(env.sim.model, self.field)
        idx = self._index(env, env_ids)
        n = len(idx[0])
        v = torch.as_tensor(values, dtype=field.dtype, device=field.device)
        v = v.reshape(-1, self.components).expand(n, self.components)  # a build row: all envs
        if self.operation != "abs":
            default = env.sim.get_default_field(self.field)[idx[1]]
            if self.axes is not None:
                default = default[list(self.axes)]
            v = v * default if self.operation == "scale" else v + default
        if self.clamp is not None and self.clamp != (None, None):
            low, high = self.clamp
            v = v.clamp(min=low, max=high)
        field[idx] = v if self.axes is not None else v[:, 0]

    def read(self, env: Any, env_ids: Any) -> np.ndarray:
        """The values in the model for ``env_ids`` (None: all), ``(n, components)`` float64."""
        field = getattr(env.sim.model, self.field)
        out = field[self._index(env, env_ids)]
        return out.reshape(out.shape[0], -1).double().cpu().numpy()

    def __repr__(self) -> str:
        axes = "" if self.axes is None else f", axes={self.axes}"
        return (
            f"ModelField({self.field!r}, entity={self.entity!r}, name={self.name!r}{axes}, "
            f"operation={self.operation!r}, clamp={self.clamp!r})"
        )


def _finite(x: object) -> bool:
    """Whether ``x`` is a finite real number (a bool is 0 or 1; text is none)."""
    return isinstance(x, int | float | np.integer | np.floating | np.bool_) and bool(np.isfinite(x))


def model_variation(
    key: str,
    sampler: SamplerCfg,
    *,
    field: str,
    entity: str,
    name: str,
    mode: Mode = "reset",
    interval_steps: tuple[int, int] = (50, 50),
    **field_options: Any,
) -> Variation:
    """A variation whose values go to a model field (see :class:`ModelField`).

    ``mode`` is varirec's: ``build`` runs as an mjlab *startup* event (one value for all
    envs), ``reset`` as a *reset* event, ``interval`` as an *interval* event every
    ``interval_steps`` env steps (converted to mjlab's seconds).
    """
    apply = ModelField(field, entity=entity, name=name, **field_options)
    if sampler.categorical and any(not _finite(c) for c in sampler.categories):
        raise ValueError(
            f"variation {key!r}: a model field takes numbers, but the sampler draws "
            f"{list(sampler.categories)!r}; give numeric choices"
        )
    shape = tuple(sampler.shape)
    want = () if apply.axes is None or len(apply.axes) == 1 else (len(apply.axes),)
    if shape != want and not (apply.axes is not None and len(apply.axes) == 1 and shape == (1,)):
        raise ValueError(
            f"variation {key!r}: the sampler draws values of shape {shape}, but {apply!r} "
            f"writes {apply.components} value(s) per env; give a sampler of shape {want}"
        )
    cfg = VariationCfg(sampler=sampler, mode=mode, interval_steps=interval_steps)
    return Variation(key, cfg, apply)
