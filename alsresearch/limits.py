"""Every limit on a user-supplied size, defined once: the library, the CLI and the service check
against these before any work starts, and the README's reliability section lists them.

A value outside its range is a ValueError (a 422 in the service) naming the parameter, its value
and the allowed range. Besides these fixed limits, :func:`check_factor_memory` refuses a fit
whose factor matrices would not fit in the memory available now.
"""

from __future__ import annotations

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_WORK",
    "MAX_BODY_BYTES",
    "MAX_CG_STEPS",
    "MAX_EASE_ITEMS",
    "MAX_FACTORS",
    "MAX_HEARTBEAT",
    "MAX_ITERATIONS",
    "MAX_N",
    "MAX_TOP_N",
    "MAX_TRIALS",
    "MAX_WORKERS",
    "available_memory",
    "check_factor_memory",
    "factor_memory_bytes",
]

#: the longest list the service answers (``n`` in 1..MAX_N)
MAX_N = 1000
#: the most user ids one ``POST /recommendations/batch`` may ask for
MAX_BATCH = 10_000
#: the most work one service batch may ask for: ``len(user_ids) x n`` recommendations (the
#: largest batch at the default n = 10, or 100 users at n = 1000), so that the worst accepted
#: batch stays short enough for single-user requests answering meanwhile to stay fast
MAX_BATCH_WORK = 100_000
#: the largest request body the service reads by default (``serve --max-body-bytes``): 1 MiB
MAX_BODY_BYTES = 1 << 20
#: the longest list the library ranks (``recommend`` n, evaluation k); larger than the service's
#: MAX_N because offline recall@k studies want long lists and the caller owns the machine
MAX_TOP_N = 100_000
#: ALS sweeps per fit (``iterations``): real fits converge within tens; 10,000 is hours of work
MAX_ITERATIONS = 10_000
#: latent factors per user and item (``factors``); the k x k solves grow as k^3
MAX_FACTORS = 1024
#: conjugate-gradient steps per row (``cg_steps``); k steps already solve exactly
MAX_CG_STEPS = 1024
#: items with training interactions an EASE fit takes (``EASEModel``): its dense float64
#: Gram/inverse and float32 weights take 12 bytes x n_items^2, 4.5 GiB at 20,000 items
MAX_EASE_ITEMS = 20_000
#: trials of one sweep (``tune --trials``)
MAX_TRIALS = 10_000
#: worker processes of one sweep (``tune --workers``)
MAX_WORKERS = 256
#: seconds between a tuning worker's heartbeats (``tune --heartbeat``)
MAX_HEARTBEAT = 3600

_GIB = 2**30


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def factor_memory_bytes(
    n_users: int, n_items: int, factors: int, itemsize: int, threads: int = 1
) -> int:
    """Bytes a fit allocates that grow with ``factors``: the user and item factors, the
    whitened copy of the larger side (scratch of the sweeps) and a few k x k matrices per
    thread."""
    rows = n_users + n_items + max(n_users, n_items)
    return factors * itemsize * rows + 8 * threads * factors * factors * itemsize


def check_factor_memory(
    n_users: int,
    n_items: int,
    factors: int,
    itemsize: int,
    threads: int = 1,
    available: int | None = None,
) -> None:
    """Raise ValueError, naming ``factors`` and both sizes in GiB, when the factor matrices of
    an ``n_users x n_items`` fit would need more than the memory available now
    (:func:`available_memory` unless ``available`` is given)."""
    need = factor_memory_bytes(n_users, n_items, factors, itemsize, threads)
    if available is None:
        available = available_memory()
    if need > available:
        raise ValueError(
            f"factors={factors} needs {need / _GIB:.2f} GiB for the factors of {n_users:,} "
            f"users and {n_items:,} items, but only {available / _GIB:.2f} GiB of memory is "
            "available; lower factors (or use dtype='float32')"
        )
