"""Run the benchmarks and rewrite BENCHMARKS.md (tables, targets, plots).

    python -m benchmarks.run                 # everything (hours on 2 cores)
    python -m benchmarks.run --quick         # tiny sizes, lite only: minutes
    python -m benchmarks.run --only speed,scale --out BENCHMARKS.md
    make bench                               # the same as the first line

Sections: ``accuracy`` (real corpus, grouped 5-fold, per source,
leave-one-source-out, train_gbdt --trials 200), ``speed`` (predict_proba
throughput, latency, stages, embedding choices), ``scale`` (build_features and
train_gbdt at 8k-230k rows, growth exponents, the 200-trial target run) and
``features`` (per-block build speed, peak RSS, embedding engines),
``serving`` (the HTTP service under concurrent and malformed load) and
``distributed`` (predict on a local Dask cluster, a cost model for 10M-100M
battles) and ``gpu`` (the embeddings block on a CUDA GPU; 'not measured'
without one). Each
section is written between markers in BENCHMARKS.md, so ``--only`` replaces
its sections and keeps the others; the targets table at the top is rebuilt
from every section present.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks._context import BenchContext, BenchOptions
from benchmarks._report import (
    REPO_ROOT,
    Section,
    Target,
    load_average,
    machine_info,
    portable_paths,
)
from benchmarks.bench_transfer import add_transfer_arguments, transfer_option_changes

__all__ = ["SECTIONS", "main", "options_from_args", "render", "section_parser"]

logger = logging.getLogger("benchmarks")

SECTIONS: dict[str, str] = {
    "accuracy": "benchmarks.bench_accuracy",
    "transfer": "benchmarks.bench_transfer",
    "target": "benchmarks.bench_target",
    "speed": "benchmarks.bench_speed",
    "serving": "benchmarks.bench_serving",
    "scale": "benchmarks.bench_scale",
    "features": "benchmarks.bench_features",
    "distributed": "benchmarks.bench_distributed",
    "gpu": "benchmarks.bench_gpu",
}
"""Section name -> module with ``run(ctx) -> Section``, in document order."""

_RUN_ORDER = (
    "accuracy",
    "transfer",
    "target",
    "speed",
    "serving",
    "scale",
    "features",
    "distributed",
    "gpu",
)
"""Execution order: features reuses the scale section's 57k build; distributed
the lite fit of the earlier sections."""

_HAND_WRITTEN: tuple[str, ...] = ("choices",)
"""Sections no benchmark writes (one-off measurements behind the profiles'
settings): kept verbatim, after the measured sections, by every run."""

_BEGIN = "<!-- section:{key} -->"
_END = "<!-- /section:{key} -->"
_TARGETS = re.compile(r"<!-- targets:(?P<json>.*?) -->", re.DOTALL)
_TITLE = "# Benchmarks"


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 8000,32000; got {text!r}."
        ) from err


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def section_main(
    run: Callable[[BenchContext], Section],
    description: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Run one section alone with the shared options and print its markdown."""
    options = options_from_args(section_parser(description).parse_args(argv))
    print(run(BenchContext(options)).to_markdown())
    return 0


def section_parser(description: str) -> argparse.ArgumentParser:
    """Options shared by ``benchmarks.run`` and every ``bench_*`` module."""
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny sizes, lite only, one repeat")
    add(
        "--corpus",
        type=Path,
        help="labelled corpus (default: ../shared/data/corpus/train.csv)",
    )
    add(
        "--store",
        type=Path,
        help="feature store kept across runs (default: artifacts/bench-store)",
    )
    add(
        "--work-dir",
        type=Path,
        help="scale sets, temporary stores, profiles (default: artifacts/bench)",
    )
    add("--results-dir", type=Path, help="PNG plots (default: benchmarks/results)")
    add("--profiles", type=_name_list, help="profiles, e.g. lite,default,embeddings")
    add("--repeats", type=int, help="repeats per measurement (medians)")
    add("--n-rows", type=int, help="subsample the corpus to this many battles")
    add("--seed", type=int, help="seed of subsamples and scale sets")
    add(
        "--scale-rows",
        type=_int_list,
        help="scale points, e.g. 8000,32000,57477,229908",
    )
    add(
        "--scale-trials",
        type=int,
        help="train_gbdt --trials at every scale point (default 0)",
    )
    add("--target-trials", type=int, help="trials of the 57k target run (default 200)")
    add(
        "--gbdt-trials",
        type=int,
        help="trials of train_gbdt on the corpus (default 200)",
    )
    add("--embed-rows", type=int, help="rows of the embeddings-block timing (0 skips)")
    add("--embed-texts", type=int, help="texts of bench_embeddings (0 skips)")
    add("--latency-calls", type=int, help="single-row calls for p50/p99")
    add(
        "--batch-sizes",
        type=_int_list,
        help="throughput batch sizes (default 1,32,1000,10000)",
    )
    add("--no-variants", action="store_true", help="skip the embedding-choice fits")
    add("--no-loso", action="store_true", help="skip leave-one-source-out")
    add("--target-family", help="source family of the target section (kaggle-lmsys)")
    add("--target-folds", type=int, help="folds over the target's rows (default 5)")
    add(
        "--target-curve",
        type=_int_list,
        help="learning-curve sizes in target rows, e.g. 110,220,440,879 (0: none)",
    )
    add(
        "--target-other-rows",
        type=int,
        help="target section: at most this many rows of each other family (seeded)",
    )
    add(
        "--target-fast",
        action="store_true",
        help="target section: lightgbm only, 3 inner folds, fast booster limits",
    )
    add(
        "--target-profiles",
        type=_name_list,
        help="target section: profiles, one table each (default: lite)",
    )
    add(
        "--target-configs",
        help="target-table configurations, separated by ';' (default: all)",
    )
    add(
        "--no-scale-train",
        action="store_true",
        help="scale points build only (the 57k target run still trains)",
    )
    add(
        "--scale-config-train",
        action="store_true",
        help="train every scale point with the profile's own booster params "
        "(default: LightGBM alone, 3 folds, fast boosters)",
    )
    add("--no-profile", action="store_true", help="do not run py-spy on missed targets")
    add(
        "--child-timeout-min",
        type=float,
        help="kill a child process after this many minutes (default 120; 0: never)",
    )
    add(
        "--tuning-budget-min",
        type=float,
        help="--timeout of the 57k target train_gbdt run in minutes: tuning stops "
        "there and the trials done are reported (default 60; 0: no budget)",
    )
    add(
        "--gbdt-budget-min",
        type=float,
        help="--timeout of the corpus train_gbdt run in minutes (default 5; 0: no "
        "budget)",
    )
    add(
        "--loso-profiles",
        type=_name_list,
        help="profiles of the leave-one-source-out table (default: lite)",
    )
    add(
        "--set",
        dest="overrides",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="config override for every profile (repeatable)",
    )
    add("--cpus", type=_int_list, help="pin this run (and its children) to these CPUs")
    add("--verbose", action="store_true", help="debug logging")
    add_transfer_arguments(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """BenchOptions from parsed arguments: quick or full defaults, then flags."""
    if getattr(args, "cpus", None):
        # Children inherit the affinity and start their thread pools under it;
        # pools this process already started may keep their size, so for a
        # strict in-process limit start the run under `taskset -c CPUS`.
        os.sched_setaffinity(0, set(args.cpus))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, str(len(set(args.cpus))))
    changes = {
        name: getattr(args, name)
        for name in (
            "corpus",
            "store",
            "work_dir",
            "results_dir",
            "profiles",
            "repeats",
            "n_rows",
            "seed",
            "scale_rows",
            "scale_trials",
            "target_trials",
            "gbdt_trials",
            "embed_rows",
            "embed_texts",
            "latency_calls",
            "batch_sizes",
        )
        if getattr(args, name, None) is not None
    }
    if getattr(args, "overrides", None):
        changes["overrides"] = tuple(args.overrides)
    if getattr(args, "no_variants", False):
        changes["embedding_variants"] = False
    if getattr(args, "target_fast", False):
        changes["target_fast"] = True
    for name in ("target_family", "target_folds", "target_other_rows"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    if getattr(args, "target_curve", None) is not None:
        changes["target_curve"] = tuple(n for n in args.target_curve if n > 0)
    if getattr(args, "target_profiles", None):
        changes["target_profiles"] = tuple(args.target_profiles)
    if getattr(args, "target_configs", None):
        changes["target_configs"] = tuple(
            name.strip() for name in args.target_configs.split(";") if name.strip()
        )
    if getattr(args, "no_loso", False):
        changes["loso"] = False
    if getattr(args, "no_scale_train", False):
        changes["scale_train"] = False
    if getattr(args, "scale_config_train", False):
        changes["scale_fast_train"] = False
    if getattr(args, "gbdt_budget_min", None) is not None:
        changes["gbdt_tuning_budget"] = args.gbdt_budget_min * 60 or None
    if getattr(args, "no_profile", False):
        changes["profile_misses"] = False
    if getattr(args, "child_timeout_min", None) is not None:
        changes["timeout"] = args.child_timeout_min * 60 or None
    if getattr(args, "tuning_budget_min", None) is not None:
        changes["tuning_budget"] = args.tuning_budget_min * 60 or None
    if getattr(args, "loso_profiles", None):
        changes["loso_profiles"] = args.loso_profiles
    changes.update(transfer_option_changes(args))
    options = (
        BenchOptions.for_quick(**changes) if args.quick else BenchOptions(**changes)
    )
    if options.quick and "overrides" in changes:
        options.overrides = (*BenchOptions.for_quick().overrides, *changes["overrides"])
    unknown = [
        p
        for p in (*options.profiles, *options.target_profiles)
        if not (REPO_ROOT / "configs" / f"{p}.yaml").exists()
    ]
    if unknown:
        raise SystemExit(
            f"error: unknown profile(s) {unknown}; profiles live in configs/."
        )
    _setup_logging(getattr(args, "verbose", False))
    return options


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("benchmarks").setLevel(logging.DEBUG if verbose else logging.INFO)


# ---------------------------------------------------------------- rendering
def _run_line(
    command: str, machine: dict, options: BenchOptions, seconds: float
) -> str:
    mode = (
        "**--quick** (tiny sizes: checks the harness, not the model)"
        if options.quick
        else "full"
    )
    gpu = machine["gpu"]
    if gpu == "none":
        gpu = "none - GPU rows not measured: no GPU lent"
    threads = ", ".join(f"{k}={v}" for k, v in machine.get("thread_env", {}).items())
    return (
        f"_Run: `{command}` ({mode}) on {machine['date']}; {machine['cores']} cores "
        f"({machine['cpu_model']}, {machine['memory_gb']} GB RAM, GPU: "
        f"{gpu}); load average at start {machine['load_at_start'][0]}, at end "
        f"{load_average()[0]}; "
        f"{'thread settings ' + threads + '; ' if threads else ''}"
        f"medians over {options.repeats} repeat(s); {seconds / 60:.1f} min._"
    )


def _targets_json(targets: Sequence[Target]) -> str:
    data = [t.__dict__ for t in targets]
    return json.dumps(data, ensure_ascii=False).replace("--", "\\u002d\\u002d")


def render_section(section: Section, run_line: str, out: Path) -> str:
    """One section between its markers, with its run line and targets."""
    body = section.to_markdown(figure_base=out.parent)
    title, _, rest = body.partition("\n")
    return "\n".join(
        [
            _BEGIN.format(key=section.key),
            title,
            "",
            run_line,
            f"<!-- targets:{_targets_json(section.targets)} -->",
            rest.strip("\n"),
            _END.format(key=section.key),
        ]
    )


def _existing_sections(text: str) -> dict[str, str]:
    found = {}
    for key in (*SECTIONS, *_HAND_WRITTEN):
        begin, end = _BEGIN.format(key=key), _END.format(key=key)
        if begin in text and end in text:
            start = text.index(begin)
            found[key] = text[start : text.index(end, start) + len(end)]
    return found


def _targets_table(blocks: dict[str, str]) -> str:
    lines = [
        "| section | target | goal | measured | met |",
        "|---|---|---|---|---|",
    ]
    for key in SECTIONS:
        if key not in blocks:
            continue
        match = _TARGETS.search(blocks[key])
        targets = json.loads(match["json"]) if match else []
        for target in targets:
            met = {True: "yes", False: "**no**", None: "-"}[target["met"]]
            if target.get("cause"):
                met += f" ({target['cause']})"
            lines.append(
                f"| {key} | {target['name']} | {target['goal']} | "
                f"{target['measured']} | {met} |"
            )
    return "\n".join(lines)


def render(blocks: dict[str, str], machine: dict, command: str) -> str:
    """The whole BENCHMARKS.md from section blocks."""
    order = [key for key in (*SECTIONS, *_HAND_WRITTEN) if key in blocks]
    parts = [
        _TITLE,
        "",
        f"Written by `{command}` (last run {machine['date']}). Reproduce "
        "everything with `python -m benchmarks.run` (or `make bench`); one section "
        "with `python -m benchmarks.run --only SECTION`; a harness check in "
        "minutes with `--quick`. Each section states its own command, machine, "
        "date and load.",
        "",
        f"Machine: {machine['cores']} cores available ({machine['cpu_count']} online), "
        f"{machine['cpu_model']}, {machine['memory_gb']} GB RAM, Python "
        f"{machine['python']}, {machine['platform']}. GPU: "
        + (
            "none - every GPU row says 'not measured: no GPU lent'."
            if machine["gpu"] == "none"
            else machine["gpu"]
        ),
        "",
        "## Targets",
        "",
        _targets_table(blocks),
        "",
        "Contents: " + ", ".join(f"[{key}](#{_anchor(blocks[key])})" for key in order),
        "",
    ]
    parts += [blocks[key] + "\n" for key in order]
    # A reader's paths, not the folders of the machine that ran it.
    return portable_paths("\n".join(parts).rstrip() + "\n")


def _anchor(block: str) -> str:
    title = next(line for line in block.splitlines() if line.startswith("## "))[3:]
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -------------------------------------------------------------------- main
def run_sections(
    ctx: BenchContext,
    keys: Sequence[str],
    out: Path,
    command: str,
    on_section: Callable[[Section], None] | None = None,
) -> list[Section]:
    """Run the chosen sections (in execution order), rewriting ``out`` after each."""
    import importlib

    machine = machine_info()
    existing = (
        _existing_sections(out.read_text(encoding="utf-8")) if out.exists() else {}
    )
    done = []
    for key in [k for k in _RUN_ORDER if k in keys]:
        logger.info("section %s: starting", key)
        started = time.perf_counter()
        section_machine = machine_info()
        section = importlib.import_module(SECTIONS[key]).run(ctx)
        seconds = time.perf_counter() - started
        section.seconds = seconds
        logger.info("section %s: done in %.1f min", key, seconds / 60)
        existing[key] = render_section(
            section, _run_line(command, section_machine, ctx.options, seconds), out
        )
        _write_atomic(out, render(existing, machine, command))
        done.append(section)
        if on_section is not None:
            on_section(section)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.run``."""
    parser = section_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        type=_name_list,
        default=tuple(SECTIONS),
        help=f"comma-separated sections from {list(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "BENCHMARKS.md",
        help="markdown file to rewrite (default: BENCHMARKS.md at the repo root)",
    )
    args = parser.parse_args(argv)
    unknown = [key for key in args.only if key not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}.")
    options = options_from_args(args)
    shown_argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "benchmarks.run", *shown_argv])
    started = time.perf_counter()
    ctx = BenchContext(options)
    sections = run_sections(ctx, args.only, args.out, command)
    missed = [t.name for s in sections for t in s.targets if t.met is False]
    print(
        f"wrote {args.out} ({', '.join(s.key for s in sections)}) in "
        f"{(time.perf_counter() - started) / 60:.1f} min; targets missed: "
        f"{len(missed)}" + (f" ({'; '.join(missed)})" if missed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
