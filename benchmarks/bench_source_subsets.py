"""What the corpus can teach a held-out set: the anchor fitted on subsets of sources.

With folds that hold out whole source families, early stopping keeps a handful
of boosting rounds, so on a new source the model is close to its
:class:`models.anchor.StyleAnchor`. This asks how far the anchor itself can
go: it fits the anchor (balanced source weights, as the profiles do) on every
non-empty subset of the corpus's source families and scores an external set
with it, next to the raw length difference and to the anchor cross-validated
inside the external set (what the set's own battles teach it). A second table
counts, per source family, the battles where exactly one answer refuses and
how often the refusing answer wins: voters who punish refusals cannot be
learnt from sources that reward them.

Usage::

    python -m benchmarks.bench_source_subsets [--corpus PATH] [--external PATH]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features import read_battles
from features.pipeline import FeaturePipeline
from models.anchor import StyleAnchor
from models.folds import make_folds, prompt_groups
from models.sources import row_weights
from models.transfer import (
    decisive_auc,
    decisive_log_loss,
    length_difference,
    length_difference_auc,
    source_families,
)

_SHARED = Path(__file__).resolve().parents[2] / "shared/data/corpus"
ANCHOR_BLOCKS = {"lengths": {}, "style": {"readability_max_chars": 2000}, "flags": {}}
"""The blocks that make the anchor's covariates (their defaults, as in the profiles)."""


def anchor_matrix(battles: pd.DataFrame) -> tuple[NDArray[np.float64], list[str]]:
    """The anchor blocks' features of `battles` (dense) and their column names."""
    matrix = FeaturePipeline(ANCHOR_BLOCKS).fit_transform(battles)
    values = matrix.values.toarray() if matrix.is_sparse else matrix.values
    return np.asarray(values, np.float64), list(matrix.columns)


def anchor_scores(
    train: tuple[NDArray, list[str], NDArray[np.int64], pd.DataFrame],
    X_test: NDArray[np.float64],
    y_test: NDArray[np.int64],
) -> tuple[float, float]:
    """Decisive AUC and log loss on the test rows of an anchor fitted on `train`."""
    X, columns, y, table = train
    anchor = StyleAnchor().fit(X, columns, y, row_weights(table, "balanced"))
    proba = np.exp(anchor.log_proba(X_test, columns))
    return decisive_auc(y_test, proba), decisive_log_loss(y_test, proba)


def coefficient_swaps(
    corpus: tuple[NDArray, list[str], NDArray[np.int64], pd.DataFrame],
    X_test: NDArray[np.float64],
    y_test: NDArray[np.int64],
) -> pd.DataFrame:
    """Which coefficient the gap is in: the corpus anchor with one taken from the set.

    The set's own anchor is fitted on all its rows (in-sample), so each row
    says how much that one covariate's weight, as the set's voters give it,
    moves the corpus anchor's decisive AUC there.
    """
    X, columns, y, table = corpus
    mine = StyleAnchor().fit(X, columns, y, row_weights(table, "balanced"))
    theirs = StyleAnchor().fit(X_test, columns, y_test)
    rows = []
    for i, name in enumerate(mine.columns_):
        swapped = StyleAnchor.from_dict(mine.to_dict())
        swapped.coef_[i] = theirs.coef_[i]
        proba = np.exp(swapped.log_proba(X_test, columns))
        rows.append(
            {
                "covariate": name,
                "corpus_coef": mine.coef_[i],
                "set_coef": theirs.coef_[i],
                "decisive_auc": decisive_auc(y_test, proba),
            }
        )
    return pd.DataFrame(rows)


def within_set_anchor(
    battles: pd.DataFrame,
    X: NDArray[np.float64],
    columns: list[str],
    n_folds: int = 5,
    seed: int = 0,
) -> tuple[float, float]:
    """The anchor cross-validated inside one set: prompt-grouped out-of-fold scores."""
    y = battles["label"].to_numpy(np.int64)
    folds = make_folds(y, prompt_groups(battles), n_folds, seed)
    proba = np.empty((len(y), 3))
    for fold in range(n_folds):
        held = folds == fold
        anchor = StyleAnchor().fit(X[~held], columns, y[~held])
        proba[held] = np.exp(anchor.log_proba(X[held], columns))
    return decisive_auc(y, proba), decisive_log_loss(y, proba)


def subset_table(corpus: pd.DataFrame, external: pd.DataFrame) -> pd.DataFrame:
    """The anchor's scores on `external`, fitted on each subset of families."""
    X, columns = anchor_matrix(corpus)
    X_ext, ext_columns = anchor_matrix(external)
    if ext_columns != columns:
        raise ValueError("the corpus and the external set gave different columns.")
    y = corpus["label"].to_numpy(np.int64)
    y_ext = external["label"].to_numpy(np.int64)
    families = source_families(corpus["source"]).astype(str)
    names = sorted(set(families))
    rows = []
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            keep = np.isin(families, subset)
            train = (X[keep], columns, y[keep], corpus[keep].reset_index(drop=True))
            auc, loss = anchor_scores(train, X_ext, y_ext)
            rows.append(
                {
                    "sources": " + ".join(subset),
                    "n_sources": size,
                    "decisive_auc": auc,
                    "decisive_log_loss": loss,
                }
            )
    return pd.DataFrame(rows).sort_values("decisive_auc", ascending=False)


def refusal_table(battles: pd.DataFrame) -> pd.DataFrame:
    """Per family: decisive battles, one-sided refusals, the share the refuser won."""
    X, columns = anchor_matrix(battles)
    refusal = X[:, columns.index("d_flag_refusal")]
    y = battles["label"].to_numpy(np.int64)
    families = source_families(battles["source"]).astype(str)
    rows = []
    for family in sorted(set(families)):
        decisive = (families == family) & (y < 2)
        one_sided = decisive & (refusal != 0)
        refuser_won = one_sided & (
            ((refusal > 0) & (y == 0)) | ((refusal < 0) & (y == 1))
        )
        n = int(one_sided.sum())
        rows.append(
            {
                "source": family,
                "decisive": int(decisive.sum()),
                "one_refuses": n,
                "refuser_won": refuser_won.sum() / n if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def report(corpus_path: Path, external_path: Path, top: int = 8) -> str:
    """The markdown tables: best subsets, the whole corpus, references, refusals."""
    corpus = read_battles(corpus_path)
    external = read_battles(external_path)
    if "source" not in corpus.columns or "label" not in corpus.columns:
        raise ValueError(f"{corpus_path} needs 'source' and the label columns.")
    if "label" not in external.columns:
        raise ValueError(f"{external_path} needs the label columns.")
    table = subset_table(corpus, external)
    X_ext, columns = anchor_matrix(external)
    name = external_path.name
    lines = [
        f"| anchor fitted on | decisive AUC on {name} | decisive log loss |",
        "|---|---:|---:|",
    ]
    whole = table[table["n_sources"] == table["n_sources"].max()].iloc[0]
    shown = [
        (row.sources, row.decisive_auc, row.decisive_log_loss)
        for row in table.head(top).itertuples()
    ]
    shown.append(
        ("every family (the corpus)", whole.decisive_auc, whole.decisive_log_loss)
    )
    lines += [f"| {label} | {auc:.4f} | {loss:.4f} |" for label, auc, loss in shown]
    within_auc, within_loss = within_set_anchor(external, X_ext, columns)
    y_ext = external["label"].to_numpy(np.int64)
    raw = length_difference_auc(y_ext, length_difference(external))
    lines += [
        f"| {name} itself, 5 prompt-grouped folds | {within_auc:.4f} "
        f"| {within_loss:.4f} |",
        f"| raw length difference, no model | {raw:.4f} | - |",
        "",
        f"{len(table)} subsets; the best reaches {table['decisive_auc'].max():.4f}, "
        f"the median {table['decisive_auc'].median():.4f}.",
    ]
    corpus_matrix, _ = anchor_matrix(corpus)
    train = (corpus_matrix, columns, corpus["label"].to_numpy(np.int64), corpus)
    lines += [
        "",
        f"| covariate | corpus coefficient | {name}'s own (in-sample) "
        f"| decisive AUC with {name}'s coefficient |",
        "|---|---:|---:|---:|",
    ]
    for row in coefficient_swaps(train, X_ext, y_ext).itertuples():
        lines.append(
            f"| {row.covariate} | {row.corpus_coef:.4g} | {row.set_coef:.4g} "
            f"| {row.decisive_auc:.4f} |"
        )
    lines += [
        "",
        "| source family | decisive battles | one answer refuses "
        "| the refusing answer won |",
        "|---|---:|---:|---:|",
    ]
    both = pd.concat([corpus, external], ignore_index=True)
    for row in refusal_table(both).itertuples():
        lines.append(
            f"| {row.source} | {row.decisive:,} | {row.one_refuses} | "
            f"{row.refuser_won:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=_SHARED / "train.csv")
    parser.add_argument("--external", type=Path, default=_SHARED / "arena.csv")
    parser.add_argument("--top", type=int, default=8, help="best subsets to list")
    args = parser.parse_args(argv)
    print(report(args.corpus, args.external, args.top))


if __name__ == "__main__":
    main()
