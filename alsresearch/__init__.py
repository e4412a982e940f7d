"""alsresearch: implicit-feedback recommendation with Alternating Least Squares.

The public pieces, one module each (see README.md for the data flow):

- :mod:`alsresearch.data`: events -> :class:`~alsresearch.data.Interactions`
- :mod:`alsresearch.als`: :class:`~alsresearch.als.ALSModel` (Hu, Koren & Volinsky 2008)
- :mod:`alsresearch.base`: the protocol every model shares, and :func:`load_model`
"""

from alsresearch import paths

paths.use_user_numba_cache()  # before any kernel is compiled (see its docstring)

from alsresearch.base import load_model  # noqa: E402
from alsresearch.data import Interactions  # noqa: E402
from alsresearch.errors import ModelFileError, UnknownIdError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Interactions", "ModelFileError", "UnknownIdError", "__version__", "load_model"]
