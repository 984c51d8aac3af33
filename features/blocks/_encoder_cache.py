"""One loaded encoder per process and spec, shared by every embeddings block.

Loading an encoder reads its weights (and, for ONNX, exports and quantizes
the graph): seconds to tens of seconds. Every fit of a model makes new blocks,
so without this each held-out fit of a report loaded the same encoder again.
The cache is keyed by :class:`EncoderSpec` (model path, backend, device and
dtype, max tokens, truncation, quantization, ONNX), is thread-safe (a spec
loads once even when threads ask together), and starts empty in a forked
child: the parent's encoders, their runtime thread pools and any lock held
at the fork stay with the parent.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from features.blocks import _encoders
from features.blocks._encoders import EncoderSpec

__all__ = ["MAX_SHARED_ENCODERS", "clear_shared_encoders", "shared_encoder"]

MAX_SHARED_ENCODERS = 2
"""Encoders kept at once; the least recently used goes first (GPU memory)."""

_encoders_by_spec: OrderedDict[EncoderSpec, Any] = OrderedDict()
_loading: dict[EncoderSpec, threading.Lock] = {}
_lock = threading.Lock()


def shared_encoder(spec: EncoderSpec) -> Any:
    """The encoder of ``spec``, loaded on the first call in this process.

    Raises
    ------
    OSError, ValueError, ImportError
        Whatever loading the encoder raises (nothing is cached then).
    """
    with _lock:
        if spec in _encoders_by_spec:
            _encoders_by_spec.move_to_end(spec)
            return _encoders_by_spec[spec]
        spec_lock = _loading.setdefault(spec, threading.Lock())
    with spec_lock:
        with _lock:
            if spec in _encoders_by_spec:
                return _encoders_by_spec[spec]
        encoder = _encoders.load_encoder(spec)
        with _lock:
            _encoders_by_spec[spec] = encoder
            while len(_encoders_by_spec) > MAX_SHARED_ENCODERS:
                _encoders_by_spec.popitem(last=False)
            _loading.pop(spec, None)
    return encoder


def clear_shared_encoders() -> None:
    """Drop every shared encoder (the next use loads it again)."""
    with _lock:
        _encoders_by_spec.clear()


_inherited: list[Any] = []
"""In a forked child: the parent's encoders, kept referenced and never destroyed.

Their native thread pools (ONNX Runtime, PyTorch) did not survive the fork, and
destroying one waits for those threads forever: a forked worker that dropped
them hung the default profile's held-out fits.
"""


def _reset_after_fork() -> None:
    global _lock, _encoders_by_spec
    _lock = threading.Lock()
    _loading.clear()
    _inherited.append(_encoders_by_spec)
    _encoders_by_spec = OrderedDict()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_after_fork)
