"""Arena voters' habits on the Kaggle rows: refusal kinds, tie cues, block ablation.

Scores a profile (lite by default, no tuning: the profile's booster params)
by 5 prompt-grouped folds over ``kaggle.csv``, the rows users bring: each
Kaggle row is predicted by a model that never saw it. Two training sets:

- ``kaggle``: the other Kaggle folds only;
- ``kaggle+arena2023``: the other Kaggle folds and every ``arena2023.csv``
  battle (the same arena and era). The folds inside the model are grouped by
  prompt and P(tie) comes from the boosters (``group_by=prompt``,
  ``tie_head=model``): with the profile's ``auto`` the two sources would be
  held out of each other and P(tie) made a constant, which no tie cue could
  move.

Variants of the feature blocks, each a change of the profile in memory:

- ``before``: the profile as it was (``flags`` without refusal kinds);
- ``+refusal_kinds``, ``+tie_cues``: one of the new features added;
- ``habits``: both (``flags`` with refusal kinds, the ``tie_cues`` block);
- ``habits-<block>``: ``habits`` without one block of the profile;
- ``habits+embeddings``: ``habits`` plus the embeddings profile's MiniLM
  ``embeddings`` block, with the lite profile's booster params, so that it
  differs from ``habits`` by that block alone (``--embeddings`` runs it, on
  ``kaggle`` only: MiniLM reads ~25 texts/s on 2 cores);
- ``embeddings``, ``embeddings-<block>``: the embeddings profile
  (``configs/embeddings.yaml``) with the habits features, without one block.

Every (variant, training set, fold) prediction is appended to
``<out>/folds.jsonl``, so an interrupted run resumes where it stopped; the
score table (``<out>/scores.md``) covers every complete (variant, training
set) in the folder. Usage::

    python -m benchmarks.bench_habits [--variants before,habits] \
        [--train kaggle,kaggle+arena2023] [--embeddings] [--out DIR] \
        [--report-only]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import FeatureStore, read_battles
from features.blocks.flags import FlagsBlock
from models import make_folds, prompt_groups
from models.metrics import multiclass_log_loss
from models.transfer import decisive_auc, tie_auc
from pipelines import load_config
from pipelines.estimator import model_from_config

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared/data/corpus"
DEFAULT_OUT = REPO_ROOT / "artifacts/habits"
TRAIN_SETS = ("kaggle", "kaggle+arena2023")
NEW_FEATURES = ("refusal_kinds", "tie_cues")


def _blocks(profile_blocks: dict[str, Any], new: Sequence[str]) -> dict[str, Any]:
    """The profile's blocks with the new features in ``new`` switched on."""
    blocks = copy.deepcopy(profile_blocks)
    blocks.setdefault("flags", None)
    if blocks["flags"] is not None:
        blocks["flags"] = {**blocks["flags"], "refusal_kinds": "refusal_kinds" in new}
    else:
        del blocks["flags"]
    if "tie_cues" in new:
        blocks["tie_cues"] = {}
    return blocks


def variant_blocks(
    variant: str, lite: dict[str, Any], embeddings: dict[str, Any]
) -> dict[str, Any]:
    """Feature blocks of one named variant (see the module docstring).

    Raises
    ------
    ValueError
        An unknown variant name, or a block to drop that the profile lacks.
    """
    if variant == "before":
        return _blocks(lite, ())
    if variant.startswith("+") and variant[1:] in NEW_FEATURES:
        return _blocks(lite, (variant[1:],))
    if variant == "habits":
        return _blocks(lite, NEW_FEATURES)
    if variant == "embeddings":
        return _blocks(embeddings, NEW_FEATURES)
    if variant == "habits+embeddings":
        if "embeddings" not in embeddings:
            raise ValueError(
                "variant 'habits+embeddings' takes the embeddings block of the "
                "embeddings profile, which has none; add it to configs/embeddings.yaml."
            )
        return {**_blocks(lite, NEW_FEATURES), "embeddings": embeddings["embeddings"]}
    for prefix, base in (("habits-", lite), ("embeddings-", embeddings)):
        if variant.startswith(prefix):
            blocks = _blocks(base, NEW_FEATURES)
            dropped = variant[len(prefix) :]
            if dropped not in blocks:
                raise ValueError(
                    f"variant {variant!r} drops block {dropped!r}, which the "
                    f"profile does not have; its blocks are {sorted(blocks)}."
                )
            del blocks[dropped]
            return blocks
    raise ValueError(
        f"unknown variant {variant!r}; use before, +refusal_kinds, +tie_cues, "
        "habits, habits-<block>, habits+embeddings, embeddings or "
        "embeddings-<block>."
    )


def scores(labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """3-class log loss, decisive AUC and accuracy, tie AUC of predictions."""
    decisive = labels != 2
    picked_a = proba[decisive, 0] >= proba[decisive, 1]
    return {
        "log_loss": multiclass_log_loss(labels, proba),
        "decisive_auc": decisive_auc(labels, proba),
        "decisive_acc": float(np.mean(picked_a == (labels[decisive] == 0))),
        "tie_auc": tie_auc(labels, proba),
    }


def _done(path: Path) -> dict[tuple[str, str, int], list[list[float]]]:
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done[(row["variant"], row["train"], row["fold"])] = row["proba"]
    return done


def _kaggle_folds(
    n_folds: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    kaggle = read_battles(CORPUS / "kaggle.csv")
    labels = kaggle["label"].to_numpy()
    folds = make_folds(labels, prompt_groups(kaggle), n_folds=n_folds, seed=seed)
    return kaggle, labels, folds


def run(
    variants: Sequence[str],
    train_sets: Sequence[str],
    out: Path,
    *,
    n_folds: int = 5,
    seed: int = 42,
) -> None:
    """Cross-fit every variant on every training set, appending to ``folds.jsonl``.

    Raises
    ------
    ValueError
        An unknown variant (see :func:`variant_blocks`).
    """
    lite = load_config(REPO_ROOT / "configs/lite.yaml")
    embeddings = load_config(REPO_ROOT / "configs/embeddings.yaml")
    blocks_of = {
        v: variant_blocks(v, lite.features.blocks, embeddings.features.blocks)
        for v in variants
    }
    kaggle, _, folds = _kaggle_folds(n_folds, seed)
    arena = read_battles(CORPUS / "arena2023.csv")
    out.mkdir(parents=True, exist_ok=True)
    results = out / "folds.jsonl"
    done = _done(results)
    store = FeatureStore(out / "store")
    for variant in variants:
        profile = embeddings if variant.startswith("embeddings") else lite
        for train in train_sets:
            for fold in range(n_folds):
                key = (variant, train, fold)
                if key in done:
                    continue
                test = folds == fold
                fit_rows = kaggle[~test]
                if train == "kaggle+arena2023":
                    fit_rows = pd.concat([fit_rows, arena], ignore_index=True)
                model = model_from_config(
                    profile,
                    blocks=blocks_of[variant],
                    seed=seed,
                    n_jobs=None,
                    group_by="prompt",
                    tie_head="model",
                )
                start = time.perf_counter()
                model.fit(fit_rows.reset_index(drop=True), store=store)
                proba = model.predict_proba(kaggle[test])
                elapsed = time.perf_counter() - start
                done[key] = proba.tolist()
                row = {"variant": variant, "train": train, "fold": fold}
                row |= {"seconds": round(elapsed, 1), "proba": done[key]}
                with results.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                logger.info("%s / %s / fold %d: %.0f s", *key, elapsed)


def _base_of(variant: str) -> str | None:
    """The variant a variant is compared with: one change away."""
    if variant in ("+refusal_kinds", "+tie_cues", "habits"):
        return "before"
    if variant.startswith("habits"):
        return "habits"
    if variant.startswith("embeddings-"):
        return "embeddings"
    return None


def report(outs: Sequence[Path], *, n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Scores of every (variant, training set) whose folds are all in ``outs``.

    ``d_log_loss`` is the change of 3-class log loss against the variant one
    change away (``before`` for the new features, ``habits`` for a dropped
    block), on the same rows; ``d_se`` its standard error over rows (the
    rows are paired, so it is much smaller than either loss's own).
    """
    _, labels, folds = _kaggle_folds(n_folds, seed)
    done: dict[tuple[str, str, int], list[list[float]]] = {}
    for out in outs:
        done |= _done(out / "folds.jsonl")
    oof: dict[tuple[str, str], np.ndarray] = {}
    for variant, train in dict.fromkeys((v, t) for v, t, _ in done):
        if not all((variant, train, f) in done for f in range(n_folds)):
            continue
        proba = np.zeros((len(labels), 3))
        for fold in range(n_folds):
            proba[folds == fold] = np.asarray(done[(variant, train, fold)])
        oof[(variant, train)] = proba
    rows = []
    for (variant, train), proba in oof.items():
        row = {"variant": variant, "train": train, **scores(labels, proba)}
        base = oof.get((_base_of(variant), train))
        if base is not None:
            delta = _row_log_loss(labels, proba) - _row_log_loss(labels, base)
            row["d_log_loss"] = float(delta.mean())
            row["d_se"] = float(delta.std(ddof=1) / np.sqrt(len(delta)))
        rows.append(row)
    return pd.DataFrame(rows)


def _row_log_loss(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    picked = proba[np.arange(len(labels)), labels]
    return -np.log(np.clip(picked, 1e-15, 1.0))


def kind_outcomes(battles: pd.DataFrame, name: str) -> pd.DataFrame:
    """How voters treat each refusal kind: battles where one side has it.

    One row per flag (``refusal``, ``refusal_ethics``, ``refusal_capability``,
    ``hard_refusal``): the battles where exactly one answer has the flag, and
    the shares where that answer won, tied or lost.
    """
    frame = FlagsBlock(refusal_kinds=True).transform(battles).to_frame()
    labels = battles["label"].to_numpy()
    rows = []
    for kind in ("refusal", "refusal_ethics", "refusal_capability", "hard_refusal"):
        a = frame[f"a_flag_{kind}"].to_numpy()
        b = frame[f"b_flag_{kind}"].to_numpy()
        one = a != b
        won = np.where(a > b, labels == 0, labels == 1)[one]
        tied = (labels == 2)[one]
        rows.append(
            {
                "set": name,
                "flag": kind,
                "battles": int(one.sum()),
                "flagged_won": float(won.mean()) if one.any() else float("nan"),
                "tie": float(tied.mean()) if one.any() else float("nan"),
                "flagged_lost": float((~won & ~tied).mean())
                if one.any()
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The score table as markdown, 4 decimals."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [header, rule]
    for row in table.itertuples(index=False):
        cells = [
            ("" if np.isnan(v) else f"{v:.4f}") if isinstance(v, float) else str(v)
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: run the variants, print and save the score table."""
    lite_blocks = ("lengths", "style", "flags", "similarity", "tfidf", "word2vec")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variants",
        default=",".join(
            ["before", "+refusal_kinds", "+tie_cues", "habits"]
            + [f"habits-{b}" for b in lite_blocks]
        ),
        help="comma-separated variant names (default: all lite variants)",
    )
    parser.add_argument("--train", default=",".join(TRAIN_SETS))
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="only habits+embeddings (the lite profile plus MiniLM), kaggle only",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        help="another output folder whose results join the table (repeatable)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="fit nothing: score what the output folder holds",
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    variants = args.variants.split(",")
    train_sets = args.train.split(",")
    if args.embeddings:
        variants, train_sets = ["habits+embeddings"], ["kaggle"]
    unknown = sorted(set(train_sets) - set(TRAIN_SETS))
    if unknown:
        parser.error(f"unknown training sets {unknown}; use {list(TRAIN_SETS)}.")
    if not args.report_only:
        run(variants, train_sets, args.out, seed=args.seed)
    text = markdown(report([args.out, *args.also], seed=args.seed))
    outcomes = pd.concat(
        [
            kind_outcomes(read_battles(CORPUS / f"{name}.csv"), name)
            for name in ("kaggle", "arena2023")
        ]
    )
    text += "\n\n" + markdown(outcomes)
    print(text)
    (args.out / "scores.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
