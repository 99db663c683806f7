"""How many threads facekit's parallel parts use (notebook 07, "At scale").

:func:`cpu_count` is the CPUs this process may run on: its affinity mask, which containers, ``taskset``
and batch schedulers set, not the machine's core count (``os.cpu_count()``), which would oversubscribe
them. :func:`faiss_threads` sizes FAISS's OpenMP team per call: on a busy machine a team whose threads
are descheduled waits at every barrier (a 10k-face build took 3.8 s with 2 threads vs 1.7 s with 1 on a
loaded 2-core machine), so :mod:`facekit.store.index` asks for the threads each call should use.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

__all__ = ["cpu_count", "faiss_threads"]


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextmanager
def faiss_threads(n: int):
    """Run the FAISS calls inside with ``n`` OpenMP threads, then restore the previous count."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
