"""``serve --workers N``: N processes, each listening on the port itself.

uvicorn's own ``--workers`` shares one listening socket between its
processes, and whichever process wakes first accepts every connection that is
waiting: with 8 keep-alive clients connecting at once, all 8 went to one of 2
workers, which used a full core while the other idled (419 battles/s). Here
every worker opens its own socket on the same port with ``SO_REUSEPORT``, and
the kernel spreads new connections over the workers by a hash of the client's
address and port. The parent holds a bound (not listening) socket on the port
for the pool's lifetime, so a port in use fails before any worker starts, and
port 0 resolves to one port that every worker shares. A worker that dies is
replaced; one that fails before serving (exit 3: the app, the model or the
bind is broken) stops the pool, as it would fail again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["STARTUP_FAILURE", "WorkerPool", "reuseport_socket"]

logger = logging.getLogger(__name__)

STARTUP_FAILURE = 3
"""Exit code of a worker that stopped before it served (uvicorn's value)."""

_CHECK_SECONDS = 0.5


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other such sockets may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _serve_one(options: Mapping[str, Any], environment: Mapping[str, str]) -> None:
    """One worker process: its own socket on the shared port, one uvicorn server."""
    import uvicorn

    os.environ.update(environment)
    try:
        sock = reuseport_socket(options["host"], options["port"])
    except OSError as err:
        print(f"error: worker {os.getpid()} cannot listen: {err}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(uvicorn.Config(**options))
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class WorkerPool:
    """Start ``n_workers`` serving processes and keep them running until a signal.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    options : mapping
        ``uvicorn.Config`` keywords of every worker (the app as an import
        string with ``factory=True``; ``host`` and ``port`` included).
    environment : mapping
        Variables set in each worker before uvicorn imports the app.
    shutdown_timeout : float
        Seconds a worker gets to finish its requests after SIGTERM.
    """

    def __init__(
        self,
        n_workers: int,
        options: Mapping[str, Any],
        environment: Mapping[str, str],
        shutdown_timeout: float,
    ) -> None:
        self.n_workers = n_workers
        self.options = dict(options)
        self.environment = dict(environment)
        self.shutdown_timeout = shutdown_timeout
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[Any] = []
        self._stop = threading.Event()

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM: 0 when stopped, 3 if a worker never served."""
        try:
            held = reuseport_socket(self.options["host"], self.options["port"])
        except OSError as err:
            print(
                f"error: cannot listen on {self.options['host']}:"
                f"{self.options['port']}: {err}",
                file=sys.stderr,
            )
            return STARTUP_FAILURE
        with held:
            self.options["port"] = held.getsockname()[1]
            previous = self._install_signals()
            try:
                self._processes = [self._start() for _ in range(self.n_workers)]
                logger.info(
                    "serving on %s:%d with %d worker processes (SO_REUSEPORT)",
                    self.options["host"],
                    self.options["port"],
                    self.n_workers,
                )
                code = self._supervise()
            finally:
                self._stop_all()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return code

    def _install_signals(self) -> dict[int, Callable | int | None]:
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: self._stop.set())
        return previous

    def _start(self) -> Any:
        process = self._context.Process(
            target=_serve_one,
            args=(self.options, self.environment),
            name="serve-worker",
        )
        process.start()
        return process

    def _supervise(self) -> int:
        while not self._stop.wait(_CHECK_SECONDS):
            for index, process in enumerate(self._processes):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    logger.error(
                        "worker %s failed before serving; stopping the server",
                        process.pid,
                    )
                    return STARTUP_FAILURE
                logger.warning(
                    "worker %s exited with %s; starting a new one",
                    process.pid,
                    process.exitcode,
                )
                self._processes[index] = self._start()
        return 0

    def _stop_all(self) -> None:
        """SIGTERM to every worker (they finish in-flight requests), then wait."""
        for process in self._processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in self._processes:
            process.join(self.shutdown_timeout + 5)
            if process.is_alive():
                logger.warning("worker %s did not stop in time; killed", process.pid)
                process.kill()
                process.join()
