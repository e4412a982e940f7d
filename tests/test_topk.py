"""The shared top-k kernel against a plain NumPy ranking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alsresearch.topk import topk


def reference(scores, k, exclude=None, rows=None):
    idx = np.full((len(scores), k), -1)
    val = np.full((len(scores), k), -np.inf)
    for r, row in enumerate(scores.astype(np.float64)):
        s = row.copy()
        if exclude is not None and rows[r] >= 0:
            s[exclude[rows[r]].indices] = -np.inf
        order = np.lexsort((np.arange(len(s)), -s))  # descending score, ties to lower index
        order = [j for j in order if np.isfinite(s[j])][:k]
        idx[r, : len(order)] = order
        val[r, : len(order)] = s[order]
    return idx, val


@settings(max_examples=200, deadline=None)
@given(
    scores=arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 30)),
        elements=st.sampled_from([0.0, 1.0, 1.5, -2.0, 3.25, 7.0, -np.inf]),
    ),
    k=st.integers(1, 35),
    data=st.data(),
)
def test_matches_numpy_ranking_with_ties_and_exclusions(scores, k, data):
    b, n = scores.shape
    mask = data.draw(arrays(np.bool_, (b + 2, n)))
    exclude = sp.csr_matrix(mask.astype(np.float32))
    rows = np.array(data.draw(st.lists(st.integers(-1, b + 1), min_size=b, max_size=b)))
    got_idx, got_val = topk(scores, k, exclude, rows)
    want_idx, want_val = reference(scores, k, exclude, rows)
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_array_equal(got_val, want_val.astype(np.float32))


def test_large_random_block_and_no_exclusion(rng):
    scores = rng.standard_normal((50, 3000)).astype(np.float32)
    got_idx, got_val = topk(scores, 25)
    want_idx, want_val = reference(scores, 25)
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_allclose(got_val, want_val, rtol=0)


def test_nan_scores_are_never_recommended():
    scores = np.array([[np.nan, 1.0, np.nan, 0.5]], dtype=np.float32)
    idx, val = topk(scores, 3)
    assert idx.tolist() == [[1, 3, -1]]
    assert val.tolist() == [[1.0, 0.5, -np.inf]]


def test_scores_untouched_unless_inplace():
    scores = np.arange(6, dtype=np.float32).reshape(1, 6)
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 1]]))
    topk(scores, 2, exclude, np.array([0]))
    assert scores[0, 5] == 5.0
    topk(scores, 2, exclude, np.array([0]), inplace=True)
    assert np.isneginf(scores[0, 5])


@pytest.mark.parametrize("k", [0, -3])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        topk(np.zeros((1, 3)), k)


def test_mismatched_exclusion_shape():
    with pytest.raises(ValueError, match="columns"):
        topk(np.zeros((1, 3)), 1, sp.csr_matrix((1, 4)), np.array([0]))
