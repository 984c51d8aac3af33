"""The HTTP service: a real ``python -m pipelines.serve`` process, a real client.

A small model is fitted once per session and served by a server process on
127.0.0.1; the endpoint tests talk to it with httpx, and the micro-batcher is
also driven directly with the real model. Nothing is mocked: the numbers are
compared with the same model directory loaded in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.battles import CLASSES, read_battles, repair_report
from models import PreferenceModel
from pipelines import serve
from pipelines.make_demo_data import make_demo_battles
from pipelines.serving.batcher import BatcherStopped, MicroBatcher

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[2]
MAX_BATCH = 64
MAX_BODY_BYTES = 256 * 1024
CLEAN_EXIT = (0, -signal.SIGTERM)
FAST_LIGHTGBM = {
    "num_boost_round": 30,
    "learning_rate": 0.2,
    "num_leaves": 7,
    "num_threads": 1,
}


# ------------------------------------------------------------------ server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m pipelines.serve`` on a free port, its log in a file."""

    def __init__(self, model_dir: Path, log_path: Path, *options: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "pipelines.serve",
            "--model",
            str(model_dir),
            "--port",
            str(self.port),
            *options,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        with open(log_path, "wb") as log:
            # A process group of its own, as a terminal gives a command.
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited ({self.process.returncode}):\n{self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"server not ready after {timeout} s:\n{self.log}")

    def wait_workers(self, n_workers: int, timeout: float = 90.0) -> ServerProcess:
        """Until ``n_workers`` worker processes have started their app."""
        deadline = time.monotonic() + timeout
        while self.log.count("Application startup complete") < n_workers:
            assert time.monotonic() < deadline, self.log
            time.sleep(0.1)
        return self

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def demo_frame() -> pd.DataFrame:
    """Synthetic battles in the Kaggle layout (JSON strings, with dirt), no targets."""
    frame = make_demo_battles(n_rows=240, seed=5)
    return frame.drop(columns=list(CLASSES))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A small lengths + flags model, fitted in well under a second."""
    frame = make_demo_battles(n_rows=300, seed=3)
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        boosters=("lightgbm",),
        booster_params={"lightgbm": FAST_LIGHTGBM},
        n_folds=2,
        seed=0,
    ).fit(frame)
    return model.save(tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="session")
def local_model(model_dir) -> PreferenceModel:
    """The served model directory, loaded in this process for reference numbers."""
    return PreferenceModel.load(model_dir)


@pytest.fixture(scope="session")
def server(model_dir, tmp_path_factory):
    process = ServerProcess(
        model_dir,
        tmp_path_factory.mktemp("serve-log") / "server.log",
        "--max-batch",
        str(MAX_BATCH),
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
        "--batch-wait-ms",
        "5",
    ).wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def _records(frame: pd.DataFrame, form: str = "kaggle") -> list[dict]:
    """Battles as a client sends them: Kaggle strings, lists of turns or strings."""
    records = []
    for row in frame.itertuples(index=False):
        record = {"id": str(row.id)}
        for column in ("prompt", "response_a", "response_b"):
            value = getattr(row, column)
            if form == "turns":
                value = json.loads(value)
            elif form == "string":
                (value,) = json.loads(value)
            record[column] = value
        records.append(record)
    return records


def _single_string_rows(frame: pd.DataFrame) -> pd.DataFrame:
    def plain(value: str) -> bool:
        try:
            turns = json.loads(value)
        except ValueError:
            return False
        return (
            isinstance(turns, list)
            and len(turns) == 1
            and isinstance(turns[0], str)
            and not turns[0].lstrip().startswith("[")
        )

    keep = frame[["prompt", "response_a", "response_b"]].map(plain).all(axis=1)
    return frame[keep]


def _proba(response_json: dict) -> np.ndarray:
    return np.array(
        [[p[name] for name in CLASSES] for p in response_json["predictions"]]
    )


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


# --------------------------------------------------------------- endpoints
def test_healthz_says_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_names_the_verified_model_by_its_manifest_sha(client, model_dir):
    body = client.get("/readyz").json()
    expected = hashlib.sha256((model_dir / "manifest.json").read_bytes()).hexdigest()
    assert body == {"status": "ready", "model": expected, "verified": True}


def test_model_endpoint_reports_blocks_metrics_format_and_sha(client, local_model):
    info = client.get("/v1/model").json()
    assert info["model"] == client.get("/readyz").json()["model"]
    assert info["format_version"] == 1
    assert info["blocks"] == ["lengths", "flags"]
    assert info["boosters"] == ["lightgbm"]
    assert info["n_features"] == local_model.n_features_in_
    assert info["metrics"]["oof_log_loss"] == pytest.approx(
        local_model.metrics_["oof_log_loss"]
    )
    assert "profile" in info


def test_openapi_document_and_docs_page_are_served(client):
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert {"/v1/predict", "/v1/model", "/healthz", "/readyz"} <= set(schema["paths"])
    battles = schema["components"]["schemas"]["PredictRequest"]["properties"]
    assert battles["battles"]["maxItems"] == MAX_BATCH
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


@pytest.mark.parametrize("form", ["kaggle", "turns", "string"])
def test_predict_equals_in_process_predict_proba_for_every_text_form(
    client, demo_frame, local_model, form
):
    frame = demo_frame.iloc[:MAX_BATCH]
    if form == "string":
        frame = _single_string_rows(frame)
    if form == "turns":
        # Rows with invalid JSON have no list form; they are tested as Kaggle text.
        frame = frame[~frame["id"].astype(str).isin(_invalid_json_ids(frame))]
    response = client.post("/v1/predict", json={"battles": _records(frame, form)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["id"] for p in body["predictions"]] == frame["id"].astype(str).tolist()
    expected = local_model.predict_proba(frame)
    assert np.allclose(_proba(body), expected, rtol=0, atol=1e-9)
    assert body["model"] == client.get("/readyz").json()["model"]


def _invalid_json_ids(frame: pd.DataFrame) -> list[str]:
    return repair_report(read_battles(frame)).examples.get("invalid_json", [])


def test_predict_reports_the_same_repairs_as_the_readers(client, demo_frame):
    examples = repair_report(read_battles(demo_frame)).examples
    dirty = {battle_id for ids in examples.values() for battle_id in ids}
    ids = demo_frame["id"].astype(str)
    frame = pd.concat([demo_frame[ids.isin(dirty)], demo_frame[~ids.isin(dirty)][:8]])
    response = client.post("/v1/predict", json={"battles": _records(frame)})
    expected = repair_report(read_battles(frame)).to_dict()
    assert expected["n_repairs"] > 0
    assert response.json()["repairs"] == expected


def test_predict_repairs_null_and_non_string_turns_bad_json_and_surrogates(
    client, local_model
):
    battle = {
        "id": "dirty",
        "prompt": ["Hi", None],
        "response_a": ["ok \ud800", 5],
        "response_b": "[not json",
    }
    # The lone surrogate travels as a JSON \\u escape, as a browser sends it.
    body = json.dumps({"battles": [battle]}).encode("ascii")
    response = client.post("/v1/predict", content=body)
    assert response.status_code == 200, response.text
    counts = response.json()["repairs"]["counts"]
    assert counts["null_turn"] == 1
    assert counts["non_string_turn"] == 1
    assert counts["invalid_json"] == 1
    assert counts["lone_surrogate"] == 1
    kaggle = pd.DataFrame(
        {
            "id": ["dirty"],
            "prompt": ['["Hi", null]'],
            "response_a": ['["ok \\ud800", 5]'],
            "response_b": ["[not json"],
        }
    )
    assert np.allclose(
        _proba(response.json()), local_model.predict_proba(kaggle), rtol=0, atol=1e-9
    )


def test_integer_ids_come_back_as_strings_in_input_order(client):
    battles = [
        {"id": i, "prompt": "q", "response_a": "a" * i, "response_b": "b"}
        for i in (3, 1, 2)
    ]
    body = client.post("/v1/predict", json={"battles": battles}).json()
    assert [p["id"] for p in body["predictions"]] == ["3", "1", "2"]
    assert np.allclose(_proba(body).sum(axis=1), 1.0)


def test_class_prior_shifts_predictions_as_predict_proba_does(
    client, demo_frame, local_model
):
    frame = demo_frame.iloc[:8]
    prior = [0.45, 0.45, 0.10]
    body = client.post(
        "/v1/predict", json={"battles": _records(frame), "class_prior": prior}
    ).json()
    expected = local_model.predict_proba(frame, class_prior=prior)
    assert np.allclose(_proba(body), expected, rtol=0, atol=1e-9)


# -------------------------------------------------------------- bad input
_GOOD = {"id": "1", "prompt": "q", "response_a": "a", "response_b": "b"}
BAD_BODIES = {
    "malformed JSON": (b'{"battles": [', 400, "body", None, "not valid JSON"),
    "empty body": (b"", 400, "body", None, "body is empty"),
    "not UTF-8": (b'{"battles": "\xff"}', 400, "body", None, "not UTF-8"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, 400, "body", None, "JSON"),
    "not an object": (b"[1, 2]", 422, "body", None, "must be a JSON object"),
    "no battles": (b'{"explain": 2}', 422, "battles", None, "has no 'battles'"),
    "battles not a list": (
        b'{"battles": {"id": 1}}',
        422,
        "battles",
        None,
        "must be a list",
    ),
    "empty battles": (b'{"battles": []}', 422, "battles", None, "empty list"),
    "unknown key": (
        json.dumps({"battles": [_GOOD], "explian": 3}).encode(),
        422,
        "explian",
        None,
        r"unknown key\(s\) \['explian'\]",
    ),
    "battle not an object": (
        json.dumps({"battles": [_GOOD, "x"]}).encode(),
        422,
        "battles[1]",
        1,
        r"battles\[1\] must be an object",
    ),
    "missing field": (
        json.dumps({"battles": [_GOOD, _GOOD | {"id": "2"}, {"id": "3"}]}).encode(),
        422,
        "battles[2].prompt",
        2,
        r"battles\[2\] has no 'prompt'",
    ),
    "wrong type": (
        json.dumps({"battles": [_GOOD | {"response_b": 42}]}).encode(),
        422,
        "battles[0].response_b",
        0,
        r"battles\[0\]\.response_b must be a string.*got number",
    ),
    "object as text": (
        json.dumps({"battles": [_GOOD | {"prompt": {"text": "q"}}]}).encode(),
        422,
        "battles[0].prompt",
        0,
        "got object",
    ),
    "id of wrong type": (
        json.dumps({"battles": [_GOOD | {"id": [1]}]}).encode(),
        422,
        "battles[0].id",
        0,
        "id must be a string or an integer",
    ),
    "duplicate ids": (
        json.dumps({"battles": [_GOOD, _GOOD]}).encode(),
        422,
        "battles",
        None,
        "duplicate battle ids",
    ),
    "bad class prior": (
        json.dumps({"battles": [_GOOD], "class_prior": [0.5, 0.5]}).encode(),
        422,
        "class_prior",
        None,
        "3 positive numbers",
    ),
    "zero in class prior": (
        json.dumps({"battles": [_GOOD], "class_prior": [1, 0, 1]}).encode(),
        422,
        "class_prior",
        None,
        "3 positive numbers",
    ),
    "explain not an integer": (
        json.dumps({"battles": [_GOOD], "explain": True}).encode(),
        422,
        "explain",
        None,
        "positive integer",
    ),
    "explain over the concepts": (
        json.dumps({"battles": [_GOOD], "explain": 10_000}).encode(),
        422,
        "explain",
        None,
        "explanations have at most",
    ),
    "too many battles": (
        json.dumps(
            {"battles": [_GOOD | {"id": str(i)} for i in range(MAX_BATCH + 1)]}
        ).encode(),
        413,
        "battles",
        None,
        f"more than this server's limit of {MAX_BATCH}",
    ),
    "body over the size limit": (
        json.dumps({"battles": [_GOOD | {"prompt": "x" * MAX_BODY_BYTES}]}).encode(),
        413,
        "body",
        None,
        "more than this server's limit",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_input_gets_a_4xx_json_error_naming_field_and_battle(client, case):
    body, status, field, battle_index, message = BAD_BODIES[case]
    response = client.post(
        "/v1/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert error["field"] == field
    assert error["battle_index"] == battle_index
    assert re.search(message, error["message"]), error["message"]


def test_streamed_body_over_the_size_limit_gets_413(client):
    def chunks():
        yield b'{"battles": [{"id": "1", "prompt": "'
        for _ in range(MAX_BODY_BYTES // 8192 + 2):
            yield b"x" * 8192
        yield b'", "response_a": "a", "response_b": "b"}]}'

    response = client.post("/v1/predict", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "body"


def test_unknown_path_and_wrong_method_get_json_errors(client):
    missing = client.get("/v2/predict")
    assert missing.status_code == 404
    assert "no endpoint at /v2/predict" in missing.json()["error"]["message"]
    wrong = client.get("/v1/predict")
    assert wrong.status_code == 405
    assert "method GET is not allowed" in wrong.json()["error"]["message"]


def test_server_still_predicts_after_every_bad_input(client, demo_frame, local_model):
    for body, *_ in BAD_BODIES.values():
        assert client.post("/v1/predict", content=body).status_code < 500
    frame = demo_frame.iloc[:2]
    body = client.post("/v1/predict", json={"battles": _records(frame)}).json()
    expected = local_model.predict_proba(frame)
    assert np.allclose(_proba(body), expected, rtol=0, atol=1e-9)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELD = _JSON | st.sampled_from(["[", '["a", null]', "[1, [2]]", '"x"', "\ud800"])


@settings(max_examples=120, deadline=None)
@given(
    body=st.one_of(
        _JSON,
        st.fixed_dictionaries(
            {"battles": st.lists(_JSON, max_size=3)},
            optional={"class_prior": _JSON, "explain": _JSON},
        ),
        st.fixed_dictionaries(
            {
                "battles": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "id": _JSON,
                            "prompt": _FIELD,
                            "response_a": _FIELD,
                            "response_b": _FIELD,
                        },
                    ),
                    min_size=1,
                    max_size=3,
                )
            }
        ),
    )
)
def test_no_json_body_ever_gets_a_5xx(client, body):
    response = client.post("/v1/predict", content=json.dumps(body).encode())
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or "error" in response.json()


# ------------------------------------------------------------- concurrency
def test_32_concurrent_clients_get_what_predict_proba_gives(
    server, client, demo_frame, local_model
):
    expected = pd.DataFrame(
        local_model.predict_proba(demo_frame),
        index=demo_frame["id"].astype(str),
        columns=list(CLASSES),
    )
    calls_before = _metric(client.get("/metrics").text, "arena_model_call_rows_count")
    n_clients, requests_each = 32, 2
    barrier = threading.Barrier(n_clients)
    results: dict[tuple[int, int], tuple[list[str], np.ndarray]] = {}
    errors: list[str] = []

    def run(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            barrier.wait()
            for call in range(requests_each):
                size = 1 + (worker + call) % 8
                start = (worker * 7 + call * 3) % (len(demo_frame) - size)
                frame = demo_frame.iloc[start : start + size]
                response = http.post("/v1/predict", json={"battles": _records(frame)})
                if response.status_code != 200:
                    errors.append(response.text)
                    continue
                body = response.json()
                ids = [p["id"] for p in body["predictions"]]
                results[worker, call] = (ids, _proba(body))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == n_clients * requests_each
    for ids, proba in results.values():
        assert np.allclose(proba, expected.loc[ids].to_numpy(), rtol=0, atol=1e-9)
    calls = _metric(client.get("/metrics").text, "arena_model_call_rows_count")
    # Requests that arrive together share model calls (micro-batching).
    assert calls - calls_before < n_clients * requests_each


def test_metrics_count_requests_by_status_latency_and_rows(client):
    before = client.get("/metrics").text
    rows_before = _metric(before, "arena_predicted_rows_total")
    client.post("/v1/predict", json={"battles": [_GOOD, _GOOD | {"id": "2"}]})
    client.post("/v1/predict", content=b"{")
    text = client.get("/metrics").text
    assert _metric(text, "arena_predicted_rows_total") == rows_before + 2
    assert re.search(
        r'^arena_http_requests_total\{method="POST",route="/v1/predict",'
        r'status="400"\} [1-9]',
        text,
        re.M,
    )
    assert (
        'arena_http_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"}'
        in (text)
    )
    assert "process_resident_memory_bytes" in text


def test_request_id_is_echoed_and_in_the_access_log(server, client):
    response = client.post(
        "/v1/predict", json={"battles": [_GOOD]}, headers={"x-request-id": "trace-42"}
    )
    assert response.headers["x-request-id"] == "trace-42"
    generated = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    deadline = time.monotonic() + 10
    while "trace-42" not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in server.log.splitlines() if "trace-42" in line)
    record = json.loads(line)
    assert record["status"] == 200
    assert record["path"] == "/v1/predict"
    assert record["rows"] == 1
    assert record["latency_ms"] > 0


# ------------------------------------------------------ lifecycle, set-up
class HeldBackPost:
    """A prediction request whose body's second half waits for :meth:`release`,
    so the request stays in flight (headers read, body streaming) meanwhile."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._release = threading.Event()
        self._outcome: dict[str, httpx.Response] = {}
        self._thread = threading.Thread(target=self._post)
        self._thread.start()

    def _chunks(self):
        body = json.dumps({"battles": [_GOOD]}).encode()
        yield body[:10]
        self._release.wait(30)
        yield body[10:]

    def _post(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60.0) as http:
            self._outcome["response"] = http.post(
                "/v1/predict",
                content=self._chunks(),
                headers={"content-type": "application/json"},
            )

    def release(self) -> None:
        self._release.set()

    def response(self) -> httpx.Response:
        self.release()
        self._thread.join(timeout=60)
        return self._outcome["response"]


def test_sigterm_lets_the_in_flight_request_finish(model_dir, tmp_path, local_model):
    # The body's second half is held back until SIGTERM has come, so the
    # request is in flight (headers read, body streaming) during the shutdown.
    server = ServerProcess(model_dir, tmp_path / "server.log").wait_ready()
    request = HeldBackPost(server.url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
            if _metric(metrics, "arena_http_requests_in_flight") >= 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the prediction request never arrived")
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the server is shutting down, the request unfinished
        assert server.process.poll() is None, server.log
        response = request.response()
        # uvicorn ends by re-raising the signal after a clean shutdown.
        assert server.process.wait(timeout=60) in CLEAN_EXIT, server.log
        assert "Application shutdown complete" in server.log
    finally:
        request.release()
        server.stop()
    assert response.status_code == 200, response.text
    expected = local_model.predict_proba([_GOOD])
    assert np.allclose(_proba(response.json()), expected, rtol=0, atol=1e-9)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_two_workers_serve_the_same_model(model_dir, tmp_path, local_model):
    server = ServerProcess(model_dir, tmp_path / "server.log", "--workers", "2")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            bodies = [
                http.post("/v1/predict", json={"battles": [_GOOD]}).json()
                for _ in range(4)
            ]
    finally:
        assert server.stop() in CLEAN_EXIT, server.log
    expected = local_model.predict_proba([_GOOD])
    for body in bodies:
        assert np.allclose(_proba(body), expected, rtol=0, atol=1e-9)


def _access_workers(log: str, path: str) -> list[int]:
    workers = []
    for line in log.splitlines():
        if line.startswith("{") and f'"path": "{path}"' in line:
            workers.append(json.loads(line)["worker"])
    return workers


def test_two_workers_share_connections_opened_at_once(model_dir, tmp_path):
    """Each worker listens itself (SO_REUSEPORT): 16 clients that connect together
    are spread over both, not all accepted by the first worker to wake."""
    from concurrent.futures import ThreadPoolExecutor

    server = ServerProcess(model_dir, tmp_path / "server.log", "--workers", "2")
    clients = [httpx.Client(base_url=server.url, timeout=30.0) for _ in range(16)]
    try:
        server.wait_ready().wait_workers(2)
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda c: c.get("/healthz").status_code, clients))
        assert statuses == [200] * 16
    finally:
        for client in clients:
            client.close()
        assert server.stop() in CLEAN_EXIT, server.log
    served_by = _access_workers(server.log, "/healthz")
    assert len(served_by) == 16
    assert len(set(served_by)) == 2, served_by


def test_ctrl_c_to_the_process_group_lets_two_workers_finish(model_dir, tmp_path):
    """SIGINT to the whole group (a terminal's Ctrl-C) reaches the parent and the
    workers; the parent's SIGTERM that follows must not cut the shutdown short
    (uvicorn forces an exit on a second SIGINT only), so the request whose body
    is still coming gets its 200."""
    server = ServerProcess(model_dir, tmp_path / "server.log", "--workers", "2")
    request = None
    try:
        server.wait_ready().wait_workers(2)
        request = HeldBackPost(server.url)
        time.sleep(1.0)  # headers sent, body held back
        os.killpg(os.getpgid(server.process.pid), signal.SIGINT)
        time.sleep(1.0)
        response = request.response()
        assert server.process.wait(timeout=60) in CLEAN_EXIT, server.log
    finally:
        if request is not None:
            request.release()
        server.stop()
    assert response.status_code == 200, server.log
    assert server.log.count("Application shutdown complete") == 2, server.log


def test_workers_on_a_port_in_use_fail_before_serving(model_dir, tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.serve",
                "--model",
                str(model_dir),
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        taken.close()
    assert result.returncode == 3, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_tampered_model_is_refused_before_listening(model_dir, tmp_path):
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    with open(bad / "folds.npy", "ab") as handle:
        handle.write(b"\0")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.serve", "--model", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "failed its integrity check" in result.stderr
    assert "folds.npy" in result.stderr


def test_missing_serve_extra_fails_with_the_install_hint():
    code = (
        "import sys; sys.modules['uvicorn'] = None; "
        "from pipelines.serve import main; sys.exit(main(['--model', 'x']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "install the `serve` extra" in result.stderr
    assert "['uvicorn']" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "0", "expected a port 1-65535"),
        ("--workers", "0", "expected an integer >= 1"),
        ("--max-batch", "many", "expected an integer >= 1"),
        ("--batch-wait-ms", "5000", "expected milliseconds between 0 and 1000"),
    ],
)
def test_bad_option_values_are_refused_with_what_to_give(
    option, value, message, capsys
):
    with pytest.raises(SystemExit):
        serve._parser().parse_args([option, value])
    assert message in capsys.readouterr().err


# ------------------------------------------------------------ micro-batcher
def _batcher(model: PreferenceModel, calls: list[int], **options) -> MicroBatcher:
    return MicroBatcher(
        lambda battles, prior: model.predict_proba(battles, class_prior=prior),
        lambda battles, top: model.explain(battles, top=top),
        on_batch=lambda rows, seconds: calls.append(rows),
        **options,
    )


def _submit_together(batcher: MicroBatcher, requests: list[tuple]) -> list:
    async def go():
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(table, class_prior=prior) for table, prior in requests)
            )
        finally:
            await batcher.stop()

    return asyncio.run(go())


def test_micro_batcher_shares_model_calls_and_routes_rows_back(local_model, demo_frame):
    same_ids = read_battles(demo_frame.iloc[:3])
    other = read_battles(demo_frame.iloc[3:7])
    prior = (0.4, 0.4, 0.2)
    requests = [(same_ids, None), (other, None), (same_ids, None), (other, prior)]
    calls: list[int] = []
    batcher = _batcher(local_model, calls, max_rows=256, max_wait_s=0.05)
    results = _submit_together(batcher, requests)
    # One call per class prior; ids repeated across requests do not clash.
    assert sorted(calls) == [4, 10]
    for (table, request_prior), result in zip(requests, results, strict=True):
        expected = local_model.predict_proba(table, class_prior=request_prior)
        assert np.allclose(result.proba, expected, rtol=0, atol=1e-9)


def test_micro_batcher_never_splits_a_request_over_calls(local_model, demo_frame):
    tables = [read_battles(demo_frame.iloc[i : i + 3]) for i in (0, 3, 6)]
    calls: list[int] = []
    batcher = _batcher(local_model, calls, max_rows=4, max_wait_s=0.05)
    results = _submit_together(batcher, [(table, None) for table in tables])
    assert calls == [3, 3, 3]
    assert [len(result.proba) for result in results] == [3, 3, 3]


def test_micro_batcher_sends_a_lone_request_at_once_when_idle(local_model, demo_frame):
    """An idle service does not hold a request for the window (5 s here)."""
    calls: list[int] = []
    batcher = _batcher(local_model, calls, max_rows=256, max_wait_s=5.0)

    async def go() -> float:
        await batcher.start()
        try:
            started = time.perf_counter()
            await batcher.submit(read_battles(demo_frame.iloc[:2]))
            return time.perf_counter() - started
        finally:
            await batcher.stop()

    assert asyncio.run(go()) < 2.5
    assert calls == [2]


def test_micro_batcher_waits_for_company_under_load(local_model, demo_frame):
    """After a shared call, a request waits the window for one sent 50 ms later."""
    tables = [read_battles(demo_frame.iloc[i : i + 2]) for i in (0, 2, 4, 6)]
    calls: list[int] = []
    batcher = _batcher(local_model, calls, max_rows=256, max_wait_s=2.0)

    async def go() -> None:
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(t) for t in tables[:2]))

            async def later(table):
                await asyncio.sleep(0.05)
                return await batcher.submit(table)

            await asyncio.gather(batcher.submit(tables[2]), later(tables[3]))
        finally:
            await batcher.stop()

    asyncio.run(go())
    assert calls == [4, 4]


def test_micro_batcher_window_ends_once_the_last_calls_requests_are_back(
    local_model, demo_frame
):
    """Two requests answered together, two back: the 5 s window is not waited out."""
    tables = [read_battles(demo_frame.iloc[i : i + 2]) for i in (0, 2, 4, 6)]
    calls: list[int] = []
    batcher = _batcher(local_model, calls, max_rows=256, max_wait_s=5.0)

    async def go() -> float:
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(t) for t in tables[:2]))
            started = time.perf_counter()
            await asyncio.gather(*(batcher.submit(t) for t in tables[2:]))
            return time.perf_counter() - started
        finally:
            await batcher.stop()

    assert asyncio.run(go()) < 2.5
    assert calls == [4, 4]


def test_micro_batcher_regroups_clients_that_queued_during_a_call(demo_frame):
    """Clients that queue during a call wait for those it answers: one call, not two.

    Two clients are in a slow call while two more queue; when it ends, the two
    answered clients send again at once. Going with the two queued requests
    alone would split the four clients into groups of two taking turns on the
    model for good.
    """
    calls: list[int] = []

    def slow_uniform(battles, prior):
        time.sleep(0.3)
        return np.full((len(battles), 3), 1 / 3)

    batcher = MicroBatcher(
        slow_uniform,
        lambda battles, top: None,
        max_rows=256,
        max_wait_s=5.0,
        on_batch=lambda rows, seconds: calls.append(rows),
    )
    tables = [read_battles(demo_frame.iloc[i : i + 2]) for i in (0, 2, 4, 6)]

    async def client(table, start_after: float, rounds: int) -> None:
        await asyncio.sleep(start_after)
        for _ in range(rounds):
            await batcher.submit(table)

    async def go() -> float:
        await batcher.start()
        try:
            started = time.perf_counter()
            await asyncio.gather(
                client(tables[0], 0.0, 2),
                client(tables[1], 0.0, 2),
                client(tables[2], 0.1, 1),
                client(tables[3], 0.1, 1),
            )
            return time.perf_counter() - started
        finally:
            await batcher.stop()

    took = asyncio.run(go())
    assert calls == [4, 8]
    assert took < 2.5  # the window ended when the clients were back, not at 5 s


def test_micro_batcher_refuses_requests_when_not_running(local_model, demo_frame):
    batcher = _batcher(local_model, [], max_rows=4, max_wait_s=0.0)
    with pytest.raises(BatcherStopped, match="micro-batcher is not running"):
        asyncio.run(batcher.submit(read_battles(demo_frame.iloc[:1])))


# ---------------------------------------------------------------- Docker
_PIP_VALUE_OPTIONS = {"-c", "--constraint", "-r", "--requirement"}


def _pip_installs(lines: list[str]) -> list[list[str]]:
    """The packages of each ``pip install`` in ``lines``, options dropped.

    An option with a file (``-c FILE``, ``-r FILE``) is kept with it, so tests can ask
    that every install honours it.
    """
    installs = []
    for line in lines:
        for command in re.split(r"&&|;", line):
            words = shlex.split(command.replace("\\\n", " "), comments=True)
            if "pip" in words and "install" in words[words.index("pip") :]:
                rest = iter(words[words.index("install", words.index("pip")) + 1 :])
                packages = []
                for word in rest:
                    if word in _PIP_VALUE_OPTIONS:
                        packages.append(f"{word} {next(rest)}")
                    elif not word.startswith("-"):
                        packages.append(word)
                installs.append(packages)
    return installs


def test_dockerfile_installs_what_the_serving_docs_and_makefile_install():
    dockerfile = (REPO / "Dockerfile").read_text()
    serving = (REPO / "docs" / "serving.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    torch_pin = re.search(r"pip install --quiet (torch==\S+)", makefile).group(1)
    runs = [m.group(1) for m in re.finditer(r"^RUN (.*(?:\\\n.*)*)", dockerfile, re.M)]
    docker_installs = [i for i in _pip_installs(runs) if i]
    docs_block = re.search(r"```bash\n(.*?)```", serving, re.S).group(1)
    docs_installs = _pip_installs(docs_block.splitlines())
    assert docker_installs[0] == [torch_pin], "torch (the CPU pin) must come first"
    assert docs_installs[0] == [torch_pin]
    # The service installs the versions the tests ran with (constraints.txt).
    assert docker_installs[1:] == [["-c constraints.txt", ".[serve]"]]
    assert docs_installs[1:] == [["-c constraints.txt", ".[serve]"]]
    assert "-c constraints.txt -e '.[dev]'" in makefile
    assert re.search(r"^COPY .*\bconstraints\.txt\b", dockerfile, re.M)
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^COPY artifacts/model ", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*?/healthz", dockerfile, re.M | re.S)
    assert re.search(r'^CMD \[.*"pipelines\.serve"', dockerfile, re.M)
    serve_extra = re.search(
        r"^serve = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.M | re.S
    )
    assert serve_extra and "uvicorn" in serve_extra.group(1)


def test_workers_share_the_cores_among_their_openmp_threads():
    from pipelines.serve import worker_threads

    cores = len(os.sched_getaffinity(0))
    assert worker_threads(1) == cores
    assert worker_threads(cores) == 1
    assert worker_threads(4 * cores) == 1  # never 0 threads


def test_every_connection_sends_without_nagle_delay():
    """Accepted sockets of a port shared by --workers lack TCP_NODELAY in asyncio;
    the server's protocol sets it, so a response never waits for a delayed ACK."""
    import asyncio
    import socket

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from pipelines.serving.protocol import NoDelayH11Protocol

    async def app(scope, receive, send):  # pragma: no cover - never called
        raise AssertionError

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()

    class Transport(asyncio.Transport):
        def get_extra_info(self, name, default=None):
            return {"socket": accepted, "peername": None, "sockname": None}.get(
                name, default
            )

    async def connect():
        config = Config(app=app)
        config.load()
        protocol = NoDelayH11Protocol(
            config=config, server_state=ServerState(), app_state={}
        )
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        protocol.connection_made(Transport())
        if protocol.timeout_keep_alive_task is not None:
            protocol.timeout_keep_alive_task.cancel()

    try:
        asyncio.run(connect())
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for sock in (client, accepted, listener):
            sock.close()
