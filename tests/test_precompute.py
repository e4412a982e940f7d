"""``alsresearch recommend-all``: every user's top-n in a Parquet dataset, against a brute-force
float64 ranking of the model file's factors; chunks, resume after an interruption, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alsresearch import precompute
from alsresearch.als import ALSModel
from alsresearch.cli import main
from alsresearch.data import Interactions
from tests.reference import ranked_items
from tests.test_als import varied_counts


@pytest.fixture
def model_file(rng, tmp_path):
    counts = varied_counts(rng, n_users=57, n_items=40, k_max=30)
    data = Interactions(
        counts,
        user_ids=np.array([f"user-{u}" for u in range(57)]),
        item_ids=np.arange(40) * 7 + 3,
    )
    model = ALSModel(factors=6, iterations=3, random_state=0).fit(data)
    return model.save(tmp_path / "m.npz"), model


def brute_force(model, row: int, n: int) -> list:
    return model.item_ids[ranked_items(model, row, n)].tolist()


def test_every_users_list_equals_the_reference(model_file, tmp_path):
    path, model = model_file
    out = tmp_path / "recs.parquet"
    result = precompute.recommend_all(path, out, n=8, chunk_users=10, progress=False)
    assert result.chunks == 6 and result.n_users == 57 and (out / "_SUCCESS").exists()
    table = pd.read_parquet(out)
    assert table.columns.tolist() == ["user_id", "rank", "item_id", "score"]
    assert len(table) == result.n_rows
    for row, user in enumerate(model.user_ids):
        mine = table[table.user_id == user].sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1))
        assert mine["item_id"].tolist() == brute_force(model, row, 8), user
    assert table["item_id"].dtype == np.int64 and table["score"].dtype == np.float32


def test_an_interrupted_run_resumes_from_the_last_complete_part(model_file, tmp_path, monkeypatch):
    path, _ = model_file
    out = tmp_path / "recs"
    full = precompute.recommend_all(path, tmp_path / "full", n=5, chunk_users=10, progress=False)
    calls = []
    original = ALSModel.topk_rows

    def interrupted(self, rows, n, exclude_seen=True, exclude=None):
        calls.append(len(rows))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, rows, n, exclude_seen, exclude)

    monkeypatch.setattr(ALSModel, "topk_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        precompute.recommend_all(path, out, n=5, chunk_users=10, progress=False)
    assert sorted(p.name for p in out.glob("part-*")) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert not (out / "_SUCCESS").exists() and not list(out.glob(".*"))  # no half-written part
    monkeypatch.setattr(ALSModel, "topk_rows", original)
    again = precompute.recommend_all(path, out, n=5, chunk_users=10, progress=False)
    assert again.resumed == 2 and again.n_rows == full.n_rows
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "full"))


def test_another_run_in_the_same_folder_is_refused(model_file, tmp_path):
    path, _ = model_file
    out = tmp_path / "recs"
    precompute.recommend_all(path, out, n=5, chunk_users=10, progress=False)
    with pytest.raises(ValueError, match="n differ"):
        precompute.recommend_all(path, out, n=6, chunk_users=10, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        precompute.recommend_all(path, tmp_path / "file", n=5, progress=False)


def test_the_command(model_file, tmp_path, capsys):
    path, model = model_file
    out = tmp_path / "cli"
    assert main(["recommend-all", "--model", str(path), "--out", str(out), "--n", "3",
                 "--chunk-users", "20", "--quiet"]) == 0  # fmt: skip
    assert "for 57 users" in capsys.readouterr().out
    table = pd.read_parquet(out)
    first = table[table.user_id == model.user_ids[0]]["item_id"].tolist()
    assert first == brute_force(model, 0, 3)
