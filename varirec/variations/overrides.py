"""Hydra-style ``dotted.path=value`` overrides of variation cfgs.

``cube.mass.sampler.high=2.0`` names the variation ``cube.mass`` (the longest known
key that prefixes the path) and the field path ``sampler.high`` inside its cfg. The
new cfg is built with :func:`dataclasses.replace`, so the cfg's own validation runs.

>>> split_override("cube.mass.enabled=false", {"cube.mass": None})
('cube.mass', ('enabled',), False)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable
from typing import Any

from varirec.errors import UnknownNameError
from varirec.sampling.sampler_cfgs import SamplerCfg, cfg_from_dict

__all__ = ["apply_override", "nearest_names", "parse_value", "split_override"]


def nearest_names(name: str, known: Iterable[str]) -> str:
    """A sentence naming the known names closest to ``name`` (for error messages)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return f"did you mean {', '.join(repr(c) for c in close)}? (known: {', '.join(known)})"
    return f"known: {', '.join(known) if known else '(none)'}"


def parse_value(text: str) -> Any:
    """``true``/``false``/``null``, JSON, or else the plain string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def split_override(text: str, keys: Iterable[str]) -> tuple[str, tuple[str, ...], Any]:
    """Split ``path=value`` into (variation key, field path, parsed value)."""
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"an override must look like 'cube.mass.sampler.high=2.0', got {text!r}")
    path, _, raw = text.partition("=")
    path = path.strip()
    keys = list(keys)
    matches = [k for k in keys if path == k or path.startswith(k + ".")]
    if not matches:
        raise UnknownNameError(
            f"override {text!r} names no known variation; {nearest_names(path, keys)}"
        )
    key = max(matches, key=len)
    rest = tuple(p for p in path[len(key) :].split(".") if p)
    if not rest:
        raise ValueError(
            f"override {text!r} names the variation {key!r} but no field; "
            f"e.g. '{key}.enabled=false' or '{key}.sampler.high=2.0'"
        )
    return key, rest, parse_value(raw)


def _coerce(current: Any, value: Any) -> Any:
    if isinstance(current, SamplerCfg) and isinstance(value, dict):
        return cfg_from_dict(value)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def apply_override(obj: Any, path: tuple[str, ...], value: Any, text: str = "") -> Any:
    """A copy of dataclass ``obj`` with the field at ``path`` set to ``value``."""
    name, rest = path[0], path[1:]
    fields = {f.name for f in dataclasses.fields(obj)}
    if name not in fields:
        raise UnknownNameError(
            f"override {text!r}: {type(obj).__name__} has no field {name!r}; "
            f"{nearest_names(name, fields)}"
        )
    current = getattr(obj, name)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"override {text!r}: {name!r} is a value, it has no field {rest[0]!r}")
        new = apply_override(current, rest, value, text)
    else:
        new = _coerce(current, value)
    try:
        return dataclasses.replace(obj, **{name: new})
    except (TypeError, ValueError) as exc:
        exc.add_note(f"while applying override {text!r}")
        raise
