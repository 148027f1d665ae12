"""varirec: record what domain randomization drew, per (env, episode), and find what matters.

The core (this package) runs inside the simulator process and needs only numpy,
scipy and pyarrow. Analysis lives in the separate ``analysis`` package.

>>> import varirec
>>> mass = varirec.Variation(
...     "cube.mass", varirec.VariationCfg(sampler=varirec.UniformCfg(low=0.5, high=2.0))
... )
>>> mass.draw(env_ids=[0, 1]).shape
(2,)
"""

from __future__ import annotations

from varirec._version import __version__
from varirec.errors import (
    DatasetError,
    DesignError,
    ListenerError,
    RecorderStateError,
    UnknownNameError,
    VarirecError,
)
from varirec.sampler_cfgs import (
    BernoulliCfg,
    ChoiceCfg,
    ConstantCfg,
    DesignCfg,
    FactorSpec,
    IntegerCfg,
    LogUniformCfg,
    NormalCfg,
    SamplerCfg,
    TruncNormalCfg,
    UniformCfg,
    cfg_from_dict,
)
from varirec.samplers import DesignSampler, DrawContext, InverseCdfSampler, SampleEvent, Sampler
from varirec.streams import CounterStream, GeneratorSource
from varirec.variations import Variation, VariationCfg, VariationSet

__all__ = [
    "BernoulliCfg",
    "ChoiceCfg",
    "ConstantCfg",
    "CounterStream",
    "DatasetError",
    "DesignCfg",
    "DesignError",
    "DesignSampler",
    "DrawContext",
    "FactorSpec",
    "GeneratorSource",
    "IntegerCfg",
    "InverseCdfSampler",
    "ListenerError",
    "LogUniformCfg",
    "NormalCfg",
    "RecorderStateError",
    "SampleEvent",
    "Sampler",
    "SamplerCfg",
    "TruncNormalCfg",
    "UniformCfg",
    "UnknownNameError",
    "Variation",
    "VariationCfg",
    "VariationSet",
    "VarirecError",
    "__version__",
    "cfg_from_dict",
]
