"""The HTTP service under load: ``python -m pipelines.serve`` with real clients.

The profile's model (lite when the run has it) is fitted on the corpus, saved,
and served by a real server process on 127.0.0.1; the clients run in this
process (asyncio + httpx), on the same cores as the server, so their cost is
part of the numbers. Measured:

- throughput: 8 concurrent clients, 16 battles per request, for a fixed time;
  next to in-process ``predict_proba`` on the same 16-battle batches;
- single-battle requests from one client: p50 and p99 latency;
- the same throughput with API keys on (``--api-key-file``, every request
  with ``Authorization: Bearer KEY``), on a second server of the same model,
  its windows interleaved with the first's: the cost of the key check;
- a bounded load run (10,000 requests) on the server with keys that mixes
  valid bodies with malformed ones (bad JSON, missing fields, wrong types, too
  many battles) and with requests that carry no key or a wrong key (all must
  get 401): every status counted, and the server's resident memory sampled
  throughout, to compare the first and the last 1,000 requests.

Run alone::

    python -m benchmarks.bench_serving [--quick]
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks._context import BenchContext, BenchOptions
from benchmarks._report import (
    REPO_ROOT,
    Section,
    Table,
    Target,
    available_cores,
    median,
    percentile,
    python_module,
    relative,
)
from benchmarks.bench_speed import make_batch
from models import PreferenceModel
from pipelines.serve import worker_threads

__all__ = ["LOAD", "TARGETS", "main", "run"]

logger = logging.getLogger(__name__)

TARGETS = {
    "battles_per_s": 800.0,
    "p50_ms": 25.0,
    "p99_ms": 60.0,
    "share_of_in_process": 0.70,
    "rss_growth": 0.10,
    "keys_throughput_change": 0.05,
}
"""The service's targets: 8 clients x 16 battles, single-battle latency, the
ratio to in-process predict_proba, memory growth under the load run, and the
largest change of throughput that API keys may cause (either way)."""

LOAD: dict[str, dict[str, Any]] = {
    "full": {
        "clients": 8,
        "battles_per_request": 16,
        "throughput_seconds": 30.0,
        "load_requests": 10_000,
        "rss_window": 1_000,
        "max_batch": 64,
    },
    "quick": {
        "clients": 8,
        "battles_per_request": 16,
        "throughput_seconds": 2.0,
        "load_requests": 300,
        "rss_window": 60,
        "max_batch": 64,
    },
}
"""Sizes of a full and a ``--quick`` run (quick checks the harness only)."""

_RSS_EVERY = 25
"""Requests of the load run between two samples of the server's RSS."""

_KEY = "bench-key-3f9a1c7e5b"
_WRONG_KEY = "bench-key-3f9a1c7e5c"
_AUTH = {"Authorization": f"Bearer {_KEY}"}


# ------------------------------------------------------------------ server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc; uvicorn's workers are children)."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        queue.extend(int(child) for child in children.split())
    return tree


def _rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # exited between the listing and the read
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _Server:
    """A ``python -m pipelines.serve`` child process and its log file."""

    def __init__(
        self,
        model_dir: Path,
        log_path: Path,
        max_batch: int,
        workers: int,
        *options: str,
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.command = python_module(
            "pipelines.serve",
            "--model",
            str(model_dir),
            "--port",
            str(self.port),
            "--max-batch",
            str(max_batch),
            "--workers",
            str(workers),
            *options,
        )
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 300.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}; its log is "
                    f"{self.log_path}:\n{self.log_path.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready after {timeout:.0f} s")

    def rss_bytes(self) -> int:
        """Resident memory of the server now: its process and every worker."""
        return sum(_rss(pid) for pid in _process_tree(self.process.pid))

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# ----------------------------------------------------------------- bodies
def _records(batch: pd.DataFrame) -> list[dict[str, Any]]:
    """Battles as a client sends them; an empty CSV field (NaN) as JSON null."""

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return [
        {
            "id": str(row.id),
            "prompt": text(row.prompt),
            "response_a": text(row.response_a),
            "response_b": text(row.response_b),
        }
        for row in batch.itertuples(index=False)
    ]


def _body(pool: pd.DataFrame, size: int, offset: int) -> bytes:
    return json.dumps({"battles": _records(make_batch(pool, size, offset))}).encode()


def _malformed_bodies(pool: pd.DataFrame, max_batch: int) -> list[bytes]:
    """One of each kind of bad request the service must answer with a 4xx."""
    good = _records(make_batch(pool, 1, 0))[0]
    return [
        b'{"battles": [',
        b"",
        b"[1, 2, 3]",
        b'{"battles": []}',
        json.dumps({"battles": [{"id": "1", "prompt": "q"}]}).encode(),
        json.dumps({"battles": [good | {"response_a": 42}]}).encode(),
        json.dumps({"battles": [good, good]}).encode(),
        json.dumps({"battles": [good], "class_prior": [1, -1, 1]}).encode(),
        json.dumps({"battles": [good], "explain": "all"}).encode(),
        json.dumps(
            {"battles": [good | {"id": str(i)} for i in range(max_batch + 1)]}
        ).encode(),
        b'{"battles": "\xff\xfe"}',
    ]


# ----------------------------------------------------------------- clients
async def _latencies(url: str, bodies: Sequence[bytes]) -> list[float]:
    import httpx

    seconds = []
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        await client.post("/v1/predict", content=bodies[0])
        for body in bodies:
            started = time.perf_counter()
            response = await client.post("/v1/predict", content=body)
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
    return seconds


async def _throughput(
    url: str,
    bodies: Sequence[bytes],
    clients: int,
    per_request: int,
    duration: float,
    headers: dict[str, str] | None = None,
) -> tuple[float, int]:
    """Battles per second of ``clients`` looping clients, and requests made."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, timeout=60.0, limits=limits, headers=headers
    ) as client:
        for body in bodies[:clients]:  # warm the connections
            (await client.post("/v1/predict", content=body)).raise_for_status()
        done = 0
        stop_at = time.perf_counter() + duration

        async def loop(worker: int) -> None:
            nonlocal done
            k = worker
            while time.perf_counter() < stop_at:
                response = await client.post(
                    "/v1/predict", content=bodies[k % len(bodies)]
                )
                response.raise_for_status()
                done += 1
                k += clients

        started = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return done * per_request / elapsed, done


async def _load_run(
    server: _Server,
    valid: Sequence[bytes],
    malformed: Sequence[bytes],
    n_requests: int,
    clients: int,
) -> dict[str, Any]:
    """``n_requests`` requests of 4 kinds; statuses (by kind) and RSS samples.

    Of every 8: 4 valid, 2 malformed (with the key), 1 valid without a key
    and 1 valid with a wrong key.
    """
    import httpx

    statuses: Counter = Counter()
    by_kind: Counter = Counter()
    failures: Counter = Counter()
    rss: list[tuple[int, int]] = [(0, server.rss_bytes())]
    next_index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=server.url, timeout=60.0, limits=limits
    ) as client:

        async def loop() -> None:
            nonlocal next_index
            while next_index < n_requests:
                k = next_index
                next_index += 1
                kind, headers = _LOAD_KINDS[k % 8]
                body = (
                    malformed[(k // 4) % len(malformed)]
                    if kind == "malformed"
                    else (valid[k % len(valid)])
                )
                try:
                    response = await client.post(
                        "/v1/predict", content=body, headers=headers
                    )
                    statuses[response.status_code] += 1
                    by_kind[kind, response.status_code] += 1
                except httpx.HTTPError as err:
                    failures[type(err).__name__] += 1
                if k % _RSS_EVERY == 0:
                    rss.append((k, server.rss_bytes()))

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        seconds = time.perf_counter() - started
    rss.append((n_requests, server.rss_bytes()))
    return {
        "statuses": statuses,
        "by_kind": by_kind,
        "failures": failures,
        "rss": rss,
        "seconds": seconds,
    }


_LOAD_KINDS: dict[int, tuple[str, dict[str, str]]] = {
    0: ("valid", _AUTH),
    1: ("no key", {}),
    2: ("valid", _AUTH),
    3: ("malformed", _AUTH),
    4: ("valid", _AUTH),
    5: ("wrong key", {"Authorization": f"Bearer {_WRONG_KEY}"}),
    6: ("valid", _AUTH),
    7: ("malformed", _AUTH),
}
"""The kind of the load run's request ``k`` by ``k % 8``, and its headers."""


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


# ------------------------------------------------------------------- run
def _in_process_seconds(
    model: PreferenceModel, pool: pd.DataFrame, size: int, calls: int, offset: int
) -> list[float]:
    seconds = []
    for call in range(calls):
        batch = make_batch(pool, size, offset + call * size)
        started = time.perf_counter()
        model.predict_proba(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def _rss_growth(samples: list[tuple[int, int]], n_requests: int, window: int) -> dict:
    first = [rss for k, rss in samples if k <= window]
    last = [rss for k, rss in samples if k >= n_requests - window]
    peak_first, peak_last = max(first), max(last)
    return {
        "first": peak_first,
        "last": peak_last,
        "growth": peak_last / peak_first - 1 if peak_first else float("nan"),
    }


def run(ctx: BenchContext) -> Section:
    """Throughput, latency and the bounded load run of the served model."""
    import httpx

    started = time.perf_counter()
    options = ctx.options
    load = LOAD["quick" if options.quick else "full"]
    clients, per_request = load["clients"], load["battles_per_request"]
    section = Section(key="serving", title="Serving over HTTP")
    profile = "lite" if "lite" in options.profiles else options.profiles[0]
    pool = ctx.raw_corpus[["id", "prompt", "response_a", "response_b"]]
    fitted = ctx.profile_model(profile)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        model_dir = fitted.model.save(Path(tmp) / "model")
        local = PreferenceModel.load(model_dir)
        local.set_params(n_jobs=1)  # what the server runs with (--n-jobs 1)
        local.predict_proba(make_batch(pool, 32, 0))
        calls = max(10, options.repeats * 5)
        batch_seconds = _in_process_seconds(local, pool, per_request, calls, 64)
        micro = clients * per_request
        micro_seconds = _in_process_seconds(local, pool, micro, options.repeats, 640)
        single_seconds = _in_process_seconds(local, pool, 1, options.latency_calls, 7)
        del local
        workers = available_cores()  # one worker process per core
        n_windows = max(1, options.repeats)
        key_file = Path(tmp) / "api-keys"
        key_file.write_text(f"# the benchmark's key\n{_KEY}\n")
        server = _Server(
            model_dir, Path(tmp) / "server.log", load["max_batch"], workers
        )
        keyed = _Server(
            model_dir,
            Path(tmp) / "server-keys.log",
            load["max_batch"],
            workers,
            "--api-key-file",
            str(key_file),
        )
        try:
            server.wait_ready()
            keyed.wait_ready()
            singles = [_body(pool, 1, 7 + i) for i in range(options.latency_calls)]
            latency = asyncio.run(_latencies(server.url, singles))
            batches = [_body(pool, per_request, i * per_request) for i in range(64)]
            metrics_before = httpx.get(f"{server.url}/metrics").text
            # Several windows, median: load from other jobs on a shared
            # machine comes and goes within a minute.
            # Keys off and on in turns (which goes first alternates), so that
            # the machine's other load falls on both alike.
            windows, key_windows = [], []
            for window in range(n_windows):
                order = [False, True] if window % 2 == 0 else [True, False]
                for with_keys in order:
                    measured = asyncio.run(
                        _throughput(
                            keyed.url if with_keys else server.url,
                            batches,
                            clients,
                            per_request,
                            load["throughput_seconds"] / n_windows,
                            headers=_AUTH if with_keys else None,
                        )
                    )
                    (key_windows if with_keys else windows).append(measured)
            served_rate = median([rate for rate, _ in windows])
            keyed_rate = median([rate for rate, _ in key_windows])
            served_requests = sum(requests for _, requests in windows)
            metrics_after = httpx.get(f"{server.url}/metrics").text
            valid = [_body(pool, 1 + i % 4, 5 * i) for i in range(50)]
            malformed = _malformed_bodies(pool, load["max_batch"])
            result = asyncio.run(
                _load_run(keyed, valid, malformed, load["load_requests"], clients)
            )
        finally:
            exit_code = server.stop()
            keyed_exit_code = keyed.stop()
    model_calls = _metric(metrics_after, "arena_model_call_rows_count") - _metric(
        metrics_before, "arena_model_call_rows_count"
    )
    model_rows = _metric(metrics_after, "arena_model_call_rows_sum") - _metric(
        metrics_before, "arena_model_call_rows_sum"
    )
    in_process_rate = per_request / median(batch_seconds)
    micro_rate = micro / median(micro_seconds)
    share = served_rate / in_process_rate
    p50 = percentile([s * 1000 for s in latency], 50)
    p99 = percentile([s * 1000 for s in latency], 99)
    statuses = result["statuses"]
    n_5xx = sum(n for status, n in statuses.items() if status >= 500)
    n_failed = sum(result["failures"].values())
    rss = _rss_growth(result["rss"], load["load_requests"], load["rss_window"])
    keys_change = keyed_rate / served_rate - 1
    by_kind = result["by_kind"]
    refused = {
        kind: sum(n for (k, _), n in by_kind.items() if k == kind)
        for kind in ("no key", "wrong key")
    }
    refused_401 = {kind: by_kind[kind, 401] for kind in refused}

    section.tables.append(
        Table(
            title="Served throughput and latency",
            columns=["measurement", "served", "in-process predict_proba", "ratio"],
            rows=[
                {
                    "measurement": f"battles/s, {clients} clients x {per_request} "
                    "battles per request",
                    "served": served_rate,
                    "in-process predict_proba": in_process_rate,
                    "ratio": f"{share:.0%}",
                },
                {
                    "measurement": f"battles/s at the micro-batch size ({micro} rows "
                    "per call)",
                    "in-process predict_proba": micro_rate,
                    "ratio": f"{served_rate / micro_rate:.0%}",
                },
                {
                    "measurement": f"single-battle p50 (ms), {len(latency)} requests",
                    "served": p50,
                    "in-process predict_proba": percentile(
                        [s * 1000 for s in single_seconds], 50
                    ),
                },
                {
                    "measurement": "single-battle p99 (ms)",
                    "served": p99,
                    "in-process predict_proba": percentile(
                        [s * 1000 for s in single_seconds], 99
                    ),
                },
                {
                    "measurement": "battles per model call under load (micro-batch)",
                    # /metrics counts per worker process: one worker's
                    # before/after only describes all of them when it is alone.
                    "served": model_rows / model_calls
                    if model_calls and workers == 1
                    else None,
                },
            ],
            notes=[
                f"Server: `python -m pipelines.serve --model MODEL_DIR --max-batch "
                f"{load['max_batch']}` (defaults otherwise: micro-batches of at most "
                "256 battles, a window of up to 10 ms, feature blocks serial, access "
                "log on), "
                f"`--workers {workers}` (one per core, "
                f"{worker_threads(workers)} OpenMP thread(s) each), the {profile} "
                "profile fitted on the corpus. With 2+ workers the battles per "
                "model call are not shown: /metrics counts per worker. "
                f"The clients share the {available_cores()} cores (asyncio + httpx "
                "in the benchmark process).",
                f"Throughput: {served_requests:,} requests in "
                f"{load['throughput_seconds']:.0f} s, each {per_request} battles of "
                "the corpus in the Kaggle layout (JSON strings); the median of "
                f"{n_windows} windows of {load['throughput_seconds'] / n_windows:.0f} "
                "s ("
                + ", ".join(f"{rate:,.0f}" for rate, _ in windows)
                + " battles/s). In-process: the "
                f"same model loaded here, predict_proba on {per_request}-battle "
                f"batches ({calls} calls, median), and on {micro} battles: what "
                f"{clients} requests of {per_request} would be in one call.",
            ],
        )
    )
    section.tables.append(
        Table(
            title="Throughput with API keys on and off",
            columns=["server", "battles/s (median)", "windows (battles/s)", "change"],
            rows=[
                {
                    "server": "no keys",
                    "battles/s (median)": served_rate,
                    "windows (battles/s)": ", ".join(
                        f"{rate:,.0f}" for rate, _ in windows
                    ),
                },
                {
                    "server": "--api-key-file (Bearer key on every request)",
                    "battles/s (median)": keyed_rate,
                    "windows (battles/s)": ", ".join(
                        f"{rate:,.0f}" for rate, _ in key_windows
                    ),
                    "change": f"{keys_change:+.1%}",
                },
            ],
            notes=[
                f"Two servers of the same model, `--workers {workers}` each, up "
                "at once; their throughput windows taken in turns (keys off then "
                "on, then on then off, ...), "
                f"{clients} clients x {per_request} battles per request as above.",
            ],
        )
    )
    section.tables.append(
        Table(
            title="Bounded load run: valid, malformed and unauthenticated requests",
            columns=[
                "requests",
                "seconds",
                "2xx",
                "4xx",
                "5xx",
                "transport errors",
                "RSS first window (MB)",
                "RSS last window (MB)",
                "growth",
            ],
            rows=[
                {
                    "requests": load["load_requests"],
                    "seconds": result["seconds"],
                    "2xx": sum(n for s, n in statuses.items() if 200 <= s < 300),
                    "4xx": sum(n for s, n in statuses.items() if 400 <= s < 500),
                    "5xx": n_5xx,
                    "transport errors": n_failed,
                    "RSS first window (MB)": rss["first"] / 1e6,
                    "RSS last window (MB)": rss["last"] / 1e6,
                    "growth": f"{rss['growth']:+.1%}",
                }
            ],
            notes=[
                f"{clients} concurrent clients on the server with API keys; of "
                "every 8 requests, 4 are valid, 2 malformed (one "
                f"of {len(malformed)} kinds: bad JSON, empty body, not an object, "
                "empty list, missing field, wrong type, duplicate ids, bad "
                "class_prior, bad explain, too many battles, not UTF-8), 1 valid "
                "without a key and 1 valid with a wrong key; valid ones hold 1-4 "
                "battles.",
                "Statuses by kind: "
                + "; ".join(
                    f"{kind}: "
                    + str({s: n for (k, s), n in sorted(by_kind.items()) if k == kind})
                    for kind in ("valid", "malformed", "no key", "wrong key")
                )
                + ".",
                f"Statuses: {dict(sorted(statuses.items()))}. RSS: peak resident "
                f"memory of the server over the first and the last "
                f"{load['rss_window']:,} requests (sampled every {_RSS_EVERY}). "
                f"Server exit codes after SIGTERM: {exit_code} (no keys), "
                f"{keyed_exit_code} (keys) (uvicorn re-raises the signal after a "
                "clean shutdown).",
            ],
        )
    )
    section.targets += [
        Target(
            name=f"served battles/s, {clients} clients x {per_request} battles",
            goal=f">= {TARGETS['battles_per_s']:,.0f} battles/s",
            measured=f"{served_rate:,.0f} battles/s",
            met=served_rate >= TARGETS["battles_per_s"],
        ),
        Target(
            name="single-battle request p50 / p99",
            goal=f"<= {TARGETS['p50_ms']:.0f} ms / <= {TARGETS['p99_ms']:.0f} ms",
            measured=f"{p50:.1f} ms / {p99:.1f} ms",
            met=p50 <= TARGETS["p50_ms"] and p99 <= TARGETS["p99_ms"],
        ),
        Target(
            name=f"served throughput vs in-process predict_proba at batch "
            f"{per_request}",
            goal=f">= {TARGETS['share_of_in_process']:.0%}",
            measured=f"{share:.0%}",
            met=share >= TARGETS["share_of_in_process"],
        ),
        Target(
            name=f"no 5xx in {load['load_requests']:,} mixed valid/malformed/"
            "unauthenticated requests",
            goal="0 5xx, 0 transport errors",
            measured=f"{n_5xx} 5xx, {n_failed} transport errors",
            met=n_5xx == 0 and n_failed == 0,
        ),
        Target(
            name="requests without a key or with a wrong key get 401",
            goal="all 401",
            measured=", ".join(
                f"{kind}: {refused_401[kind]:,} of {refused[kind]:,}"
                for kind in refused
            ),
            met=all(refused_401[k] == refused[k] > 0 for k in refused),
        ),
        Target(
            name=f"throughput with API keys vs without, {clients} clients x "
            f"{per_request} battles",
            goal=f"within {TARGETS['keys_throughput_change']:.0%}",
            measured=f"{keys_change:+.1%} ({keyed_rate:,.0f} vs "
            f"{served_rate:,.0f} battles/s)",
            met=abs(keys_change) <= TARGETS["keys_throughput_change"],
        ),
        Target(
            name=f"server RSS growth, first to last {load['rss_window']:,} requests",
            goal=f"<= {TARGETS['rss_growth']:.0%}",
            measured=f"{rss['growth']:+.1%}",
            met=rss["growth"] <= TARGETS["rss_growth"],
        ),
    ]
    section.notes.append(
        f"Data: battles of `{relative(ctx.corpus_csv)}`. Reproduce alone with "
        "`python -m benchmarks.bench_serving`."
    )
    section.seconds = time.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone and print it."""
    from benchmarks.run import options_from_args, section_parser

    parser = section_parser(__doc__.splitlines()[0])
    options: BenchOptions = options_from_args(parser.parse_args(argv))
    print(run(BenchContext(options)).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
