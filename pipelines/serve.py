"""Serve a trained model over HTTP (an ASGI app on uvicorn).

    python -m pipelines.serve --model artifacts/model --port 8000

Endpoints: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``, ``GET /openapi.json`` and ``GET /docs``.
The model is loaded and verified against its manifest once per worker
process; concurrent requests are micro-batched into shared ``predict_proba``
calls; SIGTERM or Ctrl-C stops taking requests and lets the ones in flight
finish. ``GET /`` is a page to try the model in a browser. With
``--api-key-file`` (or ``ARENA_API_KEYS_FILE``) every ``/v1/*`` request needs
``Authorization: Bearer KEY``; listening beyond loopback without keys needs
``--allow-unauthenticated``. Needs the ``serve`` extra:
``pip install 'arena-preference[serve]'``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines._cli import add_verbosity_options, run_cli, setup_logging

__all__ = ["SERVE_HINT", "main", "require_serve_extra", "worker_threads"]

logger = logging.getLogger(__name__)

SERVE_HINT = "install the `serve` extra: pip install 'arena-preference[serve]'"
_SETTINGS_ENV = "ARENA_PREFERENCE_SERVE_SETTINGS"
"""How the settings reach ``--workers`` processes (set by this entry point)."""


def require_serve_extra() -> None:
    """Fail with the install hint when starlette or uvicorn is missing.

    Raises
    ------
    ImportError
        A package of the ``serve`` extra cannot be imported.
    """
    missing = []
    for module in ("starlette", "uvicorn"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise ImportError(f"pipelines.serve needs {missing}; {SERVE_HINT}.")


def worker_threads(workers: int) -> int:
    """OpenMP threads per worker process: the cores this process may use, shared.

    Without a limit every worker's boosters start one thread per core, so
    ``--workers 2`` on 2 cores would run 4 busy threads on 2 cores.
    """
    from features.parallel import usable_cores

    return max(1, usable_cores() // workers)


def _number_in(
    kind: type, low: float, high: float, expected: str
) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [low, high], else ``expected``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}.")
        return value

    return parse


_positive_int = _number_in(int, 1, float("inf"), "an integer >= 1")
_port = _number_in(int, 1, 65535, "a port 1-65535")
_milliseconds = _number_in(float, 0.0, 1000.0, "milliseconds between 0 and 1000")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", type=Path, default=Path("artifacts/model"), help="model directory")
    add("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    add("--port", type=_port, default=8000, help="TCP port")
    add(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes, each with its own copy of the model and "
        "cores/workers OpenMP threads (unless OMP_NUM_THREADS is set)",
    )
    add(
        "--max-batch",
        type=_positive_int,
        default=1000,
        help="most battles in one request (more: 413)",
    )
    add(
        "--max-body-bytes",
        type=_positive_int,
        default=16 * 1024 * 1024,
        help="largest request body in bytes (more: 413)",
    )
    add(
        "--batch-rows",
        type=_positive_int,
        default=256,
        help="most battles per shared model call (micro-batch); a larger request "
        "runs alone",
    )
    add(
        "--batch-wait-ms",
        type=_milliseconds,
        default=10.0,
        help="longest wait of a model call for more requests once it starts "
        "collecting; it ends once every client of the previous call is back (at "
        "once when idle)",
    )
    add(
        "--n-jobs",
        type=int,
        default=1,
        help="worker processes of the row-parallel feature blocks per model call "
        "(1: serial; requests are spread over --workers instead)",
    )
    add(
        "--shutdown-timeout",
        type=_positive_int,
        default=30,
        help="seconds that in-flight requests get to finish on SIGTERM",
    )
    add(
        "--api-key-file",
        type=Path,
        default=None,
        help="file of API keys, one per line (blank lines and # comments "
        "skipped): /v1/* then needs 'Authorization: Bearer KEY'; /healthz, "
        "/readyz and the page at / stay open. Default: the file named by "
        "$ARENA_API_KEYS_FILE, else no keys",
    )
    add(
        "--metrics-auth",
        action="store_true",
        help="with API keys, /metrics needs a key too (default: /metrics open)",
    )
    add(
        "--allow-unauthenticated",
        action="store_true",
        help="listen on a non-loopback --host without API keys (refused "
        "otherwise, exit code 2)",
    )
    add_verbosity_options(parser, quiet_help="warnings only (no access log)")
    return parser


def _api_key_file(args: argparse.Namespace) -> Path | None:
    """``--api-key-file``, else ``$ARENA_API_KEYS_FILE``, else None."""
    from pipelines.serving.auth import API_KEYS_ENV

    if args.api_key_file is not None:
        return args.api_key_file
    named = os.environ.get(API_KEYS_ENV, "").strip()
    return Path(named) if named else None


def _check_access(args: argparse.Namespace, key_file: Path | None) -> str | None:
    """Why the server must not start with these access options, or None."""
    from pipelines.serving.auth import is_loopback

    if key_file is None and args.metrics_auth:
        return (
            "--metrics-auth needs API keys: give --api-key-file PATH (or set "
            "ARENA_API_KEYS_FILE), or leave out --metrics-auth."
        )
    if (
        key_file is None
        and not is_loopback(args.host)
        and not args.allow_unauthenticated
    ):
        return (
            f"refusing to listen on {args.host} without API keys: anyone who can "
            "reach it could use the model. Give --api-key-file PATH (or set "
            "ARENA_API_KEYS_FILE), listen on 127.0.0.1, or pass "
            "--allow-unauthenticated."
        )
    return None


def _setup_access_log(quiet: bool, verbose: bool = False) -> None:
    """Access lines as bare JSON, one per request, on stderr."""
    if not verbose:
        # Two lines per block per model call would drown the access log.
        logging.getLogger("features.pipeline").setLevel(logging.WARNING)
    from pipelines.serving.metrics import ACCESS_LOGGER_NAME

    access = logging.getLogger(ACCESS_LOGGER_NAME)
    access.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False
    access.setLevel(logging.WARNING if quiet else logging.INFO)


def _uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.serving.protocol import NoDelayH11Protocol

    return {
        "http": NoDelayH11Protocol,
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": args.shutdown_timeout,
        "lifespan": "on",
        "server_header": False,
    }


def _main(args: argparse.Namespace) -> int:
    require_serve_extra()
    import uvicorn

    from pipelines.serving.app import ServeSettings, create_app, load_model
    from pipelines.serving.auth import read_api_keys

    key_file = _api_key_file(args)
    refusal = _check_access(args, key_file)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    if key_file is not None:
        # A missing, unreadable or empty key file stops here, exit 2.
        n_keys = len(read_api_keys(key_file))
        logger.info("API keys on: %d key(s) from %s", n_keys, key_file)
    _setup_access_log(args.quiet, args.verbose)
    settings = ServeSettings(
        model_dir=str(args.model),
        max_batch=args.max_batch,
        max_body_bytes=args.max_body_bytes,
        batch_rows=args.batch_rows,
        batch_wait_ms=args.batch_wait_ms,
        n_jobs=args.n_jobs,
        api_key_file=None if key_file is None else str(key_file),
        metrics_auth=args.metrics_auth,
    )
    if args.workers == 1:
        # Load (and verify) before listening: a bad model stops here, exit 2.
        loaded = load_model(args.model, n_jobs=args.n_jobs)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, loaded), **_uvicorn_options(args))
        )
        server.run()
        return 0 if server.started else 3
    # Each worker process loads the model itself; check it once here first.
    from models.artifact import read_model_dir

    read_model_dir(args.model)
    from pipelines.serving.workers import WorkerPool

    environment = {
        # The workers are fresh processes: their libgomp reads this when it loads.
        "OMP_NUM_THREADS": os.environ.get(
            "OMP_NUM_THREADS", str(worker_threads(args.workers))
        ),
        _SETTINGS_ENV: json.dumps(
            {
                "settings": dataclasses.asdict(settings),
                "verbose": args.verbose,
                "quiet": args.quiet,
            }
        ),
    }
    pool = WorkerPool(
        args.workers,
        {
            "app": "pipelines.serve:_app_from_environment",
            "factory": True,
            **_uvicorn_options(args),
        },
        environment,
        shutdown_timeout=args.shutdown_timeout,
    )
    return pool.run()


def _app_from_environment() -> Any:
    """The app of one ``--workers`` process (uvicorn calls this factory)."""
    from pipelines.serving.app import ServeSettings, create_app

    payload = json.loads(os.environ[_SETTINGS_ENV])
    setup_logging(
        argparse.Namespace(verbose=payload["verbose"], quiet=payload["quiet"])
    )
    _setup_access_log(payload["quiet"], payload["verbose"])
    return create_app(ServeSettings(**payload["settings"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.serve``."""
    try:
        require_serve_extra()
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
