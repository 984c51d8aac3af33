"""Workers of every cluster we open get glibc's heap thresholds back.

A Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
cost a worker 40% more CPU per predicted row than a plain process.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from models._heap import HeapReuse, restore_heap_reuse  # noqa: E402
from models.dask_cluster import dask_client, parse_scheduler  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's"
)


def _worker_state(dask_worker) -> tuple[list[str], str | None]:
    import os

    return sorted(dask_worker.plugins), os.environ.get("MALLOC_TRIM_THRESHOLD_")


@glibc_only
def test_restore_heap_reuse_sets_the_thresholds_here():
    assert restore_heap_reuse() is True


@glibc_only
def test_every_worker_of_a_local_cluster_runs_the_heap_plugin():
    with dask_client(parse_scheduler("local:2")) as client:
        states = client.run(_worker_state)
    assert len(states) == 2
    for plugins, trim_env in states.values():
        assert HeapReuse.name in plugins
        # The nanny still sets the variable; the plugin overrides it at run time.
        assert trim_env == "65536"


def test_a_local_cluster_leaves_the_starting_process_environment_as_it_was():
    # The nanny writes OMP/MKL/OPENBLAS_NUM_THREADS=1 and a fixed PYTHONHASHSEED
    # into the parent; left there, every later child ran on one BLAS thread.
    before = dict(os.environ)
    with dask_client(parse_scheduler("local:1")) as client:
        threads = client.run(lambda: __import__("os").environ.get("OMP_NUM_THREADS"))
        assert dict(os.environ) == before
    assert dict(os.environ) == before
    assert list(threads.values()) == ["1"]  # the worker keeps the nanny's settings


_PROBE = """
import ctypes, json
from models._heap import restore_heap_reuse

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2

def mapped_by_one_mib():
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(1 << 20)
    grew = libc.mallinfo2().hblkhd - before
    libc.free(block)
    return grew

print(json.dumps([mapped_by_one_mib(), restore_heap_reuse(), mapped_by_one_mib()]))
"""


@glibc_only
def test_a_one_mib_block_comes_from_the_heap_after_the_restore():
    """Under the nanny's variable 1 MiB is mmapped; after the restore it is not."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    ).stdout
    mapped_before, restored, mapped_after = json.loads(out)
    assert mapped_before >= 1 << 20
    assert restored is True
    assert mapped_after == 0
