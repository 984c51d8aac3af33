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
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features import read_battles
from features.pipeline import FeaturePipeline
from models.anchor import StyleAnchor
from models.folds import make_folds, prompt_groups
from models.metrics import decisive_auc, decisive_log_loss, length_difference_auc
from models.sources import row_weights, source_families
from models.transfer import length_difference

_SHARED = Path(__file__).resolve().parents[2] / "shared/data/corpus"
ANCHOR_BLOCKS = {"lengths": {}, "style": {}, "flags": {}}
"""The blocks that make the anchor's covariates, at their defaults."""


class Labelled(NamedTuple):
    """A labelled battle set with its anchor-block features, computed once."""

    battles: pd.DataFrame
    X: NDArray[np.float64]
    columns: list[str]
    y: NDArray[np.int64]

    def subset(self, keep: NDArray[np.bool_]) -> Labelled:
        return Labelled(
            self.battles[keep].reset_index(drop=True),
            self.X[keep],
            self.columns,
            self.y[keep],
        )


def labelled(battles: pd.DataFrame) -> Labelled:
    """`battles` (with labels) and the anchor blocks' features of them, dense."""
    matrix = FeaturePipeline(ANCHOR_BLOCKS).fit_transform(battles)
    values = matrix.values.toarray() if matrix.is_sparse else matrix.values
    return Labelled(
        battles,
        np.asarray(values, np.float64),
        list(matrix.columns),
        battles["label"].to_numpy(np.int64),
    )


def balanced_anchor(train: Labelled) -> StyleAnchor:
    """The anchor as the profiles fit it: every source family weighs the same."""
    weight = row_weights(train.battles, "balanced")
    return StyleAnchor().fit(train.X, train.columns, train.y, weight)


def _decisive_scores(anchor: StyleAnchor, test: Labelled) -> tuple[float, float]:
    proba = np.exp(anchor.log_proba(test.X, test.columns))
    return decisive_auc(test.y, proba), decisive_log_loss(test.y, proba)


def coefficient_swaps(corpus: Labelled, test: Labelled) -> pd.DataFrame:
    """Which coefficient the gap is in: the corpus anchor with one taken from the set.

    The set's own anchor is fitted on all its rows (in-sample), so each row
    says how much that one covariate's weight, as the set's voters give it,
    moves the corpus anchor's decisive AUC there.
    """
    mine = balanced_anchor(corpus)
    theirs = StyleAnchor().fit(test.X, test.columns, test.y)
    rows = []
    for i, name in enumerate(mine.columns_):
        swapped = StyleAnchor.from_dict(mine.to_dict())
        swapped.coef_[i] = theirs.coef_[i]
        rows.append(
            {
                "covariate": name,
                "corpus_coef": mine.coef_[i],
                "set_coef": theirs.coef_[i],
                "decisive_auc": _decisive_scores(swapped, test)[0],
            }
        )
    return pd.DataFrame(rows)


def within_set_anchor(
    data: Labelled, n_folds: int = 5, seed: int = 0
) -> tuple[float, float]:
    """The anchor cross-validated inside one set: prompt-grouped out-of-fold scores."""
    folds = make_folds(data.y, prompt_groups(data.battles), n_folds, seed)
    proba = np.empty((len(data.y), 3))
    for fold in range(n_folds):
        held = folds == fold
        anchor = StyleAnchor().fit(data.X[~held], data.columns, data.y[~held])
        proba[held] = np.exp(anchor.log_proba(data.X[held], data.columns))
    return decisive_auc(data.y, proba), decisive_log_loss(data.y, proba)


def subset_table(corpus: Labelled, external: Labelled) -> pd.DataFrame:
    """The anchor's scores on `external`, fitted on each subset of families."""
    if external.columns != corpus.columns:
        raise ValueError("the corpus and the external set gave different columns.")
    families = source_families(corpus.battles["source"]).astype(str)
    names = sorted(set(families))
    rows = []
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            anchor = balanced_anchor(corpus.subset(np.isin(families, subset)))
            auc, loss = _decisive_scores(anchor, external)
            rows.append(
                {
                    "sources": " + ".join(subset),
                    "n_sources": size,
                    "decisive_auc": auc,
                    "decisive_log_loss": loss,
                }
            )
    return pd.DataFrame(rows).sort_values("decisive_auc", ascending=False)


def refusal_table(data: Labelled) -> pd.DataFrame:
    """Per family: decisive battles, one-sided refusals, the share the refuser won."""
    refusal = data.X[:, data.columns.index("d_flag_refusal")]
    y = data.y
    families = source_families(data.battles["source"]).astype(str)
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
    corpus_set, external_set = labelled(corpus), labelled(external)
    table = subset_table(corpus_set, external_set)
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
    within_auc, within_loss = within_set_anchor(external_set)
    raw = length_difference_auc(external_set.y, length_difference(external))
    lines += [
        f"| {name} itself, 5 prompt-grouped folds | {within_auc:.4f} "
        f"| {within_loss:.4f} |",
        f"| raw length difference, no model | {raw:.4f} | - |",
        "",
        f"{len(table)} subsets; the best reaches {table['decisive_auc'].max():.4f}, "
        f"the median {table['decisive_auc'].median():.4f}.",
    ]
    lines += [
        "",
        f"| covariate | corpus coefficient | {name}'s own (in-sample) "
        f"| decisive AUC with {name}'s coefficient |",
        "|---|---:|---:|---:|",
    ]
    for row in coefficient_swaps(corpus_set, external_set).itertuples():
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
    refusals = pd.concat([refusal_table(corpus_set), refusal_table(external_set)])
    for row in refusals.itertuples():
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
