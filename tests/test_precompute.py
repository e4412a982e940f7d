"""``alsresearch recommend-all``: every user's top-n in a Parquet dataset, against a brute-force
float64 ranking of the model file's factors; chunks, resume after an interruption, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alsresearch import precompute
from alsresearch.als import ALSModel
from alsresearch.base import load_model
from alsresearch.cli import main
from alsresearch.data import IdLookup, Interactions
from alsresearch.errors import UnknownIdError
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


def test_ranking_needs_no_id_lookup_and_the_lookups_are_built_on_demand(
    model_file, tmp_path, monkeypatch
):
    path, model = model_file

    def refuse(self, ids, missing="raise"):
        raise AssertionError(f"an id lookup while ranking by position: {ids!r}")

    with monkeypatch.context() as patch:  # recommend-all never looks an id up
        patch.setattr(IdLookup, "index", refuse)
        precompute.recommend_all(path, tmp_path / "recs", n=4, chunk_users=10, progress=False)
    loaded = load_model(path)
    assert loaded._user_lookup.built == [] and loaded._item_lookup.built == []
    user = model.user_ids.tolist()[5]  # one plain str: the dict
    assert loaded.recommend(user, 4)[0].tolist() == brute_force(model, 5, 4)
    assert loaded._user_lookup.built == ["dict"] and loaded._item_lookup.built == []
    users = model.user_ids[::-3].tolist()
    assert loaded.user_index(users).tolist() == list(range(56, -1, -3))
    assert loaded.item_index([73, 3]).tolist() == [10, 0]  # item i is 7 i + 3
    with pytest.raises(UnknownIdError, match="unknown item id"):
        loaded.item_index([4])
    assert loaded._user_lookup.built == ["dict", "index"] and "index" in loaded._item_lookup.built


def test_a_model_loaded_for_ranking_only_holds_no_array_of_ones(model_file):
    path, model = model_file
    lean = load_model(path, ranking_only=True)
    assert lean.seen.data.strides == (0,) and not lean.seen.data.flags.writeable
    assert lean.seen.shape == model.seen.shape and (lean.seen != model.seen).nnz == 0
    rows = np.arange(model.n_users)
    idx, _ = lean.topk_rows(rows, 9)
    for row in rows:
        assert [i for i in idx[row].tolist() if i >= 0] == ranked_items(model, row, 9), row


@pytest.mark.parametrize("ranking_only", [False, True])
def test_a_file_with_unsorted_repeated_seen_cells_loads_as_canonical(
    model_file, tmp_path, ranking_only
):
    # files written by save are canonical; one that is not loads as Interactions made it:
    # each seen item once, sorted, value 1
    path, model = model_file
    arrays = dict(np.load(path, allow_pickle=False))
    indptr, indices = arrays["seen_indptr"], arrays["seen_indices"]
    rows = [indices[indptr[u] : indptr[u + 1]].tolist() for u in range(model.n_users)]
    messy = [r[::-1] + r[:1] for r in rows]  # reversed, the first item again
    arrays["seen_indices"] = np.array([i for r in messy for i in r], dtype=indices.dtype)
    arrays["seen_indptr"] = np.cumsum([0] + [len(r) for r in messy]).astype(indptr.dtype)
    np.savez(tmp_path / "messy.npz", **arrays)
    loaded = load_model(tmp_path / "messy.npz", ranking_only=ranking_only)
    assert loaded.seen.has_canonical_format and loaded.seen.data.tolist() == [1.0] * loaded.seen.nnz
    assert [loaded.seen[u].indices.tolist() for u in range(model.n_users)] == [
        sorted(r) for r in rows
    ]
