"""The habits benchmark: its variants, its scores and its resumable report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import bench_habits as habits

LITE = {
    "lengths": {},
    "flags": {},
    "tfidf": {"output": "diff"},
}
EMBEDDINGS = {**LITE, "embeddings": {"model": "m"}}


def test_before_switches_the_new_features_off():
    blocks = habits.variant_blocks("before", LITE, EMBEDDINGS)
    assert blocks["flags"] == {"refusal_kinds": False}
    assert "tie_cues" not in blocks


def test_habits_switches_both_new_features_on_without_touching_the_profile():
    blocks = habits.variant_blocks("habits", LITE, EMBEDDINGS)
    assert blocks["flags"] == {"refusal_kinds": True}
    assert blocks["tie_cues"] == {}
    assert LITE["flags"] == {}  # the profile's dict is not changed


def test_single_feature_and_drop_variants():
    assert "tie_cues" in habits.variant_blocks("+tie_cues", LITE, EMBEDDINGS)
    assert habits.variant_blocks("+refusal_kinds", LITE, EMBEDDINGS)["flags"] == {
        "refusal_kinds": True
    }
    dropped = habits.variant_blocks("habits-tfidf", LITE, EMBEDDINGS)
    assert set(dropped) == {"lengths", "flags", "tie_cues"}
    assert "embeddings" not in habits.variant_blocks(
        "embeddings-embeddings", LITE, EMBEDDINGS
    )
    with_minilm = habits.variant_blocks("habits+embeddings", LITE, EMBEDDINGS)
    assert set(with_minilm) == {*LITE, "tie_cues", "embeddings"}


@pytest.mark.parametrize(
    ("variant", "match"),
    [
        ("habits-embeddings", "does not have"),
        ("shiny", "unknown variant 'shiny'"),
    ],
)
def test_bad_variants_are_named(variant, match):
    with pytest.raises(ValueError, match=match):
        habits.variant_blocks(variant, LITE, EMBEDDINGS)


def test_embeddings_variant_needs_the_embeddings_profiles_block():
    with pytest.raises(ValueError, match="add it to configs/embeddings.yaml"):
        habits.variant_blocks("habits+embeddings", LITE, LITE)


def test_scores_reward_the_right_predictions():
    labels = np.array([0, 1, 2, 0, 1, 2])
    right = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6]] * 2)
    wrong = right[:, [1, 0, 2]][[0, 1, 2, 3, 4, 5]]
    wrong[[2, 5]] = [0.45, 0.45, 0.1]
    good, bad = habits.scores(labels, right), habits.scores(labels, wrong)
    assert good["decisive_acc"] == 1.0 and bad["decisive_acc"] == 0.0
    assert good["decisive_auc"] == 1.0 and good["tie_auc"] == 1.0
    assert good["log_loss"] < bad["log_loss"]


def test_report_scores_only_complete_variants(tmp_path, monkeypatch):
    labels = np.array([0, 1, 2, 0, 1, 2])
    folds = np.array([0, 0, 0, 1, 1, 1])
    monkeypatch.setattr(habits, "_kaggle_folds", lambda n, s: (None, labels, folds))
    lines = []
    proba = [[0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.3, 0.3, 0.4]]
    for variant, n_done in (("complete", 2), ("half", 1)):
        for fold in range(n_done):
            row = {"variant": variant, "train": "kaggle", "fold": fold}
            lines.append(json.dumps(row | {"seconds": 1.0, "proba": proba}))
    (tmp_path / "folds.jsonl").write_text("\n".join(lines) + "\n")
    table = habits.report([tmp_path], n_folds=2)
    assert table["variant"].tolist() == ["complete"]
    assert table["decisive_acc"].iloc[0] == 1.0
    assert "| complete | kaggle |" in habits.markdown(table)


def test_kind_outcomes_count_who_won_against_each_refusal_kind():
    ethics = "I'm sorry, but I cannot help with that as it is illegal."
    browse = "I'm sorry, but I can't browse the web."
    battles = pd.DataFrame(
        {
            "prompt": [["q"]] * 4,
            "response_a": [[ethics], ["Here you go."], [browse], [browse]],
            "response_b": [["Here you go."], [ethics], ["Sure."], ["Sure."]],
            "label": [1, 0, 0, 2],
        }
    )
    table = habits.kind_outcomes(battles, "toy").set_index("flag")
    assert table.loc["refusal_ethics", "battles"] == 2
    assert table.loc["refusal_ethics", "flagged_lost"] == 1.0
    assert table.loc["refusal_capability", "flagged_won"] == 0.5
    assert table.loc["refusal_capability", "tie"] == 0.5


def test_report_gives_the_paired_change_against_the_variant_before(
    tmp_path, monkeypatch
):
    labels = np.array([0, 1, 2, 0])
    folds = np.array([0, 0, 1, 1])
    monkeypatch.setattr(habits, "_kaggle_folds", lambda n, s: (None, labels, folds))
    flat = [[1 / 3] * 3] * 2
    sharp = [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2]]
    lines = []
    for variant, proba in (("before", flat), ("habits", sharp)):
        for fold in range(2):
            row = {"variant": variant, "train": "kaggle", "fold": fold}
            lines.append(json.dumps(row | {"seconds": 1.0, "proba": proba}))
    (tmp_path / "folds.jsonl").write_text("\n".join(lines) + "\n")
    table = habits.report([tmp_path], n_folds=2).set_index("variant")
    assert np.isnan(table.loc["before", "d_log_loss"])
    # rows 0, 1: 0.6 instead of 1/3; rows 2, 3: 0.2 instead of 1/3
    expected = (2 * np.log(3 * 0.6) + 2 * np.log(3 * 0.2)) / -4
    assert table.loc["habits", "d_log_loss"] == pytest.approx(expected)
    assert table.loc["habits", "d_se"] > 0
