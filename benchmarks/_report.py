"""Shared pieces of the benchmarks: machine facts, timing, child processes, tables.

Every benchmark returns :class:`Table` objects; the orchestrator
(``benchmarks.run``) renders them into ``BENCHMARKS.md`` with the command, the
machine and the date, so each number can be reproduced.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ChildRun",
    "REPO_ROOT",
    "Section",
    "Table",
    "Target",
    "available_cores",
    "fmt",
    "growth_exponent",
    "load_average",
    "machine_info",
    "median",
    "optuna_trial_counts",
    "percentile",
    "portable_paths",
    "python_module",
    "relative",
    "run_child",
    "timed",
    "trials_summary",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root: children run here, so ``python -m pipelines...`` works."""

_CHILD_ENV_DROP = ("PYTEST_CURRENT_TEST",)
_THREAD_ENV = (
    "OMP_WAIT_POLICY",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
"""Environment variables that change threading, so they are stated with results."""


@dataclass
class Table:
    """One markdown table of a benchmark section.

    Attributes
    ----------
    title : str
        Heading (rendered as ``###``).
    columns : list of str
        Column names, in order; each row maps them to values.
    rows : list of dict
        The rows; missing cells render as ``-``.
    notes : list of str
        Sentences rendered under the table (how it was measured, caveats).
    command : str or None
        The command that reproduces the table alone, when there is one.
    markdown : str or None
        Ready markdown shown instead of ``columns``/``rows`` (e.g. a table a
        child process printed).
    """

    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str | None = None
    markdown: str | None = None

    def to_markdown(self) -> str:
        """The table as GitHub markdown (heading, command, table, notes)."""
        lines = [f"### {self.title}", ""]
        if self.command:
            lines += [f"Command: `{self.command}`", ""]
        if self.markdown is not None:
            lines.append(self.markdown.strip())
            if self.notes:
                lines.append("")
                lines += [f"- {note}" for note in self.notes]
            return "\n".join(lines)
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(_align(self.rows, c) for c in self.columns) + "|")
        for row in self.rows:
            cells = [fmt(row.get(c)) for c in self.columns]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if not self.rows:
            lines.append("| " + " | ".join("-" for _ in self.columns) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class Target:
    """A target from the issues and whether this run met it.

    Attributes
    ----------
    name : str
        What is measured ("lite rows/s at batch 1,000").
    goal : str
        The target ("≥ 1,000 rows/s").
    measured : str
        The measured value, formatted.
    met : bool or None
        None when not measured in this run.
    cause : str or None
        For a miss: the measured cause (profile summary) or a pointer to it.
    """

    name: str
    goal: str
    measured: str
    met: bool | None
    cause: str | None = None


@dataclass
class Section:
    """One benchmark's output: tables, targets, figures and notes."""

    key: str
    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_markdown(self, figure_base: Path | None = None) -> str:
        """The section as markdown; figure links relative to ``figure_base``."""
        lines = [f"## {self.title}", ""]
        for note in self.notes:
            lines += [note, ""]
        for table in self.tables:
            lines += [table.to_markdown(), ""]
        for figure in self.figures:
            link = figure
            if figure_base is not None:
                link = Path(os.path.relpath(figure.resolve(), figure_base.resolve()))
            lines += [f"![{figure.stem}]({link.as_posix()})", ""]
        lines.append(f"_Section run time: {self.seconds / 60:.1f} min._")
        return "\n".join(lines)


def _align(rows: Sequence[Mapping[str, Any]], column: str) -> str:
    values = [row.get(column) for row in rows if row.get(column) is not None]
    numeric = values and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )
    return "---:" if numeric else "---"


def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant-ish digits, ints with separators.

    Values under 10 keep four decimals (log losses differ in the third).

    >>> fmt(1234567), fmt(1.23456), fmt(1234.5), fmt(None), fmt(float("nan"))
    ('1,234,567', '1.2346', '1,234', '-', 'n/a')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.4f}"
    return str(value)


def median(values: Iterable[float]) -> float:
    """Median of the values (NaN when there are none).

    >>> median([3.0, 1.0, 2.0])
    2.0
    """
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation.

    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50)
    3.0
    """
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``function`` took, and its result."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def growth_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """``b`` of the least-squares fit ``log(value) = a + b log(size)``.

    1.0 is linear growth, 2.0 quadratic. NaN with fewer than two usable points.

    >>> round(growth_exponent([1e3, 2e3, 4e3], [1.0, 4.0, 16.0]), 3)
    2.0
    """
    import numpy as np

    pairs = [(s, v) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len(pairs) < 2:
        return float("nan")
    x = np.log([p[0] for p in pairs])
    y = np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), else ``os.cpu_count``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def _gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "none"


def machine_info() -> dict[str, Any]:
    """Facts every table is stated with: cores, CPU model, memory, GPU, date."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    memory = _memory_gb()
    return {
        "cores": available_cores(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": None if memory is None else round(memory, 1),
        "gpu": _gpu(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load_at_start": tuple(round(v, 2) for v in load),
        "thread_env": {k: os.environ[k] for k in _THREAD_ENV if k in os.environ},
    }


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (NaN where unknown)."""
    if hasattr(os, "getloadavg"):
        return tuple(round(v, 2) for v in os.getloadavg())
    return (float("nan"),) * 3


@dataclass(frozen=True)
class ChildRun:
    """What one measured child process did.

    Attributes
    ----------
    command : list of str
        The argv it ran.
    returncode : int
        Exit status.
    seconds : float
        Wall time.
    peak_rss_bytes : int
        Its peak resident set size, including its own waited-for children.
    cpu_seconds : float
        User plus system CPU time.
    stdout, stderr : str
        Its output.
    timed_out : bool
        Whether it was stopped at its timeout.
    """

    command: list[str]
    returncode: int
    seconds: float
    peak_rss_bytes: int
    cpu_seconds: float
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def peak_rss_gb(self) -> float:
        """Peak RSS in GiB."""
        return self.peak_rss_bytes / 1024**3

    @property
    def display(self) -> str:
        """The command as one shell-quoted line (with ``python`` for the venv)."""
        argv = ["python", *self.command[1:]] if self.command else []
        return shlex.join(argv)

    def check(self) -> ChildRun:
        """Self, or a RuntimeError naming the command and its last output lines."""
        if self.returncode != 0:
            tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-15:])
            raise RuntimeError(
                f"benchmark child failed with exit code {self.returncode}: "
                f"{self.display}\n{tail}"
            )
        return self


def run_child(
    argv: Sequence[str],
    *,
    cwd: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> ChildRun:
    """Run ``argv`` and measure its wall time, CPU time and peak RSS.

    Peak RSS is the largest ``VmHWM`` (the kernel's high-water mark of a
    process's resident memory) of the child and of its descendants, polled
    from ``/proc`` while they run. ``ru_maxrss`` from ``wait4`` or
    ``getrusage(RUSAGE_CHILDREN)`` cannot be used: Linux folds the memory of
    the process that forked the child into it at ``exec``, so every small
    child would report this (large) harness process's RSS. CPU time comes
    from ``os.wait4`` on the child.

    Parameters
    ----------
    argv : sequence of str
        The command; ``sys.executable`` is the usual first element.
    cwd : Path, default=REPO_ROOT
        Working directory.
    env : mapping, default=None
        Extra environment variables (added to this process's).
    timeout : float, default=None
        Seconds before the child is stopped: SIGINT to it and its descendants
        (a CLI keeps its finished trials, py-spy writes its profile), SIGKILL
        30 s later; the run then has ``timed_out`` set.
    """
    child_env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
    child_env.update(env or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        # Popen returns after the child's exec, so /proc shows its own memory.
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=child_env, stdout=out, stderr=err
        )
        deadline = None if timeout is None else started + timeout
        status, usage, peak_kib, timed_out = _wait(process.pid, deadline)
        seconds = time.perf_counter() - started
        process.returncode = status  # reaped by wait4; keep Popen consistent
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    return ChildRun(
        command=list(argv),
        returncode=status,
        seconds=seconds,
        peak_rss_bytes=peak_kib * 1024,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
    )


def _vm_hwm_kib(pid: int) -> int:
    """``VmHWM`` of a process in KiB (0 when gone or not readable)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (via /proc/<pid>/task/*/children)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack.extend(int(c) for c in handle.read().split())
            except (OSError, ValueError):
                continue
    return found


def _signal_all(pids: Sequence[int], signal_number: int) -> None:
    for process in pids:
        try:
            os.kill(process, signal_number)
        except OSError:
            pass


def _wait(pid: int, deadline: float | None) -> tuple[int, Any, int, bool]:
    """Wait for ``pid`` (stopping it at ``deadline``), polling its peak RSS."""
    peak_kib = 0
    interval = 0.05
    timed_out = False
    while True:
        tree = _descendants(pid)
        for process in tree:
            peak_kib = max(peak_kib, _vm_hwm_kib(process))
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage, peak_kib, timed_out
        now = time.perf_counter()
        if deadline is not None and now > deadline:
            if not timed_out:
                timed_out = True
                _signal_all(tree, signal.SIGINT)
                deadline = now + 30.0
            else:
                _signal_all(tree, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                return os.waitstatus_to_exitcode(status), usage, peak_kib, True
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def optuna_trial_counts(database: Path) -> dict[str, int]:
    """Trials per state over every study in an Optuna SQLite file (read directly,
    so it works after the writer was killed); {} when there is none.

    >>> optuna_trial_counts(Path("/nonexistent.db"))
    {}
    """
    import sqlite3

    if not Path(database).exists():
        return {}
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            rows = connection.execute(
                "SELECT state, COUNT(*) FROM trials GROUP BY state"
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {str(state).lower(): int(count) for state, count in rows}


def trials_summary(
    counts: dict[str, int], asked: int, minutes: float, budget: float | None
) -> tuple[str, bool]:
    """ "X of N trials (c complete, p pruned)" and whether all N finished.

    >>> text, finished = trials_summary({"complete": 3, "pruned": 1}, 8, 30.0, 1800.0)
    >>> finished, text.endswith("all 8 at this rate: ~60 min of tuning")
    (False, True)
    """
    done = counts.get("complete", 0) + counts.get("pruned", 0)
    text = (
        f"{done} of {asked} trials ({counts.get('complete', 0)} complete, "
        f"{counts.get('pruned', 0)} pruned)"
    )
    if done >= asked:
        return text, True
    if budget:
        text += f" in the {budget / 60:.0f}-min tuning budget"
        span = budget / 60
    else:
        text += f" in {minutes:.0f} min"
        span = minutes
    if done:
        text += f"; all {asked} at this rate: ~{span * asked / done:,.0f} min of tuning"
    return text, False


def python_module(module: str, *args: str) -> list[str]:
    """``[sys.executable, "-m", module, *args]``."""
    return [sys.executable, "-m", module, *args]


def _path_prefixes() -> list[tuple[str, str]]:
    """Machine folders and how a reader of the repository writes them, longest first.

    The repository root is dropped, its parent folder (where ``../shared/data``
    lives) becomes ``..``, the temporary folder ``$TMPDIR`` and the home folder
    ``~``. A prefix that is the file system root is left out: a repository at
    ``/app`` has ``/`` as parent, and every absolute path would match it.
    """
    folders = [
        (REPO_ROOT, "."),
        (REPO_ROOT.parent, ".."),
        (Path(tempfile.gettempdir()).resolve(), "$TMPDIR"),
        (Path.home().resolve(), "~"),
    ]
    prefixes = {}
    for folder, shown in folders:
        if folder.parent != folder:  # not the file system root
            prefixes.setdefault(str(folder), shown)
    return sorted(prefixes.items(), key=lambda item: -len(item[0]))


def relative(path: Path | str) -> str:
    """``path`` the way a reader of the repository types it (for commands, tables).

    Inside the repository it is relative to the root (``configs/lite.yaml``);
    beside it, relative to the root as well (``../shared/data/corpus/train.csv``);
    in the temporary or the home folder it starts with ``$TMPDIR`` or ``~``, so no
    report names the folders of the machine that ran it. Any other path is kept.

    >>> relative(REPO_ROOT / "configs" / "lite.yaml")
    'configs/lite.yaml'
    >>> relative(REPO_ROOT.parent / "shared" / "data" / "corpus" / "train.csv")
    '../shared/data/corpus/train.csv'
    """
    # As written first (a shared/ folder beside the repository may be a link),
    # then with links resolved (the repository reached through one).
    for candidate in (Path(os.path.abspath(path)), Path(path).resolve()):
        for prefix, shown in _path_prefixes():
            folder = Path(prefix)
            if candidate == folder or folder in candidate.parents:
                rest = candidate.relative_to(folder)
                if shown == ".":
                    return str(rest)
                return shown if str(rest) == "." else f"{shown}/{rest}"
    return str(path)


def portable_paths(text: str) -> str:
    """``text`` with every machine folder written as :func:`relative` writes it.

    Run over a whole report, it also catches paths that reached the text some
    other way (a command line as typed, a file name in a log line).

    >>> portable_paths(f"--data {REPO_ROOT.parent}/shared/data/corpus/train.csv")
    '--data ../shared/data/corpus/train.csv'
    """
    for prefix, shown in _path_prefixes():
        # Only whole paths: not `artifacts/tmp/x`, not `/tmpfiles`.
        start = rf"(?<![\w./~$-]){re.escape(prefix)}"
        replacement = "" if shown == "." else f"{shown}/"
        text = re.sub(rf"{start}/", lambda _, r=replacement: r, text)
        text = re.sub(rf"{start}(?![\w./-])", lambda _, r=shown: r, text)
    return text
