"""build_features and predict on a Dask cluster: same numbers, resumable, clear errors.

One real LocalCluster (2 worker processes, 1 thread each) serves the module;
the commands join it with ``--scheduler tcp://...``. One test starts its own
``--scheduler local:2`` cluster, as a user would.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.battles import CLASSES, read_battles, truncate_battles
from features.errors import DataFileError
from features.partitions import battle_files, plan_partitions, read_partition
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from models import PreferenceModel
from pipelines import build_features, predict
from pipelines.config import load_config
from pipelines.distributed.parts import read_feature_parts, read_parts
from pipelines.estimator import model_from_config
from pipelines.make_demo_data import make_demo_battles

distributed = pytest.importorskip("distributed")

LITE = Path(__file__).resolve().parents[2] / "configs" / "lite.yaml"
SMALL = (
    "features.n_jobs=null",
    "features.blocks.tfidf.word_max_features=200",
    "features.blocks.tfidf.char_max_features=200",
    "features.blocks.tfidf.svd_components=8",
    "features.blocks.word2vec.vector_size=8",
    "features.blocks.word2vec.epochs=1",
    "training.n_folds=2",
    "training.booster_params.lightgbm.num_boost_round=10",
    "training.booster_params.lightgbm.early_stopping_rounds=5",
    "training.booster_params.lightgbm.num_threads=1",
    "training.booster_params.xgboost.num_boost_round=10",
    "training.booster_params.xgboost.early_stopping_rounds=5",
    "training.booster_params.xgboost.nthread=1",
)
"""The lite profile made tiny: small vocabularies, 10 rounds, 2 folds."""
N_TRAIN, N_TEST, PART_ROWS = 240, 250, 100


def _sets(*extra: str) -> list[str]:
    return [arg for override in (*SMALL, *extra) for arg in ("--set", override)]


@pytest.fixture(scope="module")
def scheduler():
    """Address of a LocalCluster with 2 single-threaded worker processes."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Demo battles (labelled train, unlabelled test) and a tiny lite model."""
    root = tmp_path_factory.mktemp("dask-rows")
    train = make_demo_battles(n_rows=N_TRAIN, seed=1)
    train.to_csv(root / "train.csv", index=False)
    test = make_demo_battles(n_rows=N_TEST, seed=2).drop(columns=list(CLASSES))
    test.to_csv(root / "test.csv", index=False)
    config = load_config(LITE, list(SMALL))
    model_from_config(config).fit(train).save(root / "model")
    return root


def _predict(workspace: Path, *args: str) -> int:
    return predict.main(
        [
            "--config",
            str(LITE),
            "--model",
            str(workspace / "model"),
            "--quiet",
            *args,
        ]
    )


def _build(workspace: Path, store: Path, *args: str) -> int:
    argv = ["--config", str(LITE), *_sets(f"features.store={store}"), "--quiet"]
    return build_features.main([*argv, "--data", str(workspace / "train.csv"), *args])


def _reference_proba(workspace: Path, battles: pd.DataFrame) -> np.ndarray:
    return PreferenceModel.load(workspace / "model").predict_proba(battles)


# ------------------------------------------------------------ same numbers
def test_distributed_build_equals_fit_transform_bit_for_bit(
    workspace, scheduler, tmp_path, capsys
):
    store = tmp_path / "store"
    code = _build(
        workspace, store, "--scheduler", scheduler, "--partition-rows", str(PART_ROWS)
    )

    assert code == 0
    assert "3 partitions: 3 computed, 0 reused" in capsys.readouterr().out
    (parts,) = (store / "parts").iterdir()
    battles, matrix = read_feature_parts(parts)
    config = load_config(LITE, list(SMALL))
    table = truncate_battles(
        read_battles(workspace / "train.csv"), config.data.max_chars
    )
    expected = FeaturePipeline(config.features.blocks).fit_transform(table)
    assert matrix.columns == expected.columns
    np.testing.assert_array_equal(matrix.values, expected.values)
    # The same store then serves train_gbdt's fit_transform of the file: all hits.
    pipeline = FeaturePipeline(config.features.blocks, store=FeatureStore(store))
    cached = pipeline.fit_transform(table)
    assert [s["cache"] for s in pipeline.stats_] == ["hit"] * len(pipeline.blocks_)
    np.testing.assert_array_equal(cached.values, expected.values)
    assert cached.columns == expected.columns
    assert battles["id"].tolist() == table["id"].tolist()
    assert battles["label"].tolist() == table["label"].tolist()
    # The fitted states travel as JSON and arrays; nothing is pickled.
    assert sorted(p.name for p in (parts / "state").iterdir()) == [
        "manifest.json",
        "tfidf",
        "word2vec",
    ]
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pkl", ".pickle")]


def test_rerun_of_a_killed_build_recomputes_only_the_missing_part_without_refit(
    workspace, scheduler, tmp_path, capsys
):
    store = tmp_path / "store"
    options = ("--scheduler", scheduler, "--partition-rows", str(PART_ROWS))
    assert _build(workspace, store, *options) == 0
    (parts,) = (store / "parts").iterdir()
    first = read_feature_parts(parts)[1].values
    (parts / "part-00001.parquet").unlink()
    (parts / "manifest.json").unlink()
    (parts / ".part-00002.parquet.tmp-killed").write_bytes(b"half a part")
    kept = (parts / "part-00000.parquet").stat().st_mtime_ns
    fitted = (parts / "state" / "manifest.json").stat().st_mtime_ns
    capsys.readouterr()

    assert _build(workspace, store, *options) == 0

    out = capsys.readouterr().out
    assert "3 partitions: 1 computed, 2 reused" in out
    assert not list(parts.glob(".*tmp*"))
    assert (parts / "part-00000.parquet").stat().st_mtime_ns == kept
    assert (parts / "state" / "manifest.json").stat().st_mtime_ns == fitted  # no refit
    np.testing.assert_array_equal(read_feature_parts(parts)[1].values, first)


def test_predict_local_2_equals_predict_proba_and_the_single_process_csv(
    workspace, tmp_path, capsys
):
    single = tmp_path / "single.csv"
    assert (
        _predict(workspace, "--data", str(workspace / "test.csv"), "--out", str(single))
        == 0
    )
    single_report = capsys.readouterr().err
    out = tmp_path / "predictions.csv"

    code = _predict(
        workspace,
        "--data",
        str(workspace / "test.csv"),
        "--out",
        str(out),
        "--scheduler",
        "local:2",
        "--partition-rows",
        str(PART_ROWS),
    )

    assert code == 0
    captured = capsys.readouterr()
    assert "in 3 partitions (3 computed, 0 reused)" in captured.out
    assert captured.err == single_report  # the same repairs, merged over partitions
    parts = read_parts(tmp_path / "predictions.parts")
    battles = read_battles(workspace / "test.csv", labelled=False)
    assert parts["id"].tolist() == battles["id"].tolist()
    expected = _reference_proba(workspace, battles)
    np.testing.assert_array_equal(parts[list(CLASSES)].to_numpy(), expected)
    assert out.read_bytes() == single.read_bytes()


def test_a_directory_of_parquet_files_predicts_like_their_rows_in_one_table(
    workspace, scheduler, tmp_path
):
    frame = pd.read_csv(workspace / "test.csv", dtype=str, keep_default_na=False)
    data = tmp_path / "battles"
    data.mkdir()
    frame.iloc[:130].to_parquet(data / "a.parquet", row_group_size=70)
    frame.iloc[130:].to_parquet(data / "b.parquet")
    out = tmp_path / "parts"

    code = _predict(
        workspace,
        "--data",
        str(data),
        "--out",
        str(out),
        "--scheduler",
        scheduler,
        "--partition-rows",
        "60",
    )

    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # a.parquet: row groups of 70 -> 60 + 10, 60; b.parquet: 60 + 60
    assert [p["rows"] for p in manifest["parts"]] == [60, 10, 60, 60, 60]
    parts = read_parts(out)
    battles = pd.concat(
        [read_battles(data / "a.parquet"), read_battles(data / "b.parquet")],
        ignore_index=True,
    )
    np.testing.assert_array_equal(
        parts[list(CLASSES)].to_numpy(), _reference_proba(workspace, battles)
    )


def test_rerun_of_predict_recomputes_a_missing_or_modified_part_only(
    workspace, scheduler, tmp_path, capsys
):
    out = tmp_path / "parts"
    options = [
        "--data",
        str(workspace / "test.csv"),
        "--out",
        str(out),
        "--scheduler",
        scheduler,
        "--partition-rows",
        "50",
    ]
    assert _predict(workspace, *options) == 0
    first = read_parts(out)
    (out / "part-00001.parquet").unlink()
    (out / "part-00003.parquet").write_bytes(b"not the part its record names")
    (out / ".part-00004.parquet.tmp-killed").write_bytes(b"half")
    (out / "part-00009.json").write_text("{}")  # of an older plan with more parts
    kept = (out / "part-00000.parquet").stat().st_mtime_ns
    capsys.readouterr()

    assert _predict(workspace, *options) == 0

    assert "in 5 partitions (2 computed, 3 reused)" in capsys.readouterr().out
    assert (out / "part-00000.parquet").stat().st_mtime_ns == kept
    assert not (out / "part-00009.json").exists()
    assert not list(out.glob(".*tmp*"))
    pd.testing.assert_frame_equal(read_parts(out), first)


# ------------------------------------------------------------------ errors
def test_a_bad_row_names_its_partition_file_and_row(
    workspace, scheduler, tmp_path, capsys
):
    frame = pd.read_csv(workspace / "test.csv", dtype=str, keep_default_na=False)
    frame.loc[150, "id"] = ""
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)

    code = _predict(
        workspace,
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--scheduler",
        scheduler,
        "--partition-rows",
        str(PART_ROWS),
    )

    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(
        f"error: partition 1 (rows 100-199 of {str(data)!r}): column 'id' is empty "
        "in row(s) 150. Give ids."
    )
    assert "Traceback" not in error


def test_an_id_repeated_across_partitions_names_both_rows(
    workspace, scheduler, tmp_path, capsys
):
    frame = pd.read_csv(workspace / "test.csv", dtype=str, keep_default_na=False)
    frame.loc[160, "id"] = frame.loc[20, "id"]
    data = tmp_path / "twice.csv"
    frame.to_csv(data, index=False)

    code = _predict(
        workspace,
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--scheduler",
        scheduler,
        "--partition-rows",
        str(PART_ROWS),
    )

    assert code == 2
    error = capsys.readouterr().err
    assert "duplicate battle ids across partitions: " in error
    assert f"partition 0 (rows 0-99 of {str(data)!r}) row 20" in error
    assert f"partition 1 (rows 100-199 of {str(data)!r}) row 160" in error
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("local:0", "a local cluster needs at least 1 worker"),
        ("local:two", "must be 'local', 'local:N'"),
        ("http://10.0.0.5:8786", "must be 'local', 'local:N'"),
        ("tcp://10.0.0.5", "must be 'local', 'local:N'"),
        ("tcp://10.0.0.5:70000", "must be 'local', 'local:N'"),
    ],
)
def test_a_bad_scheduler_value_is_one_clear_error(workspace, capsys, value, message):
    with pytest.raises(SystemExit) as exit_info:
        _predict(workspace, "--scheduler", value)

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --scheduler: " in error
    assert message in error and repr(value) in error


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_scheduler_fails_within_its_timeout(workspace, tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.perf_counter()

    code = _build(
        workspace,
        tmp_path / "store",
        "--scheduler",
        address,
        "--scheduler-timeout",
        "1",
    )

    assert code == 2
    assert time.perf_counter() - started < 15
    error = capsys.readouterr().err
    assert (
        f"error: could not reach the Dask scheduler at {address!r} within 1 s" in error
    )
    assert "dask scheduler" in error and not (tmp_path / "store").exists()


def test_cluster_options_without_scheduler_are_refused(workspace, tmp_path, capsys):
    assert _build(workspace, tmp_path / "store", "--partition-rows", "10") == 2
    assert (
        "error: --partition-rows only apply with --scheduler" in capsys.readouterr().err
    )
    assert _build(workspace, tmp_path / "store", "--fit-rows", "10") == 2
    assert "error: --fit-rows only apply with --scheduler" in capsys.readouterr().err


def test_fit_prior_is_refused_with_a_scheduler(workspace, capsys):
    code = _predict(workspace, "--fit-prior", "--scheduler", "tcp://127.0.0.1:1")

    assert code == 2
    assert "--fit-prior estimates one prior" in capsys.readouterr().err


def test_fit_rows_fits_the_stateful_blocks_on_a_sample(
    workspace, scheduler, tmp_path, capsys
):
    store = tmp_path / "store"
    options = ("--scheduler", scheduler, "--blocks", "tfidf", "--fit-rows", "120")

    assert _build(workspace, store, *options) == 0

    (parts,) = (store / "parts").iterdir()
    assert json.loads((parts / "manifest.json").read_text())["rows"] == N_TRAIN
    sampled = read_feature_parts(parts)[1].values
    assert (
        _build(
            workspace, tmp_path / "all", "--scheduler", scheduler, "--blocks", "tfidf"
        )
        == 0
    )
    (everything,) = (tmp_path / "all" / "parts").iterdir()
    assert not np.array_equal(sampled, read_feature_parts(everything)[1].values)
    # A vocabulary fitted on a sample is not the full fit's: not stored as one.
    config = load_config(LITE, list(SMALL))
    table = truncate_battles(
        read_battles(workspace / "train.csv"), config.data.max_chars
    )
    tfidf = {"tfidf": config.features.blocks["tfidf"]}
    sampled_store = FeaturePipeline(tfidf, store=FeatureStore(store))
    sampled_store.fit_transform(table)
    assert sampled_store.stats_[0]["cache"] == "miss"
    full_store = FeaturePipeline(tfidf, store=FeatureStore(tmp_path / "all"))
    full_store.fit_transform(table)
    assert full_store.stats_[0]["cache"] == "hit"


# ------------------------------------------------------ partitions, no dask
@pytest.mark.parametrize("partition_rows", [1, 3, 7, 40])
def test_csv_split_keeps_quoted_line_breaks_and_skips_blank_lines(
    tmp_path, partition_rows
):
    rows = [
        {
            "id": str(i),
            "prompt": f'["q{i}"]',
            "response_a": f'line "one"\n\nline {i}\r\n, x',
            "response_b": '["b"]' if i % 3 else "",
        }
        for i in range(40)
    ]
    path = tmp_path / "battles.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    raw = path.read_bytes().replace(b"\n1,", b"\n\n   \n1,").rstrip(b"\n")
    path.write_bytes(b"\n" + raw)  # a blank first line, no final line break

    partitions = plan_partitions(path, partition_rows)
    joined = pd.concat([read_partition(p) for p in partitions], ignore_index=True)

    assert len(partitions) == -(-40 // partition_rows)
    pd.testing.assert_frame_equal(joined, read_battles(path))


def test_csv_with_a_quote_inside_an_unquoted_field_is_refused_naming_it(tmp_path):
    lines = ["id,prompt,response_a,response_b"]
    lines += [f'{i},["q"],a"b,["c"]' for i in range(6)]
    path = tmp_path / "quotes.csv"
    path.write_text("\n".join(lines) + "\n")
    partitions = plan_partitions(path, 2)

    with pytest.raises(DataFileError, match="needs standard quoting") as error:
        [read_partition(p) for p in partitions]

    assert str(path) in str(error.value)


def test_directory_of_several_formats_and_empty_glob_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("id\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    with pytest.raises(DataFileError, match=r"several formats \['.csv', '.parquet'\]"):
        battle_files(tmp_path)
    with pytest.raises(DataFileError, match="matches no files"):
        battle_files(str(tmp_path / "*.jsonl"))
    assert battle_files(str(tmp_path / "*.csv")) == [
        str((tmp_path / "a.csv").resolve())
    ]


def test_a_partition_predicted_in_chunks_equals_one_call(workspace, monkeypatch):
    from pipelines.distributed import rows as _dask_rows

    battles = pd.read_csv(workspace / "test.csv", dtype={"id": str})
    model = PreferenceModel.load(workspace / "model")
    monkeypatch.setattr(_dask_rows, "PREDICT_CHUNK_ROWS", 64)  # 250 rows: 4 chunks
    chunked = _dask_rows._predict_in_chunks(model, battles, None)
    np.testing.assert_array_equal(chunked, model.predict_proba(battles))
    prior = [0.4, 0.4, 0.2]
    np.testing.assert_array_equal(
        _dask_rows._predict_in_chunks(model, battles, prior),
        model.predict_proba(battles, class_prior=prior),
    )
