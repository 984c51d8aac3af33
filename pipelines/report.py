"""Training and evaluation reports: JSON, markdown and a calibration plot.

Every number is out-of-fold (training) or held-out (evaluation), next to the
class prior and a length-only logistic regression computed on the same
folds, overall and per ``source`` when the battles have one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.battles import SWAP_LABELS, swap
from models.baselines import length_logreg_oof, prior_oof
from models.label_shift import adjust_to_prior, estimate_prior_em
from models.metrics import multiclass_log_loss

__all__ = [
    "build_report",
    "calibration_table",
    "feature_importance",
    "per_source_table",
    "swap_consistency",
    "write_report",
]


def calibration_table(
    labels: NDArray[np.int64], proba: NDArray[np.float64], n_bins: int = 10
) -> pd.DataFrame:
    """Reliability of every class's probability: mean predicted vs observed."""
    rows = []
    edges = np.linspace(0, 1, n_bins + 1)
    for cls, name in enumerate(("A", "B", "tie")):
        bins = np.clip(np.digitize(proba[:, cls], edges) - 1, 0, n_bins - 1)
        for b in range(n_bins):
            mask = bins == b
            if mask.any():
                rows.append(
                    {
                        "class": name,
                        "bin": b,
                        "n": int(mask.sum()),
                        "predicted": float(proba[mask, cls].mean()),
                        "observed": float((labels[mask] == cls).mean()),
                    }
                )
    return pd.DataFrame(rows)


def per_source_table(
    battles: pd.DataFrame,
    labels: NDArray[np.int64],
    columns: dict[str, NDArray[np.float64]],
    train_prior: NDArray[np.float64],
    model_key: str = "model",
) -> pd.DataFrame:
    """Log loss per source for each prediction column, plus the model with an
    EM-estimated source prior (label shift), and the source's tie rate."""
    sources = (
        battles["source"].astype(str).to_numpy()
        if "source" in battles.columns
        else np.full(len(battles), "all")
    )
    rows = []
    for source in [*sorted(set(sources)), "ALL"]:
        mask = np.ones(len(sources), bool) if source == "ALL" else sources == source
        row: dict[str, Any] = {
            "source": source,
            "n": int(mask.sum()),
            "tie_rate": float((labels[mask] == 2).mean()),
        }
        for name, proba in columns.items():
            row[name] = multiclass_log_loss(labels[mask], proba[mask])
        model_proba = columns[model_key][mask]
        prior = estimate_prior_em(model_proba, train_prior)
        row[f"{model_key}+em_prior"] = multiclass_log_loss(
            labels[mask], adjust_to_prior(model_proba, train_prior, prior)
        )
        rows.append(row)
    return pd.DataFrame(rows)


def swap_consistency(model: Any, battles: pd.DataFrame, n_rows: int = 300) -> float:
    """Largest |p(swap(x)) - mirror(p(x))| over the first ``n_rows`` battles."""
    sample = battles.iloc[:n_rows]
    direct = model.predict_proba(sample)
    swapped = model.predict_proba(swap(sample))
    return float(np.abs(swapped - direct[:, SWAP_LABELS]).max())


def feature_importance(model: Any, top: int = 25) -> pd.DataFrame:
    """Mean total gain per feature over folds, per booster kind, top rows."""
    names = model.feature_names_out_
    frames = []
    for kind, result in model.fold_results_.items():
        gains = np.zeros(len(names))
        for fold_model in result.models:
            booster = fold_model.model_
            if kind == "lightgbm":
                gains += booster.feature_importance(importance_type="gain")
            else:
                for key, value in booster.get_score(
                    importance_type="total_gain"
                ).items():
                    gains[int(key[1:])] += value
        gains /= max(len(result.models), 1)
        share = gains / gains.sum() if gains.sum() > 0 else gains
        frames.append(
            pd.DataFrame({"booster": kind, "feature": names, "gain_share": share})
        )
    table = pd.concat(frames)
    return (
        table.groupby("feature", as_index=False)["gain_share"]
        .mean()
        .sort_values("gain_share", ascending=False)
        .head(top)
        .reset_index(drop=True)
    )


def _plot_calibration(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=90)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    for name, part in table.groupby("class"):
        ax.plot(part["predicted"], part["observed"], marker="o", label=name)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = []
    for row in frame.itertuples(index=False):
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *body])


def build_report(
    model: Any,
    battles: pd.DataFrame,
    labels: NDArray[np.int64],
    proba: NDArray[np.float64],
    folds: NDArray[np.int64],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """All report numbers for predictions ``proba`` of labelled ``battles``."""
    columns = {
        "class_prior": prior_oof(labels, folds),
        "length_logreg": length_logreg_oof(battles, labels, folds),
        "model": proba,
    }
    sources = per_source_table(battles, labels, columns, model.train_prior_)
    overall = sources[sources["source"] == "ALL"].iloc[0]
    return {
        "n_rows": int(len(labels)),
        "log_loss": float(overall["model"]),
        "log_loss_em_prior": float(overall["model+em_prior"]),
        "class_prior": float(overall["class_prior"]),
        "length_logreg": float(overall["length_logreg"]),
        "accuracy": float(np.mean(proba.argmax(axis=1) == labels)),
        "per_source": sources.to_dict(orient="records"),
        "calibration": calibration_table(labels, proba).to_dict(orient="records"),
        "feature_importance": feature_importance(model).to_dict(orient="records"),
        "swap_consistency_max_abs": swap_consistency(model, battles),
        **(extra or {}),
    }


def _target_markdown(target: dict[str, Any]) -> list[str]:
    """The target section: the flattering out-of-fold score and the held-out one."""
    rows = [
        (
            "out-of-fold (rounds, stacker, temperature and tie head chosen on these "
            "same folds: flatters on a small target)",
            target["out_of_fold"],
        )
    ]
    if target.get("held_out"):
        rows.append(
            (
                f"held out ({target['held_out']['n_folds']} folds of the target, each "
                "predicted by a model fitted without it: expect this on new battles "
                "of these voters)",
                target["held_out"],
            )
        )
    lines = [
        f"## Target `{target['family']}` ({target['n_rows']:,} battles)",
        "",
        "| estimate | log loss | decisive AUC | decisive accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, scores in rows:
        lines.append(
            f"| {name} | {scores['log_loss']:.4f} | {scores['decisive_auc']:.3f} | "
            f"{scores['decisive_accuracy']:.3f} |"
        )
    if not target.get("held_out"):
        lines += [
            "",
            "No held-out estimate: pass --target-estimate-folds 5 to train_gbdt.",
        ]
    return lines


def write_report(
    report: dict[str, Any], directory: Path, title: str
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``calibration.png`` to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "report.json",
        "markdown": directory / "report.md",
        "plot": directory / "calibration.png",
    }
    paths["json"].write_text(json.dumps(report, indent=1, default=float))
    _plot_calibration(pd.DataFrame(report["calibration"]), paths["plot"], title)
    lines = [
        f"# {title}",
        "",
        f"- battles: {report['n_rows']:,}",
        f"- log loss: **{report['log_loss']:.4f}** (class prior "
        f"{report['class_prior']:.4f}, length-only logistic regression "
        f"{report['length_logreg']:.4f})",
        f"- with an EM-estimated class prior: {report['log_loss_em_prior']:.4f}",
        f"- accuracy: {report['accuracy']:.3f}",
        f"- swap consistency (max |p(swap x) - mirror p(x)|): "
        f"{report['swap_consistency_max_abs']:.2e}",
    ]
    for key in (
        "boosters",
        "stacked",
        "stack_method",
        "temperature",
        "swap_augment_oof_log_loss",
        "degenerate_rules",
    ):
        if key in report:
            lines.append(f"- {key}: {report[key]}")
    lines += [
        "",
        "## Per source",
        "",
        _markdown_table(pd.DataFrame(report["per_source"])),
    ]
    if report.get("target"):
        lines += ["", *_target_markdown(report["target"])]
    if report.get("transfer"):
        from pipelines.transfer_report import transfer_markdown

        lines += ["", transfer_markdown(report["transfer"])]
    lines += [
        "",
        "## Top features",
        "",
        _markdown_table(pd.DataFrame(report["feature_importance"])),
    ]
    if "tuning" in report:
        lines += [
            "",
            "## Tuning",
            "",
            "```",
            json.dumps(report["tuning"], indent=1),
            "```",
        ]
    lines += ["", "![calibration](calibration.png)", ""]
    paths["markdown"].write_text("\n".join(lines))
    return paths
