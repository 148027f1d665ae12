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
    EnvError,
    ListenerError,
    RecorderStateError,
    UnknownNameError,
    VarirecError,
)
from varirec.recording.episodes import EpisodeTracker
from varirec.recording.manager import NullRecorderManager, RecorderManager, make_recorder_manager
from varirec.recording.recorder import VariationRecorder
from varirec.recording.terms import (
    OutcomeTerm,
    RecorderTerm,
    RecorderTermCfg,
    StepsTerm,
    VariationsTerm,
)
from varirec.sampling.sampler_cfgs import (
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
from varirec.sampling.samplers import (
    DesignSampler,
    DrawContext,
    InverseCdfSampler,
    SampleEvent,
    Sampler,
)
from varirec.sampling.streams import CounterStream, GeneratorSource
from varirec.storage import DatasetWarning, RunWriter, open_dataset
from varirec.variations.variation import Variation, VariationCfg
from varirec.variations.variation_set import VariationSet

__all__ = [
    "BernoulliCfg",
    "ChoiceCfg",
    "ConstantCfg",
    "CounterStream",
    "DatasetError",
    "DatasetWarning",
    "DesignCfg",
    "DesignError",
    "DesignSampler",
    "DrawContext",
    "EnvError",
    "EpisodeTracker",
    "FactorSpec",
    "GeneratorSource",
    "IntegerCfg",
    "InverseCdfSampler",
    "ListenerError",
    "LogUniformCfg",
    "NormalCfg",
    "NullRecorderManager",
    "OutcomeTerm",
    "RecorderManager",
    "RecorderStateError",
    "RecorderTerm",
    "RecorderTermCfg",
    "RunWriter",
    "SampleEvent",
    "Sampler",
    "SamplerCfg",
    "StepsTerm",
    "TruncNormalCfg",
    "UniformCfg",
    "UnknownNameError",
    "Variation",
    "VariationCfg",
    "VariationRecorder",
    "VariationSet",
    "VariationsTerm",
    "VarirecError",
    "__version__",
    "cfg_from_dict",
    "make_recorder_manager",
    "open_dataset",
]
