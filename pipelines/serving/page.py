"""The page at ``GET /``: try the model in a browser, no build step, no CDN.

The HTML, CSS and JavaScript live in ``page.html`` next to this module (package
data). The page posts to ``/v1/predict`` with ``"explain"`` and shows the
three probabilities as bars, the reasons and the model's identity from
``/v1/model``; every text from the user or the server is inserted as text
(``textContent``), never as markup. The response carries a
Content-Security-Policy that allows only this page's own inline script and
style (by their sha256) and requests to this origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

__all__ = ["page_headers", "page_html"]


@cache
def _template() -> str:
    return resources.files(__package__).joinpath("page.html").read_text("utf-8")


def page_html(*, api_keys: bool) -> str:
    """The page; with ``api_keys`` its key field shows from the start.

    >>> "data-auth=\\"on\\"" in page_html(api_keys=True)
    True
    """
    state = "on" if api_keys else "off"
    return _template().replace("<body>", f'<body data-auth="{state}">', 1)


def _inline_hashes(tag: str) -> list[str]:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", _template(), re.S)
    return [
        "'sha256-"
        + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        + "'"
        for block in blocks
    ]


@cache
def page_headers() -> dict[str, str]:
    """Response headers of the page: a strict CSP and no framing, no sniffing."""
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(_inline_hashes("script")),
            "style-src " + " ".join(_inline_hashes("style")),
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
