"""The training recipe: the rows every fit trains on, made in one place."""

from __future__ import annotations

import numpy as np
import pytest

from features.battles import SWAP_LABELS, read_battles
from features.errors import InvalidParameterError
from features.pipeline import FeaturePipeline
from models import PreferenceModel, TrainingRecipe, swap_copies
from models import preference as preference_module
from models.anchor import StyleAnchor
from models.folds import prompt_groups
from models.recipe import anchor_offsets
from models.sources import source_families
from pipelines.make_demo_data import make_demo_battles

FAST = {
    "lightgbm": {
        "num_boost_round": 20,
        "learning_rate": 0.1,
        "num_leaves": 7,
        "num_threads": 1,
    }
}
BLOCKS = {"lengths": {}, "style": {}, "flags": {}}


@pytest.fixture(scope="module")
def battles():
    table = read_battles(make_demo_battles(n_rows=240, seed=7))
    # Families of unequal size, so that balanced weights differ between them.
    names = np.array(["alpha:x"] * 120 + ["beta"] * 80 + ["gamma"] * 40)
    return table.assign(source=names)


@pytest.fixture(scope="module")
def features(battles):
    return FeaturePipeline(BLOCKS).fit_transform(battles)


def test_rows_take_labels_from_the_table_or_y(battles):
    recipe = TrainingRecipe(n_folds=3)

    from_table = recipe.rows(battles)
    given = np.roll(battles["label"].to_numpy(), 1)
    from_y = recipe.rows(battles, given)

    np.testing.assert_array_equal(from_table.labels, battles["label"])
    np.testing.assert_array_equal(from_y.labels, given)
    assert from_table.labels.dtype == np.int64


def test_rows_cut_fields_to_max_chars(battles):
    rows = TrainingRecipe(max_chars=10, n_folds=3).rows(battles)

    longest = max(sum(map(len, turns)) for turns in rows.table["response_a"])
    assert longest <= 10
    assert max(sum(map(len, t)) for t in battles["response_a"]) > 10


def test_balanced_weights_give_every_family_the_same_total(battles):
    rows = TrainingRecipe(source_weights="balanced", n_folds=3).rows(battles)

    families = source_families(battles["source"]).astype(str)
    totals = [rows.weight[families == name].sum() for name in set(families)]
    np.testing.assert_allclose(totals, totals[0])
    assert rows.weight.mean() == pytest.approx(1.0)


def test_weight_map_and_excluded_source(battles):
    recipe = TrainingRecipe(source_weights={"beta": 0.0, "gamma": 3.0}, n_folds=3)
    rows = recipe.rows(battles)

    families = source_families(battles["source"]).astype(str)
    assert (rows.weight[families == "beta"] == 0).all()
    ratio = rows.weight[families == "gamma"][0] / rows.weight[families == "alpha"][0]
    assert ratio == pytest.approx(3.0)
    # Prompt folds: the head fits each kept row once, the excluded ones not at all.
    np.testing.assert_array_equal(rows.head_weight, (rows.weight > 0).astype(float))


def test_source_folds_hold_out_whole_families(battles):
    recipe = TrainingRecipe(group_by="source", source_weights="balanced", n_folds=3)
    rows = recipe.rows(battles)

    families = source_families(battles["source"]).astype(str)
    for name in set(families):
        assert len(set(rows.folds[families == name])) == 1
    assert rows.group_by == "source" and rows.holds_out_sources
    np.testing.assert_array_equal(rows.families, source_families(battles["source"]))
    # Folds that hold out sources: the head fits with the source weights.
    np.testing.assert_array_equal(rows.head_weight, rows.weight)


def test_prompt_folds_have_no_families_and_prompt_groups(battles):
    rows = TrainingRecipe(group_by="prompt", n_folds=3).rows(battles)

    assert rows.families is None and not rows.holds_out_sources
    assert rows.head_weight is None
    np.testing.assert_array_equal(rows.groups, prompt_groups(rows.table))
    for group in np.unique(rows.groups):
        assert len(set(rows.folds[rows.groups == group])) == 1


def test_given_folds_are_kept(battles):
    folds = np.arange(len(battles)) % 4
    rows = TrainingRecipe(n_folds=3).rows(battles, folds=folds)

    np.testing.assert_array_equal(rows.folds, folds)


@pytest.mark.parametrize(
    ("folds", "match"),
    [
        (np.zeros(5, dtype=int), r"one fold index per battle: 240 expected, got"),
        (np.full(240, -1), r"folds must be integers >= 0"),
        (np.full(240, 0.5), r"folds must be integers >= 0; got float64"),
    ],
)
def test_bad_folds_are_refused(battles, folds, match):
    with pytest.raises(InvalidParameterError, match=match):
        TrainingRecipe().rows(battles, folds=folds)


def test_bad_labels_are_refused(battles):
    with pytest.raises(ValueError, match=r"240 expected, got shape \(3,\)"):
        TrainingRecipe().rows(battles, [0, 1, 2])
    with pytest.raises(ValueError, match=r"no labels: pass y"):
        TrainingRecipe().rows(battles.drop(columns="label"))


def test_swap_copies_swap_labels_and_mirror_scores():
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    labels = np.array([0, 2])
    weight = np.array([0.5, 1.5])
    init = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])

    out = swap_copies(X, labels, weight, init, lambda m: m[:, ::-1])

    np.testing.assert_array_equal(out.X, [[1, 2], [3, 4], [2, 1], [4, 3]])
    np.testing.assert_array_equal(out.labels, [0, 2, 1, 2])
    np.testing.assert_array_equal(out.weight, [0.5, 1.5, 0.5, 1.5])
    np.testing.assert_array_equal(out.init_score[2:], init[:, SWAP_LABELS])
    assert swap_copies(X, labels, None, None, lambda m: m).weight is None


def test_anchor_offsets_are_one_log_proba_row_per_battle(battles, features):
    recipe = TrainingRecipe(anchor=True, source_weights="balanced", n_folds=3)
    rows = recipe.rows(battles)

    anchor = recipe.fit_anchor(features.values, features.columns, rows.labels, None)
    offsets = anchor_offsets(anchor, features.values, features.columns)

    assert offsets.shape == (len(battles), 3)
    np.testing.assert_allclose(np.exp(offsets).sum(axis=1), 1.0)
    assert (
        TrainingRecipe(anchor=False).fit_anchor(features.values, [], [], None) is None
    )
    assert anchor_offsets(None, features.values, features.columns) is None


def test_tuning_rows_sample_whole_prompt_groups_with_their_anchor(battles, features):
    recipe = TrainingRecipe(anchor=True, source_weights="balanced", n_folds=3)
    rows = recipe.rows(battles)

    sample = recipe.tuning_rows(
        features.values,
        features.columns,
        rows.labels,
        rows.groups,
        weight=rows.weight,
        max_rows=100,
        n_folds=2,
    )

    assert len(sample.rows) <= 100
    np.testing.assert_array_equal(sample.labels, rows.labels[sample.rows])
    np.testing.assert_array_equal(sample.weight, rows.weight[sample.rows])
    assert set(sample.folds.tolist()) == {0, 1}
    anchor = StyleAnchor().fit(
        sample.values, features.columns, sample.labels, sample.weight
    )
    np.testing.assert_array_equal(
        sample.init_score, anchor.log_proba(sample.values, features.columns)
    )


def test_tuning_rows_by_source_need_families(battles, features):
    recipe = TrainingRecipe(group_by="source", n_folds=3)
    rows = recipe.rows(battles)
    args = (features.values, features.columns, rows.labels, rows.groups)

    with pytest.raises(InvalidParameterError, match=r"pass families"):
        recipe.tuning_rows(*args)
    sample = recipe.tuning_rows(*args, families=rows.families)
    families = rows.families[sample.rows]
    for name in set(families):
        assert len(set(sample.folds[families == name])) == 1


def test_fit_trains_on_the_recipe_rows(battles, features, monkeypatch):
    seen = []
    real = preference_module.train_folds

    def recording(name, params, X, y, folds, **kwargs):
        seen.append((y, folds, kwargs["weight"], kwargs["init_score"]))
        return real(name, params, X, y, folds, **kwargs)

    monkeypatch.setattr(preference_module, "train_folds", recording)
    model = PreferenceModel(
        blocks=BLOCKS,
        booster_params=FAST,
        n_folds=3,
        group_by="source",
        source_weights={"beta": 2.0},
        anchor=True,
        swap_augment=True,
    ).fit(battles)
    recipe = model.training_recipe()
    rows = recipe.rows(battles)
    anchor = recipe.fit_anchor(
        features.values, features.columns, rows.labels, rows.weight
    )

    ((labels, folds, weight, init),) = seen
    np.testing.assert_array_equal(labels, rows.labels)
    np.testing.assert_array_equal(folds, rows.folds)
    np.testing.assert_array_equal(model.folds_, rows.folds)
    np.testing.assert_array_equal(weight, rows.weight)
    np.testing.assert_array_equal(
        init, anchor_offsets(anchor, features.values, features.columns)
    )
    assert recipe.swap_augment and model.tie_head_ == "model"
