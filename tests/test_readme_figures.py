"""The README's default-model figures are those of a fresh run (scripts/readme_figures.py), at
the precision the README prints: the default fit on the shipped MovieLens, about a second."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.realdata


def _script():
    spec = importlib.util.spec_from_file_location(
        "readme_figures", REPO / "scripts/readme_figures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_quotes_a_fresh_run_of_the_defaults():
    script = _script()
    sentence = script.default_sentence(script.default_figures())
    readme = " ".join((REPO / "README.md").read_text().split())  # line breaks as spaces
    start = readme.find("On the shipped MovieLens data (seed")
    assert start >= 0, "the README's default-model sentence is missing"
    quoted = readme[start : readme.index("for popularity.", start) + len("for popularity.")]
    assert quoted == sentence, (
        "README.md's default-model figures differ from a fresh run; replace the sentence with "
        f"the output of `python scripts/readme_figures.py`:\n  README: {quoted}\n  run:    {sentence}"
    )
    assert re.search(r"NDCG@10 0\.\d{3},", sentence)  # three decimals, as printed
