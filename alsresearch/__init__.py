"""alsresearch: implicit-feedback recommendation with Alternating Least Squares.

The public pieces, one module each (see README.md for the data flow):

- :mod:`alsresearch.data`: events -> :class:`~alsresearch.data.Interactions`
- :mod:`alsresearch.als`: :class:`~alsresearch.als.ALSModel` (Hu, Koren & Volinsky 2008)
- :mod:`alsresearch.base`: the protocol every model shares, and :func:`load_model`
"""

from alsresearch.base import load_model
from alsresearch.data import Interactions
from alsresearch.errors import ModelFileError, UnknownIdError

__version__ = "0.1.0"

__all__ = ["Interactions", "ModelFileError", "UnknownIdError", "__version__", "load_model"]
