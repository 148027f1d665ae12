"""Stage 2, variations: a named cfg + sampler + apply, Hydra-style overrides, sets.

>>> from varirec.variations import Variation, VariationCfg
"""

from varirec.variations.variation import Mode, Variation, VariationCfg
from varirec.variations.variation_set import VariationSet

__all__ = ["Mode", "Variation", "VariationCfg", "VariationSet"]
