"""mjlab integration: varirec variations as mjlab event terms, outcomes through an mjlab
recorder term, both added to an env cfg by one call.

Needs the optional extra ``pip install "varirec[mjlab]"`` (install ``torch==2.13.0`` and
``torchvision==0.28.0`` first, see the README); ``import varirec`` never imports this.

- :func:`instrument` — adds varirec's event terms (``startup`` / ``reset`` /
  ``interval`` / ``step``) and its recorder term to an mjlab env cfg; returns the
  :class:`MjlabRecording`.
- :func:`model_variation`, :class:`ModelField` — a variation whose values go into a
  model field per env (``body_mass``, ``geom_friction``, ``dof_damping`` ...), clamped to
  the field's physical range; the applied value is read back and recorded beside the
  drawn one (episode columns ``<factor>@applied``).
- :func:`time_out_success` — success = the episode ran to its time limit without a
  failure termination.

Only mjlab's public extension points are used: ``EventTermCfg`` with class-based terms
that declare their ``model_fields``, ``RecorderTermCfg`` with a ``RecorderTerm``
subclass. mjlab's own events (the task's reset of the joint state) keep drawing from
torch's global RNG; varirec's draws never touch it.

>>> import varirec as vr
>>> mass = model_variation("pole.mass", vr.UniformCfg(low=0.05, high=0.3),
...                        field="body_mass", entity="cartpole", name="pole_1")
>>> mass.mode, mass.apply.field
('reset', 'body_mass')

With an env cfg: ``recording = instrument(cfg, [mass], output="runs/", seed=0)``, then
``env = ManagerBasedRlEnv(cfg, device="cpu")``; ``env.close()`` closes the run (see the
README, "GPU simulators").
"""

from __future__ import annotations

try:
    import mjlab  # noqa: F401
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "varirec.integrations.mjlab needs mjlab; install torch==2.13.0 and "
        'torchvision==0.28.0, then pip install "varirec[mjlab]"'
    ) from exc

from varirec.integrations.mjlab.fields import PHYSICAL_LIMITS, ModelField, model_variation
from varirec.integrations.mjlab.instrument import instrument, time_out_success
from varirec.integrations.mjlab.session import APPLIED_SUFFIX, AppliedTerm, MjlabRecording

__all__ = [
    "APPLIED_SUFFIX",
    "PHYSICAL_LIMITS",
    "AppliedTerm",
    "MjlabRecording",
    "ModelField",
    "instrument",
    "model_variation",
    "time_out_success",
]
