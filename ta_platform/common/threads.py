"""One BLAS thread for the small dense kernels of this package.

Why: on a shared 2-core machine OpenBLAS thread hand-offs made L-BFGS-B ~15x and a truncated SVD
~30x slower than single-threaded runs (measured; the matrices here are far too small to gain from
threads). Heavy numpy/scipy/sklearn work (preference fits, probe training) runs inside this.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def single_blas_thread() -> threadpool_limits:
    """Context manager limiting BLAS libraries to one thread (restored on exit)."""
    return threadpool_limits(limits=1, user_api="blas")
