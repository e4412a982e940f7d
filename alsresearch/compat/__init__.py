"""Other libraries' APIs on alsresearch's models, so code written against them runs unchanged.

- :mod:`alsresearch.compat.implicit`: :class:`~alsresearch.compat.implicit.AlternatingLeastSquares`,
  benfred/implicit 0.7's CPU ALS constructor and methods, backed by
  :class:`~alsresearch.als.ALSModel` (implicit's objective, ``confidence="linear"``).
"""

from __future__ import annotations

__all__: list[str] = []
