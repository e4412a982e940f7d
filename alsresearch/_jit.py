"""How the package runs its numba kernels: serially compiled, in parallel on Python threads.

Every kernel is a plain ``@njit(nogil=True, cache=True)`` function over a range of independent
rows (or tiles of rows). :func:`parallel_for` splits the work into units and runs them on a
few Python threads, the calling thread included; the kernels release the GIL, so the threads
run on all cores. numba's own ``parallel=True`` would do the same with ``prange``, but
compiling a parallel kernel costs several times a serial one (paid on the first fit of every
fresh machine, container or CI runner; the README's *Cold start* has the figures), and a
kernel needed both with and without the thread pool was compiled twice. Units are
claimed in order as threads free up, so a few long rows do not leave a thread idle, and a
Ctrl-C is seen between units (each a few milliseconds).

Threads: :func:`kernel_threads` is ``NUMBA_NUM_THREADS`` (all cores unless set), or the limit
a thread set for itself with :func:`set_thread_limit` (the service's scoring lanes).

The first compile of a kernel on a machine takes seconds; one that takes longer than
:data:`NOTICE_AFTER` seconds prints one line to stderr (once per process), so nobody thinks
the first fit hangs.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import numba
import numpy as np
from numba.core import event

__all__ = [
    "NOTICE_AFTER",
    "UNITS_PER_THREAD",
    "chunk_bounds",
    "cost_bounds",
    "even_bounds",
    "kernel_threads",
    "parallel_for",
    "set_thread_limit",
    "thread_bounds",
]

T = TypeVar("T")

#: seconds a compile may take before the one-line notice
NOTICE_AFTER = 2.0
#: units per thread when work is split into equal parts (:func:`thread_bounds`): threads that
#: finish early take more, since rows and users differ in cost
UNITS_PER_THREAD = 4

_local = threading.local()


def kernel_threads() -> int:
    """Threads a parallel kernel may use from the calling thread: its own limit
    (:func:`set_thread_limit`) or ``NUMBA_NUM_THREADS``."""
    limit = getattr(_local, "limit", 0)
    default = numba.config.NUMBA_NUM_THREADS
    return min(limit, default) if limit > 0 else default


def set_thread_limit(threads: int) -> None:
    """Cap the threads of kernels started from the calling thread (0: no cap)."""
    _local.limit = int(threads)


def even_bounds(n: int, units: int) -> list[int]:
    """``units + 1`` boundaries splitting ``range(n)`` into ``units`` near-equal parts (fewer
    when ``n`` is smaller; one empty part when ``n`` is 0)."""
    units = max(1, min(units, n))
    return [n * j // units for j in range(units + 1)]


def thread_bounds(n: int, threads: int = 0) -> list[int]:
    """:func:`even_bounds` with ``UNITS_PER_THREAD`` parts for each of ``threads`` threads
    (0: :func:`kernel_threads`)."""
    if n <= 1:
        return [0, n]
    return even_bounds(n, UNITS_PER_THREAD * (threads or kernel_threads()))


def chunk_bounds(n: int, size: int) -> list[int]:
    """Boundaries splitting ``range(n)`` into parts of ``size`` (the last one shorter)."""
    return [*range(0, n, size), n]


def cost_bounds(cumulative: np.ndarray, units: int) -> np.ndarray:
    """Boundaries (indices into the parts whose running cost is ``cumulative``, starting at 0)
    that split them into at most ``units`` runs of near-equal cost, each at least one part."""
    n = len(cumulative) - 1
    if n <= 0:
        return np.zeros(1, dtype=np.int64)
    targets = np.linspace(cumulative[0], cumulative[-1], max(1, min(units, n)) + 1)[1:-1]
    inner = np.searchsorted(cumulative, targets, side="left")
    return np.unique(np.concatenate(([0], np.clip(inner, 1, n - 1), [n]))).astype(np.int64)


def parallel_for(
    fn: Callable[[int, int], T], bounds: Sequence[int] | np.ndarray, threads: int = 0
) -> list[T]:
    """``fn(bounds[j], bounds[j + 1])`` for every unit ``j``, on up to ``threads`` threads
    (0: :func:`kernel_threads`), the calling thread one of them; results in unit order.

    The first exception (KeyboardInterrupt included) stops the other threads after their
    current unit and is raised here once they have stopped.
    """
    edges = [int(b) for b in bounds]
    n = len(edges) - 1
    if n <= 1:  # nothing to share (a single-user request): no thread settings to read
        return [fn(edges[0], edges[1])] if n == 1 else []
    results: list = [None] * n
    threads = min(threads or kernel_threads(), n)
    if threads <= 1:
        for j in range(n):
            results[j] = fn(edges[j], edges[j + 1])
        return results
    claims = itertools.count()
    failures: list[BaseException] = []

    def work() -> None:
        while not failures:
            j = next(claims)  # atomic under the GIL
            if j >= n:
                return
            try:
                results[j] = fn(edges[j], edges[j + 1])
            except BaseException as exc:  # re-raised by the calling thread
                failures.append(exc)
                return

    def helper() -> None:
        set_thread_limit(1)  # a kernel started from a unit does not fan out again
        work()

    others = [
        threading.Thread(target=helper, name="alsresearch-kernel", daemon=True)
        for _ in range(threads - 1)
    ]
    for thread in others:
        thread.start()
    try:
        work()
    except BaseException as exc:  # e.g. Ctrl-C between units: stop the helpers too
        failures.append(exc)
        raise
    finally:
        for thread in others:
            thread.join()
    if failures:
        raise failures[0]
    return results


class _CompileNotice(event.Listener):
    """Prints one line when a top-level numba compile runs longer than NOTICE_AFTER."""

    def __init__(self) -> None:
        self.depth = 0
        self.timer: threading.Timer | None = None
        self.said = False

    def on_start(self, ev) -> None:
        self.depth += 1
        if self.depth == 1 and not self.said:
            self.timer = threading.Timer(NOTICE_AFTER, self._say)
            self.timer.daemon = True
            self.timer.start()

    def on_end(self, ev) -> None:
        self.depth -= 1
        if self.depth == 0 and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _say(self) -> None:
        if self.said:
            return
        self.said = True
        cache = numba.config.CACHE_DIR or "__pycache__ beside the package's source"
        print(
            "alsresearch: compiling the numba kernels, once per machine (later runs load "
            f"them from the cache in {cache})...",
            file=sys.stderr,
            flush=True,
        )


event.register("numba:compile", _CompileNotice())
