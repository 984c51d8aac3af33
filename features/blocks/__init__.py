"""Feature blocks: one module per block, looked up by name through one registry.

Blocks are imported lazily so that a profile without the transformer block
never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from features.blocks.base import FeatureBlock, FeatureMatrix, swap_columns

__all__ = [
    "BLOCK_REGISTRY",
    "FeatureBlock",
    "FeatureMatrix",
    "get_block_class",
    "make_block",
    "swap_columns",
]

BLOCK_REGISTRY: dict[str, str] = {
    "lengths": "features.blocks.lengths:LengthsBlock",
    "style": "features.blocks.style:StyleBlock",
    "flags": "features.blocks.flags:FlagsBlock",
    "similarity": "features.blocks.similarity:SimilarityBlock",
    "tie_cues": "features.blocks.tie_cues:TieCuesBlock",
    "tfidf": "features.blocks.tfidf:TfidfBlock",
    "word2vec": "features.blocks.word2vec:Word2VecBlock",
    "embeddings": "features.blocks.embeddings:EmbeddingsBlock",
}
"""YAML block name -> ``module:Class``."""


def get_block_class(name: str) -> type[FeatureBlock]:
    """The block class registered under ``name``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    if name not in BLOCK_REGISTRY:
        raise ValueError(
            f"unknown feature block {name!r}; valid blocks are "
            f"{sorted(BLOCK_REGISTRY)}."
        )
    module_name, class_name = BLOCK_REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_block(name: str, params: Mapping[str, Any] | None = None) -> FeatureBlock:
    """Instantiate block ``name`` with ``params``; unknown params are an error."""
    cls = get_block_class(name)
    params = dict(params or {})
    valid = cls._get_param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"feature block {name!r} has no parameter(s) {unknown}; valid "
            f"parameters are {valid}."
        )
    return cls(**params)
