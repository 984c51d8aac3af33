"""The ASGI application of ``python -m pipelines.serve`` (Starlette).

A thin layer over :class:`models.PreferenceModel`: the model is loaded and
verified once per worker process, requests are checked by
:mod:`pipelines.serving.input` (which hands the battles to
:mod:`features.battles`), predicted in shared batches by
:class:`pipelines.serving.batcher.MicroBatcher` and answered as JSON. No model
logic lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from features.battles import CLASSES
from features.errors import ModelIntegrityError
from models import PreferenceModel
from pipelines.serving.auth import (
    BearerAuthMiddleware,
    document_bearer,
    read_api_keys,
)
from pipelines.serving.batcher import BatcherStopped, MicroBatcher
from pipelines.serving.input import RequestError, parse_predict_body
from pipelines.serving.metrics import AccessLogMiddleware, Metrics
from pipelines.serving.openapi import DOCS_HTML, openapi_schema
from pipelines.serving.page import page_headers, page_html

__all__ = ["LoadedModel", "ServeSettings", "create_app", "load_model"]

logger = logging.getLogger(__name__)

_PARSE_IN_THREAD_BYTES = 64 * 1024
"""Bodies larger than this are parsed off the event loop, so that one big
request does not hold up the small ones."""


_WARM_UP_BATTLE = {
    "id": "warm-up",
    "prompt": ["Hello"],
    "response_a": ["Hi! How can I help?"],
    "response_b": ["Hey."],
}


@dataclass(frozen=True)
class ServeSettings:
    """What a server process is configured with (see ``pipelines.serve``)."""

    model_dir: str
    max_batch: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    batch_rows: int = 256
    batch_wait_ms: float = 10.0
    n_jobs: int | None = 1
    api_key_file: str | None = None
    """A file of API keys (one per line): ``/v1/*`` then needs ``Bearer KEY``."""
    metrics_auth: bool = False
    """With keys: ``/metrics`` needs a key too (else it stays open)."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified model with what the service reports about it."""

    model: PreferenceModel
    sha: str
    info: dict[str, Any]


def load_model(model_dir: str | Path, *, n_jobs: int | None = 1) -> LoadedModel:
    """Load and verify a model directory once, for the lifetime of a worker.

    The manifest's sha256 identifies the model in every response; the
    manifest is read before and after :meth:`PreferenceModel.load` (which
    checks every file against it), so the sha is that of the files loaded.

    Raises
    ------
    FileNotFoundError
        No model at ``model_dir``.
    ModelIntegrityError
        The directory fails its check, or changed while it was loaded.
    """
    directory = Path(model_dir)
    manifest = directory / "manifest.json"
    before = manifest.read_bytes() if manifest.is_file() else None
    model = PreferenceModel.load(directory)
    after = manifest.read_bytes() if manifest.is_file() else None
    if before is None or before != after:
        raise ModelIntegrityError(
            f"model directory {str(directory)!r} changed while it was being loaded. "
            "Start the server again once the model is written."
        )
    model.set_params(n_jobs=n_jobs, verbose=False)
    sha = hashlib.sha256(before).hexdigest()
    return LoadedModel(model, sha, _model_info(model, directory, sha, before))


def _model_info(
    model: PreferenceModel, directory: Path, sha: str, manifest: bytes
) -> dict[str, Any]:
    params = model.get_params()
    config = None
    report = directory / "report" / "report.json"
    if report.is_file():
        with contextlib.suppress(OSError, ValueError):
            config = json.loads(report.read_text(encoding="utf-8")).get("config")
    return _json_safe(
        {
            "model": sha,
            "format_version": json.loads(manifest).get("format_version"),
            "profile": Path(config).stem if isinstance(config, str) else None,
            "config": config,
            "classes": list(CLASSES),
            "blocks": list(model.pipeline_.blocks_),
            "block_params": params["blocks"],
            "boosters": list(params["boosters"]),
            "n_features": int(model.n_features_in_),
            "metrics": model.metrics_,
            "params": params,
        }
    )


def _json_safe(value: Any) -> Any:
    """``value`` with numpy scalars made plain and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    error = {"status": status, "message": message, "field": None, "battle_index": None}
    error.update(extra)
    return JSONResponse({"error": error}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(
            f"the request body has {int(length):,} bytes, more than this server's "
            f"limit of {limit:,} (--max-body-bytes). Send fewer battles per request.",
            status=413,
            field="body",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(
                f"the request body is over this server's limit of {limit:,} bytes "
                "(--max-body-bytes). Send fewer battles per request.",
                status=413,
                field="body",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _explanations(table: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    """Each battle's explanation rows (:meth:`PreferenceModel.explain`) by id."""
    out: dict[str, list[dict[str, Any]]] = {}
    if table is None:
        return out
    for row in table.itertuples(index=False):
        out.setdefault(row.id, []).append(
            {
                "concept": row.concept,
                "toward": row.toward,
                "weight": float(row.weight),
                "sentence": row.sentence,
            }
        )
    return out


class _Service:
    """The state of one worker process and its request handlers."""

    def __init__(self, settings: ServeSettings, loaded: LoadedModel | None) -> None:
        self.settings = settings
        self.loaded = loaded
        self.metrics: Metrics | None = None
        self.batcher: MicroBatcher | None = None
        self.stopping = False

    @property
    def ready(self) -> bool:
        return (
            self.loaded is not None
            and self.batcher is not None
            and self.batcher.running
            and not self.stopping
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.loaded is None:
            self.loaded = await asyncio.to_thread(
                load_model, self.settings.model_dir, n_jobs=self.settings.n_jobs
            )
        assert self.metrics is not None
        self.metrics.model_sha = self.loaded.sha
        model = self.loaded.model
        self.batcher = MicroBatcher(
            lambda battles, prior: model.predict_proba(battles, class_prior=prior),
            lambda battles, top: model.explain(battles, top=top),
            max_rows=self.settings.batch_rows,
            max_wait_s=self.settings.batch_wait_ms / 1000,
            on_batch=self.metrics.observe_model_call,
        )
        # The first call initialises lazily built state (regexes, booster
        # buffers); pay it before the first client does.
        await asyncio.to_thread(model.predict_proba, [_WARM_UP_BATTLE])
        await self.batcher.start()
        logger.info(
            "serving model %s (%s, %d features) from %s",
            self.loaded.sha[:12],
            self.loaded.info.get("profile") or "unknown profile",
            self.loaded.info["n_features"],
            self.settings.model_dir,
        )
        try:
            yield
        finally:
            # The server has stopped taking requests and let in-flight ones
            # finish; the batcher answers anything still queued, then stops.
            self.stopping = True
            await self.batcher.stop()
            logger.info("stopped")

    # ------------------------------------------------------------ handlers
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        if not self.ready:
            reason = "shutting down" if self.stopping else "model not loaded yet"
            return _error_response(503, f"not ready: {reason}.")
        assert self.loaded is not None
        return JSONResponse(
            {"status": "ready", "model": self.loaded.sha, "verified": True}
        )

    async def model_info(self, request: Request) -> Response:
        if self.loaded is None:
            return _error_response(503, "not ready: model not loaded yet.")
        return JSONResponse(self.loaded.info)

    async def metrics_text(self, request: Request) -> Response:
        assert self.metrics is not None
        return PlainTextResponse(
            self.metrics.render(), media_type="text/plain; version=0.0.4"
        )

    async def openapi(self, request: Request) -> Response:
        schema = openapi_schema(
            max_batch=self.settings.max_batch,
            max_body_bytes=self.settings.max_body_bytes,
        )
        if self.settings.api_key_file is not None:
            schema = document_bearer(schema, _protected_paths(self.settings))
        return JSONResponse(schema)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    async def page(self, request: Request) -> Response:
        return HTMLResponse(
            page_html(api_keys=self.settings.api_key_file is not None),
            headers=page_headers(),
        )

    async def predict(self, request: Request) -> Response:
        if not self.ready:
            return _error_response(503, "not ready: try again shortly.")
        assert self.loaded is not None and self.batcher is not None
        try:
            body = await _read_body(request, self.settings.max_body_bytes)
            if len(body) > _PARSE_IN_THREAD_BYTES:
                parsed = await asyncio.to_thread(
                    parse_predict_body, body, max_battles=self.settings.max_batch
                )
            else:
                parsed = parse_predict_body(body, max_battles=self.settings.max_batch)
        except RequestError as err:
            return JSONResponse({"error": err.to_dict()}, status_code=err.status)
        except ClientDisconnect:
            return _error_response(400, "the client disconnected mid-request.")
        request.state.rows = len(parsed.battles)
        try:
            result = await self.batcher.submit(
                parsed.battles, class_prior=parsed.class_prior, explain=parsed.explain
            )
        except BatcherStopped:
            return _error_response(503, "not ready: shutting down; retry elsewhere.")
        explanations = _explanations(result.explanation)
        predictions = []
        for battle_id, row in zip(
            parsed.battles["id"].tolist(), result.proba.tolist(), strict=True
        ):
            prediction: dict[str, Any] = {"id": battle_id}
            prediction.update(zip(CLASSES, row, strict=True))
            if parsed.explain:
                prediction["explanation"] = explanations.get(battle_id, [])
            predictions.append(prediction)
        return JSONResponse(
            {
                "model": self.loaded.sha,
                "predictions": predictions,
                "repairs": parsed.repairs,
            }
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}."
    elif exc.status_code == 404:
        message = (
            f"no endpoint at {request.url.path}; see /docs or /openapi.json for the "
            "endpoints."
        )
    else:
        message = str(exc.detail)
    return _error_response(exc.status_code, message)


async def _server_error(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "?")
    logger.error("request %s failed", request_id, exc_info=exc)
    return _error_response(
        500, f"internal error (request id {request_id}); see the server log."
    )


def _protected_paths(settings: ServeSettings) -> list[str]:
    """Paths that need an API key (when the server has keys)."""
    return ["/v1/", *(["/metrics"] if settings.metrics_auth else [])]


def create_app(settings: ServeSettings, loaded: LoadedModel | None = None) -> Any:
    """The ASGI application (access logs and metrics around a Starlette app).

    Parameters
    ----------
    settings : ServeSettings
        Limits and batching of this server.
    loaded : LoadedModel, default=None
        An already loaded model; None loads ``settings.model_dir`` at startup
        (once per worker process).

    Raises
    ------
    FileNotFoundError, PermissionError, ApiKeyFileError
        ``settings.api_key_file`` is missing, unreadable or holds no key (see
        :func:`pipelines.serving.auth.read_api_keys`).
    """
    keys = (
        read_api_keys(settings.api_key_file)
        if settings.api_key_file is not None
        else None
    )
    service = _Service(settings, loaded)
    service.metrics = Metrics(loaded.sha if loaded is not None else "")
    routes = [
        Route("/", service.page, methods=["GET"]),
        Route("/v1/predict", service.predict, methods=["POST"]),
        Route("/v1/model", service.model_info, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_text, methods=["GET"]),
        Route("/openapi.json", service.openapi, methods=["GET"]),
        Route("/docs", service.docs, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=service.lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    if keys is not None:
        app = BearerAuthMiddleware(app, keys, _protected_paths(settings))
    return AccessLogMiddleware(app, service.metrics, [r.path for r in routes])
