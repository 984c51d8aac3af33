"""The transfer table of a ``train_gbdt`` report: each source family held out.

The out-of-fold log loss of a training run mixes every source, so it rewards
learning each source's habits (tie rate, style). When the battles have a
``source`` column with two or more families, the report also scores each
family with a model fitted on the other families only (its feature blocks
included), next to the class prior, the raw length difference and a
length-only logistic regression (:func:`models.transfer.transfer_table`).

Cost: one more fit per source family, each on the other families with
``--transfer-folds`` folds (default 3) and the final (tuned) booster params,
so about ``families x transfer_folds / training.n_folds`` times the final
fit; the stateless blocks' outputs are sliced from the final fit's cache, not
computed again. ``--no-transfer-report`` skips it.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features import (
    FeatureMatrix,
    FeaturePipeline,
    FeatureStore,
    battle_fingerprint,
    block_key,
    make_block,
)
from features.errors import ConfigError
from features.pipeline import RunMode
from models.recipe import battle_table
from models.sources import source_families
from models.transfer import model_fit_predict, transfer_table
from pipelines.config import Config
from pipelines.estimator import model_from_config

__all__ = [
    "TRANSFER_COLUMNS",
    "DEFAULT_TRANSFER_FOLDS",
    "add_transfer_report_arguments",
    "seed_stateless_blocks",
    "transfer_markdown",
    "transfer_report",
]

logger = logging.getLogger(__name__)

DEFAULT_TRANSFER_FOLDS = 3
"""Folds of each held-out fit: fewer than training's 5, to bound the cost."""

TRANSFER_COLUMNS: dict[str, str] = {
    "source": "held-out family",
    "n": "n",
    "tie_rate": "tie rate",
    "log_loss": "log loss",
    "prior_log_loss": "training prior",
    "log_loss_own_prior": "with own prior",
    "own_prior_log_loss": "own prior",
    "tie_auc": "tie AUC",
    "decisive_auc": "decisive AUC",
    "length_auc": "raw length AUC",
    "length_lr_auc": "length LR AUC",
    "decisive_log_loss": "decisive log loss",
    "prior_decisive_log_loss": "training prior (decisive)",
    "ok": "ok",
    "missed": "missed",
}
"""Record key -> column heading of a transfer table, in display order."""


def add_transfer_report_arguments(parser: argparse.ArgumentParser) -> None:
    """``--transfer-report/--no-transfer-report`` and ``--transfer-folds``."""
    parser.add_argument(
        "--transfer-report",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the transfer table to the report: each source family held out "
        "of fit (default: on when the data has a 'source' column with 2+ "
        "families; costs about families x transfer-folds / n_folds final fits)",
    )
    parser.add_argument(
        "--transfer-folds",
        type=int,
        default=DEFAULT_TRANSFER_FOLDS,
        help="folds of each held-out fit of the transfer table",
    )


def _prepared(battles: pd.DataFrame, max_chars: int | None) -> pd.DataFrame:
    """What ``PreferenceModel`` turns ``battles`` into before its features."""
    return battle_table(battles, max_chars)


def _dense(values: Any) -> NDArray:
    return values.toarray() if hasattr(values, "toarray") else np.asarray(values)


def seed_stateless_blocks(
    store: FeatureStore,
    blocks: dict[str, dict[str, Any]],
    full: pd.DataFrame,
    subsets: Sequence[tuple[NDArray[np.int64], str]],
    max_chars: int | None,
) -> list[str]:
    """Fill the store for row subsets from the full table's stateless outputs.

    A stateless block's row depends on that battle alone, so its output on a
    subset is a slice of its output on the whole table: held-out fits then
    reuse e.g. the corpus embeddings instead of encoding every text again for
    every split. Each block is spot-checked on a few rows first; a block
    whose slice does not match its own output is left to compute.

    Parameters
    ----------
    store : FeatureStore
        The cache the held-out fits read.
    blocks : dict of str to dict
        Feature blocks (name -> params) of the model.
    full : pandas.DataFrame
        Canonical battles that every subset is a part of.
    subsets : sequence of (row positions, mode)
        ``mode`` is ``"fit"`` (a training table) or ``"transform"`` (a table
        predicted by a fitted model).
    max_chars : int or None
        The model's ``max_chars``.

    Blocks with a per-text cache (embeddings) are left out: a subset reads
    its texts from that cache.

    Returns
    -------
    list of str
        Names of the blocks seeded.
    """
    seeded = []
    for name, params in blocks.items():
        block = make_block(name, params)
        if block.stateful or not subsets:
            continue
        if getattr(block, "uses_text_cache", False):
            # Its per-text cache already serves any subset of the texts seen;
            # probing it would load the encoder for three battles.
            continue
        whole = FeaturePipeline({name: params}, store=store).fit_transform(full)
        # One probe per block: its output on a few rows alone must equal the slice.
        rows = subsets[0][0][:3]
        probe = make_block(name, params).fit_transform(
            _prepared(full.iloc[rows], max_chars)
        )
        if not np.allclose(
            _dense(probe.values), _dense(whole.values[rows]), rtol=1e-3, atol=1e-4
        ):
            logger.warning("block %s is not row-wise; not seeding its cache", name)
            continue
        for rows, mode in subsets:
            subset = _prepared(full.iloc[rows], max_chars)
            key = block_key(
                block, battle_fingerprint(subset), RunMode(mode).cache_tag(block)
            )
            if store.load(key) is None:
                part = FeatureMatrix(whole.values[rows], whole.columns)
                meta = {"block": name, "version": block.version, "rows": part.n_rows}
                store.save(key, part, {}, {}, meta)
        seeded.append(name)
    return seeded


def _json_safe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NaN cells as None, numpy scalars as Python ones (report.json is JSON)."""
    safe = []
    for record in records:
        row = {}
        for key, value in record.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
            row[key] = value
        safe.append(row)
    return safe


def transfer_report(
    table: pd.DataFrame,
    config: Config,
    booster_params: dict[str, dict[str, Any]],
    *,
    enabled: bool | None = None,
    n_folds: int = DEFAULT_TRANSFER_FOLDS,
    store: FeatureStore | None = None,
    verbose: bool = False,
) -> list[dict[str, Any]] | None:
    """The transfer table's rows for a training run, or None when not wanted.

    Parameters
    ----------
    table : pandas.DataFrame
        The labelled battles of the run (canonical, truncated).
    config : Config
        The run's profile; each held-out fit uses it with ``booster_params``.
    booster_params : dict of str to dict
        The final params per booster (after tuning).
    enabled : bool or None, default=None
        True or False from ``--transfer-report``; None: on when ``table``
        has a ``source`` column with two or more families.
    n_folds : int, default=3
        Folds of each held-out fit.
    store : FeatureStore, default=None
        The run's feature store.
    verbose : bool, default=False
        A progress bar over the held-out families.

    Returns
    -------
    list of dict or None
        One record per family (columns of
        :data:`models.transfer.TRANSFER_COLUMNS`, NaN as None).

    Raises
    ------
    ConfigError
        ``n_folds`` is below 2.
    """
    if enabled is False:
        return None
    families = (
        source_families(table["source"]) if "source" in table.columns else np.array([])
    )
    if len(set(families)) < 2:
        if enabled:
            logger.warning(
                "--transfer-report: the battles have no 'source' column with 2 or "
                "more families, so no family can be held out; the report has no "
                "transfer table. Add a 'source' column or drop --transfer-report."
            )
        return None
    if n_folds < 2:
        raise ConfigError(
            f"--transfer-folds must be >= 2 (folds of each held-out fit); got "
            f"{n_folds}."
        )
    started = time.perf_counter()
    names = sorted(set(families))
    if store is not None:
        subsets = []
        for family in names:
            subsets.append((np.flatnonzero(families != family), "fit"))
            subsets.append((np.flatnonzero(families == family), "transform"))
        seed_stateless_blocks(
            store, dict(config.features.blocks), table, subsets, config.data.max_chars
        )
    fit_predict = model_fit_predict(
        # Held-out families are sources never seen: no target (it may be the
        # family held out).
        lambda: model_from_config(
            config, booster_params=booster_params, n_folds=n_folds, target=None
        ),
        fit_params={"store": store},
    )
    frame = transfer_table(table, fit_predict, verbose=verbose)
    logger.info(
        "transfer table: %d families held out in %.1f s",
        len(frame),
        time.perf_counter() - started,
    )
    return _json_safe(frame.to_dict(orient="records"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def transfer_markdown(records: list[dict[str, Any]]) -> str:
    """The transfer table as a markdown section (heading, table, how to read it).

    Examples
    --------
    >>> text = transfer_markdown([{"source": "a", "n": 3, "ok": True}])
    >>> print("\\n".join(text.splitlines()[2:5]))
    | held-out family | n | ok |
    |---|---|---|
    | a | 3 | yes |
    """
    columns = [key for key in TRANSFER_COLUMNS if any(key in r for r in records)]
    lines = [
        "## Transfer: each source family held out of fit",
        "",
        "| " + " | ".join(TRANSFER_COLUMNS[c] for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for record in records:
        lines.append("| " + " | ".join(_cell(record.get(c)) for c in columns) + " |")
    lines += [
        "",
        "Each family is scored by a model fitted on the other families only "
        "(feature blocks included), with the final params and fewer folds. "
        "Decisive columns score P(A)/(P(A)+P(B)) on rows A or B won; 'raw length "
        "AUC' ranks by the answers' token count difference, no model. ok: "
        "decisive AUC >= raw length AUC and log loss <= training prior (decisive "
        "log loss for a family without ties).",
    ]
    return "\n".join(lines)
