"""One keyed draw for many samplers at once: k envs x C columns, numpy or torch.

A reset draws every enabled reset-mode variation for the same k envs. Instead of one
hash and one inverse CDF per variation, :class:`ColumnPlan` lays the variations'
components side by side as C columns, hashes all k x C uniforms in one SplitMix64
pass (the same keys as :class:`~varirec.sampling.streams.CounterStream`: run seed and
variation key, env, episode, draw_seq, component), and runs each distribution kind's
inverse CDF once over its columns. The values are bit-identical to the per-sampler
draws, in numpy and in torch on any device: the hash is integer arithmetic (in torch
on int64, whose multiplication wraps, with logical right shifts done by masking), and
the inverse CDFs use :mod:`varirec.sampling.portable`.

>>> import numpy as np
>>> from varirec.sampling.sampler_cfgs import NormalCfg, UniformCfg
>>> from varirec.sampling.streams import CounterStream
>>> cfgs = [UniformCfg(low=1, high=2), NormalCfg(mean=(0, 0), std=(1, 2))]
>>> streams = [CounterStream(0, "mass"), CounterStream(0, "com")]
>>> plan = ColumnPlan(cfgs, [s.base for s in streams])
>>> ids, eps = np.array([3, 7]), np.array([0, 5])
>>> values = plan.draw(ids, eps, [0, 0], np)
>>> bool((values[1] == cfgs[1].ppf(streams[1].uniforms(ids, eps, 2))).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from varirec.arrays import device_async
from varirec.sampling import portable
from varirec.sampling.accel import kernels
from varirec.sampling.cfg_base import SamplerCfg
from varirec.sampling.constants import BELOW_ONE, TO_UNIT
from varirec.sampling.discrete_cfgs import BernoulliCfg, ChoiceCfg, IntegerCfg
from varirec.sampling.sampler_cfgs import (
    ConstantCfg,
    DesignCfg,
    LogUniformCfg,
    NormalCfg,
    TruncNormalCfg,
    UniformCfg,
    gauss_form,
    gauss_params,
    gauss_values,
)
from varirec.sampling.streams import _GOLDEN, _M1, _M2, _SECOND, _mix, _to_unit

__all__ = ["ColumnPlan", "keyed_uniforms"]

_U64 = 1 << 64


def _s64(c: int | np.uint64) -> int:
    """A uint64 constant as the int64 with the same bits (torch has no uint64 math)."""
    c = int(c)
    return c - _U64 if c >= 1 << 63 else c


def _srl(z: Any, s: int) -> Any:
    """Logical right shift of int64 ``z`` (torch shifts arithmetically)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix_t(z: Any) -> Any:
    z = z ^ _srl(z, 30)
    z = z * _s64(_M1)
    z = z ^ _srl(z, 27)
    z = z * _s64(_M2)
    return z ^ _srl(z, 31)


def keyed_uniforms(
    bases: Any,
    comps: Any,
    env_ids: Any,
    episodes: Any,
    draw_seq: Any,
    xp: Any,
    vec: np.ndarray | None = None,
) -> Any:
    """Uniforms of shape ``(k, C)``: row i, column c keyed by ``(bases[c], env_ids[i],
    episodes[i], draw_seq[i, c], comps[c])``; ``draw_seq`` None means all zero
    (``vec``: the columns whose ``comps`` are not 0, if known).

    ``xp`` is numpy (arrays of uint64 bases, int64 keys) or torch (int64 tensors on
    the device, the bases as int64 with the same bits).
    """
    if xp is np:
        kern = kernels()
        if kern is not None:
            out = np.empty((len(env_ids), len(bases)))
            with_seq = draw_seq is not None
            kern.keyed_columns(
                bases,
                comps,
                env_ids.astype(np.int64, copy=False),
                episodes.astype(np.int64, copy=False),
                draw_seq.astype(np.int64, copy=False) if with_seq else _NO_SEQ,
                with_seq,
                out,
            )
            return out
        word = env_ids.astype(np.int64, copy=False).view(np.uint64) << np.uint64(32)
        word |= episodes.astype(np.int64, copy=False).view(np.uint64) & np.uint64(0xFFFFFFFF)
        word *= _GOLDEN
        h = _mix(word[:, None] ^ bases[None, :])
        if draw_seq is None:
            if vec is None:
                vec = np.flatnonzero(comps)
            if vec.size:
                h[:, vec] = _mix(h[:, vec] ^ (comps[vec] * _SECOND))
        else:
            extra = (draw_seq.astype(np.uint64) << np.uint64(16)) | comps
            h2 = _mix(h ^ (extra * _SECOND))
            h = np.where(extra == 0, h, h2)
        return _to_unit(h)
    word = (env_ids << 32) | (episodes & 0xFFFFFFFF)
    word = word * _s64(_GOLDEN)
    h = _mix_t(word[:, None] ^ bases[None, :])
    extra = comps[None, :] if draw_seq is None else (draw_seq << 16) | comps[None, :]
    h2 = _mix_t(h ^ (extra * _s64(_SECOND)))
    h = xp.where(extra == 0, h, h2)
    u = _srl(h, 11).to(xp.float64)
    return xp.clamp((u + 0.5) * TO_UNIT, max=BELOW_ONE)  # as streams._to_unit


def _inverse_cdf(kind: str, x: Any, p: dict[str, Any], xp: Any) -> Any:
    """The values of a block ``x`` of one continuous kind's uniforms (a new array), in
    numpy or torch: the one reference the compiled kernels match."""
    if kind == "uniform":
        return p["low"] + p["span"] * x
    if kind == "loguniform":
        return portable.exp(p["lo"] + p["span"] * x, xp)
    if kind == "gauss":  # normal and truncated normal: one quantile pass
        return gauss_values(x, p, xp)
    return xp.broadcast_to(p["value"], x.shape)  # constant


_NO_SEQ = np.zeros((1, 1), np.int64)
_FUSED = {
    "uniform": (0, ("low", "span")),
    "loguniform": (1, ("lo", "span")),
    "gauss": (2, ()),
    "constant": (3, ("value",)),
}
"""Per continuous kind: its code in ``compiled.plan_columns`` and its parameter rows."""
_CONTINUOUS = (UniformCfg, LogUniformCfg, NormalCfg, TruncNormalCfg, ConstantCfg)
_CODED = (IntegerCfg, ChoiceCfg, BernoulliCfg)


class ColumnPlan:
    """How a list of sampler cfgs maps onto the columns of one keyed draw.

    Built once per tuple of cfgs (an ``apply_cfg`` makes a new plan); the parameters
    of every column are gathered here, on the host, and moved to a device once.

    Args:
        cfgs: one sampler cfg per variation, in draw order.
        bases: each variation's stream base (:attr:`CounterStream.base`).
    """

    def __init__(self, cfgs: Sequence[SamplerCfg], bases: Sequence[np.uint64]) -> None:
        self.cfgs = list(cfgs)
        widths = [c.width for c in self.cfgs]
        self.starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        self.width = int(self.starts[-1])
        self.var_of_col = np.repeat(np.arange(len(widths)), widths)
        self.comps = np.concatenate([np.arange(w, dtype=np.uint64) for w in widths] or [[]])
        self.comps = self.comps.astype(np.uint64)
        self.bases = np.repeat(np.array(bases, dtype=np.uint64), widths)
        self._vec = np.flatnonzero(self.comps)  # components past the first
        self.groups: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        cols: dict[str, list[int]] = {}
        params: dict[str, dict[str, list[float]]] = {}
        for j, cfg in enumerate(self.cfgs):
            kind = self._kind(cfg)
            s, e = int(self.starts[j]), int(self.starts[j + 1])
            cols.setdefault(kind, []).extend(range(s, e))
            p = params.setdefault(kind, {})
            for name, value in self._params(kind, cfg).items():
                p.setdefault(name, []).extend(np.broadcast_to(value, (e - s,)).tolist())
        for kind, c in cols.items():
            self.groups[kind] = (
                np.array(c, np.int64),
                {k: np.array(v) for k, v in params[kind].items()},
            )
        gauss = self.groups.get("gauss")
        self._gauss_form = None if gauss is None else gauss_form(gauss[1])
        """The gauss columns' parameters as the compiled kernel takes them."""
        # A kind's columns as a slice where they are adjacent (the usual case): a view,
        # not a gather and a scatter per kind.
        self._where = {
            kind: slice(c[0], c[-1] + 1) if c == list(range(c[0], c[-1] + 1)) else c_arr
            for kind, (c_arr, _) in self.groups.items()
            for c in [c_arr.tolist()]
        }
        # Coded and custom columns read the uniforms after the inverse CDFs ran: only
        # then are they kept in a copy; else the uniforms become the values in place.
        self._keep_u = bool({"coded", "custom"} & set(self.groups))
        self.continuous = set(self.groups) <= {"uniform", "loguniform", "gauss", "constant"}
        """Every column is a float value: the matrix of :meth:`draw_matrix` holds them all."""
        self._on_device: dict[Any, Any] = {}
        self._lookup_on: dict[tuple[int, str], tuple[Any, Any]] = {}  # per device, once
        self.fused_form = self._fused_form() if self.continuous else None
        """Every column's kind and parameters, as the compiled one-pass draw takes them."""
        # Category edges (the inverse CDF of the probabilities) and values, per coded cfg.
        self._lookup = {
            id(c): (np.cumsum(c.probs)[:-1], np.asarray(c.categories))
            for c in self.cfgs
            if isinstance(c, ChoiceCfg | BernoulliCfg)
        }
        self._kinds = [self._kind(c) for c in self.cfgs]
        self._vector = [bool(c.shape) for c in self.cfgs]
        self._bounds = [
            (int(a), int(b)) for a, b in zip(self.starts[:-1], self.starts[1:], strict=True)
        ]

    @staticmethod
    def _kind(cfg: SamplerCfg) -> str:
        if isinstance(cfg, DesignCfg):
            return "design"
        if type(cfg) in (NormalCfg, TruncNormalCfg):
            return "gauss"
        if type(cfg) in _CONTINUOUS or type(cfg) in _CODED:
            return "coded" if type(cfg) in _CODED else type(cfg).kind
        return "custom"  # a user's cfg: its own ppf, on the host

    @staticmethod
    def _params(kind: str, cfg: Any) -> dict[str, Any]:
        if kind in ("uniform", "loguniform"):  # the cfg's own (cached) low and span
            low, span = cfg._cached("affine", cfg._affine)
            return {"low" if kind == "uniform" else "lo": low, "span": span}
        if kind == "gauss":
            return gauss_params(cfg)
        if kind == "constant":
            return {"value": cfg._arrays("value")[0]}
        return {}

    def _fused_form(self) -> np.ndarray:
        """The ``(10, C)`` form of :func:`~varirec.sampling.compiled.plan_columns`: row 0
        each column's kind code, then its parameters."""
        form = np.zeros((10, self.width))
        for kind, (cols, p) in self.groups.items():
            code, names = _FUSED[kind]
            form[0, cols] = code
            if kind == "gauss":
                form[1:, cols] = self._gauss_form
            for r, name in enumerate(names, start=1):
                form[r, cols] = p[name]
        return form

    def _device_params(self, xp: Any, device: Any) -> dict[str, tuple[Any, dict[str, Any]]]:
        if xp is np:
            return self.groups
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = {
                kind: (
                    xp.as_tensor(c, device=device),
                    {k: xp.as_tensor(v, device=device) for k, v in p.items()},
                )
                for kind, (c, p) in self.groups.items()
            }
            self._on_device[key]["#keys"] = (
                xp.as_tensor(self.bases.view(np.int64), device=device),
                {"comps": xp.as_tensor(self.comps.astype(np.int64), device=device)},
            )
        return self._on_device[key]

    def uniforms(
        self,
        env_ids: Any,
        episodes: Any,
        draw_seq: Sequence[Any] | None,
        xp: Any,
        device: Any = None,
    ) -> Any:
        """The ``(k, C)`` keyed uniforms; ``draw_seq`` holds one entry per cfg (0 or k),
        or is None (every cfg's first draw of the episode)."""
        ds = None
        if draw_seq is not None and not all(type(d) is int and d == 0 for d in draw_seq):
            ds = np.stack(
                [np.broadcast_to(np.asarray(d, np.int64), (len(env_ids),)) for d in draw_seq],
                axis=1,
            )[:, self.var_of_col]
        if xp is np:
            return keyed_uniforms(self.bases, self.comps, env_ids, episodes, ds, np, self._vec)
        on = self._device_params(xp, device)
        bases, comps = on["#keys"][0], on["#keys"][1]["comps"]
        if ds is not None:  # a redraw within an episode: its counts, without a wait
            ds = device_async(np.ascontiguousarray(ds), device)
        return keyed_uniforms(bases, comps, env_ids, episodes, ds, xp)

    def columns(self, u: Any, xp: Any, device: Any = None) -> Any:
        """Every continuous column through its inverse CDF, and every coded column
        (integer, choice, bernoulli) as its category code (float); others untouched."""
        if xp is np:
            return self._columns_np(u)
        out = u.clone()
        for kind, (cols, p) in self._device_params(xp, device).items():
            if kind not in ("design", "custom", "coded", "#keys"):  # coded: per cfg in split
                out[:, cols] = _inverse_cdf(kind, u[:, cols], p, xp)
        return out

    def _columns_np(self, u: np.ndarray) -> np.ndarray:
        """:meth:`columns` in numpy: adjacent columns as views, the affine kinds in
        place (``low + span * x`` and ``x * span + low`` round alike)."""
        out = u.copy() if self._keep_u else u
        kern = kernels()
        for kind, (_, p) in self.groups.items():
            if kind in ("design", "custom", "coded"):
                continue
            where = self._where[kind]
            view = isinstance(where, slice)
            x = out[:, where]
            if kern is not None and kind != "constant":
                self._compiled_kind(kern, kind, x, p)
                if not view:
                    out[:, where] = x
                continue
            if kind == "uniform" and view:
                x *= p["span"]
                x += p["low"]
                continue
            out[:, where] = _inverse_cdf(kind, x, p, np)
        return out

    def _compiled_kind(self, kern: Any, kind: str, x: np.ndarray, p: dict[str, np.ndarray]) -> None:
        """:meth:`_columns_np` of one kind, in place in ``x``, by a compiled kernel."""
        if kind == "uniform":
            kern.affine_columns(x, p["low"], p["span"])
        elif kind == "loguniform":
            kern.exp_columns(x, p["lo"], p["span"])
        else:
            kern.gauss_columns(x, self._gauss_form)

    def split(
        self, u: Any, out: Any, xp: Any, sample_ids: Any = None, device: Any = None
    ) -> list[Any]:
        """The values of each cfg, shaped ``(k, *cfg.shape)``, from :meth:`columns`."""
        values = []
        host_u = None
        for j, cfg in enumerate(self.cfgs):
            s, e = self._bounds[j]
            kind = self._kinds[j]
            if kind == "design":
                rows = np.asarray(sample_ids if sample_ids is not None else np.zeros(len(u), int))
                if np.any(rows >= len(cfg.values)):
                    bad = rows[rows >= len(cfg.values)][:5]
                    raise ValueError(
                        f"`sample_ids` must be design rows in [0, {len(cfg.values)}), got "
                        f"{bad.tolist()}; the design has fewer rows than the schedule asked for"
                    )
                v = cfg.values[np.maximum(rows, 0)]
                values.append(v if xp is np else device_async(np.ascontiguousarray(v), device))
            elif kind == "custom":
                host_u = u if xp is np else (host_u if host_u is not None else u.cpu().numpy())
                values.append(cfg.ppf(host_u[:, s:e]))
            elif kind == "coded":
                values.append(self._coded(cfg, u[:, s], xp, device))
            else:
                values.append(out[:, s:e] if self._vector[j] else out[:, s])
        return values

    def _coded(self, cfg: Any, x: Any, xp: Any, device: Any) -> Any:
        if isinstance(cfg, IntegerCfg):
            k = cfg.high - cfg.low + 1
            if xp is np:
                return np.minimum((x * k).astype(np.int64), k - 1) + cfg.low
            return xp.clamp((x * k).to(xp.int64), max=k - 1) + cfg.low
        edges, cats = self._lookup[id(cfg)]
        if xp is np:
            return cats[np.searchsorted(edges, x, side="right")]
        key = (id(cfg), str(device))
        on = self._lookup_on.get(key)
        if on is None:  # sent once: a copy per reset would wait for the queued work
            text = cats.dtype.kind in "USO"
            on = self._lookup_on[key] = (
                xp.as_tensor(edges, device=device),
                None if text else xp.as_tensor(cats, device=device),
            )
        codes = (x[:, None] >= on[0][None, :]).sum(1)
        if on[1] is None:
            return cats[codes.cpu().numpy()]  # text stays on the host: read back, waited for
        return on[1][codes]

    def draw(
        self,
        env_ids: Any,
        episodes: Any,
        draw_seq: Sequence[Any],
        xp: Any,
        sample_ids: Any = None,
        device: Any = None,
    ) -> list[Any]:
        """Every cfg's values for these keys (numpy, or torch tensors on ``device``)."""
        u, out = self.draw_columns(env_ids, episodes, draw_seq, xp, device)
        return self.split(u, out, xp, sample_ids, device)

    def draw_columns(
        self,
        env_ids: Any,
        episodes: Any,
        draw_seq: Sequence[Any] | None,
        xp: Any,
        device: Any = None,
    ) -> tuple[Any, Any]:
        """The keyed uniforms and :meth:`columns` of them, from which :meth:`split` takes
        each cfg's values (views). When :attr:`continuous`, the columns are the values
        of every cfg side by side (and may be the uniforms' own array)."""
        if xp is np and self.fused_form is not None and draw_seq is None:
            kern = kernels()
            if kern is not None:  # one pass: the hash and every inverse CDF
                out = np.empty((len(env_ids), self.width))
                kern.plan_columns(
                    self.bases,
                    self.comps,
                    self.fused_form,
                    env_ids.astype(np.int64, copy=False),
                    episodes.astype(np.int64, copy=False),
                    out,
                )
                return out, out
        u = self.uniforms(env_ids, episodes, draw_seq, xp, device)
        return u, self.columns(u, xp, device)

    @property
    def eager(self) -> bool:
        """Whether :meth:`split` can refuse (design rows out of range) or run a user's
        code (a custom cfg's ppf): then it should run where the draw is made."""
        return bool({"design", "custom"} & set(self.groups))
