"""db/recall.py: the one definition of recall against exact search (ties counted)."""

import numpy as np
import pytest

from similar_images.db.recall import exact_scores_of, recall_of_ids, recall_vs_exact


def test_recall_counts_ties_as_found():
    exact = np.array([[1.0, 0.9, 0.9]])
    # the search returned the other copy of the 0.9 duplicate: still a perfect top 2
    assert recall_vs_exact(np.array([[1.0, 0.9]]), exact, 2)[0] == 1.0
    assert recall_vs_exact(np.array([[1.0, 0.5]]), exact, 2)[0] == 0.5


def test_recall_of_ids_missing_results_never_count():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    queries = vectors[:2]
    full = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    exact = np.argsort(-full, axis=1)[:, :4]
    found = np.array([[exact[0, 0], exact[0, 2], exact[0, 3], 49 if 49 not in exact[0] else 48],
                      [exact[1, 3], -1, -1, -1]])
    np.testing.assert_allclose(recall_of_ids(vectors, queries, found, exact, 4), [0.75, 0.25])
    assert exact_scores_of(vectors, queries, found)[1, 1] == -np.inf


def test_duplicate_rows_found_either_way_give_full_recall():
    # Two identical rows: an index may return either; ids-only recall would call one a miss.
    vectors = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    q = np.array([[1, 0]], np.float32)
    assert recall_of_ids(vectors, q, np.array([[1]]), np.array([[0]]), 1)[0] == 1.0


def test_recall_rejects_short_rankings():
    with pytest.raises(ValueError, match="fewer than k"):
        recall_vs_exact([[1.0, 0.5, 0.2]], [[1.0, 0.5]], 3)
