"""The figures the README quotes from a run of the package's defaults, printed the way it quotes
them (tests/test_readme_figures.py fails when the README and a fresh run differ).

- ``default``: the "Evaluation" section's paragraph: ALS with the default settings
  (``ALSModel(random_state=0)``, the README's example) and popularity on the shipped MovieLens,
  the default split (random 80/20, seed 42), NDCG@10, HitRate@10 and Coverage@10.

    .venv/bin/python scripts/readme_figures.py
"""

from __future__ import annotations

from alsresearch.als import ALSModel
from alsresearch.baselines import PopularityModel
from alsresearch.datasets import load_default
from alsresearch.evaluate import evaluate
from alsresearch.split import SplitSpec

METRICS = ("ndcg@10", "hit_rate@10", "coverage@10")


def default_figures() -> dict[str, dict[str, float]]:
    """``{"als": {metric: value}, "popularity": {...}}`` of the README's Evaluation example."""
    train, test = SplitSpec().apply(load_default())
    out = {}
    for name, model in (("als", ALSModel(random_state=0)), ("popularity", PopularityModel())):
        result = evaluate(model.fit(train), train, test, k=10)
        out[name] = {m: result.metrics[m] for m in METRICS}
    return out


def default_sentence(figures: dict[str, dict[str, float]]) -> str:
    """The README's sentence, with the figures at its precision."""
    a, p = figures["als"], figures["popularity"]
    split = SplitSpec()
    return (
        f"On the shipped MovieLens data (seed {split.seed}, "
        f"{round(100 * (1 - split.test_fraction))}/{round(100 * split.test_fraction)}), ALS "
        f"with the default settings reaches NDCG@10 {a['ndcg@10']:.3f}, HitRate@10 "
        f"{a['hit_rate@10']:.3f} and Coverage@10 {a['coverage@10']:.3f}, against "
        f"{p['ndcg@10']:.3f}, {p['hit_rate@10']:.3f} and {p['coverage@10']:.3f} for popularity."
    )


if __name__ == "__main__":
    print(default_sentence(default_figures()))
