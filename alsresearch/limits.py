"""Every limit on a user-supplied size, defined once: the library, the CLI and the service check
against these before any work starts, and the README's reliability section lists them.

A value outside its range is a ValueError (a 422 in the service) naming the parameter, its value
and the allowed range.
"""

from __future__ import annotations

__all__ = ["MAX_BATCH", "MAX_N"]

#: the longest list the service answers (``n`` in 1..MAX_N)
MAX_N = 1000
#: the most user ids one ``POST /recommendations/batch`` may ask for
MAX_BATCH = 10_000
