"""Sampling profiles of benchmark children with py-spy, summarised as tables.

When a target is missed, the harness runs (or re-runs) the slow step under
``py-spy record`` and writes where the time went into ``BENCHMARKS.md``: the
functions with the most samples on top of the stack (self time) and the
project functions with the most samples anywhere in the stack (inclusive).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks._report import ChildRun, Table, run_child

__all__ = ["py_spy_path", "profile_child", "summarise_profile"]

_PROJECT_PACKAGES = ("features/", "models/", "pipelines/", "benchmarks/")
_LINE = re.compile(r":\d+\)$")


def py_spy_path() -> str | None:
    """The py-spy executable next to this Python, else on PATH, else None."""
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def profile_child(
    argv: Sequence[str],
    raw_path: Path,
    *,
    rate: int = 20,
    timeout: float | None = None,
) -> ChildRun | None:
    """Run ``argv`` under ``py-spy record`` (raw collapsed stacks to ``raw_path``).

    Returns None when py-spy is not installed. The returned run's wall time
    and peak RSS include py-spy's small overhead (sampling at ``rate`` Hz).
    """
    spy = py_spy_path()
    if spy is None:
        return None
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        spy,
        "record",
        "--format",
        "raw",
        "--rate",
        str(rate),
        "--output",
        str(raw_path),
        "--nonblocking",
        "--subprocesses",  # the forked feature workers too
        "--",
        *argv,
    ]
    return run_child(command, timeout=timeout)


def _frame_name(frame: str) -> str:
    """``function (path:line)`` -> ``function (short/path.py)``."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def summarise_profile(
    raw_path: Path, *, title: str, top: int = 8, command: str | None = None
) -> Table:
    """Self-time and project-inclusive shares of a py-spy raw profile.

    Parameters
    ----------
    raw_path : Path
        Collapsed stacks written by ``py-spy record --format raw``.
    title : str
        Table heading.
    top : int, default=8
        Rows of each kind.
    command : str, default=None
        The profiled command, shown with the table.
    """
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    text = (
        raw_path.read_text(encoding="utf-8", errors="replace")
        if raw_path.exists()
        else ""
    )
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        self_counts[frames[-1]] += n
        for frame in set(frames):
            if any(p in frame for p in _PROJECT_PACKAGES) and "<module>" not in frame:
                inclusive[frame] += n
    table = Table(title=title, columns=["kind", "function", "share of samples"])
    table.command = command
    if total == 0:
        table.notes.append("no samples recorded (py-spy missing or the run failed).")
        return table
    for frame, n in self_counts.most_common(top):
        table.rows.append(
            {"kind": "self", "function": frame, "share of samples": f"{n / total:.1%}"}
        )
    for frame, n in inclusive.most_common(top):
        table.rows.append(
            {
                "kind": "inclusive (project)",
                "function": frame,
                "share of samples": f"{n / total:.1%}",
            }
        )
    table.notes.append(
        f"{total:,} samples by py-spy; 'self' = on top of the stack (where the CPU "
        "is), 'inclusive' = anywhere in the stack (which project call caused it)."
    )
    return table
