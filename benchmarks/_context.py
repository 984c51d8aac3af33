"""What the benchmark sections share: options, the corpus, folds and fitted models.

A full run fits each profile on the real corpus once and lets the accuracy and
speed sections share it; the feature store under ``artifacts/bench-store``
keeps the expensive blocks (MiniLM embeddings: ~16 minutes of CPU for the
corpus) across runs, so they are paid once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._report import REPO_ROOT, relative
from benchmarks.make_scale_set import DEFAULT_CORPUS
from features import CLASSES, FeatureStore, read_battles, truncate_battles
from models import PreferenceModel, make_folds, prompt_groups, source_families
from pipelines import Config, load_config, write_csv_atomic
from pipelines.estimator import model_from_config

__all__ = [
    "FAST_BOOSTER_LIMITS",
    "BenchContext",
    "BenchOptions",
    "DEFAULT_ARENA",
    "FittedModel",
    "QUICK_OVERRIDES",
    "FAST_BOOSTERS_TEXT",
    "fast_booster_params",
    "fast_training_overrides",
]

logger = logging.getLogger(__name__)

DEFAULT_ARENA = DEFAULT_CORPUS.with_name("arena.csv")
"""The external set of the transfer section: real Chatbot Arena votes, no ties."""

QUICK_OVERRIDES: tuple[str, ...] = (
    "training.boosters=[lightgbm]",
    "training.booster_params.lightgbm.learning_rate=0.3",
    "training.booster_params.lightgbm.num_boost_round=30",
    "training.booster_params.lightgbm.early_stopping_rounds=5",
    "features.blocks.tfidf.word_max_features=300",
    "features.blocks.tfidf.char_max_features=0",
    "features.blocks.word2vec.vector_size=16",
    "features.blocks.word2vec.epochs=2",
)
"""Config overrides of ``--quick``: one small booster, small vocabularies and no
character n-grams, so the whole harness runs in minutes. Quick numbers check
the harness, not the model."""


FAST_BOOSTER_LIMITS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_boost_round": 400,
    "early_stopping_rounds": 30,
}
"""Fast boosters for comparison fits (leave-one-source-out, embedding choices):
the profile's params with at least this learning rate and at most these rounds."""

FAST_BOOSTERS_TEXT = (
    f"learning rate >= {FAST_BOOSTER_LIMITS['learning_rate']}, at most "
    f"{FAST_BOOSTER_LIMITS['num_boost_round']} rounds, early stopping "
    f"{FAST_BOOSTER_LIMITS['early_stopping_rounds']}"
)
"""How the tables describe :data:`FAST_BOOSTER_LIMITS`."""


def fast_booster_params(params: dict[str, Any]) -> dict[str, Any]:
    """A booster's params made no slower than :data:`FAST_BOOSTER_LIMITS`.

    >>> fast_booster_params({"learning_rate": 0.03, "num_boost_round": 2000})
    {'learning_rate': 0.1, 'num_boost_round': 400, 'early_stopping_rounds': 30}
    """
    merged = dict(params)
    merged["learning_rate"] = max(
        float(params.get("learning_rate", 0.0)), FAST_BOOSTER_LIMITS["learning_rate"]
    )
    for key in ("num_boost_round", "early_stopping_rounds"):
        merged[key] = min(int(params.get(key, 10**9)), FAST_BOOSTER_LIMITS[key])
    return merged


def fast_training_overrides(
    config: Config, boosters: Sequence[str], n_folds: int
) -> tuple[str, ...]:
    """``--set`` overrides that make a ``train_gbdt`` child a fast fit.

    ``boosters`` on ``n_folds`` folds, each with :func:`fast_booster_params`
    of the config's own params: what the scale points train with, so that the
    229,908-row point stays affordable on 2 cores.
    """
    overrides = [
        f"training.boosters=[{','.join(boosters)}]",
        f"training.n_folds={n_folds}",
    ]
    for name in boosters:
        params = fast_booster_params(dict(config.training.booster_params.get(name, {})))
        for key in FAST_BOOSTER_LIMITS:
            overrides.append(f"training.booster_params.{name}.{key}={params[key]}")
    return tuple(overrides)


@dataclass
class BenchOptions:
    """Everything a benchmark run is parameterised by (see ``benchmarks.run``)."""

    quick: bool = False
    corpus: Path = DEFAULT_CORPUS
    store: Path = REPO_ROOT / "artifacts" / "bench-store"
    work_dir: Path = REPO_ROOT / "artifacts" / "bench"
    results_dir: Path = REPO_ROOT / "benchmarks" / "results"
    profiles: tuple[str, ...] = ("lite", "default", "embeddings")
    repeats: int = 3
    n_rows: int | None = None
    seed: int = 0
    overrides: tuple[str, ...] = ()
    scale_rows: tuple[int, ...] = (8_000, 32_000, 57_477, 229_908)
    scale_profile: str = "lite"
    scale_trials: int = 0
    scale_train: bool = True
    scale_fast_train: bool = True
    scale_boosters: tuple[str, ...] = ("lightgbm",)
    scale_folds: int = 3
    target_trials: int = 200
    gbdt_trials: int = 200
    embed_rows: int = 1_000
    embed_texts: int = 300
    latency_calls: int = 200
    batch_sizes: tuple[int, ...] = (1, 32, 1_000, 10_000)
    embedding_variants: bool = True
    loso: bool = True
    loso_folds: int = 3
    loso_profiles: tuple[str, ...] | None = ("lite",)
    transfer_profiles: tuple[str, ...] | None = None
    transfer_variants: tuple[tuple[str, tuple[str, ...]], ...] = ()
    transfer_external: tuple[Path, ...] = (DEFAULT_ARENA,)
    transfer_holdout: tuple[str, ...] | None = None
    transfer_folds: int = 3
    transfer_fast: bool = True
    transfer_within_seeds: int = 3
    tuning_budget: float | None = 60 * 60.0
    gbdt_tuning_budget: float | None = 5 * 60.0
    profile_misses: bool = True
    timeout: float | None = 120 * 60.0
    target_family: str = "kaggle-lmsys"
    target_folds: int = 5
    target_curve: tuple[int, ...] = (110, 220, 440, 879)
    target_configs: tuple[str, ...] | None = None
    target_default_config: str = "target: + tie head (w=1)"
    target_quick_rows: int = 400
    target_other_rows: int | None = None
    target_fast: bool = False
    target_profiles: tuple[str, ...] = ("lite",)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_quick(cls, **changes: Any) -> BenchOptions:
        """The ``--quick`` settings: tiny sizes, lite only, one repeat."""
        settings: dict[str, Any] = {
            "quick": True,
            "profiles": ("lite",),
            "repeats": 1,
            "n_rows": 1_000,
            "overrides": QUICK_OVERRIDES,
            "scale_rows": (2_000, 4_000),
            "target_trials": 1,
            "gbdt_trials": 1,
            "loso_folds": 2,
            "transfer_folds": 2,
            "transfer_within_seeds": 1,
            "embed_rows": 0,
            "embed_texts": 0,
            "latency_calls": 20,
            "batch_sizes": (1, 32, 1_000),
            "embedding_variants": False,
            "profile_misses": False,
            "timeout": None,
            "tuning_budget": None,
            "gbdt_tuning_budget": None,
            "target_family": "synthetic-code",
            "target_folds": 2,
            "target_curve": (30, 60, 100),
            "target_configs": (
                "all sources, no target (profile)",
                "target: + tie head (w=1)",
            ),
        }
        settings.update(changes)
        return cls(**settings)


@dataclass
class FittedModel:
    """A model fitted on the benchmark corpus, with what its fit cost."""

    profile: str
    variant: dict[str, Any]
    model: PreferenceModel
    seconds: float


class BenchContext:
    """Lazily loaded data and memoised fits shared by the sections of one run.

    Parameters
    ----------
    options : BenchOptions
        The run's settings.
    """

    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        self._fits: dict[str, FittedModel] = {}
        self.children: dict[str, Any] = {}

    # ----------------------------------------------------------- configs
    def config_path(self, profile: str) -> Path:
        """``configs/<profile>.yaml``."""
        return REPO_ROOT / "configs" / f"{profile}.yaml"

    def config(self, profile: str) -> Config:
        """The profile with the run's overrides applied."""
        return load_config(self.config_path(profile), self.options.overrides)

    def cli_args(self, profile: str) -> list[str]:
        """``--config`` and ``--set`` arguments that load :meth:`config` in a child."""
        args = ["--config", relative(self.config_path(profile))]
        for override in self.options.overrides:
            args += ["--set", override]
        return args

    @property
    def store(self) -> FeatureStore:
        """The persistent benchmark feature store."""
        return FeatureStore(self.options.store)

    # -------------------------------------------------------------- data
    @cached_property
    def corpus_csv(self) -> Path:
        """The corpus file, or a seeded subsample of ``n_rows`` written once."""
        options = self.options
        if not options.corpus.exists():
            raise FileNotFoundError(
                f"corpus {str(options.corpus)!r} not found; pass --corpus PATH "
                "(the Kaggle-layout train.csv with a 'source' column)."
            )
        if options.n_rows is None:
            return options.corpus
        raw = pd.read_csv(options.corpus, dtype={"id": str}, keep_default_na=False)
        if options.n_rows >= len(raw):
            return options.corpus
        sample = raw.sample(n=options.n_rows, random_state=options.seed)
        path = options.work_dir / f"corpus-{options.n_rows}-s{options.seed}.csv"
        if not path.exists():
            write_csv_atomic(sample, path)
        return path

    @cached_property
    def raw_corpus(self) -> pd.DataFrame:
        """The corpus as read from CSV (Kaggle layout, JSON strings), no targets."""
        raw = pd.read_csv(
            self.corpus_csv, dtype={"id": str}, keep_default_na=False, na_values=[""]
        )
        return raw.drop(columns=[c for c in CLASSES if c in raw.columns])

    @cached_property
    def corpus(self) -> pd.DataFrame:
        """Canonical, truncated battles, as ``pipelines.train_gbdt`` sees them."""
        battles = read_battles(self.corpus_csv, labelled=True)
        max_chars = self.config(self.options.profiles[0]).data.max_chars
        return truncate_battles(battles, max_chars)

    @cached_property
    def labels(self) -> np.ndarray:
        """Integer labels of :attr:`corpus`."""
        return self.corpus["label"].to_numpy(dtype=np.int64)

    @cached_property
    def folds(self) -> np.ndarray:
        """Prompt-grouped, label-stratified folds, as ``train_gbdt`` makes them."""
        config = self.config(self.options.profiles[0])
        return make_folds(
            self.labels,
            prompt_groups(self.corpus),
            config.training.n_folds,
            config.seed,
        )

    @cached_property
    def families(self) -> np.ndarray:
        """Source family of each battle: the part of ``source`` before ``:``."""
        if "source" not in self.corpus.columns:
            return np.full(len(self.corpus), "all")
        return source_families(self.corpus["source"]).astype(str)

    # ------------------------------------------------------------ models
    @staticmethod
    def _key(
        profile: str, variant: Any, fast: bool, boosters: Any, n_folds: Any
    ) -> str:
        boosters = None if boosters is None else list(boosters)
        return json.dumps(
            [profile, variant or {}, fast, boosters, n_folds], sort_keys=True
        )

    def release(
        self,
        profile: str,
        variant: dict[str, dict[str, Any]] | None = None,
        *,
        fast: bool = False,
        boosters: Sequence[str] | None = None,
        n_folds: int | None = None,
    ) -> None:
        """Forget the fit :meth:`profile_model` memoised for these arguments."""
        self._fits.pop(self._key(profile, variant, fast, boosters, n_folds), None)

    def profile_model(
        self,
        profile: str,
        variant: dict[str, dict[str, Any]] | None = None,
        *,
        fast: bool = False,
        boosters: Sequence[str] | None = None,
        n_folds: int | None = None,
    ) -> FittedModel:
        """The profile fitted on the corpus (memoised).

        ``variant`` maps block names to param changes, e.g.
        ``{"embeddings": {"onnx": "int8"}}``; ``fast`` uses
        :func:`fast_booster_params` for every booster; ``boosters`` and
        ``n_folds`` replace the profile's (other fold counts than the shared
        folds get their own prompt-grouped folds with the same seed).
        """
        variant = variant or {}
        key = self._key(profile, variant, fast, boosters, n_folds)
        if key not in self._fits:
            config = self.config(profile)
            blocks = {
                name: dict(params) for name, params in config.features.blocks.items()
            }
            for name, block_changes in variant.items():
                if name not in blocks:
                    raise ValueError(
                        f"variant changes block {name!r}, which profile {profile!r} "
                        f"does not have; its blocks are {list(blocks)}."
                    )
                blocks[name].update(block_changes)
            params = {
                name: fast_booster_params(dict(values)) if fast else dict(values)
                for name, values in config.training.booster_params.items()
            }
            changes: dict[str, Any] = {"blocks": blocks, "booster_params": params}
            if boosters is not None:
                changes["boosters"] = tuple(boosters)
            folds = self.folds
            if n_folds is not None and n_folds != config.training.n_folds:
                changes["n_folds"] = n_folds
                folds = make_folds(
                    self.labels, prompt_groups(self.corpus), n_folds, config.seed
                )
            model = model_from_config(config, **changes)
            started = time.perf_counter()
            model.fit(self.corpus, store=self.store, folds=folds)
            seconds = time.perf_counter() - started
            logger.info("fitted %s %s in %.1f s", profile, variant or "", seconds)
            self._fits[key] = FittedModel(profile, variant, model, seconds)
        return self._fits[key]
