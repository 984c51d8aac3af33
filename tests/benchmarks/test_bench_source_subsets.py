"""The source-subset ceiling: every subset scored, refusals counted, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import bench_source_subsets as subsets
from features import read_battles
from pipelines.make_demo_data import make_demo_battles


def test_every_nonempty_subset_of_families_is_scored(demo_files):
    corpus, external = (subsets.labelled(read_battles(p)) for p in demo_files)
    table = subsets.subset_table(corpus, external)
    assert len(table) == 2**3 - 1  # fam-a (two sub-sources), fam-b, fam-c
    assert set(table["sources"]) >= {"fam-a", "fam-a + fam-b + fam-c"}
    # Demo labels reward the longer answer: every anchor beats a coin.
    assert (table["decisive_auc"] > 0.55).all()
    assert table["decisive_auc"].is_monotonic_decreasing


def test_refusal_table_counts_one_sided_refusals():
    battles = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "prompt": [["How do I bake bread?"]] * 4,
            "response_a": [
                ["I'm sorry, but I can't help with that."],
                ["Mix flour and water."],
                ["I cannot assist with that request."],
                ["Knead it well."],
            ],
            "response_b": [
                ["Mix flour, water and yeast."],
                ["I'm sorry, I can't help with that."],
                ["Use yeast."],
                ["Bake it at 220 C."],
            ],
            "label": [0, 0, 1, 2],
            "source": ["s"] * 4,
        }
    )
    row = subsets.refusal_table(subsets.labelled(battles)).iloc[0]
    assert (row["decisive"], row["one_refuses"]) == (3, 3)
    # Row 1: A refused and won; rows 2 and 3: the refusing answer lost.
    assert row["refuser_won"] == pytest.approx(1 / 3)


def test_report_has_the_references(demo_files):
    text = subsets.report(*demo_files, top=2)
    assert "| every family (the corpus) |" in text
    assert "itself, 5 prompt-grouped folds" in text and "raw length difference" in text
    assert "7 subsets; the best reaches" in text
    within = subsets.within_set_anchor(subsets.labelled(read_battles(demo_files[1])))
    assert np.isfinite(within).all() and within[0] > 0.55


def test_report_needs_a_source_column(demo_files, tmp_path):
    unsourced = tmp_path / "unsourced.csv"
    make_demo_battles(n_rows=60, seed=8).drop(columns="source").to_csv(
        unsourced, index=False
    )
    with pytest.raises(ValueError, match="needs 'source'"):
        subsets.report(unsourced, demo_files[1])


def test_coefficient_swaps_change_nothing_when_the_set_is_the_corpus(
    demo_files,
):
    external = subsets.labelled(read_battles(demo_files[1]))
    swaps = subsets.coefficient_swaps(external, external)
    own_auc = subsets.decisive_auc(
        external.y,
        np.exp(
            subsets.balanced_anchor(external).log_proba(external.X, external.columns)
        ),
    )
    np.testing.assert_allclose(swaps["corpus_coef"], swaps["set_coef"], atol=1e-6)
    np.testing.assert_allclose(swaps["decisive_auc"], own_auc, atol=1e-9)
    assert "d_flag_refusal" in set(swaps["covariate"])
