"""models._blas: one BLAS thread inside, the caller's count restored after."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_info, threadpool_limits

from models._blas import single_blas_thread


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_single_blas_thread_limits_inside_and_restores_after_nesting():
    with threadpool_limits(limits=3, user_api="blas"):
        with single_blas_thread():
            assert _blas_threads() == {1}
            with single_blas_thread():
                assert _blas_threads() == {1}
            assert _blas_threads() == {1}  # the outer block still runs on one
        assert _blas_threads() == {3}


def test_a_block_left_in_a_live_pool_thread_lets_other_threads_limit_blas():
    def solve() -> set[int]:
        with single_blas_thread():
            return _blas_threads()

    # The pool's thread stays alive: it must not keep the control of OpenBLAS.
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(solve).result(timeout=30) == {1}
        with threadpool_limits(limits=3, user_api="blas"):
            assert _blas_threads() == {3}
            assert solve() == {1}
            assert _blas_threads() == {3}
