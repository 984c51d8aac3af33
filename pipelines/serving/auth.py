"""API keys of the service: the key file, the Bearer check and the bind rule.

``serve --api-key-file PATH`` (or ``ARENA_API_KEYS_FILE``) makes every
``/v1/*`` request (and ``/metrics`` with ``--metrics-auth``) carry
``Authorization: Bearer KEY`` with one of the file's keys. A presented key is
compared with every key in constant time (:func:`hmac.compare_digest`), so the
time of a refusal says nothing about how close a guess was; keys never reach a
log or an error message. ``/healthz``, ``/readyz``, the page at ``/`` and the
API description stay open.
"""

from __future__ import annotations

import copy
import hmac
import ipaddress
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from features.errors import UserInputError
from pipelines.serving.metrics import ASGIApp, Receive, Scope, Send

__all__ = [
    "API_KEYS_ENV",
    "ApiKeyFileError",
    "BearerAuthMiddleware",
    "document_bearer",
    "is_loopback",
    "read_api_keys",
]

API_KEYS_ENV = "ARENA_API_KEYS_FILE"
"""The environment variable naming the key file when ``--api-key-file`` is absent."""

_REALM = b'Bearer realm="arena-preference"'


class ApiKeyFileError(UserInputError, ValueError):
    """A key file that holds no key, or a line that is not a key."""


def read_api_keys(path: str | Path) -> tuple[str, ...]:
    """The keys of a key file: one per line, blank lines and ``#`` comments skipped.

    Parameters
    ----------
    path : str or Path
        The key file.

    Returns
    -------
    tuple of str
        The keys, stripped of surrounding whitespace, in file order.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    PermissionError
        The file cannot be read.
    ApiKeyFileError
        The file holds no key, is not UTF-8, or a key holds whitespace or
        non-ASCII text.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as f:
    ...     _ = f.write("# ops team\\nk3y-one\\n\\nk3y-two\\n")
    >>> read_api_keys(f.name)
    ('k3y-one', 'k3y-two')
    >>> os.unlink(f.name)
    """
    location = Path(path)
    if not location.is_file():
        raise FileNotFoundError(
            f"API key file {str(location)!r} does not exist (--api-key-file or "
            f"{API_KEYS_ENV}). Give the path of a file with one key per line."
        )
    try:
        text = location.read_text(encoding="utf-8")
    except PermissionError as err:
        raise PermissionError(
            f"API key file {str(location)!r} cannot be read by this user. Make it "
            "readable by the server's user (and no one else)."
        ) from err
    except UnicodeDecodeError as err:
        raise ApiKeyFileError(
            f"API key file {str(location)!r} is not UTF-8 text. Write one ASCII key "
            "per line."
        ) from err
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if not key.isascii() or any(char.isspace() for char in key):
            raise ApiKeyFileError(
                f"API key file {str(location)!r}, line {number}: a key must be one "
                "word of printable ASCII (no spaces, no non-ASCII letters). Fix that "
                "line."
            )
        keys.append(key)
    if not keys:
        raise ApiKeyFileError(
            f"API key file {str(location)!r} holds no key (only blank lines or "
            "# comments). Add one key per line, or leave out --api-key-file."
        )
    return tuple(keys)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "127.8.0.2", "::1", "localhost")]
    [True, True, True, True]
    >>> [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.org")]
    [False, False, False, False]
    """
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def _key_matches(presented: bytes, keys: Sequence[bytes]) -> bool:
    """Constant time per key, and every key compared (no early exit)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key)
    return found


class BearerAuthMiddleware:
    """ASGI middleware: 401 unless ``Authorization: Bearer KEY`` holds a key.

    Parameters
    ----------
    app : ASGI application
        The wrapped application.
    keys : sequence of str
        The accepted keys.
    protected_prefixes : iterable of str
        Paths that need a key: a path equal to one, or under it when it ends
        with ``/`` (``"/v1/"`` protects ``/v1/predict`` and ``/v1/model``).
    """

    def __init__(
        self, app: ASGIApp, keys: Sequence[str], protected_prefixes: Iterable[str]
    ) -> None:
        self.app = app
        self.keys = tuple(key.encode("ascii") for key in keys)
        self.protected = tuple(protected_prefixes)

    def _protects(self, path: str) -> bool:
        return any(
            path.startswith(prefix) if prefix.endswith("/") else path == prefix
            for prefix in self.protected
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._protects(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        presented = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                presented = value
                break
        if presented is None:
            await _unauthorized(
                send,
                "this endpoint needs an API key: send the header "
                "'Authorization: Bearer KEY' with a key the server was started "
                "with (--api-key-file).",
            )
            return
        scheme, _, token = presented.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            await _unauthorized(
                send,
                "the Authorization header is not 'Bearer KEY'. Send "
                "'Authorization: Bearer KEY' with a key the server was started with.",
            )
            return
        if not _key_matches(token.strip(), self.keys):
            await _unauthorized(
                send,
                "the API key is not one this server accepts. Check the key, or ask "
                "the operator for one from its --api-key-file.",
            )
            return
        await self.app(scope, receive, send)


def document_bearer(schema: dict[str, Any], protected: Iterable[str]) -> dict[str, Any]:
    """An OpenAPI document with the Bearer scheme on the ``protected`` paths.

    Returns a copy: ``schema`` itself is left as it is.

    >>> doc = {"paths": {"/v1/x": {"get": {"responses": {}}}}, "components": {}}
    >>> out = document_bearer(doc, ["/v1/"])
    >>> out["paths"]["/v1/x"]["get"]["security"], "401" in doc["paths"]["/v1/x"]["get"]
    ([{'bearer': []}], False)
    """
    document = copy.deepcopy(schema)
    document.setdefault("components", {}).setdefault("securitySchemes", {})[
        "bearer"
    ] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A key of the server's --api-key-file.",
    }
    prefixes = tuple(protected)
    for path, operations in document.get("paths", {}).items():
        if not any(
            path.startswith(prefix) if prefix.endswith("/") else path == prefix
            for prefix in prefixes
        ):
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "No API key, or not one this server accepts",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}
                    }
                },
            }
    return document


async def _unauthorized(send: Send, message: str) -> None:
    """The service's JSON error shape with status 401 and a Bearer challenge."""
    body = json.dumps(
        {
            "error": {
                "status": 401,
                "message": message,
                "field": "Authorization",
                "battle_index": None,
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"www-authenticate", _REALM),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
