"""What the service tells operators: Prometheus-style metrics and access logs.

The metrics are kept in this process (each ``--workers`` process has its own
and a scrape sees the worker that answers it) and rendered in the Prometheus
text format at ``GET /metrics``. Every request gets an id (the caller's
``X-Request-ID`` when it is a short token, else a new one), echoed in the
response header and written with the status and latency as one JSON access-log
line on the ``pipelines.serving.access`` logger.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from datetime import datetime, timezone
from typing import Any

__all__ = ["AccessLogMiddleware", "Metrics"]

ACCESS_LOGGER_NAME = f"{__package__}.access"
access_logger = logging.getLogger(ACCESS_LOGGER_NAME)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request and model-call latency histograms."""

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Upper bounds (rows) of the rows-per-model-call histogram."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    def lines(self, name: str, labels: str) -> Iterable[str]:
        running = 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            yield f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}'
        running += self.counts[-1]
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {running}'
        suffix = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{suffix} {self.total:.6f}"
        yield f"{name}_count{suffix} {running}"


def _resident_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc``), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class Metrics:
    """Counters and histograms of one server process (thread-safe).

    Parameters
    ----------
    model_sha : str
        sha256 of the served model's manifest (the ``model_info`` label).

    Examples
    --------
    >>> metrics = Metrics("abc")
    >>> metrics.observe_request("POST", "/v1/predict", 200, 0.012)
    >>> print(metrics.render().splitlines()[2])
    arena_http_requests_total{method="POST",route="/v1/predict",status="200"} 1
    """

    def __init__(self, model_sha: str) -> None:
        self.model_sha = model_sha
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self._call_latency = _Histogram(LATENCY_BUCKETS)
        self._call_rows = _Histogram(BATCH_BUCKETS)
        self._rows_predicted = 0
        self._in_flight = 0
        self._started = time.time()

    def request_started(self) -> None:
        """One more request in flight."""
        with self._lock:
            self._in_flight += 1

    def observe_request(
        self, method: str, route: str, status: int, seconds: float
    ) -> None:
        """Count a finished request and its latency."""
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.setdefault(route, _Histogram(LATENCY_BUCKETS)).observe(
                seconds
            )

    def request_finished(self) -> None:
        """One request fewer in flight."""
        with self._lock:
            self._in_flight -= 1

    def observe_model_call(self, rows: int, seconds: float) -> None:
        """Count one ``predict_proba`` call of ``rows`` battles."""
        with self._lock:
            self._rows_predicted += rows
            self._call_rows.observe(rows)
            self._call_latency.observe(seconds)

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (0.0.4)."""
        with self._lock:
            lines = [
                "# HELP arena_http_requests_total HTTP requests by route and status.",
                "# TYPE arena_http_requests_total counter",
            ]
            for (method, route, status), count in sorted(self._requests.items()):
                lines.append(
                    f'arena_http_requests_total{{method="{method}",route="{route}",'
                    f'status="{status}"}} {count}'
                )
            lines += [
                "# HELP arena_http_request_duration_seconds Request latency.",
                "# TYPE arena_http_request_duration_seconds histogram",
            ]
            for route, histogram in sorted(self._latency.items()):
                lines += histogram.lines(
                    "arena_http_request_duration_seconds", f'route="{route}"'
                )
            lines += [
                "# HELP arena_http_requests_in_flight Requests being served now.",
                "# TYPE arena_http_requests_in_flight gauge",
                f"arena_http_requests_in_flight {self._in_flight}",
                "# HELP arena_predicted_rows_total Battles predicted.",
                "# TYPE arena_predicted_rows_total counter",
                f"arena_predicted_rows_total {self._rows_predicted}",
                "# HELP arena_model_call_rows Battles per predict_proba call "
                "(micro-batch size).",
                "# TYPE arena_model_call_rows histogram",
                *self._call_rows.lines("arena_model_call_rows", ""),
                "# HELP arena_model_call_duration_seconds Time of one "
                "predict_proba call.",
                "# TYPE arena_model_call_duration_seconds histogram",
                *self._call_latency.lines("arena_model_call_duration_seconds", ""),
                "# HELP arena_model_info The served model (manifest sha256).",
                "# TYPE arena_model_info gauge",
                f'arena_model_info{{sha="{self.model_sha}"}} 1',
                "# HELP process_start_time_seconds Start time of the process.",
                "# TYPE process_start_time_seconds gauge",
                f"process_start_time_seconds {self._started:.3f}",
            ]
        resident = _resident_bytes()
        if resident is not None:
            lines += [
                "# HELP process_resident_memory_bytes Resident memory size.",
                "# TYPE process_resident_memory_bytes gauge",
                f"process_resident_memory_bytes {resident}",
            ]
        return "\n".join(lines) + "\n"


class AccessLogMiddleware:
    """ASGI middleware: request id, one JSON access-log line, request metrics.

    Parameters
    ----------
    app : ASGI application
        The wrapped application.
    metrics : Metrics
        Where request counts and latencies go.
    routes : collection of str
        Paths counted under their own name; others count as ``"other"`` so
        that scanners cannot grow the metrics without bound.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        self.metrics.request_started()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.request_finished()
            path = scope.get("path", "")
            route = path if path in self.routes else "other"
            self.metrics.observe_request(scope["method"], route, status, seconds)
            record = {
                "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "request_id": request_id,
                "method": scope["method"],
                "path": path[:200],
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
                "rows": state.get("rows"),
                "client": (scope.get("client") or [None])[0],
                "worker": os.getpid(),
            }
            access_logger.info(json.dumps(record))


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex
